"""Fixed-point residual path: sw.fixed_point (numpy) == models.residual (torch) bit for bit,
exact activation thresholds, residual blocks and a tiny ResNet against a numpy chain."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

import sw.fixed_point as fx
from models import residual as rs
from models.layers import clip_latent_weights
from sw.fixed_point import RESIDUAL_FORMAT, FixedPointFormat

torch.set_num_threads(1)

FMT = RESIDUAL_FORMAT
SEEDS = range(20)


def _t(x):
    return torch.as_tensor(np.asarray(x), dtype=torch.int64)


def _codes(rng, shape, fmt=FMT, corners=0.2):
    """Random codes with a share of the extremes lo, lo+1, hi-1, hi, 0, -1."""
    q = rng.integers(fmt.lo, fmt.hi + 1, size=shape, dtype=np.int64)
    special = np.array([fmt.lo, fmt.lo + 1, fmt.hi - 1, fmt.hi, 0, -1])
    mask = rng.random(shape) < corners
    q[mask] = rng.choice(special, size=int(mask.sum()))
    return q


def _ref_round_shift(v: int, s: int) -> int:
    """Independent reference: floor(v / 2**s + 1/2) in rational arithmetic."""
    return math.floor(Fraction(v, 1 << s) + Fraction(1, 2))


# --------------------------------------------------------------------------------------------
# The format and the numpy ops


def test_format_basics_and_errors():
    assert (FMT.bits, FMT.frac, FMT.lo, FMT.hi, FMT.scale) == (16, 7, -32768, 32767, 128)
    assert str(FMT) == "fixed<16,7>"
    # round half up, saturation
    x = [0.5 / 128, -0.5 / 128, 1.5 / 128, -1.5 / 128, 255.999, 1e9, -256.0, -300.0]
    assert FMT.quantize(x).tolist() == [1, 0, 2, -1, 32767, 32767, -32768, -32768]
    assert FMT.to_float([-32768, 128]).tolist() == [-256.0, 1.0]
    for bad in [(1, 0), (33, 0), (16, 16), (16, -1), (16.0, 7)]:
        with pytest.raises(ValueError, match="must be"):
            FixedPointFormat(*bad)
    with pytest.raises(ValueError, match="non-finite"):
        FMT.quantize([float("nan")])


@pytest.mark.parametrize("seed", SEEDS)
def test_round_shift_and_affine_match_rational_reference(seed):
    rng = np.random.default_rng(seed)
    c = 5
    x = rng.integers(-(1 << 20), 1 << 20, size=(40, c))
    x[:4] = [[-(1 << 20)] * c, [(1 << 20) - 1] * c, [0] * c, [-1] * c]
    mult = rng.integers(-(1 << 15) + 1, 1 << 15, size=c)
    add = rng.integers(-(1 << 31) + 1, 1 << 31, size=c)
    shift = int(rng.integers(0, 24))
    got = fx.affine(x, mult, shift, add, FMT)
    for (i, j), v in np.ndenumerate(x):
        want = min(max(_ref_round_shift(int(v) * int(mult[j]) + int(add[j]), shift), FMT.lo), FMT.hi)
        assert got[i, j] == want
    # per-channel shifts
    shifts = rng.integers(0, 24, size=c)
    got = fx.round_shift(x, shifts)
    assert all(got[i, j] == _ref_round_shift(int(x[i, j]), int(shifts[j]))
               for i in range(x.shape[0]) for j in range(c))
    # ties round up, negative ones too
    assert fx.round_shift([-6, -5, -3, -2, 2, 3, 5, 6], 2).tolist() == [-1, -1, -1, 0, 1, 1, 1, 2]


def test_rprelu_reference_and_saturation():
    fmt = FMT
    x = np.array([[-300, -1, 0, 1, 300, fmt.lo, fmt.hi]], dtype=np.int64).T  # (7, 1)
    # gamma 10, slope 3/8 (mult 3, shift 3), zeta -5
    got = fx.rprelu(x, [10], [3], 3, [-5], fmt)[:, 0]
    want = []
    for v in x[:, 0]:
        d = int(v) - 10
        y = d if d >= 0 else _ref_round_shift(d * 3, 3)
        want.append(min(max(y + -5, fmt.lo), fmt.hi))
    assert got.tolist() == want
    # saturation at the top: x = hi, gamma < 0 pushes above hi
    assert fx.rprelu([[fmt.hi]], [-100], [1], 0, [0], fmt).tolist() == [[fmt.hi]]
    assert fx.add_saturate([fmt.hi, fmt.lo, 5], [1, -1, -7], fmt).tolist() == [fmt.hi, fmt.lo, -2]


def test_pools_duplication_and_levels():
    x = np.array([1, 1, 0, 0, -1, -1, 0, 0, 2, 2, 2, 0], dtype=np.int64)  # sums 2, -2, 6
    img = np.zeros((3, 2, 2, 1), dtype=np.int64)
    for i in range(3):
        img[i, :, :, 0] = x[4 * i:4 * i + 4].reshape(2, 2)
    assert fx.avg_pool_2x2(img).reshape(-1).tolist() == [1, 0, 2]  # 0.5 -> 1, -0.5 -> 0, 1.5 -> 2
    with pytest.raises(ValueError, match="even H and W"):
        fx.avg_pool_2x2(np.zeros((1, 3, 2, 1), dtype=np.int64))
    d = fx.duplicate_channels(np.arange(6).reshape(1, 1, 2, 3), 2)
    assert d[0, 0, 1].tolist() == [3, 4, 5, 3, 4, 5]
    assert fx.global_sum_pool(np.ones((2, 3, 4, 5), dtype=np.int64)).tolist() == [[12] * 5] * 2
    t = np.array([[-2, 0, 3], [5, 6, 7]])
    assert fx.threshold_levels(np.array([[-3, 5], [0, 7], [3, 4]]), t).tolist() == \
        [[0, 1], [2, 3], [3, 0]]
    with pytest.raises(ValueError, match="must be an integer array"):
        fx.affine(np.zeros(3), [1], 0, [0], FMT)
    with pytest.raises(ValueError, match="overflows int64"):
        fx.affine(np.array([1 << 60]), [1 << 14], 0, [0], FMT)
    with pytest.raises(ValueError, match="shift must be in"):
        fx.round_shift([1], 31)


def test_quantize_multipliers_fit_and_maximal_shift():
    rng = np.random.default_rng(1)
    for _ in range(20):
        v = rng.normal(size=8) * 10.0 ** rng.uniform(-4, 3)
        a = rng.normal(size=8) * 10.0 ** rng.uniform(-2, 4)
        mult, shift, add = fx.quantize_multipliers(v, a)
        assert np.abs(mult).max() <= (1 << 15) - 1 and np.abs(add).max() <= (1 << 31) - 1
        if shift < fx.MAX_SHIFT:   # one more bit of shift would overflow some constant
            m2 = np.floor(v * 2.0 ** (shift + 1) + 0.5)
            a2 = np.floor(a * 2.0 ** (shift + 1) + 0.5)
            mult_bound = np.abs(m2).max() > (1 << 15) - 1
            assert mult_bound or np.abs(a2).max() > (1 << 31) - 1
            if mult_bound:   # the largest multiplier uses its 15 magnitude bits
                top = np.abs(v).argmax()
                assert abs(mult[top] / 2 ** shift - v[top]) <= abs(v[top]) * 2 ** -14
    mult, shift, add = fx.quantize_multipliers([0.0, 0.0])
    assert mult.tolist() == [0, 0] and shift == fx.MAX_SHIFT


@pytest.mark.parametrize("values, adds, match", [
    ([1.0, 40000.0], None, r"^bn multiplier of channel 1 is 40000\.0, which overflows a signed "
                           r"16-bit constant \(\|x\| <= 32767\)$"),
    ([1.0], [3e9], r"^bn additive term of channel 0 is 3000000000\.0, which overflows a signed "
                   r"32-bit constant"),
    ([float("inf")], None, r"^bn multiplier of channel 0 is inf, not a finite number$"),
])
def test_overflowing_constant_is_a_one_line_error(values, adds, match):
    with pytest.raises(ValueError, match=match) as info:
        fx.quantize_multipliers(values, adds, name="bn")
    assert "\n" not in str(info.value)


def test_batch_norm_with_overflowing_scale_refuses_to_fold():
    bn = rs.QuantBatchNorm(3, 0)
    with torch.no_grad():
        bn.bn.weight.copy_(torch.tensor([1.0, 1000.0, 1.0]))
    bn.eval()
    with pytest.raises(ValueError, match=r"^batch norm multiplier of channel 1 is 127993\.6\d*, "
                                         r"which overflows a signed 16-bit constant"):
        bn.constants()
    head = rs.FixedPointLinear(4, 2, pool_size=64)
    with torch.no_grad():
        head.bias.copy_(torch.tensor([0.0, 1e6]))
    with pytest.raises(ValueError, match=r"^classifier bias of class 1 is \d+ score units, "
                                         r"which overflows a signed 32-bit constant$"):
        head.constants()


# --------------------------------------------------------------------------------------------
# torch int64 twins == numpy


@pytest.mark.parametrize("seed", SEEDS)
def test_torch_ops_equal_numpy_ops(seed):
    rng = np.random.default_rng(100 + seed)
    fmt = [FMT, FixedPointFormat(8, 3), FixedPointFormat(24, 12)][seed % 3]
    c = int(rng.integers(1, 9))
    acc = rng.integers(-5000, 5000, size=(3, 4, 6, c))
    q = _codes(rng, (3, 4, 6, c), fmt)
    mult = rng.integers(-(1 << 15) + 1, 1 << 15, size=c)
    add = rng.integers(-(1 << 31) + 1, 1 << 31, size=c)
    shift = int(rng.integers(0, 25))
    for x in (acc, q):
        assert torch.equal(rs.affine_int(_t(x), mult, shift, add, fmt), _t(fx.affine(x, mult, shift, add, fmt)))
    shifts = rng.integers(0, 25, size=c)
    assert torch.equal(rs.affine_int(_t(acc), mult, shifts, add, fmt),
                       _t(fx.affine(acc, mult, shifts, add, fmt)))
    gamma, zeta = _codes(rng, (c,), fmt), _codes(rng, (c,), fmt)
    pm = rng.integers(-(1 << 15) + 1, 1 << 15, size=c)
    ps = int(rng.integers(0, 20))
    assert torch.equal(rs.rprelu_int(_t(q), gamma, pm, ps, zeta, fmt),
                       _t(fx.rprelu(q, gamma, pm, ps, zeta, fmt)))
    q2 = _codes(rng, q.shape, fmt)
    assert torch.equal(rs.add_saturate_int(_t(q), _t(q2), fmt), _t(fx.add_saturate(q, q2, fmt)))
    assert torch.equal(rs.avg_pool_2x2_int(_t(q)), _t(fx.avg_pool_2x2(q)))
    assert torch.equal(rs.duplicate_channels(_t(q), 2), _t(fx.duplicate_channels(q, 2)))
    assert torch.equal(rs.global_sum_pool_int(_t(q)), _t(fx.global_sum_pool(q)))
    for shift in (1, 3):
        assert torch.equal(rs.global_sum_pool_int(_t(q), shift), _t(fx.global_sum_pool(q, shift)))
        assert np.array_equal(fx.global_sum_pool(q, shift),
                              np.floor(q.sum(axis=(1, 2)) / 2 ** shift + 0.5).astype(np.int64))
    thr = np.sort(_codes(rng, (c, 3), fmt), axis=1)
    assert torch.equal(rs.threshold_levels_int(_t(q), thr), _t(fx.threshold_levels(q, thr)))
    assert fmt.contains(fx.affine(acc, mult, shift, add, fmt))


@pytest.mark.parametrize("seed", SEEDS)
def test_fake_quantize_is_the_format_quantizer(seed):
    rng = np.random.default_rng(200 + seed)
    fmt = [FMT, FixedPointFormat(8, 3)][seed % 2]
    codes = rng.integers(2 * fmt.lo, 2 * fmt.hi, size=1000)
    halves = (codes + 0.5) / fmt.scale                   # exact ties
    noise = rng.normal(size=1000) * (fmt.hi - fmt.lo) / fmt.scale
    for x in (halves, noise, codes / fmt.scale):
        xt = torch.tensor(x, dtype=torch.float32)
        assert np.float32(x).astype(np.float64).tolist() == xt.double().tolist()
        got = rs.fake_quantize(xt, fmt) * fmt.scale
        assert got.to(torch.int64).tolist() == fmt.quantize(xt.double().numpy()).tolist()
    x = torch.tensor([-1000.0, 0.3, 1000.0], requires_grad=True)
    rs.fake_quantize(x, fmt).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 0.0]


# --------------------------------------------------------------------------------------------
# Activation thresholds: exhaustive over the format


@pytest.mark.parametrize("kind", ["sign", "frac2"])
@pytest.mark.parametrize("fmt", [FMT, FixedPointFormat(8, 0), FixedPointFormat(12, 5)])
def test_thresholds_equal_eval_activation_exhaustively(kind, fmt):
    rng = np.random.default_rng(3)
    act = rs.ResidualActivation(8, kind, fmt).eval()
    span = (fmt.hi - fmt.lo) / fmt.scale
    biases = [0.0, 1 / 3, -2 / 3, 0.5 / fmt.scale, -0.5 / fmt.scale, span, -span,
              *(rng.normal(size=1) * span / 4)]
    with torch.no_grad():
        act.bias.copy_(torch.tensor(biases, dtype=torch.float32))
    q = np.arange(fmt.lo, fmt.hi + 1, dtype=np.int64)
    grid = np.repeat(q[:, None], 8, axis=1)                          # every code, every channel
    levels = fx.threshold_levels(grid, act.thresholds())
    values = act.activate_codes(_t(grid)).numpy()
    offset = 1 if kind == "sign" else 3
    assert np.array_equal(2 * levels - offset, values)
    assert set(np.unique(values)) <= ({-1, 1} if kind == "sign" else {-3, -1, 1, 3})
    # and the torch eval forward on real values is the same activation
    x = torch.tensor(fmt.to_float(grid), dtype=torch.float32)
    assert np.array_equal(act(x).numpy(), values)


def test_frac2_thresholds_values():
    # bias 0 in fixed<16,7>: steps -2/3, 0, 2/3 (float32) -> codes ceil(-85.33) = -85, 0, 86
    t = fx.step_thresholds([0, 10], rs.activation_steps("frac2"), FMT)
    assert t.tolist() == [[-85, 0, 86], [-95, -10, 76]]
    assert fx.step_thresholds([0], (0.0,), FMT).tolist() == [[0]]
    with pytest.raises(ValueError, match="strictly increasing"):
        fx.step_thresholds([0], (1.0, 0.0), FMT)


# --------------------------------------------------------------------------------------------
# A numpy chain of the integer network


def _np_conv(a, weight, stride, in_bits, gate_delta=None):
    """Binary 3x3 / pad 1 convolution of NHWC values (±1 or u) -> (B, OH, OW, out) int64."""
    pad_value = -1 if in_bits == 1 else -3
    a = np.pad(a.astype(np.int64), ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=pad_value)
    win = sliding_window_view(a, (3, 3), axis=(1, 2))[:, ::stride, ::stride]   # B,OH,OW,C,3,3
    win = win.transpose(0, 1, 2, 4, 5, 3).reshape(*win.shape[:3], -1)        # (ky, kx, c)
    if in_bits == 1:
        return win @ weight.T
    m = np.where(win > 0, 1, -1)
    acc_m, acc_l = m @ weight.T, (win - 2 * m) @ weight.T
    gate = acc_m.astype(np.float32) > gate_delta
    return 2 * acc_m + gate * acc_l


def _np_block(q, k, block):
    levels = fx.threshold_levels(q, k["thresholds"])
    a = 2 * levels - (1 if block.activation == "sign" else 3)
    acc = _np_conv(a, k["weight"], block.stride, 1 if block.activation == "sign" else 2,
                   k.get("gate_delta"))
    b1, p, b2 = k["bn1"], k["rprelu"], k["bn2"]
    y = fx.affine(acc, b1["mult"], b1["shift"], b1["add"], block.fmt)
    y = fx.rprelu(y, p["gamma"], p["mult"], p["shift"], p["zeta"], block.fmt)
    r = fx.avg_pool_2x2(q) if block.stride == 2 else q
    r = fx.duplicate_channels(r, block.out_channels // block.in_channels)
    return fx.affine(fx.add_saturate(y, r, block.fmt), b2["mult"], b2["shift"], b2["add"], block.fmt)


def _np_resnet_scores(model, pixels):
    bits = model.encode(pixels).numpy().astype(np.int64)
    acc = _np_conv(bits, model.stem.binary_weight().numpy().astype(np.int64), 1, 1)
    k = model.stem_bn.constants()
    q = fx.affine(acc, k["mult"], k["shift"], k["add"], model.fmt)
    codes = [q]
    for block in model.blocks:
        q = _np_block(q, block.integer_constants(), block)
        codes.append(q)
    head = model.head.constants()
    return codes, fx.global_sum_pool(q, model.head.input_shift) @ head["weight"].T + head["bias"]


def _randomise(module, rng):
    """Random latent weights and batch norm / RPReLU / activation parameters and statistics."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("conv.weight") or name == "weight" and p.dim() == 2:
                p.uniform_(-1, 1)
            elif "gate_delta" in name:
                p.copy_(torch.tensor(rng.normal(size=p.shape) * 3, dtype=torch.float32))
            elif name.endswith("slope"):
                p.copy_(torch.tensor(rng.uniform(-0.5, 1.0, size=p.shape), dtype=torch.float32))
            else:
                p.copy_(torch.tensor(rng.normal(size=p.shape), dtype=torch.float32))
        for name, buf in module.named_buffers():
            if name.endswith("running_mean"):
                buf.copy_(torch.tensor(rng.normal(size=buf.shape) * 3, dtype=torch.float32))
            elif name.endswith("running_var"):
                buf.copy_(torch.tensor(rng.uniform(0.05, 30, size=buf.shape), dtype=torch.float32))


