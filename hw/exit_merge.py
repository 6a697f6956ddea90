"""In-order merge of the early-exit paths' results (docs/hardware.md, "Early exits").

Each path keeps image order; the decision unit of an exit pushes, in image order, which path
each image takes into the order FIFO; this block pops it and forwards the next whole result
(``1 + C`` beats, ``last`` on the final one) from that path, so the output stays in image
order.  Exits nest: the "continue" input of exit ``j``'s merge is exit ``j + 1``'s merge.
"""

from __future__ import annotations

from amaranth import Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .exit_decision import RESULT_LAYOUT

__all__ = ["InOrderMerge"]


class InOrderMerge(wiring.Component):
    """Merge two result streams in the order given by ``order``.

    Interface
    ---------
    order : In(stream.Signature(unsigned(1)))  per image: 1 = from ``exit``, 0 = from ``rest``
    exit, rest : In(stream.Signature(RESULT_LAYOUT))
    o : Out(stream.Signature(RESULT_LAYOUT))
    taken : Out(unsigned(1))                     the path of the result now on ``o`` (1: exit)

    Timing
    ------
    ``order.ready`` is high while no result is being forwarded; from the cycle after an
    order beat is taken, ``o`` is the selected input (combinational valid, payload and
    ready) until its ``last`` beat is accepted, and the next order beat can be taken in
    that same cycle.  The other input is never read meanwhile, so neither path waits for
    the other except through ``o``.
    """

    def __init__(self):
        super().__init__({"order": In(stream.Signature(unsigned(1))),
                          "exit": In(stream.Signature(RESULT_LAYOUT)),
                          "rest": In(stream.Signature(RESULT_LAYOUT)),
                          "o": Out(stream.Signature(RESULT_LAYOUT)),
                          "taken": Out(unsigned(1))})

    def elaborate(self, platform):
        m = Module()
        have = Signal()
        sel = Signal()
        m.d.comb += self.taken.eq(sel)
        last_out = self.o.valid & self.o.ready & self.o.payload.last
        m.d.comb += self.order.ready.eq(~have | last_out)
        with m.If(self.order.valid & self.order.ready):
            m.d.sync += [have.eq(1), sel.eq(self.order.payload)]
        with m.Elif(last_out):
            m.d.sync += have.eq(0)
        with m.If(have):
            with m.If(sel):
                m.d.comb += [self.o.valid.eq(self.exit.valid), self.o.payload.eq(self.exit.payload),
                             self.exit.ready.eq(self.o.ready)]
            with m.Else():
                m.d.comb += [self.o.valid.eq(self.rest.valid), self.o.payload.eq(self.rest.payload),
                             self.rest.ready.eq(self.o.ready)]
        return m
