"""2x2 average pooling, stride 2, of a fixed-point pixel stream (``avgpool2x2`` node of
docs/compiled-network.md, "Residual networks (version 4)"), bit exact with
:func:`sw.fixed_point.avg_pool_2x2`: ``round_shift(x[2i,2j] + x[2i,2j+1] + x[2i+1,2j] +
x[2i+1,2j+1], 2)``, round half up, always in range (no saturation)."""

# The structure is hw/maxpool.py's MaxPoolUnit (K = S = 2) with the maximum replaced by an
# exact sum and the emitted window divided by 4.

from __future__ import annotations

from amaranth import Module, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .fixed_stream import accumulate_stage, check_bits, fixed_layout, keep_unused, round_shift
from .maxpool import MaxPoolTiming
from .pixel_stream import check_positive

__all__ = ["AvgPool2x2", "AvgPoolTiming"]


class AvgPool2x2(wiring.Component):
    """2x2 average pooling of an ``H x W x C`` fixed-point stream, one input beat per cycle.

    Parameters
    ----------
    channels : int
        ``C``.
    height, width : int
        ``H x W`` input pixels per image, both even.
    elems_per_beat : int
        ``E``, divides ``C`` (``G = C/E`` beats per pixel).
    bits : int
        Format ``bits`` (2..32) of input and output (same format).

    Interface
    ---------
    i : In(stream.Signature(ArrayLayout(signed(bits), E)))
    o : Out(stream.Signature(ArrayLayout(signed(bits), E)))
        Per image ``H/2 x W/2`` pooled pixels, row-major, ``G`` beats each.

    Storage
    -------
    A row accumulator ``lib.memory.Memory`` of ``W/2 * G`` words of ``E`` exact partial sums
    of ``bits + 2`` bits (one synchronous read port, transparent for its write port) and one
    pipeline register of one beat.  Every beat at ``(y, x, g)`` updates word
    ``(x//2)*G + g``: the window's first beat (even ``y``, even ``x``) overwrites it, the next
    two add to it, and the window's last beat (odd ``y``, odd ``x``) is sent out as
    ``(sum + 2) >> 2`` instead of being written back.  ``E`` adders of ``bits + 2`` bits and
    ``E`` rounding adders; no DSPs.

    Timing (cycle exact, :class:`AvgPoolTiming` = :class:`hw.maxpool.MaxPoolTiming` with
    ``K = 2``)
    ---------------------------------------------------------------------------------------
    ``o.valid = pending`` (a register: the held beat completes a window);
    ``i.ready = ~pending | o.ready`` (combinational from ``o.ready``).  A window's result is
    offered the cycle after its last beat is accepted (``latency = 1``); with ``o`` ready the
    unit accepts one beat per cycle: ``H*W*G`` cycles per image, ``H*W*G/4`` output beats.
    """

    def __init__(self, *, channels: int, height: int, width: int, elems_per_beat: int,
                 bits: int):
        check_positive(channels=channels, height=height, width=width,
                       elems_per_beat=elems_per_beat)
        check_bits("bits", bits)
        if channels % elems_per_beat:
            raise ValueError(f"elems_per_beat must divide channels {channels}, "
                             f"not {elems_per_beat!r}")
        if height % 2 or width % 2:
            raise ValueError(f"avgpool2x2 needs an even height and width, not {height}x{width}")
        self._channels, self._height, self._width = channels, height, width
        self._n, self._bits = elems_per_beat, bits
        layout = fixed_layout(bits, elems_per_beat)
        super().__init__({"i": In(stream.Signature(layout)), "o": Out(stream.Signature(layout))})

    channels = property(lambda self: self._channels)
    height = property(lambda self: self._height)
    width = property(lambda self: self._width)
    elems_per_beat = property(lambda self: self._n)
    bits = property(lambda self: self._bits)
    out_height = property(lambda self: self._height // 2)
    out_width = property(lambda self: self._width // 2)

    @property
    def folds(self) -> int:
        return self._channels // self._n

    @property
    def beats_in_per_image(self) -> int:
        return self._height * self._width * self.folds

    @property
    def beats_out_per_image(self) -> int:
        return self.out_height * self.out_width * self.folds

    @property
    def latency(self) -> int:
        """Cycles from accepting a window's last beat to offering its result."""
        return 1

    @property
    def buffer_words(self) -> int:
        """Depth of the row accumulator (``W/2 * G`` words of ``E*(bits+2)`` bits)."""
        return self.out_width * self.folds

    def timing_model(self) -> "AvgPoolTiming":
        return AvgPoolTiming(channels=self._channels, height=self._height, width=self._width,
                             elems_per_beat=self._n)

    def elaborate(self, platform):
        m = Module()
        n, g_n, w = self._n, self.folds, self._width
        g = Signal(range(g_n), name="g")
        x = Signal(range(w), name="x")
        yodd = Signal(name="yodd")
        xo = Signal(range(w // 2), name="xo")
        xodd = x[0]
        # The row buffer holds the pixel pair sums of an even row for its odd row.
        i_fire, totals = accumulate_stage(
            m, self.i, self.o, name="rowbuf", sum_shape=signed(self._bits + 2), elems=n,
            depth=self.buffer_words, addr=xo * g_n + g, first=~yodd & ~xodd,
            last=yodd & xodd)
        unused = []
        for j, total in enumerate(totals):
            mean = round_shift(m, total, 2, f"r{j}", unused)
            m.d.comb += self.o.payload[j].eq(mean)
            # The mean always fits `bits` (no saturation): the assignment drops the rounding
            # sum's top bit, which a flattened netlist would otherwise flag as unused.
            unused.append(mean[self._bits:])
        keep_unused(m, unused)

        with m.If(i_fire):
            with m.If(g == g_n - 1):
                m.d.sync += g.eq(0)
                with m.If(x == w - 1):
                    m.d.sync += [x.eq(0), xo.eq(0)]
                    m.d.sync += yodd.eq(~yodd)      # H even: yodd is 0 at each image start
                with m.Else():
                    m.d.sync += x.eq(x + 1)
                    with m.If(xodd):
                        m.d.sync += xo.eq(xo + 1)
            with m.Else():
                m.d.sync += g.eq(g + 1)
        return m


class AvgPoolTiming(MaxPoolTiming):
    """Cycle-exact timing of :class:`AvgPool2x2`: the 2x2 max pool's (same structure)."""

    __slots__ = ()

    def __init__(self, *, channels: int, height: int, width: int, elems_per_beat: int):
        super().__init__(channels=channels, height=height, width=width,
                         elems_per_beat=elems_per_beat, kernel=2, stride=2)