@pytest.mark.parametrize("activation", ["sign", "frac2"])
@pytest.mark.parametrize("stride, cin, cout", [(1, 4, 4), (2, 4, 8), (2, 4, 4)])
@pytest.mark.parametrize("seed", range(4))
def test_block_eval_equals_numpy_chain(activation, stride, cin, cout, seed):
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    block = rs.ResidualBlock(cin, cout, 6, 8, stride=stride, activation=activation)
    _randomise(block, rng)
    block.eval()
    q = _codes(rng, (5, 6, 8, cin), corners=0.3)
    got = block.forward_int(_t(q))
    k = block.integer_constants()
    want = _np_block(q, k, block)
    assert got.dtype == torch.int64 and tuple(got.shape) == (5, 6 // stride, 8 // stride, cout)
    assert FMT.contains(want)
    assert np.array_equal(got.numpy(), want)
    # the float interface is the same integers, scaled
    x = torch.tensor(FMT.to_float(q), dtype=torch.float32)
    assert np.array_equal((block(x) * FMT.scale).to(torch.int64).numpy(), want)


def test_block_training_forward_is_on_the_grid_and_differentiable():
    torch.manual_seed(0)
    block = rs.ResidualBlock(4, 8, 6, 6, stride=2, activation="frac2")
    x = torch.tensor(FMT.to_float(_codes(np.random.default_rng(0), (3, 6, 6, 4))),
                     dtype=torch.float32, requires_grad=True)
    y = block(x)
    assert torch.equal(torch.round(y * FMT.scale), y * FMT.scale)
    y.square().mean().backward()
    assert x.grad is not None and block.conv.weight.grad.abs().sum() > 0
    assert block.act.bias.grad is not None and block.rprelu.slope.grad is not None


def test_block_parameter_errors():
    with pytest.raises(ValueError, match=r"^out_channels must be in_channels \(stride 1\)"):
        rs.ResidualBlock(4, 8, 6, 6)
    with pytest.raises(ValueError, match=r"^stride must be 1 or 2, not 3$"):
        rs.ResidualBlock(4, 4, 6, 6, stride=3)
    with pytest.raises(ValueError, match=r"^a stride-2 block needs an even input size, not 5x6$"):
        rs.ResidualBlock(4, 8, 5, 6, stride=2)
    with pytest.raises(ValueError, match=r"^activation must be one of"):
        rs.ResidualBlock(4, 4, 6, 6, activation="relu")
    with pytest.raises(ValueError, match=r"^each width must be the previous one or twice it"):
        rs.ResNet(widths=(16, 64))
    with pytest.raises(ValueError, match=r"^stage 1 halves a 7x7 feature map"):
        rs.ResNet(input_shape=(1, 7, 7), thermometer_levels=1, widths=(4, 8), blocks=1)
    with pytest.raises(ValueError, match=r"^fmt must be a FixedPointFormat of at most 24 bits"):
        rs.ResNet(fmt_bits=32, fmt_frac=8)
    block = rs.ResidualBlock(4, 4, 6, 6).eval()
    with pytest.raises(ValueError, match="not codes of fixed<16,7>"):
        block(torch.full((1, 6, 6, 4), 0.001))


# --------------------------------------------------------------------------------------------
# Whole networks


def test_resnet20_topology():
    model = rs.resnet20()
    assert model.stem.in_channels == 96 and model.thermometer.levels == 32
    assert len(model.blocks) == 9
    assert [b.out_channels for b in model.blocks] == [16] * 3 + [32] * 3 + [64] * 3
    assert [b.stride for b in model.blocks] == [1, 1, 1, 2, 1, 1, 2, 1, 1]
    assert all(b.conv.in_bits == 2 for b in model.blocks)
    assert model.head.pool_size == 64 and model.blocks[-1].out_map == (8, 8, 64)
    rebuilt = rs.ResNet(**model.config())
    assert rebuilt.config() == model.config()
    rng = np.random.default_rng(0)
    _randomise(model, rng)
    model.eval()
    pixels = torch.randint(0, 256, (2, 3 * 32 * 32), generator=torch.Generator().manual_seed(0))
    codes, scores = _np_resnet_scores(model, pixels)
    assert np.array_equal(model.scores(pixels).numpy(), scores)
    assert [tuple(c.shape) for c in model.residual_codes(pixels)] == [c.shape for c in codes]


def _mnist_or_random(n):
    from models.data import mnist_tensors
    from sw.errors import UserError
    try:
        return mnist_tensors("train", limit=n)
    except UserError:  # no MNIST installed: random images with a learnable label
        g = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (n, 784), generator=g, dtype=torch.uint8)
        return images, (images[:, :392].float().mean(1) > images[:, 392:].float().mean(1)).long()


