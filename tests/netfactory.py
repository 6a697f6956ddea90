"""Small random compiled networks for hardware and co-simulation tests.

``random_network(...)`` builds a :class:`sw.compiled_net.CompiledNetwork` in memory;
``random_compiled_network(directory, ...)`` also writes it (with test vectors from the golden
model) through :func:`sw.network_io.write_compiled_network` and returns the directory.

Thresholds are drawn around the middle of each accumulator's range (spread ~ sqrt(fan-in)) so
that outputs are mixed 0/1 (or all four codes) rather than constant; ``neg`` is random, so both
comparison directions occur.  Gates are drawn the same way unless ``gates`` says
``"open"`` (``G = -MW - 1``: every LSB pass runs) or ``"closed"`` (``G = MW``: none runs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sw.compiled_net import (CompiledNetwork, ExitSpec, Folding, InputSpec, LayerSpec, OutputSpec,
                             TestVectors)
from sw.network_io import write_compiled_network
from sw.golden import GoldenModel

__all__ = ["random_network", "random_compiled_network", "random_images"]


def _as_folding(f) -> Folding:
    if isinstance(f, Folding):
        return f
    if isinstance(f, dict):
        return Folding(f["pe"], f["simd"], f.get("pad", False))
    pe, simd, *rest = f
    return Folding(pe, simd, bool(rest[0]) if rest else False)


def random_network(*, image=(1, 4, 4), levels: int = 1, thresholds=None, shape=(8, 4),
                   outs=None, folding=None, gates: str = "random", seed: int = 0,
                   name: str = "random_net", last: str = "scores", decoder: str = "argmax",
                   class_scale=None, class_bias=None, exits=()) -> CompiledNetwork:
    """A random compiled network.

    Parameters
    ----------
    image : (channels, height, width)
        Input geometry (8-bit pixels).
    levels : int
        Thermometer levels T (default thresholds) unless ``thresholds`` is given.
    shape : sequence of int
        ``out_features`` of each layer; the last entry is the number of classes.
    outs : sequence of "sign" / "frac2" / "mt2" / "mt3" / "mt4"
        Output kind of every layer but the last (default all "sign"); ``mtK`` is a
        multithreshold activation of ``K`` levels (random ``out_bias``/``out_scale``).
    last : "scores" or one of the kinds above
        The last layer's output (a thresholded last layer's codes are its scores).
    decoder, class_scale, class_bias
        The output's class decoder and per-class key map (:class:`OutputSpec`).
    folding : sequence of Folding, (pe, simd[, pad]) or dict
        One per layer (default PE = SIMD = 1: fully folded).
    gates : "random", "open" or "closed"
        How the gating thresholds of layers with 2-bit inputs are drawn.
    exits : sequence of (after, margin)
        Early exits: a random dense scores classifier (PE = SIMD = 1) reading layer
        ``after``'s output, taken when its margin is ``>= margin``.
    """
    rng = np.random.default_rng(seed)
    channels, height, width = image
    if thresholds is None:
        thresholds = [256 * (k + 1) // (levels + 1) for k in range(levels)]
    inp = InputSpec(channels, height, width, 8, tuple(thresholds))
    shape = list(shape)
    outs = list(outs) if outs is not None else ["sign"] * (len(shape) - 1)
    if len(outs) != len(shape) - 1:
        raise ValueError(f"outs must have {len(shape) - 1} entries, not {len(outs)}")
    kinds = outs + [last]
    folding = [_as_folding(f) for f in folding] if folding is not None else \
        [Folding(1, 1) for _ in shape]
    if gates not in ("random", "open", "closed"):
        raise ValueError(f"gates must be 'random', 'open' or 'closed', not {gates!r}")
    layers = []
    mw, in_bits, prev_frac2 = inp.bits, 1, False
    for i, (mh, out, fold) in enumerate(zip(shape, kinds, folding)):
        weights = rng.choice(np.array([-1, 1], dtype=np.int8), size=(mh, mw))
        acc_max = mw * (3 if in_bits == 2 else 1)
        spread = max(1.0, np.sqrt(acc_max))
        th = neg = g = None
        mt_levels = int(out[2:]) if out.startswith("mt") else 0
        count = {"sign": 1, "frac2": 3, "scores": 0}.get(out, mt_levels - 1)
        if count:
            th = np.sort(np.round(rng.normal(0, spread, size=(mh, count))).astype(np.int64),
                         axis=1)
            th = np.clip(th, -acc_max, acc_max + 1)
            # A few constant neurons exercise the range ends.
            if mh > 2:
                th[0, :] = -acc_max
                th[1, :] = acc_max + 1
            neg = rng.random(mh) < 0.5
        if in_bits == 2:
            if gates == "open":
                g = np.full(mh, -mw - 1, dtype=np.int64)
            elif gates == "closed":
                g = np.full(mh, mw, dtype=np.int64)
            else:
                g = np.clip(np.round(rng.normal(0, 1.5 * np.sqrt(mw), size=mh)),
                            -mw - 1, mw).astype(np.int64)
        if in_bits == 2 and not prev_frac2:
            g = None                    # ungated 2-bit inputs (after a multithreshold layer)
        mt = (("multithreshold", fold, weights, th, neg, g, None, 0, mt_levels,
               int(rng.integers(-3, 1)), int(rng.choice([1, 2, -1])))
              if mt_levels else (out, fold, weights, th, neg, g))
        layers.append(LayerSpec(i, f"fc{i}", mw, mh, in_bits, *mt))
        mw, in_bits = mh, (2 if count >= 2 else 1)
        prev_frac2 = out == "frac2"
    output = OutputSpec(shape[-1], 0.0, 0.01, 0.0, decoder, class_scale, class_bias)
    exit_specs = []
    for j, (after, margin) in enumerate(exits):
        src = layers[after]
        mw = src.out_size
        g = None
        if src.out == "frac2":
            g = np.clip(np.round(rng.normal(0, 1.5 * np.sqrt(mw), size=shape[-1])),
                        -mw - 1, mw).astype(np.int64)
        weights = rng.choice(np.array([-1, 1], dtype=np.int8), size=(shape[-1], mw))
        exit_specs.append(ExitSpec(after, LayerSpec(j, f"exit{j}", mw, shape[-1],
                                                    src.out_bits, "scores", Folding(1, 1),
                                                    weights, gates=g), margin))
    return CompiledNetwork(name, inp, layers, output, {"generator": "tests/netfactory.py",
                                                      "seed": seed}, exits=exit_specs)


def random_images(net: CompiledNetwork, count: int, seed: int = 0) -> np.ndarray:
    """``count`` random 8-bit images ``(count, P)`` uint8 for ``net``."""
    rng = np.random.default_rng(seed + 1_000_003)
    return rng.integers(0, 256, size=(count, net.input.pixels), dtype=np.uint8)


def random_compiled_network(directory, *, vectors: int = 4, **kwargs) -> Path:
    """Write :func:`random_network` (``kwargs``) to ``directory`` with golden test vectors.

    ``directory`` is the output directory itself (it must not exist or be a compiled network).
    Returns its :class:`~pathlib.Path`.
    """
    net = random_network(**kwargs)
    images = random_images(net, vectors, kwargs.get("seed", 0))
    result = GoldenModel(net).run(images)
    tv = TestVectors(images, [np.asarray(a, dtype=np.int64) for a in result.layer_outputs],
                     result.classes)
    return write_compiled_network(net, Path(directory), tv)
