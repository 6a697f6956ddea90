"""FracBNN-style residual networks whose shortcut path is exact fixed point.

The tensor between residual blocks is carried in a signed fixed-point format
(:data:`sw.fixed_point.RESIDUAL_FORMAT`, 16 bits with 7 fractional, ``ap_fixed<16,9>``).
Everything on that path is an integer operation of :mod:`sw.fixed_point` (per-channel
multiply-shift-add with round-half-up and saturation, integer RPReLU, saturating add,
2x2 average pool, channel duplication, global sum pool); this module computes the same
integers in torch int64 in eval mode, so PyTorch eval, the numpy reference (and later the
golden model and the RTL) agree bit for bit.

Block (ReActNet / FracBNN basic block), on the residual codes ``q``::

    a   = act(q)                       # sign(q + b) or frac2 levels: integer thresholds on q
    acc = BinaryConv2d(a)              # 3x3, pad 1, stride 1 or 2 (exact integer accumulators)
    y   = affine(acc)                  # batch norm 1, folded: multiply-shift-add, saturate
    y   = rprelu(y)                    # integer RPReLU, saturate
    r   = q, or dup(avg_pool_2x2(q))   # shortcut (downsampling: 2x2 average + channel duplication)
    out = affine(add_saturate(y, r))   # batch norm 2, folded

Training (``model.train()``) runs the same chain in float32 on real values (``q * 2**-frac``)
with batch statistics, and *fake-quantises* every point where eval rounds or saturates
(:func:`fake_quantize`: forward = the exact round-half-up/saturated grid value, backward =
straight through, zero where saturated), so training sees the format's grid and range.  The
only difference from eval is the batch norm: training normalises with the batch's statistics
in float, eval folds the running statistics and the affine parameters into the integer
``(mult, shift, add)`` of :func:`sw.fixed_point.fold_affine` (recomputed from the parameters at
every eval forward, so eval is always exactly the integer network of the current parameters).
Activation biases, RPReLU shifts and the classifier's weights are fake-quantised in training
exactly as eval quantises them; the RPReLU slope is quantised (16-bit multiplier) only in eval.
The running statistics that training leaves are not what eval needs (a channel's constant MNIST
background flips across an activation threshold from batch to batch, which batch statistics hide);
:meth:`ResNet.recalibrate_batch_norm` sets them in eval-shaped passes after training (the
trainer's ``recalibrate_images``; docs/models.md, "Residual networks (fixed point)").

Values between blocks are float32 tensors of real values in both modes (exactly on the grid in
eval; formats of at most 24 bits so float32 holds every code); :meth:`ResidualBlock.forward_int`
and :meth:`ResNet.scores` are the int64 interfaces.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sw import fixed_point as fx
from sw.fixed_point import RESIDUAL_FORMAT, FixedPointFormat

from .layers import FRAC2_THRESHOLDS, BinaryConv2d, Thermometer, _frac2_train, _sign_train

__all__ = [
    "fake_quantize",
    "to_codes",
    "round_shift_int",
    "affine_int",
    "rprelu_int",
    "add_saturate_int",
    "avg_pool_2x2_int",
    "duplicate_channels",
    "global_sum_pool_int",
    "threshold_levels_int",
    "activation_steps",
    "QuantBatchNorm",
    "RPReLU",
    "ResidualActivation",
    "ResidualBlock",
    "FixedPointLinear",
    "ResNet",
    "tiny_resnet",
    "resnet20",
]

_ACTIVATIONS = ("sign", "frac2")


# --------------------------------------------------------------------------------------------
# Exact integer ops (torch int64), the twins of sw.fixed_point


def _i64(x, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=torch.int64, device=like.device)


def round_shift_int(v: torch.Tensor, shift) -> torch.Tensor:
    """``(v + 2**(shift-1)) >> shift`` (round half up) on int64, as :func:`sw.fixed_point.round_shift`."""
    s = _i64(shift, v)
    return (v + (torch.ones_like(s) << s >> 1)) >> s


def affine_int(x: torch.Tensor, mult, shift, add, fmt: FixedPointFormat) -> torch.Tensor:
    """``saturate(round_shift(x * mult + add, shift))`` per channel (last axis), int64."""
    v = x * _i64(mult, x) + _i64(add, x)
    return round_shift_int(v, shift).clamp(fmt.lo, fmt.hi)


def rprelu_int(x: torch.Tensor, gamma, mult, shift, zeta, fmt: FixedPointFormat) -> torch.Tensor:
    """Integer RPReLU of :func:`sw.fixed_point.rprelu` on int64 codes."""
    d = x - _i64(gamma, x)
    neg = round_shift_int(d.clamp(max=0) * _i64(mult, x), shift)
    return (torch.where(d >= 0, d, neg) + _i64(zeta, x)).clamp(fmt.lo, fmt.hi)


def add_saturate_int(a: torch.Tensor, b: torch.Tensor, fmt: FixedPointFormat) -> torch.Tensor:
    """``saturate(a + b)`` on int64 codes."""
    return (a + b).clamp(fmt.lo, fmt.hi)


def avg_pool_2x2_int(x: torch.Tensor) -> torch.Tensor:
    """NHWC int64 2x2 / stride 2 average: ``round_shift(sum of 4, 2)`` (H, W even)."""
    if x.dim() != 4 or x.shape[1] % 2 or x.shape[2] % 2:
        raise ValueError(f"avg_pool_2x2 needs NHWC with even H and W, not {tuple(x.shape)}")
    s = x[:, 0::2, 0::2] + x[:, 0::2, 1::2] + x[:, 1::2, 0::2] + x[:, 1::2, 1::2]
    return round_shift_int(s, 2)


def duplicate_channels(x: torch.Tensor, factor: int) -> torch.Tensor:
    """``factor`` copies of ``x`` along the last (channel) axis; channel ``c`` is input ``c mod C``."""
    return x if factor == 1 else torch.cat([x] * factor, dim=-1)


def global_sum_pool_int(x: torch.Tensor, shift: int = 0) -> torch.Tensor:
    """NHWC int64 -> ``(B, C)`` sums over H and W, ``round_shift(sum, shift)`` (the rest of
    the ``1/(H*W)`` goes into the logit scale), as :func:`sw.fixed_point.global_sum_pool`."""
    return round_shift_int(x.sum(dim=(1, 2)), shift)


def threshold_levels_int(x: torch.Tensor, thresholds) -> torch.Tensor:
    """``sum_k (x >= T[c, k])`` on int64 codes, ``thresholds`` ``(C, K)``."""
    return (x.unsqueeze(-1) >= _i64(thresholds, x)).sum(dim=-1)


class _FakeQuant(torch.autograd.Function):
    """Forward: the format's grid value ``clamp(floor(x 2**f + 1/2), lo, hi) 2**-f``;
    backward: the gradient where ``x`` is inside the range (clipped straight through)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, fmt: FixedPointFormat) -> torch.Tensor:
        v = x * float(fmt.scale)
        inside = (v >= fmt.lo - 0.5) & (v < fmt.hi + 0.5)
        ctx.save_for_backward(inside)
        q = torch.floor(v.clamp(fmt.lo - 1, fmt.hi + 1) + 0.5).clamp(fmt.lo, fmt.hi)
        return q / float(fmt.scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (inside,) = ctx.saved_tensors
        return grad * inside.to(grad.dtype), None


def fake_quantize(x: torch.Tensor, fmt: FixedPointFormat) -> torch.Tensor:
    """Round ``x`` half up to the grid of ``fmt`` and saturate (float32 real values), with the
    clipped straight-through gradient.  On codes ``x * 2**frac`` it is exactly
    :meth:`FixedPointFormat.quantize`."""
    return _FakeQuant.apply(x, fmt)


def to_codes(x: torch.Tensor, fmt: FixedPointFormat) -> torch.Tensor:
    """Real values that lie exactly on the grid of ``fmt`` -> int64 codes (error otherwise)."""
    v = x.to(torch.float64) * fmt.scale
    q = torch.round(v)
    if not torch.equal(q, v) or (q.numel() and (q.min() < fmt.lo or q.max() > fmt.hi)):
        raise ValueError(f"values are not codes of {fmt} (off the grid or out of range)")
    return q.to(torch.int64)


def _integers(x: torch.Tensor) -> torch.Tensor:
    """Integer-valued floats -> int64 (error otherwise)."""
    q = torch.round(x)
    if not torch.equal(q, x):
        raise ValueError("eval input must be integers (accumulators) or residual codes")
    return q.to(torch.int64)


def _check_format(fmt) -> FixedPointFormat:
    if not isinstance(fmt, FixedPointFormat) or fmt.bits > 24:
        raise ValueError(f"fmt must be a FixedPointFormat of at most 24 bits (exact in "
                         f"float32), not {fmt!r}")
    return fmt


def _check_channels(channels, name: str = "channels") -> int:
    if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
        raise ValueError(f"{name} must be a positive int, not {channels!r}")
    return channels


def _as_numpy(p: torch.Tensor) -> np.ndarray:
    return p.detach().cpu().to(torch.float64).numpy()


# --------------------------------------------------------------------------------------------
# Modules of the fixed-point path


class QuantBatchNorm(nn.Module):
    """Per-channel batch norm whose output is a code of ``fmt``.

    The input is an integer ``n`` worth ``n * 2**-in_frac`` (``in_frac = 0``: convolution
    accumulators; ``fmt.frac``: residual codes), given as its real value (float) in training
    and as int64 ``n`` to :meth:`forward_int`.  Channels are the last axis.

    * training: ``F.batch_norm`` with batch statistics (running statistics updated), then
      :func:`fake_quantize` to ``fmt``; with :attr:`frozen`, with the running statistics
      (not updated): the float twin of eval;
    * eval: :func:`sw.fixed_point.affine` with :meth:`constants` = the running statistics
      and ``weight``/``bias`` folded (``scale = weight / sqrt(running_var + eps)``,
      ``bias - running_mean * scale``) by :func:`sw.fixed_point.fold_affine`.
    """

    def __init__(self, channels: int, in_frac: int, fmt: FixedPointFormat = RESIDUAL_FORMAT,
                 eps: float = 1e-4):
        super().__init__()
        _check_channels(channels)
        self.fmt = _check_format(fmt)
        if not isinstance(in_frac, int) or not 0 <= in_frac <= 32:
            raise ValueError(f"in_frac must be an int in 0..32, not {in_frac!r}")
        self.in_frac = in_frac
        self.bn = nn.BatchNorm1d(channels, eps=eps)
        #: Training forward with the running statistics (see :meth:`ResNet.freeze_batch_norm`).
        self.frozen = False

    def constants(self) -> dict:
        """Folded ``{"mult", "shift", "add"}`` of :func:`sw.fixed_point.affine` (numpy ints)."""
        bn = self.bn
        scale = _as_numpy(bn.weight) / np.sqrt(_as_numpy(bn.running_var) + bn.eps)
        bias = _as_numpy(bn.bias) - _as_numpy(bn.running_mean) * scale
        mult, shift, add = fx.fold_affine(scale, bias, self.in_frac, self.fmt,
                                          name="batch norm")
        return {"mult": mult, "shift": shift, "add": add}

    def forward_int(self, n: torch.Tensor, constants: dict | None = None) -> torch.Tensor:
        """int64 ``(..., C)`` -> codes of ``fmt`` (exact)."""
        k = self.constants() if constants is None else constants
        return affine_int(n, k["mult"], k["shift"], k["add"], self.fmt)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            n = _integers(x * float(1 << self.in_frac))
            return self.forward_int(n).to(torch.float32) / float(self.fmt.scale)
        bn = self.bn
        rows = x.reshape(-1, x.shape[-1])
        z = F.batch_norm(rows, bn.running_mean, bn.running_var, bn.weight, bn.bias,
                         training=not self.frozen, momentum=bn.momentum, eps=bn.eps)
        return fake_quantize(z, self.fmt).reshape(x.shape)


class RPReLU(nn.Module):
    """ReActNet's RPReLU on codes of ``fmt``: ``d = x - gamma``, ``y = d`` (``d >= 0``) or
    ``slope * d``, plus ``zeta``; per channel (last axis).

    ``gamma`` and ``zeta`` are fake-quantised to ``fmt`` (round half up, saturated) in training
    and eval alike; the slope is float in training and a :data:`sw.fixed_point.MULT_BITS`-bit
    multiplier with a shift (:func:`sw.fixed_point.fold_slopes`) in eval, whose product is
    rounded half up; the output is rounded (training) and saturated to ``fmt``.
    """

    def __init__(self, channels: int, fmt: FixedPointFormat = RESIDUAL_FORMAT,
                 slope: float = 0.25):
        super().__init__()
        _check_channels(channels)
        self.fmt = _check_format(fmt)
        self.gamma = nn.Parameter(torch.zeros(channels))
        self.zeta = nn.Parameter(torch.zeros(channels))
        self.slope = nn.Parameter(torch.full((channels,), float(slope)))

    def constants(self) -> dict:
        """``{"gamma", "zeta"}`` codes and ``{"mult", "shift"}`` of the slope (numpy ints)."""
        mult, shift = fx.fold_slopes(_as_numpy(self.slope), name="RPReLU slope")
        return {"gamma": self.fmt.quantize(_as_numpy(self.gamma)),
                "zeta": self.fmt.quantize(_as_numpy(self.zeta)), "mult": mult, "shift": shift}

    def forward_int(self, q: torch.Tensor, constants: dict | None = None) -> torch.Tensor:
        k = self.constants() if constants is None else constants
        return rprelu_int(q, k["gamma"], k["mult"], k["shift"], k["zeta"], self.fmt)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.forward_int(to_codes(x, self.fmt)).to(torch.float32) / float(self.fmt.scale)
        d = x - fake_quantize(self.gamma, self.fmt)
        y = torch.where(d >= 0, d, self.slope * d) + fake_quantize(self.zeta, self.fmt)
        return fake_quantize(y, self.fmt)


def activation_steps(kind: str) -> tuple[float, ...]:
    """The real steps ``c_k`` of a block activation: ``(0.0,)`` for sign, the float32 values of
    :data:`models.layers.FRAC2_THRESHOLDS` for frac2."""
    if kind not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {_ACTIVATIONS}, not {kind!r}")
    if kind == "sign":
        return (0.0,)
    return tuple(float(np.float32(c)) for c in FRAC2_THRESHOLDS)


class ResidualActivation(nn.Module):
    """The binarisation at the start of a block: ``t = x + bias`` (per channel), then sign
    (±1, ``t >= 0``) or FracBNN's frac2 (``u = 2q - 3``, ``q = #{k : t >= c_k}``, ``c_k`` in
    :data:`models.layers.FRAC2_THRESHOLDS`).

    ``bias`` is fake-quantised to ``fmt`` (so ``t`` is a grid value); training uses the
    layers' STE (or the surrogate set in :attr:`surrogate`).  Eval compares ``t`` in float64
    with the float32 steps (:meth:`activate_codes`); :meth:`thresholds` gives the equivalent
    integer thresholds on the codes (``level = #{k : q >= T[c, k]}``), exact by construction
    and tested over the format's whole range.
    """

    def __init__(self, channels: int, kind: str, fmt: FixedPointFormat = RESIDUAL_FORMAT):
        super().__init__()
        _check_channels(channels)
        self.steps = activation_steps(kind)
        self.kind = kind
        self.fmt = _check_format(fmt)
        self.bias = nn.Parameter(torch.zeros(channels))
        self.surrogate: tuple[float, bool] | None = None

    def bias_codes(self) -> np.ndarray:
        """The bias as codes of ``fmt`` (round half up, saturated), numpy int64 ``(C,)``."""
        return self.fmt.quantize(_as_numpy(self.bias))

    def thresholds(self) -> np.ndarray:
        """``(C, K)`` int64 thresholds on the codes (:func:`sw.fixed_point.step_thresholds`)."""
        return fx.step_thresholds(self.bias_codes(), self.steps, self.fmt)

    def activate_codes(self, q: torch.Tensor) -> torch.Tensor:
        """Eval activation of int64 codes: ±1 (sign) or ``u`` (frac2), float32."""
        t = (q + _i64(self.bias_codes(), q)).to(torch.float64) / float(self.fmt.scale)
        level = sum((t >= c).to(torch.float32) for c in self.steps)
        return 2.0 * level - (1.0 if self.kind == "sign" else 3.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.activate_codes(to_codes(x, self.fmt))
        t = x + fake_quantize(self.bias, self.fmt)
        if self.kind == "sign":
            return _sign_train(t, self.surrogate)
        return _frac2_train(t, self.surrogate)


def _accumulator_conv(in_channels: int, out_channels: int, *, height: int, width: int,
                      in_bits: int, stride: int) -> BinaryConv2d:
    """A 3x3 / pad 1 :class:`BinaryConv2d` used only for its :meth:`~BinaryDense.accumulate`
    (its own activation is replaced by the fixed-point path, so its bias is removed)."""
    conv = BinaryConv2d(in_channels, out_channels, 3, in_height=height, in_width=width,
                        in_bits=in_bits, out="sign", stride=stride, pad=1, batch_norm=False)
    del conv.act_bias
    return conv


class ResidualBlock(nn.Module):
    """A FracBNN / ReActNet basic block on fixed-point residual codes (see the module docstring).

    Parameters
    ----------
    in_channels, out_channels
        ``out_channels`` is ``in_channels`` (stride 1 or 2) or ``2 * in_channels`` (stride 2).
    height, width
        Input size; even for stride 2.
    stride
        1, or 2 (downsampling: the convolution has stride 2, the shortcut is a 2x2 average pool
        followed by channel duplication when the width doubles).
    activation
        ``"sign"`` (1-bit convolution input) or ``"frac2"`` (2-bit input with precision gating).
    fmt
        The residual format.

    ``forward`` takes and returns NHWC float32 real values (grid values in eval);
    :meth:`forward_int` takes and returns int64 codes (eval only).
    """

    def __init__(self, in_channels: int, out_channels: int, height: int, width: int, *,
                 stride: int = 1, activation: str = "sign",
                 fmt: FixedPointFormat = RESIDUAL_FORMAT):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("height", height), ("width", width)):
            _check_channels(value, name)
        if stride not in (1, 2) or isinstance(stride, bool):
            raise ValueError(f"stride must be 1 or 2, not {stride!r}")
        if out_channels not in ((in_channels,) if stride == 1 else (in_channels, 2 * in_channels)):
            raise ValueError(f"out_channels must be in_channels (stride 1) or in_channels or "
                             f"2*in_channels (stride 2), not {out_channels!r}")
        if stride == 2 and (height % 2 or width % 2):
            raise ValueError(f"a stride-2 block needs an even input size, not {height}x{width}")
        self.fmt = _check_format(fmt)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.height, self.width, self.stride = height, width, stride
        self.activation = activation
        self.act = ResidualActivation(in_channels, activation, fmt)
        self.conv = _accumulator_conv(in_channels, out_channels, height=height, width=width,
                                      in_bits=1 if activation == "sign" else 2, stride=stride)
        self.bn1 = QuantBatchNorm(out_channels, 0, fmt)
        self.rprelu = RPReLU(out_channels, fmt)
        self.bn2 = QuantBatchNorm(out_channels, fmt.frac, fmt)

    @property
    def out_map(self) -> tuple[int, int, int]:
        """Output ``(H, W, C)``."""
        return (self.height // self.stride, self.width // self.stride, self.out_channels)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, in={self.height}x{self.width}, "
                f"stride={self.stride}, activation={self.activation!r}, fmt={self.fmt}")

    def _shortcut_train(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 2:
            # The average of 4 grid values is exact in float32; fake_quantize then rounds it
            # half up to the grid, which is exactly round_shift(sum, 2) on the codes.
            x = F.avg_pool2d(x.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)
            x = fake_quantize(x, self.fmt)
        return duplicate_channels(x, self.out_channels // self.in_channels)

    def integer_constants(self) -> dict:
        """Every constant of the integer block (numpy): ``thresholds`` ``(C_in, K)``,
        ``weight`` ``(C_out, 9*C_in)`` ±1 in the window order (ky, kx, c), ``gate_delta``
        (frac2: float, the gate is ``acc_m > gate_delta``), ``bn1``/``bn2`` (``mult``,
        ``shift``, ``add``) and ``rprelu`` (``gamma``, ``mult``, ``shift``, ``zeta``)."""
        out = {"thresholds": self.act.thresholds(),
               "weight": self.conv.binary_weight().numpy().astype(np.int64),
               "bn1": self.bn1.constants(), "rprelu": self.rprelu.constants(),
               "bn2": self.bn2.constants()}
        if self.activation == "frac2":
            out["gate_delta"] = self.conv.gate_delta.detach().numpy().astype(np.float32)
        return out

    @torch.no_grad()
    def forward_int(self, q: torch.Tensor) -> torch.Tensor:
        """Eval: int64 NHWC codes ``(B, H, W, C_in)`` -> int64 codes ``(B, H', W', C_out)``."""
        if self.training:
            raise RuntimeError("forward_int needs eval mode; call model.eval() first")
        b = q.shape[0]
        a = self.act.activate_codes(q)
        acc, _ = self.conv.accumulate(a)
        y = self.bn1.forward_int(acc.to(torch.int64))
        y = self.rprelu.forward_int(y)
        h, w, c = self.out_map
        y = y.reshape(b, h, w, c)
        r = avg_pool_2x2_int(q) if self.stride == 2 else q
        r = duplicate_channels(r, self.out_channels // self.in_channels)
        return self.bn2.forward_int(add_saturate_int(y, r, self.fmt))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.forward_int(to_codes(x, self.fmt)).to(torch.float32) / float(self.fmt.scale)
        b = x.shape[0]
        acc, _ = self.conv.accumulate(self.act(x))
        y = self.rprelu(self.bn1(acc)).reshape(b, *self.out_map)
        return self.bn2(fake_quantize(y + self._shortcut_train(x), self.fmt))


class FixedPointLinear(nn.Module):
    """The classifier on the global sum pool: integer scores with a positive float logit scale.

    Input: the ``(B, C)`` sums over ``pool_size`` positions of residual codes, each divided by
    ``2**input_shift`` with round half up by the pool (:func:`global_sum_pool_int`; real sums
    in training).  Weights are quantised per tensor to ``weight_bits``-bit signed integers,
    ``w_int = clamp(floor(w / s + 1/2), -Q, Q)``, ``Q = 2**(weight_bits-1) - 1``,
    ``s = max|w| / Q`` (fake-quantised with a straight-through gradient in training).

    Eval: ``scores = sums @ w_int.T + bias_int`` (int64, exact), ``bias_int =
    floor(bias / lsb + 1/2)`` (a signed :data:`sw.fixed_point.ADD_BITS`-bit integer, else a
    one-line error) and ``logits = scores * lsb`` with ``lsb = s / (pool_size * 2**frac)``
    (:meth:`logit_scale`, > 0: the argmax of the scores is the argmax of the logits).
    Training computes ``logits = (sums / pool_size) @ (w_int * s).T + bias``, the same map
    (but for the pool's rounding).  ``input_shift`` keeps the scores narrow: a ResNet-20's
    exact sums over 8x8 positions need 35-bit scores, its averages (shift 6) 30 bits.
    """

    def __init__(self, in_features: int, classes: int, pool_size: int,
                 fmt: FixedPointFormat = RESIDUAL_FORMAT, weight_bits: int = 8,
                 input_shift: int = 0):
        super().__init__()
        _check_channels(in_features, "in_features")
        _check_channels(classes, "classes")
        _check_channels(pool_size, "pool_size")
        if not isinstance(weight_bits, int) or not 2 <= weight_bits <= 16:
            raise ValueError(f"weight_bits must be an int in 2..16, not {weight_bits!r}")
        if not isinstance(input_shift, int) or isinstance(input_shift, bool) \
                or not 0 <= input_shift <= max(0, math.ceil(math.log2(pool_size))):
            raise ValueError(f"input_shift must be an int in 0..ceil(log2(pool_size = "
                             f"{pool_size})), not {input_shift!r}")
        self.fmt = _check_format(fmt)
        self.pool_size, self.weight_bits, self.input_shift = pool_size, weight_bits, input_shift
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(classes, in_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(classes))

    @property
    def qmax(self) -> int:
        return (1 << (self.weight_bits - 1)) - 1

    def weight_step(self) -> float:
        """``s = max|w| / Q`` (float64; 1 for an all-zero weight)."""
        m = float(self.weight.detach().abs().max())
        return m / self.qmax if m > 0 else 1.0

    def logit_scale(self) -> float:
        """``lsb = s * 2**input_shift / (pool_size * 2**frac)``: logits = scores * lsb."""
        return self.weight_step() * (1 << self.input_shift) / (self.pool_size * self.fmt.scale)

    def constants(self) -> dict:
        """``{"weight": (classes, C) int64, "bias": (classes,) int64, "logit_scale": float}``."""
        s = self.weight_step()
        w = np.clip(np.floor(_as_numpy(self.weight) / s + 0.5), -self.qmax, self.qmax)
        lsb = self.logit_scale()
        bias = np.floor(_as_numpy(self.bias) / lsb + 0.5)
        limit = (1 << (fx.ADD_BITS - 1)) - 1
        bad = np.flatnonzero(np.abs(bias) > limit)
        if bad.size:
            raise ValueError(f"classifier bias of class {int(bad[0])} is {bias[bad[0]]:.0f} "
                             f"score units, which overflows a signed {fx.ADD_BITS}-bit constant")
        return {"weight": w.astype(np.int64), "bias": bias.astype(np.int64), "logit_scale": lsb}

    def forward_int(self, sums: torch.Tensor) -> torch.Tensor:
        """int64 ``(B, C)`` pooled codes (sums shifted by ``input_shift``) -> int64
        ``(B, classes)`` scores."""
        k = self.constants()
        return sums @ _i64(k["weight"], sums).t() + _i64(k["bias"], sums)

    def forward(self, sums: torch.Tensor) -> torch.Tensor:
        """Training: real sums -> float logits (eval: use :meth:`forward_int`)."""
        s = self.weight_step()
        w = self.weight / s
        wq = (w + (torch.floor(w + 0.5).clamp(-self.qmax, self.qmax) - w).detach()) * s
        return (sums / self.pool_size) @ wq.t() + self.bias


def _positive_ints(values, name: str) -> list[int]:
    values = list(values) if isinstance(values, (list, tuple)) else [values]
    if not values or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in values):
        raise ValueError(f"{name} must be positive ints, not {values!r}")
    return values


class ResNet(nn.Module):
    """Thermometer input, a binary stem convolution, stages of :class:`ResidualBlock`, global sum
    pool and a :class:`FixedPointLinear` classifier.

    Parameters
    ----------
    input_shape
        (C, H, W) of the 8-bit images, given as ``(B, C*H*W)`` pixels in HWC order.
    thermometer_levels, thermometer_thresholds
        As :class:`models.layers.BinaryNet`: the stem sees ``C*T`` binary channels.
    widths
        Channels per stage; each is the previous one or twice it.  Every stage after the
        first starts with a stride-2 block (the feature map halves; H and W must stay even).
    blocks
        Blocks per stage: one int for all stages or one per stage.
    activation
        ``"sign"`` or ``"frac2"`` (gated 2-bit) in every block; the stem's input is the 1-bit
        thermometer.
    classes, weight_bits
        The classifier (:class:`FixedPointLinear`).
    pool_shift
        The global pool divides its sums by ``2**pool_shift`` (round half up) before the
        classifier (0: exact sums; ``log2(H*W)`` of the last map: the average, which keeps a
        ResNet-20's scores within the 32-bit output beat).
    fmt_bits, fmt_frac
        The residual :class:`sw.fixed_point.FixedPointFormat` (at most 24 bits).

    The stem is a 3x3 / pad 1 :class:`BinaryConv2d` whose accumulators go through a
    :class:`QuantBatchNorm` into the residual format.  ``forward`` returns float logits (in
    eval ``scores * head.logit_scale()`` exactly); :meth:`scores` the int64 scores.
    """

    def __init__(self, input_shape: Sequence[int] = (3, 32, 32), thermometer_levels: int = 32,
                 widths: Sequence[int] = (16, 32, 64), blocks: int | Sequence[int] = 3,
                 activation: str = "sign", classes: int = 10,
                 thermometer_thresholds: Sequence[int] | None = None, weight_bits: int = 8,
                 fmt_bits: int = RESIDUAL_FORMAT.bits, fmt_frac: int = RESIDUAL_FORMAT.frac,
                 pool_shift: int = 0):
        super().__init__()
        if len(input_shape) != 3 or any(not isinstance(d, int) or d < 1 for d in input_shape):
            raise ValueError(f"input_shape must be three positive ints (C, H, W), not {input_shape!r}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {_ACTIVATIONS}, not {activation!r}")
        widths = _positive_ints(widths, "widths")
        blocks = _positive_ints(blocks, "blocks")
        if len(blocks) == 1:
            blocks = blocks * len(widths)
        if len(blocks) != len(widths):
            raise ValueError(f"blocks must be one int or one per stage ({len(widths)}), "
                             f"not {blocks!r}")
        for a, b in zip(widths, widths[1:]):
            if b not in (a, 2 * a):
                raise ValueError(f"each width must be the previous one or twice it, not {widths!r}")
        self.fmt = _check_format(FixedPointFormat(fmt_bits, fmt_frac))
        self.input_shape = tuple(input_shape)
        self.widths, self.stage_blocks, self.activation = widths, blocks, activation
        self.classes, self.weight_bits = int(classes), weight_bits
        self.thermometer = Thermometer(thermometer_levels, thermometer_thresholds)
        c, h, w = self.input_shape
        self.stem = _accumulator_conv(c * thermometer_levels, widths[0], height=h, width=w,
                                      in_bits=1, stride=1)
        self.stem_bn = QuantBatchNorm(widths[0], 0, self.fmt)
        layers = []
        channels = widths[0]
        for stage, (width, count) in enumerate(zip(widths, blocks)):
            for j in range(count):
                stride = 2 if stage > 0 and j == 0 else 1
                if stride == 2 and (h % 2 or w % 2):
                    raise ValueError(f"stage {stage} halves a {h}x{w} feature map; "
                                     f"input_shape must keep it even")
                block = ResidualBlock(channels, width, h, w, stride=stride,
                                      activation=activation, fmt=self.fmt)
                layers.append(block)
                h, w, channels = block.out_map
        self.blocks = nn.ModuleList(layers)
        self.head = FixedPointLinear(channels, self.classes, h * w, self.fmt, weight_bits,
                                     pool_shift)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, P) pixels -> the stem's input ``(B, H, W, C*T)`` of ±1 thermometer bits."""
        c, h, w = self.input_shape
        x = self.thermometer(pixels.reshape(pixels.shape[0], -1))
        return x.reshape(x.shape[0], h, w, c * self.thermometer.levels)

    @torch.no_grad()
    def residual_codes(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        """Eval: the int64 NHWC codes after the stem and after every block."""
        if self.training:
            raise RuntimeError("residual_codes needs eval mode; call model.eval() first")
        x = self.encode(pixels)
        acc, _ = self.stem.accumulate(x)
        q = self.stem_bn.forward_int(acc.to(torch.int64))
        c, h, w = self.input_shape
        q = q.reshape(x.shape[0], h, w, self.widths[0])
        out = [q]
        for block in self.blocks:
            q = block.forward_int(q)
            out.append(q)
        return out

    @torch.no_grad()
    def scores(self, pixels: torch.Tensor) -> torch.Tensor:
        """Eval: (B, P) pixels -> int64 ``(B, classes)`` scores (logits = scores * logit scale)."""
        q = self.residual_codes(pixels)[-1]
        return self.head.forward_int(global_sum_pool_int(q, self.head.input_shift))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, P) pixels in 0..255 (HWC order) -> (B, classes) float32 logits."""
        if not self.training:
            s = self.scores(pixels)
            return (s.to(torch.float64) * self.head.logit_scale()).to(torch.float32)
        x = self.encode(pixels)
        acc, _ = self.stem.accumulate(x)
        c, h, w = self.input_shape
        x = self.stem_bn(acc).reshape(x.shape[0], h, w, self.widths[0])
        for block in self.blocks:
            x = block(x)
        return self.head(x.sum(dim=(1, 2)))

    #: No early exits (the trainer's interface of :class:`models.layers.BinaryNet`).
    exit_heads: tuple = ()

    @property
    def pixels(self) -> int:
        """Pixels per image, ``P = C*H*W``."""
        return math.prod(self.input_shape)

    def binary_convs(self) -> list[BinaryConv2d]:
        """The stem and every block's convolution."""
        return [self.stem, *(b.conv for b in self.blocks)]

    def gated_layers(self) -> list[BinaryConv2d]:
        """The convolutions with 2-bit inputs (frac2 blocks), which have a precision gate."""
        return [c for c in self.binary_convs() if c.in_bits == 2]

    def batch_norms(self) -> list[QuantBatchNorm]:
        """Every :class:`QuantBatchNorm` (stem, then each block's two), in order."""
        return [m for m in self.modules() if isinstance(m, QuantBatchNorm)]

    def freeze_batch_norm(self, frozen: bool = True) -> None:
        """Training forward with the running statistics instead of the batch's (and without
        updating them): training then computes, in float, the network that eval folds into
        integers, so the affine parameters are trained for the statistics eval uses."""
        for m in self.batch_norms():
            m.frozen = bool(frozen)

    def set_surrogate(self, slope: float | None, exact: bool = False) -> None:
        """Training-mode binarisation of weights and block activations, as
        :meth:`models.layers.BinaryNet.set_surrogate`."""
        value = None if slope is None else (float(slope), bool(exact))
        for conv in self.binary_convs():
            conv.surrogate = value
        for block in self.blocks:
            block.act.surrogate = value

    def gate_penalty(self) -> torch.Tensor:
        """Mean surrogate gate rate of the last forward over the gated (frac2) convolutions."""
        rates = [c.last_soft_gate.mean() for c in self.binary_convs()
                 if c.in_bits == 2 and c.last_soft_gate is not None]
        return torch.stack(rates).mean() if rates else torch.zeros(())

    @torch.no_grad()
    def recalibrate_batch_norm(self, pixels: torch.Tensor, batch: int = 500) -> None:
        """Set every batch norm's running statistics from ``pixels`` (uint8 ``(N, P)``) in
        *eval-shaped* passes: layer by layer, each batch norm's statistics are measured on the
        inputs that the layers before it produce with their *new running* statistics (what
        eval computes), averaged over batches of ``batch`` images (mean of the batch means and
        of the batch variances, as :func:`models.recalibrate.recalibrate_batch_norm`).

        Why not train-mode passes: with batch statistics a channel whose constant background
        value sits near a block's activation threshold lands on either side depending on the
        batch, and the next batch norm removes that flip (a constant shift of its
        accumulators); averaged train-mode statistics fit neither side and eval collapses (a
        16/32/64 MNIST net: 88 % in train mode, 16 % with averaged train-mode statistics,
        88 % with these).  Parameters are not changed; the model is left in eval mode.
        """
        if not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be a positive int, not {batch!r}")
        if len(pixels) < 1:
            raise ValueError("recalibration needs at least one image")
        self.train()
        self.freeze_batch_norm(True)
        try:
            c, h, w = self.input_shape
            chunks = [pixels[i:i + batch] for i in range(0, len(pixels), batch)]
            acc = [self.stem.accumulate(self.encode(p))[0] for p in chunks]
            _set_statistics(self.stem_bn, acc)
            xs = [self.stem_bn(a).reshape(a.shape[0] // (h * w), h, w, self.widths[0])
                  for a in acc]
            for block in self.blocks:
                accs = [block.conv.accumulate(block.act(x))[0] for x in xs]
                _set_statistics(block.bn1, accs)
                sums = [fake_quantize(block.rprelu(block.bn1(a)).reshape(x.shape[0], *block.out_map)
                                      + block._shortcut_train(x), block.fmt)
                        for a, x in zip(accs, xs)]
                _set_statistics(block.bn2, sums)
                xs = [block.bn2(s) for s in sums]
        finally:
            self.freeze_batch_norm(False)
            self.eval()

    def config(self) -> dict:
        """Constructor arguments that rebuild this architecture (JSON-serialisable)."""
        return {"input_shape": list(self.input_shape),
                "thermometer_levels": self.thermometer.levels,
                "thermometer_thresholds": [int(t) for t in self.thermometer.thresholds.tolist()],
                "widths": list(self.widths), "blocks": list(self.stage_blocks),
                "activation": self.activation, "classes": self.classes,
                "weight_bits": self.weight_bits,
                "fmt_bits": self.fmt.bits, "fmt_frac": self.fmt.frac,
                "pool_shift": self.head.input_shift}


def _set_statistics(norm: QuantBatchNorm, inputs: list[torch.Tensor]) -> None:
    """Running mean and (unbiased) variance of ``norm`` = the averages over ``inputs`` (a list
    of batches, channels last) of each batch's statistics."""
    means, variances = [], []
    for x in inputs:
        rows = x.reshape(-1, x.shape[-1]).to(torch.float64)
        means.append(rows.mean(0))
        variances.append(rows.var(0, unbiased=rows.shape[0] > 1))
    bn = norm.bn
    bn.running_mean.copy_(torch.stack(means).mean(0).to(bn.running_mean.dtype))
    bn.running_var.copy_(torch.stack(variances).mean(0).to(bn.running_var.dtype))


def tiny_resnet(activation: str = "sign", input_shape: Sequence[int] = (1, 16, 16),
                thermometer_levels: int = 2, classes: int = 10, pool_shift: int = 0) -> ResNet:
    """A small test network: widths 8/16, one block per stage (16x16 -> 8x8)."""
    return ResNet(input_shape=input_shape, thermometer_levels=thermometer_levels,
                  widths=(8, 16), blocks=1, activation=activation, classes=classes,
                  pool_shift=pool_shift)


def resnet20(activation: str = "frac2", classes: int = 10) -> ResNet:
    """FracBNN's CIFAR-10 ResNet-20 topology: 32x32x3 input, 32 thermometer levels per channel
    (96 binary input channels), widths 16/32/64 with 3 blocks per stage, global average pool
    (``pool_shift`` 6 over the 8x8 map)."""
    return ResNet(input_shape=(3, 32, 32), thermometer_levels=32, widths=(16, 32, 64),
                  blocks=3, activation=activation, classes=classes, pool_shift=6)
