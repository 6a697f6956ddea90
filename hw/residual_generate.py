"""The Verilog design directory of a residual (version 4) network: the flat
:class:`hw.residual_accelerator.ResidualAccelerator` and what the simulators and the board
build read beside it (docs/hardware.md "Residual accelerator", **Verilog**).

``python -m hw.residual_generate EXPORTDIR OUTDIR [--pixels-per-beat N] [--fold FOLD.json]``
(``python -m hw.generate`` dispatches here for version 4 exports).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from sw.atomic_dir import atomic_directory, check_apart
from sw.memory_layout import memory_widths, memory_words
from sw.errors import UserError
from sw.memfile import write_mem
from sw.network_io import load_network
from sw.residual_graph import ResidualNetwork

from . import residual_timing
from .generate import TOP_NAME, WAIVER_FILE
from .netlist import convert_flat
from .residual_accelerator import PlanBlock, ResidualAccelerator, plan_residual, resolve_folding
from .rom import VERILOG_ROM_SOURCE

__all__ = ["generate_residual", "main"]



def generate_residual(export_dir, outdir, *, pixels_per_beat: int = 1, fold=None) -> Path:
    """Write a design directory for a version 4 export, laid out like ``hw.generate``'s (so
    the Verilator harnesses of :mod:`sim` take it): ``fracbnn_top.v`` (the flat
    :class:`ResidualAccelerator` with ``rom_mode="verilog"``), ``fracbnn_rom.v``, the waiver,
    the engines' ``L*.mem`` files (laid out for the folding used) and a ``design.json`` with
    ``pixels_per_beat``, ``classes``, the folding, the skip FIFO depths and the cycle model's
    numbers.  ``fold``: as :func:`resolve_folding` (default: the export's folding, refolded
    to one PE when its convolutions' PEs differ).  The fixed-point units' constants are
    initialised memories inside ``fracbnn_top.v`` (not ``.mem`` files yet)."""
    export_dir, outdir = Path(export_dir).resolve(), Path(outdir).resolve()
    check_apart(outdir, [export_dir, fold if isinstance(fold, (str, Path)) and fold != "uniform"
                         else None], "output directory")
    net = load_network(export_dir)
    if not isinstance(net, ResidualNetwork):
        raise UserError(f"{export_dir} is not a residual (version 4) network; use hw.generate")
    net, _ = resolve_folding(net, fold)
    plan_residual(net, pixels_per_beat)         # every refusal before anything is built
    with atomic_directory(outdir, marker="design.json", what="generated design") as tmp:
        mems = []
        for layer in net.layers:                # the engines' memories for this folding
            for kind, width in memory_widths(layer).items():
                mems.append(f"L{layer.index}_{kind}.mem")
                write_mem(tmp / mems[-1], memory_words(layer, kind), width)
        acc = ResidualAccelerator(net, init_dir=tmp, pixels_per_beat=pixels_per_beat,
                                  rom_mode="verilog")
        stages = _stage_list(acc.plan.items)
        # Each engine's output stream keeps its names (the testbench's layer taps).
        keep = [name for k, st in enumerate(stages[:-1]) if st["kind"] == "mvtu"
                for name in (f"{st['name']}.o__valid", f"{st['name']}.o__payload",
                             f"{stages[k + 1]['name']}.i__ready")]
        (tmp / f"{TOP_NAME}.v").write_text(convert_flat(acc, TOP_NAME, keep=keep))
        shutil.copyfile(VERILOG_ROM_SOURCE, tmp / VERILOG_ROM_SOURCE.name)
        shutil.copyfile(WAIVER_FILE, tmp / WAIVER_FILE.name)
        doc = {"top": TOP_NAME, "network": net.name, "kind": "residual",
               "pixels_per_beat": pixels_per_beat, "classes": net.classes,
               "elems_per_beat": acc.elems_per_beat, "fixed_elems": acc.plan.fixed_elems,
               "score_bits": acc.plan.score_bits,
               "folding": [l.folding.to_json() for l in net.layers],
               "stages": stages,
               "layers": [_layer_doc(l, eng) for l, eng in zip(net.layers, acc.engines)],
               "skip_fifo_depths": acc.skip_depths,
               "cycle_model": residual_timing.cycle_summary(net, pixels_per_beat),
               "files": [f"{TOP_NAME}.v", VERILOG_ROM_SOURCE.name, WAIVER_FILE.name, *mems]}
        (tmp / "design.json").write_text(json.dumps(doc, indent=2) + "\n")
    return outdir


def _stage_list(items: list) -> list[dict]:
    """The plan's stages in stream order (a block: its fork, main path, shortcut and add), as
    ``design.json``'s ``stages`` (``kind``, ``name``, ``layer`` for engines and narrowing
    stages): an engine's consumer is the next entry (:func:`sim.reference.layer_taps`)."""
    out = []
    for item in items:
        if isinstance(item, PlanBlock):
            out.append({"kind": "fork", "name": f"{item.name}_fork"})
            out += _stage_list(item.main) + _stage_list(item.skip)
            out.append({"kind": "fixed", "name": item.name})
            continue
        entry = {"kind": item.kind, "name": item.name}
        if item.layer is not None:
            entry["layer"] = item.layer.index
        out.append(entry)
    return out


def _layer_doc(layer, engine) -> dict:
    """A convolution's ``design.json`` entry (what the testbench's layer taps read: its
    engine emits ``NF`` beats of ``PE`` signed ``acc_width``-bit scores per output pixel)."""
    return {"index": layer.index, "name": layer.name, "out": layer.out,
            "in_features": layer.in_features, "out_features": layer.out_features,
            "in_bits": layer.in_bits, "pe": layer.folding.pe, "simd": layer.folding.simd,
            "synapse_folds": layer.synapse_folds, "neuron_folds": layer.neuron_folds,
            "vectors": layer.vectors_per_image, "conv": layer.conv.to_json(), "pool": 0,
            "levels": 0, "acc_width": engine.acc_width}


def main(argv=None) -> int:
    """``python -m hw.residual_generate EXPORTDIR OUTDIR [--pixels-per-beat N] [--fold F]``."""
    parser = argparse.ArgumentParser(
        prog="python -m hw.residual_generate",
        description="Generate the Verilog design of a residual (version 4) network.")
    parser.add_argument("export_dir", metavar="EXPORTDIR")
    parser.add_argument("outdir", metavar="OUTDIR")
    parser.add_argument("--pixels-per-beat", type=int, default=1, metavar="N")
    parser.add_argument("--fold", metavar="FOLD.json",
                        help="folding file, one entry per convolution (default: the export's, "
                             "refolded to one PE if its PEs differ)")
    args = parser.parse_args(argv)
    try:
        out = generate_residual(args.export_dir, args.outdir,
                                pixels_per_beat=args.pixels_per_beat, fold=args.fold)
    except UserError as exc:
        print(f"error: {exc}")
        return 2
    doc = json.loads((out / "design.json").read_text())
    cm = ", ".join(f"{k}: latency {v['latency']}, II {v['ii']} cycles/image"
                   for k, v in doc["cycle_model"].items())
    print(f"wrote {out}: E = {doc['elems_per_beat']} (fixed-point streams "
          f"{doc['fixed_elems']}), {doc['score_bits']}-bit scores, "
          f"skip FIFO depths {doc['skip_fifo_depths']}; {cm}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
