"""``python -m hw.generate EXPORTDIR OUTDIR [--fold FOLD.json] [--pixels-per-beat 8]``.

Turns a compiled-network directory (docs/compiled-network.md) into a Verilog design:

``OUTDIR/fracbnn_top.v``          the accelerator, one flat module ``fracbnn_top`` (Amaranth RTLIL
                                 cleaned by Yosys, :mod:`hw.netlist`)
``OUTDIR/fracbnn_rom.v``          the ``$readmemh`` ROM the top instantiates for every memory
``OUTDIR/L{i}_*.mem``             the ROM contents for this folding (``INIT_FILE`` names)
``OUTDIR/X{j}_*.mem``             early exit ``j``'s classifier ROMs (networks with exits; the
                                 exit's own folding)
``OUTDIR/verilator_waiver.vlt``   the Verilator lint waiver (see docs/hardware.md)
``OUTDIR/design.json``            ports, folding, each memory's placement, cycle-model predictions
                                 (see :func:`design_summary`)

``--ram-style`` places the weight, threshold and gate memories (block RAM or distributed ROM;
syntax and the depth-aware ``auto`` rule in :mod:`hw.memory_style`), e.g.
``--ram-style L0=block,L2.thresholds=distributed``.

The output directory is built in a temporary sibling and renamed into place, so it is either
complete or absent (or the previous complete output).  Bad inputs give a one-line error;
``--pixels-per-beat`` must divide the image's pixel count and be at most 255 (the CONFIG
register's field), and the error lists the valid values.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
from amaranth.hdl import Shape
from amaranth.lib.wiring import In

from sw.compiled_net import CompiledNetwork, fold_config_from_json, refold
from sw.memory_layout import memory_depth, network_memories, network_memory_kinds
from sw.network_io import load_compiled_network
from sw.atomic_dir import atomic_directory, json_safe
from sw.errors import UserError, cli_main
from sw.memfile import write_mem

__all__ = ["generate", "design_summary", "input_mode", "write_memories", "memory_files", "main",
           "TOP_NAME", "WAIVER_FILE", "MAX_PIXELS_PER_BEAT", "pixels_per_beat_choices",
           "check_pixels_per_beat", "tap_consumer"]

TOP_NAME = "fracbnn_top"
WAIVER_FILE = Path(__file__).with_name("verilator_waiver.vlt")
_DESIGN_JSON = "design.json"

#: Largest pixels per beat a design can have: the CONFIG register's field is 8 bits wide
#: (docs/hardware.md "Register map").
MAX_PIXELS_PER_BEAT = 255


def pixels_per_beat_choices(pixels: int, *, power_of_two: bool = False,
                            limit: int = MAX_PIXELS_PER_BEAT) -> list[int]:
    """Every valid pixels-per-beat value for ``pixels``-pixel images: the divisors of
    ``pixels`` up to ``limit`` (powers of two only with ``power_of_two``)."""
    return [d for d in range(1, min(pixels, limit) + 1)
            if pixels % d == 0 and (not power_of_two or d & (d - 1) == 0)]


def check_pixels_per_beat(net: CompiledNetwork, pixels_per_beat, *,
                          option: str = "--pixels-per-beat", power_of_two: bool = False,
                          limit: int = MAX_PIXELS_PER_BEAT, why: str | None = None) -> int:
    """Raise a one-line :class:`UserError` listing the valid choices unless
    ``pixels_per_beat`` divides ``net``'s image and is at most ``limit`` (a power of two with
    ``power_of_two``; ``why`` explains those two limits); return it.  ``option`` names the
    setting in the message."""
    pixels = net.input.pixels
    choices = pixels_per_beat_choices(pixels, power_of_two=power_of_two, limit=limit)
    listed = ", ".join(map(str, choices))
    if isinstance(pixels_per_beat, bool) or not isinstance(pixels_per_beat, int) \
            or pixels_per_beat < 1:
        raise UserError(f"{option} must be a positive integer, not {pixels_per_beat!r}; "
                        f"choose one of {listed}")
    if pixels % pixels_per_beat:
        reason = f"its {pixels}-pixel images are not a multiple of {pixels_per_beat} pixels per beat"
    elif pixels_per_beat > limit:
        reason = why or (f"the CONFIG register holds at most {MAX_PIXELS_PER_BEAT} pixels per "
                         "beat (an 8-bit field)")
    elif power_of_two and pixels_per_beat & (pixels_per_beat - 1):
        reason = why or "the input stream width must be a power of two"
    else:
        return pixels_per_beat
    raise UserError(f"{option} {pixels_per_beat} does not suit {net.name}: {reason}; choose "
                    f"one of {listed}")


def write_memories(net: CompiledNetwork, directory: Path) -> list[str]:
    """Write every layer's ``.mem`` files laid out for ``net``'s folding, and every early
    exit's (``X{j}_*.mem``, the exit's folding); return their names."""
    names = []
    for stem, words, width in network_memories(net):
        write_mem(directory / f"{stem}.mem", words, width)
        names.append(f"{stem}.mem")
    return names


def memory_files(net: CompiledNetwork) -> list[tuple[str, int, int]]:
    """``(file name, word width, depth)`` of every ``.mem`` file :func:`generate` writes for
    ``net``'s folding, in file-name order (the ``INIT_FILE`` names of the generated ROMs)."""
    return [(f"{stem}.mem", width, memory_depth(layer, kind))
            for stem, layer, kind, width in network_memory_kinds(net)]


