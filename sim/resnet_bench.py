"""ResNet-20 performance benchmark: FracBNN's CIFAR-10 topology on our residual accelerator.

``python -m sim.resnet_bench [--checkpoint CKPT] [--data CIFAR_DIR] [--out DIR] [--images N]
[--fold FOLD.json] [--pixels-per-beat N] [--no-yosys]``

In one run, for the ``resnet_frac_cifar10`` topology (32x32x3 input, 32 thermometer levels per
colour = 96 binary input planes, ResNet-20 with 16/32/64 channels, FracBNN's gated 2-bit
activations, fixed-point shortcut path):

1. **Network.** ``--checkpoint`` (a trained ResNet checkpoint of that shape), else the
   topology with its seeded random initialisation and batch norms calibrated on the
   benchmark images (no CIFAR-10 is available offline; the resources and the cycles do not
   depend on the trained values, except the gates' pattern).  Images: the first ``--images``
   CIFAR-10 test images of ``--data``, else seeded smooth random images.  Exported with
   :data:`BENCH_FOLDING` (or ``--fold``), every tap of every image checked golden == PyTorch.
2. **Cycles.** :func:`hw.residual_timing.simulate_residual` (cycle exact: the RTL equals it
   on every image, ``tests/test_hw_residual_accelerator.py`` and ``python -m sim.run`` on
   ``resnet_frac``) over the images back to back, output always ready, with the gates
   *open* (gating off: every LSB pass, :mod:`sw.gating`), from the *data* (gating on: the
   golden model's gates of these images) and *closed* (no LSB pass: the bound); per gated
   layer the engine cycles per image of each case (``hw.cycle_model.gating_savings``).
   Images/s at 300 MHz (the issue's goal clock, *assumed*, not a timed one) and at the clock
   the Yosys timing proxy supports.
3. **Resources.** :func:`hw.residual_generate.generate_residual` and Yosys
   ``synth_xilinx -family xcup`` (:func:`hw.yosys_estimate.yosys_estimate`): LUT, FF, BRAM36,
   DSP and the logic-depth timing proxy, beside FracBNN's published 51,444 LUT / 212 BRAM18 /
   126 DSP / 2,806.9 FPS at 250 MHz on the same xczu3eg (``../shared/anchors.md``).

Writes ``report.json``, ``report.md`` and ``cycles.png`` (cycles per image per gating case and
per layer) into ``--out`` (default ``build/resnet_bench``), the export in ``net/`` and the
design in ``rtl/``.  About 15-25 minutes on one core (cycle model a few seconds per image
and case, the skip-FIFO sizing about 3 minutes, Yosys about 10).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from sw.errors import UserError, cli_main

__all__ = ["BENCH_FOLDING", "FRACBNN", "GOAL_FPS", "GOAL_CLOCK_MHZ", "bench_images", "main"]

#: Folding of the benchmark (stem, then the 9 block convolutions): every convolution PE 16
#: (one PE for the fixed-point streams); the stem takes all 96 thermometer planes of a window
#: position per cycle (SIMD 96: 9 cycles per pixel, not 27), the blocks all their input
#: channels (SIMD 16 / 32 / 32).  The 32x32 blocks then set the interval: 9 cycles per pixel
#: and plane, 9,216 (gates closed) to 18,432 (open) cycles per image.
BENCH_FOLDING = [{"pe": 16, "simd": 96}] + [{"pe": 16, "simd": 16}] * 4 + \
    [{"pe": 16, "simd": 32}] * 5
#: FracBNN on Ultra96-V2 (xczu3eg), published (../shared/anchors.md).
FRACBNN = {"lut": 51_444, "bram18": 212, "dsp": 126, "fps": 2_806.9, "clock_mhz": 250.0,
           "top1_cifar10": 89.1}
#: The issue's goal: at least this many images/s at this (assumed) clock.
GOAL_FPS, GOAL_CLOCK_MHZ = 10_000, 300.0
#: xczu3eg capacity (Ultra96): LUT, FF, BRAM36, DSP.
XCZU3EG = {"lut": 70_560, "ff": 141_120, "bram36": 216, "dsp": 360}
_ZOO_NAME = "resnet_frac_cifar10"


def bench_images(n: int, seed: int = 0, shape=(3, 32, 32)) -> np.ndarray:
    """``n`` seeded smooth random 8-bit images ``(n, H*W*C)`` HWC (a colour gradient plus
    noise: binarised maps with structure, not pure noise)."""
    rng = np.random.default_rng(seed)
    c, h, w = shape
    y, x = np.mgrid[0:h, 0:w]
    slope = rng.uniform(-6, 6, size=(n, 2, c))
    img = (rng.integers(40, 216, size=(n, 1, 1, c))
           + y[None, :, :, None] * slope[:, None, None, 0] + x[None, :, :, None] * slope[:, None, None, 1]
           - (h / 2) * slope[:, None, None, 0] - (w / 2) * slope[:, None, None, 1]
           + rng.normal(0, 24, size=(n, h, w, c)))
    return np.clip(img, 0, 255).astype(np.uint8).reshape(n, -1)


def _model(args, images):
    import torch

    from models import zoo
    from models.checkpoint import load_checkpoint
    from models.residual import ResNet

    if args.checkpoint is not None:
        model, _ = load_checkpoint(args.checkpoint)
        if not isinstance(model, ResNet) or tuple(model.input_shape) != (3, 32, 32):
            raise UserError(f"{args.checkpoint} is not a ResNet on 32x32x3 images; give a "
                            f"{_ZOO_NAME} checkpoint (python -m models.train --net {_ZOO_NAME})")
        return model.eval(), f"checkpoint {args.checkpoint}"
    torch.manual_seed(args.seed)
    model = zoo.resolve(_ZOO_NAME).build()
    model.recalibrate_batch_norm(torch.as_tensor(images))
    return model.eval(), (f"{_ZOO_NAME} topology, seeded random weights (seed {args.seed}), "
                          f"batch norms calibrated on the {len(images)} benchmark images")


def _folding(args):
    from sw.compiled_net import Folding
    layers = BENCH_FOLDING
    if args.fold is not None:
        try:
            layers = json.loads(Path(args.fold).read_text())["layers"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"--fold {args.fold}: not a folding JSON with a \"layers\" list "
                            f"({exc})") from None
    return [Folding(pe=int(f["pe"]), simd=int(f["simd"])) for f in layers]


def _cycles(net, n_images: int, ppb: int, golden_gates) -> dict:
    """Per gate case the cycle model's first latency, mean and steady interval."""
    from hw.residual_timing import simulate_residual
    out = {}
    for case, gates in (("open", "open"), ("data", golden_gates), ("closed", "closed")):
        t0 = time.monotonic()
        t = simulate_residual(net, n_images, pixels_per_beat=ppb, gates=gates).timing
        ends = np.asarray(t.output_end)
        out[case] = {"latency_first": int(t.latency[0]),
                     "ii_mean": float((ends[-1] - ends[0]) / max(1, n_images - 1)),
                     "ii_last": int(ends[-1] - ends[-2]) if n_images > 1 else None,
                     "model_seconds": round(time.monotonic() - t0, 1)}
        print(f"cycle model, gates {case}: {out[case]['ii_mean']:,.1f} cycles/image "
              f"({out[case]['model_seconds']} s)", file=sys.stderr)
    return out


