"""``python -m hw.generate EXPORTDIR OUTDIR [--fold FOLD.json] [--pixels-per-beat 8]``.

Turns a compiled-network directory (docs/compiled-network.md) into a Verilog design:

``OUTDIR/fracbnn_top.v``          the accelerator, one flat module ``fracbnn_top`` (Amaranth RTLIL
                                 cleaned by Yosys, :mod:`hw.netlist`)
``OUTDIR/fracbnn_rom.v``          the ``$readmemh`` ROM the top instantiates for every memory
``OUTDIR/L{i}_*.mem``             the ROM contents for this folding (``INIT_FILE`` names)
``OUTDIR/verilator_waiver.vlt``   the Verilator lint waiver (see docs/hardware.md)
``OUTDIR/design.json``            ports, folding, cycle-model predictions (see :func:`design_summary`)

The output directory is built in a temporary sibling and renamed into place, so it is either
complete or absent (or the previous complete output).  Bad inputs give a one-line error.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from amaranth.hdl import Shape
from amaranth.lib.wiring import In

from sw.compiled_net import (CompiledNetwork, fold_config_from_json, load_compiled_network,
                             pack_gate_words, pack_threshold_words, pack_weight_words, refold)
from sw.atomic_dir import atomic_directory
from sw.errors import UserError, cli_main
from sw.memfile import write_mem

__all__ = ["generate", "design_summary", "write_memories", "main", "TOP_NAME", "WAIVER_FILE"]

TOP_NAME = "fracbnn_top"
WAIVER_FILE = Path(__file__).with_name("verilator_waiver.vlt")
_DESIGN_JSON = "design.json"


def write_memories(net: CompiledNetwork, directory: Path) -> list[str]:
    """Write every layer's ``.mem`` files laid out for ``net``'s folding; return their names."""
    names = []
    for layer in net.layers:
        i = layer.index
        mems = [(f"L{i}_weights.mem", pack_weight_words(layer), layer.weight_width)]
        if layer.threshold_count:
            mems.append((f"L{i}_thresholds.mem", pack_threshold_words(layer),
                         layer.threshold_width))
        if layer.in_bits == 2:
            mems.append((f"L{i}_gates.mem", pack_gate_words(layer), layer.gate_width))
        for name, words, width in mems:
            write_mem(directory / name, words, width)
            names.append(name)
    return names


def _memory_names(net: CompiledNetwork) -> list[str]:
    names = []
    for layer in net.layers:
        names.append(f"L{layer.index}_weights.mem")
        if layer.threshold_count:
            names.append(f"L{layer.index}_thresholds.mem")
        if layer.in_bits == 2:
            names.append(f"L{layer.index}_gates.mem")
    return names


def design_summary(accel, files: list[str]) -> dict:
    """The ``design.json`` document of an :class:`hw.accelerator.Accelerator`.

    Cycle numbers come from :mod:`hw.cycle_model`: per layer the engine cycles per vector
    (``min``: every gate closed, ``max``: every gate open; equal for 1-bit layers), the
    steady-state initiation interval (``ii``) and the latency of one image through the empty
    pipeline (first input beat accepted to class beat on ``m_axis``), best and worst case.
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
            "pe": layer.folding.pe, "simd": layer.folding.simd, "pad": layer.folding.pad,
            "mw_padded": layer.mw_padded, "mh_padded": layer.mh_padded,
            "synapse_folds": layer.synapse_folds, "neuron_folds": layer.neuron_folds,
            "kind": layer.kind, "vectors": layer.vectors_per_image,
            **({} if layer.conv is None else {
                "conv": layer.conv.to_json(), "pool": layer.pool}),
            "acc_width": engine.acc_width, "engine_latency": engine.latency,
            "pipeline_latency": engine.pipeline_latency,
            "cycles_per_vector": {"min": engine.compute_cycles(
                None if layer.in_bits == 1 else [False] * layer.out_features),
                "max": engine.compute_cycles()},
        })
    best = simulate_pipeline(net, 1, pixels_per_beat=ppb, gates="closed", engines=accel.engines)
    worst = simulate_pipeline(net, 1, pixels_per_beat=ppb, gates="open", engines=accel.engines)
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
        "stages": [s.to_json() for s in accel.stages],
        "registers": {"id": REG_ID_VALUE, "version": REG_VERSION_VALUE,
                      "config": accel._regs.config_word,
                      "addresses": {k.lower(): v for k, v in REG.items()}},
        "cycle_model": {
            "stage_cycles_per_image": {"best": best_stages, "worst": worst_stages},
            "ii": {"best": max(best_stages.values()), "worst": max(worst_stages.values())},
            # The real steady-state interval (stalls between stages included), from the
            # period of the cycle model with every gate closed / open.
            "ii_exact": _exact_ii(net, ppb, accel.engines),
            "latency": {"best": int(best.latency[0]), "worst": int(worst.latency[0])},
        },
        "bottleneck_notes": bottleneck_notes(net, ppb),
    }


