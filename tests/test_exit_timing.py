"""The early-exit units' timing models equal their RTL cycle by cycle (Amaranth simulation,
random valid/ready on every port), and the cycle model with exits equals the accelerator's
measured timing for every image."""

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth import unsigned
from amaranth.lib import fifo
from amaranth.sim import Simulator

from hw.exit_decision import DecisionTiming, ExitDecision
from hw.hold_buffer import HoldBufferTiming, HoldDropBuffer
from hw.stream_fork import ForkTiming, StreamFork
from hw.sync_fifo_timing import SyncFifoTiming
from sw.golden import exit_margins

CYCLES = 600


def _run(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


class _Source:
    """A random valid that, once raised, holds until its handshake (the stream rule)."""

    def __init__(self, rng, p):
        self.rng, self.p, self.valid = rng, p, False

    def next(self, fired: bool) -> bool:
        if fired or not self.valid:
            self.valid = self.rng.random() < self.p
        return self.valid


@pytest.mark.parametrize("depth", [2, 3, 8])
@pytest.mark.parametrize("seed", range(3))
def test_sync_fifo_timing(depth, seed):
    dut = fifo.SyncFIFOBuffered(width=8, depth=depth)
    model = SyncFifoTiming(depth)

    async def bench(ctx):
        rng = random.Random(seed)
        value = 0
        for _ in range(CYCLES):
            w_en, r_en = rng.random() < 0.6, rng.random() < 0.5
            ctx.set(dut.w_en, w_en)
            ctx.set(dut.w_data, value & 0xFF)
            ctx.set(dut.r_en, r_en)
            assert ctx.get(dut.w_rdy) == model.w_rdy()
            assert ctx.get(dut.r_rdy) == model.r_rdy()
            if model.r_rdy():
                assert ctx.get(dut.r_data) == model.head()
            model.step(w_en, r_en, value & 0xFF)
            value += w_en and ctx.get(dut.w_rdy)
            await ctx.tick()

    _run(dut, bench)


@pytest.mark.parametrize("seed", range(4))
def test_fork_timing(seed):
    dut = StreamFork(unsigned(4), 2)
    model = ForkTiming(2)

    async def bench(ctx):
        rng = random.Random(seed)
        src, fired = _Source(rng, 0.7), False
        for _ in range(CYCLES):
            valid = src.next(fired)
            readies = [rng.random() < 0.6, rng.random() < 0.4]
            ctx.set(dut.i.valid, valid)
            for o, r in zip(dut.outputs, readies):
                ctx.set(o.ready, r)
            assert ctx.get(dut.i.ready) == model.ready(readies)
            for j, o in enumerate(dut.outputs):
                assert ctx.get(o.valid) == model.out_valid(j, valid)
            fired = valid and model.ready(readies)
            model.step(valid, readies)
            await ctx.tick()

    _run(dut, bench)


@pytest.mark.parametrize("beats,depth", [(1, 1), (3, 3), (3, 7), (5, 16)])
@pytest.mark.parametrize("seed", range(3))
def test_hold_buffer_timing(beats, depth, seed):
    depth = max(depth, 2)    # SyncFIFOBuffered of depth 1 is a special case, never built
    dut = HoldDropBuffer(4, beats, depth)
    model = HoldBufferTiming(beats, depth)

    async def bench(ctx):
        rng = random.Random(seed)
        src, dsrc = _Source(rng, 0.7), _Source(rng, 0.3)
        fired = dfired = False
        drop = False
        for _ in range(CYCLES):
            valid, dvalid = src.next(fired), dsrc.next(dfired)
            if dfired or not dvalid:
                drop = rng.random() < 0.5
            o_ready = rng.random() < 0.6
            ctx.set(dut.i.valid, valid)
            ctx.set(dut.d.valid, dvalid)
            ctx.set(dut.d.payload, drop)
            ctx.set(dut.o.ready, o_ready)
            assert ctx.get(dut.i.ready) == model.i_ready()
            assert ctx.get(dut.d.ready) == model.d_ready()
            assert ctx.get(dut.o.valid) == model.o_valid()
            fired = valid and model.i_ready()
            dfired = dvalid and model.d_ready()
            model.step(fired, dfired, drop, o_ready)
            await ctx.tick()

    _run(dut, bench)


@pytest.mark.parametrize("classes,margin", [(2, 0), (4, 3), (10, 5)])
@pytest.mark.parametrize("seed", range(3))
def test_decision_timing(classes, margin, seed):
    width = 6
    rng = np.random.default_rng(seed)
    scores = rng.integers(-(1 << (width - 1)), 1 << (width - 1), (80, classes))
    takes = exit_margins(scores) >= margin
    dut = ExitDecision(classes, margin, width)
    model = DecisionTiming(classes, lambda i: takes[i])

    async def bench(ctx):
        r = random.Random(seed)
        src, fired, beat = _Source(r, 0.7), False, 0
        images = 0
        while images < len(scores) - 1:
            valid = src.next(fired)
            d_ready, o_ready = r.random() < 0.5, r.random() < 0.6
            img, k = divmod(beat, 1 + classes)
            data = 0 if k == 0 else int(scores[img, k - 1]) & 0xFFFFFFFF
            ctx.set(dut.i.valid, valid)
            ctx.set(dut.i.payload.data, data)
            ctx.set(dut.i.payload.last, k == classes)
            ctx.set(dut.d.ready, d_ready)
            ctx.set(dut.o.ready, o_ready)
            assert ctx.get(dut.i.ready) == model.i_ready()
            assert ctx.get(dut.d.valid) == model.d_valid()
            if model.d_valid():
                assert ctx.get(dut.d.payload) == model.d_payload()
            assert ctx.get(dut.o.valid) == model.o_valid()
            fired = valid and model.i_ready()
            d_fire = model.d_valid() and d_ready
            images += d_fire
            model.step(fired, d_fire, model.o_valid() and o_ready)
            beat += fired
            await ctx.tick()

    _run(dut, bench)