def input_mode(layer, engine) -> str:
    """How a layer's engine reads its inputs (the design report's ``input_mode``)."""
    if layer.in_bits == 1:
        return "1-bit inputs, one pass"
    if not layer.gated:
        return "2-bit inputs, both planes in one pass (ungated)"
    return (f"2-bit inputs, gated LSB pass ({'lane' if engine.lane_scheduled else 'fold'} "
            f"schedule)")


def design_summary(accel, files: list[str]) -> dict:
    """The ``design.json`` document of an :class:`hw.accelerator.Accelerator`.

    Cycle numbers come from :mod:`hw.cycle_model`: per layer the engine cycles per vector
    (``min``: every gate closed, ``max``: every gate open; equal for 1-bit layers), the
    steady-state initiation interval (``ii``) and the latency of one image through the empty
    pipeline (first input beat accepted to class beat on ``m_axis``), best and worst case.

    ``memories`` lists every parameter ROM as built (:class:`hw.memory_style.RomPlacement`:
    name, layer, kind, file, width x depth, PE lanes kept, the request and the placement
    ``block`` / ``distributed`` with its reason; an early exit's ROMs are ``X<j>.*``, placed
    by the ``auto`` rule); ``ram_style`` is the request in ``--ram-style`` form.

    ``exits`` lists the early exits (empty without): ``index``, the layer it follows
    (``after``), its ``margin`` and its classifier engine's folding and cycles per vector.
    With exits the latency's best / worst are over every path an image can take (each exit,
    or none; ``latency_per_path`` lists them), and the steady-state interval depends on the
    images (``ii_exact`` is ``None``; measure it, ``python -m sim.run``).
    """
    from .axi_lite_regs import REG, REG_ID_VALUE, REG_VERSION_VALUE
    from .cycle_model import bottleneck_notes, simulate_pipeline, stage_cycles_per_image

    net, ppb = accel.net, accel.pixels_per_beat
    ports = {}
    for name, member in accel.signature.members.items():
        ports[name] = {"direction": "in" if member.flow == In else "out",
                       "width": Shape.cast(member.shape).width}
    ports = {"clk": {"direction": "in", "width": 1}, "rst": {"direction": "in", "width": 1},
             **ports}
    layers = []
    for layer, engine in zip(net.layers, accel.engines):
        layers.append({
            "index": layer.index, "name": layer.name, "in_features": layer.in_features,
            "out_features": layer.out_features, "in_bits": layer.in_bits, "out": layer.out,
            "levels": layer.levels, "input_mode": input_mode(layer, engine),
            "pe": layer.folding.pe, "simd": layer.folding.simd, "pad": layer.folding.pad,
            "mw_padded": layer.mw_padded, "mh_padded": layer.mh_padded,
            "synapse_folds": layer.synapse_folds, "neuron_folds": layer.neuron_folds,
            "kind": layer.kind, "vectors": layer.vectors_per_image,
            **({} if layer.conv is None else {
                "conv": layer.conv.to_json(), "pool": layer.pool}),
            "acc_width": engine.acc_width, "engine_latency": engine.latency,
            "pipeline_latency": engine.pipeline_latency,
            "cycles_per_vector": {"min": engine.compute_cycles(
                None if not layer.gated else [False] * layer.out_features),
                "max": engine.compute_cycles()},
        })
    exits = []
    for j, (ex, engine) in enumerate(zip(net.exits, accel.exit_engines)):
        lay = ex.layer
        exits.append({
            "index": j, "name": lay.name, "after": ex.after, "margin": ex.margin,
            "in_features": lay.in_features, "out_features": lay.out_features,
            "in_bits": lay.in_bits, "pe": lay.folding.pe, "simd": lay.folding.simd,
            "pad": lay.folding.pad, "synapse_folds": lay.synapse_folds,
            "neuron_folds": lay.neuron_folds, "acc_width": engine.acc_width,
            "input_mode": input_mode(lay, engine),
            "cycles_per_vector": {"min": engine.compute_cycles(
                None if not lay.gated else [False] * lay.out_features),
                "max": engine.compute_cycles()},
        })
    # One image through the empty pipeline, on every path (with exits: each exit, and none).
    paths = [{}] if not net.exits else [{"exits": np.full(1, j, dtype=np.int64)}
                                        for j in range(len(net.exits) + 1)]
    latency = {gates: [int(simulate_pipeline(net, 1, pixels_per_beat=ppb, gates=gates,
                                             engines=accel.engines, **path).latency[0])
                       for path in paths] for gates in ("closed", "open")}
    best_stages = stage_cycles_per_image(net, ppb, worst=False)
    worst_stages = stage_cycles_per_image(net, ppb, worst=True)
    return {
        "top": TOP_NAME,
        "network": net.name,
        "files": sorted(files),
        "pixels_per_beat": ppb,
        "input_beats_per_image": accel.beats_per_image,
        "output_beats_per_image": accel.output_beats_per_image,
        "classes": net.classes,
        "thermometer": {"levels": net.input.levels, "thresholds": list(net.input.thresholds)},
        "ports": ports,
        "layers": layers,
        "exits": exits,
        "stages": [s.to_json() for s in accel.stages],
        "registers": {"id": REG_ID_VALUE, "version": REG_VERSION_VALUE,
                      "config": accel._regs.config_word,
                      "addresses": {k.lower(): v for k, v in REG.items()}},
        "writable_params": ({str(k): v for k, v in accel.param_widths().items()}
                            if accel.writable_params else None),
        "ram_style": accel.ram_style.text(),
        "memories": [p.to_json() for p in accel.rom_plan],
        "cycle_model": {
            "stage_cycles_per_image": {"best": best_stages, "worst": worst_stages},
            "ii": {"best": max(best_stages.values()), "worst": max(worst_stages.values())},
            # The real steady-state interval (stalls between stages included), from the
            # period of the cycle model with every gate closed / open.
            "ii_exact": (_exact_ii(net, ppb, accel.engines) if not net.exits
                         else {"best": None, "worst": None}),
            "latency": {"best": min(latency["closed"]), "worst": max(latency["open"])},
            **({} if not net.exits else {"latency_per_path": [
                {"path": f"exit{j}" if j < len(net.exits) else "no exit",
                 "best": latency["closed"][j], "worst": latency["open"][j]}
                for j in range(len(paths))]}),
        },
        "bottleneck_notes": bottleneck_notes(net, ppb),
    }