def _per_layer(net, gates_data, gates_open, n: int) -> list[dict]:
    from hw.cycle_model import gating_savings
    on = {g["layer"]: g for g in gating_savings(net, gates_data)}
    off = {g["layer"]: g for g in gating_savings(net, gates_open)}
    return [{"layer": i, "lsb_fraction": on[i]["lsb_fraction"],
             "schedule": on[i]["schedule"],
             "cycles_per_image_on": on[i]["cycles_per_image"],
             "cycles_per_image_off": off[i]["cycles_per_image"],
             "saved_percent": 100.0 * (1 - on[i]["cycles_per_image"] / off[i]["cycles_per_image"])}
            for i in sorted(on)]


def _plot(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    cases = ["open", "data", "closed"]
    labels = ["gating off\n(all open)", "gating on\n(data)", "all closed\n(bound)"]
    vals = [report["cycles"][c]["ii_mean"] for c in cases]
    a.bar(labels, vals, color=["#bbbbbb", "#3b75af", "#8fbf8f"])
    goal = GOAL_CLOCK_MHZ * 1e6 / GOAL_FPS
    a.axhline(goal, color="red", ls="--", label=f"{GOAL_FPS:,} FPS at {GOAL_CLOCK_MHZ:g} MHz")
    a.set_ylabel("cycles per image (cycle model)")
    a.set_title("ResNet-20, 32x32x3: interval per image")
    a.legend(loc="upper right")
    layers = report["per_layer"]
    x = np.arange(len(layers))
    b.bar(x - 0.2, [g["cycles_per_image_off"] for g in layers], 0.4, label="gating off",
          color="#bbbbbb")
    b.bar(x + 0.2, [g["cycles_per_image_on"] for g in layers], 0.4, label="gating on",
          color="#3b75af")
    b.set_xticks(x, [str(g["layer"]) for g in layers])
    b.set_xlabel("gated convolution (layer index)")
    b.set_ylabel("engine cycles per image")
    b.set_title("per layer (engine busy cycles)")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _markdown(r: dict) -> str:
    y = r.get("yosys")
    lines = [f"# ResNet-20 benchmark ({r['network']})", "",
             f"Network: {r['model']}; {r['images']} images ({r['image_source']}); "
             f"{r['pixels_per_beat']} input values per beat; folding "
             + ", ".join(f"{f['pe']}/{f['simd']}" for f in r["folding"]) + " (PE/SIMD).", "",
             "| gating | cycles/image (mean) | first latency | images/s at 300 MHz (assumed) |"
             + (" images/s at the proxy clock |" if y else ""),
             "|---|---:|---:|---:|" + ("---:|" if y else "")]
    for case, label in (("open", "off (every gate open)"), ("data", "on (the images' gates)"),
                        ("closed", "every gate closed (bound)")):
        c = r["cycles"][case]
        lines.append(f"| {label} | {c['ii_mean']:,.1f} | {c['latency_first']:,} | "
                     f"{c['fps_goal_clock']:,.0f} |"
                     + (f" {c['fps_proxy_clock']:,.0f} |" if y else ""))
    lines += ["", "| gated layer | LSB needed | schedule | cycles/image off | on | saved |",
              "|---:|---:|---|---:|---:|---:|"]
    for g in r["per_layer"]:
        lines.append(f"| {g['layer']} | {100 * g['lsb_fraction']:.1f} % | {g['schedule']} | "
                     f"{g['cycles_per_image_off']:,.0f} | {g['cycles_per_image_on']:,.0f} | "
                     f"{g['saved_percent']:.1f} % |")
    if y:
        f = FRACBNN
        lines += ["", "| | LUT | FF | BRAM36 | DSP | clock | FPS |", "|---|---:|---:|---:|---:|---|---:|",
                  f"| ours (Yosys synth_xilinx, xczu3eg) | {y['lut']:,} | {y['ff']:,} | "
                  f"{y['bram36']:g} | {y['dsp']} | {y['proxy_clock_mhz']:g} MHz proxy "
                  f"({y['proxy_basis']}) / 300 assumed | "
                  f"{r['cycles']['data']['fps_proxy_clock']:,.0f} / "
                  f"{r['cycles']['data']['fps_goal_clock']:,.0f} |",
                  f"| FracBNN (published, Vivado HLS) | {f['lut']:,} | | {f['bram18'] / 2:g} | "
                  f"{f['dsp']} | {f['clock_mhz']:g} MHz | {f['fps']:,} |"]
    lines += ["", f"Goal: >= {GOAL_FPS:,} images/s at {GOAL_CLOCK_MHZ:g} MHz within "
              f"{FRACBNN['lut']:,} LUT and the xczu3eg's BRAM: "
              + ("met" if r["goal_met"] else "NOT met" if r["goal_met"] is not None
                 else "resources not measured (--no-yosys)") + ".", ""]
    return "\n".join(lines)


def run(args) -> dict:
    import torch

    from hw.residual_generate import generate_residual
    from models.export_residual import export_resnet
    from sw.datasets import load_images
    from sw.gating import open_gates
    from sw.residual_golden import ResidualGolden

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.data is not None:
        images, _ = load_images("test", (3, 32, 32), args.data)
        images = np.ascontiguousarray(images[:args.images])
        source = f"CIFAR-10 test images of {args.data}"
    else:
        images = bench_images(args.images, args.seed)
        source = f"seeded smooth random images (seed {args.seed})"
    model, described = _model(args, images)
    print(f"exporting ({described}) ...", file=sys.stderr)
    net = export_resnet(model, out / "net", images, name=_ZOO_NAME, vectors=1,
                        folding=_folding(args))
    golden = ResidualGolden(net).run(images)
    opened = ResidualGolden(open_gates(net)).run(images)
    print("cycle model ...", file=sys.stderr)
    cycles = _cycles(net, len(images), args.pixels_per_beat, golden.gates)
    per_layer = _per_layer(net, golden.gates, opened.gates, len(images))
    report = {"network": net.name, "model": described, "images": len(images),
              "image_source": source, "pixels_per_beat": args.pixels_per_beat,
              "folding": [{"pe": l.folding.pe, "simd": l.folding.simd} for l in net.layers],
              "cycles": cycles, "per_layer": per_layer, "fracbnn": FRACBNN,
              "goal": {"fps": GOAL_FPS, "clock_mhz": GOAL_CLOCK_MHZ, "lut": FRACBNN["lut"]},
              "yosys": None, "goal_met": None}
    if not args.no_yosys:
        from hw.logic_depth import proxy_clock_mhz
        from hw.yosys_estimate import yosys_estimate
        print("generating the design (skip FIFO sizing) ...", file=sys.stderr)
        generate_residual(out / "net", out / "rtl", pixels_per_beat=args.pixels_per_beat)
        print("Yosys synth_xilinx ...", file=sys.stderr)
        t0 = time.monotonic()
        est = yosys_estimate(out / "rtl", family="xcup", log_dir=out / "yosys", per_stage=False)
        clock, why = proxy_clock_mhz(est["timing_proxy"]) if est.get("timing_proxy") \
            else (None, "no timing proxy")
        report["yosys"] = {"lut": int(est["lut"]), "ff": int(est["ff"]),
                           "bram36": float(est["bram"]), "dsp": int(est["dsp"]),
                           "proxy_clock_mhz": clock, "proxy_basis": why,
                           "seconds": round(time.monotonic() - t0, 1)}
    for c in cycles.values():
        c["fps_goal_clock"] = GOAL_CLOCK_MHZ * 1e6 / c["ii_mean"]
        clock = (report["yosys"] or {}).get("proxy_clock_mhz")
        c["fps_proxy_clock"] = None if clock is None else clock * 1e6 / c["ii_mean"]
    y = report["yosys"]
    if y:
        report["goal_met"] = bool(cycles["open"]["fps_goal_clock"] >= GOAL_FPS
                                  and y["lut"] <= FRACBNN["lut"]
                                  and y["bram36"] <= XCZU3EG["bram36"])
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "report.md").write_text(_markdown(report))
    _plot(report, out / "cycles.png")
    print(_markdown(report))
    print(f"wrote {out / 'report.json'}, {out / 'report.md'}, {out / 'cycles.png'}")
    return report


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m sim.resnet_bench",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, help=f"a trained {_ZOO_NAME} checkpoint "
                   f"(default: the topology with seeded random weights)")
    p.add_argument("--data", type=Path, help="cifar-10-batches-py directory for the images "
                   "(default: seeded smooth random images)")
    p.add_argument("--out", type=Path, default=Path("build/resnet_bench"))
    p.add_argument("--images", type=int, default=8,
                   help="images through the cycle model (default 8; about 3 s per image and "
                        "gate case)")
    p.add_argument("--fold", type=Path, help="folding JSON (default: BENCH_FOLDING)")
    p.add_argument("--pixels-per-beat", type=int, default=8,
                   help="input values per stream beat (default 8: the 64-bit DMA stream)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--no-yosys", action="store_true", help="cycles only (no design, no Yosys)")
    args = p.parse_args(argv)
    if args.images < 2:
        raise UserError(f"--images must be at least 2 (the interval needs two), not "
                        f"{args.images}")
    return args


def main(argv=None) -> int:
    return cli_main(lambda: run(parse_args(argv)) and 0)


if __name__ == "__main__":
    sys.exit(main())
