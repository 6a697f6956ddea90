"""Bit vectors packed into ``uint64`` words, popcount and the XNOR-popcount dot product.

Bit order (the same as the memory files, see docs/compiled-network.md): bit ``j`` of a
length-``n`` vector is bit ``j % 64`` (LSB = 0) of word ``j // 64``.  A vector of ``n`` bits
takes ``words_for(n) = ceil(n / 64)`` words; :func:`pack_bits` fills the unused high bits
of the last word with 0, and :func:`xnor_popcount_dot` masks them off, so whatever a caller
puts there never counts.

Binary values v in {-1, +1} are stored as bits ``b = (v + 1) / 2`` and
``dot(w, x) = 2 * popcount(XNOR(w_bits, x_bits)) - n``.

Works on numpy 1.26 and 2.x with identical results: :func:`popcount` is ``np.bitwise_count``
where numpy has it (2.0 on) and :func:`popcount_swar` (the same counts from 64-bit integer
arithmetic) on numpy 1.26, the version PYNQ 4.0 board images pin.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "WORD_BITS",
    "words_for",
    "pack_bits",
    "unpack_bits",
    "popcount",
    "popcount_swar",
    "xnor_popcount_dot",
]

#: Bits per packed word.
WORD_BITS = 64

# Rows of the (images x neurons) result computed at once by xnor_popcount_dot; bounds
# the temporaries to about chunk * neurons * 8 bytes.
_DEFAULT_CHUNK = 128


def words_for(n: int) -> int:
    """Number of 64-bit words holding ``n`` bits (``ceil(n / 64)``)."""
    if n < 0:
        raise ValueError(f"bit count must be >= 0, not {n!r}")
    return -(-n // WORD_BITS)


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack 0/1 values along the last axis into little-endian ``uint64`` words.

    Parameters
    ----------
    bits
        Array ``(..., n)`` of 0/1 values (any integer or bool dtype).

    Returns
    -------
    numpy.ndarray
        ``uint64`` array ``(..., ceil(n / 64))``; bit ``j`` of the vector is bit
        ``j % 64`` of word ``j // 64``; unused high bits of the last word are 0.
    """
    bits = np.asarray(bits)
    if bits.ndim == 0:
        raise ValueError("bits must have at least one axis")
    n = bits.shape[-1]
    n_words = words_for(n)
    lead = bits.shape[:-1]
    flat = bits.reshape(math.prod(lead), n)
    if flat.size and not np.all((flat == 0) | (flat == 1)):
        raise ValueError("bits must contain only 0 and 1")
    padded = np.zeros((flat.shape[0], n_words * WORD_BITS), dtype=np.uint8)
    padded[:, :n] = flat
    # packbits(little) puts vector bit j at bit j%8 of byte j//8; 8 little-endian bytes
    # then form one word with bit j at position j%64.
    packed = np.packbits(padded, axis=-1, bitorder="little")
    words = packed.view("<u8").astype(np.uint64, copy=False)
    return words.reshape(*lead, n_words)


