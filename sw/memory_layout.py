"""How a layer's parameters are packed into memory words (docs/compiled-network.md).

The exporter, the golden model and the hardware generator all use these functions, so a
memory word means the same thing everywhere:

* weights: depth ``NF*SF``, width ``PE*SIMD``; word ``nf*SF + sf``, lane ``p`` at bits
  ``[p*SIMD, (p+1)*SIMD)``, bit ``j`` of the lane = weight bit of neuron ``nf*PE + p``,
  input ``sf*SIMD + j``; padding weight bits are 1;
* thresholds: depth ``NF``, width ``PE*LW``, ``LW = count*TW + 1``; in lane ``p``
  threshold ``c`` (two's complement) at ``[c*TW, (c+1)*TW)`` and ``neg`` at bit ``count*TW``;
  padding neurons hold ``acc_max + 1`` and ``neg = 0``;
* gates: depth ``NF``, width ``PE*GW``; lane ``p`` holds ``G`` (two's complement);
  padding neurons hold ``MW``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .compiled_net import CompiledNetwork, LayerSpec

__all__ = ["pack_weight_words", "unpack_weight_words", "pack_threshold_words",
           "unpack_threshold_words", "pack_gate_words", "unpack_gate_words", "memory_widths",
           "memory_words", "memory_depth", "layer_memories", "network_memory_kinds",
           "network_memories"]


def _rows_to_words(bits: np.ndarray) -> list[int]:
    """Each row of 0/1 ``bits`` (row bit k = word bit k) -> one Python int."""
    packed = np.packbits(bits.astype(np.uint8), axis=-1, bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in packed]


def _words_to_rows(words: list[int], width: int) -> np.ndarray:
    """Python ints -> ``(len(words), width)`` uint8 bit rows (inverse of _rows_to_words)."""
    nbytes = -(-width // 8)
    raw = b"".join(int(w).to_bytes(nbytes, "little") for w in words)
    bytes_ = np.frombuffer(raw, dtype=np.uint8).reshape(len(words), nbytes)
    return np.unpackbits(bytes_, axis=-1, bitorder="little")[:, :width]


def pack_weight_words(layer: LayerSpec) -> list[int]:
    """Weight memory words (depth ``NF*SF``, width ``PE*SIMD``) of ``layer``."""
    pe, simd = layer.folding.pe, layer.folding.simd
    nf, sf = layer.neuron_folds, layer.synapse_folds
    bits = layer.padded_weight_bits()  # (NF*PE, SF*SIMD)
    # word nf*SF + sf, bit p*SIMD + j  <-  neuron nf*PE + p, input sf*SIMD + j
    tiles = bits.reshape(nf, pe, sf, simd).transpose(0, 2, 1, 3).reshape(nf * sf, pe * simd)
    return _rows_to_words(tiles)


def unpack_weight_words(words: list[int], pe: int, simd: int,
                        mh_padded: int, mw_padded: int) -> np.ndarray:
    """Inverse of :func:`pack_weight_words`: weight bits ``(MHp, MWp)`` uint8 incl. padding."""
    nf, sf = mh_padded // pe, mw_padded // simd
    if len(words) != nf * sf:
        raise ValueError(f"expected {nf * sf} weight words, got {len(words)}")
    tiles = _words_to_rows(words, pe * simd).reshape(nf, sf, pe, simd)
    return np.ascontiguousarray(tiles.transpose(0, 2, 1, 3).reshape(mh_padded, mw_padded))


def _pack_lanes(lanes: list[int], pe: int, lane_bits: int) -> list[int]:
    words = []
    for base in range(0, len(lanes), pe):
        word = 0
        for p, lane in enumerate(lanes[base:base + pe]):
            word |= lane << (p * lane_bits)
        words.append(word)
    return words


def _unpack_lanes(words: list[int], pe: int, lane_bits: int) -> list[int]:
    mask = (1 << lane_bits) - 1
    return [(int(w) >> (p * lane_bits)) & mask for w in words for p in range(pe)]


def _to_twos(value: int, bits: int) -> int:
    return int(value) & ((1 << bits) - 1)


def _from_twos(field_: int, bits: int) -> int:
    return field_ - (1 << bits) if field_ >> (bits - 1) else field_


def pack_threshold_words(layer: LayerSpec) -> list[int]:
    """Threshold memory words (depth ``NF``, width ``PE*(count*TW + 1)``) of ``layer``."""
    count, tw = layer.threshold_count, layer.threshold_bits
    if not count:
        raise ValueError(f"layer {layer.index} ({layer.out}) has no thresholds")
    th, neg = layer.padded_thresholds()
    lanes = []
    for n in range(layer.mh_padded):
        lane = int(neg[n]) << (count * tw)
        for c in range(count):
            lane |= _to_twos(th[n, c], tw) << (c * tw)
        lanes.append(lane)
    return _pack_lanes(lanes, layer.folding.pe, count * tw + 1)


def unpack_threshold_words(words: list[int], pe: int, count: int,
                           threshold_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`pack_threshold_words`: thresholds ``(MHp, count)`` int64, neg ``(MHp,)``."""
    tw = threshold_bits
    lanes = _unpack_lanes(words, pe, count * tw + 1)
    mask = (1 << tw) - 1
    th = np.array([[_from_twos((lane >> (c * tw)) & mask, tw) for c in range(count)]
                   for lane in lanes], dtype=np.int64).reshape(len(lanes), count)
    neg = np.array([(lane >> (count * tw)) & 1 for lane in lanes], dtype=bool)
    return th, neg


