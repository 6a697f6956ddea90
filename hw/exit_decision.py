"""Early-exit decision unit: one exit's result stream -> exit-or-continue per image.

It reads the exit classifier's result as the output serializer emits it (``1 + C`` beats per
image: the class, then the ``C`` scores sign-extended to 32 bits, ``last`` on the final one),
computes the margin ``best - second best`` of the scores serially (one compare per beat),
and decides ``take = margin >= T`` (docs/compiled-network.md, "Early exits"; the class on
beat 0 is the serializer's: the smallest index among the maximal scores, the golden rule).
"""

from __future__ import annotations

from amaranth import Array, Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["DecisionTiming", "ExitDecision", "RESULT_LAYOUT"]

#: A result beat: what :class:`hw.output_serializer.OutputSerializer` emits.
RESULT_LAYOUT = data.StructLayout({"data": 32, "last": 1})


class ExitDecision(wiring.Component):
    """Decide, per image, whether it leaves at this exit.

    Parameters
    ----------
    classes : int
        ``C >= 2``.
    margin : int
        ``T >= 0``: the image exits when ``best - second best >= T``.
    acc_width : int
        Width of a score (its sign bit is bit ``acc_width - 1`` of the beat).

    Interface
    ---------
    i : In(stream.Signature(RESULT_LAYOUT))   the exit's result, ``1 + C`` beats per image
    d : Out(stream.Signature(unsigned(1)))    one beat per image: 1 = exits here
    o : Out(stream.Signature(RESULT_LAYOUT))  the ``1 + C`` beats of each image that exits

    Timing
    ------
    Single-buffered: *collect* (``i.ready`` high) takes the ``1 + C`` beats into registers,
    tracking best and second best; the margin is compared in the next cycle and the decision
    is offered on ``d`` from the cycle after that; when ``d`` fires, an image that exits is emitted on ``o`` (``1 + C`` beats, one
    per accepted handshake, from the next cycle) and collection resumes after its last beat;
    an image that continues is dropped and collection resumes the next cycle.  So at most
    ``2*(1 + C) + 3`` cycles per image with ``d`` and ``o`` always ready.
    """

    def __init__(self, classes: int, margin: int, acc_width: int):
        if not isinstance(classes, int) or classes < 2:
            raise ValueError(f"classes must be an integer >= 2, not {classes!r}")
        if not isinstance(margin, int) or margin < 0:
            raise ValueError(f"margin must be an integer >= 0, not {margin!r}")
        if not isinstance(acc_width, int) or not 1 <= acc_width <= 32:
            raise ValueError(f"acc_width must be in 1..32, not {acc_width!r}")
        self._classes, self._margin, self._acc_width = classes, margin, acc_width
        super().__init__({"i": In(stream.Signature(RESULT_LAYOUT)),
                          "d": Out(stream.Signature(unsigned(1))),
                          "o": Out(stream.Signature(RESULT_LAYOUT))})

    def elaborate(self, platform):
        m = Module()
        c, w = self._classes, self._acc_width
        beats = Array(Signal(32, name=f"beat{k}") for k in range(1 + c))
        count = Signal(range(c + 2))
        best = Signal(signed(w))
        second = Signal(signed(w))
        take = Signal()
        score = Signal(signed(w))
        m.d.comb += score.eq(self.i.payload.data[:w].as_signed())
        lowest = -(1 << (w - 1))
        m.d.comb += self.d.payload.eq(take)
        with m.FSM():
            with m.State("COLLECT"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += [beats[count].eq(self.i.payload.data), count.eq(count + 1)]
                    with m.If(count == 1):
                        m.d.sync += [best.eq(score), second.eq(lowest)]
                    with m.Elif(count > 1):
                        with m.If(score > best):
                            m.d.sync += [best.eq(score), second.eq(best)]
                        with m.Elif(score > second):
                            m.d.sync += second.eq(score)
                    with m.If(count == c):
                        m.next = "MARGIN"
            with m.State("MARGIN"):
                # best - second can need w + 1 bits: compared in a wide signed type.
                diff = Signal(signed(w + 2))
                m.d.comb += diff.eq(best - second)
                m.d.sync += [take.eq(diff >= self._margin), count.eq(0)]
                m.next = "DECIDE"
            with m.State("DECIDE"):
                m.d.comb += self.d.valid.eq(1)
                with m.If(self.d.ready):
                    m.next = "EMIT"
                    with m.If(~take):
                        m.next = "COLLECT"
            with m.State("EMIT"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.data.eq(beats[count]),
                             self.o.payload.last.eq(count == c)]
                with m.If(self.o.ready):
                    m.d.sync += count.eq(count + 1)
                    with m.If(count == c):
                        m.d.sync += count.eq(0)
                        m.next = "COLLECT"
        return m


class DecisionTiming:
    """Cycle-exact timing of :class:`ExitDecision`: its state machine with the decisions
    taken from ``takes`` (one bool per image reaching this exit, in order: the golden model's
    ``exits == j``).

    Stage-model conventions of :mod:`hw.cycle_model`: ``i_ready()``, ``d_valid()``,
    ``o_valid()`` from the present state; :meth:`step` with the three handshakes.
    """

    __slots__ = ("classes", "takes", "image", "state", "count", "take")

    def __init__(self, classes: int, takes):
        self.classes, self.takes = classes, takes
        self.image = 0
        self.state, self.count, self.take = "COLLECT", 0, False

    def i_ready(self) -> bool:
        return self.state == "COLLECT"

    def d_valid(self) -> bool:
        return self.state == "DECIDE"

    def d_payload(self) -> bool:
        return self.take

    def o_valid(self) -> bool:
        return self.state == "EMIT"

    def step(self, i_fire: bool, d_fire: bool, o_fire: bool) -> None:
        c = self.classes
        if self.state == "COLLECT":
            if i_fire:
                self.count += 1
                if self.count == c + 1:
                    self.state = "MARGIN"
        elif self.state == "MARGIN":
            self.take = bool(self.takes(self.image))
            self.image += 1
            self.count, self.state = 0, "DECIDE"
        elif self.state == "DECIDE":
            if d_fire:
                self.state = "EMIT" if self.take else "COLLECT"
        elif o_fire:
            self.count += 1
            if self.count == c + 1:
                self.count, self.state = 0, "COLLECT"

    def timing_state(self) -> tuple:
        return (self.image, self.state, self.count, self.take)
