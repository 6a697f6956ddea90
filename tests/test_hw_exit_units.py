"""Early-exit units (stream fork, exit decision, hold-or-drop buffer, in-order merge): every
beat once and in order under random idle and backpressure, the golden exit rule, and the
composed exit stage free of deadlock."""

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth import Module, unsigned
from amaranth.lib import stream, wiring
from amaranth.sim import Simulator

from hw.exit_decision import RESULT_LAYOUT, ExitDecision
from hw.exit_merge import InOrderMerge
from hw.hold_buffer import HoldDropBuffer
from hw.stream_fork import StreamFork
from hw.stream_slice import RegisterSlice
from sw.golden import exit_margins
from tests.stream_bench import stream_recv, stream_send

LAST = 1 << 32

# The refused HoldDropBuffer is never elaborated.
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def _run(dut, sends, recvs, *, deadline=200000):
    """Run ``sends`` [(port, beats, idle, seed)] and ``recvs`` [(port, count, stall, seed)];
    returns the received beats per receiver."""
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    got = [None] * len(recvs)
    for port, beats, idle, seed in sends:
        async def feed(ctx, port=port, beats=beats, idle=idle, seed=seed):
            await stream_send(ctx, port, beats, rng=random.Random(seed), idle=idle)
        sim.add_testbench(feed)
    for k, (port, count, stall, seed) in enumerate(recvs):
        async def drain(ctx, k=k, port=port, count=count, stall=stall, seed=seed):
            got[k] = await stream_recv(ctx, port, count, rng=random.Random(seed), stall=stall,
                                       timeout=deadline)
        sim.add_testbench(drain)
    sim.run()
    return got


