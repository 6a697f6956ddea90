"""What the importers share: writing a checked network with its test vectors, and the
per-layer summary they print (``models.import_bnnpynq``, ``models.import_qonnx``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sw.compiled_net import CompiledNetwork, TestVectors
from sw.network_io import write_compiled_network
from sw.golden import GoldenModel

__all__ = ["write_imported", "layer_lines"]


def write_imported(net: CompiledNetwork, outdir: str | Path, images: np.ndarray,
                   vectors: int) -> Path:
    """Write ``net`` (already checked on ``images``) with the first ``vectors`` of them as
    test vectors (every layer's golden outputs); ``source.checked_images`` records how many
    images the check compared."""
    net.source["checked_images"] = int(images.shape[0])
    vec = None
    if vectors:
        k = min(vectors, images.shape[0])
        gold = GoldenModel(net).run(images[:k])
        vec = TestVectors(images[:k].copy(), [o.astype(np.int64) for o in gold.layer_outputs],
                          gold.classes)
    return write_compiled_network(net, outdir, vec)


def layer_lines(net: CompiledNetwork) -> list[str]:
    """One line per layer: shape, input mode, activation, folding, engine cycles."""
    lines = []
    for layer in net.layers:
        f = layer.folding
        mode = "2-bit inputs, one pass" if layer.in_bits == 2 else "1-bit inputs"
        kind = layer.out if layer.out != "multithreshold" else f"{layer.levels}-level"
        lines.append(f"  {layer.name}: {layer.in_features}->{layer.out_features} {mode}, {kind} "
                     f"outputs, PE {f.pe} SIMD {f.simd}, "
                     f"{layer.weight_depth * layer.vectors_per_image} cycles per image")
    return lines
