"""Writing and reading a compiled-network directory (``network.json`` + ``.mem`` files).

:func:`write_compiled_network` writes atomically and reads its output back;
:func:`load_compiled_network` reads only the directory and turns every inconsistency into a
one-line :class:`sw.errors.UserError`; :func:`load_test_vectors` reads the test vectors an
export carries.  The format: docs/compiled-network.md; the data model: :mod:`sw.compiled_net`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .atomic_dir import atomic_directory
from .compiled_net import (ACTIVATION_PRESETS, EXITS_VERSION, FORMAT, MAX_LAYER_WEIGHTS,
                           MAX_LAYERS, OUT_KINDS, READ_VERSIONS, VERSION, CompiledNetwork,
                           ConvGeometry, ExitSpec, Folding, InputSpec, LayerSpec, OutputSpec,
                           TestVectors)
# The format's private pieces shared with the data model: file names, the memories of a
# network, the per-layer folding check, the JSON reader with one-line errors.
from .compiled_net import _NETWORK_JSON, _TEST_VECTORS_JSON, _check_layer_folding, _parse_json
from .errors import UserError
from .memfile import read_mem, write_coe, write_mem
from .memory_layout import (network_memories, unpack_gate_words, unpack_threshold_words,
                            unpack_weight_words)
from .network_json import network_graph, network_to_json

__all__ = ["write_compiled_network", "load_compiled_network", "load_network", "load_test_vectors"]

def _same_network(a: CompiledNetwork, b: CompiledNetwork) -> bool:
    if network_to_json(a) != network_to_json(b):
        return False
    for la, lb in zip(a.layers + [e.layer for e in a.exits],
                      b.layers + [e.layer for e in b.exits]):
        for name in ("weights", "thresholds", "neg", "gates"):
            xa, xb = getattr(la, name), getattr(lb, name)
            if (xa is None) != (xb is None) or (xa is not None and not np.array_equal(xa, xb)):
                return False
    return True


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_memories(directory: Path, memories, coe: bool) -> dict[str, str]:
    """Write each ``(stem, words, width)`` as ``stem.mem`` (and ``stem.coe`` with ``coe``) in
    ``directory``; returns the SHA-256 of every ``.mem`` file by file name."""
    digests = {}
    for stem, words, width in memories:
        write_mem(directory / f"{stem}.mem", words, width)
        digests[f"{stem}.mem"] = _sha256_file(directory / f"{stem}.mem")
        if coe:
            write_coe(directory / f"{stem}.coe", words, width)
    return digests


def write_compiled_network(net: CompiledNetwork, outdir: str | Path,
                           vectors: TestVectors | None = None, *, coe: bool = True) -> Path:
    """Write ``net`` (and optionally its test vectors) to ``outdir`` atomically.

    Every memory entry of ``network.json`` carries the SHA-256 of its ``.mem`` file, which
    :func:`load_compiled_network` checks.  The directory is built in a temporary sibling,
    read back with :func:`load_compiled_network` and compared with ``net``, then renamed
    into place.  On
    any error ``outdir`` is absent or still the previous complete export.  An existing
    ``outdir`` is replaced only if it is empty or a compiled network (has network.json).

    Returns the path of the written directory.
    """
    if not isinstance(net, CompiledNetwork):     # a residual network (version 4)
        from .residual_io import write_residual_network
        return write_residual_network(net, outdir, vectors, coe=coe)
    outdir = Path(outdir)
    if vectors is not None:
        net = replace(net, test_vectors=_TEST_VECTORS_JSON)
    with atomic_directory(outdir, marker=_NETWORK_JSON, what="compiled network") as tmp:
        digests = _write_memories(tmp, network_memories(net), coe)
        if vectors is not None:
            _check_vectors(vectors, net, "test vectors")
            (tmp / _TEST_VECTORS_JSON).write_text(json.dumps(vectors.to_json()) + "\n")
        doc = network_to_json(net)
        for layer_doc in doc["layers"] + [e["layer"] for e in doc.get("exits", [])]:
            for mem in layer_doc["memories"].values():
                mem["sha256"] = digests[mem["file"]]
        (tmp / _NETWORK_JSON).write_text(json.dumps(doc, indent=2) + "\n")
        # Read back what we wrote: the layout functions must round-trip exactly.
        if not _same_network(load_compiled_network(tmp), net):
            raise RuntimeError("compiled network does not read back identically (layout bug)")
    return outdir



# --------------------------------------------------------------------------- loader


class _Doc:
    """Typed access to a JSON object with one-line errors naming the field."""

    def __init__(self, obj: Any, where: str, path: Path):
        self.obj, self.where, self.path = obj, where, path
        if not isinstance(obj, dict):
            self.fail(f"{where} must be an object")

    def fail(self, msg: str):
        raise UserError(f"{self.path}: {msg}; re-export the network")

    def get(self, key: str, kind: type | tuple, optional: bool = False) -> Any:
        if key not in self.obj:
            if optional:
                return None
            self.fail(f"missing field {self.where}.{key}")
        value = self.obj[key]
        ok = isinstance(value, kind) and not (isinstance(value, bool) and kind in (int, (int, float)))
        if not ok:
            self.fail(f"field {self.where}.{key} has the wrong type ({type(value).__name__})")
        return value

    def sub(self, key: str) -> "_Doc":
        return _Doc(self.get(key, dict), f"{self.where}.{key}", self.path)


def _read_memory(directory: Path, mem: _Doc, depth: int, width: int) -> list[int]:
    name = mem.get("file", str)
    if Path(name).name != name or name in ("", ".", ".."):
        mem.fail(f"{mem.where}.file must be a plain file name, not {name!r}")
    got_depth, got_width = mem.get("depth", int), mem.get("width", int)
    if (got_depth, got_width) != (depth, width):
        mem.fail(f"{mem.where} is {got_depth}x{got_width} bits, the layer needs {depth}x{width}")
    digest = mem.get("sha256", str, optional=True)  # absent in exports before digests
    if digest is not None and not _SHA256.fullmatch(digest):
        mem.fail(f"{mem.where}.sha256 must be 64 lower-case hex digits, not {digest[:80]!r}")
    return read_mem(directory / name, width, depth, sha256=digest)


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _load_layer(directory: Path, doc: _Doc, index: int, version: int = VERSION,
                last: int | None = None, prev: tuple | None = None) -> LayerSpec:
    """Layer ``index`` of ``last + 1``; ``prev`` is ``(out kind, out_map, out_bits)`` of the
    layer (or thermometer) before it.  The causes (sizes, chain, folding) are checked before the
    derived fields, so an error names what is wrong rather than a consequence of it."""
    where = f"layers[{index}]"
    last = index if last is None else last
    if doc.get("index", int) != index:
        doc.fail(f"{where}.index is {doc.obj['index']}, expected {index}")
    fold = doc.sub("folding")
    try:
        folding = Folding(fold.get("pe", int), fold.get("simd", int),
                          bool(fold.get("pad", bool, optional=True) or False),
                          fold.get("block_lanes", int, optional=True))
    except UserError as exc:
        doc.fail(f"{where}.folding: {exc}")
    mw, mh = doc.get("in_features", int), doc.get("out_features", int)
    in_bits, out = doc.get("in_bits", int), doc.get("out", str)
    for key, value in (("in_features", mw), ("out_features", mh)):
        if value < 1:
            doc.fail(f"{where}.{key} is {value}; it must be a positive int")
    if in_bits not in (1, 2):
        doc.fail(f"{where}.in_bits is {in_bits}; it must be 1 or 2")
    if out not in OUT_KINDS:
        doc.fail(f"{where}.out is {out!r}; it must be one of {list(OUT_KINDS)}")
    if mw * mh > MAX_LAYER_WEIGHTS:
        doc.fail(f"{where} has {mh}x{mw} weights, more than the format allows "
                 f"({MAX_LAYER_WEIGHTS})")
    if out == "scores" and index != last:
        doc.fail(f"layer {index}: only the last layer has out 'scores'")
    levels = out_bias = out_scale = 0
    if out == "multithreshold":
        levels, out_bias, out_scale = (doc.get("levels", int), doc.get("out_bias", int),
                                       doc.get("out_scale", int))
    if prev is not None:
        want_bits = prev[2]
        if in_bits != want_bits:
            doc.fail(f"layer {index} must have in_bits {want_bits} after "
                     f"{prev[0] or 'the thermometer input'}, not {in_bits}")
    kind = doc.get("kind", str, optional=True) or "dense"
    conv, pool = None, 0
    if kind == "conv" and version >= 2:
        cd = doc.sub("conv")
        try:
            conv = ConvGeometry(cd.get("in_height", int), cd.get("in_width", int),
                                cd.get("in_channels", int), cd.get("kernel", int),
                                cd.get("stride", int), cd.get("pad", int))
        except UserError as exc:
            doc.fail(f"{where}.conv: {exc}")
        for key in ("out_height", "out_width"):
            if cd.get(key, int) != getattr(conv, key):
                doc.fail(f"{where}.conv.{key} is {cd.obj[key]}, expected {getattr(conv, key)}")
        pool = doc.get("pool", int)
        if mw != conv.window:
            doc.fail(f"layer {index}: a {conv.kernel}x{conv.kernel} convolution over "
                     f"{conv.in_channels} channels has {conv.window} inputs, not {mw}")
        if prev is not None and (conv.in_height, conv.in_width, conv.in_channels) != prev[1]:
            got = (conv.in_height, conv.in_width, conv.in_channels)
            doc.fail(f"layer {index} convolves a {'x'.join(map(str, got))} input but its "
                     f"input is {'x'.join(map(str, prev[1]))} (HxWxC)")
    elif kind != "dense":
        doc.fail(f"{where}.kind must be 'dense' or 'conv', not {kind!r}")
    elif prev is not None and mw != math.prod(prev[1]):
        doc.fail(f"layer {index} has {mw} inputs but its input has {math.prod(prev[1])} values")
    try:
        _check_layer_folding(index, last, folding,
                             (mw, mh) if conv is None else (mw, mh, conv.in_channels))
    except UserError as exc:
        doc.fail(str(exc))
    # A placeholder spec gives the derived sizes; the real arrays come from memory.
    gated = prev[0] == "frac2" if prev is not None else "gates" in doc.sub("memories").obj
    count = 0 if out == "scores" else (levels or ACTIVATION_PRESETS.get(out, (2,))[0]) - 1
    try:
        shape = LayerSpec(index, "", mw, mh, in_bits, out, folding,
                          np.ones((mh, mw), dtype=np.int8),
                          np.zeros((mh, max(count, 0)), np.int64) if count else None,
                          np.zeros(mh, bool) if count else None,
                          np.zeros(mh, np.int64) if gated else None, conv, pool,
                          levels, out_bias, out_scale)
    except UserError as exc:
        doc.fail(str(exc))
    for key, want in (("acc_min", shape.acc_min), ("acc_max", shape.acc_max)):
        if doc.get(key, int) != want:
            doc.fail(f"{where}.{key} is {doc.obj[key]}, expected {want}")
    for key in ("mw_padded", "mh_padded", "synapse_folds", "neuron_folds"):
        if fold.get(key, int) != getattr(shape, key):
            doc.fail(f"{where}.folding.{key} is {fold.obj[key]}, expected {getattr(shape, key)}")
    mems = doc.sub("memories")
    expected = {"weights"} | ({"thresholds"} if out != "scores" else set()) | (
        {"gates"} if gated else set())
    if set(mems.obj) != expected:
        doc.fail(f"{where}.memories has {sorted(mems.obj)}, expected {sorted(expected)}")

    wmem = mems.sub("weights")
    words = _read_memory(directory, wmem, shape.weight_depth, shape.weight_width)
    bits = unpack_weight_words(words, folding.pe, folding.simd, shape.mh_padded, shape.mw_padded)
    if not (np.all(bits[mh:] == 1) and np.all(bits[:, mw:] == 1)):
        doc.fail(f"{where}: padding weight bits in {wmem.obj['file']} must all be 1")
    weights = np.where(bits[:mh, :mw] == 1, 1, -1).astype(np.int8)

    thresholds = neg = gates = None
    if out != "scores":
        tmem = mems.sub("thresholds")
        if tmem.get("count", int) != shape.threshold_count \
                or tmem.get("threshold_bits", int) != shape.threshold_bits:
            doc.fail(f"{where}.memories.thresholds has count {tmem.obj['count']} / threshold_bits "
                     f"{tmem.obj['threshold_bits']}, expected {shape.threshold_count} / "
                     f"{shape.threshold_bits}")
        words = _read_memory(directory, tmem, shape.neuron_folds, shape.threshold_width)
        th, ng = unpack_threshold_words(words, folding.pe, shape.threshold_count,
                                        shape.threshold_bits)
        if not (np.all(th[mh:] == shape.acc_max + 1) and not ng[mh:].any()):
            doc.fail(f"{where}: padding neurons in {tmem.obj['file']} must have thresholds "
                     f"{shape.acc_max + 1} and neg 0")
        thresholds, neg = th[:mh], ng[:mh]
    if gated:
        gmem = mems.sub("gates")
        if gmem.get("gate_bits", int) != shape.gate_bits:
            doc.fail(f"{where}.memories.gates.gate_bits is {gmem.obj['gate_bits']}, "
                     f"expected {shape.gate_bits}")
        words = _read_memory(directory, gmem, shape.neuron_folds, shape.gate_width)
        g = unpack_gate_words(words, folding.pe, shape.gate_bits)
        if not np.all(g[mh:] == mw):
            doc.fail(f"{where}: padding neurons in {gmem.obj['file']} must have gate {mw}")
        gates = g[:mh]
    try:
        return LayerSpec(index, doc.get("name", str), mw, mh, in_bits, out, folding,
                         weights, thresholds, neg, gates, conv, pool, levels, out_bias, out_scale)
    except UserError as exc:
        doc.fail(str(exc))


def _read_document(directory: str | Path) -> tuple[Path, "_Doc", int]:
    """``(directory, network.json as a _Doc, version)`` with format and version checked
    (versions 1-3 and the residual version 4)."""
    from .residual_graph import RESIDUAL_VERSION

    directory = Path(directory)
    path = directory / _NETWORK_JSON
    if not directory.is_dir():
        raise UserError(f"compiled network directory {directory} not found; "
                        "create it with `python -m models.export CHECKPOINT OUTDIR`")
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"{path} not found; {directory} is not a compiled network "
                        "(create one with `python -m models.export CHECKPOINT OUTDIR`)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); re-export the network") from None
    obj = _parse_json(text, path, "network description", "re-export the network")
    doc = _Doc(obj, "network", path)
    fmt, version = doc.get("format", str), doc.get("version", int)
    if fmt != FORMAT:
        raise UserError(f"{path}: format {fmt!r} is not {FORMAT!r}; this is not a compiled network")
    if version not in READ_VERSIONS + (RESIDUAL_VERSION,):
        raise UserError(f"{path}: format version {version} is not supported (this reader knows "
                        f"versions {', '.join(map(str, READ_VERSIONS + (RESIDUAL_VERSION,)))}); "
                        f"re-export with this version of the tools")
    return directory, doc, version


def _load_input_output(doc: "_Doc") -> tuple[InputSpec, OutputSpec]:
    """The ``input`` and ``output`` objects of a network document (one-line errors)."""
    path = doc.path
    inp = doc.sub("input")
    therm = inp.sub("thermometer")
    thresholds = therm.get("thresholds", list)
    try:
        input_spec = InputSpec(inp.get("channels", int), inp.get("height", int),
                               inp.get("width", int), inp.get("pixel_bits", int),
                               tuple(thresholds))
        if therm.get("levels", int) != input_spec.levels:
            doc.fail(f"thermometer levels {therm.obj['levels']} != {input_spec.levels} thresholds")
        outp = doc.sub("output")
        output = OutputSpec(outp.get("classes", int), outp.get("mean", (int, float)),
                            outp.get("scale", (int, float)), outp.get("beta", (int, float)),
                            outp.get("decoder", str, optional=True) or "argmax",
                            outp.get("class_scale", list, optional=True),
                            outp.get("class_bias", list, optional=True))
    except UserError as exc:
        if str(exc).startswith(str(path)):
            raise
        doc.fail(str(exc))
    return input_spec, output


def load_network(directory: str | Path):
    """Read and check any compiled-network directory: a chain (versions 1-3,
    :class:`~sw.compiled_net.CompiledNetwork`, :func:`load_compiled_network`) or a residual
    network (version 4, :class:`~sw.residual_graph.ResidualNetwork`,
    :func:`sw.residual_io.load_residual_network`).  One-line :class:`UserError` on any
    inconsistency."""
    from .residual_graph import RESIDUAL_VERSION
    from .residual_io import load_residual_document

    directory, doc, version = _read_document(directory)
    if version == RESIDUAL_VERSION:
        return load_residual_document(directory, doc)
    return _load_chain(directory, doc, version)


def load_compiled_network(directory: str | Path) -> CompiledNetwork:
    """Read and check a compiled-network directory (``network.json`` + memory files).

    Raises
    ------
    sw.errors.UserError
        One line naming the problem: missing directory or file, unknown format/version,
        JSON nested too deeply, missing or mistyped field, sizes beyond the format's bounds,
        a folding that does not fit its layer, memory depth/width mismatch, a memory file
        whose SHA-256 differs from ``network.json``, corrupt memory words, bad padding,
        thresholds out of range or out of order, inconsistent layer chain; a residual
        network (version 4), which this chain reader does not run (:func:`load_network`
        reads both).
    """
    from .residual_graph import RESIDUAL_VERSION

    directory, doc, version = _read_document(directory)
    if version == RESIDUAL_VERSION:
        raise UserError(f"{doc.path}: a residual network (format version {RESIDUAL_VERSION}); "
                        f"this tool runs layer chains (versions 1-3) only; read it with "
                        f"sw.network_io.load_network")
    return _load_chain(directory, doc, version)


def _load_chain(directory: Path, doc: "_Doc", version: int) -> CompiledNetwork:
    """A version 1-3 document (chain of layers, optional early exits)."""
    path = doc.path
    input_spec, output = _load_input_output(doc)
    inp = doc.sub("input")
    layer_docs = doc.get("layers", list)
    if not layer_docs:
        doc.fail("a network needs at least one layer")
    if len(layer_docs) > MAX_LAYERS:
        doc.fail(f"{len(layer_docs)} layers, more than the format allows ({MAX_LAYERS})")
    if version >= 2 and inp.get("order", str) != "HWC":
        doc.fail(f"input.order must be 'HWC', not {inp.obj['order']!r}")
    if version == 1 and input_spec.channels > 1:
        doc.fail("a version 1 network with several input channels has CHW pixel order, which "
                 "this reader does not convert")
    layers: list[LayerSpec] = []
    prev = (None, input_spec.out_map, 1)
    for i, layer_doc in enumerate(layer_docs):
        layers.append(_load_layer(directory, _Doc(layer_doc, f"layers[{i}]", path), i, version,
                                  len(layer_docs) - 1, prev))
        prev = (layers[-1].out, layers[-1].out_map, layers[-1].out_bits)
    source = doc.get("source", dict, optional=True) or {}
    vectors = doc.get("test_vectors", (str, type(None)), optional=True)
    if vectors is not None and Path(vectors).name != vectors:
        doc.fail(f"test_vectors must be a plain file name, not {vectors!r}")
    exits = _load_exits(directory, doc, layers, version)
    try:
        net = CompiledNetwork(doc.get("name", str), input_spec, layers, output, source, vectors,
                              exits)
    except UserError as exc:
        doc.fail(str(exc))
    if version >= 2 and doc.get("graph", dict) != network_graph(net):
        doc.fail("graph does not match the layers (this version runs chains of thermometer, "
                 "pad, conv, maxpool, flatten and dense nodes only)")
    return net


def _load_exits(directory: Path, doc: _Doc, layers: list[LayerSpec],
                version: int) -> list[ExitSpec]:
    """The ``exits`` of a version 3 document (absent: none); each exit's layer is loaded like
    a last layer reading the output of ``layers[after]``."""
    docs = doc.get("exits", list, optional=True)
    if docs is None:
        return []
    if version < EXITS_VERSION:
        doc.fail(f"exits need format version {EXITS_VERSION}, this file says {version}")
    if not docs:
        doc.fail("exits is empty; omit it for a network without early exits")
    exits = []
    for j, obj in enumerate(docs):
        ed = _Doc(obj, f"exits[{j}]", doc.path)
        after, margin = ed.get("after", int), ed.get("margin", int)
        if not 0 <= after < len(layers) - 1:
            ed.fail(f"exits[{j}].after is {after}; it must name a layer before the last one "
                    f"(0..{len(layers) - 2})")
        if margin < 0:
            ed.fail(f"exits[{j}].margin is {margin}; it must be >= 0")
        src = layers[after]
        try:
            layer = _load_layer(directory, ed.sub("layer"), j, version, j,
                                (src.out, (src.out_size,), src.out_bits))
        except UserError as exc:   # name the exit: the layer's messages say "layer j"
            head = f"{doc.path}: "
            msg = str(exc)
            raise UserError(head + f"exits[{j}] (after layer {after}): "
                            + (msg[len(head):] if msg.startswith(head) else msg)) from None
        try:
            exits.append(ExitSpec(after, layer, margin))
        except UserError as exc:
            ed.fail(f"exits[{j}]: {exc}")
    return exits


def _check_vectors(vec: TestVectors, net: CompiledNetwork, where: str) -> None:
    images = np.asarray(vec.images)
    n = images.shape[0] if images.ndim == 2 else -1
    if images.ndim != 2 or images.shape[1] != net.input.pixels:
        raise UserError(f"{where}: images must be (N, {net.input.pixels}), got {images.shape}")
    if len(vec.layers) != len(net.layers):
        raise UserError(f"{where}: {len(vec.layers)} layers, the network has {len(net.layers)}")
    for i, (arr, layer) in enumerate(zip(vec.layers, net.layers)):
        if np.asarray(arr).shape != (n, layer.out_size):
            raise UserError(f"{where}: layer {i} outputs must be ({n}, {layer.out_size}), "
                            f"got {np.asarray(arr).shape}")
    if np.asarray(vec.classes).shape != (n,):
        raise UserError(f"{where}: classes must be ({n},), got {np.asarray(vec.classes).shape}")


def load_test_vectors(directory: str | Path, net: CompiledNetwork | None = None) -> TestVectors:
    """Read ``test_vectors.json`` of a compiled network directory (shapes checked)."""
    directory = Path(directory)
    net = net if net is not None else load_compiled_network(directory)
    if net.test_vectors is None:
        raise UserError(f"{directory} has no test vectors; re-export with --vectors N")
    path = directory / net.test_vectors
    try:
        obj = json.loads(path.read_text())
        images = np.array(obj["images"], dtype=np.int64)
        layers = [np.array(a, dtype=np.int64) for a in obj["layers"]]
        classes = np.array(obj["classes"], dtype=np.int64)
    except FileNotFoundError:
        raise UserError(f"{path} not found; re-export the network") from None
    except RecursionError:
        raise UserError(f"{path} is nested too deeply to be test vectors; re-export the "
                        "network") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError,
            ValueError, OverflowError) as exc:
        raise UserError(f"{path} is corrupt ({exc}); re-export the network") from None
    if images.size and (images.min() < 0 or images.max() >= 1 << net.input.pixel_bits):
        raise UserError(f"{path}: pixels outside 0..{(1 << net.input.pixel_bits) - 1}")
    vec = TestVectors(images.astype(np.uint8), layers, classes)
    _check_vectors(vec, net, str(path))
    return vec