def _exact_ii(net, ppb, engines) -> dict:
    """Exact steady-state II with every gate closed (best) and open (worst)."""
    from .cycle_model import exact_steady_state_ii

    best = exact_steady_state_ii(net, ppb, gates="closed", engines=engines)
    if all(layer.in_bits == 1 for layer in net.layers):
        return {"best": best, "worst": best}
    return {"best": best, "worst": exact_steady_state_ii(net, ppb, gates="open",
                                                         engines=engines)}


def _layer_taps(stages) -> list[str]:
    """Flattened names of each layer engine's output stream: ``mvtu<i>.o__valid``,
    ``mvtu<i>.o__payload`` and the next stage's ``i__ready`` (one name per net).

    Kept through the netlist clean-up so that testbenches can check every layer's outputs
    (sim/reference.py ``layer_taps``) and waveforms show them.
    """
    names = []
    for stage, consumer in zip(stages, stages[1:]):
        if stage.kind == "mvtu":
            names += [f"{stage.name}.o__valid", f"{stage.name}.o__payload",
                      f"{consumer.name}.i__ready"]
    return names


def generate(export_dir, outdir, *, fold=None, pixels_per_beat: int = 8,
             progress: bool = False) -> Path:
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

    Returns the output directory.  Raises :class:`sw.errors.UserError` on bad input.
    """
    from .accelerator import Accelerator, plan_stages
    from .netlist import convert_flat
    from .rom import VERILOG_ROM_SOURCE

    export_dir, outdir = Path(export_dir), Path(outdir)
    # Check every input before anything is written or shown.
    net = load_compiled_network(export_dir)
    if fold is not None:
        folding = fold_config_from_json(fold, len(net.layers), net.fold_shapes)
        net = refold(net, folding)
    plan_stages(net, pixels_per_beat)
    steps = ["memories", "elaborate", "verilog", "summary"]
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(steps), desc="generate", unit="step", leave=False,
                   disable=not sys.stderr.isatty())

    def done(step):
        if bar is not None:
            bar.set_postfix_str(step)
            bar.update(1)

    try:
        with atomic_directory(outdir, marker=_DESIGN_JSON, what="generated design") as tmp:
            if fold is None:
                # Same folding: the export's .mem files are the source of truth, copied as is.
                mem_files = _memory_names(net)
                for name in mem_files:
                    shutil.copyfile(export_dir / name, tmp / name)
            else:
                mem_files = write_memories(net, tmp)
            done("memories")
            accel = Accelerator(net, init_dir=tmp, pixels_per_beat=pixels_per_beat,
                                rom_mode="verilog")
            done("elaborate")
            text = convert_flat(accel, TOP_NAME, keep=_layer_taps(accel.stages))
            (tmp / f"{TOP_NAME}.v").write_text(text)
            shutil.copyfile(VERILOG_ROM_SOURCE, tmp / VERILOG_ROM_SOURCE.name)
            shutil.copyfile(WAIVER_FILE, tmp / WAIVER_FILE.name)
            done("verilog")
            files = [f"{TOP_NAME}.v", VERILOG_ROM_SOURCE.name, WAIVER_FILE.name, *mem_files]
            summary = design_summary(accel, files)
            (tmp / _DESIGN_JSON).write_text(json.dumps(summary, indent=2) + "\n")
            done("summary")
    finally:
        if bar is not None:
            bar.close()
    return outdir


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hw.generate",
        description="Generate the FracBNN accelerator Verilog from a compiled network.")
    parser.add_argument("export_dir", metavar="EXPORTDIR", help="compiled-network directory")
    parser.add_argument("outdir", metavar="OUTDIR", help="output directory (replaced atomically)")
    parser.add_argument("--fold", metavar="FOLD.json", help="folding file overriding the export's")
    parser.add_argument("--pixels-per-beat", type=int, default=8, metavar="N",
                        help="pixels per input AXI-Stream beat (default 8)")
    args = parser.parse_args(argv)
    if args.pixels_per_beat < 1:
        raise UserError(f"--pixels-per-beat must be a positive integer, not {args.pixels_per_beat}")
    out = generate(args.export_dir, args.outdir, fold=args.fold,
                   pixels_per_beat=args.pixels_per_beat, progress=True)
    summary = json.loads((out / _DESIGN_JSON).read_text())
    model = summary["cycle_model"]
    exact = model["ii_exact"]
    ii = (f"II {exact['best']:g}..{exact['worst']:g} cycles/image" if None not in exact.values()
          else f"II >= {model['ii']['best']}..{model['ii']['worst']} cycles/image")
    print(f"wrote {out}: {len(summary['layers'])} layers, {ii}, "
          f"latency {model['latency']['best']}..{model['latency']['worst']} cycles")
    for note in summary.get("bottleneck_notes", []):
        print(f"warning: {note}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    cli_main(main)
