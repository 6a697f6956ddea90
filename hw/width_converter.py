"""Order-preserving stream width converter between arbitrary element counts per beat.

Elements are either single bits or ``(m, l)`` pairs (the two planes of a 2-bit activation).
A beat of ``n`` bit elements is ``unsigned(n)`` with element ``k`` at bit ``k``; a beat of ``n``
pair elements is ``StructLayout({"m": n, "l": n})`` with element ``k`` at bit ``k`` of both
planes (the layouts of hw_common's "Internal streams").  The converter can also append a fixed
number of zero elements after every input vector (layer 0's ``MW -> MWp`` padding).
"""

from __future__ import annotations

import math

from amaranth import Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["BIT", "ML_PAIR", "StreamWidthConverter", "ConverterTiming", "beat_layout",
           "plane_names"]

#: One binary element per position.
BIT = unsigned(1)
#: One 2-bit activation per position, carried as an MSB plane ``m`` and an LSB plane ``l``.
ML_PAIR = data.StructLayout({"m": 1, "l": 1})


def plane_names(elem_shape) -> tuple[str, ...] | None:
    """Plane field names of an element shape: ``None`` for :data:`BIT`, ``("m", "l")`` for pairs."""
    if elem_shape == BIT or elem_shape == 1:
        return None
    if elem_shape == ML_PAIR:
        return ("m", "l")
    raise ValueError(f"elem_shape must be BIT (unsigned(1)) or ML_PAIR, not {elem_shape!r}")


def beat_layout(elem_shape, count: int):
    """Payload shape of a beat of ``count`` elements of ``elem_shape``."""
    names = plane_names(elem_shape)
    if names is None:
        return unsigned(count)
    return data.StructLayout({name: count for name in names})


