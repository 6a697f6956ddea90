"""The compiled network: its data model and folding (docs/compiled-network.md).

The exporter (``models/export.py``), the golden model (``sw/golden.py``), the importers and
the hardware generator (``hw/``) all build and read :class:`CompiledNetwork` objects.
Companions: :mod:`sw.memory_layout` (how weights, thresholds and gates are packed into memory
words, the same everywhere, and which memories a layer has), :mod:`sw.network_json` (the
``network.json`` document and its dataflow graph) and :mod:`sw.network_io` (the atomic writer
and the checked loader of a compiled-network directory: ``network.json`` + ``.mem`` files).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UserError

__all__ = [
    "FORMAT",
    "VERSION",
    "READ_VERSIONS",
    "OUT_KINDS",
    "MAX_LAYER_WEIGHTS",
    "MAX_MAP_VALUES",
    "MAX_LAYERS",
    "MAX_PIXEL_BITS",
    "signed_bits",
    "Folding",
    "InputSpec",
    "ConvGeometry",
    "OutputSpec",
    "LayerSpec",
    "TestVectors",
    "CompiledNetwork",
    "ExitSpec",
    "EXITS_VERSION",
    "divisors",
    "validate_folding",
    "fold_config_from_json",
    "refold",
    "MEMORY_KINDS",
]

#: ``format`` field of network.json.
FORMAT = "fracbnn-compiled-network"
#: ``version`` field of network.json written by this code for a network without early
#: exits (version 1 is still read).
VERSION = 2
#: ``version`` written for a network with early exits (``exits``): a reader that knows only
#: version 2 would silently ignore them, so such files say 3.
EXITS_VERSION = 3
#: Versions this reader understands.
READ_VERSIONS = (1, 2, 3)
#: Layer output kinds; ``scores`` only on the last layer.
OUT_KINDS = ("sign", "frac2", "multithreshold", "scores")
#: The fixed activations as multi-threshold ones: ``(levels, out_bias, out_scale)``; the
#: value of code ``q`` is ``out_bias + out_scale*q`` (frac2: in thirds, ``u = 2q - 3``).
ACTIVATION_PRESETS = {"sign": (2, -1, 2), "frac2": (4, -3, 2)}
#: Output-level counts a multi-threshold activation may have (1 or 2 bits per value).
MULTITHRESHOLD_LEVELS = (2, 3, 4)
#: A layer's memories, in this order (also the writable-parameter index ``3*layer + kind``).
MEMORY_KINDS = ("weights", "thresholds", "gates")
#: Class decoders of the output (docs/compiled-network.md, "Output").
DECODERS = ("argmax", "highest_set_bit")
_NETWORK_JSON = "network.json"
_TEST_VECTORS_JSON = "test_vectors.json"

# Size bounds (docs/compiled-network.md, "Size bounds"), checked before anything is allocated.
# They are far beyond any FPGA this flow targets (2^28 weight bits = 32 MiB of weight memory
# in one layer) and keep every array the tools build from a file within a few GiB.
#: Most weights one layer may have, padding included (``MHp * MWp``).
MAX_LAYER_WEIGHTS = 1 << 28
#: Most values (bits or codes per image) one feature map may have: the thermometer output,
#: a convolution's padded input and its output before the max-pool.
MAX_MAP_VALUES = 1 << 28
#: Most layers a network may have.
MAX_LAYERS = 1024
#: Widest input pixel (the accelerator takes 8-bit pixels).
MAX_PIXEL_BITS = 16
#: Most thermometer planes per pixel (an 8-bit input quantizer needs up to 255).
MAX_THERMOMETER_LEVELS = 1024


def signed_bits(lo: int, hi: int) -> int:
    """Smallest two's-complement width holding every integer in ``[lo, hi]``."""
    if lo > hi:
        raise ValueError(f"empty range [{lo}, {hi}]")
    bits = 1
    while not (-(1 << (bits - 1)) <= lo and hi <= (1 << (bits - 1)) - 1):
        bits += 1
    return bits


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


# --------------------------------------------------------------------------- data model


