"""The golden model's fast path (exact float matrix products) equals its XNOR-popcount path.

``GoldenModel.run`` computes binary dot products as BLAS products of +-1 (or ``B*m + l``
for 2-bit inputs) floats; :func:`sw.golden._reference_run` keeps the original integer path
(packed 64-bit words, int64 accumulators).  Both must agree bit for bit on every layer
output, gate, score, class and LSB fraction:

* random conv nets (stride 2, padding, 1x1 and 5x5 kernels, max-pool 2 and 3 in floor
  mode, 2-bit gated inputs, channel counts that are not multiples of 64), with tiny chunk
  sizes so that image and row chunks split everywhere;
* the float64 and XNOR-popcount fallbacks for layers too wide for float32;
* 2-bit decoding at the float32 limit (``MW = 2047``) with extreme inputs, weights, gates;
* the CNV topology, which must also run fast.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from models import zoo
from models.export import compile_model
from models.layers import BinaryNet
from sw import golden
from sw.compiled_net import Folding, LayerSpec
from sw.golden import GoldenModel, _reference_run
from tests.test_conv import CONFIGS, randomise

torch.set_num_threads(1)

EXTRA = {
    # frac2 gating, 3 thermometer levels, C = 70 and 65 (not multiples of 64), stride 2 with
    # pad 1, pad 2 before a pool that drops a row, 2x2 stride-2 kernel
    "frac_wide": dict(input_shape=(1, 13, 12), thermometer_levels=3, hidden=[20],
                      activation="frac2", classes=6,
                      convs=[{"channels": 70, "kernel": 3, "stride": 2, "pad": 1},
                             {"channels": 65, "kernel": 3, "pad": 2, "pool": 2},
                             {"channels": 33, "kernel": 2, "stride": 2}]),
    # 1-bit, two input colours, pool 3 (floor mode), 1x1 stride-2 kernel
    "sign_pool3": dict(input_shape=(2, 14, 15), thermometer_levels=1, hidden=[9],
                       activation="sign", classes=3,
                       convs=[{"channels": 67, "kernel": 3, "pad": 1, "pool": 3},
                              {"channels": 5, "kernel": 1, "stride": 2}]),
}


def _net(name):
    if name in zoo.ZOO:
        model = zoo.build(name)
    else:
        model = BinaryNet(**(CONFIGS.get(name) or EXTRA[name]))
    return model, compile_model(randomise(model), name)


def assert_same(got, want):
    assert len(got.layer_outputs) == len(want.layer_outputs)
    for i, (g, w) in enumerate(zip(got.layer_outputs, want.layer_outputs)):
        assert g.dtype == w.dtype and g.shape == w.shape, i
        np.testing.assert_array_equal(g, w, err_msg=f"layer {i} output")
    for i, (g, w) in enumerate(zip(got.gates, want.gates)):
        assert (g is None) == (w is None), i
        if w is not None:
            assert g.dtype == w.dtype and g.shape == w.shape, i
            np.testing.assert_array_equal(g, w, err_msg=f"layer {i} gates")
    np.testing.assert_array_equal(got.scores, want.scores)
    np.testing.assert_array_equal(got.classes, want.classes)
    assert got.lsb_fraction == want.lsb_fraction


@pytest.mark.parametrize("name", ["rgb_stride", "sign_valid", "frac_wide", "sign_pool3",
                                  "tiny_conv_frac"])
def test_fast_path_equals_reference(name, monkeypatch):
    model, net = _net(name)
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(37, model.pixels), dtype=np.uint8)
    want = _reference_run(net, images)
    # The test can fail: outputs and gates are mixed, not constant.
    for layer, out, gate in zip(net.layers[:-1], want.layer_outputs, want.gates):
        assert len(np.unique(out)) > 1, f"layer {layer.index} is constant"
        if gate is not None:
            assert 0 < gate.mean() < 1
    assert_same(GoldenModel(net).run(images), want)
    # chunks that split images (16 per chunk, tail 5) and rows (7 rows: one image per
    # product for every convolution, 7 images for a dense layer)
    monkeypatch.setattr(golden, "_IMAGE_CHUNK", 16)
    monkeypatch.setattr(golden, "_ROW_CHUNK", 7)
    assert_same(GoldenModel(net).run(images), want)
    assert_same(GoldenModel(net).run(images[:0]), _reference_run(net, images[:0]))


@pytest.mark.parametrize("floats, dtype", [(((np.float64, 1 << 53),), np.float64), ((), None)])
def test_fallbacks_equal_reference(floats, dtype, monkeypatch):
    _, net = _net("frac_wide")
    images = np.random.default_rng(4).integers(0, 256, size=(9, 156), dtype=np.uint8)
    want = _reference_run(net, images)
    monkeypatch.setattr(golden, "_EXACT_FLOATS", floats)
    model = GoldenModel(net)
    assert all(layer.dtype is dtype for layer in model._layers)
    assert_same(model.run(images), want)


def _two_bit_layer(rng, mw, mh, out):
    w = rng.choice(np.array([-1, 1], np.int8), (mh, mw))
    w[0], w[1] = 1, -1
    g = rng.integers(-mw - 1, mw + 1, mh)
    g[:6] = [-mw - 1, mw, mw - 1, -mw, 0, -1]
    th = neg = None
    if out == "frac2":
        acc = 3 * mw
        th = np.sort(rng.integers(-acc, acc + 2, (mh, 3)), axis=1)
        th[2] = [-acc, 0, acc + 1]
        th[3] = [acc - 1, acc, acc]
        th[4] = [-acc, -acc, -acc + 1]
        neg = rng.random(mh) < 0.5
    return LayerSpec(1, "fc1", mw, mh, 2, out, Folding(1, 1), w, th, neg, g)


@pytest.mark.parametrize("mw, dtype", [(1, np.float32), (5, np.float32), (2047, np.float32),
                                       (2048, np.float64)])
@pytest.mark.parametrize("out", ["scores", "frac2"])
def test_two_bit_decoding_at_the_float32_limit(mw, dtype, out):
    """``B*acc_m + acc_l`` decodes exactly for extreme inputs, also where float32 ends."""
    rng = np.random.default_rng(mw)
    spec = _two_bit_layer(rng, mw, 12, out)
    layer = golden._Layer(spec)
    assert layer.dtype is dtype
    q = rng.integers(0, 4, (40, mw), dtype=np.uint8)
    for i, code in enumerate(range(4)):
        q[i] = code                        # all m, l = +-1: |acc_m|, |acc_l| = MW
    q[4, ::2], q[4, 1::2] = 3, 0
    q[5, ::2], q[5, 1::2] = 1, 2
    q[6:10] = (spec.weights[:4] > 0) * 3   # acc_m = acc_l = MW for neuron i - 6
    q[10:14] = (spec.weights[:4] < 0) * 3  # acc_m = acc_l = -MW
    q[14:18] = np.where(spec.weights[:4] > 0, 2, 1)   # acc_m = MW, acc_l = -MW
    got_out, got_gate = layer.forward(q)
    want_out, want_gate = layer.reference_forward(q)
    assert got_out.dtype == want_out.dtype
    np.testing.assert_array_equal(got_out, want_out)
    np.testing.assert_array_equal(got_gate, want_gate)


def test_cnv_is_fast_and_exact():
    """The CNV topology (2-bit gated) runs 500 images in well under 5 s (the XNOR-popcount
    path needed over 6 s) and agrees with the reference path."""
    _, net = _net("cnv_frac")
    images = np.random.default_rng(5).integers(0, 256, (500, 1024), dtype=np.uint8)
    model = GoldenModel(net)
    model.run(images[:10])   # warm-up
    start = time.perf_counter()
    res = model.run(images)
    seconds = time.perf_counter() - start
    assert seconds < 5, f"golden model took {seconds:.1f} s for 500 CNV-frac images"
    want = _reference_run(net, images[:24])
    for attr in ("layer_outputs", "gates"):
        for g, w in zip(getattr(res, attr), getattr(want, attr)):
            if w is not None:
                np.testing.assert_array_equal(g[:24], w)
    np.testing.assert_array_equal(res.scores[:24], want.scores)


def test_blas_threads_limited_during_run_and_restored(monkeypatch):
    from threadpoolctl import threadpool_info, threadpool_limits

    if not any(p["user_api"] == "blas" for p in threadpool_info()):
        pytest.skip("numpy's BLAS is not visible to threadpoolctl here")
    for var in golden._THREAD_ENV:
        monkeypatch.delenv(var, raising=False)
    _, net = _net("sign_valid")
    images = np.zeros((3, 90), np.uint8)

    def blas_threads():
        return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}

    seen = []
    forward = golden._Layer.forward
    monkeypatch.setattr(golden._Layer, "forward",
                        lambda self, *args: (seen.append(blas_threads()), forward(self, *args))[1])
    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        GoldenModel(net).run(images)
        assert seen and all(s == {golden._BLAS_THREADS} for s in seen)
        assert blas_threads() == before
        # an explicit thread count in the environment is respected
        monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
        seen.clear()
        GoldenModel(net).run(images)
        assert seen and all(s == before for s in seen)
