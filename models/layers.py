"""PyTorch layers of the FracBNN-style binary MLP, with an exact integer eval path.

Semantics follow ``docs/compiled-network.md`` ("Layer arithmetic" and "Relation
to the PyTorch model").  In eval mode every layer computes the integer
accumulator ``acc`` exactly in float32 (all partial sums are small integers),
then a per-channel, element-wise, monotone activation of ``acc``; the exporter
folds that activation into integer thresholds by evaluating :meth:`BinaryDense.activate`
on every integer ``acc`` value.

Value conventions
-----------------
* binary values are floats in {-1, +1};
* 2-bit ("frac2") activations are carried as ``u = 2m + l`` in {-3, -1, +1, +3}
  (three times FracBNN's levels {-1, -1/3, +1/3, +1}), ``m`` and ``l`` in {-1, +1};
* thermometer input bit ``i = p*T + k`` is ``pixel_p >= t_k`` (pixel-major, plane-minor).

Training uses straight-through estimators (STE): the sign of latent weights and
activations is differentiated as the identity clipped to ``|x| <= 1``.  Self-binarizing
training (:mod:`models.methods`, ``method = "selfbin"``) replaces them, in training mode only,
by ``tanh(s * x)`` with a growing slope ``s`` and finally by the exact sign with the
derivative of ``tanh(s * x)`` (:meth:`BinaryNet.set_surrogate`); eval mode is always the
exact binary network.

Batch norm is optional (``batch_norm=False``): hidden layers then compute
``t = acc * c + act_bias`` with the fixed constant ``c = 1 / sqrt(E[acc^2])`` of a layer with
random inputs (``1 / sqrt(MW)`` for 1-bit inputs, ``1 / sqrt(5 MW)`` for 2-bit inputs), and
the scores layer a learned positive temperature (:class:`ScoreScale`) instead of
:class:`TensorNorm`; the same exact folding applies.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "binarize",
    "clip_latent_weights",
    "Thermometer",
    "TensorNorm",
    "ScoreScale",
    "BinaryDense",
    "BinaryConv2d",
    "BinaryNet",
    "FRAC2_THRESHOLDS",
]

#: Quantiser steps of the 2-bit activation, as float32 constants (see the contract).
FRAC2_THRESHOLDS = (-2.0 / 3.0, 0.0, 2.0 / 3.0)

_OUT_KINDS = ("sign", "frac2", "scores")


class _SignSTE(torch.autograd.Function):
    """``+1 if x >= 0 else -1`` forward, ``grad * (|x| <= 1)`` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


class _TanhSignSTE(torch.autograd.Function):
    """``+1 if x >= 0 else -1`` forward; backward the derivative of ``tanh(slope * x)``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, slope: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.slope = slope
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        th = torch.tanh(ctx.slope * x)
        return grad * ctx.slope * (1.0 - th * th), None


def _sign_train(x: torch.Tensor, surrogate: tuple[float, bool] | None) -> torch.Tensor:
    """Training-mode sign: clipped STE (``None``), ``tanh(s x)`` (``(s, False)``) or the exact
    sign with the derivative of ``tanh(s x)`` (``(s, True)``)."""
    if surrogate is None:
        return _SignSTE.apply(x)
    slope, exact = surrogate
    if exact:
        return _TanhSignSTE.apply(x, slope)
    return torch.tanh(slope * x)


def binarize(w: torch.Tensor) -> torch.Tensor:
    """Binarise to {-1, +1} (``w >= 0`` -> +1) with the clipped straight-through gradient.

    Parameters
    ----------
    w
        Latent (real-valued) tensor.

    Returns
    -------
    torch.Tensor
        Same shape and dtype, values exactly -1.0 or +1.0; the backward pass
        multiplies the incoming gradient by ``|w| <= 1``.
    """
    return _SignSTE.apply(w)


def _frac2_levels(t: torch.Tensor) -> torch.Tensor:
    """Return ``q = [t >= -2/3] + [t >= 0] + [t >= 2/3]`` (float, 0..3), float32 constants."""
    lo, mid, hi = (torch.tensor(c, dtype=torch.float32) for c in FRAC2_THRESHOLDS)
    return (t >= lo).to(t.dtype) + (t >= mid).to(t.dtype) + (t >= hi).to(t.dtype)


class _Frac2STE(torch.autograd.Function):
    """``u = 2q - 3`` forward; backward ``3 * grad * (|t| <= 1)`` (STE of v = u/3 on t)."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(t)
        return 2.0 * _frac2_levels(t) - 3.0

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (t,) = ctx.saved_tensors
        return 3.0 * grad * (t.abs() <= 1).to(grad.dtype)


