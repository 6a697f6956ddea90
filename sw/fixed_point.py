"""Exact fixed-point integer operations of the residual (shortcut) path (numpy only).

A residual network (:mod:`models.residual`) carries the tensor between its blocks in a
signed fixed-point format instead of binary activations (FracBNN's HLS design uses
``ap_fixed<16,9>``).  This module is the integer definition of every operation on that
path; the PyTorch eval model computes exactly the same integers and the golden model and
the hardware are to follow it bit for bit.  It needs numpy only (it runs on the board).

Conventions
-----------
* A value of :class:`FixedPointFormat` ``(bits, frac)`` is the int64 code ``q`` with real
  value ``q * 2**-frac``, ``q`` in ``[-2**(bits-1), 2**(bits-1) - 1]`` (two's complement).
  :data:`RESIDUAL_FORMAT` is ``(16, 7)``: ``ap_fixed<16,9>``, range [-256, 256 - 1/128].
* Tensors are NHWC int64 arrays; per-channel constants are ``(C,)`` arrays that broadcast
  over the last (channel) axis.
* **Rounding** is always *round half up* (towards +infinity on ties), done as
  ``(v + 2**(s-1)) >> s`` with an arithmetic (flooring) shift; ``s = 0`` is no rounding.
  It is one adder and a wire shift in hardware, and symmetric rounding buys nothing here.
* **Saturation** clamps to the format's range; it happens only where an operation says so
  (the end of :func:`affine`, :func:`rprelu`, :func:`add_saturate`), never in between:
  intermediates are exact int64 (every function checks that they cannot overflow int64).
* Multipliers are signed :data:`MULT_BITS`-bit integers with a right shift in
  ``[0, MAX_SHIFT]`` shared by the channels of one operation; additive constants applied
  before that shift are signed :data:`ADD_BITS`-bit integers.  :func:`quantize_multipliers`
  picks the largest shift that keeps every constant in its width and refuses (one-line
  ``ValueError``) a constant that does not fit even with shift 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
import math

import numpy as np

__all__ = [
    "FixedPointFormat",
    "RESIDUAL_FORMAT",
    "MULT_BITS",
    "ADD_BITS",
    "MAX_SHIFT",
    "round_shift",
    "affine",
    "rprelu",
    "add_saturate",
    "avg_pool_2x2",
    "duplicate_channels",
    "global_sum_pool",
    "step_thresholds",
    "threshold_levels",
    "quantize_multipliers",
    "fold_affine",
    "fold_slopes",
]

#: Width of a signed multiplier constant (two's complement; ``|mult| <= 2**15 - 1`` is
#: what :func:`quantize_multipliers` produces, the symmetric range).
MULT_BITS = 16
#: Width of a signed additive constant applied before the shift (:func:`affine`).
ADD_BITS = 32
#: Largest right shift of a multiplier.
MAX_SHIFT = 30

_INT64_MAX = (1 << 63) - 1


@dataclass(frozen=True)
class FixedPointFormat:
    """Signed two's complement fixed point: ``bits`` in all, ``frac`` of them fractional.

    ``q`` (int64) stands for ``q * 2**-frac``; :attr:`lo` ``= -2**(bits-1)``,
    :attr:`hi` ``= 2**(bits-1) - 1``.  ``bits`` is 2..32 and ``frac`` 0..bits-1.
    """

    bits: int
    frac: int

    def __post_init__(self):
        if not isinstance(self.bits, int) or isinstance(self.bits, bool) or not 2 <= self.bits <= 32:
            raise ValueError(f"fixed-point bits must be an int in 2..32, not {self.bits!r}")
        if not isinstance(self.frac, int) or isinstance(self.frac, bool) \
                or not 0 <= self.frac < self.bits:
            raise ValueError(f"fixed-point frac must be an int in 0..{self.bits - 1}, "
                             f"not {self.frac!r}")

    @property
    def lo(self) -> int:
        """Smallest code, ``-2**(bits-1)``."""
        return -(1 << (self.bits - 1))

    @property
    def hi(self) -> int:
        """Largest code, ``2**(bits-1) - 1``."""
        return (1 << (self.bits - 1)) - 1

    @property
    def scale(self) -> int:
        """``2**frac``: codes per unit of real value."""
        return 1 << self.frac

    def __str__(self) -> str:
        return f"fixed<{self.bits},{self.frac}>"

    def saturate(self, q) -> np.ndarray:
        """Clamp integer codes to ``[lo, hi]`` (int64)."""
        return np.clip(np.asarray(q, dtype=np.int64), self.lo, self.hi)

    def quantize(self, x) -> np.ndarray:
        """Real values -> codes: ``floor(x * 2**frac + 1/2)`` (round half up), saturated.

        ``x * 2**frac`` is computed in float64 (exact: a power-of-two multiply), and the
        rounding of an exact tie goes up, like :func:`round_shift`.
        """
        x = np.asarray(x, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise ValueError(f"cannot quantise non-finite values to {self}")
        q = np.floor(np.clip(x * self.scale, self.lo - 1, self.hi + 1) + 0.5)
        return self.saturate(q.astype(np.int64))

    def to_float(self, q) -> np.ndarray:
        """Codes -> real values ``q * 2**-frac`` (float64, exact)."""
        return np.asarray(q, dtype=np.int64).astype(np.float64) / self.scale

    def contains(self, q) -> bool:
        """Whether every code lies in ``[lo, hi]``."""
        q = np.asarray(q)
        return q.size == 0 or (int(q.min()) >= self.lo and int(q.max()) <= self.hi)


#: The residual tensor's format: 16 bits, 7 fractional (``ap_fixed<16,9>``).
RESIDUAL_FORMAT = FixedPointFormat(16, 7)


def _ints(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind not in "iu":
        raise ValueError(f"{name} must be an integer array, not {x.dtype}")
    return x.astype(np.int64)


def _amax(x: np.ndarray) -> int:
    return int(np.abs(x).max()) if x.size else 0


def _check_int64(bound: int, what: str) -> None:
    if bound > _INT64_MAX:
        raise ValueError(f"{what} can reach {bound}, which overflows int64")


def _shifts(shift) -> np.ndarray:
    s = _ints(shift, "shift")
    if s.size and (int(s.min()) < 0 or int(s.max()) > MAX_SHIFT):
        raise ValueError(f"shift must be in 0..{MAX_SHIFT}, not {s.tolist()!r}")
    return s


def round_shift(v, shift) -> np.ndarray:
    """``(v + 2**(shift-1)) >> shift``: ``v / 2**shift`` rounded half up (``shift = 0``: ``v``).

    ``shift`` is an int or a per-channel ``(C,)`` array in ``0..MAX_SHIFT``.
    """
    v = _ints(v, "value")
    s = _shifts(shift)
    half = (np.int64(1) << s) >> 1
    _check_int64(_amax(v) + ((1 << int(s.max())) if s.size else 0), "the rounding sum")
    return (v + half) >> s


def affine(x, mult, shift, add, fmt: FixedPointFormat) -> np.ndarray:
    """Per-channel ``saturate(round_shift(x * mult + add, shift))`` into ``fmt``.

    ``x`` is any int64 tensor (an accumulator or codes of some format), ``mult`` and
    ``add`` per-channel ints, ``shift`` an int (or per channel).  The product and sum are
    exact; a hardware unit needs ``bits(x) + MULT_BITS + 1`` bits for them.  This is a
    folded batch norm: see :func:`fold_affine`.
    """
    x = _ints(x, "x")
    mult, add = _ints(mult, "mult"), _ints(add, "add")
    _check_int64(_amax(x) * _amax(mult) + _amax(add), "x * mult + add")
    return fmt.saturate(round_shift(x * mult + add, shift))


def rprelu(x, gamma, mult, shift, zeta, fmt: FixedPointFormat) -> np.ndarray:
    """Integer RPReLU (ReActNet), per channel: ``d = x - gamma``;
    ``y = d if d >= 0 else round_shift(d * mult, shift)``; ``saturate(y + zeta)``.

    ``x``, ``gamma``, ``zeta`` are codes of ``fmt`` (``gamma``/``zeta`` per channel), the
    negative-side slope is ``mult / 2**shift``.  ``d`` and ``y + zeta`` are exact
    (``bits + 1`` and ``bits + 2`` bits for codes of the format); only the end saturates.
    """
    x = _ints(x, "x")
    gamma, mult, zeta = _ints(gamma, "gamma"), _ints(mult, "mult"), _ints(zeta, "zeta")
    d = x - gamma
    _check_int64(_amax(d) * _amax(mult), "d * mult")
    neg = round_shift(np.minimum(d, 0) * mult, shift)
    return fmt.saturate(np.where(d >= 0, d, neg) + zeta)


def add_saturate(a, b, fmt: FixedPointFormat) -> np.ndarray:
    """``saturate(a + b)``: the shortcut addition of two tensors of codes of ``fmt``."""
    return fmt.saturate(_ints(a, "a") + _ints(b, "b"))


def avg_pool_2x2(x) -> np.ndarray:
    """2x2 average pool, stride 2, of NHWC codes: ``round_shift(sum of the 4, 2)``.

    The sum is exact and divided by 4 rounding half up, so the result is a code of the
    input's format (no saturation is needed).  H and W must be even.
    """
    x = _ints(x, "x")
    if x.ndim != 4 or x.shape[1] % 2 or x.shape[2] % 2:
        raise ValueError(f"avg_pool_2x2 needs NHWC with even H and W, not {x.shape}")
    s = x[:, 0::2, 0::2] + x[:, 0::2, 1::2] + x[:, 1::2, 0::2] + x[:, 1::2, 1::2]
    return round_shift(s, 2)


def duplicate_channels(x, factor: int) -> np.ndarray:
    """Concatenate ``factor`` copies of ``x`` along the channel axis: output channel ``c``
    is input channel ``c mod C`` (FracBNN's ``cat([x, x], dim=channels)`` for ``factor = 2``)."""
    if not isinstance(factor, int) or isinstance(factor, bool) or factor < 1:
        raise ValueError(f"factor must be a positive int, not {factor!r}")
    x = _ints(x, "x")
    return np.concatenate([x] * factor, axis=-1)


def global_sum_pool(x, shift: int = 0) -> np.ndarray:
    """Global pool of NHWC codes: ``round_shift(sum over H and W, shift)``, int64 ``(B, C)``.

    The sum is exact (``bits + ceil(log2(H*W))`` bits); ``shift`` divides it by
    ``2**shift``, rounding half up (``log2(H*W)`` for a power-of-2 map: the average; 0: the
    sum).  The rest of the average's ``1 / (H*W)`` is in the classifier's positive float
    logit scale, so the pool needs no other division.
    """
    x = _ints(x, "x")
    if x.ndim != 4:
        raise ValueError(f"global_sum_pool needs an NHWC tensor, not shape {x.shape}")
    return round_shift(x.sum(axis=(1, 2)), shift)


def step_thresholds(bias, steps, fmt: FixedPointFormat) -> np.ndarray:
    """Integer thresholds of the activation ``level = #{k : (q + bias) * 2**-frac >= c_k}``.

    Parameters
    ----------
    bias
        Per-channel ``(C,)`` int codes added before the comparison.
    steps
        The increasing real steps ``c_k`` (floats; taken exactly, as binary fractions).
        ``(0.0,)`` is the sign activation, :data:`models.layers.FRAC2_THRESHOLDS` frac2.

    Returns
    -------
    (C, K) int64 array ``T[c, k] = ceil(c_k * 2**frac) - bias[c]``, computed in exact
    rational arithmetic: ``q >= T[c, k]`` holds exactly when ``(q + bias) * 2**-frac >= c_k``.
    Thresholds may lie outside ``[lo, hi]`` (a step that is always or never taken); clamp
    them to ``[lo, hi + 1]`` for a narrower comparator.
    """
    bias = _ints(bias, "bias").reshape(-1)
    steps = [float(c) for c in steps]
    if not steps or any(not math.isfinite(c) for c in steps) \
            or any(a >= b for a, b in zip(steps, steps[1:])):
        raise ValueError(f"steps must be finite and strictly increasing, not {steps!r}")
    ks = [math.ceil(Fraction(c) * fmt.scale) for c in steps]
    return np.asarray(ks, dtype=np.int64)[None, :] - bias[:, None]


def threshold_levels(x, thresholds) -> np.ndarray:
    """``level = sum_k (x >= T[c, k])`` for NHWC (or ``(..., C)``) codes ``x`` and ``(C, K)``
    thresholds; int64 in ``0..K``.  Sign: ``2*level - 1``; frac2: ``u = 2*level - 3``."""
    x = _ints(x, "x")
    t = _ints(thresholds, "thresholds")
    if t.ndim != 2 or t.shape[0] != x.shape[-1]:
        raise ValueError(f"thresholds must be (channels={x.shape[-1]}, steps), not {t.shape}")
    return (x[..., None] >= t).sum(axis=-1).astype(np.int64)


def quantize_multipliers(values, adds=None, *, name: str = "constant",
                         mult_bits: int = MULT_BITS, add_bits: int = ADD_BITS,
                         max_shift: int = MAX_SHIFT) -> tuple[np.ndarray, int, np.ndarray]:
    """Per-channel real multipliers (and additive terms) -> ``(mult, shift, add)``.

    ``mult = round(v * 2**shift)`` and ``add = round(a * 2**shift)`` (round half up, in exact
    rational arithmetic of the float64 inputs) with the largest ``shift`` in
    ``0..max_shift`` for which every ``|mult| <= 2**(mult_bits-1) - 1`` and every
    ``|add| <= 2**(add_bits-1) - 1``.  When the multipliers bound the shift (the usual case:
    an additive term is at most the output range times ``2**shift``), the largest ``|v|``
    gets ``mult_bits - 1`` significant bits (relative error at most ``2**-(mult_bits-2)``);
    a huge additive term or ``max_shift`` can bound it first.  ``adds`` default to zeros.

    Raises a one-line ``ValueError`` naming ``name`` and the channel if a constant does not
    fit its width even with shift 0.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    a = np.zeros_like(v) if adds is None else np.asarray(adds, dtype=np.float64).reshape(-1)
    if a.shape != v.shape:
        raise ValueError(f"{name}: adds must have {v.size} entries, not {a.size}")
    for label, arr in (("multiplier", v), ("additive term", a)):
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise ValueError(f"{name} {label} of channel {int(bad[0])} is {float(arr[bad[0]])!r}, "
                             f"not a finite number")
    m_max, a_max = (1 << (mult_bits - 1)) - 1, (1 << (add_bits - 1)) - 1
    fv = [Fraction(float(x)) for x in v]
    fa = [Fraction(float(x)) for x in a]

    def rounded(fs, s):
        return [math.floor(f * (1 << s) + Fraction(1, 2)) for f in fs]

    for label, fs, limit, bits in (("multiplier", fv, m_max, mult_bits),
                                   ("additive term", fa, a_max, add_bits)):
        r = rounded(fs, 0)
        for c, value in enumerate(r):
            if abs(value) > limit:
                raise ValueError(f"{name} {label} of channel {c} is {float(fs[c])!r}, which "
                                 f"overflows a signed {bits}-bit constant (|x| <= {limit})")
    # |round(f * 2**s)| grows with s: the largest fitting shift is found by bisection.
    lo, hi = 0, max_shift
    while lo < hi:
        mid = (lo + hi + 1) // 2
        fits = all(abs(m) <= m_max for m in rounded(fv, mid)) and \
            all(abs(x) <= a_max for x in rounded(fa, mid))
        lo, hi = (mid, hi) if fits else (lo, mid - 1)
    shift = lo
    return (np.asarray(rounded(fv, shift), dtype=np.int64), shift,
            np.asarray(rounded(fa, shift), dtype=np.int64))


def fold_affine(scale, bias, in_frac: int, fmt: FixedPointFormat, *, name: str = "affine"
                ) -> tuple[np.ndarray, int, np.ndarray]:
    """Constants of :func:`affine` for the real per-channel map ``y = x * scale + bias``.

    ``x`` is an integer ``n`` worth ``n * 2**-in_frac`` (``in_frac = 0``: an accumulator;
    ``fmt.frac``: codes of the residual format) and ``y`` is produced as a code of ``fmt``,
    so the multiplier is ``scale * 2**(fmt.frac - in_frac)`` and the additive term
    ``bias * 2**fmt.frac``, both quantised by :func:`quantize_multipliers` with one shared
    shift.  A batch norm folds as ``scale = gamma / sqrt(var + eps)``,
    ``bias = beta - mean * scale``.
    """
    if not isinstance(in_frac, int) or in_frac < 0:
        raise ValueError(f"in_frac must be a non-negative int, not {in_frac!r}")
    scale = np.asarray(scale, dtype=np.float64)
    bias = np.asarray(bias, dtype=np.float64)
    return quantize_multipliers(scale * 2.0 ** (fmt.frac - in_frac), bias * float(fmt.scale),
                                name=name)


def fold_slopes(slopes, *, name: str = "slope") -> tuple[np.ndarray, int]:
    """``(mult, shift)`` of per-channel real slopes for :func:`rprelu` (``mult / 2**shift``)."""
    mult, shift, _ = quantize_multipliers(slopes, name=name)
    return mult, shift
