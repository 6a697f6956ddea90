"""Stream fork: every input beat goes to each of ``n`` outputs (an eager fork).

Used after an engine with an early exit: layer k's output stream goes both to the exit engine
and to the hold buffer (docs/hardware.md, "Early exits").
"""

from __future__ import annotations

import operator
from functools import reduce

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ForkTiming", "StreamFork"]


class StreamFork(wiring.Component):
    """Copy one stream to ``n`` streams; each output may take the beat in a different cycle.

    Interface
    ---------
    i : In(stream.Signature(shape))
    o0 .. o{n-1} : Out(stream.Signature(shape))

    Timing
    ------
    Output ``j`` offers the input beat while ``i.valid`` and it has not yet taken it (a
    ``done`` flip-flop per output); ``i.ready`` is high in the cycle in which every output
    has taken the beat or takes it now (combinational from the ``o.ready``; no path from a
    ready to a valid).  Zero latency; one beat per cycle when every output is ready.
    Every beat reaches every output exactly once, in order.
    """

    def __init__(self, shape, n: int = 2):
        if not isinstance(n, int) or n < 2:
            raise ValueError(f"a fork has at least 2 outputs, not {n!r}")
        self._n = n
        super().__init__({"i": In(stream.Signature(shape)),
                          **{f"o{j}": Out(stream.Signature(shape)) for j in range(n)}})

    @property
    def outputs(self) -> list:
        return [getattr(self, f"o{j}") for j in range(self._n)]

    def elaborate(self, platform):
        m = Module()
        done = [Signal(name=f"done{j}") for j in range(self._n)]
        taken = []
        for o, d in zip(self.outputs, done):
            m.d.comb += [o.payload.eq(self.i.payload), o.valid.eq(self.i.valid & ~d)]
            taken.append(d | o.ready)
        all_taken = Signal()
        m.d.comb += all_taken.eq(reduce(operator.and_, taken))
        m.d.comb += self.i.ready.eq(all_taken)
        for o, d in zip(self.outputs, done):
            with m.If(self.i.valid & all_taken):
                m.d.sync += d.eq(0)
            with m.Elif(o.valid & o.ready):
                m.d.sync += d.eq(1)
        return m


class ForkTiming:
    """Cycle-exact timing of :class:`StreamFork` (one ``done`` flag per output).

    ``out_valid(j, in_valid)``: output ``j`` offers the beat; ``ready(out_readies)``: the
    input's ready from the outputs' readies of the same cycle; :meth:`step` with the input's
    valid and each output's ready of that cycle.
    """

    __slots__ = ("done",)

    def __init__(self, n: int = 2):
        self.done = [False] * n

    def out_valid(self, j: int, in_valid: bool) -> bool:
        return in_valid and not self.done[j]

    def ready(self, out_readies) -> bool:
        return all(d or r for d, r in zip(self.done, out_readies))

    def step(self, in_valid: bool, out_readies) -> None:
        if in_valid and self.ready(out_readies):
            self.done = [False] * len(self.done)
        else:
            self.done = [d or (in_valid and r) for d, r in zip(self.done, out_readies)]