class _TanhFrac2STE(torch.autograd.Function):
    """``u = 2q - 3`` forward; backward the derivative of ``sum_k tanh(slope (t - c_k))``."""

    @staticmethod
    def forward(ctx, t: torch.Tensor, slope: float) -> torch.Tensor:
        ctx.save_for_backward(t)
        ctx.slope = slope
        return 2.0 * _frac2_levels(t) - 3.0

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (t,) = ctx.saved_tensors
        d = torch.zeros_like(t)
        for c in FRAC2_THRESHOLDS:
            th = torch.tanh(ctx.slope * (t - c))
            d = d + (1.0 - th * th)
        return grad * ctx.slope * d, None


def _frac2_train(t: torch.Tensor, surrogate: tuple[float, bool] | None) -> torch.Tensor:
    """Training-mode 2-bit activation ``u``: FracBNN's clipped STE (``None``), the soft
    ``sum_k tanh(s (t - c_k))`` over the three steps ``c_k`` (``(s, False)``; it tends to
    ``u = 2q - 3`` as ``s`` grows) or the exact ``u`` with that sum's derivative (``(s, True)``)."""
    if surrogate is None:
        return _Frac2STE.apply(t)
    slope, exact = surrogate
    if exact:
        return _TanhFrac2STE.apply(t, slope)
    lo, mid, hi = FRAC2_THRESHOLDS
    return torch.tanh(slope * (t - lo)) + torch.tanh(slope * (t - mid)) + torch.tanh(slope * (t - hi))


@torch.no_grad()
def clip_latent_weights(model: nn.Module) -> None:
    """Clamp the latent weights of every :class:`BinaryDense` in ``model`` to [-1, 1].

    Call after each optimiser step; weights outside the STE window would never
    receive gradient again.
    """
    for module in model.modules():
        if isinstance(module, BinaryDense):  # includes BinaryConv2d
            module.weight.clamp_(-1.0, 1.0)