def _exact_ii(net, ppb, engines) -> dict:
    """Exact steady-state II with every gate closed (best) and open (worst)."""
    from .cycle_model import exact_steady_state_ii

    best = exact_steady_state_ii(net, ppb, gates="closed", engines=engines)
    if not any(layer.gated for layer in net.layers):
        return {"best": best, "worst": best}
    return {"best": best, "worst": exact_steady_state_ii(net, ppb, gates="open",
                                                         engines=engines)}


def tap_consumer(layer: int, next_stage: str, exits) -> str:
    """The instance that takes layer ``layer``'s engine output: exit ``j``'s
    ``exit<j>_fork`` where exit ``j`` follows the layer (``exits``: each exit's ``after``),
    else the next stage of the main chain (``next_stage``, its name)."""
    return next((f"exit{j}_fork" for j, after in enumerate(exits) if after == layer),
                next_stage)


def _layer_taps(stages, exits=()) -> list[str]:
    """Flattened names of each layer engine's output stream: ``mvtu<i>.o__valid``,
    ``mvtu<i>.o__payload`` and its consumer's ``i__ready`` (the next stage's, or the fork of
    the early exit after the layer: :func:`tap_consumer`; one name per net).

    Kept through the netlist clean-up so that testbenches can check every layer's outputs
    (sim/reference.py ``layer_taps``) and waveforms show them.
    """
    names = []
    for k, stage in enumerate(stages[:-1]):
        if stage.kind == "mvtu":
            names += [f"{stage.name}.o__valid", f"{stage.name}.o__payload",
                      f"{tap_consumer(stage.params['layer'], stages[k + 1].name, exits)}"
                      ".i__ready"]
    return names


