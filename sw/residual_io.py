"""Writing and reading residual networks (compiled-network format version 4).

:func:`write_residual_network` writes a :class:`~sw.residual_graph.ResidualNetwork`
atomically (temporary sibling, read back and compared, renamed into place);
:func:`load_residual_network` reads one and turns every inconsistency into a one-line
:class:`sw.errors.UserError`.  :func:`sw.network_io.load_network` reads either kind of
directory.  Test vectors of a residual network hold every graph tensor of a few images
(:class:`ResidualVectors`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .atomic_dir import atomic_directory
from .compiled_net import _NETWORK_JSON, _TEST_VECTORS_JSON, MAX_LAYER_WEIGHTS
from .errors import UserError
from .memory_layout import layer_memories
from .network_io import (_Doc, _load_input_output, _load_layer, _read_document, _read_memory,
                         _write_memories)
from .residual_graph import (MAX_NODES, NODE_OPS, RESIDUAL_VERSION, Node, ResidualNetwork,
                             TensorSpec, node_from_memories, node_memories, residual_to_json,
                             unpack_fields)

__all__ = ["ResidualVectors", "write_residual_network", "load_residual_network",
           "load_residual_document", "load_residual_vectors"]


@dataclass(eq=False)
class ResidualVectors:
    """Test vectors of a residual network: ``images`` ``(N, P)`` uint8, ``tensors`` every
    graph tensor but the image by name, ``(N, size)`` int64 in HWC order (bits 0/1, frac2
    codes ``q``, accumulators, fixed-point codes, sums, scores), ``classes`` ``(N,)``."""

    __test__ = False

    images: np.ndarray
    tensors: dict
    classes: np.ndarray

    def to_json(self) -> dict:
        return {"images": np.asarray(self.images).tolist(),
                "tensors": {k: np.asarray(v).tolist() for k, v in self.tensors.items()},
                "classes": np.asarray(self.classes).tolist()}


def _memories(net: ResidualNetwork) -> list[tuple[str, list[int], int]]:
    """(file stem, words, width) of every memory: the conv layers' (``L{i}_...``), then the
    nodes' (``{node}_{kind}``)."""
    out = [m for layer in net.layers for m in layer_memories(layer)]
    for node in net.nodes:
        for m in node_memories(node, net.tensor(node.inputs[0])):
            out.append((m.file[:-len(".mem")], m.words(), m.width))
    return out


def _same(a: ResidualNetwork, b: ResidualNetwork) -> bool:
    if residual_to_json(a) != residual_to_json(b):
        return False
    for la, lb in zip(a.layers, b.layers):
        for name in ("weights", "gates"):
            xa, xb = getattr(la, name), getattr(lb, name)
            if (xa is None) != (xb is None) or (xa is not None and not np.array_equal(xa, xb)):
                return False
    return all(na.constants.keys() == nb.constants.keys()
               and all(np.array_equal(na.constants[k], nb.constants[k]) for k in na.constants)
               for na, nb in zip(a.nodes, b.nodes))


def _check_vectors(vec: ResidualVectors, net: ResidualNetwork, where: str) -> None:
    images = np.asarray(vec.images)
    if images.ndim != 2 or images.shape[1] != net.input.pixels:
        raise UserError(f"{where}: images must be (N, {net.input.pixels}), got {images.shape}")
    n = images.shape[0]
    names = [t.name for t in net.tensors[1:]]
    if sorted(vec.tensors) != sorted(names):
        raise UserError(f"{where}: tensors must be exactly the graph's ({len(names)}), "
                        f"got {len(vec.tensors)}")
    for t in net.tensors[1:]:
        shape = np.asarray(vec.tensors[t.name]).shape
        if shape != (n, int(np.prod(t.shape))):
            raise UserError(f"{where}: tensor {t.name} must be ({n}, {int(np.prod(t.shape))}), "
                            f"got {shape}")
    if np.asarray(vec.classes).shape != (n,):
        raise UserError(f"{where}: classes must be ({n},), got {np.asarray(vec.classes).shape}")


def write_residual_network(net: ResidualNetwork, outdir: str | Path,
                           vectors: ResidualVectors | None = None, *, coe: bool = True) -> Path:
    """Write ``net`` (and optionally test vectors) to ``outdir`` atomically, with the
    SHA-256 of every ``.mem`` file in ``network.json``; the directory is read back and
    compared with ``net`` before it replaces ``outdir`` (absent or the previous complete
    export on any error).  Returns the path."""
    outdir = Path(outdir)
    if vectors is not None:
        net = replace(net, test_vectors=_TEST_VECTORS_JSON)
        _check_vectors(vectors, net, "test vectors")
    with atomic_directory(outdir, marker=_NETWORK_JSON, what="compiled network") as tmp:
        digests = _write_memories(tmp, _memories(net), coe)
        if vectors is not None:
            (tmp / _TEST_VECTORS_JSON).write_text(json.dumps(vectors.to_json()) + "\n")
        doc = residual_to_json(net)
        for holder in doc["layers"] + doc["graph"]["nodes"]:
            for mem in holder.get("memories", {}).values():
                mem["sha256"] = digests[mem["file"]]
        (tmp / _NETWORK_JSON).write_text(json.dumps(doc, indent=2) + "\n")
        if not _same(load_residual_network(tmp), net):
            raise RuntimeError("residual network does not read back identically (layout bug)")
    return outdir


