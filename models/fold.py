"""Exact folding of a trained layer's float activation into integer thresholds.

docs/compiled-network.md, "Relation to the PyTorch model": the eval-mode activation of a
:class:`models.layers.BinaryDense` is a monotone per-channel step function of the integer
accumulator.  Rather than doing algebra on the batch-norm parameters (which float32
rounding can betray), :func:`fold_layer` evaluates the layer's own ``activate`` on *every*
integer in ``[acc_min, acc_max]`` for every channel, reads off ``neg`` and the thresholds,
then re-evaluates the integer rule on every value and raises :class:`ExportError` on any
difference.  :func:`fold_gates` and :func:`fold_output` do the same for the gating
threshold and the last layer's logit map.

A layer only needs ``in_features``, ``out_features``, ``in_bits``, ``out`` and an
element-wise ``activate(acc)`` (plus ``gate_delta`` for 2-bit inputs and ``norm`` with
``running_mean``, ``scale()``, ``beta`` for the scores layer), so synthetic layers work too.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from sw.compiled_net import OutputSpec
from sw.errors import UserError

__all__ = ["ExportError", "acc_range", "fold_layer", "fold_gates", "fold_output",
           "thresholds_from_codes"]

# Grid elements evaluated per activate() call: bounds the float temporaries (~16 MB each).
_GRID_ELEMENTS = 1 << 22


class ExportError(UserError):
    """The model cannot be exported exactly (the integer rule would differ from PyTorch)."""


def acc_range(layer) -> tuple[int, int]:
    """``(acc_min, acc_max)``: ``±MW`` for 1-bit inputs, ``±3*MW`` for 2-bit inputs."""
    hi = layer.in_features * (3 if layer.in_bits == 2 else 1)
    return -hi, hi


def _eval_mode(layer) -> None:
    if hasattr(layer, "eval"):
        layer.eval()


def _grid_rows(lo: int, hi: int, channels: int):
    """Yield ``(start, acc)`` with ``acc`` a float32 (rows, channels) block of the grid."""
    rows = max(1, _GRID_ELEMENTS // channels)
    for start in range(lo, hi + 1, rows):
        stop = min(hi + 1, start + rows)
        col = torch.arange(start, stop, dtype=torch.float32)
        yield start, col[:, None].expand(stop - start, channels).contiguous()


def _codes(layer, values: torch.Tensor, start: int) -> np.ndarray:
    """Activation outputs -> integer codes (sign: bit 0/1, frac2: q 0..3), validated."""
    v = values.numpy()
    if layer.out == "sign":
        ok = (v == 1.0) | (v == -1.0)
        codes = (v > 0).astype(np.uint8)
    else:
        ok = (v == -3.0) | (v == -1.0) | (v == 1.0) | (v == 3.0)
        codes = ((np.where(ok, v, -3.0) + 3.0) / 2.0).astype(np.uint8)
    if not ok.all():
        r, c = np.argwhere(~ok)[0]
        want = "+-1" if layer.out == "sign" else "one of -3, -1, 1, 3"
        raise ExportError(f"layer {getattr(layer, 'index', '?')} channel {c}: activate({start + r}) "
                          f"= {float(v[r, c])}, expected {want}; the checkpoint is not exportable")
    return codes


@torch.no_grad()
def fold_layer(layer, index: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Integer ``neg`` flags and thresholds equivalent to ``layer.activate`` (eval mode).

    Parameters
    ----------
    layer
        A ``sign`` or ``frac2`` layer (``BinaryDense`` or a look-alike).
    index
        Layer index for error messages.

    Returns
    -------
    neg : numpy.ndarray
        ``bool (MH,)``: the channel is non-increasing in ``acc`` (compare ``-acc``).
    thresholds : numpy.ndarray
        ``int64 (MH, count)``, ``count`` 1 (sign) or 3 (frac2), non-decreasing per row,
        in ``[acc_min, acc_max + 1]``, such that the code is ``sum_c [a >= T_c]`` with
        ``a = -acc if neg else acc`` for every integer acc in ``[acc_min, acc_max]``.

    Raises
    ------
    ExportError
        If the activation produces an invalid value or is not a monotone step function
        of ``acc`` on some channel (the exhaustive re-check found a difference).
    """
    where = f"layer {index if index is not None else getattr(layer, 'index', '?')}"
    if layer.out not in ("sign", "frac2"):
        raise ValueError(f"fold_layer needs a sign or frac2 layer, not {layer.out!r}")
    _eval_mode(layer)
    count = 1 if layer.out == "sign" else 3
    lo, hi = acc_range(layer)
    mh = layer.out_features
    # Codes of every grid point: (R, MH) uint8, e.g. 6145 x 1024 = 6 MB for LFC frac layers.
    codes = np.empty((hi - lo + 1, mh), dtype=np.uint8)
    for start, acc in _grid_rows(lo, hi, mh):
        codes[start - lo:start - lo + acc.shape[0]] = _codes(layer, layer.activate(acc), start)
    return thresholds_from_codes(codes, lo, hi, count, where, "PyTorch",
                                 "the checkpoint is not exportable")