@contextlib.contextmanager
def _quiet_if_abandoned():
    """Elaboration abandoned (Ctrl-C, an error) leaves every Amaranth component created so far
    unelaborated, and each would warn ``UnusedElaboratable`` when it is collected, well after
    the one-line error (about 140 lines for LFC).  They are not the user's problem: on any
    exception here those warnings are silenced for the rest of the process."""
    try:
        yield
    except BaseException:
        from amaranth.hdl import UnusedElaboratable
        warnings.filterwarnings("ignore", category=UnusedElaboratable)
        raise


def generate(export_dir, outdir, *, fold=None, pixels_per_beat: int = 8,
             progress: bool = False, writable_params: bool = False,
             ram_style=None) -> Path:
    """Generate the Verilog design of the network in ``export_dir`` into ``outdir``.

    Parameters
    ----------
    export_dir, outdir : path
        Compiled-network directory; output directory (created or replaced atomically).
    fold : path or dict, optional
        Folding file (``{"layers": [{"pe", "simd", "pad"}, ...]}``) to use instead of the
        export's folding.
    pixels_per_beat : int
        Pixels per ``s_axis`` beat.
    writable_params : bool
        Weight, threshold and gate memories are RAMs the host can load at run time
        (``fracbnn_ram.v`` is written beside ``fracbnn_rom.v``; docs/hardware.md "Writable
        parameters").
    ram_style : str or hw.memory_style.RamStyle, optional
        Where the parameter memories go (``--ram-style``, :mod:`hw.memory_style`); default
        ``auto``: the depth-aware rule.  Written to ``design.json`` (``memories``).

    Returns the output directory.  Raises :class:`sw.errors.UserError` on bad input.
    """
    from .accelerator import Accelerator, plan_stages
    from .netlist import convert_flat
    from .rom import VERILOG_RAM_SOURCE, VERILOG_ROM_SOURCE

    from sw.atomic_dir import check_apart

    export_dir, outdir = Path(export_dir).resolve(), Path(outdir).resolve()
    # Check every input before anything is written or shown.
    check_apart(outdir, [export_dir, fold if isinstance(fold, (str, Path)) else None],
                "output directory")
    net = load_compiled_network(export_dir)
    if fold is not None:
        folding = fold_config_from_json(fold, len(net.layers), net.fold_shapes)
        net = refold(net, folding)
    check_pixels_per_beat(net, pixels_per_beat)
    plan_stages(net, pixels_per_beat)
    from .memory_style import RamStyle, parse_ram_style
    if not isinstance(ram_style, RamStyle):
        ram_style = parse_ram_style(ram_style)
    ram_style.check(net)
    steps = ["memories", "elaborate", "verilog", "summary"]
    bar = None
    if progress:
        from sw.progress import progress_bar
        bar = progress_bar(total=len(steps), desc="generate", unit="step")

    def done(step):
        if bar is not None:
            bar.set_postfix_str(step)
            bar.update(1)

    try:
        from sw.progress import heartbeat
        with atomic_directory(outdir, marker=_DESIGN_JSON, what="generated design") as tmp, \
                _quiet_if_abandoned(), heartbeat(f"generating {outdir}", enabled=progress):
            if fold is None:
                # Same folding: the export's .mem files are the source of truth, copied as is.
                mem_files = [name for name, _, _ in memory_files(net)]
                for name in mem_files:
                    shutil.copyfile(export_dir / name, tmp / name)
            else:
                mem_files = write_memories(net, tmp)
            done("memories")
            accel = Accelerator(net, init_dir=tmp, pixels_per_beat=pixels_per_beat,
                                rom_mode="verilog", writable_params=writable_params,
                                ram_style=ram_style)
            done("elaborate")
            text = convert_flat(accel, TOP_NAME, keep=_layer_taps(
                accel.stages, [ex.after for ex in net.exits]))
            (tmp / f"{TOP_NAME}.v").write_text(text)
            shutil.copyfile(VERILOG_ROM_SOURCE, tmp / VERILOG_ROM_SOURCE.name)
            shutil.copyfile(WAIVER_FILE, tmp / WAIVER_FILE.name)
            ram = []
            if writable_params:
                shutil.copyfile(VERILOG_RAM_SOURCE, tmp / VERILOG_RAM_SOURCE.name)
                ram = [VERILOG_RAM_SOURCE.name]
            done("verilog")
            files = [f"{TOP_NAME}.v", VERILOG_ROM_SOURCE.name, *ram, WAIVER_FILE.name,
                     *mem_files]
            summary = design_summary(accel, files)
            (tmp / _DESIGN_JSON).write_text(json.dumps(json_safe(summary), indent=2,
                                                       allow_nan=False) + "\n")
            done("summary")
    finally:
        if bar is not None:
            bar.close()
    return outdir


