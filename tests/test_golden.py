"""Golden integer model (sw/golden.py) against an independent straight-from-the-doc reference."""

import time

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from sw.compiled_net import CompiledNetwork, Folding, InputSpec, LayerSpec, OutputSpec
from sw.errors import UserError
from sw.golden import GoldenModel, thermometer_bits


def reference(net, images):
    """docs/compiled-network.md in plain numpy on +-1 integers (no bit packing)."""
    th = np.array(net.input.thresholds)
    x = np.where(images[:, :, None].astype(int) >= th, 1, -1).reshape(len(images), -1)
    m, l = x, None
    outs, gates = [], []
    for layer in net.layers:
        w = layer.weights.astype(np.int64)
        acc_m = m @ w.T
        if layer.in_bits == 1:
            acc, gate = acc_m, None
        else:
            gate = acc_m > layer.gates
            acc = 2 * acc_m + np.where(gate, l @ w.T, 0)
        gates.append(gate)
        if layer.out == "scores":
            outs.append(acc)
            break
        a = np.where(layer.neg, -acc, acc)
        q = sum((a >= layer.thresholds[:, c]).astype(int) for c in range(layer.threshold_count))
        outs.append(q)
        if layer.out == "sign":
            m, l = 2 * q - 1, None
        else:
            m, l = 2 * (q >> 1) - 1, 2 * (q & 1) - 1
    scores = outs[-1]
    classes = np.array([int(np.flatnonzero(s == s.max())[0]) for s in scores])
    return outs, gates, classes


