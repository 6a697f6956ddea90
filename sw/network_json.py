"""The ``network.json`` document of a compiled network (docs/compiled-network.md): each
layer's entry with its folding and memories, and the dataflow graph (``graph``, version 2).
:mod:`sw.network_io` writes and checks it; :mod:`sw.compiled_net` is the data model.
"""

from __future__ import annotations

import math

from .compiled_net import EXITS_VERSION, FORMAT, VERSION, CompiledNetwork, LayerSpec

__all__ = ["layer_json", "network_graph", "network_to_json"]


def layer_json(layer: LayerSpec, prefix: str = "L") -> dict:
    """The ``layers`` entry of ``layer`` (``exits``: ``prefix`` ``X``): sizes, output kind,
    accumulator range, convolution geometry, folding and its memories' files and widths."""
    i = layer.index
    mems: dict[str, dict] = {
        "weights": {"file": f"{prefix}{i}_weights.mem", "depth": layer.weight_depth,
                    "width": layer.weight_width}}
    if layer.threshold_count:
        mems["thresholds"] = {"file": f"{prefix}{i}_thresholds.mem", "depth": layer.neuron_folds,
                              "width": layer.threshold_width, "count": layer.threshold_count,
                              "threshold_bits": layer.threshold_bits}
    if layer.gated:
        mems["gates"] = {"file": f"{prefix}{i}_gates.mem", "depth": layer.neuron_folds,
                         "width": layer.gate_width, "gate_bits": layer.gate_bits}
    levels = ({"levels": layer.levels, "out_bias": layer.out_bias, "out_scale": layer.out_scale}
              if layer.out == "multithreshold" else {})
    return {"index": i, "name": layer.name, "kind": layer.kind,
            "in_features": layer.in_features,
            "out_features": layer.out_features, "in_bits": layer.in_bits, "out": layer.out,
            **levels,
            "acc_min": layer.acc_min, "acc_max": layer.acc_max,
            **({} if layer.conv is None else {"conv": layer.conv.to_json(),
                                               "pool": layer.pool}),
            "folding": {**layer.folding.to_json(),
                        "mw_padded": layer.mw_padded, "mh_padded": layer.mh_padded,
                        "synapse_folds": layer.synapse_folds,
                        "neuron_folds": layer.neuron_folds},
            "memories": mems}


def _elem_type(layer: LayerSpec) -> str:
    """Graph element type of a layer's output: ``bit``, ``frac2``, ``code2`` (a 2-bit
    multi-threshold code) or ``int`` (scores)."""
    if layer.out in ("frac2", "scores"):
        return {"frac2": "frac2", "scores": "int"}[layer.out]
    return "bit" if layer.out_bits == 1 else "code2"


def network_graph(net: CompiledNetwork) -> dict:
    """The dataflow graph of ``net`` (``network.json`` field ``graph``, version 2).

    Named tensors with their shape (``[H, W, C]`` in HWC order, or ``[N]`` for vectors) and
    element type (``uint8`` pixels, ``bit``: 1-bit ±1, ``frac2``: 2-bit code ``q``,
    ``code2``: 2-bit code of a multi-threshold activation, ``int``: integer scores), and the nodes that produce them, in execution order: ``thermometer``,
    ``pad`` (before a convolution with padding), ``conv``/``dense`` (``layer``: index into
    ``layers``), ``maxpool`` and ``flatten`` (spatial map -> vector, HWC order).
    """
    inp = net.input
    tensors = [{"name": "image", "shape": [inp.height, inp.width, inp.channels],
                "type": "uint8"},
               {"name": "x0", "shape": list(inp.out_map), "type": "bit"}]
    nodes = [{"name": "thermometer", "op": "thermometer", "inputs": ["image"],
              "outputs": ["x0"]}]

    def add(op, name, shape, type_, **attrs):
        src = tensors[-1]["name"]
        dst = f"x{len(tensors) - 1}"
        tensors.append({"name": dst, "shape": list(shape), "type": type_})
        nodes.append({"name": name, "op": op, "inputs": [src], "outputs": [dst], **attrs})

    for layer in net.layers:
        type_ = _elem_type(layer)
        in_type = tensors[-1]["type"]
        if layer.conv is not None:
            c = layer.conv
            if c.pad:
                add("pad", f"pad{layer.index}",
                    (c.padded_height, c.padded_width, c.in_channels), in_type, pad=c.pad)
            add("conv", layer.name, (c.out_height, c.out_width, layer.out_features), type_,
                layer=layer.index, kernel=c.kernel, stride=c.stride)
            if layer.pool:
                add("maxpool", f"pool{layer.index}", layer.out_map, type_,
                    kernel=layer.pool, stride=layer.pool)
        else:
            if len(tensors[-1]["shape"]) == 3:
                add("flatten", f"flatten{layer.index}", [math.prod(tensors[-1]["shape"])],
                    in_type)
            add("dense", layer.name, [layer.out_features], type_, layer=layer.index)
        if layer.index == len(net.layers) - 1:
            tensors[-1]["name"] = nodes[-1]["outputs"][0] = "scores"
    for j, ex in enumerate(net.exits):
        src = next(n["outputs"][0] for n in nodes if n.get("layer") == ex.after
                   and n["op"] in ("dense", "conv"))
        src = next((n["outputs"][0] for n in nodes if n["inputs"] == [src]
                    and n["op"] == "maxpool"), src)
        tensors.append({"name": f"exit{j}_scores", "shape": [ex.layer.out_features],
                        "type": "int"})
        nodes.append({"name": ex.layer.name, "op": "exit", "inputs": [src],
                      "outputs": [f"exit{j}_scores"], "exit": j, "margin": ex.margin})
    return {"tensors": tensors, "nodes": nodes}


def network_to_json(net: CompiledNetwork) -> dict:
    """The ``network.json`` document of ``net``."""
    inp = net.input.to_json()
    inp["order"] = "HWC"
    doc = {"format": FORMAT, "version": EXITS_VERSION if net.exits else VERSION,
           "name": net.name, "source": dict(net.source),
           "input": inp, "layers": [layer_json(l) for l in net.layers],
           "graph": network_graph(net), "output": net.output.to_json()}
    if net.exits:
        doc["exits"] = [{"after": ex.after, "margin": ex.margin,
                         "layer": layer_json(ex.layer, "X")} for ex in net.exits]
    doc["test_vectors"] = net.test_vectors
    return doc
