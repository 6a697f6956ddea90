"""OutputSerializer: class index (smallest among ties) + sign-extended scores, TLAST framing."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.output_serializer import OutputSerializer, SerializerTiming, argmax_latency
from tests.stream_bench import stream_recv, stream_send

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def run(classes, pe, nf, width, images, *, idle=0.0, stall=0.0, seed=0, keys=None):
    """Random scores through the serializer; ``keys``: per-class ``(scale, bias)`` lists."""
    rng = np.random.default_rng(seed)
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    # Small value range forces ties; extremes check sign extension.
    scores = np.clip(rng.integers(-3, 3, size=(images, pe * nf)), lo, hi)
    scores[0, :classes] = lo
    if images > 1:
        scores[1, :classes] = hi
    beats = []
    for img in scores:
        for f in range(nf):
            beats.append(sum((int(v) & ((1 << width) - 1)) << (p * width)
                             for p, v in enumerate(img[f * pe:(f + 1) * pe])))
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    dut = OutputSerializer(classes, pe, nf, width, keys=keys, score_range=(lo, hi))
    got, t_in, t_out = [], [], []
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def feed(ctx):
        await stream_send(ctx, dut.i, beats, rng=random.Random(seed), idle=idle, times=t_in)

    async def drain(ctx):
        got.extend(await stream_recv(ctx, dut.o, images * (classes + 1),
                                     rng=random.Random(seed + 1), stall=stall, times=t_out))
    sim.add_testbench(feed)
    sim.add_testbench(drain)
    sim.run()
    expected = []
    for img in scores:
        real = img[:classes]
        key = real if keys is None else real * np.array(keys[0]) + np.array(keys[1])
        expected.append((int(np.argmax(key)), 0))
        for c, v in enumerate(real):
            expected.append((int(v) & 0xFFFFFFFF, int(c == classes - 1)))
    assert [(w & 0xFFFFFFFF, w >> 32) for w in got] == expected
    return t_in, t_out


@pytest.mark.parametrize("classes,pe,nf,width", [(10, 10, 1, 8), (5, 2, 3, 4), (7, 4, 2, 11),
                                                 (1, 1, 1, 3), (3, 1, 3, 32), (4, 3, 2, 6),
                                                 (10, 16, 1, 9), (13, 5, 3, 7)])
def test_serializer(classes, pe, nf, width):
    run(classes, pe, nf, width, 6, idle=0.3, stall=0.3, seed=classes + pe)


@pytest.mark.parametrize("classes,pe,nf,width", [(10, 16, 1, 2), (5, 2, 3, 4), (7, 4, 2, 11),
                                                 (1, 1, 1, 3), (13, 5, 3, 7)])
def test_serializer_class_keys(classes, pe, nf, width):
    """Per-class integer keys ``scale_c*score_c + bias_c`` (negative scales included; the
    highest-set-bit decoder is scale ``c + 1`` on 0/1 scores)."""
    rng = np.random.default_rng(classes * pe + width)
    scale = [int(v) for v in rng.choice([-3, -1, 1, 2, 5], size=classes)]
    bias = [int(v) for v in rng.integers(-4, 5, size=classes)]
    run(classes, pe, nf, width, 6, idle=0.3, stall=0.3, seed=classes + pe, keys=(scale, bias))
    run(classes, pe, nf, width, 3, keys=(list(range(1, classes + 1)), [0] * classes))


@pytest.mark.parametrize("classes,pe,nf,keyed", [(5, 2, 3, False), (8, 1, 8, False),
                                                  (10, 10, 1, False), (3, 16, 1, False),
                                                  (20, 5, 4, False), (5, 2, 3, True),
                                                  (10, 16, 1, True)])
def test_timing(classes, pe, nf, keyed):
    """Collect NF beats, argmax pipeline, transfer, emit 1 + C beats while the next image is
    collected; the timing model agrees beat for beat."""
    images = 4
    keys = ([1 + c % 3 for c in range(classes)], [c % 2 for c in range(classes)]) if keyed \
        else None
    t_in, t_out = run(classes, pe, nf, 6, images, keys=keys)
    lat = argmax_latency(pe, keyed)
    start, last_out = 0, None
    for k in range(images):
        assert t_in[k * nf:(k + 1) * nf] == list(range(start, start + nf))
        have = start + nf + lat                # complete image held from this cycle
        transfer = have if last_out is None else max(have, last_out)
        emitted = list(range(transfer + 1, transfer + 2 + classes))
        # The output register slice offers each emitted beat one cycle later.
        assert t_out[k * (classes + 1):(k + 1) * (classes + 1)] == [c + 1 for c in emitted]
        last_out, start = emitted[-1], transfer + 1
    # The stage model, stepped with the same handshakes, fires at the same cycles.
    model = SerializerTiming(classes, nf, lat)
    fired_in, fired_out, n_in = [], [], len(t_in)
    for cycle in range(t_out[-1] + 1):
        in_fire = len(fired_in) < n_in and model.ready(True)
        out_fire = model.valid()
        if in_fire:
            fired_in.append(cycle)
        if out_fire:
            fired_out.append(cycle)
        model.step(in_fire, out_fire, cycle)
    assert (fired_in, fired_out) == (t_in, t_out)


def test_argmax_latency():
    assert [argmax_latency(pe) for pe in (1, 2, 3, 4, 5, 16, 17)] == [1, 3, 5, 5, 7, 9, 11]
    assert argmax_latency(4, keyed=True) == 6


@pytest.mark.parametrize("args", [(0, 1, 1, 8), (5, 2, 2, 8), (3, 2, 3, 8), (3, 3, 1, 33)])
def test_rejects(args):
    with pytest.raises(ValueError):
        OutputSerializer(*args)