@pytest.mark.parametrize("activation", ["sign", "frac2"])
def test_tiny_resnet_trains_and_eval_is_exact(activation):
    torch.manual_seed(0)
    images, labels = _mnist_or_random(256)
    model = rs.tiny_resnet(activation, input_shape=(1, 28, 28))
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for step in range(40):
        idx = torch.randint(0, len(labels), (32,), generator=g)
        model.train()
        loss = torch.nn.functional.cross_entropy(model(images[idx]), labels[idx])
        if activation == "frac2":
            loss = loss + 0.05 * model.gate_penalty()
        opt.zero_grad()
        loss.backward()
        opt.step()
        clip_latent_weights(model)
        losses.append(float(loss.detach()))
    assert np.mean(losses[-8:]) < np.mean(losses[:8]) - 0.1
    model.eval()
    batch = images[:64]
    scores = model.scores(batch)
    assert torch.equal(scores, model.scores(batch))                        # reproducible
    logits = model(batch)
    assert torch.equal(logits, (scores.double() * model.head.logit_scale()).float())
    assert torch.equal(logits.argmax(1), scores.argmax(1))
    codes, want = _np_resnet_scores(model, batch)
    assert np.array_equal(scores.numpy(), want)
    for got, ref in zip(model.residual_codes(batch), codes):
        assert np.array_equal(got.numpy(), ref) and FMT.contains(ref)
