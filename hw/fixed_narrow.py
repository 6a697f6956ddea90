"""Narrowing of a fixed-point stream: ``W`` elements per beat in, ``N`` per beat out (``N``
divides ``W``), order kept.

The residual accelerator's engines emit ``PE`` accumulators per beat, but a beat arrives only
every ``SF`` (or more) cycles, so per-lane fixed-point units (batch norm, RPReLU, add, pool:
each lane a multiplier) as wide as ``PE`` idle most of the time.  This unit splits each wide
beat into ``W/N`` narrow ones, so those units can be ``N`` lanes wide
(:func:`hw.residual_accelerator.fixed_elems_per_beat` picks ``N``).

# Ref: a FINN-style down-converting width adapter (finn-hlslib ``StreamingDataWidthConverter``
# for ``InWidth`` a multiple of ``OutWidth``), here with a register handshake.
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .fixed_stream import check_bits, fixed_layout
from .pixel_stream import check_positive

__all__ = ["FixedNarrow", "NarrowTiming"]


class FixedNarrow(wiring.Component):
    """Split each beat of ``in_elems`` signed ``bits``-bit elements into ``in_elems /
    out_elems`` beats of ``out_elems`` (element ``j`` of input beat ``b`` is element
    ``j mod N`` of output beat ``b*(W/N) + j // N``).

    Interface
    ---------
    i : In(stream.Signature(ArrayLayout(signed(bits), W)))
    o : Out(stream.Signature(ArrayLayout(signed(bits), N)))

    Storage and timing (cycle exact, :class:`NarrowTiming`)
    -------------------------------------------------------
    One register of a wide beat, shifted down by ``N`` elements per output beat, and a piece
    counter.  ``o.valid = held``; ``i.ready = ~held | (o.ready & last piece)``: a new wide
    beat loads in the cycle the last piece of the previous one leaves, so with ``o`` always
    ready ``W/N`` output beats per input beat, one per cycle (latency 1).  No arithmetic.
    """

    def __init__(self, *, bits: int, in_elems: int, out_elems: int):
        check_bits("bits", bits)
        check_positive(in_elems=in_elems, out_elems=out_elems)
        if in_elems % out_elems:
            raise ValueError(f"out_elems must divide in_elems {in_elems}, not {out_elems!r}")
        self._bits, self._w, self._n = bits, in_elems, out_elems
        super().__init__({
            "i": In(stream.Signature(fixed_layout(bits, in_elems))),
            "o": Out(stream.Signature(fixed_layout(bits, out_elems)))})

    bits = property(lambda self: self._bits)
    in_elems = property(lambda self: self._w)
    out_elems = property(lambda self: self._n)

    @property
    def pieces(self) -> int:
        """Output beats per input beat, ``W/N``."""
        return self._w // self._n

    @property
    def latency(self) -> int:
        return 1

    def timing_model(self) -> "NarrowTiming":
        return NarrowTiming(self.pieces)

    def elaborate(self, platform):
        m = Module()
        k, piece_bits = self.pieces, self._n * self._bits
        buf = Signal(self._w * self._bits, name="buf")
        held = Signal()
        idx = Signal(range(max(k, 2)), name="piece")
        last = Signal()
        o_fire, i_fire = Signal(), Signal()
        m.d.comb += [
            last.eq(idx == k - 1),
            self.o.valid.eq(held),
            self.o.payload.eq(buf[:piece_bits]),
            self.i.ready.eq(~held | (self.o.ready & last)),
            o_fire.eq(held & self.o.ready),
            i_fire.eq(self.i.valid & self.i.ready),
        ]
        with m.If(o_fire):
            with m.If(last):
                m.d.sync += [idx.eq(0), held.eq(0)]
            with m.Else():
                m.d.sync += [idx.eq(idx + 1), buf.eq(buf[piece_bits:])]
        with m.If(i_fire):
            m.d.sync += [buf.eq(self.i.payload.as_value()), held.eq(1)]
        return m


class NarrowTiming:
    """Cycle-exact timing of :class:`FixedNarrow` (the stage-model interface: ``valid()``,
    ``ready(down_ready)``, ``step(in_fire, out_fire, cycle, in_valid)``)."""

    __slots__ = ("pieces", "held", "idx")

    def __init__(self, pieces: int):
        check_positive(pieces=pieces)
        self.pieces, self.held, self.idx = pieces, False, 0

    def valid(self) -> bool:
        return self.held

    def ready(self, down_ready: bool) -> bool:
        return (not self.held) or (down_ready and self.idx == self.pieces - 1)

    def step(self, in_fire: bool, out_fire: bool, cycle: int = 0, in_valid: bool = True) -> None:
        if out_fire:
            if self.idx == self.pieces - 1:
                self.idx, self.held = 0, False
            else:
                self.idx += 1
        if in_fire:
            self.held = True
