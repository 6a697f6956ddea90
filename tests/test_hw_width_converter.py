"""StreamWidthConverter: lossless, order-preserving re-packing with optional padding."""

import random

import pytest
from amaranth.sim import Simulator

from hw.width_converter import BIT, ML_PAIR, StreamWidthConverter
from tests.stream_bench import stream_recv, stream_send

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def pack(elems, planes):
    """Elements (ints: bit, or (m, l) pairs as 2*m + l) -> raw beat value."""
    n = len(elems)
    if planes == 1:
        return sum(e << k for k, e in enumerate(elems))
    m = sum((e >> 1) << k for k, e in enumerate(elems))
    l = sum((e & 1) << k for k, e in enumerate(elems))
    return m | l << n  # StructLayout({"m": n, "l": n}): m first


def unpack(word, n, planes):
    if planes == 1:
        return [(word >> k) & 1 for k in range(n)]
    return [2 * ((word >> k) & 1) + ((word >> (n + k)) & 1) for k in range(n)]


def simulate(dut, in_beats, n_out, *, idle=0.0, stall=0.0, seed=0):
    times_in, times_out, got = [], [], []
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def feed(ctx):
        await stream_send(ctx, dut.i, in_beats, rng=random.Random(seed), idle=idle,
                          times=times_in)

    async def drain(ctx):
        got.extend(await stream_recv(ctx, dut.o, n_out, rng=random.Random(seed + 7),
                                     stall=stall, times=times_out))
    sim.add_testbench(feed)
    sim.add_testbench(drain)
    sim.run()
    return got, times_in, times_out


def check(elem, n_in, n_out, vectors, *, vector_elems=None, pad=0, idle=0.0, stall=0.0, seed=0):
    planes = 1 if elem == BIT else 2
    rng = random.Random(seed)
    vector_elems = vector_elems or n_in * n_out
    n_vec_out = vector_elems + pad
    # Whole output beats: choose a vector count that fills them.
    total_in = vector_elems * vectors
    while (n_vec_out * vectors) % n_out:
        vectors += 1
        total_in = vector_elems * vectors
    elems = [rng.randrange(2 * planes) for _ in range(total_in)]
    in_beats = [pack(elems[k:k + n_in], planes) for k in range(0, total_in, n_in)]
    expected = []
    for v in range(vectors):
        expected += elems[v * vector_elems:(v + 1) * vector_elems] + [0] * pad
    dut = StreamWidthConverter(elem, n_in, n_out,
                               vector_elems=vector_elems if pad else None, pad_elems=pad)
    got, _, _ = simulate(dut, in_beats, len(expected) // n_out, idle=idle, stall=stall, seed=seed)
    flat = [e for word in got for e in unpack(word, n_out, planes)]
    assert flat == expected


@pytest.mark.parametrize("n_in,n_out", [(1, 1), (1, 8), (8, 1), (3, 5), (5, 3), (8, 64),
                                        (64, 8), (6, 4), (7, 7), (12, 5)])
def test_bits(n_in, n_out):
    check(BIT, n_in, n_out, 3, stall=0.3, idle=0.3, seed=n_in * 100 + n_out)


@pytest.mark.parametrize("n_in,n_out", [(2, 3), (4, 4), (3, 1), (1, 6)])
def test_pairs(n_in, n_out):
    check(ML_PAIR, n_in, n_out, 3, stall=0.4, idle=0.2, seed=n_in + 17 * n_out)


@pytest.mark.parametrize("n_in,n_out,vector,pad", [(8, 64, 784 // 49 * 8, 0), (4, 8, 12, 4),
                                                   (2, 5, 6, 4), (8, 3, 16, 2), (1, 4, 5, 3)])
def test_padding(n_in, n_out, vector, pad):
    check(BIT, n_in, n_out, 4, vector_elems=vector, pad=pad, stall=0.3, idle=0.3, seed=pad)


@pytest.mark.parametrize("n_in,n_out", [(1, 8), (8, 1), (3, 5), (5, 3), (8, 64)])
def test_full_rate(n_in, n_out):
    """Never stalled: the slower side runs every cycle after the first output."""
    beats = n_out * 6
    dut = StreamWidthConverter(BIT, n_in, n_out)
    got, t_in, t_out = simulate(dut, list(range(beats)), beats * n_in // n_out)
    if n_in <= n_out:  # input side is the bottleneck: one beat per cycle
        assert t_in == list(range(beats))
    else:  # output side: one beat per cycle from the first
        assert t_out == list(range(t_out[0], t_out[0] + len(t_out)))
    assert t_out[0] == t_in[-(-n_out // n_in) - 1] + dut.latency


@pytest.mark.parametrize("kwargs,match", [
    (dict(elem_shape=BIT, in_count=0, out_count=1), "in_count"),
    (dict(elem_shape=BIT, in_count=2, out_count=-1), "out_count"),
    (dict(elem_shape=3, in_count=2, out_count=1), "elem_shape"),
    (dict(elem_shape=BIT, in_count=2, out_count=1, pad_elems=2), "vector_elems"),
    (dict(elem_shape=BIT, in_count=2, out_count=1, vector_elems=5, pad_elems=1), "multiple"),
])
def test_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        StreamWidthConverter(**kwargs)
