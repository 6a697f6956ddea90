# amaranth: UnusedElaboratable=no
# (components rejected by their constructor or only inspected are never elaborated)
"""PopcountTree against numpy: random vectors, many widths, latency and valid alignment."""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from hw.popcount import PopcountTree, popcount_latency, popcount_width


@pytest.mark.parametrize("width,lps", [(1, 3), (2, 1), (7, 3), (7, 1), (64, 3), (100, 2),
                                       (100, 7), (1024, 3)])
def test_counts_ones_with_declared_latency(width, lps):
    dut = PopcountTree(width, levels_per_stage=lps)
    assert dut.latency == popcount_latency(width, lps)
    assert len(dut.o_count) == popcount_width(width) == width.bit_length()
    rng = random.Random(width * 31 + lps)
    n = 40 if width < 1024 else 12
    # all-zero, all-one, then random densities
    vecs = [0, (1 << width) - 1] + [
        sum(1 << k for k in range(width) if rng.random() < d)
        for d in (rng.random() for _ in range(n))]
    valids = [rng.random() < 0.7 for _ in vecs]
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
    for k, v in enumerate(vecs):
        valid, count = seen[k + lat]
        assert valid == valids[k]
        assert count == bin(v).count("1"), f"vector {k}"
    assert not any(v for v, _ in seen[len(vecs) + lat:])


def test_latency_formula():
    assert popcount_latency(1) == 1          # the input register only
    assert popcount_latency(2) == 2          # input register + one level
    assert popcount_latency(4) == 2          # two levels, one stage
    assert popcount_latency(8, 3) == 2       # three levels, one stage
    assert popcount_latency(9) == 3
    assert popcount_latency(1024, 2) == 6


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_rejects_bad_width(bad):
    with pytest.raises(ValueError, match="width must be a positive int"):
        PopcountTree(bad)


def test_rejects_bad_levels():
    with pytest.raises(ValueError, match="levels_per_stage"):
        PopcountTree(8, levels_per_stage=0)