def unpack_bits(words: np.ndarray, n: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: ``(..., W)`` words -> ``(..., n)`` ``uint8`` 0/1 bits.

    Raises ``ValueError`` if ``W`` words cannot hold ``n`` bits.
    """
    words = np.asarray(words, dtype=np.uint64)
    if words.shape[-1] * WORD_BITS < n:
        raise ValueError(f"{words.shape[-1]} words cannot hold {n} bits")
    lead = words.shape[:-1]
    flat = np.ascontiguousarray(words.reshape(math.prod(lead), words.shape[-1]).astype("<u8"))
    bits = np.unpackbits(flat.view(np.uint8), axis=-1, bitorder="little")
    return bits[:, :n].reshape(*lead, n)


# SWAR popcount constants (Hacker's Delight 5-1): uint64 arithmetic wraps modulo 2**64.
_M1, _M2, _M4 = (np.uint64(0x5555_5555_5555_5555), np.uint64(0x3333_3333_3333_3333),
                 np.uint64(0x0F0F_0F0F_0F0F_0F0F))
_H01 = np.uint64(0x0101_0101_0101_0101)
_S1, _S2, _S4, _S56 = np.uint64(1), np.uint64(2), np.uint64(4), np.uint64(56)


def popcount_swar(words: np.ndarray) -> np.ndarray:
    """Number of set bits of each 64-bit word, as ``uint8``, from integer arithmetic only
    (no ``np.bitwise_count``): the numpy < 2 path of :func:`popcount`, equal to it on every
    input."""
    x = np.array(words, dtype=np.uint64)          # a copy: updated in place below
    x -= (x >> _S1) & _M1                         # 2-bit sums
    x = (x & _M2) + ((x >> _S2) & _M2)            # 4-bit sums
    x = (x + (x >> _S4)) & _M4                    # byte sums
    x *= _H01                                     # byte 7 = sum of all bytes (wraps)
    return (x >> _S56).astype(np.uint8)


def popcount(words: np.ndarray) -> np.ndarray:
    """Number of set bits of each word (any shape; converted to ``uint64``), as ``uint8``:
    ``np.bitwise_count`` where numpy has it (>= 2.0), else :func:`popcount_swar`."""
    return _popcount(np.asarray(words, dtype=np.uint64))


_popcount = getattr(np, "bitwise_count", popcount_swar)


def _tail_mask(n: int) -> np.uint64:
    """Mask of the valid bits in the last word of an ``n``-bit vector."""
    rem = n % WORD_BITS
    return np.uint64((1 << rem) - 1) if rem else np.uint64(0xFFFF_FFFF_FFFF_FFFF)


def xnor_popcount_dot(
    x_packed: np.ndarray,
    w_packed: np.ndarray,
    n: int,
    *,
    chunk: int = _DEFAULT_CHUNK,
) -> np.ndarray:
    """Binary dot products ``2 * popcount(XNOR(x, w)) - n`` of every row pair.

    Parameters
    ----------
    x_packed
        ``(N, W)`` packed input vectors (e.g. images).
    w_packed
        ``(M, W)`` packed weight vectors (neurons).
    n
        True vector length in bits (``W == ceil(n / 64)``); bits at positions ``>= n``
        are ignored in both operands.
    chunk
        Rows of ``x`` processed at once (bounds memory to about ``chunk * M * 8`` bytes).

    Returns
    -------
    numpy.ndarray
        ``int64`` ``(N, M)``: entry ``[i, k]`` equals the ±1 dot product of ``x_i`` and
        ``w_k``, in ``[-n, n]``.
    """
    x_packed = np.asarray(x_packed, dtype=np.uint64)
    w_packed = np.asarray(w_packed, dtype=np.uint64)
    if x_packed.ndim != 2 or w_packed.ndim != 2:
        raise ValueError("x_packed and w_packed must be 2-D (rows, words)")
    n_words = words_for(n)
    if x_packed.shape[1] != n_words or w_packed.shape[1] != n_words:
        raise ValueError(
            f"{n} bits need {n_words} words, got x {x_packed.shape[1]} and w {w_packed.shape[1]}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, not {chunk!r}")
    n_rows, n_cols = x_packed.shape[0], w_packed.shape[0]
    out = np.empty((n_rows, n_cols), dtype=np.int64)
    if n_words == 0:
        out[:] = 0
        return out
    # Mask the last word once per operand so the per-word loop is XOR + popcount only:
    # popcount(XNOR & valid) = n - popcount(XOR & valid).
    mask = _tail_mask(n)
    x_m = x_packed.copy()
    x_m[:, -1] &= mask
    w_t = np.ascontiguousarray(w_packed.T)  # (W, M): one contiguous row per word
    w_t[-1] &= mask
    # Mismatch counts fit in uint16 for n < 65536 and in int32 beyond.
    acc_dtype = np.uint16 if n < 65536 else np.int32
    for start in range(0, n_rows, chunk):
        xs = x_m[start:start + chunk]
        mism = np.zeros((xs.shape[0], n_cols), dtype=acc_dtype)
        tmp = np.empty((xs.shape[0], n_cols), dtype=np.uint64)
        for k in range(n_words):
            np.bitwise_xor(xs[:, k:k + 1], w_t[k][None, :], out=tmp)
            mism += _popcount(tmp)
        out[start:start + chunk] = n - 2 * mism.astype(np.int64)
    return out
