"""The fixed-point unit of one residual-network node (docs/compiled-network.md, "Residual
networks (version 4)"), its widths and constants taken from the network.

:func:`node_unit` maps ``affine``, ``rprelu``, ``add``, ``avgpool2x2``, ``dup_channels``,
``global_sumpool``, ``binarize`` and ``linear`` nodes of a
:class:`sw.residual_graph.ResidualNetwork` to :class:`hw.fixed_affine.FixedAffine`,
:class:`~hw.fixed_affine.FixedRPReLU`, :class:`hw.fixed_add.FixedAdd`,
:class:`hw.avgpool2x2.AvgPool2x2`, :class:`hw.dup_channels.DupChannels`,
:class:`hw.global_sumpool.GlobalSumPool`, :class:`hw.binarize.Binarize` and
:class:`hw.fixed_linear.FixedLinear`.  Element widths on the ports:

* a ``fixed`` tensor: its format's ``bits``;
* an ``acc`` tensor (a ``conv`` node's raw accumulators, the input of the block's first
  ``affine``): ``signed_bits(acc_min, acc_max)`` of its layer, the layer engine's
  ``acc_width`` (:attr:`hw.mvtu.MatrixVectorThresholdUnit.acc_width`) for ``"scores"``
  layers, so the engine's score beats of ``PE = E`` lanes feed the unit as they are;
* the ``int`` tensor of ``global_sumpool``: :func:`hw.global_sumpool.sum_bits` (with its shift).

It builds no pipeline (the composition with forks, skip FIFOs and the conv engines is
elsewhere).
"""

from __future__ import annotations

from sw.compiled_net import signed_bits
from sw.residual_graph import Node, ResidualNetwork

from .avgpool2x2 import AvgPool2x2
from .binarize import Binarize
from .dup_channels import DupChannels
from .fixed_add import FixedAdd
from .fixed_affine import FixedAffine, FixedRPReLU
from .fixed_linear import FixedLinear
from .global_sumpool import GlobalSumPool, sum_bits

__all__ = ["FIXED_OPS", "tensor_bits", "node_unit"]

#: Ops built by :func:`node_unit`.
FIXED_OPS = ("affine", "rprelu", "add", "avgpool2x2", "dup_channels", "global_sumpool",
             "binarize", "linear")


def tensor_bits(net: ResidualNetwork, name: str) -> int:
    """Signed element width of tensor ``name`` on a stream (see the module docstring)."""
    t = net.tensor(name)
    if t.type == "fixed":
        return t.bits
    if t.type == "acc":
        layer = net.layers[net.producer(name).attrs["layer"]]
        return max(2, signed_bits(layer.acc_min, layer.acc_max))
    if t.type == "int":
        src = net.producer(name)
        if src is not None and src.op == "global_sumpool":
            x = net.tensor(src.inputs[0])
            return sum_bits(x.bits, x.shape[0] * x.shape[1], src.attrs["shift"])
    raise ValueError(f"tensor {name} ({t.type}) is not carried by a fixed-point unit")


def node_unit(net: ResidualNetwork, node: Node, elems_per_beat: int):
    """The unit computing ``node`` with ``elems_per_beat`` elements per beat (dividing the
    input's channels).  ``ValueError`` for an op not in :data:`FIXED_OPS`."""
    if node.op not in FIXED_OPS:
        raise ValueError(f"node {node.name}: op {node.op!r} has no fixed-point unit "
                         f"(one of {', '.join(FIXED_OPS)})")
    a, c = node.attrs, node.constants
    x = net.tensor(node.inputs[0])
    out = net.tensor(node.output)
    n = elems_per_beat
    if node.op == "affine":
        return FixedAffine(channels=x.channels, elems_per_beat=n,
                           in_bits=tensor_bits(net, x.name), out_bits=out.bits,
                           mult=c["mult"].tolist(), add=c["add"].tolist(), shift=a["shift"])
    if node.op == "rprelu":
        return FixedRPReLU(channels=x.channels, elems_per_beat=n, bits=x.bits,
                           gamma=c["gamma"].tolist(), mult=c["mult"].tolist(),
                           zeta=c["zeta"].tolist(), shift=a["shift"])
    if node.op == "add":
        return FixedAdd(bits=x.bits, elems_per_beat=n)
    if node.op == "avgpool2x2":
        h, w, ch = x.shape
        return AvgPool2x2(channels=ch, height=h, width=w, elems_per_beat=n, bits=x.bits)
    if node.op == "dup_channels":
        return DupChannels(channels=x.channels, elems_per_beat=n, bits=x.bits,
                           factor=a["factor"])
    if node.op == "global_sumpool":
        h, w, ch = x.shape
        return GlobalSumPool(channels=ch, height=h, width=w, elems_per_beat=n, bits=x.bits,
                             shift=a["shift"])
    if node.op == "binarize":
        return Binarize(channels=x.channels, elems_per_beat=n, bits=x.bits,
                        activation=a["activation"], thresholds=c["thresholds"].tolist())
    return FixedLinear(channels=x.shape[0], elems_per_beat=n, in_bits=tensor_bits(net, x.name),
                       classes=out.shape[0], weight_bits=a["weight_bits"],
                       weight=c["weight"].tolist(), bias=c["bias"].tolist())
