"""Golden integer model of a residual network (format version 4): the graph run node by node.

:class:`ResidualGolden` executes a :class:`~sw.residual_graph.ResidualNetwork`'s nodes in
their (execution) order with the integer operations of :mod:`sw.fixed_point` and, for the
binary convolutions, the chain golden model's exact layer kernel (:class:`sw.golden._Layer`,
raw accumulators and gates).  Every value is an exact integer.  The result is a
:class:`sw.golden.GoldenResult` whose ``layer_outputs``/``gates`` are the convolutions'
accumulators and gates and whose ``tensors`` hold every graph tensor (the per-node taps).
:class:`sw.golden.GoldenModel` delegates here for residual networks.
"""

from __future__ import annotations

import numpy as np

from . import fixed_point as fx
from .errors import UserError
from .golden import _BLAS_THREADS, GoldenResult, _blas_threads, _Layer, thermometer_bits
from .residual_graph import Node, ResidualNetwork

__all__ = ["ResidualGolden", "run_node"]

# Images per pass through the graph: bounds the temporaries of the widest tensors
# (ResNet-20: about 0.4 M values per image over all tensors).
_IMAGE_CHUNK = 64


def run_node(net: ResidualNetwork, node: Node, ins: list[np.ndarray], convs: dict,
             n: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Output ``(N, *shape)`` (and gates ``(N, V*MH)`` of a gated conv, else ``None``) of
    ``node`` on its input arrays (docs/compiled-network.md, "Residual networks")."""
    a, c = node.attrs, node.constants
    x = ins[0]
    op = node.op
    out_t = net.tensor(node.output)
    if op == "thermometer":
        bits = thermometer_bits(x.reshape(n, -1), net.input.thresholds)
        return bits.reshape(n, *out_t.shape), None
    if op == "conv":
        acc, gate = convs[a["layer"]].forward(x)
        return acc.reshape(n, *out_t.shape), gate
    if op == "binarize":
        return fx.threshold_levels(x, c["thresholds"]).astype(np.uint8), None
    if op == "affine":
        return fx.affine(x, c["mult"], a["shift"], c["add"], out_t.fmt), None
    if op == "rprelu":
        return fx.rprelu(x, c["gamma"], c["mult"], a["shift"], c["zeta"], out_t.fmt), None
    if op == "add":
        return fx.add_saturate(x, ins[1], out_t.fmt), None
    if op == "avgpool2x2":
        return fx.avg_pool_2x2(x), None
    if op == "dup_channels":
        return fx.duplicate_channels(x, a["factor"]), None
    if op == "global_sumpool":
        return fx.global_sum_pool(x, a["shift"]), None
    if op == "linear":
        return x @ c["weight"].T + c["bias"], None
    raise AssertionError(f"unknown op {op}")   # the data model refuses it


class ResidualGolden:
    """Bit-exact integer model of a :class:`~sw.residual_graph.ResidualNetwork`."""

    def __init__(self, net: ResidualNetwork):
        if not isinstance(net, ResidualNetwork):
            raise UserError(f"ResidualGolden needs a ResidualNetwork, not {type(net).__name__}")
        self.net = net
        self._convs = {layer.index: _Layer(layer) for layer in net.layers}
        # Free each tensor after its last reader (the taps are kept separately when asked).
        last = {}
        for k, node in enumerate(net.nodes):
            for t in node.inputs:
                last[t] = k
        self._free_after = {k: [t for t, j in last.items() if j == k] for k in range(len(net.nodes))}

    def run(self, images: np.ndarray, *, taps: bool = True, gates: bool | None = None,
            progress: bool = False) -> GoldenResult:
        """Run ``images`` ``(N, P)`` uint8 through the graph.

        Returns a :class:`~sw.golden.GoldenResult`: ``classes`` (smallest index among the
        maximal scores), ``scores`` int64 ``(N, classes)``, ``lsb_fraction`` per conv layer
        (``None`` if ungated); with ``taps`` also ``layer_outputs`` (per conv layer its
        accumulators ``(N, OH*OW*MH)`` int64, HWC), ``gates`` (per conv layer ``(N, V*MH)``
        or ``None``) and ``tensors`` (every graph tensor but the image, ``(N, *shape)``);
        without ``taps`` those are empty (for whole test sets).  ``gates`` keeps the gates
        without the other taps (default: as ``taps``): what the cycle model and the gating
        report need, a few bits per neuron instead of every tensor.
        """
        keep_gates = taps if gates is None else gates
        net = self.net
        n = images.shape[0]
        starts = range(0, n, _IMAGE_CHUNK)
        if progress:
            from .progress import progress_bar
            starts = progress_bar(starts, desc="golden", unit="chunk")
        parts: dict[str, list] = {t.name: [] for t in net.tensors[1:]} if taps else {}
        gate_parts = {l.index: [] for l in net.layers if l.gated}
        fired = {l.index: [0, 0] for l in net.layers if l.gated}
        scores = []
        with _blas_threads(_BLAS_THREADS):
            for s in starts:
                chunk = images[s:s + _IMAGE_CHUNK]
                m = chunk.shape[0]
                values = {"image": chunk}
                for k, node in enumerate(net.nodes):
                    out, gate = run_node(net, node, [values[t] for t in node.inputs],
                                         self._convs, m)
                    values[node.output] = out
                    if gate is not None:
                        fired[node.attrs["layer"]][0] += int(gate.sum())
                        fired[node.attrs["layer"]][1] += gate.size
                        if keep_gates:
                            gate_parts[node.attrs["layer"]].append(gate)
                    if taps:
                        parts[node.output].append(out)
                    for t in self._free_after[k]:
                        if t != "image":
                            del values[t]
                scores.append(values["scores"])
        scores = (np.concatenate(scores) if scores else
                  np.zeros((0, net.classes), np.int64)).astype(np.int64)
        classes = net.output.decode(scores)
        lsb = [None if not l.gated else (fired[l.index][0] / fired[l.index][1]
                                         if fired[l.index][1] else 0.0) for l in net.layers]
        tensors, layer_outputs, gate_arrays = {}, [], []
        if taps:
            for t in net.tensors[1:]:
                tensors[t.name] = (np.concatenate(parts[t.name]) if parts[t.name] else
                                   np.zeros((0, *t.shape), np.int64))
            for l in net.layers:
                acc = tensors[net.conv_node(l.index).output]
                layer_outputs.append(acc.reshape(n, -1))
        if keep_gates:
            gate_arrays = [None if not l.gated else (
                np.concatenate(gate_parts[l.index]) if gate_parts[l.index] else
                np.zeros((0, l.vectors_per_image * l.out_features), bool))
                for l in net.layers]
        return GoldenResult(classes, scores, layer_outputs, gate_arrays, lsb, tensors=tensors)
