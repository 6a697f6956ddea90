"""MaxPoolUnit: every pooled beat against numpy, and its timing model cycle for cycle."""


import numpy as np
import pytest

from hw.maxpool import MaxPoolTiming, MaxPoolUnit
from hw.width_converter import BIT, ML_PAIR
from tests.stream_bench import check_stage

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def reference(images, k):
    n_img, h, w, c = images.shape
    oh, ow = (h - k) // k + 1, (w - k) // k + 1
    crop = images[:, :oh * k, :ow * k]
    return crop.reshape(n_img, oh, k, ow, k, c).max(axis=(2, 4))


def run(elem, channels, n, height, width, *, kernel=2, images=3, idle=0.0, stall=0.0, seed=0):
    planes = 1 if elem == BIT else 2
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 2 * planes, size=(images, height, width, channels))
    dut = MaxPoolUnit(elem, channels=channels, height=height, width=width, elems_per_beat=n,
                      kernel=kernel, stride=kernel)
    expected = reference(imgs, kernel)
    t_in, t_out = check_stage(dut, imgs, expected, n, planes, idle=idle, stall=stall,
                              seed=seed)
    return dut, t_in, t_out


# (channels, elems_per_beat): every channel count, several divisors each.
FOLDINGS = [(1, 1), (3, 1), (3, 3), (6, 2), (6, 3), (6, 6), (16, 1), (16, 4), (16, 16)]
SIZES = [(5, 5), (6, 7), (8, 8)]
PRESSURE = [(0.0, 0.0), (0.3, 0.3), (0.6, 0.6), (0.0, 0.6), (0.6, 0.0), (0.3, 0.6)]
CASES = [(elem, c, n, h, w, *PRESSURE[k // 3 % len(PRESSURE)])
         for k, (elem, (c, n), (h, w)) in enumerate(
             (e, f, s) for e in (BIT, ML_PAIR) for f in FOLDINGS for s in SIZES)]


@pytest.mark.parametrize("elem,channels,n,height,width,idle,stall", CASES,
                         ids=lambda v: v if isinstance(v, (int, float)) else
                         ("bit" if v == BIT else "pair"))
def test_pool_2x2(elem, channels, n, height, width, idle, stall):
    # Fewer images where an image has many beats, to bound the simulation time.
    images = 2 if channels // n * height * width > 300 else 3
    run(elem, channels, n, height, width, images=images, idle=idle, stall=stall,
        seed=channels * 1000 + n * 100 + height * 10 + width)


@pytest.mark.parametrize("elem,kernel,height,width", [(BIT, 3, 8, 8), (ML_PAIR, 3, 7, 5),
                                                      (ML_PAIR, 1, 3, 4), (BIT, 5, 5, 6)])
def test_other_kernels(elem, kernel, height, width):
    run(elem, 6, 3, height, width, kernel=kernel, idle=0.3, stall=0.3, seed=kernel)


@pytest.mark.parametrize("elem,channels,n,height,width", [(BIT, 16, 4, 8, 8),
                                                          (ML_PAIR, 3, 1, 5, 5),
                                                          (ML_PAIR, 6, 6, 6, 7)])
def test_full_rate(elem, channels, n, height, width):
    """Output always ready: one input beat per cycle, each pooled beat 1 cycle after the
    window's last beat."""
    dut, t_in, t_out = run(elem, channels, n, height, width, images=3)
    assert t_in == list(range(3 * dut.beats_in_per_image))
    model = MaxPoolTiming(channels=channels, height=height, width=width, elems_per_beat=n)
    emits = [k for k in range(len(t_in)) if model._emits[k % model._beats]]
    assert t_out == [t_in[k] + dut.latency for k in emits]
    assert dut.cycles_per_image == dut.beats_in_per_image


def test_properties():
    dut = MaxPoolUnit(ML_PAIR, channels=16, height=7, width=9, elems_per_beat=4)
    assert (dut.out_height, dut.out_width, dut.folds) == (3, 4, 4)
    assert (dut.beats_in_per_image, dut.beats_out_per_image) == (7 * 9 * 4, 3 * 4 * 4)
    assert (dut.buffer_words, dut.latency) == (16, 1)


@pytest.mark.parametrize("kwargs,match", [
    (dict(elem_shape=3), "elem_shape"),
    (dict(channels=0), "channels"),
    (dict(height=-1), "height"),
    (dict(width=2.0), "width"),
    (dict(elems_per_beat=4), r"elems_per_beat must divide channels 6, not 4"),
    (dict(kernel=0), "kernel"),
    (dict(kernel=5, stride=5), r"kernel 5 is larger than the 4x8 image"),
    (dict(kernel=3, stride=2), "stride must equal kernel 3"),
])
def test_rejects(kwargs, match):
    args = dict(elem_shape=BIT, channels=6, height=4, width=8, elems_per_beat=3) | kwargs
    with pytest.raises(ValueError, match=match):
        MaxPoolUnit(args.pop("elem_shape"), **args)
