"""FracBNN's precision gating switched off: every gate of a compiled network opened.

A gated layer (2-bit ``frac2`` inputs, :attr:`sw.compiled_net.LayerSpec.gated`) computes
the LSB plane of output ``j`` only where the MSB plane's accumulator passes its gate,
``acc_m > G[j]`` (docs/compiled-network.md, "Gates").  With ``G[j] = -MW - 1`` every gate
opens for every input (``acc_m >= -MW``): the same hardware then runs both planes of every
output vector, the cost of FracBNN's 2-bit activations without gating, and the network
computes the ungated function (both planes always), which the golden model follows since
it reads the same constants.  ``python -m sim.run --gating off`` measures it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

__all__ = ["open_gate", "open_gates"]


def open_gate(in_features: int) -> int:
    """The gate threshold that every accumulator of ``in_features`` inputs passes:
    ``-in_features - 1`` (the lowest value the format allows)."""
    return -int(in_features) - 1


def open_gates(net):
    """``net`` (a :class:`~sw.compiled_net.CompiledNetwork` or
    :class:`~sw.residual_graph.ResidualNetwork`) with the gates of every gated layer (and
    of every gated early-exit classifier) set to :func:`open_gate`; everything else
    unchanged.  The result is a new network (``net`` is not modified)."""
    def opened(layer):
        if not layer.gated:
            return layer
        return replace(layer, gates=np.full(layer.out_features, open_gate(layer.in_features),
                                            np.int64))

    changes = {"layers": [opened(l) for l in net.layers]}
    if getattr(net, "exits", None):
        changes["exits"] = [replace(ex, layer=opened(ex.layer)) for ex in net.exits]
    return replace(net, **changes)
