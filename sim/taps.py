"""Layer taps: each layer engine's output stream, decoded into the golden model's per-layer
outputs and compared with them.

A tap (:func:`sim.reference.layer_taps`, from ``design.json``) names an engine instance:
its ``o__valid``/``o__payload`` and its consumer's ``i__ready`` (flattened wire names,
e.g. ``mvtu0.o__valid``) form the handshake, one transfer per beat of ``PE`` lanes.  The
cocotb testbench (sim/tb_accelerator.py) collects the beats as integers, the batch
harness (:mod:`sim.batch`, ``taps=``) as Verilator's little-endian storage of the payload;
:func:`decode_tap` turns either into ``(images, outputs)`` in the golden model's order.

Payload bit order (hw/mvtu.py's output layouts):

- 1-bit outputs (``levels`` 2): lane ``p`` at bit ``p``;
- 2-bit codes (``levels`` 3 or 4, ``{m: PE, l: PE}``): lane ``p``'s MSB plane at bit ``p``,
  its LSB plane at bit ``PE + p``; the code is ``2m + l``;
- accumulators / scores (``ArrayLayout(signed(acc_width), PE)``): lane ``p`` at bits
  ``[p*w, (p+1)*w)``, two's complement.

Beats come in neuron-fold order per vector (``NF`` beats of ``PE`` neurons), vectors in
output-position order (row-major, HWC), so every image has ``vectors * NF`` beats.
"""

from __future__ import annotations

import numpy as np

__all__ = ["tap_wires", "tap_beats_per_image", "payload_bits", "beats_as_bytes", "decode_tap",
           "compare_tap"]


def tap_wires(tap: dict) -> tuple[str, str, str]:
    """The flattened names of ``tap``'s ``valid``, ``payload`` and ``ready`` wires."""
    return (f"{tap['instance']}.o__valid", f"{tap['instance']}.o__payload",
            f"{tap['consumer']}.i__ready")


def tap_beats_per_image(tap: dict) -> int:
    """Output beats ``tap``'s engine produces per image: ``vectors * NF``."""
    return int(tap.get("vectors", 1)) * int(tap["neuron_folds"])


def _levels(tap: dict) -> int:
    """2: one bit per lane; 3 or 4: two planes; 0: signed accumulators."""
    if tap["out"] == "scores":
        return 0
    return int(tap.get("levels") or {"sign": 2, "frac2": 4}.get(tap["out"], 0))


def payload_bits(tap: dict) -> int:
    """Width of ``tap``'s payload in bits."""
    pe, levels = int(tap["pe"]), _levels(tap)
    return pe if levels == 2 else 2 * pe if levels else pe * int(tap["acc_width"])


def beats_as_bytes(beats, tap: dict) -> np.ndarray:
    """Integer beats (the cocotb monitor's) as uint8 ``(beats, bytes)``, little endian."""
    nbytes = -(-payload_bits(tap) // 8)
    raw = b"".join(int(b).to_bytes(nbytes, "little") for b in beats)
    return np.frombuffer(raw, dtype=np.uint8).reshape(len(beats), nbytes)


def decode_tap(tap: dict, beats, images: int) -> np.ndarray:
    """Per-layer outputs ``(n, outputs)`` int64 of the first ``images`` images (``n`` fewer
    when fewer beats came) from ``beats``: integers or uint8 ``(beats, bytes)`` rows.

    A convolution's outputs are its ``vectors`` positions times ``out_features`` (HWC); with
    ``pool`` (a max pool folded into the layer by the golden model) the ``pool x pool``
    maximum of the map, as the golden model gives it."""
    raw = beats if isinstance(beats, np.ndarray) else beats_as_bytes(beats, tap)
    pe, nf, levels = int(tap["pe"]), int(tap["neuron_folds"]), _levels(tap)
    per_image = tap_beats_per_image(tap)
    n = min(images, raw.shape[0] // per_image)
    raw = raw[:n * per_image]
    width = payload_bits(tap)
    bits = np.unpackbits(raw, axis=1, bitorder="little")[:, :width]
    if levels == 2:
        out = bits.astype(np.int64)
    elif levels:
        out = 2 * bits[:, :pe].astype(np.int64) + bits[:, pe:2 * pe]
    else:
        w = int(tap["acc_width"])
        lanes = bits.reshape(-1, pe, w).astype(np.int64)
        out = lanes @ (np.int64(1) << np.arange(w, dtype=np.int64))
        out -= (lanes[:, :, w - 1] << w)                 # two's complement sign
    vectors, features = int(tap.get("vectors", 1)), int(tap["out_features"])
    out = out.reshape(n * vectors, nf * pe)[:, :features].reshape(n, vectors * features)
    if tap.get("pool"):
        conv, k = tap["conv"], int(tap["pool"])
        oh, ow = conv["out_height"] // k, conv["out_width"] // k
        m = out.reshape(n, conv["out_height"], conv["out_width"], features)[:, :oh * k, :ow * k]
        out = m.reshape(n, oh, k, ow, k, features).max(axis=(2, 4)).reshape(n, oh * ow * features)
    return out


def compare_tap(tap: dict, got: np.ndarray, expected: np.ndarray, *, first_image: int = 0,
                limit: int | None = 20) -> tuple[int, list[dict]]:
    """Compare decoded outputs with the golden model's ``expected`` ``(images, outputs)``:
    the number of differing outputs and the first ``limit`` (``None``: all) as dicts (``image`` counted from
    ``first_image``).  Fewer decoded images than expected is one mismatch of kind
    ``layer output count``."""
    problems: list[dict] = []
    if got.shape != expected.shape:
        problems.append({"image": first_image + got.shape[0], "what": "layer output count",
                         "layer": tap["layer"],
                         "detail": f"layer {tap['layer']} produced {got.shape[0]} images' "
                                   f"outputs, expected {expected.shape[0]}"})
        rows = min(got.shape[0], expected.shape[0])
        got, expected = got[:rows], expected[:rows]
    bad = np.nonzero(got != expected)
    count = len(bad[0]) + len(problems)
    for i, n in list(zip(*bad))[:limit]:
        problems.append({"image": first_image + int(i), "what": "layer output",
                         "layer": tap["layer"], "neuron": int(n),
                         "expected": int(expected[i, n]), "got": int(got[i, n])})
    return count, problems