def thresholds_from_codes(codes: np.ndarray, lo: int, hi: int, count: int, where: str,
                          source: str, fix: str) -> tuple[np.ndarray, np.ndarray]:
    """``neg`` and ``count`` thresholds per channel that reproduce ``codes`` exactly.

    ``codes`` ``(hi - lo + 1, MH)``: the activation code of every integer accumulator
    ``lo..hi`` (``lo == -hi``) per channel, as ``source`` computes it.  Raises
    :class:`ExportError` (``"{where} channel c: ...; {fix}"``) if a channel is not a
    monotone step function of the accumulator (the exhaustive re-check finds a difference).
    """
    mh = codes.shape[1]
    # Non-increasing channels compare a = -acc; the grid is symmetric (lo == -hi).
    neg = codes[0] > codes[-1]
    n_rows = codes.shape[0]
    thresholds = np.empty((mh, count), dtype=np.int64)
    for c in range(count):
        below = np.count_nonzero(codes <= c, axis=0)  # grid points with code < c + 1
        # neg = 0: T_c = first acc with code > c; neg = 1: T_c = first a = -acc with code > c.
        thresholds[:, c] = np.where(neg, hi - (n_rows - below) + 1, lo + below)
    # Exhaustive re-check of the integer rule against the source's function.
    step = max(1, _GRID_ELEMENTS // mh)
    for start in range(lo, hi + 1, step):
        stop = min(hi + 1, start + step)
        acc = np.arange(start, stop, dtype=np.int64)[:, None]
        a = np.where(neg[None, :], -acc, acc)
        rule = (a[:, :, None] >= thresholds[None, :, :]).sum(axis=2)
        got = codes[start - lo:stop - lo]
        diff = rule != got
        if diff.any():
            r, ch = np.argwhere(diff)[0]
            raise ExportError(
                f"{where} channel {ch}: the activation is not a monotone step function of acc "
                f"(at acc {start + r} {source} gives code {got[r, ch]}, the integer thresholds "
                f"{thresholds[ch].tolist()} neg={bool(neg[ch])} give {rule[r, ch]}); {fix}")
    return neg, thresholds


@torch.no_grad()
def fold_gates(layer, index: int | None = None) -> np.ndarray:
    """Integer gating thresholds ``G = floor(gate_delta)`` clamped to ``[-MW - 1, MW]``.

    Checked on every ``acc_m`` in ``[-MW, MW]``: ``acc_m > G`` must equal the model's
    float32 ``acc_m > gate_delta`` for every channel; raises :class:`ExportError` otherwise
    (e.g. a NaN ``gate_delta``).
    """
    where = f"layer {index if index is not None else getattr(layer, 'index', '?')}"
    if layer.in_bits != 2:
        raise ValueError("fold_gates needs a layer with 2-bit inputs")
    mw = layer.in_features
    delta = layer.gate_delta.detach().to(torch.float32).reshape(-1)
    if delta.numel() != layer.out_features:
        raise ExportError(f"{where}: gate_delta has {delta.numel()} values, expected "
                          f"{layer.out_features}")
    d = delta.numpy().astype(np.float64)
    if not np.all(np.isfinite(d)):
        ch = int(np.argwhere(~np.isfinite(d))[0, 0])
        raise ExportError(f"{where} channel {ch}: gate_delta is {float(d[ch])}; the checkpoint is "
                          "not exportable")
    gates = np.clip(np.floor(d), -mw - 1, mw).astype(np.int64)
    for start, acc in _grid_rows(-mw, mw, layer.out_features):
        want = (acc > delta[None, :]).numpy()
        ints = np.arange(start, start + acc.shape[0], dtype=np.int64)[:, None]
        diff = (ints > gates[None, :]) != want
        if diff.any():
            r, ch = np.argwhere(diff)[0]
            raise ExportError(f"{where} channel {ch}: gate {start + r} > G={gates[ch]} differs "
                              f"from {start + r} > gate_delta={float(d[ch])}")
    return gates


@torch.no_grad()
def fold_output(layer, index: int | None = None) -> OutputSpec:
    """The last layer's scalar logit map ``((score - mean) * scale) + beta``, checked.

    Evaluates ``layer.activate`` on every integer score in ``[acc_min, acc_max]`` for every
    class and requires (1) the same value for every class (a tensor-wide norm), (2) strictly
    increasing values (so the float and integer argmax agree, ties included), (3) bit
    equality with the float32 formula using the returned mean/scale/beta.
    """
    where = f"layer {index if index is not None else getattr(layer, 'index', '?')}"
    if layer.out != "scores":
        raise ValueError("fold_output needs the scores layer")
    _eval_mode(layer)
    norm = layer.norm
    mean = np.float32(norm.running_mean.detach().to(torch.float32).item())
    scale = np.float32(norm.scale().detach().to(torch.float32).item())
    beta = np.float32(norm.beta.detach().to(torch.float32).item())
    if not (math.isfinite(mean) and math.isfinite(scale) and math.isfinite(beta) and scale > 0):
        raise ExportError(f"{where}: output norm has mean {mean}, scale {scale}, beta {beta}; "
                          "need finite values and scale > 0")
    lo, hi = acc_range(layer)
    prev_last = None
    for start, acc in _grid_rows(lo, hi, layer.out_features):
        logits = layer.activate(acc).numpy()
        col = logits[:, :1]
        if not np.array_equal(logits, np.broadcast_to(col, logits.shape)):
            raise ExportError(f"{where}: the output norm is not the same for every class")
        col = col[:, 0]
        formula = ((acc[:, 0].numpy() - mean) * scale) + beta  # float32 element-wise
        if not np.array_equal(col, formula):
            r = int(np.argwhere(col != formula)[0, 0])
            raise ExportError(f"{where}: logit({start + r}) = {float(col[r])} differs from "
                              f"((acc - mean) * scale) + beta = {float(formula[r])}")
        seq = col if prev_last is None else np.concatenate([[prev_last], col])
        if not np.all(np.diff(seq) > 0):
            raise ExportError(f"{where}: the logit map is not strictly increasing over "
                              f"[{lo}, {hi}] (scale {scale} too small for float32); "
                              "integer and float argmax could differ")
        prev_last = col[-1]
    return OutputSpec(layer.out_features, float(mean), float(scale), float(beta))
