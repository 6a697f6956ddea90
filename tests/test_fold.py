"""Exact threshold / gate / output folding (models/fold.py) on synthetic and real layers."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from models.fold import ExportError, acc_range, fold_gates, fold_layer, fold_output
from models.layers import BinaryDense
from sw.errors import UserError

torch.set_num_threads(1)
F32 = torch.float32


class FakeLayer:
    """BinaryDense look-alike: the contract's eval activation with explicit BN parameters."""

    def __init__(self, mw, mh, in_bits, out, mean, var, gamma, beta, bias, eps=1e-4):
        self.in_features, self.out_features, self.in_bits, self.out = mw, mh, in_bits, out
        t = lambda v: torch.as_tensor(np.asarray(v, np.float32))
        self.mean, self.var, self.gamma, self.beta, self.bias = map(t, (mean, var, gamma, beta, bias))
        self.eps = eps

    def activate(self, acc):
        z = (acc - self.mean) * (self.gamma / torch.sqrt(self.var + self.eps)) + self.beta
        t = z + self.bias
        if self.out == "sign":
            return torch.where(t >= 0, 1.0, -1.0)
        q = ((t >= torch.tensor(-2 / 3, dtype=F32)).to(F32) + (t >= 0).to(F32)
             + (t >= torch.tensor(2 / 3, dtype=F32)).to(F32))
        return 2 * q - 3


def check_fold(layer):
    """Independent check: the folded integer rule equals activate() on every integer acc."""
    neg, th = fold_layer(layer)
    lo, hi = acc_range(layer)
    count = 1 if layer.out == "sign" else 3
    assert th.shape == (layer.out_features, count) and neg.shape == (layer.out_features,)
    assert th.min() >= lo and th.max() <= hi + 1
    assert np.all(np.diff(th, axis=1) >= 0)
    acc = torch.arange(lo, hi + 1, dtype=F32)[:, None].expand(-1, layer.out_features)
    want = layer.activate(acc).numpy()
    want = (want > 0).astype(int) if layer.out == "sign" else ((want + 3) / 2).astype(int)
    a = np.where(neg, -np.arange(lo, hi + 1)[:, None], np.arange(lo, hi + 1)[:, None])
    got = sum((a >= th[:, c]).astype(int) for c in range(count))
    np.testing.assert_array_equal(got, want)
    return neg, th


scales = st.one_of(st.floats(-1e6, 1e6, allow_nan=False, width=32), st.just(0.0),
                   st.sampled_from([1e-7, -1e-7, 1e-30, 3e4, -3e4]))


@settings(max_examples=60, deadline=None)
@given(mw=st.integers(1, 300), in_bits=st.sampled_from([1, 2]), out=st.sampled_from(["sign", "frac2"]),
       gamma=st.lists(scales, min_size=6, max_size=6), seed=st.integers(0, 2**32 - 1))
def test_fold_synthetic_random_bn(mw, in_bits, out, gamma, seed):
    rng = np.random.default_rng(seed)
    lo, hi = acc_range(FakeLayer(mw, 1, in_bits, out, 0, 1, 1, 0, 0))
    mh = len(gamma)
    # integer running means put an exact tie (t == 0 exactly) on an integer acc
    mean = np.where(rng.random(mh) < 0.5, rng.integers(lo, hi + 1, mh), rng.normal(0, hi / 3, mh))
    var = 10.0 ** rng.uniform(-3, 4, mh)
    beta = np.where(rng.random(mh) < 0.5, 0.0, rng.normal(0, 1, mh))
    bias = np.where(rng.random(mh) < 0.5, 0.0, rng.normal(0, 0.5, mh))
    layer = FakeLayer(mw, mh, in_bits, out, mean, var, gamma, beta, bias)
    neg, th = check_fold(layer)
    for c, g in enumerate(gamma):
        if g < 0 and not set(th[c].tolist()) <= {lo, hi + 1}:
            assert neg[c]  # a non-constant decreasing channel compares -acc
        if g == 0:  # constant channel: neg 0, thresholds at the ends of the range
            assert not neg[c] and set(th[c].tolist()) <= {lo, hi + 1}


def test_exact_tie_lands_on_threshold():
    # t = (acc - 5) * 1 exactly: acc = 5 is the first +1 (t >= 0), so T0 = 5
    layer = FakeLayer(10, 2, 1, "sign", [5.0, 5.0], [1.0 - 1e-4, 1.0 - 1e-4], [1.0, -1.0], 0, 0)
    neg, th = check_fold(layer)
    assert neg.tolist() == [False, True]
    assert th[:, 0].tolist() == [5, -5]  # channel 1: +1 where acc <= 5, i.e. -acc >= -5


