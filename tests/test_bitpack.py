"""Bit packing, popcount and the XNOR-popcount dot product (sw/bitpack.py)."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import sw.bitpack
from sw.bitpack import (pack_bits, popcount, popcount_swar, unpack_bits, words_for,
                        xnor_popcount_dot)


def test_bit_order_is_word_j_div_64_bit_j_mod_64():
    for j in (0, 1, 7, 8, 63, 64, 65, 129):
        bits = np.zeros(130, dtype=np.uint8)
        bits[j] = 1
        words = pack_bits(bits)
        expected = np.zeros(3, dtype=np.uint64)
        expected[j // 64] = np.uint64(1) << np.uint64(j % 64)
        assert words.dtype == np.uint64
        np.testing.assert_array_equal(words, expected)


def test_words_for():
    assert [words_for(n) for n in (0, 1, 64, 65, 128, 784)] == [0, 1, 1, 2, 2, 13]


def test_pack_rejects_non_bits():
    with pytest.raises(ValueError):
        pack_bits(np.array([0, 2, 1]))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 300), rows=st.integers(1, 5), seed=st.integers(0, 2**32 - 1))
def test_pack_unpack_round_trip(n, rows, seed):
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2, (rows, 2, n), dtype=np.uint8)
    words = pack_bits(bits)
    assert words.shape == (rows, 2, words_for(n))
    np.testing.assert_array_equal(unpack_bits(words, n), bits)
    # unused high bits of the last word are zero
    if n % 64:
        assert np.all(words[..., -1] >> np.uint64(n % 64) == 0)
    np.testing.assert_array_equal(popcount(words).sum(axis=-1), bits.sum(axis=-1))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 300), n_x=st.integers(1, 9), n_w=st.integers(1, 7),
       chunk=st.integers(1, 4), seed=st.integers(0, 2**32 - 1))
def test_dot_equals_pm1_dot_and_padding_never_counts(n, n_x, n_w, chunk, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2, (n_x, n))
    w = rng.integers(0, 2, (n_w, n))
    ref = (2 * x - 1) @ (2 * w - 1).T
    xp, wp = pack_bits(x), pack_bits(w)
    np.testing.assert_array_equal(xnor_popcount_dot(xp, wp, n, chunk=chunk), ref)
    # garbage in the padding bits of either operand must not change anything
    if n % 64:
        garbage = np.uint64(~((1 << (n % 64)) - 1) & 0xFFFF_FFFF_FFFF_FFFF)
        xg, wg = xp.copy(), wp.copy()
        xg[:, -1] |= garbage & rng.integers(0, 2**63, n_x, dtype=np.uint64)
        wg[:, -1] |= garbage
        np.testing.assert_array_equal(xnor_popcount_dot(xg, wg, n, chunk=chunk), ref)


def test_dot_shape_checks():
    with pytest.raises(ValueError):
        xnor_popcount_dot(np.zeros((2, 2), np.uint64), np.zeros((2, 1), np.uint64), 100)


_WORDS = st.lists(st.integers(0, 2**64 - 1), min_size=0, max_size=40)


@settings(max_examples=200, deadline=None)
@given(values=_WORDS, edge=st.sampled_from([0, 1, 2**63, 2**64 - 1, 0x8000_0000_0000_0001,
                                            0x5555_5555_5555_5555, 0xFF00_FF00_FF00_FF00]))
def test_popcount_fallback_equals_bitwise_count(values, edge):
    """numpy 1.26 has no np.bitwise_count: its fallback must give the same counts."""
    words = np.array(values + [edge], dtype=np.uint64)
    before = words.copy()
    expected = [int(v).bit_count() for v in words]
    fallback = popcount_swar(words)
    np.testing.assert_array_equal(words, before)           # the input is not modified
    assert fallback.dtype == np.uint8 and fallback.tolist() == expected
    assert popcount(words).tolist() == expected
    if hasattr(np, "bitwise_count"):
        np.testing.assert_array_equal(fallback, np.bitwise_count(words))
    grid = words.reshape(1, -1, 1)                           # any shape
    np.testing.assert_array_equal(popcount_swar(grid), fallback.reshape(1, -1, 1))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 200), n_x=st.integers(1, 6), n_w=st.integers(1, 6),
       seed=st.integers(0, 2**32 - 1))
def test_dot_with_the_fallback_popcount(n, n_x, n_w, seed):
    rng = np.random.default_rng(seed)
    x, w = rng.integers(0, 2, (n_x, n)), rng.integers(0, 2, (n_w, n))
    ref = (2 * x - 1) @ (2 * w - 1).T
    saved = sw.bitpack._popcount
    sw.bitpack._popcount = popcount_swar          # the numpy 1.26 path
    try:
        got = xnor_popcount_dot(pack_bits(x), pack_bits(w), n)
    finally:
        sw.bitpack._popcount = saved
    np.testing.assert_array_equal(got, ref)