def pack_gate_words(layer: LayerSpec) -> list[int]:
    """Gate memory words (depth ``NF``, width ``PE*GW``) of a layer with 2-bit inputs."""
    if layer.in_bits != 2:
        raise ValueError(f"layer {layer.index} has 1-bit inputs and no gates")
    gw = layer.gate_bits
    lanes = [_to_twos(g, gw) for g in layer.padded_gates()]
    return _pack_lanes(lanes, layer.folding.pe, gw)


def unpack_gate_words(words: list[int], pe: int, gate_bits: int) -> np.ndarray:
    """Inverse of :func:`pack_gate_words`: gates ``(MHp,)`` int64."""
    return np.array([_from_twos(f, gate_bits) for f in _unpack_lanes(words, pe, gate_bits)],
                    dtype=np.int64)


def memory_widths(layer: LayerSpec) -> dict[str, int]:
    """Word width of each memory ``layer`` has, by kind (:data:`MEMORY_KINDS` order):
    weights always, thresholds unless it outputs scores, gates if it is gated."""
    widths = {"weights": layer.weight_width}
    if layer.threshold_count:
        widths["thresholds"] = layer.threshold_width
    if layer.gated:
        widths["gates"] = layer.gate_width
    return widths


def memory_words(layer: LayerSpec, kind: str) -> list[int]:
    """The words of memory ``kind`` of ``layer`` (the ``.mem`` file's)."""
    return {"weights": pack_weight_words, "thresholds": pack_threshold_words,
            "gates": pack_gate_words}[kind](layer)


def memory_depth(layer: LayerSpec, kind: str) -> int:
    """Words in memory ``kind`` of ``layer`` (``len(memory_words(layer, kind))``, without
    packing them)."""
    return layer.weight_depth if kind == "weights" else layer.neuron_folds


def _layer_memory_kinds(layer: LayerSpec, prefix: str) -> list[tuple[str, LayerSpec, str, int]]:
    """(file stem ``<prefix><index>_<kind>``, layer, kind, width) of every memory of ``layer``."""
    return [(f"{prefix}{layer.index}_{kind}", layer, kind, width)
            for kind, width in memory_widths(layer).items()]


def layer_memories(layer: LayerSpec, prefix: str = "L") -> list[tuple[str, list[int], int]]:
    """(file stem, words, width) of every memory of ``layer`` (``X{j}_...`` for exit
    ``j``); the file is ``<stem>.mem``."""
    return [(stem, memory_words(layer, kind), width)
            for stem, _, kind, width in _layer_memory_kinds(layer, prefix)]


def network_memory_kinds(net: CompiledNetwork) -> list[tuple[str, LayerSpec, str, int]]:
    """(file stem, layer, kind, width) of every memory of ``net`` in file order: the layers'
    (``L{i}_<kind>``), then the early exits' classifiers (``X{j}_<kind>``); the words are
    :func:`memory_words` ``(layer, kind)``."""
    return [m for prefix, layers in (("L", net.layers), ("X", [ex.layer for ex in net.exits]))
            for layer in layers for m in _layer_memory_kinds(layer, prefix)]


def network_memories(net: CompiledNetwork) -> list[tuple[str, list[int], int]]:
    """(file stem, words, width) of every memory of ``net`` (:func:`network_memory_kinds`
    order)."""
    return [(stem, memory_words(layer, kind), width)
            for stem, layer, kind, width in network_memory_kinds(net)]
