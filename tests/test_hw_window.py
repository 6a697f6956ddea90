"""SlidingWindowGenerator: window order vs numpy, cycle-exact timing model, rate, checks."""

import gc

import numpy as np
import pytest

from hw.width_converter import BIT, ML_PAIR
from hw.window import SlidingWindowGenerator, WindowTiming
from tests.stream_bench import (pack_elems as pack, replay_timing as replay,
                                simulate_stage as simulate)

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def reference(images, kernel, stride, simd, planes):
    """(N, H, W, C) element array -> (input beats, expected output beats) as raw ints."""
    n_img, h, w, c = images.shape
    oh, ow = (h - kernel) // stride + 1, (w - kernel) // stride + 1
    beats_in = [pack(images[n, y, x, g:g + simd], planes)
                for n in range(n_img) for y in range(h) for x in range(w)
                for g in range(0, c, simd)]
    beats_out = [pack(images[n, oy * stride + ky, ox * stride + kx, g:g + simd], planes)
                 for n in range(n_img) for oy in range(oh) for ox in range(ow)
                 for ky in range(kernel) for kx in range(kernel) for g in range(0, c, simd)]
    return beats_in, beats_out


def check(elem, channels, simd, h, w, kernel, stride, n_img, *, idle=0.0, stall=0.0, seed=0):
    planes = 1 if elem == BIT else 2
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 2 * planes, size=(n_img, h, w, channels))
    beats_in, expected = reference(images, kernel, stride, simd, planes)
    dut = SlidingWindowGenerator(elem, channels=channels, height=h, width=w, kernel=kernel,
                                 stride=stride, simd=simd)
    assert len(beats_in) == n_img * dut.beats_in_per_image
    assert len(expected) == n_img * dut.beats_out_per_image
    got, t_in, t_out, trace = simulate(dut, beats_in, len(expected), idle=idle, stall=stall,
                                       seed=seed)
    assert len(t_in) == len(beats_in)      # every input beat was accepted
    mismatches = [b for b, (x, y) in enumerate(zip(got, expected)) if x != y]
    assert not mismatches, f"{len(mismatches)} wrong beats, first at {mismatches[0]}"
    assert len(got) == len(expected)
    replay(dut.timing_model(), trace)
    return dut, t_in, t_out


# (channels, simd) pairs, non-powers of two included; each grid point takes one in turn.
CHANNELS = [(3, 1), (6, 2), (12, 4), (3, 3), (6, 3), (12, 6), (6, 6), (12, 12)]


def _grid():
    points = []
    for elem, planes in ((BIT, "bit"), (ML_PAIR, "pair")):
        for kernel in (1, 2, 3, 5):       # 5 on 5x5: K == H == W, one output position
            for stride in (1, 2):
                for h, w in ((5, 5), (7, 6), (8, 8)):
                    channels, simd = CHANNELS[len(points) % len(CHANNELS)]
                    points.append(pytest.param(
                        elem, channels, simd, h, w, kernel, stride,
                        id=f"{planes}-c{channels}s{simd}-{h}x{w}-k{kernel}s{stride}"))
    return points


@pytest.mark.parametrize("stall", [0.0, 0.3, 0.6])
@pytest.mark.parametrize("elem,channels,simd,h,w,kernel,stride", _grid())
def test_windows(elem, channels, simd, h, w, kernel, stride, stall):
    """Every output beat vs numpy and the handshake of every cycle vs WindowTiming; random
    input idle and output backpressure (none with ``stall == 0``); 2-3 images back to back."""
    n_img = 3 if h * w * channels <= 300 else 2
    seed = channels * 1000 + h * 100 + w * 10 + kernel * 3 + stride + int(stall * 10)
    check(elem, channels, simd, h, w, kernel, stride, n_img, idle=0.3 if stall else 0.0,
          stall=stall, seed=seed)


def test_full_rate_output_bound():
    """K=3, S=1 (more output than input beats): one output beat every cycle in steady state."""
    dut, t_in, t_out = check(BIT, 3, 3, 7, 6, 3, 1, 4)
    per_img = dut.beats_out_per_image
    assert per_img > dut.beats_in_per_image
    assert t_out[0] == t_in[0] + dut.latency       # the first beat needs only word 0
    # Bubbles only inside the very first window (waiting for its rows); from then on one
    # beat every cycle, across row and image boundaries.
    start = dut.window_beats
    assert np.diff(t_out[start:]).tolist() == [1] * (len(t_out) - start - 1)
    assert np.diff(t_out[::per_img]).tolist()[1:] == [dut.cycles_per_image] * 2 == [per_img] * 2


