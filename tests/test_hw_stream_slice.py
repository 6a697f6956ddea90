"""RegisterSlice: every beat once, in order, under random idle and backpressure; registered
outputs; the timing model agrees with the RTL's handshakes cycle for cycle."""

import random

import pytest
from amaranth import unsigned
from amaranth.lib import data
from amaranth.sim import Simulator

from hw.stream_slice import RegisterSlice, RegisterSliceTiming
from tests.stream_bench import stream_recv, stream_send


class TB:
    """Drives a :class:`RegisterSlice` and records both handshakes every cycle."""

    def __init__(self, shape, beats, *, idle, stall, seed):
        self.dut = RegisterSlice(shape)
        self.beats, self.idle, self.stall, self.seed = beats, idle, stall, seed
        self.got, self.trace = [], []

    def run(self):
        dut, n = self.dut, len(self.beats)
        sim = Simulator(dut)
        sim.add_clock(1e-8)

        async def feed(ctx):
            await stream_send(ctx, dut.i, self.beats, rng=random.Random(self.seed),
                              idle=self.idle)

        async def drain(ctx):
            self.got = await stream_recv(ctx, dut.o, n, rng=random.Random(self.seed + 1),
                                         stall=self.stall)

        async def monitor(ctx):
            async for _, _, iv, ir, ov, orr in ctx.tick().sample(
                    dut.i.valid, dut.i.ready, dut.o.valid, dut.o.ready):
                self.trace.append((iv, ir, ov, orr))

        sim.add_testbench(feed)
        sim.add_testbench(drain)
        sim.add_process(monitor)
        sim.run()
        return self


@pytest.mark.parametrize("idle,stall", [(0.0, 0.0), (0.3, 0.0), (0.0, 0.5), (0.4, 0.4),
                                        (0.1, 0.8)])
@pytest.mark.parametrize("shape", [unsigned(8), data.StructLayout({"data": 32, "last": 1})])
def test_every_beat_in_order_and_model(shape, idle, stall):
    width = data.Layout.cast(shape).size if isinstance(shape, data.Layout) else shape.width
    rng = random.Random(width)
    beats = [rng.getrandbits(width) for _ in range(200)]
    tb = TB(shape, beats, idle=idle, stall=stall, seed=int(100 * (idle + 2 * stall))).run()
    assert tb.got == beats
    model = RegisterSliceTiming()
    for cycle, (iv, ir, ov, orr) in enumerate(tb.trace):
        assert (model.ready(), model.valid()) == (bool(ir), bool(ov)), f"cycle {cycle}"
        model.step(bool(iv and ir), bool(ov and orr), cycle)


def test_full_throughput_and_latency():
    beats = list(range(50))
    tb = TB(unsigned(8), beats, idle=0.0, stall=0.0, seed=0).run()
    fires_in = [c for c, (iv, ir, _, _) in enumerate(tb.trace) if iv and ir]
    fires_out = [c for c, (_, _, ov, orr) in enumerate(tb.trace) if ov and orr]
    assert fires_in == list(range(50))
    assert fires_out == [c + tb.dut.latency for c in fires_in]
