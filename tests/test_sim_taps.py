"""sim/taps.py: decoding tapped engine output beats (integers from cocotb, Verilator's byte
storage from the batch harness) into the golden model's per-layer order, for each payload
kind, and comparing them."""

from __future__ import annotations

import numpy as np
import pytest

from sim.batch import verilator_bytes
from sim.taps import (beats_as_bytes, compare_tap, decode_tap, payload_bits,
                      tap_beats_per_image, tap_wires)


def _encode(tap: dict, values: np.ndarray) -> list[int]:
    """Beats (integers) of ``values`` ``(images, vectors, NF*PE)``, written from the bit order
    the module docstring states (independently of the decoder)."""
    pe, kind = tap["pe"], tap["out"]
    beats = []
    for image in values:
        for vector in image:
            for f in range(tap["neuron_folds"]):
                word = 0
                for p, v in enumerate(vector[f * pe:(f + 1) * pe]):
                    v = int(v)
                    if kind == "sign":
                        word |= v << p
                    elif kind == "frac2":
                        word |= (v >> 1) << p | (v & 1) << (pe + p)
                    else:
                        w = tap["acc_width"]
                        word |= (v & ((1 << w) - 1)) << (p * w)
                beats.append(word)
    return beats


@pytest.mark.parametrize("kind,pe,nf,acc_width", [
    ("sign", 4, 2, 8), ("frac2", 8, 1, 8), ("scores", 3, 2, 7), ("scores", 16, 1, 30)])
def test_decode_round_trip(kind, pe, nf, acc_width):
    rng = np.random.default_rng(pe * nf)
    vectors, out_features, images = 5, pe * nf - 1, 3
    tap = {"layer": 2, "instance": "mvtu2", "consumer": "narrow2", "out": kind, "pe": pe,
           "neuron_folds": nf, "out_features": out_features, "acc_width": acc_width,
           "vectors": vectors, "conv": None, "pool": 0, "levels": 0}
    if kind == "sign":
        values = rng.integers(0, 2, (images, vectors, nf * pe))
    elif kind == "frac2":
        values = rng.integers(0, 4, (images, vectors, nf * pe))
    else:
        values = rng.integers(-(1 << (acc_width - 1)), 1 << (acc_width - 1),
                              (images, vectors, nf * pe))
    beats = _encode(tap, values)
    assert len(beats) == images * tap_beats_per_image(tap)
    want = values[:, :, :out_features].reshape(images, -1)
    assert np.array_equal(decode_tap(tap, beats, images), want)
    # Verilator's storage: the payload in 1/2/4/8 bytes or 32-bit words (wider rows).
    nbytes = verilator_bytes(payload_bits(tap))
    raw = np.zeros((len(beats), nbytes), np.uint8)
    raw[:, :beats_as_bytes(beats, tap).shape[1]] = beats_as_bytes(beats, tap)
    got = decode_tap(tap, raw, images)
    assert np.array_equal(got, want)
    # Fewer images asked, fewer beats recorded.
    assert np.array_equal(decode_tap(tap, raw, 2), want[:2])
    assert decode_tap(tap, raw[:-1], images).shape[0] == images - 1
    assert decode_tap(tap, raw[:0], images).shape == (0, want.shape[1])     # an engine past an exit
    assert decode_tap(tap, [], images).shape == (0, want.shape[1])
    # Comparison: equal, one changed output, a missing image.
    assert compare_tap(tap, got, want) == (0, [])
    bad = got.copy()
    bad[1, 4] += 1
    count, found = compare_tap(tap, bad, want, first_image=10)
    assert count == 1 and found[0]["image"] == 11 and found[0]["neuron"] == 4
    count, found = compare_tap(tap, got[:2], want)
    assert count == 1 and found[0]["what"] == "layer output count"
    assert tap_wires(tap) == ("mvtu2.o__valid", "mvtu2.o__payload", "narrow2.i__ready")


def test_decode_pooled_convolution():
    """A convolution whose golden output is max pooled (chain networks): the decoded map is
    pooled the same way, also for an engine that saw no image."""
    rng = np.random.default_rng(7)
    tap = {"layer": 0, "instance": "mvtu0", "consumer": "pool0", "out": "sign", "pe": 2,
           "neuron_folds": 2, "out_features": 3, "acc_width": 4, "vectors": 16,
           "conv": {"out_height": 4, "out_width": 4}, "pool": 2, "levels": 0}
    values = rng.integers(0, 2, (2, 16, 4))
    got = decode_tap(tap, _encode(tap, values), 2)
    maps = values[:, :, :3].reshape(2, 4, 4, 3)
    want = maps.reshape(2, 2, 2, 2, 2, 3).max(axis=(2, 4)).reshape(2, -1)
    assert np.array_equal(got, want)
    assert decode_tap(tap, [], 2).shape == (0, 12)