def test_full_rate_input_bound():
    """K=1, S=2 (fewer output than input beats): one input beat every cycle, no stall."""
    dut, t_in, t_out = check(BIT, 6, 3, 8, 8, 1, 2, 3)
    assert dut.beats_in_per_image > dut.beats_out_per_image
    assert t_in == list(range(len(t_in)))
    per_img = dut.beats_out_per_image
    assert np.diff(t_out[::per_img]).tolist() == [dut.cycles_per_image] * 2


def test_balanced_rate():
    """K=2, S=2 on 8x8: as many output as input beats; the input never stalls and the output
    runs every cycle after the first window."""
    dut, t_in, t_out = check(ML_PAIR, 3, 3, 8, 8, 2, 2, 3)
    assert dut.beats_in_per_image == dut.beats_out_per_image
    assert t_in == list(range(len(t_in)))
    start = dut.window_beats
    assert np.diff(t_out[start:]).tolist() == [1] * (len(t_out) - start - 1)


def _steady_interval(model, images=4):
    """Ideal source and sink: cycles between the last two images' first output beats."""
    geo = model.geometry
    total_in, total_out = images * geo.beats_in_per_image, images * geo.beats_out_per_image
    n_in = n_out = cycle = 0
    firsts = []
    while n_out < total_out:
        in_fire = n_in < total_in and model.ready(True)
        out_fire = model.valid()
        if out_fire:
            if n_out % geo.beats_out_per_image == 0:
                firsts.append(cycle)
            n_out += 1
        n_in += in_fire
        model.step(in_fire, out_fire, cycle)
        cycle += 1
    return firsts[-1] - firsts[-2]


@pytest.mark.parametrize("folds", [1, 3])
def test_model_steady_state(folds):
    """The documented interval max(in, out) per image, over a grid of shapes (model only)."""
    for h, w in [(5, 5), (7, 6), (6, 9), (8, 8)]:
        for kernel in range(1, min(h, w) + 1):
            for stride in (1, 2, 3):
                dut = SlidingWindowGenerator(BIT, channels=2 * folds, height=h, width=w,
                                             kernel=kernel, stride=stride, simd=2)
                interval = _steady_interval(dut.timing_model())
                assert interval == dut.cycles_per_image, (h, w, kernel, stride)


def test_properties():
    dut = SlidingWindowGenerator(ML_PAIR, channels=6, height=7, width=6, kernel=3, stride=2,
                                 simd=3)
    assert (dut.out_height, dut.out_width, dut.folds) == (3, 2, 2)
    assert dut.beats_in_per_image == 7 * 6 * 2
    assert dut.beats_out_per_image == 3 * 2 * 9 * 2
    assert dut.window_beats == 18
    assert dut.latency == 2
    # span + 1 = (2*6 + 3)*2 = 30; jumps: column 2*2 = 4, row (12 - 2)*2 = 20,
    # image (42 - 24 - 2)*2 = 32; D = 30 + max(0, 32 - 17) = 45.
    assert dut.buffer_words == 45
    assert dut.buffer_bits == 45 * 6
    assert dut.timing_model().geometry.buffer_words == 45
    assert WindowTiming(channels=6, height=7, width=6, kernel=3, stride=2,
                        simd=3).ready(False)


@pytest.mark.parametrize("kwargs,match", [
    (dict(channels=6, simd=4), r"simd must divide channels 6, not 4"),
    (dict(channels=0, simd=1), r"channels must be a positive integer, not 0"),
    (dict(simd=0), r"simd must be a positive integer"),
    (dict(kernel=6), r"kernel 6 is larger than the 5x7 image"),
    (dict(height=7, width=5, kernel=6), r"kernel 6 is larger than the 7x5 image"),
    (dict(kernel=0), r"kernel must be a positive integer"),
    (dict(stride=0), r"stride must be a positive integer, not 0"),
    (dict(stride=1.0), r"stride must be a positive integer, not 1.0"),
    (dict(height=True), r"height must be a positive integer, not True"),
    (dict(width=-2), r"width must be a positive integer"),
    (dict(elem_shape=3), r"elem_shape"),
])
def test_rejects(kwargs, match):
    args = dict(elem_shape=BIT, channels=6, height=5, width=7, kernel=3, stride=1, simd=3)
    args.update(kwargs)
    elem = args.pop("elem_shape")
    with pytest.raises(ValueError, match=match):
        SlidingWindowGenerator(elem, **args)
    if elem is BIT:
        with pytest.raises(ValueError, match=match):
            WindowTiming(**args)
    gc.collect()  # the half-built components (held by tracebacks) warn here, filtered