def load_residual_network(directory: str | Path) -> ResidualNetwork:
    """Read and check a version 4 directory (one-line :class:`UserError` on any problem:
    those of :func:`sw.network_io.load_compiled_network`, and an unknown node op, a tensor
    read before it is written, an ``add`` whose inputs differ in shape or fixed-point
    format, a constant outside its documented width, memory widths other than the
    format's)."""
    directory, doc, version = _read_document(directory)
    if version != RESIDUAL_VERSION:
        doc.fail(f"format version {version} is a layer chain, not a residual network; read "
                 f"it with sw.network_io.load_network")
    return load_residual_document(directory, doc)


def _strip_digests(graph: dict) -> dict:
    nodes = []
    for n in graph.get("nodes", []):
        n = dict(n)
        if isinstance(n.get("memories"), dict):
            n["memories"] = {k: {f: v for f, v in m.items() if f != "sha256"}
                             if isinstance(m, dict) else m for k, m in n["memories"].items()}
        nodes.append(n)
    return {**graph, "nodes": nodes}


def load_residual_document(directory: Path, doc: _Doc) -> ResidualNetwork:
    """The network of an already parsed version 4 ``network.json`` (see
    :func:`load_residual_network`)."""
    path = doc.path
    input_spec, output = _load_input_output(doc)
    if doc.sub("input").get("order", str) != "HWC":
        doc.fail(f"input.order must be 'HWC', not {doc.obj['input']['order']!r}")
    graph = doc.sub("graph")
    tensor_docs, node_docs = graph.get("tensors", list), graph.get("nodes", list)
    if len(node_docs) > MAX_NODES or len(tensor_docs) > MAX_NODES + 1:
        doc.fail(f"{len(node_docs)} nodes, more than the format allows ({MAX_NODES})")
    tensors = []
    for k, obj in enumerate(tensor_docs):
        td = _Doc(obj, f"graph.tensors[{k}]", path)
        try:
            tensors.append(TensorSpec(td.get("name", str), td.get("shape", list),
                                      td.get("type", str), td.get("bits", int, optional=True),
                                      td.get("frac", int, optional=True)))
        except UserError as exc:
            doc.fail(f"graph.tensors[{k}]: {exc}")
    by_name = {t.name: t for t in tensors}
    nodes: list[Node] = []
    conv_inputs: dict[int, TensorSpec] = {}
    for k, obj in enumerate(node_docs):
        nd = _Doc(obj, f"graph.nodes[{k}]", path)
        name, op = nd.get("name", str), nd.get("op", str)
        where = f"graph.nodes[{k}] ({name})"
        if op not in NODE_OPS:
            doc.fail(f"{where}: unknown op {op!r}; a version {RESIDUAL_VERSION} graph has "
                     f"{', '.join(NODE_OPS)}")
        ins, outs = nd.get("inputs", list), nd.get("outputs", list)
        for t in ins + outs:
            if not isinstance(t, str) or t not in by_name:
                doc.fail(f"{where} names tensor {t!r}, which is not declared in graph.tensors")
        attrs = {key: v for key, v in obj.items()
                 if key not in ("name", "op", "inputs", "outputs", "memories")}
        try:
            node = Node(name, op, ins, outs, attrs, {})if op not in (
                "binarize", "affine", "rprelu", "linear") else _node_with_memories(
                    directory, nd, name, op, ins, outs, attrs, by_name)
        except UserError as exc:
            if str(exc).startswith(str(path)):
                raise
            doc.fail(f"{where}: {exc}")
        if op == "conv":
            conv_inputs.setdefault(node.attrs["layer"], by_name[ins[0]])
        if "memories" in obj and op not in ("binarize", "affine", "rprelu", "linear"):
            doc.fail(f"{where}: a {op} node has no memories")
        nodes.append(node)
    layer_docs = doc.get("layers", list)
    if len(layer_docs) > MAX_NODES:
        doc.fail(f"{len(layer_docs)} layers, more than the format allows ({MAX_NODES})")
    layers = []
    for i, layer_doc in enumerate(layer_docs):
        x = conv_inputs.get(i)
        if x is None or len(x.shape) != 3 or x.type not in ("bit", "frac2"):
            doc.fail(f"layers[{i}] is computed by no conv node reading a bit or frac2 map")
        prev = ("frac2" if x.type == "frac2" else "sign", x.shape, 2 if x.type == "frac2" else 1)
        layers.append(_load_layer(directory, _Doc(layer_doc, f"layers[{i}]", path), i,
                                  RESIDUAL_VERSION, i, prev))
    vectors = doc.get("test_vectors", (str, type(None)), optional=True)
    if vectors is not None and Path(vectors).name != vectors:
        doc.fail(f"test_vectors must be a plain file name, not {vectors!r}")
    try:
        net = ResidualNetwork(doc.get("name", str), input_spec, layers, tensors, nodes, output,
                              doc.get("source", dict, optional=True) or {}, vectors)
    except UserError as exc:
        doc.fail(str(exc))
    if _strip_digests(residual_to_json(net)["graph"]) != _strip_digests(doc.obj["graph"]):
        doc.fail("graph has fields or values this reader does not derive from its tensors, "
                 "nodes and memories (an unknown attribute?)")
    return net