def _is_residual(export_dir) -> bool:
    """Whether ``export_dir`` holds a residual (version 4) network (any other problem is
    left to the loader's one-line error)."""
    from sw.network_io import _read_document
    from sw.residual_graph import RESIDUAL_VERSION
    try:
        return _read_document(export_dir)[2] == RESIDUAL_VERSION
    except UserError:
        return False


def _main_residual(args) -> int:
    """``python -m hw.generate`` on a version 4 export: the residual accelerator
    (:func:`hw.residual_generate.generate_residual`), one summary line."""
    from sw.network_io import load_network

    from .residual_accelerator import resolve_folding
    from .residual_generate import generate_residual

    if args.writable_params:
        raise UserError("--writable-params: the residual accelerator has ROM parameters only; "
                        "drop --writable-params")
    if args.ram_style != "auto":
        raise UserError("--ram-style: the residual accelerator places its memories itself "
                        "(the auto rule); drop --ram-style")
    _, note = resolve_folding(load_network(args.export_dir), args.fold)
    if note:
        print(f"note: {note}", file=sys.stderr)
    out = generate_residual(args.export_dir, args.outdir, pixels_per_beat=args.pixels_per_beat,
                            fold=args.fold)
    doc = json.loads((out / _DESIGN_JSON).read_text())
    cm = ", ".join(f"{k}: latency {v['latency']}, II {v['ii']} cycles/image"
                   for k, v in doc["cycle_model"].items())
    pes = sorted({f["pe"] for f in doc["folding"]})
    print(f"wrote {out}: residual network {doc['network']}, PE {pes[0]}, "
          f"{doc['pixels_per_beat']} pixels/beat, skip FIFO depths {doc['skip_fifo_depths']}; "
          f"cycle model (gates {cm})")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hw.generate",
        description="Generate the FracBNN accelerator Verilog from a compiled network.")
    parser.add_argument("export_dir", metavar="EXPORTDIR", help="compiled-network directory")
    parser.add_argument("outdir", metavar="OUTDIR", help="output directory (replaced atomically)")
    parser.add_argument("--fold", metavar="FOLD.json", help="folding file overriding the export's")
    parser.add_argument("--writable-params", action="store_true",
                        help="weights, thresholds and gates in RAMs the host loads at run time "
                             "(PARAM_SELECT/PARAM_DATA registers; sw.runtime Accelerator.load)")
    parser.add_argument("--pixels-per-beat", type=int, default=8, metavar="N",
                        help="pixels per input AXI-Stream beat (default 8)")
    parser.add_argument("--ram-style", metavar="SPEC", default="auto",
                        help="where weight/threshold/gate memories go: auto (default: block "
                             "RAM only above 32 words and 4 Kb), block or distributed, "
                             "optionally per layer or memory, e.g. "
                             "'L0=block,L2.thresholds=distributed' (hw/memory_style.py)")
    args = parser.parse_args(argv)
    from sw.atomic_dir import check_writable_dir
    check_writable_dir(args.outdir, "output directory")   # before the network is even read
    if _is_residual(args.export_dir):
        return _main_residual(args)
    out = generate(args.export_dir, args.outdir, fold=args.fold,
                   pixels_per_beat=args.pixels_per_beat, progress=True,
                   writable_params=args.writable_params, ram_style=args.ram_style)
    summary = json.loads((out / _DESIGN_JSON).read_text())
    model = summary["cycle_model"]
    exact = model["ii_exact"]
    ii = (f"II {exact['best']:g}..{exact['worst']:g} cycles/image" if None not in exact.values()
          else f"II >= {model['ii']['best']}..{model['ii']['worst']} cycles/image")
    if summary["exits"]:
        ii = (f"slowest stage {model['ii']['worst']} cycles/image (the II when no image exits; "
              f"less as images leave early: measure it with python -m sim.run)")
    print(f"wrote {out}: {len(summary['layers'])} layers, {ii}, "
          f"latency {model['latency']['best']}..{model['latency']['worst']} cycles")
    for layer in summary["layers"]:
        print(f"  {layer['name']}: {layer['input_mode']}, {layer['out']} "
              f"({layer['levels'] or 'scores'}{' levels' if layer['levels'] else ''}), "
              f"PE {layer['pe']} SIMD {layer['simd']}")
    for ex in summary["exits"]:
        print(f"  exit{ex['index']} after layer {ex['after']}: margin {ex['margin']}, "
              f"{ex['input_mode']}, PE {ex['pe']} SIMD {ex['simd']}")
    placed = {"block": [], "distributed": []}
    for mem in summary["memories"]:
        placed[mem["style"]].append(mem["name"])
    print(f"  memories ({summary['ram_style']}): block RAM "
          f"{', '.join(placed['block']) or 'none'}; distributed "
          f"{', '.join(placed['distributed']) or 'none'}")
    for note in summary.get("bottleneck_notes", []):
        print(f"warning: {note}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    cli_main(main)
