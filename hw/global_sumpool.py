"""Global sum pooling of a fixed-point pixel stream (``global_sumpool`` node of
docs/compiled-network.md, "Residual networks (version 4)"), bit exact with
:func:`sw.fixed_point.global_sum_pool`: per image and channel the exact sum over the ``H*W``
pixels (``bits + ceil(log2(H*W))`` bits), divided by ``2**shift`` rounding half up (the rest
of the average's ``1/(H*W)`` is in the logit scale)."""

# The structure is hw/maxpool.py's MaxPoolUnit with one window covering the whole image and
# the maximum replaced by an exact sum.

from __future__ import annotations

import math

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .fixed_stream import EmitTiming, accumulate_stage, check_bits, fixed_layout
from .pixel_stream import check_positive

__all__ = ["GlobalSumPool", "SumPoolTiming", "sum_bits"]


def sum_bits(bits: int, pixels: int, shift: int = 0) -> int:
    """Signed width of ``round_shift(sum, shift)`` over ``pixels`` signed ``bits``-bit codes
    (``shift = 0``: ``bits + ceil(log2(pixels))``, the exact sum's)."""
    lo, hi = -pixels << (bits - 1), pixels * ((1 << (bits - 1)) - 1)
    half = (1 << shift) >> 1
    lo, hi = (lo + half) >> shift, (hi + half) >> shift
    return max(2, max((-lo - 1).bit_length(), hi.bit_length()) + 1)


class GlobalSumPool(wiring.Component):
    """Per-channel sum over all ``H x W`` pixels of each image.

    Parameters
    ----------
    channels : int
        ``C``.
    height, width : int
        ``H x W`` pixels per image.
    elems_per_beat : int
        ``E``, divides ``C`` (``G = C/E`` beats per pixel and per output vector).
    bits : int
        Input format ``bits`` (2..32).
    shift : int
        The sums leave as ``(sum + 2**(shift-1)) >> shift`` (0..ceil(log2(H*W)); default 0).

    Interface
    ---------
    i : In(stream.Signature(ArrayLayout(signed(bits), E)))
    o : Out(stream.Signature(ArrayLayout(signed(S), E)))
        ``S = sum_bits(bits, H*W, shift)``.  Per image ``G`` beats: beat ``g`` element ``j``
        is the (shifted) sum of channel ``g*E + j`` (the ``int [C]`` tensor in channel order).

    Storage
    -------
    An accumulator ``lib.memory.Memory`` of ``G`` words of ``E`` sums of ``S`` bits (one
    synchronous read port, transparent for its write port) and one pipeline register of one
    beat.  The image's first pixel overwrites word ``g``, the others add to it, and the last
    pixel's beats leave as ``round_shift(word + beat, shift)`` instead of being written back.
    ``E`` adders of the exact sum's width (and with a shift ``E`` rounding adders on the
    output); no DSPs.

    Timing (cycle exact, :class:`SumPoolTiming`)
    --------------------------------------------
    ``o.valid = pending`` (a register: the held beat belongs to the image's last pixel);
    ``i.ready = ~pending | o.ready``.  A sum is offered the cycle after the last pixel's beat
    of its group is accepted (``latency = 1``); with ``o`` ready one input beat per cycle,
    ``H*W*G`` cycles per image, the ``G`` output beats during the last pixel.
    """

    def __init__(self, *, channels: int, height: int, width: int, elems_per_beat: int,
                 bits: int, shift: int = 0):
        check_positive(channels=channels, height=height, width=width,
                       elems_per_beat=elems_per_beat)
        check_bits("bits", bits)
        pixels = height * width
        most = math.ceil(math.log2(pixels)) if pixels > 1 else 0
        if not isinstance(shift, int) or isinstance(shift, bool) or not 0 <= shift <= most:
            raise ValueError(f"shift must be an int in 0..{most} (ceil(log2(H*W))), "
                             f"not {shift!r}")
        if channels % elems_per_beat:
            raise ValueError(f"elems_per_beat must divide channels {channels}, "
                             f"not {elems_per_beat!r}")
        self._channels, self._height, self._width = channels, height, width
        self._n, self._bits, self._shift = elems_per_beat, bits, shift
        self._exact_bits = sum_bits(bits, pixels)
        self._sum_bits = sum_bits(bits, pixels, shift)
        super().__init__({
            "i": In(stream.Signature(fixed_layout(bits, elems_per_beat))),
            "o": Out(stream.Signature(fixed_layout(self._sum_bits, elems_per_beat)))})

    channels = property(lambda self: self._channels)
    elems_per_beat = property(lambda self: self._n)
    bits = property(lambda self: self._bits)
    out_bits = property(lambda self: self._sum_bits)
    shift = property(lambda self: self._shift)

    @property
    def folds(self) -> int:
        return self._channels // self._n

    @property
    def beats_in_per_image(self) -> int:
        return self._height * self._width * self.folds

    @property
    def beats_out_per_image(self) -> int:
        return self.folds

    @property
    def latency(self) -> int:
        return 1

    def timing_model(self) -> "SumPoolTiming":
        return SumPoolTiming(channels=self._channels, height=self._height, width=self._width,
                             elems_per_beat=self._n)

    def elaborate(self, platform):
        m = Module()
        n, g_n, pixels = self._n, self.folds, self._height * self._width
        g = Signal(range(g_n), name="g")
        p = Signal(range(pixels), name="p")
        i_fire, totals = accumulate_stage(
            m, self.i, self.o, name="acc", sum_shape=signed(self._exact_bits), elems=n,
            depth=g_n, addr=g, first=p == 0, last=p == pixels - 1)
        half = (1 << self._shift) >> 1
        for j, total in enumerate(totals):
            rounded = total + half if half else total   # one bit wider: no overflow
            m.d.comb += self.o.payload[j].eq(rounded >> self._shift)
        with m.If(i_fire):
            with m.If(g == g_n - 1):
                m.d.sync += [g.eq(0), p.eq(Mux(p == pixels - 1, 0, p + 1))]
            with m.Else():
                m.d.sync += g.eq(g + 1)
        return m


class SumPoolTiming(EmitTiming):
    """Cycle-exact timing of :class:`GlobalSumPool` (an :class:`hw.fixed_stream.EmitTiming`
    whose emitting beats are the last pixel's ``G``)."""

    __slots__ = ()

    def __init__(self, *, channels: int, height: int, width: int, elems_per_beat: int):
        check_positive(channels=channels, height=height, width=width,
                       elems_per_beat=elems_per_beat)
        g_n = channels // elems_per_beat
        super().__init__([0] * ((height * width - 1) * g_n) + [1] * g_n)
