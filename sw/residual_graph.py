"""Residual networks in the compiled-network format (version 4): data model and checks.

A residual network (FracBNN's ResNet, :class:`models.residual.ResNet`) is not a chain of
layers: its graph forks (a tensor read by two nodes) and joins (``add``), and the tensor
between blocks is fixed point.  :class:`ResidualNetwork` is such a network as a DAG of named
tensors and nodes (docs/compiled-network.md, "Residual networks (version 4)"):

* tensors: ``uint8`` (the image), ``bit`` (1-bit ±1 codes 0/1), ``frac2`` (2-bit codes
  ``q``, ``u = 2q - 3``), ``acc`` (raw convolution accumulators), ``fixed`` (codes of a
  :class:`sw.fixed_point.FixedPointFormat`, ``bits``/``frac``), ``int`` (exact integers:
  pooled sums, scores);
* nodes (:data:`NODE_OPS`): ``thermometer``, ``conv`` (a binary convolution whose layer is
  an ordinary :class:`sw.compiled_net.LayerSpec` with ``out = "scores"``: raw accumulators,
  same weights/gates memory layout), ``binarize``, ``affine``, ``rprelu``, ``add``,
  ``avgpool2x2``, ``dup_channels``, ``global_sumpool`` and ``linear`` (the classifier).

Every integer semantics is :mod:`sw.fixed_point`'s.  Per-channel constants live in the nodes
(:attr:`Node.constants`) and are written as ``.mem`` files of documented field widths
(:func:`node_memories`).  Construction checks everything and raises one-line
:class:`sw.errors.UserError`\\ s: unknown op, a tensor read before it is written, an ``add``
whose branches differ in shape or fixed-point format, a constant outside its width, shapes
that do not follow from the inputs.  Reading and writing: :mod:`sw.residual_io`; running:
:mod:`sw.residual_golden`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .compiled_net import (FORMAT, MAX_MAP_VALUES, InputSpec, LayerSpec,
                           OutputSpec, _check_layer_folding, _is_int)
from .errors import UserError
from .fixed_point import ADD_BITS, MAX_SHIFT, MULT_BITS, FixedPointFormat
from .network_json import layer_json

__all__ = [
    "RESIDUAL_VERSION",
    "TENSOR_TYPES",
    "NODE_OPS",
    "ACTIVATION_COUNTS",
    "TensorSpec",
    "Node",
    "Memory",
    "ResidualNetwork",
    "BIAS_BITS",
    "MAX_NODES",
    "MAX_CHANNELS",
    "node_memories",
    "node_from_memories",
    "pack_fields",
    "unpack_fields",
    "residual_to_json",
]

#: ``version`` of a network.json with residual nodes (files without them keep 2 or 3).
RESIDUAL_VERSION = 4
#: Element types of graph tensors.
TENSOR_TYPES = ("uint8", "bit", "frac2", "acc", "fixed", "int")
#: Node operations of a version 4 graph.
NODE_OPS = ("thermometer", "conv", "binarize", "affine", "rprelu", "add", "avgpool2x2",
            "dup_channels", "global_sumpool", "linear")
#: Thresholds per channel of a ``binarize`` node, by activation.
ACTIVATION_COUNTS = {"sign": 1, "frac2": 3}
#: Width of the classifier's bias constant (signed).
BIAS_BITS = ADD_BITS
#: Scalar attributes each op has in JSON (besides name, op, inputs, outputs, memories).
_ATTRS = {"thermometer": (), "conv": ("layer", "kernel", "stride", "pad"),
          "binarize": ("activation",), "affine": ("shift",), "rprelu": ("shift",), "add": (),
          "avgpool2x2": (), "dup_channels": ("factor",), "global_sumpool": ("shift",),
          "linear": ("weight_bits", "logit_scale")}
#: Constant arrays each op holds.
_CONSTANTS = {"binarize": ("thresholds",), "affine": ("mult", "add"),
              "rprelu": ("gamma", "mult", "zeta"), "linear": ("weight", "bias")}
_INPUT_COUNT = {op: 2 if op == "add" else 1 for op in NODE_OPS}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
#: Most nodes (and tensors) a graph may have.
MAX_NODES = 4096
#: Most channels (last dimension) of a tensor: bounds every per-channel constant array.
MAX_CHANNELS = 1 << 16


def _shape_str(shape) -> str:
    return "x".join(map(str, shape))


@dataclass(frozen=True)
class TensorSpec:
    """A named graph tensor: ``shape`` ``(H, W, C)`` (HWC) or ``(N,)``, element ``type``
    (:data:`TENSOR_TYPES`) and, for ``fixed``, its format ``bits``/``frac``."""

    name: str
    shape: tuple
    type: str
    bits: int | None = None
    frac: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise UserError(f"tensor name {self.name!r} must be 1-64 letters, digits or _ "
                            f"(not starting with a digit)")
        where = f"tensor {self.name}"
        shape = tuple(self.shape) if isinstance(self.shape, (list, tuple)) else None
        if not shape or len(shape) not in (1, 3) or not all(_is_int(d) and d >= 1 for d in shape):
            raise UserError(f"{where}: shape must be [H, W, C] or [N] of positive ints, "
                            f"not {self.shape!r}")
        object.__setattr__(self, "shape", tuple(int(d) for d in shape))
        if self.shape[-1] > MAX_CHANNELS or math.prod(self.shape) > MAX_MAP_VALUES:
            raise UserError(f"{where}: a {_shape_str(self.shape)} tensor is beyond the format's "
                            f"bounds ({MAX_CHANNELS} channels, {MAX_MAP_VALUES} values)")
        if self.type not in TENSOR_TYPES:
            raise UserError(f"{where}: type must be one of {list(TENSOR_TYPES)}, not {self.type!r}")
        if self.type == "fixed":
            try:
                FixedPointFormat(self.bits, self.frac)
            except ValueError as exc:
                raise UserError(f"{where}: {exc}") from None
        elif self.bits is not None or self.frac is not None:
            raise UserError(f"{where}: only fixed tensors have bits/frac")

    @property
    def fmt(self) -> FixedPointFormat | None:
        """The fixed-point format (``None`` unless ``type == "fixed"``)."""
        return FixedPointFormat(self.bits, self.frac) if self.type == "fixed" else None

    @property
    def channels(self) -> int:
        return self.shape[-1]

    def describe(self) -> str:
        t = str(self.fmt) if self.type == "fixed" else self.type
        return f"{_shape_str(self.shape)} {t}"

    def to_json(self) -> dict:
        doc = {"name": self.name, "shape": list(self.shape), "type": self.type}
        if self.type == "fixed":
            doc.update(bits=self.bits, frac=self.frac)
        return doc


@dataclass(eq=False)
class Node:
    """One graph node: ``op`` (:data:`NODE_OPS`) reading ``inputs`` and writing the one
    tensor in ``outputs``; ``attrs`` its scalar attributes, ``constants`` its per-channel
    integer arrays (int64), both as listed in docs/compiled-network.md."""

    name: str
    op: str
    inputs: tuple
    outputs: tuple
    attrs: dict = field(default_factory=dict)
    constants: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise UserError(f"node name {self.name!r} must be 1-64 letters, digits or _ "
                            f"(not starting with a digit)")
        where = f"node {self.name}"
        if self.op not in NODE_OPS:
            raise UserError(f"{where}: unknown op {self.op!r}; a version "
                            f"{RESIDUAL_VERSION} graph has {', '.join(NODE_OPS)}")
        self.inputs, self.outputs = tuple(self.inputs), tuple(self.outputs)
        if len(self.inputs) != _INPUT_COUNT[self.op] or len(self.outputs) != 1 \
                or not all(isinstance(t, str) for t in self.inputs + self.outputs):
            raise UserError(f"{where} ({self.op}) reads {_INPUT_COUNT[self.op]} tensor(s) and "
                            f"writes 1, not {list(self.inputs)} -> {list(self.outputs)}")
        attrs = dict(self.attrs)
        if set(attrs) != set(_ATTRS[self.op]):
            raise UserError(f"{where} ({self.op}) has attributes {sorted(attrs)}, expected "
                            f"{sorted(_ATTRS[self.op])}")
        for key, value in attrs.items():
            if key == "activation":
                if value not in ACTIVATION_COUNTS:
                    raise UserError(f"{where}: activation must be one of "
                                    f"{list(ACTIVATION_COUNTS)}, not {value!r}")
            elif key == "logit_scale":
                if not isinstance(value, (int, float, np.floating)) or isinstance(value, bool) \
                        or not math.isfinite(value) or not value > 0:
                    raise UserError(f"{where}: logit_scale must be a finite number > 0, "
                                    f"not {value!r}")
                attrs[key] = float(value)
            elif not _is_int(value):
                raise UserError(f"{where}: {key} must be an int, not {value!r}")
            else:
                attrs[key] = int(value)
        if "shift" in attrs and not 0 <= attrs["shift"] <= MAX_SHIFT:
            raise UserError(f"{where}: shift {attrs['shift']} is outside 0..{MAX_SHIFT}")
        if "factor" in attrs and attrs["factor"] < 1:
            raise UserError(f"{where}: factor must be >= 1, not {attrs['factor']}")
        if "weight_bits" in attrs and not 2 <= attrs["weight_bits"] <= 16:
            raise UserError(f"{where}: weight_bits must be in 2..16, not {attrs['weight_bits']}")
        self.attrs = attrs
        want = _CONSTANTS.get(self.op, ())
        if set(self.constants) != set(want):
            raise UserError(f"{where} ({self.op}) has constants {sorted(self.constants)}, "
                            f"expected {sorted(want)}")
        consts = {}
        for key, value in self.constants.items():
            arr = np.asarray(value)
            if arr.dtype.kind not in "iu":
                raise UserError(f"{where}: constant {key} must be integers, not {arr.dtype}")
            consts[key] = arr.astype(np.int64)
        self.constants = consts

    @property
    def output(self) -> str:
        return self.outputs[0]


@dataclass(frozen=True, eq=False)
class Memory:
    """One ``.mem`` file of a node: ``depth`` words, each the signed ``fields`` (name, bits)
    packed from bit 0 up (two's complement), values ``rows`` ``(depth, len(fields))``;
    ``meta`` the widths as network.json states them."""

    kind: str
    file: str
    fields: tuple
    rows: np.ndarray
    meta: dict

    @property
    def depth(self) -> int:
        return int(self.rows.shape[0])

    @property
    def width(self) -> int:
        return sum(b for _, b in self.fields)

    def words(self) -> list[int]:
        return pack_fields(self.rows, [b for _, b in self.fields])


def pack_fields(rows: np.ndarray, widths: list[int]) -> list[int]:
    """Words of signed fields: row ``r`` -> ``sum_k (rows[r, k] mod 2**w_k) << offset_k``,
    ``offset_k = w_0 + ... + w_(k-1)``.  Values must fit their signed widths."""
    out = []
    for row in np.asarray(rows, dtype=np.int64).reshape(len(rows), len(widths)):
        word, offset = 0, 0
        for v, w in zip(row.tolist(), widths):
            if not -(1 << (w - 1)) <= v < (1 << (w - 1)):
                raise ValueError(f"{v} does not fit a signed {w}-bit field")
            word |= (v & ((1 << w) - 1)) << offset
            offset += w
        out.append(word)
    return out


def unpack_fields(words: list[int], widths: list[int]) -> np.ndarray:
    """Inverse of :func:`pack_fields`: ``(len(words), len(widths))`` int64."""
    rows = np.zeros((len(words), len(widths)), dtype=np.int64)
    for r, word in enumerate(words):
        offset = 0
        for k, w in enumerate(widths):
            v = (word >> offset) & ((1 << w) - 1)
            rows[r, k] = v - (1 << w) if v >> (w - 1) else v
            offset += w
    return rows


def _signed_range(bits: int) -> tuple[int, int]:
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def _check_width(where: str, name: str, values: np.ndarray, lo: int, hi: int, what: str) -> None:
    bad = np.flatnonzero((values < lo) | (values > hi))
    if bad.size:
        i = int(bad[0])
        at = np.unravel_index(i, values.shape)
        entry = f"channel {at[0]}" if values.ndim == 1 else f"entry {tuple(map(int, at))}"
        raise UserError(f"{where}: {name} of {entry} is {int(values.reshape(-1)[i])}, which "
                        f"overflows {what} ([{lo}, {hi}])")


@dataclass(eq=False)
class ResidualNetwork:
    """A compiled residual network (format version 4).

    Attributes
    ----------
    name, input, output, source, test_vectors
        As :class:`sw.compiled_net.CompiledNetwork`; ``output.classes`` is the classifier's
        class count, ``output.scale`` its ``logit_scale`` (``mean = beta = 0``).
    layers
        The binary convolutions, :class:`~sw.compiled_net.LayerSpec` with ``out = "scores"``
        (raw accumulators) and a ``conv`` geometry, in the order of their ``conv`` nodes.
    tensors
        Every graph tensor (:class:`TensorSpec`); ``image`` first, ``scores`` last.
    nodes
        :class:`Node` s in execution order (each reads only tensors written before it).
    """

    name: str
    input: InputSpec
    layers: list
    tensors: list
    nodes: list
    output: OutputSpec
    source: dict = field(default_factory=dict)
    test_vectors: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise UserError(f"network name must be a non-empty string, not {self.name!r}")
        self.layers, self.tensors, self.nodes = list(self.layers), list(self.tensors), list(self.nodes)
        if len(self.nodes) > MAX_NODES or len(self.tensors) > MAX_NODES + 1:
            raise UserError(f"{len(self.nodes)} nodes, more than the format allows ({MAX_NODES})")
        _check_graph(self)

    # Derived views
    @property
    def classes(self) -> int:
        return self.output.classes

    @property
    def exits(self) -> list:
        """No early exits (the chain format's attribute, for tools that look)."""
        return []

    def tensor(self, name: str) -> TensorSpec:
        return self._tensors[name]

    def producer(self, tensor: str) -> Node | None:
        """The node writing ``tensor`` (``None`` for the image)."""
        return self._producers.get(tensor)

    def conv_node(self, layer: int) -> Node:
        """The ``conv`` node computing ``layers[layer]``."""
        return next(n for n in self.nodes if n.op == "conv" and n.attrs["layer"] == layer)


def _check_graph(net: ResidualNetwork) -> None:
    """Every check of docs/compiled-network.md "Residual networks (version 4)"."""
    if not all(isinstance(t, TensorSpec) for t in net.tensors) \
            or not all(isinstance(n, Node) for n in net.nodes):
        raise UserError("tensors must be TensorSpecs and nodes Nodes")
    tensors: dict[str, TensorSpec] = {}
    for t in net.tensors:
        if t.name in tensors:
            raise UserError(f"tensor {t.name} is declared twice; tensor names must be unique")
        tensors[t.name] = t
    inp = net.input
    image = TensorSpec("image", (inp.height, inp.width, inp.channels), "uint8")
    if not net.tensors or net.tensors[0] != image:
        raise UserError(f"the first tensor must be image {image.describe()}")
    names = set()
    written = {"image"}
    producers: dict[str, Node] = {}
    readers = {t.name: 0 for t in net.tensors}
    layer_nodes: list[int] = []
    for k, node in enumerate(net.nodes):
        where = f"node {node.name} ({node.op})"
        if node.name in names:
            raise UserError(f"node name {node.name} is used twice; node names must be unique")
        names.add(node.name)
        for t in node.inputs:
            if t not in tensors:
                raise UserError(f"{where} reads tensor {t}, which is not declared")
            if t not in written:
                raise UserError(f"{where} reads tensor {t} before it is written; list the "
                                f"nodes in execution order")
            readers[t] += 1
        out = node.output
        if out not in tensors:
            raise UserError(f"{where} writes tensor {out}, which is not declared")
        if out in written:
            raise UserError(f"{where} writes tensor {out}, which is already written; every "
                            f"tensor has one producer")
        if (k == 0) != (node.op == "thermometer"):
            raise UserError(f"{where}: the first node (and only it) is the thermometer")
        _check_node(net, node, [tensors[t] for t in node.inputs], tensors[out], where,
                    producers, tensors)
        if node.op == "conv":
            layer_nodes.append(node.attrs["layer"])
        written.add(out)
        producers[out] = node
    if [t.name for t in net.tensors if t.name not in written]:
        missing = [t.name for t in net.tensors if t.name not in written]
        raise UserError(f"tensor {missing[0]} is declared but no node writes it")
    last = net.nodes[-1] if net.nodes else None
    if last is None or last.op != "linear" or last.output != "scores":
        raise UserError("the last node must be the linear classifier writing tensor 'scores'")
    unread = [name for name, count in readers.items() if count == 0 and name != "scores"]
    if unread:
        raise UserError(f"tensor {unread[0]} is written but never read; remove it")
    if readers["scores"]:
        raise UserError("tensor scores is the output; no node may read it")
    if layer_nodes != list(range(len(net.layers))):
        raise UserError(f"conv nodes must compute layers 0..{len(net.layers) - 1} once each, in "
                        f"order, not {layer_nodes}")
    for i, layer in enumerate(net.layers):
        if not isinstance(layer, LayerSpec) or layer.index != i:
            raise UserError(f"layers[{i}] must be a LayerSpec with index {i}")
        if layer.folding.pad:
            raise UserError(f"layer {i}: a residual network's convolution has no padded "
                            f"folding; remove \"pad\"")
        _check_layer_folding(i, i, layer.folding, layer.fold_shape)
    scores = tensors["scores"]
    if net.output.classes != scores.shape[0] or net.output.decoder != "argmax" \
            or net.output.class_keys is not None \
            or (net.output.mean, net.output.beta) != (0.0, 0.0) \
            or net.output.scale != last.attrs["logit_scale"]:
        raise UserError(f"output must be {{classes: {scores.shape[0]}, mean: 0, beta: 0, scale: "
                        f"the classifier's logit_scale}} with the plain argmax decoder")
    files = [f"L{l.index}_{kind}.mem" for l in net.layers
             for kind in ("weights", "gates")]
    for node in net.nodes:
        for m in node_memories(node, tensors[node.inputs[0]]):
            if m.file in files:
                raise UserError(f"node {node.name}: its memory file {m.file} clashes with "
                                f"another memory's; rename the node")
            files.append(m.file)
    net._tensors, net._producers = tensors, producers


def _check_node(net: ResidualNetwork, node: Node, ins: list[TensorSpec], out: TensorSpec,
                where: str, producers: dict, net_tensors: dict) -> None:
    """Check one node's inputs, constants and output tensor (one-line UserError)."""
    op, a, c = node.op, node.attrs, node.constants
    x = ins[0]

    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise UserError(f"{where}: {msg}")

    def expect(shape, type_, fmt=None) -> None:
        want = TensorSpec(out.name, tuple(shape), type_,
                          None if fmt is None else fmt.bits, None if fmt is None else fmt.frac)
        need(out == want, f"writes {out.name} as {out.describe()}, but its inputs give "
                          f"{want.describe()}")

    def spatial(t: TensorSpec, types) -> None:
        need(len(t.shape) == 3 and t.type in types,
             f"reads {t.name} ({t.describe()}); it needs an HxWxC {' or '.join(types)} tensor")

    def per_channel(key: str, n: int) -> np.ndarray:
        v = c[key]
        need(v.shape == (n,), f"constant {key} must have shape ({n},), not {v.shape}")
        return v

    if op == "thermometer":
        need(x.name == "image", "reads the image")
        expect(net.input.out_map, "bit")
    elif op == "conv":
        spatial(x, ("bit", "frac2"))
        i = a["layer"]
        need(0 <= i < len(net.layers), f"layer {i} is not in layers (0..{len(net.layers) - 1})")
        layer = net.layers[i]
        g = layer.conv
        need(g is not None and layer.out == "scores" and layer.pool == 0,
             f"layer {i} must be a convolution with out 'scores' (raw accumulators), no pool")
        need((g.kernel, g.stride, g.pad) == (a["kernel"], a["stride"], a["pad"]),
             f"kernel/stride/pad {a['kernel']}/{a['stride']}/{a['pad']} differ from layer {i}'s "
             f"{g.kernel}/{g.stride}/{g.pad}")
        need((g.in_height, g.in_width, g.in_channels) == x.shape,
             f"layer {i} convolves a {_shape_str((g.in_height, g.in_width, g.in_channels))} "
             f"input but {x.name} is {_shape_str(x.shape)}")
        bits = 1 if x.type == "bit" else 2
        need(layer.in_bits == bits and layer.gated == (bits == 2),
             f"layer {i} must have in_bits {bits}{' and gates' if bits == 2 else ''} to read "
             f"{x.type} {x.name}")
        expect((g.out_height, g.out_width, layer.out_features), "acc")
    elif op == "binarize":
        spatial(x, ("fixed",))
        fmt, count = x.fmt, ACTIVATION_COUNTS[a["activation"]]
        th = c["thresholds"]
        need(th.shape == (x.channels, count),
             f"constant thresholds must have shape ({x.channels}, {count}), not {th.shape}")
        _check_width(where, "thresholds", th, fmt.lo, fmt.hi + 1,
                     f"a {fmt.bits + 1}-bit threshold of {fmt} codes")
        bad = np.flatnonzero(np.any(np.diff(th, axis=1) < 0, axis=1))
        need(not bad.size, f"thresholds of channel {bad[0] if bad.size else 0} are not ordered")
        expect(x.shape, "bit" if a["activation"] == "sign" else "frac2")
    elif op == "affine":
        spatial(x, ("acc", "fixed"))
        need(out.type == "fixed", f"writes {out.name} ({out.describe()}); it must be fixed")
        m, add = per_channel("mult", x.channels), per_channel("add", x.channels)
        _check_width(where, "mult", m, *_signed_range(MULT_BITS), f"a signed {MULT_BITS}-bit field")
        _check_width(where, "add", add, *_signed_range(ADD_BITS), f"a signed {ADD_BITS}-bit field")
        expect(x.shape, "fixed", out.fmt)
    elif op == "rprelu":
        spatial(x, ("fixed",))
        fmt = x.fmt
        for key in ("gamma", "zeta"):
            _check_width(where, key, per_channel(key, x.channels), fmt.lo, fmt.hi,
                         f"a code of {fmt}")
        _check_width(where, "mult", per_channel("mult", x.channels), *_signed_range(MULT_BITS),
                     f"a signed {MULT_BITS}-bit field")
        expect(x.shape, "fixed", fmt)
    elif op == "add":
        y = ins[1]
        spatial(x, ("fixed",))
        spatial(y, ("fixed",))
        need(x.shape == y.shape, f"branch shapes differ: {x.name} is {_shape_str(x.shape)}, "
                                 f"{y.name} is {_shape_str(y.shape)}; both inputs of an add "
                                 f"must have the same shape")
        need(x.fmt == y.fmt, f"branch formats differ: {x.name} is {x.fmt}, {y.name} is "
                             f"{y.fmt}; both inputs of an add must have the same fixed-point "
                             f"format")
        expect(x.shape, "fixed", x.fmt)
    elif op == "avgpool2x2":
        spatial(x, ("fixed",))
        need(x.shape[0] % 2 == 0 and x.shape[1] % 2 == 0,
             f"reads a {_shape_str(x.shape)} map; a 2x2 average pool needs even H and W")
        expect((x.shape[0] // 2, x.shape[1] // 2, x.channels), "fixed", x.fmt)
    elif op == "dup_channels":
        spatial(x, ("fixed",))
        expect((x.shape[0], x.shape[1], x.channels * a["factor"]), "fixed", x.fmt)
    elif op == "global_sumpool":
        spatial(x, ("fixed",))
        pixels = x.shape[0] * x.shape[1]
        most = math.ceil(math.log2(pixels)) if pixels > 1 else 0
        need(a["shift"] <= most, f"shift {a['shift']} divides a sum of {pixels} values by more "
                                 f"than their count; use a shift in 0..{most}")
        expect((x.channels,), "int")
    elif op == "linear":
        src = producers.get(x.name)
        need(len(x.shape) == 1 and x.type == "int" and src is not None
             and src.op == "global_sumpool",
             f"reads {x.name} ({x.describe()}); it needs the int [C] output of global_sumpool")
        w, b = c["weight"], c["bias"]
        classes = out.shape[0]
        need(w.ndim == 2 and w.shape[1] == x.shape[0],
             f"constant weight must have shape (classes, {x.shape[0]}), not {w.shape}")
        need(b.shape == (w.shape[0],), f"constant bias must have shape ({w.shape[0]},), "
                                       f"not {b.shape}")
        wb = a["weight_bits"]
        _check_width(where, "weight", w, *_signed_range(wb), f"a signed {wb}-bit weight")
        _check_width(where, "bias", b, *_signed_range(BIAS_BITS), f"a signed {BIAS_BITS}-bit field")
        need(classes == w.shape[0], f"writes {classes} scores but has {w.shape[0]} weight rows")
        pooled = net_tensors[src.inputs[0]]
        bound = ((1 << (pooled.bits - 1)) * pooled.shape[0] * pooled.shape[1]
                 * (1 << (wb - 1)) * x.shape[0] + (1 << (BIAS_BITS - 1)))
        need(bound < 1 << 63, f"scores of {pooled.describe()} sums with {wb}-bit weights can "
                              f"overflow 64 bits; use fewer bits or channels")
        expect((w.shape[0],), "int")


def node_memories(node: Node, x: TensorSpec) -> list[Memory]:
    """The ``.mem`` files of ``node`` (none for ops without constants), file names
    ``{node}_{kind}.mem``:

    * binarize ``thresholds``: depth C, ``count`` fields of ``threshold_bits = bits + 1``;
    * affine ``constants``: depth C, fields ``mult`` (``MULT_BITS``), ``add`` (``ADD_BITS``);
    * rprelu ``constants``: depth C, fields ``gamma`` (``code_bits``), ``mult``
      (``MULT_BITS``), ``zeta`` (``code_bits``), ``code_bits`` = the format's ``bits``;
    * linear ``weights``: depth classes, C fields of ``weight_bits``; ``bias``: depth
      classes, one ``BIAS_BITS`` field.

    ``x`` is the node's (first) input tensor.
    """
    c = node.constants

    def mem(kind, fields, rows, **meta):
        return Memory(kind, f"{node.name}_{kind}.mem", tuple(fields),
                      np.asarray(rows, np.int64).reshape(len(rows), len(fields)), meta)

    if node.op == "binarize":
        th = c["thresholds"]
        tw = x.fmt.bits + 1
        return [mem("thresholds", [(f"t{k}", tw) for k in range(th.shape[1])], th,
                    count=int(th.shape[1]), threshold_bits=tw)]
    if node.op == "affine":
        return [mem("constants", [("mult", MULT_BITS), ("add", ADD_BITS)],
                    np.stack([c["mult"], c["add"]], axis=1),
                    mult_bits=MULT_BITS, add_bits=ADD_BITS)]
    if node.op == "rprelu":
        b = x.fmt.bits
        return [mem("constants", [("gamma", b), ("mult", MULT_BITS), ("zeta", b)],
                    np.stack([c["gamma"], c["mult"], c["zeta"]], axis=1),
                    code_bits=b, mult_bits=MULT_BITS)]
    if node.op == "linear":
        w, wb = c["weight"], node.attrs["weight_bits"]
        return [mem("weights", [(f"w{i}", wb) for i in range(w.shape[1])], w,
                    count=int(w.shape[1]), weight_bits=wb),
                mem("bias", [("bias", BIAS_BITS)], c["bias"][:, None], bias_bits=BIAS_BITS)]
    return []


def node_from_memories(node: Node, rows: dict) -> dict:
    """Constants of ``node`` from its memories' ``rows`` by kind (inverse of
    :func:`node_memories`)."""
    if node.op == "binarize":
        return {"thresholds": rows["thresholds"]}
    if node.op == "affine":
        r = rows["constants"]
        return {"mult": r[:, 0], "add": r[:, 1]}
    if node.op == "rprelu":
        r = rows["constants"]
        return {"gamma": r[:, 0], "mult": r[:, 1], "zeta": r[:, 2]}
    if node.op == "linear":
        return {"weight": rows["weights"], "bias": rows["bias"][:, 0]}
    return {}


def _node_json(net: ResidualNetwork, node: Node) -> dict:
    doc: dict[str, Any] = {"name": node.name, "op": node.op, "inputs": list(node.inputs),
                           "outputs": list(node.outputs), **node.attrs}
    mems = node_memories(node, net.tensor(node.inputs[0]))
    if mems:
        doc["memories"] = {m.kind: {"file": m.file, "depth": m.depth, "width": m.width, **m.meta}
                           for m in mems}
    return doc


def residual_to_json(net: ResidualNetwork) -> dict:
    """The ``network.json`` document of ``net`` (version 4; memory digests are added by the
    writer)."""
    inp = net.input.to_json()
    inp["order"] = "HWC"
    return {"format": FORMAT, "version": RESIDUAL_VERSION, "name": net.name,
            "source": dict(net.source), "input": inp,
            "layers": [layer_json(l) for l in net.layers],
            "graph": {"tensors": [t.to_json() for t in net.tensors],
                      "nodes": [_node_json(net, n) for n in net.nodes]},
            "output": net.output.to_json(), "test_vectors": net.test_vectors}