def _node_with_memories(directory: Path, nd: _Doc, name: str, op: str, ins: list, outs: list,
                        attrs: dict, tensors: dict) -> Node:
    """A node with constants, read from its memories (layout from :func:`node_memories` of a
    placeholder node of the same shapes)."""
    x, y = tensors[ins[0]], tensors[outs[0]]
    if op in ("binarize", "rprelu") and x.type != "fixed":
        nd.fail(f"node {name} ({op}) reads {x.name} ({x.describe()}); it needs a fixed tensor")
    if op == "linear" and len(y.shape) != 1:
        nd.fail(f"node {name} (linear) writes {y.name} ({y.describe()}); it needs an int [classes]")
    c = x.channels
    if op == "linear" and c * y.shape[0] > MAX_LAYER_WEIGHTS:
        nd.fail(f"node {name} (linear) has {y.shape[0]}x{c} weights, more than the format "
                f"allows ({MAX_LAYER_WEIGHTS})")
    count = {"sign": 1, "frac2": 3}.get(attrs.get("activation"), 1)
    zeros = {"binarize": {"thresholds": np.zeros((c, count), np.int64)},
             "affine": {"mult": np.zeros(c, np.int64), "add": np.zeros(c, np.int64)},
             "rprelu": {k: np.zeros(c, np.int64) for k in ("gamma", "mult", "zeta")},
             "linear": {"weight": np.zeros((y.shape[0], c), np.int64),
                        "bias": np.zeros(y.shape[0], np.int64)}}[op]
    placeholder = Node(name, op, ins, outs, attrs, zeros)
    mems = nd.sub("memories")
    layout = node_memories(placeholder, x)
    if set(mems.obj) != {m.kind for m in layout}:
        nd.fail(f"node {name}: memories has {sorted(mems.obj)}, expected "
                f"{sorted(m.kind for m in layout)}")
    rows = {}
    for m in layout:
        md = mems.sub(m.kind)
        for key, want in m.meta.items():
            got = md.get(key, int)
            if got != want:
                md.fail(f"node {name}: memories.{m.kind}.{key} is {got}; the format's width is "
                        f"{want}")
        if md.get("file", str) != m.file:
            md.fail(f"node {name}: memories.{m.kind}.file must be {m.file!r}, not "
                    f"{md.obj['file']!r}")
        words = _read_memory(directory, md, m.depth, m.width)
        rows[m.kind] = unpack_fields(words, [b for _, b in m.fields])
    return Node(name, op, ins, outs, attrs, node_from_memories(placeholder, rows))


def load_residual_vectors(directory: str | Path,
                          net: ResidualNetwork | None = None) -> ResidualVectors:
    """Read ``test_vectors.json`` of a residual network directory (shapes checked)."""
    directory = Path(directory)
    net = net if net is not None else load_residual_network(directory)
    if net.test_vectors is None:
        raise UserError(f"{directory} has no test vectors; re-export with --vectors N")
    path = directory / net.test_vectors
    try:
        obj = json.loads(path.read_text())
        vec = ResidualVectors(np.array(obj["images"], dtype=np.int64),
                              {k: np.array(v, dtype=np.int64) for k, v in obj["tensors"].items()},
                              np.array(obj["classes"], dtype=np.int64))
    except FileNotFoundError:
        raise UserError(f"{path} not found; re-export the network") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError,
            AttributeError, ValueError, OverflowError, RecursionError) as exc:
        raise UserError(f"{path} is corrupt ({type(exc).__name__}); re-export the network") from None
    images = vec.images
    if images.size and (images.min() < 0 or images.max() >= 1 << net.input.pixel_bits):
        raise UserError(f"{path}: pixels outside 0..{(1 << net.input.pixel_bits) - 1}")
    vec.images = images.astype(np.uint8)
    _check_vectors(vec, net, str(path))
    return vec
