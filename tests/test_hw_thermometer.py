"""ThermometerEncoder against the format's rule bit_{p*T+k} = pixel_p >= t_k."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.thermometer import ThermometerEncoder, default_thresholds
from tests.stream_bench import stream_recv, stream_send

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def reference(pixels: np.ndarray, thresholds) -> int:
    """Pack the expected thermometer bits of one beat (bit p*T + k)."""
    word = 0
    for p, pixel in enumerate(pixels):
        for k, t in enumerate(thresholds):
            word |= int(pixel >= t) << (p * len(thresholds) + k)
    return word


def run(ppb, thresholds, beats, *, idle=0.0, stall=0.0, seed=0):
    dut = ThermometerEncoder(ppb, thresholds)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(beats, ppb))
    # Make the edge cases t-1, t, t+1 appear.
    edges = [v for t in thresholds for v in (t - 1, t, t + 1) if 0 <= v <= 255] + [0, 255]
    for b in range(min(beats, len(edges))):
        pixels[b, 0] = edges[b]
    words = [sum(int(v) << (8 * j) for j, v in enumerate(row)) for row in pixels]
    out = []
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    prng = random.Random(seed)

    async def feed(ctx):
        await stream_send(ctx, dut.i, words, rng=prng, idle=idle)
    sim.add_testbench(feed)

    async def drain(ctx):
        out.extend(await stream_recv(ctx, dut.o, beats, rng=random.Random(seed + 1), stall=stall))
    sim.add_testbench(drain)
    sim.run()
    assert out == [reference(row, thresholds) for row in pixels]


@pytest.mark.parametrize("levels", [1, 2, 3, 7])
@pytest.mark.parametrize("ppb", [1, 4, 8])
def test_default_thresholds(ppb, levels):
    run(ppb, default_thresholds(levels), 40)


def test_custom_thresholds_with_stalls():
    run(3, [0, 5, 200, 256], 80, idle=0.3, stall=0.4, seed=3)


def test_equal_thresholds_are_duplicate_planes():
    """Equal thresholds (an imported 8-bit input quantizer that skips a level) give two
    identical planes."""
    run(2, [1, 64, 128, 128, 255], 60, idle=0.2, stall=0.2, seed=5)


def test_full_rate():
    """One beat per cycle in and out when never stalled."""
    dut = ThermometerEncoder(2, [128])
    times_in, times_out = [], []
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def feed(ctx):
        await stream_send(ctx, dut.i, list(range(20)), times=times_in)
    sim.add_testbench(feed)

    async def drain(ctx):
        await stream_recv(ctx, dut.o, 20, times=times_out)
    sim.add_testbench(drain)
    sim.run()
    assert times_in == list(range(20))
    assert times_out == [t + dut.latency for t in times_in]


def test_default_thresholds_formula():
    assert default_thresholds(1) == [128]
    assert default_thresholds(3) == [64, 128, 192]


@pytest.mark.parametrize("bad", [[], [5, 2], [-1], [257]])
def test_rejects_bad_thresholds(bad):
    with pytest.raises(ValueError, match="thresholds"):
        ThermometerEncoder(1, bad)