def test_frac2_thresholds_by_hand():
    # z = acc * 1/3 exactly-ish: q boundaries at t = -2/3, 0, 2/3 -> acc -2, 0, 2
    layer = FakeLayer(4, 1, 1, "frac2", [0.0], [9.0 - 1e-4], [1.0], [0.0], [0.0])
    neg, th = check_fold(layer)
    assert not neg[0] and th[0].tolist() == [-2, 0, 2]


def test_non_monotone_activation_is_refused():
    class Wobbly(FakeLayer):
        def activate(self, acc):
            return torch.where(torch.cos(acc) >= 0, 1.0, -1.0)
    with pytest.raises(ExportError, match="not a monotone step function"):
        fold_layer(Wobbly(20, 3, 1, "sign", 0, 1, 1, 0, 0))


def test_invalid_activation_value_is_refused():
    class Leaky(FakeLayer):
        def activate(self, acc):
            return torch.where(acc > 3, 1.0, 0.5)
    with pytest.raises(ExportError, match="channel 0: activate\\(-8\\) = 0.5, expected \\+-1"):
        fold_layer(Leaky(8, 2, 1, "sign", 0, 1, 1, 0, 0))
    assert issubclass(ExportError, UserError)


def test_real_binary_dense_layers():
    torch.manual_seed(0)
    for in_bits, out in ((1, "sign"), (2, "frac2"), (2, "sign"), (1, "frac2")):
        layer = BinaryDense(50, 40, in_bits, out)
        with torch.no_grad():
            layer.bn.running_mean.normal_(0, 20)
            layer.bn.running_var.uniform_(0.01, 500)
            layer.bn.weight.normal_(0, 2)
            layer.bn.weight[:3] = 0.0
            layer.bn.weight[3:6] = -1e5
            layer.bn.bias.normal_(0, 1)
            layer.act_bias.normal_(0, 0.3)
        layer.eval()
        check_fold(layer)


@settings(max_examples=40, deadline=None)
@given(mw=st.integers(1, 200), delta=st.lists(st.one_of(
    st.floats(-1e4, 1e4, allow_nan=False, width=32), st.integers(-300, 300).map(float),
    st.sampled_from([1e30, -1e30, -0.5, 0.5, -0.0])), min_size=4, max_size=4))
def test_fold_gates(mw, delta):
    layer = BinaryDense(mw, 4, 2, "sign")
    with torch.no_grad():
        layer.gate_delta.copy_(torch.tensor(delta))
    g = fold_gates(layer)
    assert g.min() >= -mw - 1 and g.max() <= mw
    acc_m = np.arange(-mw, mw + 1)[:, None]
    want = (torch.arange(-mw, mw + 1, dtype=F32)[:, None] > layer.gate_delta.detach()).numpy()
    np.testing.assert_array_equal(acc_m > g, want)
    for c, d in enumerate(delta):
        if float(d).is_integer() and abs(d) <= mw:
            assert g[c] == int(d)  # acc_m > 5.0 <=> acc_m > 5


def test_fold_gates_refuses_nan():
    layer = BinaryDense(8, 2, 2, "sign")
    with torch.no_grad():
        layer.gate_delta[1] = float("nan")
    with pytest.raises(ExportError, match="channel 1: gate_delta is nan"):
        fold_gates(layer)


def test_fold_output():
    layer = BinaryDense(100, 10, 2, "scores")
    with torch.no_grad():
        layer.norm.running_mean.fill_(3.25)
        layer.norm.running_var.fill_(400.0)
        layer.norm.log_gamma.fill_(0.3)
        layer.norm.beta.fill_(-0.7)
    layer.eval()
    spec = fold_output(layer)
    assert spec.classes == 10 and spec.scale > 0
    acc = np.arange(-300, 301, dtype=np.float32)
    logits = layer.activate(torch.from_numpy(acc)[:, None].expand(-1, 10)).detach().numpy()[:, 0]
    np.testing.assert_array_equal(
        ((acc - np.float32(spec.mean)) * np.float32(spec.scale)) + np.float32(spec.beta), logits)


def test_fold_output_refuses_non_strict_map():
    layer = BinaryDense(100, 10, 1, "scores")
    with torch.no_grad():
        layer.norm.log_gamma.fill_(-60.0)  # scale ~ 1e-26: adjacent scores round to the same logit
        layer.norm.beta.fill_(1.0)
    layer.eval()
    with pytest.raises(ExportError, match="not strictly increasing"):
        fold_output(layer)
