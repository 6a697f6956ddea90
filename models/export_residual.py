"""Export a :class:`models.residual.ResNet` as a residual compiled network (format version 4).

:func:`compile_resnet` turns an eval-mode ResNet into a
:class:`~sw.residual_graph.ResidualNetwork` (the graph of docs/compiled-network.md,
"Residual networks (version 4)", node names below); :func:`resnet_taps` computes every graph
tensor with the model's own modules in torch int64; :func:`compare_resnet_with_model` runs
the golden model (:mod:`sw.residual_golden`) and PyTorch on the same images and counts
differences per tap; :func:`export_resnet` refuses to write unless every tap of every image
is identical, then writes the directory atomically (``python -m models.export`` calls it for
a ResNet checkpoint).

Graph of a ResNet (tensor name = node name, the classifier writes ``scores``)::

    thermometer -> stem (conv, layer 0) -> stem_bn (affine)                   residual codes
    per block i:  b{i}_act (binarize) -> b{i}_conv (conv) -> b{i}_bn1 (affine) -> b{i}_rprelu
                  shortcut: [b{i}_pool (avgpool2x2)] [b{i}_dup (dup_channels)]
                  b{i}_add (add: rprelu, shortcut) -> b{i}_bn2 (affine)        residual codes
    pool (global_sumpool) -> classifier (linear) -> scores
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sw.compiled_net import ConvGeometry, Folding, InputSpec, LayerSpec, OutputSpec
from sw.errors import UserError
from sw.residual_golden import ResidualGolden
from sw.residual_graph import Node, ResidualNetwork, TensorSpec
from sw.residual_io import ResidualVectors, write_residual_network

from .fold import ExportError, fold_gates
from .residual import (ResNet, add_saturate_int, avg_pool_2x2_int, duplicate_channels,
                       global_sum_pool_int)

__all__ = ["compile_resnet", "resnet_taps", "compare_resnet_with_model", "export_resnet",
           "block_names"]

# Images per PyTorch/golden pass in the comparison (bounds the taps held at once).
_CHUNK = 32


def block_names(i: int) -> dict[str, str]:
    """Node (= tensor) names of block ``i``."""
    return {k: f"b{i}_{k}" for k in ("act", "conv", "bn1", "rprelu", "pool", "dup", "add", "bn2")}


def _conv_folding(conv) -> Folding:
    from .export import default_folding
    return default_folding([(conv.in_features, conv.out_features, conv.in_channels)])[0]


def _conv_layer(index: int, name: str, conv, folding: Folding | None) -> LayerSpec:
    gates = fold_gates(conv, index) if conv.in_bits == 2 else None
    return LayerSpec(index, name, conv.in_features, conv.out_features, conv.in_bits, "scores",
                     folding or _conv_folding(conv),
                     conv.binary_weight().to(torch.int8).numpy(), gates=gates,
                     conv=ConvGeometry(conv.in_height, conv.in_width, conv.in_channels,
                                       conv.kernel, conv.stride, conv.pad))


def _constants(fn, where: str) -> dict:
    try:
        return fn()
    except ValueError as exc:
        raise ExportError(f"{where}: {exc}") from None


@torch.no_grad()
def compile_resnet(model: ResNet, name: str = "resnet", source: dict | None = None,
                   folding: list[Folding] | None = None) -> ResidualNetwork:
    """The residual compiled network of ``model`` (put in eval mode).

    ``folding``: one :class:`~sw.compiled_net.Folding` per binary convolution (stem first),
    default :func:`models.export.default_folding`'s.  Raises :class:`ExportError` if a
    constant does not fit its width (e.g. a batch norm multiplier beyond 16 bits).
    """
    if not isinstance(model, ResNet):
        raise UserError(f"compile_resnet needs a models.residual.ResNet, not {type(model).__name__}")
    model.eval()
    convs = model.binary_convs()
    if folding is not None and len(folding) != len(convs):
        raise UserError(f"folding has {len(folding)} entries, the network has {len(convs)} "
                        f"convolutions")
    fold = folding or [None] * len(convs)
    fmt = model.fmt
    c, h, w = model.input_shape
    input_spec = InputSpec(c, h, w, 8, tuple(int(t) for t in model.thermometer.thresholds.tolist()))
    tensors = [TensorSpec("image", (h, w, c), "uint8")]
    nodes: list[Node] = []

    def add(node_name, op, inputs, shape, type_, attrs=None, constants=None):
        tensors.append(TensorSpec(node_name if node_name != "classifier" else "scores", shape,
                                  type_, fmt.bits if type_ == "fixed" else None,
                                  fmt.frac if type_ == "fixed" else None))
        nodes.append(Node(node_name, op, inputs, [tensors[-1].name], attrs or {}, constants or {}))
        return tensors[-1].name

    def affine(node_name, src, shape, bn):
        k = _constants(bn.constants, f"node {node_name}")
        return add(node_name, "affine", [src], shape, "fixed", {"shift": int(k["shift"])},
                   {"mult": k["mult"], "add": k["add"]})

    def conv(node_name, src, index, module):
        layer = _conv_layer(index, node_name, module, fold[index])
        layers.append(layer)
        g = layer.conv
        return add(node_name, "conv", [src], (g.out_height, g.out_width, layer.out_features),
                   "acc", {"layer": index, "kernel": g.kernel, "stride": g.stride, "pad": g.pad})

    layers: list[LayerSpec] = []
    x = add("thermometer", "thermometer", ["image"], input_spec.out_map, "bit")
    x = conv("stem", x, 0, model.stem)
    q = affine("stem_bn", x, (h, w, model.widths[0]), model.stem_bn)
    for i, block in enumerate(model.blocks):
        nm = block_names(i)
        ih, iw, cin = block.height, block.width, block.in_channels
        oh, ow, cout = block.out_map
        th = np.clip(block.act.thresholds(), fmt.lo, fmt.hi + 1)
        a = add(nm["act"], "binarize", [q], (ih, iw, cin),
                "bit" if block.activation == "sign" else "frac2",
                {"activation": block.activation}, {"thresholds": th})
        y = conv(nm["conv"], a, i + 1, block.conv)
        y = affine(nm["bn1"], y, (oh, ow, cout), block.bn1)
        k = _constants(block.rprelu.constants, f"node {nm['rprelu']}")
        y = add(nm["rprelu"], "rprelu", [y], (oh, ow, cout), "fixed", {"shift": int(k["shift"])},
                {"gamma": k["gamma"], "mult": k["mult"], "zeta": k["zeta"]})
        r = q
        if block.stride == 2:
            r = add(nm["pool"], "avgpool2x2", [r], (oh, ow, cin), "fixed")
        if cout != cin:
            r = add(nm["dup"], "dup_channels", [r], (oh, ow, cout), "fixed",
                    {"factor": cout // cin})
        s = add(nm["add"], "add", [y, r], (oh, ow, cout), "fixed")
        q = affine(nm["bn2"], s, (oh, ow, cout), block.bn2)
    channels = tensors[-1].shape[-1]
    pooled = add("pool", "global_sumpool", [q], (channels,), "int",
                 {"shift": model.head.input_shift})
    k = _constants(model.head.constants, "node classifier")
    add("classifier", "linear", [pooled], (model.classes,), "int",
        {"weight_bits": model.head.weight_bits, "logit_scale": float(k["logit_scale"])},
        {"weight": k["weight"], "bias": k["bias"]})
    output = OutputSpec(model.classes, 0.0, float(k["logit_scale"]), 0.0)
    return ResidualNetwork(name, input_spec, layers, tensors, nodes, output, dict(source or {}))


def _ints(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.int64).numpy()


@torch.no_grad()
def resnet_taps(model: ResNet, pixels) -> tuple[dict[str, np.ndarray], dict[int, np.ndarray]]:
    """Every graph tensor of :func:`compile_resnet`'s graph for ``pixels`` ``(B, P)``, computed
    by the eval model's own modules in torch int64: ``(tensors, gates)`` with ``tensors`` by
    name ``(B, *shape)`` int64 (bits 0/1, frac2 codes ``q``, accumulators, codes, sums,
    scores) and ``gates`` by conv layer index ``(B, V*MH)`` bool (gated convolutions)."""
    model.eval()
    pixels = torch.as_tensor(np.array(pixels))   # a copy: the loaders' arrays are read-only
    b = pixels.shape[0]
    fmt = model.fmt
    taps: dict[str, np.ndarray] = {}
    gates: dict[int, np.ndarray] = {}
    x = model.encode(pixels)
    taps["thermometer"] = _ints((x + 1) / 2)
    c, h, w = model.input_shape
    acc, _ = model.stem.accumulate(x)
    acc = acc.to(torch.int64).reshape(b, h, w, -1)
    taps["stem"] = _ints(acc)
    q = model.stem_bn.forward_int(acc)
    taps["stem_bn"] = _ints(q)
    for i, block in enumerate(model.blocks):
        nm = block_names(i)
        oh, ow, cout = block.out_map
        a = block.act.activate_codes(q)
        taps[nm["act"]] = _ints((a + (1 if block.activation == "sign" else 3)) / 2)
        acc, gate = block.conv.accumulate(a)
        if gate is not None:
            gates[i + 1] = gate.reshape(b, -1).numpy()
        acc = acc.to(torch.int64).reshape(b, oh, ow, cout)
        taps[nm["conv"]] = _ints(acc)
        y = block.bn1.forward_int(acc)
        taps[nm["bn1"]] = _ints(y)
        y = block.rprelu.forward_int(y)
        taps[nm["rprelu"]] = _ints(y)
        r = q
        if block.stride == 2:
            r = avg_pool_2x2_int(r)
            taps[nm["pool"]] = _ints(r)
        if cout != block.in_channels:
            r = duplicate_channels(r, cout // block.in_channels)
            taps[nm["dup"]] = _ints(r)
        s = add_saturate_int(y, r, fmt)
        taps[nm["add"]] = _ints(s)
        q = block.bn2.forward_int(s)
        taps[nm["bn2"]] = _ints(q)
    sums = global_sum_pool_int(q, model.head.input_shift)
    taps["pool"] = _ints(sums)
    taps["scores"] = _ints(model.head.forward_int(sums))
    return taps, gates


@torch.no_grad()
def compare_resnet_with_model(model: ResNet, net: ResidualNetwork, images: np.ndarray, *,
                              chunk: int = _CHUNK, progress: bool = False) -> dict:
    """Golden model vs PyTorch eval on ``images`` ``(N, P)``, every tap.

    Compares every graph tensor (:func:`resnet_taps`), every gate, the model's public eval
    interfaces (``residual_codes``: the stem's and every block's output codes; ``scores``)
    and the predicted classes (PyTorch: ``argmax`` of ``model.scores``, first maximum).

    Returns ``{"images", "tensors": {name: {"values", "mismatches"}}, "gates": {layer:
    {"values", "mismatches"}}, "predictions_agree", "identical"}``.
    """
    model.eval()
    golden = ResidualGolden(net)
    images = np.asarray(images)
    n = images.shape[0]
    stats = {t.name: {"values": 0, "mismatches": 0} for t in net.tensors[1:]}
    gate_stats = {l.index: {"values": 0, "mismatches": 0} for l in net.layers if l.gated}
    agree = 0
    residual = ["stem_bn"] + [block_names(i)["bn2"] for i in range(len(model.blocks))]
    starts = range(0, n, chunk)
    if progress:
        from sw.progress import progress_bar
        starts = progress_bar(starts, desc="compare", unit="chunk")
    for s in starts:
        part = images[s:s + chunk]
        g = golden.run(part, taps=True)
        taps, gates = resnet_taps(model, part)
        pixels = torch.as_tensor(part)
        # The model's own eval path must give the same residual codes and scores.
        public = dict(zip(residual, (_ints(t) for t in model.residual_codes(pixels))))
        public["scores"] = _ints(model.scores(pixels))
        for name, st in stats.items():
            want = taps.get(name)
            got = g.tensors[name]
            st["values"] += got.size
            if want is None or want.shape != got.shape:
                st["mismatches"] += got.size
                continue
            bad = want != got
            if name in public:
                bad |= public[name] != got
            st["mismatches"] += int(np.count_nonzero(bad))
        for i, st in gate_stats.items():
            got = g.gates[i]
            st["values"] += got.size
            want = gates.get(i)
            st["mismatches"] += (got.size if want is None or want.shape != got.shape
                                 else int(np.count_nonzero(want != got)))
        pred = public["scores"].argmax(axis=1)
        agree += int(np.count_nonzero(pred == g.classes))
    identical = agree == n and not any(st["mismatches"] for st in stats.values()) \
        and not any(st["mismatches"] for st in gate_stats.values())
    return {"images": n, "tensors": stats, "gates": gate_stats, "predictions_agree": agree,
            "identical": identical}


def export_resnet(model: ResNet, outdir: str | Path, images: np.ndarray, *,
                  name: str = "resnet", source: dict | None = None, vectors: int = 2,
                  folding: list[Folding] | None = None, progress: bool = False
                  ) -> ResidualNetwork:
    """Compile ``model``, check golden == PyTorch on every tap of every image of ``images``
    (``(N, P)`` uint8 test images; ``source["checked_images"]`` records ``N``), and write
    ``outdir`` atomically with the first ``vectors`` images as test vectors (every tensor).

    Raises :class:`ExportError` (a :class:`UserError`) naming the differing taps; ``outdir`` is
    then untouched.
    """
    if vectors < 0:
        raise UserError(f"vectors must be >= 0, not {vectors}")
    images = np.asarray(images)
    net = compile_resnet(model, name, source, folding)
    net.source["checked_images"] = int(images.shape[0])
    report = compare_resnet_with_model(model, net, images, progress=progress)
    if not report["identical"]:
        bad = [f"{k}: {v['mismatches']}" for k, v in report["tensors"].items() if v["mismatches"]]
        bad += [f"gates of layer {k}: {v['mismatches']}" for k, v in report["gates"].items()
                if v["mismatches"]]
        raise ExportError(f"golden model and PyTorch differ on {report['images']} images "
                          f"(predictions {report['predictions_agree']}/{report['images']}; "
                          f"{'; '.join(bad[:6]) or 'predictions only'}); not exporting")
    vec = None
    k = min(vectors, images.shape[0])
    if k:
        g = ResidualGolden(net).run(images[:k], taps=True)
        vec = ResidualVectors(images[:k].astype(np.uint8),
                              {t: v.reshape(k, -1).astype(np.int64) for t, v in g.tensors.items()},
                              g.classes.copy())
    write_residual_network(net, outdir, vec)
    return net
