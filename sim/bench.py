"""Hardware benchmark: cycles per image and FPS of the LFC accelerator, and co-simulation speed.

``python -m sim.bench [--images N] [--cocotb-images N] [--clock MHZ] [--json PATH] [--png PATH]``

In one run, for the shipped ``lfc_w1a1`` network:

* at BNN-PYNQ's LFC folding (PE/SIMD 32/64, 64/32, 32/64, 16/8, first layer padded to 832
  inputs, last to 16 outputs) and at a faster folding (64/64, 64/64, 64/64, 16/8): cycles per
  image and latency **measured** in the Verilated RTL (batch harness, ``--images`` MNIST test
  images, outputs checked bit-exact against the golden model and every cycle stamp against
  :mod:`hw.cycle_model`), and the FPS this gives at ``--clock`` (default: the Ultra96's default clock, with its basis), beside BNN-PYNQ's published
  356,633 FPS on Ultra96 at 300 MHz (measured on the board by its authors; ours is cycle-exact
  simulation, not a board measurement);
* co-simulation speed (images/s and simulated cycles/s) of the batch path and the cocotb path;
* the CNV-W1A1 topology (``cnv_w1a1``: the shipped checkpoint, or ``--cnv-net EXPORTDIR``) at
  BNN-PYNQ's CNV folding (PE/SIMD 16/3 -> 16/2 on our 2-plane thermometer input, 32/32, 16/32,
  16/32, 4/32, 1/32, 1/4, 1/8, 4/1 with the last layer padded to 12 outputs) and at a faster
  folding (64/2, 32/64, 16/64, 16/64, 8/32, 2/32, 2/8, 2/16, 2/8) whose Yosys
  ``synth_xilinx`` utilisation fits the xczu3eg (``python -m hw.build --board ultra96 --net
  EXPORT --fold FAST.json``): cycles per image measured in the RTL over ``--cnv-images``
  images, beside BNN-PYNQ's CNV-W1A1 (9,150 FPS, Ultra96 board, published) and FINN's
  finn-examples cnv-w1a1 on the same chip (5,311 FPS, AUP-ZU3, published).

Every number comes from a :mod:`sim.run` run in a subprocess (its ``--json`` report).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from sw.errors import UserError, cli_main

from .build import REPO_ROOT

__all__ = ["FOLDINGS", "PEER_FPS", "CNV_FOLDINGS", "CNV_PEERS", "main"]

#: BNN-PYNQ LFC-W1A1 on Ultra96 at 300 MHz, measured on the board (../shared/anchors.md).
PEER_FPS = 356_633

#: Foldings compared (one entry per layer of the LFC network).
FOLDINGS = {
    "bnn-pynq": [{"pe": 32, "simd": 64, "pad": True}, {"pe": 64, "simd": 32},
                 {"pe": 32, "simd": 64}, {"pe": 16, "simd": 8, "pad": True}],
    "fast": [{"pe": 64, "simd": 64, "pad": True}, {"pe": 64, "simd": 64},
             {"pe": 64, "simd": 64}, {"pe": 16, "simd": 8, "pad": True}],
}

_CHECKPOINT = REPO_ROOT / "models" / "checkpoints" / "lfc_w1a1.pt"
_CNV_CHECKPOINT = REPO_ROOT / "models" / "checkpoints" / "cnv_w1a1.pt"

#: Published CNV-W1A1 throughput: BNN-PYNQ on Ultra96 and finn-examples on AUP-ZU3 (xczu3eg).
CNV_PEERS = {"BNN-PYNQ (Ultra96, published)": 9_150, "finn-examples (AUP-ZU3, published)": 5_311}


def _cnv_layers(folds):
    return [{"pe": pe, "simd": simd, **({"pad": True} if pad else {})}
            for pe, simd, pad in folds]


#: CNV foldings (one entry per layer: 6 convolutions, 3 dense).
CNV_FOLDINGS = {
    "bnn-pynq": _cnv_layers([(16, 2, 0), (32, 32, 0), (16, 32, 0), (16, 32, 0), (4, 32, 0),
                             (1, 32, 0), (1, 4, 0), (1, 8, 0), (4, 1, 1)]),
    "fast": _cnv_layers([(64, 2, 0), (32, 64, 0), (16, 64, 0), (16, 64, 0), (8, 32, 0),
                         (2, 32, 0), (2, 8, 0), (2, 16, 0), (2, 8, 0)]),
}


def _sim_run(args: list[str], report: Path) -> dict:
    cmd = [sys.executable, "-m", "sim.run", *args, "--json", str(report)]
    print("$ python -m sim.run " + " ".join(args), file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, cwd=REPO_ROOT)
    if not report.is_file():
        raise UserError(f"`python -m sim.run {' '.join(args)}` failed (exit {proc.returncode})")
    data = json.loads(report.read_text())
    data["exit_status"] = proc.returncode
    return data


def _plot(rows: list[dict], path: Path, clock_mhz: float) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global backend switch

    names = [f"ours, {r['folding']}\n(cycle-exact sim)" for r in rows] + ["BNN-PYNQ\n(board, published)"]
    fps = [r["fps"] for r in rows] + [PEER_FPS]
    fig = Figure(figsize=(7, 3.6))
    ax = fig.subplots()
    bars = ax.bar(names, [f / 1e3 for f in fps], color=["tab:blue"] * len(rows) + ["tab:gray"])
    ax.bar_label(bars, labels=[f"{f / 1e3:,.0f}k" for f in fps])
    ax.set(ylabel="images/s (thousands)", title=f"LFC-W1A1 on MNIST at {clock_mhz:g} MHz")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def _cnv_bench(args, tmp: Path, speeds: list) -> list[dict]:
    """CNV at both foldings: measured cycles per image (batch harness) vs the cycle model."""
    if args.cnv_net is not None:
        source = ["--net", str(args.cnv_net)]
    elif _CNV_CHECKPOINT.is_file():
        source = ["--checkpoint", str(_CNV_CHECKPOINT)]
    else:
        raise UserError(f"{_CNV_CHECKPOINT} is missing; train it (`python -m models.train --net "
                        f"cnv_w1a1`), pass --cnv-net EXPORTDIR or --cnv-images 0")
    rows = []
    for name, layers in CNV_FOLDINGS.items():
        fold = tmp / f"cnv-{name}.json"
        fold.write_text(json.dumps({"layers": layers}))
        r = _sim_run([*source, "--fold", str(fold), "--images", str(args.cnv_images),
                      "--clock", str(args.clock_mhz)], tmp / f"cnv-{name}.json.out")
        t = r["timing"]
        rows.append({"network": r["network"], "folding": name, "layers": layers,
                     "images": r["images"], "mismatches": r["mismatches"],
                     "passed": r["exit_status"] == 0,
                     "cycles_per_image": t["ii_steady_measured"],
                     "cycles_per_image_modelled": t["ii_steady_modelled"],
                     "latency_cycles": t["latency_measured_first"],
                     "fps": args.clock_mhz * 1e6 / t["ii_for_fps"]})
        speeds.append({"engine": "batch", "folding": f"cnv {name}", **r["sim_speed"]})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m sim.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=1000, help="MNIST test images per batch run")
    p.add_argument("--cocotb-images", type=int, default=20, help="images for the cocotb speed run")
    p.add_argument("--clock", type=float, metavar="MHZ",
                   help="clock of the FPS figures (default: the Ultra96's default clock)")
    p.add_argument("--json", type=Path, help="write all numbers here")
    p.add_argument("--png", type=Path, help="FPS bar chart (ours vs BNN-PYNQ)")
    p.add_argument("--cnv-images", type=int, default=200,
                   help="MNIST test images per CNV folding (0: skip CNV)")
    p.add_argument("--cnv-net", type=Path,
                   help="CNV-shaped export to measure (default: export models/checkpoints/cnv_w1a1.pt)")
    args = p.parse_args(argv)
    from boards import resolve_clock
    args.clock_mhz, args.clock_source = resolve_clock(None, args.clock)
    for name, low in (("images", 1), ("cocotb_images", 1), ("cnv_images", 0)):
        if getattr(args, name) < low:
            raise UserError(f"--{name.replace('_', '-')} must be >= {low}, not {getattr(args, name)}")
    # Absolute paths: sim.run runs from the repository root.  Outputs checked before the runs.
    from sw.atomic_dir import check_writable_file
    for name in ("json", "png", "cnv_net"):
        if getattr(args, name) is not None:
            setattr(args, name, getattr(args, name).expanduser().resolve())
    if args.json is not None:
        check_writable_file(args.json, "--json report")
    if args.png is not None:
        check_writable_file(args.png, "--png chart")
    if not _CHECKPOINT.is_file():
        raise UserError(f"{_CHECKPOINT} is missing; train it with `python -m models.train --net lfc_w1a1`")

    rows, speeds = [], []
    with tempfile.TemporaryDirectory(prefix="fracbnn-bench-") as tmp:
        tmp = Path(tmp)
        for name, layers in FOLDINGS.items():
            fold = tmp / f"{name}.json"
            fold.write_text(json.dumps({"layers": layers}))
            r = _sim_run(["--checkpoint", str(_CHECKPOINT), "--fold", str(fold),
                          "--images", str(args.images), "--clock", str(args.clock_mhz)],
                         tmp / f"{name}-batch.json")
            t = r["timing"]
            rows.append({"folding": name, "layers": layers, "images": r["images"],
                         "mismatches": r["mismatches"], "passed": r["exit_status"] == 0,
                         "cycles_per_image": t["ii_steady_measured"],
                         "cycles_per_image_modelled": t["ii_steady_modelled"],
                         "latency_cycles": t["latency_measured_first"],
                         "fps": args.clock_mhz * 1e6 / t["ii_for_fps"]})
            speeds.append({"engine": "batch", "folding": name, **r["sim_speed"]})
        fold = tmp / "bnn-pynq.json"
        r = _sim_run(["--checkpoint", str(_CHECKPOINT), "--fold", str(fold), "--engine", "cocotb",
                      "--images", str(args.cocotb_images), "--clock", str(args.clock_mhz)],
                     tmp / "cocotb.json")
        speeds.append({"engine": "cocotb", "folding": "bnn-pynq", "passed": r["exit_status"] == 0,
                       **r["sim_speed"]})

        cnv_rows = _cnv_bench(args, tmp, speeds) if args.cnv_images else []

    print(f"\nLFC-W1A1 (shipped lfc_w1a1), MNIST, {args.clock_mhz:g} MHz ({args.clock_source}) — "
          f"ours: cycles measured in cycle-exact RTL simulation; peer: published board measurement")
    print(f"{'folding':<10} {'cycles/image':>12} {'latency':>8} {'FPS':>12} {'vs peer':>8}  check")
    for row in rows:
        print(f"{row['folding']:<10} {row['cycles_per_image']:>12} {row['latency_cycles']:>8} "
              f"{row['fps']:>12,.0f} {row['fps'] / PEER_FPS:>7.2f}x  "
              f"{row['images']} images, {row['mismatches']} mismatches"
              f"{'' if row['passed'] else ', FAILED'}")
    print(f"{'BNN-PYNQ':<10} {'':>12} {'':>8} {PEER_FPS:>12,} {1:>7.2f}x  Ultra96, published")
    if cnv_rows:
        print(f"\nCNV-W1A1 topology ({cnv_rows[0]['network']}), {args.clock_mhz:g} MHz "
              f"({args.clock_source}) — ours: cycle-exact RTL simulation; peers: published "
              f"board measurements")
        print(f"{'folding':<10} {'cycles/image':>12} {'latency':>8} {'FPS':>10}  check")
        for row in cnv_rows:
            print(f"{row['folding']:<10} {row['cycles_per_image']:>12} {row['latency_cycles']:>8} "
                  f"{row['fps']:>10,.0f}  {row['images']} images, {row['mismatches']} mismatches, "
                  f"modelled {row['cycles_per_image_modelled']}{'' if row['passed'] else ', FAILED'}")
        for name, fps in CNV_PEERS.items():
            print(f"{'':<10} {'':>12} {'':>8} {fps:>10,}  {name}")
    print("\nco-simulation speed (this machine)")
    for s in speeds:
        print(f"{s['engine']:<8} {s['folding']:<10} {s['images_per_s']:>10,.1f} images/s "
              f"{s['cycles_per_s']:>12,.0f} cycles/s")
    report = {"clock_mhz": args.clock_mhz, "clock_source": args.clock_source, "peer_fps": PEER_FPS, "accelerator": rows,
              "cnv": cnv_rows, "cnv_peer_fps": CNV_PEERS, "cosim_speed": speeds}
    if args.json:
        from sw.atomic_dir import atomic_write_json
        atomic_write_json(args.json, report, what="--json report")
    if args.png:
        _plot(rows, args.png, args.clock_mhz)
    failed = [r["folding"] for r in rows + cnv_rows if not r["passed"]] + \
        [s["engine"] for s in speeds if s.get("passed") is False]
    if failed:
        print(f"FAIL: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    cli_main(main)
