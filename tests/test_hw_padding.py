"""PaddingStage: every output beat against numpy, and its timing model cycle for cycle."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.padding import PaddingStage, PaddingTiming
from hw.width_converter import BIT, ML_PAIR
from tests.stream_bench import stream_recv, stream_send

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def to_beats(images, n, planes):
    """``(N, H, W, C)`` element codes -> raw beats in stream order (beat g = channels g*n..)."""
    codes = images.reshape(-1, n).astype(np.int64)
    weights = 1 << np.arange(n, dtype=np.int64)
    if planes == 1:
        return [int(v) for v in codes @ weights]
    m, l = (codes >> 1) @ weights, (codes & 1) @ weights
    return [int(a) | int(b) << n for a, b in zip(m, l)]  # StructLayout: m first, then l


def from_beats(words, n, planes, shape):
    """Inverse of :func:`to_beats`."""
    w = np.array(words, dtype=np.int64)[:, None]
    bits = (w >> np.arange(planes * n)) & 1
    codes = bits if planes == 1 else 2 * bits[:, :n] + bits[:, n:]
    return codes.reshape(shape)


def simulate(dut, in_beats, n_out, *, idle=0.0, stall=0.0, seed=0):
    """Run the DUT; returns output beats, accept cycles of both ports and a per-cycle trace
    of ``(i.valid, i.ready, o.valid, o.ready)``."""
    t_in, t_out, got, trace = [], [], [], []
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def feed(ctx):
        await stream_send(ctx, dut.i, in_beats, rng=random.Random(seed), idle=idle, times=t_in)

    async def drain(ctx):
        got.extend(await stream_recv(ctx, dut.o, n_out, rng=random.Random(seed + 7),
                                     stall=stall, times=t_out))

    async def monitor(ctx):
        async for _, _, *sample in ctx.tick().sample(dut.i.valid, dut.i.ready, dut.o.valid,
                                                     dut.o.ready):
            trace.append(tuple(bool(v) for v in sample))

    sim.add_testbench(feed)
    sim.add_testbench(drain)
    sim.add_testbench(monitor, background=True)
    sim.run()
    return got, t_in, t_out, trace


def replay(model, trace):
    """Step ``model`` with the simulation's handshakes; it must predict o.valid and i.ready."""
    for cycle, (i_valid, i_ready, o_valid, o_ready) in enumerate(trace):
        assert model.valid() == o_valid, f"o.valid differs in cycle {cycle}"
        assert model.ready(o_ready) == i_ready, f"i.ready differs in cycle {cycle}"
        model.step(i_valid and i_ready, o_valid and o_ready, cycle, bool(i_valid))


def run(elem, channels, n, height, width, pad, *, images=3, idle=0.0, stall=0.0, seed=0):
    planes = 1 if elem == BIT else 2
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 2 * planes, size=(images, height, width, channels))
    dut = PaddingStage(elem, channels=channels, height=height, width=width, pad=pad,
                       elems_per_beat=n)
    expected = np.pad(imgs, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    assert expected.shape[1:3] == (dut.out_height, dut.out_width)
    assert dut.beats_in_per_image * images * n == imgs.size
    assert dut.beats_out_per_image * images * n == expected.size
    got, t_in, t_out, trace = simulate(dut, to_beats(imgs, n, planes),
                                       images * dut.beats_out_per_image,
                                       idle=idle, stall=stall, seed=seed)
    np.testing.assert_array_equal(from_beats(got, n, planes, expected.shape), expected)
    replay(dut.timing_model(), trace)
    return dut, t_in, t_out


# (channels, elems_per_beat): every channel count, several divisors each.
FOLDINGS = [(1, 1), (3, 1), (3, 3), (6, 2), (6, 3), (6, 6), (16, 1), (16, 4), (16, 16)]
SIZES = [(5, 5), (6, 7), (8, 8)]
PRESSURE = [(0.0, 0.0), (0.3, 0.3), (0.6, 0.6), (0.0, 0.6), (0.6, 0.0), (0.3, 0.6)]
CASES = [(elem, c, n, h, w, 1 + k % 2, *PRESSURE[k // 3 % len(PRESSURE)])
         for k, (elem, (c, n), (h, w)) in enumerate(
             (e, f, s) for e in (BIT, ML_PAIR) for f in FOLDINGS for s in SIZES)]


@pytest.mark.parametrize("elem,channels,n,height,width,pad,idle,stall", CASES,
                         ids=lambda v: v if isinstance(v, (int, float)) else
                         ("bit" if v == BIT else "pair"))
def test_padding(elem, channels, n, height, width, pad, idle, stall):
    # Fewer images where an image has many beats, to bound the simulation time.
    images = 2 if channels // n * height * width > 300 else 3
    run(elem, channels, n, height, width, pad, images=images, idle=idle, stall=stall,
        seed=channels * 1000 + n * 100 + height * 10 + width + pad)


@pytest.mark.parametrize("elem", [BIT, ML_PAIR])
def test_pad_zero_passes_through(elem):
    dut, _, _ = run(elem, 6, 3, 5, 4, 0, idle=0.3, stall=0.3, seed=5)
    assert dut.beats_out_per_image == dut.beats_in_per_image


@pytest.mark.parametrize("elem,channels,n,height,width,pad", [(BIT, 16, 4, 8, 8, 1),
                                                              (ML_PAIR, 3, 1, 5, 5, 2),
                                                              (ML_PAIR, 6, 6, 6, 7, 2),
                                                              (BIT, 1, 1, 5, 6, 0)])
def test_full_rate(elem, channels, n, height, width, pad):
    """Input always valid, output always ready: one output beat every cycle from cycle 1,
    each input beat one cycle after it is accepted."""
    dut, t_in, t_out = run(elem, channels, n, height, width, pad, images=3)
    assert t_out == list(range(1, 1 + 3 * dut.beats_out_per_image))
    model = PaddingTiming(channels=channels, height=height, width=width, pad=pad,
                          elems_per_beat=n)
    slots = [k for k in range(len(t_out)) if not model._pads[k % model._beats]]
    assert t_in == [t_out[k] - dut.latency for k in slots]
    assert dut.cycles_per_image == dut.beats_out_per_image


def test_properties():
    dut = PaddingStage(ML_PAIR, channels=16, height=7, width=9, pad=2, elems_per_beat=4)
    assert (dut.out_height, dut.out_width, dut.folds) == (11, 13, 4)
    assert (dut.beats_in_per_image, dut.beats_out_per_image) == (7 * 9 * 4, 11 * 13 * 4)
    assert dut.latency == 1


@pytest.mark.parametrize("kwargs,match", [
    (dict(elem_shape=3), "elem_shape"),
    (dict(channels=0), "channels"),
    (dict(height=-1), "height"),
    (dict(width=2.0), "width"),
    (dict(pad=-1), "pad must be a non-negative integer, not -1"),
    (dict(elems_per_beat=4), r"elems_per_beat must divide channels 6, not 4"),
])
def test_rejects(kwargs, match):
    args = dict(elem_shape=BIT, channels=6, height=4, width=8, pad=1, elems_per_beat=3) | kwargs
    with pytest.raises(ValueError, match=match):
        PaddingStage(args.pop("elem_shape"), **args)
