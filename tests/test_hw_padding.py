"""PaddingStage: every output beat against numpy, and its timing model cycle for cycle."""


import numpy as np
import pytest

from hw.padding import PaddingStage, PaddingTiming
from hw.width_converter import BIT, ML_PAIR
from tests.stream_bench import check_stage

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def run(elem, channels, n, height, width, pad, *, images=3, idle=0.0, stall=0.0, seed=0):
    planes = 1 if elem == BIT else 2
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 2 * planes, size=(images, height, width, channels))
    dut = PaddingStage(elem, channels=channels, height=height, width=width, pad=pad,
                       elems_per_beat=n)
    expected = np.pad(imgs, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    t_in, t_out = check_stage(dut, imgs, expected, n, planes, idle=idle, stall=stall,
                              seed=seed)
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