@dataclass(frozen=True)
class Folding:
    """Parallelism of one layer: ``pe`` neurons x ``simd`` input bits per cycle.

    ``pad`` allows padding where the folding does not divide the layer: the first layer's
    inputs (``MWp = ceil(MW/SIMD)*SIMD``) and the last layer's outputs
    (``MHp = ceil(MH/PE)*PE``) only.

    ``block_lanes`` (optional) places the weight memory by hand: the weights of PE lanes
    ``0 .. block_lanes-1`` in block RAM, the others in distributed (LUT) ROM; ``None`` lets
    the generator choose by size (docs/hardware.md, "Memories").  It changes no memory file
    and no cycle, only where the bits live.
    """

    pe: int
    simd: int
    pad: bool = False
    block_lanes: int | None = None

    def __post_init__(self) -> None:
        for name in ("pe", "simd"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise UserError(f"folding {name} must be a positive int, not {value!r}")
            object.__setattr__(self, name, int(value))
        if not isinstance(self.pad, (bool, np.bool_)):
            raise UserError(f"folding pad must be true or false, not {self.pad!r}")
        object.__setattr__(self, "pad", bool(self.pad))
        if self.block_lanes is not None:
            if not _is_int(self.block_lanes) or not 0 <= self.block_lanes <= self.pe:
                raise UserError(f"folding block_lanes must be an int in 0..pe={self.pe}, "
                                f"not {self.block_lanes!r}")
            object.__setattr__(self, "block_lanes", int(self.block_lanes))

    def to_json(self) -> dict:
        """The folding-file form ``{"pe": .., "simd": .., "pad": .. [, "block_lanes": ..]}``."""
        return {"pe": self.pe, "simd": self.simd, "pad": self.pad,
                **({} if self.block_lanes is None else {"block_lanes": self.block_lanes})}


@dataclass(frozen=True)
class InputSpec:
    """Image geometry and thermometer encoding of the network input.

    Pixels are in HWC order (channel fastest; for one channel the same as row-major):
    pixel ``p = (y*W + x)*C + c`` gives bits ``pixel_p >= thresholds[k]``, input bit
    ``p*levels + k`` of layer 0, i.e. an ``H x W x (C*T)`` binary feature map whose
    channel ``c*T + k`` is level ``k`` of colour channel ``c``.
    """

    channels: int
    height: int
    width: int
    pixel_bits: int
    thresholds: tuple[int, ...]

    def __post_init__(self) -> None:
        for name in ("channels", "height", "width", "pixel_bits"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise UserError(f"input {name} must be a positive int, not {value!r}")
        if self.pixel_bits > MAX_PIXEL_BITS:
            raise UserError(f"input pixel_bits is {self.pixel_bits}, more than the format allows "
                            f"({MAX_PIXEL_BITS}); export with 8-bit pixels")
        if len(self.thresholds) > MAX_THERMOMETER_LEVELS:
            raise UserError(f"{len(self.thresholds)} thermometer thresholds, more than the "
                            f"format allows ({MAX_THERMOMETER_LEVELS})")
        if self.channels * self.height * self.width * len(self.thresholds) > MAX_MAP_VALUES:
            raise UserError(f"a {self.channels}x{self.height}x{self.width} input with "
                            f"{len(self.thresholds)} thermometer levels has more than "
                            f"{MAX_MAP_VALUES} bits, more than the format allows")
        th = tuple(int(t) for t in self.thresholds) if all(
            _is_int(t) for t in self.thresholds) else None
        if not th:
            raise UserError(f"thermometer thresholds must be a non-empty list of ints, "
                            f"not {list(self.thresholds)!r}")
        top = 1 << self.pixel_bits
        if any(not 0 <= t <= top for t in th) or any(a > b for a, b in zip(th, th[1:])):
            raise UserError(f"thermometer thresholds must be non-decreasing in "
                            f"[0, {top}], not {list(th)!r}")
        object.__setattr__(self, "thresholds", th)

    @property
    def levels(self) -> int:
        """Thermometer levels ``T`` (bits per pixel)."""
        return len(self.thresholds)

    @property
    def pixels(self) -> int:
        """Pixels per image ``P = C*H*W``."""
        return self.channels * self.height * self.width

    @property
    def bits(self) -> int:
        """Input bits of layer 0, ``P*T``."""
        return self.pixels * self.levels

    @property
    def out_map(self) -> tuple[int, int, int]:
        """The thermometer output as a feature map ``(H, W, C*T)``."""
        return (self.height, self.width, self.channels * self.levels)

    def to_json(self) -> dict:
        return {"channels": self.channels, "height": self.height, "width": self.width,
                "pixel_bits": self.pixel_bits,
                "thermometer": {"levels": self.levels, "thresholds": list(self.thresholds)}}


@dataclass(frozen=True)
class OutputSpec:
    """How the last layer's outputs become a class (and, for scores, float logits).

    ``scores`` (the last layer's integer outputs: accumulators, or activation codes of a
    thresholded last layer) are decoded by ``decoder``:

    * ``"argmax"``: the class is the smallest index among the maximal keys
      ``key_c = class_scale[c]*score_c + class_bias[c]`` (both default to the identity map:
      scale 1, bias 0, i.e. the plain argmax of the scores).
    * ``"highest_set_bit"`` (a thresholded 1-bit last layer, BNN-PYNQ's rule): the highest
      index whose bit is set, else 0.  It is the argmax above with ``class_scale[c] = c + 1``
      and bias 0, which is how the hardware computes it.

    ``logit_c = ((score_c - mean) * scale) + beta`` (float32 in PyTorch, ``scale > 0``) is
    the scalar float map of a network exported from PyTorch; the class never depends on it.
    """

    classes: int
    mean: float = 0.0
    scale: float = 1.0
    beta: float = 0.0
    decoder: str = "argmax"
    class_scale: tuple | None = None
    class_bias: tuple | None = None

    def __post_init__(self) -> None:
        if not _is_int(self.classes) or self.classes < 1:
            raise UserError(f"output classes must be a positive int, not {self.classes!r}")
        for name in ("mean", "scale", "beta"):
            value = getattr(self, name)
            if not isinstance(value, (int, float, np.floating)) or isinstance(value, bool) \
                    or not math.isfinite(value):
                raise UserError(f"output {name} must be a finite number, not {value!r}")
            object.__setattr__(self, name, float(value))
        if not self.scale > 0:
            raise UserError(f"output scale must be > 0, not {self.scale!r}")
        if self.decoder not in DECODERS:
            raise UserError(f"output decoder must be one of {list(DECODERS)}, "
                            f"not {self.decoder!r}")
        for name in ("class_scale", "class_bias"):
            value = getattr(self, name)
            if value is None:
                continue
            if self.decoder != "argmax":
                raise UserError(f"output {name} applies to the 'argmax' decoder only")
            if not isinstance(value, (list, tuple)) or len(value) != self.classes \
                    or not all(_is_int(v) and abs(int(v)) < (1 << 16) for v in value):
                raise UserError(f"output {name} must be {self.classes} integers below 2**16 in "
                                f"magnitude, not {value!r}")
            object.__setattr__(self, name, tuple(int(v) for v in value))
        if self.class_scale is not None and 0 in self.class_scale:
            raise UserError("output class_scale must not contain 0 (a class would have a "
                            "constant key)")

    @property
    def class_keys(self) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
        """``(scale, bias)`` per class of the argmax keys, or ``None`` for the identity map."""
        if self.decoder == "highest_set_bit":
            return tuple(range(1, self.classes + 1)), (0,) * self.classes
        if self.class_scale is None and self.class_bias is None:
            return None
        return (self.class_scale or (1,) * self.classes,
                self.class_bias or (0,) * self.classes)

    def decode(self, scores: np.ndarray) -> np.ndarray:
        """Classes ``(N,)`` int64 of integer scores ``(N, classes)`` (the rule above)."""
        scores = np.asarray(scores, dtype=np.int64)
        keys = self.class_keys
        if keys is not None:
            scores = scores * np.asarray(keys[0], np.int64) + np.asarray(keys[1], np.int64)
        return np.argmax(scores, axis=1).astype(np.int64) if scores.shape[0] else \
            np.zeros(0, np.int64)

    def to_json(self) -> dict:
        doc = {"classes": self.classes, "mean": self.mean, "scale": self.scale, "beta": self.beta}
        if self.decoder != "argmax":
            doc["decoder"] = self.decoder
        for name in ("class_scale", "class_bias"):
            if getattr(self, name) is not None:
                doc[name] = list(getattr(self, name))
        return doc


@dataclass(frozen=True)
class ConvGeometry:
    """Spatial geometry of a convolution layer (docs/compiled-network.md, "Convolution").

    The input feature map is ``in_height x in_width x in_channels`` in HWC order (channel
    fastest).  It is padded by ``pad`` pixels of all-zero bits (value -1 in every plane) on
    every side, then every ``kernel x kernel`` window at stride ``stride`` is one input
    vector of ``kernel*kernel*in_channels`` values in (ky, kx, c) order (c fastest).
    """

    in_height: int
    in_width: int
    in_channels: int
    kernel: int
    stride: int = 1
    pad: int = 0

    def __post_init__(self) -> None:
        for name in ("in_height", "in_width", "in_channels", "kernel", "stride"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise UserError(f"conv {name} must be a positive int, not {value!r}")
            object.__setattr__(self, name, int(value))
        if not _is_int(self.pad) or self.pad < 0:
            raise UserError(f"conv pad must be a non-negative int, not {self.pad!r}")
        object.__setattr__(self, "pad", int(self.pad))
        if self.kernel > min(self.padded_height, self.padded_width):
            raise UserError(f"kernel {self.kernel} is larger than the {self.padded_height}x"
                            f"{self.padded_width} (padded) input; use a smaller kernel or "
                            f"more padding")
        if self.pad >= self.kernel:
            raise UserError(f"conv pad {self.pad} must be smaller than the kernel {self.kernel}")
        if self.padded_height * self.padded_width * self.in_channels > MAX_MAP_VALUES:
            raise UserError(f"a {self.padded_height}x{self.padded_width}x{self.in_channels} "
                            f"(padded) convolution input has more than {MAX_MAP_VALUES} values, "
                            f"more than the format allows")

    @property
    def padded_height(self) -> int:
        return self.in_height + 2 * self.pad

    @property
    def padded_width(self) -> int:
        return self.in_width + 2 * self.pad

    @property
    def out_height(self) -> int:
        return (self.padded_height - self.kernel) // self.stride + 1

    @property
    def out_width(self) -> int:
        return (self.padded_width - self.kernel) // self.stride + 1

    @property
    def window(self) -> int:
        """Values per input vector, ``kernel*kernel*in_channels`` (the layer's ``MW``)."""
        return self.kernel * self.kernel * self.in_channels

    @property
    def positions(self) -> int:
        """Output positions per image, ``out_height*out_width`` (input vectors per image)."""
        return self.out_height * self.out_width

    def to_json(self) -> dict:
        return {"in_height": self.in_height, "in_width": self.in_width,
                "in_channels": self.in_channels, "kernel": self.kernel, "stride": self.stride,
                "pad": self.pad, "out_height": self.out_height, "out_width": self.out_width}


@dataclass(eq=False)
class LayerSpec:
    """One binary layer (dense, or convolution as one dense product per window) with its
    unfolded integer parameters.

    Attributes
    ----------
    index, name
        Position in the network and a display name (``fc{index}``).
    in_features, out_features
        ``MW`` and ``MH``.
    in_bits
        1 (inputs in {-1,+1}) or 2 (planes m, l: the LSB plane gated after a ``frac2``
        layer, i.e. when ``gates`` is given, else both planes in one pass).
    out
        ``"sign"``, ``"frac2"``, ``"multithreshold"`` or ``"scores"``.
    folding
        :class:`Folding` (PE, SIMD, pad).
    weights
        ``int8`` (MH, MW) in {-1, +1}.
    thresholds
        ``int64`` (MH, count) with ``count = levels - 1`` (sign 1, frac2 3), each row
        non-decreasing, values in ``[acc_min, acc_max + 1]``; ``None`` for scores.
    neg
        ``bool`` (MH,): compare ``-acc`` instead of ``acc``; ``None`` for scores.
    gates
        ``int64`` (MH,) gating thresholds ``G`` in ``[-MW - 1, MW]`` for in_bits 2, else ``None``.
    conv
        :class:`ConvGeometry` for a convolution layer (``MW`` = its ``window``; weight input
        ``i`` = window position ``(ky*K + kx)*C + c``), ``None`` for a dense layer.
    pool
        ``k`` >= 2: a ``k x k`` stride-``k`` max-pool on this convolution layer's activations
        (floor mode); 0: none.
    levels, out_bias, out_scale
        The activation as a multi-threshold one (FINN's MultiThreshold): ``levels`` output
        codes ``q = 0..levels-1`` (``q`` = the number of thresholds reached), whose value is
        ``out_bias + out_scale*q``.  Fixed for sign (2, -1, 2) and frac2 (4, -3, 2, in
        thirds; 0 = the preset); ``multithreshold``: 2..4 levels, any integers
        (``out_scale != 0``); all 0 for scores.
    """

    index: int
    name: str
    in_features: int
    out_features: int
    in_bits: int
    out: str
    folding: Folding
    weights: np.ndarray
    thresholds: np.ndarray | None = None
    neg: np.ndarray | None = None
    gates: np.ndarray | None = None
    conv: ConvGeometry | None = None
    pool: int = 0
    levels: int = 0
    out_bias: int = 0
    out_scale: int = 0

    def __post_init__(self) -> None:
        where = f"layer {self.index}"
        if self.out in ACTIVATION_PRESETS:
            preset = ACTIVATION_PRESETS[self.out]
            if (self.levels, self.out_bias, self.out_scale) not in ((0, 0, 0), preset):
                raise UserError(f"{where}: a {self.out} activation has levels/out_bias/out_scale "
                                f"{preset}, not {(self.levels, self.out_bias, self.out_scale)}")
            self.levels, self.out_bias, self.out_scale = preset
        elif self.out == "multithreshold":
            if self.levels not in MULTITHRESHOLD_LEVELS:
                raise UserError(f"{where}: a multithreshold activation has levels in "
                                f"{list(MULTITHRESHOLD_LEVELS)}, not {self.levels!r}")
            if not (_is_int(self.out_bias) and _is_int(self.out_scale)) or self.out_scale == 0:
                raise UserError(f"{where}: out_bias and out_scale must be integers with "
                                f"out_scale != 0, not {self.out_bias!r}/{self.out_scale!r}")
            self.out_bias, self.out_scale = int(self.out_bias), int(self.out_scale)
        elif (self.levels, self.out_bias, self.out_scale) != (0, 0, 0) and self.out in OUT_KINDS:
            raise UserError(f"{where}: a scores layer has no levels/out_bias/out_scale")
        if self.conv is not None:
            if not isinstance(self.conv, ConvGeometry):
                raise UserError(f"{where}: conv must be a ConvGeometry, not {self.conv!r}")
            if self.in_features != self.conv.window:
                raise UserError(f"{where}: a {self.conv.kernel}x{self.conv.kernel} convolution "
                                f"over {self.conv.in_channels} channels has "
                                f"{self.conv.window} inputs, not {self.in_features}")
        if self.conv is not None and _is_int(self.out_features) and \
                self.conv.positions * self.out_features > MAX_MAP_VALUES:
            raise UserError(f"{where}: a {self.conv.out_height}x{self.conv.out_width}x"
                            f"{self.out_features} output map has more than {MAX_MAP_VALUES} "
                            f"values, more than the format allows")
        if not _is_int(self.pool) or self.pool < 0 or self.pool == 1:
            raise UserError(f"{where}: pool must be 0 (none) or a window size >= 2, "
                            f"not {self.pool!r}")
        self.pool = int(self.pool)
        if self.pool:
            if self.conv is None or self.out == "scores":
                raise UserError(f"{where}: max-pool follows convolution layers with "
                                f"thresholded outputs only")
            if self.pool > min(self.conv.out_height, self.conv.out_width):
                raise UserError(f"{where}: max-pool {self.pool}x{self.pool} is larger than the "
                                f"{self.conv.out_height}x{self.conv.out_width} feature map")
        if not _is_int(self.in_features) or self.in_features < 1 \
                or not _is_int(self.out_features) or self.out_features < 1:
            raise UserError(f"{where}: in/out features must be positive ints, not "
                            f"{self.in_features!r}/{self.out_features!r}")
        if self.in_bits not in (1, 2):
            raise UserError(f"{where}: in_bits must be 1 or 2, not {self.in_bits!r}")
        if self.out not in OUT_KINDS:
            raise UserError(f"{where}: out must be one of {list(OUT_KINDS)}, not {self.out!r}")
        if not isinstance(self.folding, Folding):
            raise UserError(f"{where}: folding must be a Folding, not {self.folding!r}")
        mh, mw = self.out_features, self.in_features
        w = np.asarray(self.weights)
        if w.shape != (mh, mw) or not np.all((w == 1) | (w == -1)):
            raise UserError(f"{where}: weights must be a ({mh}, {mw}) array of +-1, "
                            f"got shape {w.shape}")
        self.weights = w.astype(np.int8)
        count = self.threshold_count
        if count:
            if self.thresholds is None or self.neg is None:
                raise UserError(f"{where}: {self.out} layer needs thresholds and neg")
            th = np.asarray(self.thresholds)
            if th.shape != (mh, count) or not np.issubdtype(th.dtype, np.integer):
                raise UserError(f"{where}: thresholds must be ({mh}, {count}) ints, got "
                                f"{th.shape} {th.dtype}")
            th = th.astype(np.int64)
            lo, hi = self.acc_min, self.acc_max + 1
            if th.size and (th.min() < lo or th.max() > hi):
                raise UserError(f"{where}: thresholds must lie in [{lo}, {hi}], found "
                                f"[{th.min()}, {th.max()}]")
            bad = np.nonzero(np.any(np.diff(th, axis=1) < 0, axis=1))[0]
            if bad.size:
                raise UserError(f"{where}: thresholds of neuron {bad[0]} are not ordered "
                                f"T0 <= T1 <= ...: {th[bad[0]].tolist()}")
            neg = np.asarray(self.neg)
            if neg.shape != (mh,) or not (neg.dtype == np.bool_ or np.all((neg == 0) | (neg == 1))):
                raise UserError(f"{where}: neg must be ({mh},) booleans, got {neg.shape}")
            self.thresholds, self.neg = th, neg.astype(bool)
        elif self.thresholds is not None or self.neg is not None:
            raise UserError(f"{where}: a scores layer has no thresholds")
        if self.in_bits == 2 and self.gates is not None:
            g = np.asarray(self.gates)
            if g.shape != (mh,) or not np.issubdtype(g.dtype, np.integer):
                raise UserError(f"{where}: gates must be ({mh},) ints, got {g.shape} {g.dtype}")
            g = g.astype(np.int64)
            if g.min() < -mw - 1 or g.max() > mw:
                raise UserError(f"{where}: gates must lie in [{-mw - 1}, {mw}], found "
                                f"[{g.min()}, {g.max()}]")
            self.gates = g
        elif self.gates is not None:
            raise UserError(f"{where}: only layers with 2-bit inputs have gates")

    # Derived facts (docs/compiled-network.md).
    @property
    def gated(self) -> bool:
        """2-bit inputs with FracBNN's gated LSB plane (the layer has gates)."""
        return self.in_bits == 2 and self.gates is not None

    @property
    def out_bits(self) -> int:
        """Bits per output value: 1 (two levels), 2 (three or four), 0 (scores)."""
        return 0 if self.out == "scores" else 1 if self.levels == 2 else 2

    @property
    def kind(self) -> str:
        """``"conv"`` or ``"dense"``."""
        return "dense" if self.conv is None else "conv"

    @property
    def vectors_per_image(self) -> int:
        """Input vectors per image: output positions (conv) or 1 (dense)."""
        return 1 if self.conv is None else self.conv.positions

    @property
    def out_map(self) -> tuple[int, int, int]:
        """Output tensor ``(height, width, channels)`` after the optional max-pool
        (``(1, 1, MH)`` for a dense layer)."""
        if self.conv is None:
            return (1, 1, self.out_features)
        h, w = self.conv.out_height, self.conv.out_width
        if self.pool:
            h, w = h // self.pool, w // self.pool
        return (h, w, self.out_features)

    @property
    def out_size(self) -> int:
        """Output values per image (``H*W*C`` of :attr:`out_map`, HWC order)."""
        h, w, c = self.out_map
        return h * w * c

    @property
    def fold_shape(self) -> tuple:
        """What a folding must fit: ``(MW, MH)``, or ``(MW, MH, C)`` for a convolution
        (SIMD must then divide its input channels ``C``)."""
        if self.conv is None:
            return (self.in_features, self.out_features)
        return (self.in_features, self.out_features, self.conv.in_channels)

    @property
    def acc_min(self) -> int:
        """Smallest accumulator value: ``-MW`` (1-bit inputs) or ``-3*MW`` (2-bit)."""
        return -self.acc_max

    @property
    def acc_max(self) -> int:
        """Largest accumulator value: ``MW`` (1-bit inputs) or ``3*MW`` (2-bit)."""
        return self.in_features * (3 if self.in_bits == 2 else 1)

    @property
    def mw_padded(self) -> int:
        """``MWp = ceil(MW / SIMD) * SIMD``."""
        return -(-self.in_features // self.folding.simd) * self.folding.simd

    @property
    def mh_padded(self) -> int:
        """``MHp = ceil(MH / PE) * PE``."""
        return -(-self.out_features // self.folding.pe) * self.folding.pe

    @property
    def synapse_folds(self) -> int:
        """``SF = MWp / SIMD``."""
        return self.mw_padded // self.folding.simd

    @property
    def neuron_folds(self) -> int:
        """``NF = MHp / PE``."""
        return self.mh_padded // self.folding.pe

    @property
    def threshold_count(self) -> int:
        """Thresholds per neuron: ``levels - 1`` (sign 1, frac2 3), 0 (scores)."""
        return max(self.levels - 1, 0)

    @property
    def threshold_bits(self) -> int:
        """``TW``: smallest two's-complement width holding ``[acc_min, acc_max + 1]``."""
        return signed_bits(self.acc_min, self.acc_max + 1)

    @property
    def gate_bits(self) -> int:
        """``GW``: smallest two's-complement width holding ``[-MW - 1, MW]``."""
        return signed_bits(-self.in_features - 1, self.in_features)

    @property
    def weight_depth(self) -> int:
        return self.neuron_folds * self.synapse_folds

    @property
    def weight_width(self) -> int:
        return self.folding.pe * self.folding.simd

    @property
    def threshold_lane_bits(self) -> int:
        """``LW = count*TW + 1``."""
        return self.threshold_count * self.threshold_bits + 1

    @property
    def threshold_width(self) -> int:
        return self.folding.pe * self.threshold_lane_bits

    @property
    def gate_width(self) -> int:
        return self.folding.pe * self.gate_bits

    def padded_weight_bits(self) -> np.ndarray:
        """Weight bits ``(MHp, MWp)`` uint8 with padding bits (rows and columns) set to 1."""
        bits = np.ones((self.mh_padded, self.mw_padded), dtype=np.uint8)
        bits[:self.out_features, :self.in_features] = (self.weights > 0)
        return bits

    def padded_thresholds(self) -> tuple[np.ndarray, np.ndarray]:
        """Thresholds ``(MHp, count)`` and neg ``(MHp,)``; padding neurons ``acc_max + 1``, 0."""
        th = np.full((self.mh_padded, self.threshold_count), self.acc_max + 1, dtype=np.int64)
        neg = np.zeros(self.mh_padded, dtype=bool)
        th[:self.out_features] = self.thresholds
        neg[:self.out_features] = self.neg
        return th, neg

    def padded_gates(self) -> np.ndarray:
        """Gates ``(MHp,)``; padding neurons hold ``MW``."""
        g = np.full(self.mh_padded, self.in_features, dtype=np.int64)
        g[:self.out_features] = self.gates
        return g


@dataclass(eq=False)
class TestVectors:
    """Reference images with every layer's expected output (``test_vectors.json``).

    ``layers[i]`` is ``(N, MH_i)`` int64: bits 0/1 (sign), codes q 0..3 (frac2) or
    integer scores (last layer); ``classes`` the predicted classes.
    """

    __test__ = False  # not a pytest class

    images: np.ndarray
    layers: list[np.ndarray]
    classes: np.ndarray

    def to_json(self) -> dict:
        return {"images": np.asarray(self.images).tolist(),
                "layers": [np.asarray(a).tolist() for a in self.layers],
                "classes": np.asarray(self.classes).tolist()}


@dataclass(frozen=True, eq=False)
class ExitSpec:
    """An early exit (docs/compiled-network.md, "Early exits").

    ``layer`` is a dense ``scores`` classifier reading the output of ``layers[after]`` (its
    own index is the exit's number ``j``, its name ``exit{j}``); an image takes the exit
    when the margin ``best - second best`` of the exit's scores is ``>= margin``.
    """

    after: int
    layer: LayerSpec
    margin: int

    def __post_init__(self) -> None:
        if not _is_int(self.after) or self.after < 0:
            raise UserError(f"exit after must be a layer index >= 0, not {self.after!r}")
        if not _is_int(self.margin) or self.margin < 0:
            raise UserError(f"exit margin must be an integer >= 0, not {self.margin!r}")
        if not isinstance(self.layer, LayerSpec):
            raise UserError(f"exit layer must be a LayerSpec, not {self.layer!r}")
        object.__setattr__(self, "after", int(self.after))
        object.__setattr__(self, "margin", int(self.margin))


@dataclass(eq=False)
class CompiledNetwork:
    """A whole compiled network: input encoding, layers, output map, provenance, and the
    optional early exits (``exits``, ordered by the layer they follow)."""

    name: str
    input: InputSpec
    layers: list[LayerSpec]
    output: OutputSpec
    source: dict = field(default_factory=dict)
    test_vectors: str | None = None
    exits: list[ExitSpec] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise UserError(f"network name must be a non-empty string, not {self.name!r}")
        if not self.layers:
            raise UserError("a network needs at least one layer")
        prev_out, prev_mh, prev_map = None, self.input.bits, self.input.out_map
        prev_bits = 1
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if layer.index != i:
                raise UserError(f"layer {i} has index {layer.index}")
            if layer.conv is not None:
                c = layer.conv
                got = (c.in_height, c.in_width, c.in_channels)
                if got != prev_map:
                    raise UserError(f"layer {i} convolves a {'x'.join(map(str, got))} input but "
                                    f"its input is {'x'.join(map(str, prev_map))} (HxWxC)")
            elif layer.in_features != prev_mh:
                raise UserError(f"layer {i} has {layer.in_features} inputs but its input has "
                                f"{prev_mh} values")
            want_bits = prev_bits or 1
            if layer.in_bits != want_bits:
                raise UserError(f"layer {i} must have in_bits {want_bits} after "
                                f"{prev_out or 'the thermometer input'}, not {layer.in_bits}")
            if layer.gated != (prev_out == "frac2"):
                raise UserError(f"layer {i}: a layer has gates exactly when it follows a frac2 "
                                f"layer (this one follows {prev_out or 'the thermometer'})")
            if layer.out == "scores" and i != last:
                raise UserError(f"layer {i}: only the last layer has out 'scores'")
            if i == last and layer.conv is not None:
                raise UserError(f"layer {i}: the last layer must be dense (it produces the "
                                f"class scores); add a dense layer after the convolutions")
            prev_out, prev_mh, prev_map = layer.out, layer.out_size, layer.out_map
            prev_bits = layer.out_bits
        if self.output.classes != prev_mh:
            raise UserError(f"output classes {self.output.classes} != last layer outputs {prev_mh}")
        if self.output.decoder == "highest_set_bit" and self.layers[-1].out_bits != 1:
            raise UserError("output decoder 'highest_set_bit' needs a last layer with 1-bit "
                            "(two-level) outputs")
        validate_folding([l.folding for l in self.layers], self.fold_shapes)
        self.exits = list(self.exits or [])
        for j, ex in enumerate(self.exits):
            _check_exit(j, ex, self)

    @property
    def classes(self) -> int:
        return self.output.classes

    @property
    def fold_shapes(self) -> list[tuple]:
        """Per layer what its folding must fit (:attr:`LayerSpec.fold_shape`)."""
        return [layer.fold_shape for layer in self.layers]

    @property
    def has_conv(self) -> bool:
        return any(layer.conv is not None for layer in self.layers)


def _check_exit(j: int, ex: ExitSpec, net: CompiledNetwork) -> None:
    """Check exit ``j`` of ``net`` against the layer it follows (one-line UserError)."""
    where = f"exit {j}"
    if not isinstance(ex, ExitSpec):
        raise UserError(f"{where} must be an ExitSpec, not {ex!r}")
    last = len(net.layers) - 1
    if ex.after >= last:
        raise UserError(f"{where}: after {ex.after} must name a layer before the last one "
                        f"(0..{last - 1}); an exit after the last layer is the final output")
    if j and ex.after <= net.exits[j - 1].after:
        raise UserError(f"{where}: exits must follow different layers in increasing order "
                        f"(after {net.exits[j - 1].after}, then {ex.after})")
    src, lay = net.layers[ex.after], ex.layer
    if lay.index != j:
        raise UserError(f"{where}: its layer has index {lay.index}, expected {j}")
    if lay.out != "scores" or lay.conv is not None:
        raise UserError(f"{where}: the exit classifier must be a dense 'scores' layer, "
                        f"not a {lay.kind} {lay.out!r} layer")
    if lay.in_features != src.out_size:
        raise UserError(f"{where}: the exit classifier has {lay.in_features} inputs but "
                        f"layer {ex.after} has {src.out_size} outputs")
    if lay.in_bits != src.out_bits or lay.gated != (src.out == "frac2"):
        raise UserError(f"{where}: the exit classifier must have in_bits {src.out_bits}"
                        f"{' and gates' if src.out == 'frac2' else ' and no gates'} after "
                        f"layer {ex.after} ({src.out})")
    if lay.out_features != net.classes or net.classes < 2:
        raise UserError(f"{where}: the exit classifier has {lay.out_features} outputs; it "
                        f"needs one per class ({net.classes}, at least 2)")
    _check_layer_folding(j, j, lay.folding, lay.fold_shape)


# --------------------------------------------------------------------------- folding


def divisors(n: int) -> list[int]:
    """All positive divisors of ``n`` in increasing order."""
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def validate_folding(folding: list[Folding], shapes: list[tuple]) -> None:
    """Check that each folding fits its layer; raise UserError naming the fix.

    ``shapes[i]`` is ``(MW, MH)`` for a dense layer or ``(MW, MH, C)`` for a convolution
    over ``C`` input channels (:attr:`LayerSpec.fold_shape`).  PE must divide MH and SIMD
    must divide MW (a convolution: its input channels ``C``, since the window generator
    emits SIMD channels of one pixel per beat), except with ``pad`` on a dense first
    layer's inputs and the last layer's outputs.  ``pad`` anywhere else is refused.
    """
    if len(folding) != len(shapes):
        raise UserError(f"folding has {len(folding)} layer entries, the network has {len(shapes)}")
    last = len(shapes) - 1
    for i, (f, shape) in enumerate(zip(folding, shapes)):
        _check_layer_folding(i, last, f, shape)


def _check_layer_folding(i: int, last: int, f: Folding, shape: tuple) -> None:
    """:func:`validate_folding` for layer ``i`` of ``last + 1``, plus the size bound
    (``MHp * MWp <= MAX_LAYER_WEIGHTS``)."""
    mw, mh = shape[:2]
    if len(shape) == 3:
        channels = shape[2]
        if f.pad and i == 0:
            raise UserError(f'folding of layer {i}: "pad" is not allowed on a convolution; '
                            f'remove it and choose SIMD from {divisors(channels)}')
        if channels % f.simd:
            raise UserError(f"folding of layer {i}: SIMD {f.simd} does not divide the "
                            f"convolution's {channels} input channels; use one of "
                            f"{divisors(channels)}")
    if f.pad and i not in (0, last):
        raise UserError(f'folding of layer {i}: "pad" is allowed only on the first layer '
                        f'(inputs) and the last layer (outputs); remove it')
    if mw % f.simd and not (f.pad and i == 0):
        hint = ' or "pad": true' if i == 0 else ""
        raise UserError(f"folding of layer {i}: SIMD {f.simd} does not divide MW {mw}; "
                        f"use one of {divisors(mw)}{hint}")
    if mh % f.pe and not (f.pad and i == last):
        hint = ' or "pad": true' if i == last else ""
        raise UserError(f"folding of layer {i}: PE {f.pe} does not divide MH {mh}; "
                        f"use one of {divisors(mh)}{hint}")
    if mw * mh > MAX_LAYER_WEIGHTS:
        raise UserError(f"layer {i} has {mh}x{mw} weights, more than the format allows "
                        f"({MAX_LAYER_WEIGHTS}); use a smaller layer")
    mwp, mhp = -(-mw // f.simd) * f.simd, -(-mh // f.pe) * f.pe
    if mwp * mhp > MAX_LAYER_WEIGHTS:
        raise UserError(f"folding of layer {i}: PE {f.pe} / SIMD {f.simd} pad the {mh}x{mw} "
                        f"weights to {mhp}x{mwp}, more than the format allows "
                        f"({MAX_LAYER_WEIGHTS}); use a smaller PE or SIMD")


def _parse_json(text: str, path: Path, what: str, fix: str) -> Any:
    """``json.loads`` with one-line errors, also for documents nested too deeply to parse."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); {fix}") from None
    except RecursionError:
        raise UserError(f"{path} is nested too deeply to be a {what}; {fix}") from None


def fold_config_from_json(source: str | Path | dict, n_layers: int,
                          shapes: list[tuple] | None = None) -> list[Folding]:
    """Parse a folding file ``{"layers": [{"pe": .., "simd": .., "pad": ..}, ...]}``.

    Parameters
    ----------
    source
        Path of the JSON file or the already-parsed dict.
    n_layers
        Number of layers of the network; the file must have exactly one entry per layer.
    shapes
        Optional :attr:`CompiledNetwork.fold_shapes`; when given, :func:`validate_folding`
        is applied.
    """
    where = "folding"
    if not isinstance(source, dict):
        path = Path(source)
        where = f"folding file {path}"
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise UserError(f"{where} not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"{where} is not valid JSON: {exc}") from None
        try:
            source = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"{where} is not valid JSON: {exc}") from None
        except RecursionError:
            raise UserError(f'{where} is nested too deeply to be a folding file; write '
                            f'{{"layers": [{{"pe": P, "simd": S}}, ...]}}') from None
    entries = source.get("layers") if isinstance(source, dict) else None
    if not isinstance(entries, list):
        raise UserError(f'{where} must be {{"layers": [{{"pe": P, "simd": S}}, ...]}}')
    if len(entries) != n_layers:
        raise UserError(f"{where} has {len(entries)} layer entries, the network has {n_layers}")
    folding = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not {"pe", "simd"} <= entry.keys() \
                or not entry.keys() <= {"pe", "simd", "pad", "block_lanes"}:
            raise UserError(f'{where} layer {i} must be {{"pe": P, "simd": S, "pad": false}} '
                            f'(optionally "block_lanes": K), not {entry!r}')
        try:
            folding.append(Folding(entry["pe"], entry["simd"], entry.get("pad", False),
                                   entry.get("block_lanes")))
        except UserError as exc:
            raise UserError(f"{where} layer {i}: {exc}") from None
    if shapes is not None:
        validate_folding(folding, shapes)
    return folding


def refold(net: CompiledNetwork, folding: list[Folding]) -> CompiledNetwork:
    """The same network with another folding (memories re-laid out on write)."""
    validate_folding(folding, net.fold_shapes)
    layers = [replace(layer, folding=f) for layer, f in zip(net.layers, folding)]
    return replace(net, layers=layers)