def _images(n, classes, width, seed):
    """Result beats (class, then scores) of ``n`` random images, and their scores."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(-(1 << (width - 1)), 1 << (width - 1), (n, classes))
    scores[::5, 1] = scores[::5, 0]                      # ties
    scores[::7] = scores[::7] // 16                      # small margins
    out = []
    for s in scores:
        beats = [int(np.argmax(s))] + [int(v) & 0xFFFFFFFF for v in s]
        beats[-1] |= LAST
        out.append(beats)
    return out, scores


IDLE_STALL = [(0.0, 0.0), (0.3, 0.0), (0.0, 0.6), (0.4, 0.4)]


@pytest.mark.parametrize("idle,stall", IDLE_STALL)
def test_fork_every_beat_to_every_output(idle, stall):
    beats = [random.Random(1).getrandbits(8) for _ in range(150)]
    dut = StreamFork(unsigned(8), 3)
    got = _run(dut, [(dut.i, beats, idle, 1)],
               [(o, len(beats), stall * (j + 1) / 3, 10 + j) for j, o in enumerate(dut.outputs)])
    assert got == [beats] * 3


@pytest.mark.parametrize("idle,stall", IDLE_STALL)
@pytest.mark.parametrize("margin", [0, 3, 40])
def test_exit_decision_is_the_golden_rule(idle, stall, margin):
    classes, width, n = 6, 7, 60
    images, scores = _images(n, classes, width, seed=margin)
    take = (exit_margins(scores) >= margin).astype(int).tolist()
    assert 0 < sum(take) < n or margin == 0
    dut = ExitDecision(classes, margin, width)
    want_o = [b for t, img in zip(take, images) if t for b in img]
    got_d, got_o = _run(dut, [(dut.i, [b for img in images for b in img], idle, 2)],
                        [(dut.d, n, stall, 3), (dut.o, len(want_o), stall, 4)])
    assert got_d == take and got_o == want_o


@pytest.mark.parametrize("idle,stall", IDLE_STALL)
@pytest.mark.parametrize("beats_per_image,depth", [(3, 3), (4, 9), (1, 1)])
def test_hold_buffer_forwards_or_drops_whole_images(idle, stall, beats_per_image, depth):
    rng = random.Random(beats_per_image * 10 + depth)
    n = 50
    beats = [rng.getrandbits(12) for _ in range(n * beats_per_image)]
    drop = [rng.random() < 0.5 for _ in range(n)]
    want = [b for i in range(n) if not drop[i]
            for b in beats[i * beats_per_image:(i + 1) * beats_per_image]]
    dut = HoldDropBuffer(12, beats_per_image, depth)
    got, = _run(dut, [(dut.i, beats, idle, 5), (dut.d, [int(d) for d in drop], 0.5, 6)],
                [(dut.o, len(want), stall, 7)])
    assert got == want


def test_hold_buffer_refuses_a_depth_below_one_image():
    with pytest.raises(ValueError, match="deadlock"):
        HoldDropBuffer(8, 4, 3)


@pytest.mark.parametrize("idle,stall", IDLE_STALL)
def test_merge_keeps_image_order(idle, stall):
    rng = random.Random(9)
    order = [rng.getrandbits(1) for _ in range(80)]
    results = [[rng.getrandbits(32) for _ in range(3)] + [rng.getrandbits(32) | LAST]
               for _ in order]
    dut = InOrderMerge()
    exit_beats = [b for o, r in zip(order, results) if o for b in r]
    rest_beats = [b for o, r in zip(order, results) if not o for b in r]
    got, = _run(dut, [(dut.order, order, idle, 1), (dut.exit, exit_beats, idle, 2),
                      (dut.rest, rest_beats, idle, 3)],
                [(dut.o, 4 * len(order), stall, 4)])
    assert got == [b for r in results for b in r]


class ExitStage(wiring.Component):
    """The composition of docs/hardware.md "Early exits" with the engines left out: the
    input stream is forked to an exit decision (the exit path) and a hold buffer (the deep
    path, here a register slice standing for engine k + 1 onwards); the decision is forked
    to the hold buffer (drop) and the merge's order FIFO."""

    def __init__(self, classes, margin, width, depth):
        self.args = (classes, margin, width, depth)
        super().__init__({"i": wiring.In(stream.Signature(RESULT_LAYOUT)),
                          "o": wiring.Out(stream.Signature(RESULT_LAYOUT)),
                          "taken": wiring.Out(unsigned(1))})

    def elaborate(self, platform):
        classes, margin, width, depth = self.args
        m = Module()
        m.submodules.fork = fork = StreamFork(RESULT_LAYOUT, 2)
        m.submodules.decide = decide = ExitDecision(classes, margin, width)
        m.submodules.hold = hold = HoldDropBuffer(33, 1 + classes, depth)
        m.submodules.dfork = dfork = StreamFork(unsigned(1), 2)
        m.submodules.deep = deep = RegisterSlice(RESULT_LAYOUT)
        m.submodules.merge = merge = InOrderMerge()
        wiring.connect(m, wiring.flipped(self.i), fork.i)
        wiring.connect(m, fork.o0, decide.i)
        m.d.comb += [hold.i.payload.eq(fork.o1.payload), hold.i.valid.eq(fork.o1.valid),
                     fork.o1.ready.eq(hold.i.ready)]
        wiring.connect(m, decide.d, dfork.i)
        wiring.connect(m, dfork.o0, hold.d)                 # 1 = exits here = drop
        wiring.connect(m, dfork.o1, merge.order)            # 1 = take the exit's result
        m.d.comb += [deep.i.payload.eq(hold.o.payload), deep.i.valid.eq(hold.o.valid),
                     hold.o.ready.eq(deep.i.ready)]
        wiring.connect(m, decide.o, merge.exit)
        wiring.connect(m, deep.o, merge.rest)
        wiring.connect(m, merge.o, wiring.flipped(self.o))
        m.d.comb += self.taken.eq(merge.taken)
        return m


@pytest.mark.parametrize("idle,stall", IDLE_STALL + [(0.1, 0.9)])
@pytest.mark.parametrize("depth_images", [1, 3])
def test_exit_stage_in_order_without_deadlock(idle, stall, depth_images):
    classes, width, margin, n = 4, 6, 5, 60
    images, scores = _images(n, classes, width, seed=depth_images)
    take = exit_margins(scores) >= margin
    assert 0 < take.sum() < n
    dut = ExitStage(classes, margin, width, depth_images * (1 + classes))
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    got = []

    async def feed(ctx):
        await stream_send(ctx, dut.i, [b for img in images for b in img],
                          rng=random.Random(11), idle=idle)

    async def drain(ctx):
        got.extend(await stream_recv(ctx, dut.o, n * (1 + classes), rng=random.Random(12),
                                     stall=stall, extra=(dut.taken,), timeout=100000))

    sim.add_testbench(feed)
    sim.add_testbench(drain)
    sim.run()
    assert [b for b, _ in got] == [b for img in images for b in img]
    # The merge's path flag on each image's first beat: the exit exactly where the rule says.
    assert [t for _, t in got][::1 + classes] == take.astype(int).tolist()