class Thermometer(nn.Module):
    """Thermometer encoding of 8-bit pixels into binary planes.

    Parameters
    ----------
    levels
        Number of thresholds ``T`` (bits per pixel), >= 1.
    thresholds
        Strictly increasing integers in 1..255; default ``floor(256*(k+1)/(T+1))``
        (``T = 1``: binarise at 128).

    Forward: ``pixels`` (B, P) in 0..255 (any real or integer dtype) ->
    (B, P*T) float32 in {-1, +1} with bit ``i = p*T + k`` = ``pixel_p >= t_k``.
    """

    def __init__(self, levels: int, thresholds: Sequence[int] | None = None):
        super().__init__()
        if not isinstance(levels, int) or levels < 1:
            raise ValueError(f"thermometer levels must be a positive int, not {levels!r}")
        if thresholds is None:
            thresholds = [256 * (k + 1) // (levels + 1) for k in range(levels)]
        thresholds = [int(t) for t in thresholds]
        if len(thresholds) != levels:
            raise ValueError(f"thermometer needs {levels} thresholds, not {len(thresholds)}")
        if any(not 1 <= t <= 255 for t in thresholds) or any(a >= b for a, b in zip(thresholds, thresholds[1:])):
            raise ValueError(f"thermometer thresholds must be strictly increasing in 1..255, not {thresholds!r}")
        self.levels = levels
        self.register_buffer("thresholds", torch.tensor(thresholds, dtype=torch.int64))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.dim() != 2:
            raise ValueError(f"thermometer input must be (batch, pixels), not {tuple(pixels.shape)}")
        bits = pixels.to(torch.float32).unsqueeze(-1) >= self.thresholds.to(torch.float32)
        return bits.reshape(pixels.shape[0], -1).to(torch.float32) * 2.0 - 1.0


class TensorNorm(nn.Module):
    """Tensor-wide (scalar) normalisation with a positive scale.

    Train mode normalises with the batch mean/variance (all elements) and
    updates running statistics (momentum 0.1).  Eval mode computes exactly
    ``(x - running_mean) * self.scale() + beta`` as separate float32 ops, a
    strictly increasing map since ``scale() = exp(log_gamma) / sqrt(running_var + eps) > 0``.
    """

    def __init__(self, eps: float = 1e-4, momentum: float = 0.1):
        super().__init__()
        self.eps = eps
        self.momentum = momentum
        self.log_gamma = nn.Parameter(torch.zeros(()))
        self.beta = nn.Parameter(torch.zeros(()))
        self.register_buffer("running_mean", torch.zeros(()))
        self.register_buffer("running_var", torch.ones(()))

    def scale(self) -> torch.Tensor:
        """The positive eval-mode scale ``exp(log_gamma) / sqrt(running_var + eps)``."""
        return torch.exp(self.log_gamma) / torch.sqrt(self.running_var + self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            mean = x.mean()
            var = x.var(unbiased=False)
            with torch.no_grad():
                n = x.numel()
                unbiased = var * n / max(n - 1, 1)
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(unbiased.detach(), self.momentum)
            return (x - mean) * (torch.exp(self.log_gamma) / torch.sqrt(var + self.eps)) + self.beta
        return (x - self.running_mean) * self.scale() + self.beta


class ScoreScale(nn.Module):
    """Scores without batch statistics (the ``batch_norm=False`` scores layer).

    ``(x - running_mean) * scale() + beta`` in train and eval mode alike, with constant
    ``running_mean = beta = 0`` (non-persistent buffers, present so the exporter reads the same
    attributes as from :class:`TensorNorm`) and the positive ``scale() = exp(log_gamma) * fixed``:
    a learned temperature on top of the fixed ``1 / sqrt(E[acc^2])`` of the layer.
    """

    def __init__(self, fixed: float):
        super().__init__()
        if not fixed > 0:
            raise ValueError(f"ScoreScale needs a positive fixed scale, not {fixed!r}")
        self.fixed = float(fixed)
        self.log_gamma = nn.Parameter(torch.zeros(()))
        self.register_buffer("running_mean", torch.zeros(()), persistent=False)
        self.register_buffer("beta", torch.zeros(()), persistent=False)

    def scale(self) -> torch.Tensor:
        """The positive scale ``exp(log_gamma) * fixed`` (float32)."""
        return torch.exp(self.log_gamma) * torch.tensor(self.fixed, dtype=torch.float32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.running_mean) * self.scale() + self.beta


class _HardGate(torch.autograd.Function):
    """Forward ``acc_m > delta`` (0/1 float); backward via ``sigmoid((acc_m - delta)/tau)``."""

    @staticmethod
    def forward(ctx, acc_m: torch.Tensor, delta: torch.Tensor, tau: float) -> torch.Tensor:
        ctx.save_for_backward(acc_m, delta)
        ctx.tau = tau
        return (acc_m > delta).to(acc_m.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        acc_m, delta = ctx.saved_tensors
        s = torch.sigmoid((acc_m - delta) / ctx.tau)
        d_delta = -(grad * s * (1 - s) / ctx.tau)
        # Reduce over the batch to delta's (out,) shape; acc_m gets no gradient here
        # (its straight-through gradient comes from the 2*acc_m term).
        return None, d_delta.reshape(-1, delta.shape[-1]).sum(0), None


class BinaryDense(nn.Module):
    """Dense layer with binary weights, 1- or 2-bit inputs and a folded-able activation.

    Parameters
    ----------
    in_features, out_features
        ``MW`` and ``MH`` of the contract.
    in_bits
        1: inputs in {-1, +1}; 2: inputs ``u`` in {-3, -1, +1, +3} with precision gating.
    out
        ``"sign"`` (outputs ±1), ``"frac2"`` (outputs u) or ``"scores"`` (logits via :class:`TensorNorm`).
    dropout
        Training-only dropout probability on this layer's inputs (identity in eval).
    gate_tau
        Temperature of the gate's surrogate gradient; default ``0.25 * sqrt(in_features)``.
    batch_norm
        ``False``: no batch norm; ``t = acc * fixed_scale + act_bias`` (sign/frac2) and a
        :class:`ScoreScale` instead of :class:`TensorNorm` (scores).

    Attributes
    ----------
    weight : Parameter (out, in)
        Latent weights in [-1, 1]; :meth:`binary_weight` gives their signs.
    bn : BatchNorm1d
        Only for ``sign``/``frac2`` with ``batch_norm``.
    act_bias : Parameter (out,)
        Only for ``sign``/``frac2``.
    fixed_scale : float
        ``1 / sqrt(in_features)`` (1-bit inputs) or ``1 / sqrt(5 * in_features)`` (2-bit
        inputs, ``E[u^2] = 5``): the accumulator's scale without batch norm.
    norm : TensorNorm or ScoreScale
        Only for ``scores``.
    surrogate : None or (slope, exact)
        Training-mode binarisation of weights and activations (:meth:`BinaryNet.set_surrogate`);
        ``None`` is the clipped STE.  Not saved; eval mode ignores it.
    gate_delta : Parameter (out,)
        Only for ``in_bits == 2``; the LSB plane is used where ``acc_m > gate_delta``.
    """

    def __init__(self, in_features: int, out_features: int, in_bits: int, out: str,
                 dropout: float = 0.0, gate_tau: float | None = None, batch_norm: bool = True):
        super().__init__()
        if not isinstance(in_features, int) or in_features < 1:
            raise ValueError(f"in_features must be a positive int, not {in_features!r}")
        if not isinstance(out_features, int) or out_features < 1:
            raise ValueError(f"out_features must be a positive int, not {out_features!r}")
        if in_bits not in (1, 2):
            raise ValueError(f"in_bits must be 1 or 2, not {in_bits!r}")
        if out not in _OUT_KINDS:
            raise ValueError(f"out must be one of {_OUT_KINDS}, not {out!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), not {dropout!r}")
        if not isinstance(batch_norm, bool):
            raise ValueError(f"batch_norm must be true or false, not {batch_norm!r}")
        self.in_features, self.out_features = in_features, out_features
        self.batch_norm = batch_norm
        self.fixed_scale = 1.0 / math.sqrt(in_features * (5 if in_bits == 2 else 1))
        self.surrogate: tuple[float, bool] | None = None
        self.in_bits, self.out = in_bits, out
        self.dropout = float(dropout)
        self.gate_tau = float(gate_tau) if gate_tau is not None else 0.25 * math.sqrt(in_features)

        bound = math.sqrt(6.0 / (in_features + out_features))  # Glorot-uniform latent init
        self.weight = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))
        if out == "scores":
            self.norm = TensorNorm() if batch_norm else ScoreScale(self.fixed_scale)
        else:
            if batch_norm:
                self.bn = nn.BatchNorm1d(out_features, eps=1e-4)
            self.act_bias = nn.Parameter(torch.zeros(out_features))
        if in_bits == 2:
            self.gate_delta = nn.Parameter(torch.zeros(out_features))
        self.last_gate: torch.Tensor | None = None       # hard gate of the last forward (B, out)
        self.last_soft_gate: torch.Tensor | None = None  # surrogate gate, carries grad to gate_delta

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"in_bits={self.in_bits}, out={self.out!r}, dropout={self.dropout}"
                + ("" if self.batch_norm else ", batch_norm=False"))

    def train_weight(self) -> torch.Tensor:
        """The weights the forward pass uses: ±1 with the STE; in training mode with a
        :attr:`surrogate`, ``tanh(s w)`` or ±1 with the derivative of ``tanh(s w)``."""
        if self.training and self.surrogate is not None:
            return _sign_train(self.weight, self.surrogate)
        return binarize(self.weight)

    def binary_weight(self) -> torch.Tensor:
        """Signs of the latent weights, (out, in) float32 in {-1, +1} (``w >= 0`` -> +1), detached."""
        return torch.where(self.weight.detach() >= 0, 1.0, -1.0).to(torch.float32)

    def _dropout_mask(self, x: torch.Tensor) -> torch.Tensor | None:
        if not (self.training and self.dropout > 0):
            return None
        keep = torch.rand_like(x) >= self.dropout
        return keep.to(x.dtype) / (1.0 - self.dropout)

    def accumulate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Integer accumulators of the contract, computed exactly in float32.

        Parameters
        ----------
        x
            (B, in): ±1 for ``in_bits == 1``; ``u`` in {-3,-1,1,3} for ``in_bits == 2``.

        Returns
        -------
        acc : Tensor (B, out)
            ``W x`` for 1-bit inputs; ``2*acc_m + gate * (W l)`` for 2-bit inputs.
        gate : Tensor (B, out) bool, or None
            ``acc_m > gate_delta`` (2-bit inputs only).
        """
        wb = self.train_weight()
        mask = self._dropout_mask(x)
        if self.in_bits == 1:
            if mask is not None:
                x = x * mask
            self.last_gate = self.last_soft_gate = None
            return x @ wb.t(), None
        # Split u = 2m + l into planes; straight-through so that d acc / d u = W.
        m_hard = torch.where(x > 0, 1.0, -1.0).to(x.dtype)
        m = (m_hard - x / 2).detach() + x / 2
        l = (x - 2 * m_hard).detach()
        if mask is not None:
            m, l = m * mask, l * mask
        acc_m = m @ wb.t()
        acc_l = l @ wb.t()
        gate = _HardGate.apply(acc_m, self.gate_delta, self.gate_tau)
        self.last_gate = gate.detach() > 0
        self.last_soft_gate = torch.sigmoid((acc_m.detach() - self.gate_delta) / self.gate_tau)
        return 2 * acc_m + gate * acc_l, self.last_gate

    def activate(self, acc: torch.Tensor) -> torch.Tensor:
        """Per-channel activation of the accumulators.

        Eval mode is exactly the contract's element-wise float32 sequence
        ``z = (acc - mean) * (gamma / sqrt(var + eps)) + beta`` (without batch norm
        ``z = acc * fixed_scale``), ``t = z + act_bias``, then ``sign`` -> ±1,
        ``frac2`` -> ``u = 2q - 3``, ``scores`` -> :class:`TensorNorm` (:class:`ScoreScale`) logits.
        It depends only on each element and its channel, so it may be called on
        any (R, out) grid of accumulator values.
        """
        if self.out == "scores":
            return self.norm(acc)
        if not self.batch_norm:
            z = acc * torch.tensor(self.fixed_scale, dtype=torch.float32)
        elif self.training:
            bn = self.bn
            z = F.batch_norm(acc, bn.running_mean, bn.running_var, bn.weight, bn.bias,
                             training=True, momentum=bn.momentum, eps=bn.eps)
        else:
            bn = self.bn
            z = (acc - bn.running_mean) * (bn.weight / torch.sqrt(bn.running_var + bn.eps)) + bn.bias
        t = z + self.act_bias
        if self.out == "sign":
            if self.training:
                return _sign_train(t, self.surrogate)
            return torch.where(t >= 0, 1.0, -1.0).to(t.dtype)
        if self.training:
            return _frac2_train(t, self.surrogate)
        return 2.0 * _frac2_levels(t) - 3.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        acc, _ = self.accumulate(x)
        return self.activate(acc)


class BinaryConv2d(BinaryDense):
    """Binary convolution: one :class:`BinaryDense` product per ``kernel x kernel`` window.

    Activations travel between layers as NHWC tensors ``(B, H, W, C)`` (the format's HWC
    order).  The input is padded by ``pad`` pixels whose bits are 0 in every plane
    (value -1 for 1-bit inputs, ``u = -3`` for 2-bit inputs): a binary activation cannot
    hold 0, so the padding value is a real input the network is trained with, and every
    stage (PyTorch, golden model, RTL) pads the same way.  The weight is stored as the
    dense ``(out, K*K*C)`` matrix in the window order (ky, kx, c), c fastest; the
    accumulators are computed with ``F.conv2d`` (exact in float32: every partial sum is a
    small integer).  Batch norm, activation and gating are per output channel, shared
    with :class:`BinaryDense` (so export folds them the same way).  ``pool`` (0 or k >= 2)
    max-pools the activations ``k x k`` with stride ``k`` (floor mode): on ±1 values it is
    an OR of the bits, on 2-bit values the max of the codes; it follows the activation, so
    it needs no commuting with the thresholds.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, *, in_height: int,
                 in_width: int, in_bits: int, out: str, stride: int = 1, pad: int = 0,
                 pool: int = 0, gate_tau: float | None = None, batch_norm: bool = True):
        for name, value in (("in_channels", in_channels), ("kernel", kernel),
                            ("stride", stride), ("in_height", in_height),
                            ("in_width", in_width)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, not {value!r}")
        if not isinstance(pad, int) or not 0 <= pad < kernel:
            raise ValueError(f"pad must be an int in [0, kernel), not {pad!r}")
        if kernel > min(in_height, in_width) + 2 * pad:
            raise ValueError(f"kernel {kernel} is larger than the {in_height}x{in_width} input "
                             f"(padded by {pad})")
        if out == "scores":
            raise ValueError("a convolution cannot be the scores layer; end with a dense layer")
        super().__init__(kernel * kernel * in_channels, out_channels, in_bits, out,
                         dropout=0.0, gate_tau=gate_tau, batch_norm=batch_norm)
        self.in_channels, self.kernel, self.stride, self.pad = in_channels, kernel, stride, pad
        self.in_height, self.in_width = in_height, in_width
        self.out_height = (in_height + 2 * pad - kernel) // stride + 1
        self.out_width = (in_width + 2 * pad - kernel) // stride + 1
        if not isinstance(pool, int) or pool < 0 or pool == 1 \
                or pool > min(self.out_height, self.out_width):
            raise ValueError(f"pool must be 0 or a window size in [2, "
                             f"{min(self.out_height, self.out_width)}], not {pool!r}")
        self.pool = pool

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_features}, kernel={self.kernel}, "
                f"stride={self.stride}, pad={self.pad}, in={self.in_height}x{self.in_width}, "
                f"in_bits={self.in_bits}, out={self.out!r}, pool={self.pool}"
                + ("" if self.batch_norm else ", batch_norm=False"))

    @property
    def out_map(self) -> tuple[int, int, int]:
        """Output ``(H, W, C)`` after the max-pool."""
        h, w = self.out_height, self.out_width
        if self.pool:
            h, w = h // self.pool, w // self.pool
        return (h, w, self.out_features)

    def _conv(self, x: torch.Tensor, wb: torch.Tensor) -> torch.Tensor:
        """``x`` NCHW (already padded) -> accumulators ``(B*OH*OW, out)`` (NHWC rows)."""
        k, c = self.kernel, self.in_channels
        w4 = wb.reshape(self.out_features, k, k, c).permute(0, 3, 1, 2)
        acc = F.conv2d(x, w4, stride=self.stride)
        return acc.permute(0, 2, 3, 1).reshape(-1, self.out_features)

    def accumulate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x`` ``(B, H, W, C)`` -> accumulators ``(B*OH*OW, out)`` and gates (2-bit inputs)."""
        if x.dim() != 4 or tuple(x.shape[1:]) != (self.in_height, self.in_width, self.in_channels):
            raise ValueError(f"convolution input must be (batch, {self.in_height}, "
                             f"{self.in_width}, {self.in_channels}), not {tuple(x.shape)}")
        wb = self.train_weight()
        x = x.permute(0, 3, 1, 2)
        pad = (self.pad,) * 4
        if self.in_bits == 1:
            if self.pad:
                x = F.pad(x, pad, value=-1.0)
            self.last_gate = self.last_soft_gate = None
            return self._conv(x, wb), None
        m_hard = torch.where(x > 0, 1.0, -1.0).to(x.dtype)
        m = (m_hard - x / 2).detach() + x / 2
        l = (x - 2 * m_hard).detach()
        if self.pad:
            m, l = F.pad(m, pad, value=-1.0), F.pad(l, pad, value=-1.0)
        acc_m = self._conv(m, wb)
        acc_l = self._conv(l, wb)
        gate = _HardGate.apply(acc_m, self.gate_delta, self.gate_tau)
        self.last_gate = gate.detach() > 0
        self.last_soft_gate = torch.sigmoid((acc_m.detach() - self.gate_delta) / self.gate_tau)
        return 2 * acc_m + gate * acc_l, self.last_gate

    def finish(self, y: torch.Tensor, batch: int) -> torch.Tensor:
        """Activations ``(B*OH*OW, out)`` -> ``(B, H, W, out)`` after the max-pool."""
        y = y.reshape(batch, self.out_height, self.out_width, self.out_features)
        if self.pool:
            y = F.max_pool2d(y.permute(0, 3, 1, 2), self.pool).permute(0, 2, 3, 1)
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        acc, _ = self.accumulate(x)
        return self.finish(self.activate(acc), x.shape[0])


class BinaryNet(nn.Module):
    """Thermometer input, optional binary convolutions, then binary dense layers.

    Parameters
    ----------
    input_shape
        (C, H, W) of the 8-bit input images; ``P = C*H*W``.  Images are given as
        ``(B, P)`` pixels in HWC order (channel fastest; for C = 1 plain row-major).
    thermometer_levels
        ``T``; the thermometer output is an ``H x W x (C*T)`` binary map (flattened: layer
        0 of an MLP has ``P*T`` inputs).
    hidden
        Widths of the hidden dense layers.
    activation
        ``"sign"`` (1-bit) or ``"frac2"`` (2-bit with precision gating in every layer after the first).
    classes
        Outputs of the last (``scores``) layer.
    dropout
        Training-only dropout on the inputs of every dense layer after the first.
    thermometer_thresholds
        Optional explicit thermometer thresholds.
    convs
        Convolution layers before the dense ones, each a dict ``{"channels": OC,
        "kernel": K, "stride": 1, "pad": 0, "pool": 0}`` (see :class:`BinaryConv2d`);
        their output is flattened in HWC order into the first dense layer.
    exits
        Early exits, each a dict ``{"after": k}``: a binary dense ``scores`` classifier
        (:class:`BinaryDense`, ``exit_heads[j]``) on the output of ``layers[k]`` (flattened
        in HWC order), ``k`` before the last layer, strictly increasing.  :meth:`forward`
        still returns the last layer's logits; :meth:`forward_exits` returns every exit's.
    batch_norm
        ``False``: no batch norm in any layer (see :class:`BinaryDense`); the exported
        network is the same kind of integer threshold network.
    """

    def __init__(self, input_shape: Sequence[int] = (1, 28, 28), thermometer_levels: int = 1,
                 hidden: Sequence[int] = (1024, 1024, 1024), activation: str = "sign",
                 classes: int = 10, dropout: float = 0.0,
                 thermometer_thresholds: Sequence[int] | None = None,
                 convs: Sequence[dict] = (), exits: Sequence[dict] = (),
                 batch_norm: bool = True):
        super().__init__()
        if len(input_shape) != 3 or any(not isinstance(d, int) or d < 1 for d in input_shape):
            raise ValueError(f"input_shape must be three positive ints (C, H, W), not {input_shape!r}")
        if activation not in ("sign", "frac2"):
            raise ValueError(f"activation must be 'sign' or 'frac2', not {activation!r}")
        if not hidden and not convs:
            raise ValueError("hidden must list at least one layer width")
        if not isinstance(batch_norm, bool):
            raise ValueError(f"batch_norm must be true or false, not {batch_norm!r}")
        self.batch_norm = batch_norm
        self.input_shape = tuple(input_shape)
        self.hidden = [int(h) for h in hidden]
        self.activation = activation
        self.classes = int(classes)
        self.dropout = float(dropout)
        self.convs = [_conv_spec(c, i) for i, c in enumerate(convs)]
        self.thermometer = Thermometer(thermometer_levels, thermometer_thresholds)
        in_bits_rest = 2 if activation == "frac2" else 1
        layers: list[BinaryDense] = []
        c, h, w = self.input_shape
        fmap = (h, w, c * thermometer_levels)
        for spec in self.convs:
            conv = BinaryConv2d(fmap[2], spec["channels"], spec["kernel"], in_height=fmap[0],
                                in_width=fmap[1], in_bits=1 if not layers else in_bits_rest,
                                out=activation, stride=spec["stride"], pad=spec["pad"],
                                pool=spec["pool"], batch_norm=batch_norm)
            layers.append(conv)
            fmap = conv.out_map
        widths = [math.prod(fmap), *self.hidden, self.classes]
        for i in range(len(widths) - 1):
            first = not layers
            layers.append(BinaryDense(widths[i], widths[i + 1],
                                      in_bits=1 if first else in_bits_rest,
                                      out="scores" if i == len(widths) - 2 else activation,
                                      dropout=0.0 if first else self.dropout,
                                      batch_norm=batch_norm))
        self.layers = nn.ModuleList(layers)
        self.exit_after: list[int] = []
        heads = []
        for j, spec in enumerate(exits):
            if not isinstance(spec, dict) or set(spec) != {"after"} \
                    or not isinstance(spec["after"], int) or isinstance(spec["after"], bool):
                raise ValueError(f"exits[{j}] must be a dict {{'after': layer index}}, "
                                 f"not {spec!r}")
            k = spec["after"]
            if not 0 <= k < len(layers) - 1:
                raise ValueError(f"exits[{j}].after must be a layer before the last one "
                                 f"(0..{len(layers) - 2}), not {k}")
            if self.exit_after and k <= self.exit_after[-1]:
                raise ValueError(f"exits must follow different layers in increasing order, "
                                 f"not {[e.get('after') for e in exits]}")
            src = layers[k]
            size = (math.prod(src.out_map) if isinstance(src, BinaryConv2d)
                    else src.out_features)
            self.exit_after.append(k)
            heads.append(BinaryDense(size, self.classes, in_bits=in_bits_rest, out="scores",
                                     batch_norm=batch_norm))
        self.exit_heads = nn.ModuleList(heads)

    @property
    def pixels(self) -> int:
        """Pixels per image, ``P = C*H*W``."""
        return math.prod(self.input_shape)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, P) pixels -> the first layer's input: thermometer bits ±1, ``(B, P*T)`` for a
        dense first layer, ``(B, H, W, C*T)`` for a convolution."""
        x = self.thermometer(pixels.reshape(pixels.shape[0], -1))
        if self.convs:
            c, h, w = self.input_shape
            x = x.reshape(x.shape[0], h, w, c * self.thermometer.levels)
        return x

    def apply_layer(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Layer ``index`` on its input ``x`` (the previous layer's output or :meth:`encode`):
        a dense layer flattens ``x`` first; a convolution returns ``(B, H, W, C)`` after its
        max-pool.  :meth:`forward` is :meth:`encode` then every layer in turn."""
        layer = self.layers[index]
        if not isinstance(layer, BinaryConv2d):
            x = x.reshape(x.shape[0], -1)
        return layer(x)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, P) pixels in 0..255 (HWC order) -> (B, classes) float32 logits."""
        x = self.encode(pixels)
        for index in range(len(self.layers)):
            x = self.apply_layer(index, x)
        return x

    def forward_exits(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        """(B, P) pixels -> the logits of every early exit, then the last layer's (a list
        of ``len(exits) + 1`` tensors ``(B, classes)``)."""
        x = self.encode(pixels)
        heads = dict(zip(self.exit_after, self.exit_heads))
        outs = []
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, BinaryConv2d):
                x = x.reshape(x.shape[0], -1)
            x = layer(x)
            if i in heads:
                outs.append(heads[i](x.reshape(x.shape[0], -1)))
        return outs + [x]

    def output_sizes(self) -> list[int]:
        """Values per image of every layer's output (a convolution's after its max-pool)."""
        return [math.prod(layer.out_map) if isinstance(layer, BinaryConv2d)
                else layer.out_features for layer in self.layers]

    def set_surrogate(self, slope: float | None, exact: bool = False) -> None:
        """Training-mode binarisation of every layer's weights and sign/frac2 activations.

        ``slope=None``: the clipped straight-through estimator (the default).  A positive
        ``slope`` with ``exact=False``: the soft ``tanh(slope * x)`` (frac2: the sum of
        ``tanh(slope * (t - c_k))`` over its three steps); with ``exact=True``: the exact
        binary forward pass with the derivative of that soft function.  Eval mode always
        computes the exact binary network; the setting is not saved in checkpoints.
        """
        if slope is not None and not (isinstance(slope, (int, float)) and slope > 0
                                      and math.isfinite(slope)):
            raise ValueError(f"slope must be None or a positive finite number, not {slope!r}")
        value = None if slope is None else (float(slope), bool(exact))
        for layer in [*self.layers, *self.exit_heads]:
            layer.surrogate = value

    @torch.no_grad()
    def forward_trace(self, pixels: torch.Tensor) -> dict[str, list]:
        """Eval-mode forward that records every layer.

        Returns
        -------
        dict
            ``outputs``: per layer its output flattened to ``(B, out_size)`` in HWC order
            (±1, ``u``, or logits for the last; convolutions after their max-pool);
            ``accs``: per layer the integer accumulators (float32, ``(B, V*out)``);
            ``gates``: per layer the bool gates ``(B, V*out)`` (``V`` output positions of a
            convolution, position-major), or None for 1-bit-input layers;
            ``exit_outputs``, ``exit_accs``, ``exit_gates``: the same per early exit.
            The model must be in eval mode.
        """
        if self.training:
            raise RuntimeError("forward_trace needs eval mode; call model.eval() first")
        outputs, accs, gates = [], [], []
        x = self.encode(pixels)
        for layer in self.layers:
            b = x.shape[0]
            if not isinstance(layer, BinaryConv2d):
                x = x.reshape(b, -1)
            acc, gate = layer.accumulate(x)
            x = layer.activate(acc)
            if isinstance(layer, BinaryConv2d):
                x = layer.finish(x, b)
            outputs.append(x.reshape(b, -1))
            accs.append(acc.reshape(b, -1))
            gates.append(None if gate is None else gate.reshape(b, -1))
        trace = {"outputs": outputs, "accs": accs, "gates": gates,
                 "exit_outputs": [], "exit_accs": [], "exit_gates": []}
        for k, head in zip(self.exit_after, self.exit_heads):
            acc, gate = head.accumulate(outputs[k])
            trace["exit_outputs"].append(head.activate(acc))
            trace["exit_accs"].append(acc)
            trace["exit_gates"].append(gate)
        return trace

    def gated_layers(self) -> list[BinaryDense]:
        """Layers with 2-bit inputs (and thus a precision gate)."""
        return [layer for layer in [*self.layers, *self.exit_heads] if layer.in_bits == 2]

    def gate_penalty(self) -> torch.Tensor:
        """Mean surrogate gate rate of the last forward over gated layers (0 if none).

        Differentiable with respect to every ``gate_delta``; add ``lambda * gate_penalty()``
        to the loss to push towards fewer LSB computations.
        """
        rates = [layer.last_soft_gate.mean() for layer in self.gated_layers()
                 if layer.last_soft_gate is not None]
        if not rates:
            return torch.zeros(())
        return torch.stack(rates).mean()

    def gate_counts(self) -> tuple[int, int]:
        """(fired, total) hard gates of the last forward over all gated layers."""
        fired = total = 0
        for layer in self.gated_layers():
            if layer.last_gate is not None:
                fired += int(layer.last_gate.sum())
                total += layer.last_gate.numel()
        return fired, total

    def config(self) -> dict:
        """Constructor arguments that rebuild this architecture (JSON-serialisable)."""
        extra = {"convs": [dict(c) for c in self.convs]} if self.convs else {}
        if self.exit_after:
            extra["exits"] = [{"after": k} for k in self.exit_after]
        if not self.batch_norm:     # only when off: configs of batch-norm nets are unchanged
            extra["batch_norm"] = False
        return {**extra,
            "input_shape": list(self.input_shape),
            "thermometer_levels": self.thermometer.levels,
            "thermometer_thresholds": [int(t) for t in self.thermometer.thresholds.tolist()],
            "hidden": list(self.hidden),
            "activation": self.activation,
            "classes": self.classes,
            "dropout": self.dropout,
        }


_CONV_KEYS = {"channels", "kernel", "stride", "pad", "pool"}


def _conv_spec(spec, index: int) -> dict:
    """A checked convolution entry of :class:`BinaryNet` with every key filled in."""
    if not isinstance(spec, dict) or not {"channels", "kernel"} <= spec.keys() \
            or not spec.keys() <= _CONV_KEYS:
        raise ValueError(f"convs[{index}] must be a dict with channels and kernel (and "
                         f"optionally stride, pad, pool), not {spec!r}")
    out = {"channels": spec["channels"], "kernel": spec["kernel"],
           "stride": spec.get("stride", 1), "pad": spec.get("pad", 0), "pool": spec.get("pool", 0)}
    for key, value in out.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0 \
                or (key in ("channels", "kernel", "stride") and value < 1):
            raise ValueError(f"convs[{index}].{key} must be a positive int, not {value!r}")
    return out
