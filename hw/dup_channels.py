"""Channel duplication of a fixed-point pixel stream (``dup_channels`` node of
docs/compiled-network.md, "Residual networks (version 4)"), bit exact with
:func:`sw.fixed_point.duplicate_channels`: output channel ``c`` is input channel ``c mod C``,
i.e. each pixel's ``C`` channels are sent ``factor`` times in a row."""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .fixed_stream import check_bits, fixed_layout
from .pixel_stream import check_positive

__all__ = ["DupChannels", "DupTiming"]


class DupChannels(wiring.Component):
    """Send each pixel's ``G = C/E`` beats ``factor`` times (``C -> C*factor`` channels).

    Parameters
    ----------
    channels : int
        ``C``, input channels.
    elems_per_beat : int
        ``E``, divides ``C``; the same on both ports (output beat ``k*G + g`` of a pixel is
        input beat ``g``, so output channel ``(k*G + g)*E + j`` = input channel ``g*E + j``).
    bits : int
        Format ``bits`` (2..32), the same in and out.
    factor : int
        Copies, ``>= 1`` (``1``: a register stage).

    Interface
    ---------
    i : In(stream.Signature(ArrayLayout(signed(bits), E)))
    o : Out(stream.Signature(ArrayLayout(signed(bits), E)))

    Storage
    -------
    A pixel buffer ``lib.memory.Memory`` of ``G`` words of ``E*bits`` bits (written as copy 0
    passes, asynchronous read: distributed RAM) and the output register.

    Timing (cycle exact, :class:`DupTiming`)
    ----------------------------------------
    Copy 0 passes through the output register (``latency = 1``):
    ``i.ready = ~replaying & (~o.valid | o.ready)``.  After a pixel's last input beat the unit
    replays copies ``1 .. factor-1`` from the buffer, one beat per cycle while ``o`` is ready,
    with ``i.ready`` low; the next pixel is accepted from the cycle after the last replayed
    beat is loaded.  So with ``o`` always ready a pixel takes ``factor*G`` cycles (one output
    beat per cycle: the output side is the bottleneck); the input waits
    ``(factor - 1)*G`` cycles per pixel.
    """

    def __init__(self, *, channels: int, elems_per_beat: int, bits: int, factor: int):
        check_positive(channels=channels, elems_per_beat=elems_per_beat, factor=factor)
        check_bits("bits", bits)
        if channels % elems_per_beat:
            raise ValueError(f"elems_per_beat must divide channels {channels}, "
                             f"not {elems_per_beat!r}")
        self._channels, self._n, self._bits, self._factor = (channels, elems_per_beat, bits,
                                                             factor)
        layout = fixed_layout(bits, elems_per_beat)
        super().__init__({"i": In(stream.Signature(layout)), "o": Out(stream.Signature(layout))})

    channels = property(lambda self: self._channels)
    out_channels = property(lambda self: self._channels * self._factor)
    elems_per_beat = property(lambda self: self._n)
    bits = property(lambda self: self._bits)
    factor = property(lambda self: self._factor)

    @property
    def folds(self) -> int:
        return self._channels // self._n

    @property
    def latency(self) -> int:
        return 1

    def timing_model(self) -> "DupTiming":
        return DupTiming(folds=self.folds, factor=self._factor)

    def elaborate(self, platform):
        m = Module()
        g_n, factor = self.folds, self._factor
        advance, i_fire = Signal(), Signal()
        replay = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready),
                     self.i.ready.eq(~replay & advance),
                     i_fire.eq(self.i.valid & self.i.ready)]
        g = Signal(range(g_n), name="g")
        k = Signal(range(factor), name="k")
        last_g = g == g_n - 1

        if factor > 1:
            m.submodules.pixbuf = buf = memory.Memory(
                shape=fixed_layout(self._bits, self._n), depth=g_n, init=[])
            wport = buf.write_port()
            rport = buf.read_port(domain="comb")
            m.d.comb += [wport.addr.eq(g), wport.data.eq(self.i.payload), wport.en.eq(i_fire),
                         rport.addr.eq(g)]

        with m.If(~replay):
            with m.If(i_fire):
                m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(self.i.payload),
                             g.eq(0 if g_n == 1 else g + 1)]
                with m.If(last_g):
                    m.d.sync += g.eq(0)
                    if factor > 1:
                        m.d.sync += [replay.eq(1), k.eq(1)]
            with m.Elif(advance):
                m.d.sync += self.o.valid.eq(0)
        if factor > 1:
            with m.Elif(advance):
                m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(rport.data)]
                with m.If(last_g):
                    m.d.sync += g.eq(0)
                    with m.If(k == factor - 1):
                        m.d.sync += replay.eq(0)
                    with m.Else():
                        m.d.sync += k.eq(k + 1)
                with m.Else():
                    m.d.sync += g.eq(g + 1)
        return m


class DupTiming:
    """Cycle-exact timing of :class:`DupChannels` (stage-model interface of
    :mod:`hw.cycle_model`)."""

    __slots__ = ("folds", "factor", "replay", "g", "k", "ov")

    def __init__(self, *, folds: int, factor: int):
        check_positive(folds=folds, factor=factor)
        self.folds, self.factor = folds, factor
        self.replay, self.g, self.k, self.ov = False, 0, 0, False

    def valid(self) -> bool:
        return self.ov

    def ready(self, down_ready: bool) -> bool:
        return (not self.replay) and ((not self.ov) or down_ready)

    def step(self, in_fire: bool, out_fire: bool, cycle: int = 0, in_valid: bool = True) -> None:
        advance = (not self.ov) or out_fire
        if not self.replay:
            if in_fire:
                self.ov = True
                self.g += 1
                if self.g == self.folds:
                    self.g = 0
                    if self.factor > 1:
                        self.replay, self.k = True, 1
            elif advance:
                self.ov = False
        elif advance:
            self.ov = True
            self.g += 1
            if self.g == self.folds:
                self.g = 0
                if self.k == self.factor - 1:
                    self.replay = False
                else:
                    self.k += 1
