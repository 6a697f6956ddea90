"""Hold-or-drop buffer: holds layer k's vectors of each image until the exit decides, then
forwards them to engine k + 1 or drops them (docs/hardware.md, "Early exits")."""

from __future__ import annotations

from amaranth import Module, Signal, unsigned
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["HoldBufferTiming", "HoldDropBuffer"]


class HoldDropBuffer(wiring.Component):
    """A FIFO of beats whose head image is forwarded or dropped on a per-image decision.

    Parameters
    ----------
    width : int
        Beat width.
    beats_per_image : int
        ``B``: beats of one image.
    depth : int
        FIFO depth, at least ``B``: the fork in front feeds this buffer and the exit path in
        lockstep, and the exit path decides only after it has seen a whole image, so a
        smaller buffer would stall the fork before the decision could come (deadlock).

    Interface
    ---------
    i : In(stream.Signature(width))      beats, ``B`` per image, images in order
    d : In(stream.Signature(unsigned(1))) one decision per image, in order: 1 = drop
    o : Out(stream.Signature(width))     the beats of the images not dropped, in order

    Timing
    ------
    ``i`` is a :class:`amaranth.lib.fifo.SyncFIFOBuffered` write port (ready while not full;
    a written beat is readable after that FIFO's latency).  ``d.ready`` is high while no
    decision is held; a decision taken at cycle ``c`` applies from ``c + 1`` to the next
    ``B`` beats at the FIFO head: dropped at one per cycle as they become readable, or
    offered on ``o`` (``o.valid`` = the FIFO's read valid); the decision is released with
    the ``B``-th beat, so the next decision can be taken in that same cycle.
    """

    def __init__(self, width: int, beats_per_image: int, depth: int):
        for name, value in (("width", width), ("beats_per_image", beats_per_image),
                            ("depth", depth)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if depth < beats_per_image:
            raise ValueError(f"depth {depth} must hold one image ({beats_per_image} beats), "
                             f"or the fork in front deadlocks")
        self._width, self._beats, self._depth = width, beats_per_image, depth
        super().__init__({"i": In(stream.Signature(width)),
                          "d": In(stream.Signature(unsigned(1))),
                          "o": Out(stream.Signature(width))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = q = fifo.SyncFIFOBuffered(width=self._width, depth=self._depth)
        m.d.comb += [q.w_data.eq(self.i.payload), q.w_en.eq(self.i.valid),
                     self.i.ready.eq(q.w_rdy)]
        have = Signal()
        drop = Signal()
        count = Signal(range(self._beats + 1))
        m.d.comb += self.d.ready.eq(~have)
        with m.If(self.d.valid & ~have):
            m.d.sync += [have.eq(1), drop.eq(self.d.payload), count.eq(0)]
        m.d.comb += [self.o.payload.eq(q.r_data),
                     self.o.valid.eq(have & ~drop & q.r_rdy)]
        pop = Signal()
        m.d.comb += [pop.eq(have & q.r_rdy & (drop | self.o.ready)), q.r_en.eq(pop)]
        with m.If(pop):
            m.d.sync += count.eq(count + 1)
            with m.If(count == self._beats - 1):
                m.d.sync += have.eq(0)
        # A decision arriving in the cycle the previous one is released: d.ready is low
        # (have is still set), so it is taken the next cycle.
        return m


class HoldBufferTiming:
    """Cycle-exact timing of :class:`HoldDropBuffer` (its FIFO: :class:`hw.sync_fifo_timing.\
SyncFifoTiming`).

    ``i_ready()``, ``d_ready()``, ``o_valid()`` from the present state; :meth:`step` with the
    input handshake, the decision handshake (and its value: drop) and the output's ready.
    """

    __slots__ = ("beats", "fifo", "have", "drop", "count")

    def __init__(self, beats_per_image: int, depth: int):
        from .sync_fifo_timing import SyncFifoTiming
        self.beats = beats_per_image
        self.fifo = SyncFifoTiming(depth)
        self.have = self.drop = False
        self.count = 0

    def i_ready(self) -> bool:
        return self.fifo.w_rdy()

    def d_ready(self) -> bool:
        return not self.have

    def o_valid(self) -> bool:
        return self.have and not self.drop and self.fifo.r_rdy()

    def step(self, i_fire: bool, d_fire: bool, drop: bool, o_ready: bool) -> None:
        pop = self.have and self.fifo.r_rdy() and (self.drop or o_ready)
        self.fifo.step(i_fire, pop)
        if d_fire:
            self.have, self.drop, self.count = True, bool(drop), 0
        if pop:
            self.count += 1
            if self.count == self.beats:
                self.have = False

    def timing_state(self) -> tuple:
        return (self.fifo.timing_state(), self.have, self.drop, self.count)
