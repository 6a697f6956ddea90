"""models.layers: STE gradients, thermometer bit order, exact integer eval path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.layers import (BinaryDense, BinaryNet, TensorNorm, Thermometer, binarize,
                           clip_latent_weights)

torch.set_num_threads(1)


def test_binarize_forward_and_clipped_ste():
    w = torch.tensor([-2.0, -1.0, -0.3, 0.0, 0.4, 1.0, 1.5], requires_grad=True)
    out = binarize(w)
    assert out.tolist() == [-1, -1, -1, 1, 1, 1, 1]
    out.backward(torch.arange(1.0, 8.0))
    assert w.grad.tolist() == [0, 2, 3, 4, 5, 6, 0]


def test_clip_latent_weights():
    layer = BinaryDense(4, 3, 1, "sign")
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[-3.0, 0.5, 2.0, -0.2]] * 3))
    clip_latent_weights(torch.nn.Sequential(layer))
    assert layer.weight[0].tolist() == pytest.approx([-1.0, 0.5, 1.0, -0.2])


def test_thermometer_bit_order_and_defaults():
    th = Thermometer(3)
    assert th.thresholds.tolist() == [64, 128, 192]
    assert Thermometer(1).thresholds.tolist() == [128]
    pixels = torch.tensor([[0, 64, 191, 255]], dtype=torch.uint8)
    bits = th(pixels)
    # bit i = p*T + k  =  pixel_p >= t_k
    expected = [[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1]]
    assert bits.dtype == torch.float32
    assert ((bits.reshape(4, 3) + 1) / 2).tolist() == expected
    custom = Thermometer(2, [10, 20])
    assert custom(torch.tensor([[15.0]])).tolist() == [[1.0, -1.0]]
    with pytest.raises(ValueError, match="strictly increasing"):
        Thermometer(2, [20, 10])


def _random_bn(layer: BinaryDense, gen: torch.Generator) -> None:
    """Give a layer non-trivial BN statistics, including negative and zero gammas."""
    out = layer.out_features
    with torch.no_grad():
        layer.bn.running_mean.copy_(torch.randn(out, generator=gen) * 5)
        layer.bn.running_var.copy_(torch.rand(out, generator=gen) * 30 + 0.5)
        gamma = torch.randn(out, generator=gen)
        gamma[0] = 0.0
        layer.bn.weight.copy_(gamma)
        layer.bn.bias.copy_(torch.randn(out, generator=gen))
        layer.act_bias.copy_(torch.randn(out, generator=gen) * 0.5)


@pytest.mark.parametrize("kind", ["sign", "frac2"])
def test_eval_activate_is_exact_contract_formula_and_monotone(kind):
    gen = torch.Generator().manual_seed(3)
    layer = BinaryDense(40, 16, 1, kind).eval()
    _random_bn(layer, gen)
    acc = torch.arange(-40, 41, dtype=torch.float32).unsqueeze(1).expand(-1, 16).contiguous()
    out = layer.activate(acc).numpy()
    # Independent float32 numpy evaluation of the contract's formula.
    bn = layer.bn
    f32 = np.float32
    scale = bn.weight.detach().numpy() / np.sqrt(bn.running_var.numpy() + f32(bn.eps))
    z = (acc.numpy() - bn.running_mean.numpy()) * scale + bn.bias.detach().numpy()
    t = z + layer.act_bias.detach().numpy()
    assert t.dtype == np.float32
    if kind == "sign":
        ref = np.where(t >= 0, 1.0, -1.0)
        assert set(np.unique(out)) <= {-1.0, 1.0}
    else:
        q = (t >= f32(-2 / 3)).astype(int) + (t >= 0).astype(int) + (t >= f32(2 / 3)).astype(int)
        ref = 2 * q - 3
        assert set(np.unique(out)) <= {-3.0, -1.0, 1.0, 3.0}
    np.testing.assert_array_equal(out, ref)
    # Per channel a monotone step function of acc (the exporter folds it into thresholds).
    diffs = np.diff(out, axis=0)
    for c in range(16):
        assert (diffs[:, c] >= 0).all() or (diffs[:, c] <= 0).all()
    assert (out[:, 0] == out[0, 0]).all()  # zero gamma -> constant channel


def test_sign_and_frac2_train_mode_ste():
    for kind, scale, levels in (("sign", 1.0, {-1.0, 1.0}), ("frac2", 3.0, {-3.0, -1.0, 1.0, 3.0})):
        layer = BinaryDense(8, 5, 1, kind).train()
        acc = torch.randn(64, 5, requires_grad=True)
        out = layer.activate(acc)
        assert set(out.unique().tolist()) <= levels
        out.sum().backward()
        # Gradient reaches acc and act_bias through the clipped STE, with the expected scale.
        assert acc.grad.abs().sum() > 0
        t = torch.nn.functional.batch_norm(acc.detach(), None, None, layer.bn.weight.detach(),
                                           layer.bn.bias.detach(), training=True, eps=layer.bn.eps)
        t = t + layer.act_bias.detach()
        expected_bias_grad = (scale * (t.abs() <= 1).float()).sum(0)
        torch.testing.assert_close(layer.act_bias.grad, expected_bias_grad)


def test_accumulate_one_bit_is_exact_integer_dot():
    gen = torch.Generator().manual_seed(0)
    layer = BinaryDense(300, 20, 1, "sign").eval()
    x = torch.where(torch.rand(7, 300, generator=gen) < 0.5, -1.0, 1.0)
    acc, gate = layer.accumulate(x)
    assert gate is None
    ref = x.numpy().astype(np.int64) @ layer.binary_weight().numpy().astype(np.int64).T
    np.testing.assert_array_equal(acc.detach().numpy(), ref)


def test_accumulate_two_bit_gating_matches_integer_reference():
    gen = torch.Generator().manual_seed(1)
    layer = BinaryDense(200, 24, 2, "frac2").eval()
    with torch.no_grad():
        layer.gate_delta.copy_(torch.randn(24, generator=gen) * 10)
    u = (2 * torch.randint(0, 4, (9, 200), generator=gen) - 3).float()
    acc, gate = layer.accumulate(u)
    un = u.numpy().astype(np.int64)
    m = np.where(un > 0, 1, -1)
    l = un - 2 * m
    assert set(np.unique(l)) <= {-1, 1}
    w = layer.binary_weight().numpy().astype(np.int64)
    acc_m, acc_l = m @ w.T, l @ w.T
    g = np.floor(layer.gate_delta.detach().numpy()).astype(np.int64)
    ref_gate = acc_m > g  # integer rule with G = floor(delta)
    np.testing.assert_array_equal(gate.numpy(), ref_gate)
    np.testing.assert_array_equal(acc.detach().numpy(), 2 * acc_m + np.where(ref_gate, acc_l, 0))
    assert 0 < ref_gate.mean() < 1


def test_two_bit_straight_through_gradients():
    layer = BinaryDense(50, 6, 2, "frac2").train()
    u = (2 * torch.randint(0, 4, (4, 50)) - 3).float().requires_grad_(True)
    acc, _ = layer.accumulate(u)
    acc.sum().backward()
    # d acc / d u = W (the 2*acc_m path with d m / d u = 1/2).
    wb = layer.binary_weight()
    torch.testing.assert_close(u.grad, wb.sum(0).expand(4, -1))
    assert layer.gate_delta.grad is not None and layer.gate_delta.grad.abs().sum() > 0


def test_gate_penalty_pushes_thresholds_up():
    model = BinaryNet(hidden=[32, 32], activation="frac2", thermometer_levels=2).train()
    model(torch.randint(0, 256, (16, 784)))
    penalty = model.gate_penalty()
    assert 0 < float(penalty.detach()) < 1
    penalty.backward()
    for layer in model.gated_layers():
        assert (layer.gate_delta.grad <= 0).all() and (layer.gate_delta.grad < 0).any()
    fired, total = model.gate_counts()
    assert total == 16 * (32 + 10) and 0 < fired < total


def test_tensor_norm_eval_formula_and_positive_scale():
    norm = TensorNorm()
    x = torch.randn(64, 10) * 7 + 3
    norm.train()(x)
    assert float(norm.running_mean) != 0.0
    with torch.no_grad():
        norm.log_gamma.fill_(-2.0)
        norm.beta.fill_(0.25)
    norm.eval()
    acc = torch.arange(-50, 51, dtype=torch.float32)
    with torch.no_grad():
        out = norm(acc)
    assert float(norm.scale().detach()) > 0
    torch.testing.assert_close(out, (acc - norm.running_mean) * norm.scale() + norm.beta, rtol=0, atol=0)
    assert (out.diff() > 0).all()


@pytest.mark.parametrize("activation,levels", [("sign", 1), ("frac2", 2)])
def test_forward_trace_matches_integer_pipeline(activation, levels):
    torch.manual_seed(5)
    model = BinaryNet(thermometer_levels=levels, hidden=[48, 32], activation=activation, dropout=0.2)
    model.train()
    pixels = torch.randint(0, 256, (64, 784), dtype=torch.uint8)
    for _ in range(3):  # populate BN running statistics
        model(pixels)
    model.eval()
    trace = model.forward_trace(pixels[:10])
    assert torch.equal(trace["outputs"][-1], model(pixels[:10]))  # dropout is identity in eval
    # Re-run the pipeline layer by layer from the integer rule.
    x = model.thermometer(pixels[:10])
    for i, layer in enumerate(model.layers):
        xn = x.numpy().astype(np.int64)
        w = layer.binary_weight().numpy().astype(np.int64)
        if layer.in_bits == 1:
            acc = xn @ w.T
            assert trace["gates"][i] is None
        else:
            m = np.where(xn > 0, 1, -1)
            g = (m @ w.T) > np.floor(layer.gate_delta.detach().numpy())
            acc = 2 * (m @ w.T) + np.where(g, (xn - 2 * m) @ w.T, 0)
            np.testing.assert_array_equal(trace["gates"][i].numpy(), g)
        np.testing.assert_array_equal(trace["accs"][i].numpy(), acc)
        x = trace["outputs"][i]
    expected_kinds = [activation] * 2 + ["scores"]
    assert [layer.out for layer in model.layers] == expected_kinds
    assert [layer.in_bits for layer in model.layers] == [1] + [2 if activation == "frac2" else 1] * 2


def test_config_rebuilds_architecture():
    model = BinaryNet(thermometer_levels=3, hidden=[16, 8], activation="frac2", dropout=0.1)
    clone = BinaryNet(**model.config())
    assert {k: v.shape for k, v in clone.state_dict().items()} == \
           {k: v.shape for k, v in model.state_dict().items()}
    assert clone.config() == model.config()


def test_forward_trace_requires_eval_and_bad_parameters_rejected():
    model = BinaryNet(hidden=[8])
    with pytest.raises(RuntimeError, match="eval"):
        model.forward_trace(torch.zeros(1, 784))
    with pytest.raises(ValueError, match="in_bits"):
        BinaryDense(4, 4, 3, "sign")
    with pytest.raises(ValueError, match="out must be"):
        BinaryDense(4, 4, 1, "relu")
    with pytest.raises(ValueError, match="activation"):
        BinaryNet(activation="relu")
