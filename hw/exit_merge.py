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

__all__ = ["InOrderMerge", "MergeNestTiming"]


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


class MergeNestTiming:
    """Cycle-exact timing of the nest of :class:`InOrderMerge` s at the accelerator's output:
    merge ``j`` takes exit ``j``'s order and result FIFOs (``branches[j].order``,
    ``branches[j].result``: :class:`hw.sync_fifo_timing.SyncFifoTiming`) and, as ``rest``,
    merge ``j + 1`` (the last merge: the output serializer).  The output is always ready.

    Stage-model interface of :mod:`hw.cycle_model` with a combinational valid:
    ``valid_from(rest_valid)`` (the serializer's valid of this cycle) before ``ready``.
    ``ready`` also tells each branch which of its FIFOs are read this cycle
    (``order_read``, ``result_read``), before the branches step.
    """

    def __init__(self, classes: int, branches: list):
        self.beats = 1 + classes
        self.branches = branches
        n = len(branches)
        self.have, self.sel, self.count = [False] * n, [False] * n, [0] * n
        self._valids = None

    def valid_from(self, rest_valid: bool) -> bool:
        v = rest_valid
        valids = []
        for j in reversed(range(len(self.branches))):
            if self.have[j]:
                v = self.branches[j].result.r_rdy() if self.sel[j] else v
            else:
                v = False
            valids.append(v)
        self._valids = valids[::-1]
        return v

    def ready(self, down_ready: bool) -> bool:
        r = down_ready
        self._fires, self._orders = [], []
        for j, br in enumerate(self.branches):
            v = self._valids[j]
            fire = v and r
            last = fire and self.count[j] == self.beats - 1
            order_ready = not self.have[j] or last
            br.order_read = order_ready and br.order.r_rdy()
            br.result_read = self.have[j] and self.sel[j] and r and br.result.r_rdy()
            self._fires.append((fire, last))
            self._orders.append(br.order.head() if br.order_read else None)
            r = self.have[j] and not self.sel[j] and r
        return r

    def step(self, in_fire, out_fire, cycle, in_valid=True):
        for j, ((fire, last), order) in enumerate(zip(self._fires, self._orders)):
            if fire:
                self.count[j] = 0 if last else self.count[j] + 1
            if order is not None:
                self.have[j], self.sel[j], self.count[j] = True, bool(order), 0
            elif last:
                self.have[j] = False

    def timing_state(self) -> tuple:
        return (tuple(self.have), tuple(self.sel), tuple(self.count))