def random_net(rng, levels, widths, act, near_zero=True):
    inp = InputSpec(1, 5, 5, 8, tuple(sorted(rng.choice(np.arange(1, 256), levels, replace=False))))
    mws = [25 * levels] + widths[:-1]
    layers = []
    for i, (mw, mh) in enumerate(zip(mws, widths)):
        in_bits = 2 if (i > 0 and act == "frac2") else 1
        out = "scores" if i == len(widths) - 1 else act
        acc = mw * in_bits if in_bits == 1 else 3 * mw
        th = neg = g = None
        if out != "scores":
            count = 1 if out == "sign" else 3
            # thresholds mostly near the bulk of the acc distribution, some at the range ends
            spread = max(1, acc // 4) if near_zero else acc
            th = np.sort(rng.integers(-spread, spread + 1, (mh, count)), axis=1)
            th[rng.random((mh, count)) < 0.05] = acc + 1
            th = np.sort(th, axis=1)
            neg = rng.random(mh) < 0.3
        if in_bits == 2:
            g = rng.integers(-mw // 2, mw // 2 + 1, mh)
            g[0] = -mw - 1  # always fires
            g[-1] = mw      # never fires
        pe = int(rng.integers(1, mh + 1))
        simd = int(rng.integers(1, mw + 1))
        pad_in, pad_out = i == 0, i == len(widths) - 1
        if not pad_in:
            simd = max(d for d in range(1, simd + 1) if mw % d == 0)
        if not pad_out:
            pe = max(d for d in range(1, pe + 1) if mh % d == 0)
        layers.append(LayerSpec(i, f"fc{i}", mw, mh, in_bits, out,
                                Folding(pe, simd, pad_in or pad_out),
                                rng.choice(np.array([-1, 1], np.int8), (mh, mw)), th, neg, g))
    return CompiledNetwork("rand", inp, layers, OutputSpec(widths[-1], 0.0, 1.0, 0.0))


@settings(max_examples=40, deadline=None)
@given(levels=st.integers(1, 3), act=st.sampled_from(["sign", "frac2"]),
       widths=st.lists(st.integers(1, 70), min_size=1, max_size=3).map(lambda w: w + [7]),
       seed=st.integers(0, 2**32 - 1))
def test_golden_equals_reference(levels, act, widths, seed):
    rng = np.random.default_rng(seed)
    net = random_net(rng, levels, widths, act)
    images = rng.integers(0, 256, (37, 25)).astype(np.uint8)
    res = GoldenModel(net).run(images)
    outs, gates, classes = reference(net, images)
    for got, want in zip(res.layer_outputs, outs):
        np.testing.assert_array_equal(got, want)
    for i, (got, want) in enumerate(zip(res.gates, gates)):
        assert (got is None) == (want is None)
        if want is not None:
            np.testing.assert_array_equal(got, want)
            assert res.lsb_fraction[i] == pytest.approx(want.mean())
    np.testing.assert_array_equal(res.classes, classes)
    np.testing.assert_array_equal(res.scores, outs[-1])


def test_ties_pick_smallest_index():
    # one layer, all weights +1, so every class has the same score: class 0 wins
    inp = InputSpec(1, 2, 2, 8, (128,))
    w = np.ones((4, 4), np.int8)
    w[2] = -1
    net = CompiledNetwork("tie", inp, [LayerSpec(0, "fc0", 4, 4, 1, "scores", Folding(1, 1), w)],
                          OutputSpec(4, 0.0, 1.0, 0.0))
    res = GoldenModel(net).run(np.array([[200, 200, 0, 0], [0, 0, 0, 0]], np.uint8))
    np.testing.assert_array_equal(res.scores, [[0, 0, 0, 0], [-4, -4, 4, -4]])
    np.testing.assert_array_equal(res.classes, [0, 2])


def test_thermometer_bit_order():
    bits = thermometer_bits(np.array([[0, 100, 200]], np.uint8), (85, 170))
    # pixel-major, plane-minor: p0 (0,0), p1 (1,0), p2 (1,1)
    np.testing.assert_array_equal(bits, [[0, 0, 1, 0, 1, 1]])


@pytest.mark.parametrize("images", [
    np.zeros((3, 24), np.uint8), np.zeros((3, 25), np.int32), np.zeros(25, np.uint8),
])
def test_image_validation(images):
    net = random_net(np.random.default_rng(0), 1, [4, 3], "sign")
    with pytest.raises(UserError, match=r"images must be \(N, 25\) uint8 pixels, got"):
        GoldenModel(net).run(images)


def test_lfc_frac_throughput():
    """An LFC-sized frac2 network (2352-1024-1024-1024-10) runs 2000 images in well under 15 s."""
    rng = np.random.default_rng(0)
    inp = InputSpec(1, 28, 28, 8, (64, 128, 192))
    dims = [(2352, 1024, 1, "frac2"), (1024, 1024, 2, "frac2"), (1024, 1024, 2, "frac2"),
            (1024, 10, 2, "scores")]
    layers = []
    for i, (mw, mh, ib, out) in enumerate(dims):
        th = neg = g = None
        if out != "scores":
            th = np.sort(rng.integers(-40, 40, (mh, 3)), axis=1)
            neg = rng.random(mh) < 0.5
        if ib == 2:
            g = rng.integers(-30, 30, mh)
        layers.append(LayerSpec(i, f"fc{i}", mw, mh, ib, out, Folding(1, 1, i in (0, 3)),
                                rng.choice(np.array([-1, 1], np.int8), (mh, mw)), th, neg, g))
    net = CompiledNetwork("lfc", inp, layers, OutputSpec(10, 0.0, 1.0, 0.0))
    images = rng.integers(0, 256, (2000, 784)).astype(np.uint8)
    start = time.perf_counter()
    res = GoldenModel(net).run(images)
    seconds = time.perf_counter() - start
    assert res.scores.shape == (2000, 10)
    assert seconds < 15, f"golden model took {seconds:.1f} s for 2000 LFC-frac images"
    # spot-check against the reference on a few images
    outs, _, classes = reference(net, images[:20])
    np.testing.assert_array_equal(res.scores[:20], outs[-1])
    np.testing.assert_array_equal(res.classes[:20], classes)