class StreamWidthConverter(wiring.Component):
    """Re-pack a stream of ``in_count`` elements per beat into ``out_count`` elements per beat.

    Parameters
    ----------
    elem_shape : :data:`BIT` or :data:`ML_PAIR`
        Element kind.
    in_count, out_count : int
        Elements per input / output beat (any positive integers, not necessarily multiples).
    vector_elems : int or None
        With padding: elements per input vector (a multiple of ``in_count``).
    pad_elems : int
        Zero elements appended after each input vector of ``vector_elems`` elements.

    Interface
    ---------
    i : In(stream.Signature(beat_layout(elem_shape, in_count)))
    o : Out(stream.Signature(beat_layout(elem_shape, out_count)))

    The element sequence on ``o`` is the sequence on ``i`` (lowest element index of a beat
    first), with ``pad_elems`` zeros after every vector; nothing is lost or duplicated.

    Timing
    ------
    A buffer holds ``capacity = out_count + 2*in_count - 1 + pad_elems`` elements with fill
    level ``count`` (a register in units of ``gcd(in_count, out_count, pad_elems)``, the step
    it moves by).  Each cycle:

    * ``o.valid = count >= out_count`` (a function of registers only; ``o.payload`` = the
      oldest ``out_count``);
    * ``i.ready = count <= capacity - in_count - pad_elems`` (a function of registers only,
      independent of ``o.ready``);
    * ``count' = count - out_count*[o fires] + in_count*[i fires]
      + pad_elems*[i fires on the last beat of a vector]``.

    So an element accepted in cycle ``t`` can leave at ``t+1`` at the earliest (latency 1),
    and the converter sustains the full rate of the slower side.
    """

    def __init__(self, elem_shape, in_count: int, out_count: int, *,
                 vector_elems: int | None = None, pad_elems: int = 0):
        self._planes = plane_names(elem_shape)
        for name, value in (("in_count", in_count), ("out_count", out_count)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if not isinstance(pad_elems, int) or pad_elems < 0:
            raise ValueError(f"pad_elems must be a non-negative integer, not {pad_elems!r}")
        if pad_elems and vector_elems is None:
            raise ValueError("pad_elems needs vector_elems (elements per input vector)")
        if vector_elems is not None:
            if not isinstance(vector_elems, int) or vector_elems < 1 or vector_elems % in_count:
                raise ValueError(f"vector_elems must be a positive multiple of in_count={in_count}, "
                                 f"not {vector_elems!r}")
        self._elem_shape = ML_PAIR if self._planes else BIT
        self._in_count = in_count
        self._out_count = out_count
        self._vector_elems = vector_elems
        self._pad_elems = pad_elems
        super().__init__({
            "i": In(stream.Signature(beat_layout(self._elem_shape, in_count))),
            "o": Out(stream.Signature(beat_layout(self._elem_shape, out_count))),
        })

    elem_shape = property(lambda self: self._elem_shape)
    in_count = property(lambda self: self._in_count)
    out_count = property(lambda self: self._out_count)
    vector_elems = property(lambda self: self._vector_elems)
    pad_elems = property(lambda self: self._pad_elems)

    @property
    def capacity(self) -> int:
        """Buffer size in elements."""
        return self._out_count + 2 * self._in_count - 1 + self._pad_elems

    @property
    def accept_limit(self) -> int:
        """The input is ready while the fill level is at most this."""
        return self.capacity - self._in_count - self._pad_elems

    @property
    def beats_per_vector(self) -> int | None:
        """Input beats per vector (``None`` without padding)."""
        if self._vector_elems is None:
            return None
        return self._vector_elems // self._in_count

    @property
    def latency(self) -> int:
        """Minimum cycles from accepting an element to offering it."""
        return 1

    def _planes_of(self, view):
        if self._planes is None:
            return [view]
        return [getattr(view, name) for name in self._planes]

    def elaborate(self, platform):
        m = Module()
        cap, n_in, n_out = self.capacity, self._in_count, self._out_count
        # The fill level only moves in steps of g elements: it is kept in units of g
        # (count = g*units), and the handshake compares are on those few values (one LUT,
        # not a carry chain in front of i_fire, the write position and the level update).
        g = math.gcd(n_in, n_out, self._pad_elems or 0)
        units = Signal(range(cap // g + 1))
        in_planes = self._planes_of(self.i.payload)
        out_planes = self._planes_of(self.o.payload)
        bufs = [Signal(cap, name=f"buf{k}") for k in range(len(in_planes))]

        o_fire = Signal()
        i_fire = Signal()
        m.d.comb += [
            self.o.valid.eq(units >= n_out // g),
            self.i.ready.eq(units <= self.accept_limit // g),
            o_fire.eq(self.o.valid & self.o.ready),
            i_fire.eq(self.i.valid & self.i.ready),
        ]
        for buf, plane in zip(bufs, out_planes):
            m.d.comb += plane.eq(buf[:n_out])

        pad_now = Signal()
        if self._vector_elems is not None and self._pad_elems:
            beat = Signal(range(self.beats_per_vector))
            last_beat = beat == self.beats_per_vector - 1
            with m.If(i_fire):
                with m.If(last_beat):
                    m.d.sync += beat.eq(0)
                with m.Else():
                    m.d.sync += beat.eq(beat + 1)
            m.d.comb += pad_now.eq(last_beat)

        # Elements above the fill level are always zero, so padding is just a larger count.
        # The fill level only moves in steps of g elements, so the write position is one of
        # cap/g + 1 constants: a case mux on the level in units of g (one LUT level for the
        # usual few cases) instead of a barrel shifter.  Both candidate positions (with and
        # without this cycle's output) are formed from registers alone; the output handshake
        # only picks one of them at the end.
        for buf, plane in zip(bufs, in_planes):
            kept = Signal(cap)
            m.d.comb += kept.eq(Mux(o_fire, buf >> n_out, buf))
            placed = []
            top = self.accept_limit // g              # highest level at which input fires
            for drop in (0, n_out // g):              # no output / one output this cycle
                at = Signal(n_in + (top - drop) * g, name=f"{buf.name}_at{drop}")
                with m.Switch(units):
                    for u in range(drop, top + 1):
                        with m.Case(u):
                            m.d.comb += at.eq(Value.cast(plane) << ((u - drop) * g))
                placed.append(at)
            m.d.sync += buf.eq(kept | Mux(i_fire, Mux(o_fire, placed[1], placed[0]), 0))

        pad = self._pad_elems
        m.d.sync += units.eq(units - o_fire * (n_out // g) + i_fire * (n_in // g)
                             + (i_fire & pad_now) * (pad // g))
        return m


class ConverterTiming:
    """Cycle-exact model of :class:`StreamWidthConverter` (fill level ``count``,
    ``valid = count >= out``, ``ready = count <= capacity - in - pad``), stage-model interface
    of :mod:`hw.cycle_model`."""

    def __init__(self, in_count: int, out_count: int, *, vector_elems: int | None = None,
                 pad_elems: int = 0):
        self.n_in, self.n_out, self.pad = in_count, out_count, pad_elems
        cap = self.n_out + 2 * self.n_in - 1 + self.pad
        self.limit = cap - self.n_in - self.pad
        self.beats = (vector_elems // self.n_in) if vector_elems else None
        self.count = 0
        self.beat = 0

    def valid(self):
        return self.count >= self.n_out

    def ready(self, down_ready):
        return self.count <= self.limit

    def step(self, in_fire, out_fire, cycle, in_valid=True):
        self.count -= self.n_out * out_fire
        if in_fire:
            self.count += self.n_in
            if self.beats:
                if self.beat == self.beats - 1:
                    self.count += self.pad
                    self.beat = 0
                else:
                    self.beat += 1
