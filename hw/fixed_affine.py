"""Per-channel fixed-point affine map and RPReLU of the residual path (``affine`` and
``rprelu`` nodes of docs/compiled-network.md, "Residual networks (version 4)"), bit exact with
:func:`sw.fixed_point.affine` and :func:`sw.fixed_point.rprelu`.

Both are :func:`hw.fixed_stream.stall_pipeline` stages on a fixed-point pixel stream
(:mod:`hw.fixed_stream`): one beat = ``E`` consecutive channels of one pixel, ``G = C/E`` beats
per pixel; the per-channel constants are read from a :class:`hw.fixed_stream.ConstTable`
(``G`` words, ``E`` channels each) addressed by the group of the beat being accepted.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from sw.fixed_point import ADD_BITS, MAX_SHIFT, MULT_BITS

from .fixed_stream import (MAX_IN_BITS, ConstTable, PipeTiming, check_bits, check_constants,
                           check_int, fixed_layout, keep_unused, round_shift, saturate,
                           stall_pipeline)
from .pixel_stream import check_positive

__all__ = ["FixedAffine", "FixedRPReLU", "AFFINE_LATENCY", "RPRELU_LATENCY"]

#: Pipeline registers of :class:`FixedAffine` (constants read, product, output).
AFFINE_LATENCY = 3
#: Pipeline registers of :class:`FixedRPReLU` (constants read, difference, product, output).
RPRELU_LATENCY = 4


class _ChannelStage(wiring.Component):
    """Base: ``i``/``o`` fixed-point streams of ``E`` elements, ``G = C/E`` beats per pixel."""

    def __init__(self, *, channels: int, elems_per_beat: int, in_bits: int, out_bits: int):
        check_positive(channels=channels, elems_per_beat=elems_per_beat)
        if channels % elems_per_beat:
            raise ValueError(f"elems_per_beat must divide channels {channels}, "
                             f"not {elems_per_beat!r}")
        self._channels, self._n = channels, elems_per_beat
        self._in_bits, self._out_bits = in_bits, out_bits
        super().__init__({"i": In(stream.Signature(fixed_layout(in_bits, elems_per_beat))),
                          "o": Out(stream.Signature(fixed_layout(out_bits, elems_per_beat)))})

    channels = property(lambda self: self._channels)
    elems_per_beat = property(lambda self: self._n)
    in_bits = property(lambda self: self._in_bits)
    out_bits = property(lambda self: self._out_bits)

    @property
    def folds(self) -> int:
        """``G = C/E``, beats per pixel."""
        return self._channels // self._n

    def timing_model(self) -> PipeTiming:
        """A fresh :class:`hw.fixed_stream.PipeTiming` for this unit."""
        return PipeTiming(self.latency)

    def _group(self, m: Module, i_fire):
        """Channel group of the next input beat (wraps every ``G`` beats)."""
        g = Signal(range(self.folds), name="g")
        with m.If(i_fire):
            m.d.sync += g.eq(Mux(g == self.folds - 1, 0, g + 1))
        return g


class FixedAffine(_ChannelStage):
    """``y[c] = saturate(round_shift(x[c] * mult[c] + add[c], shift))`` per channel.

    Parameters
    ----------
    channels : int
        ``C``.
    elems_per_beat : int
        ``E``, divides ``C``.
    in_bits : int
        Input element width (2..48): an ``acc`` (raw convolution accumulator, e.g.
        ``bits(acc_min..acc_max)``) or ``fixed`` codes.
    out_bits : int
        Output format ``bits`` (2..32); the output saturates to ``signed(out_bits)``
        (the format's ``frac`` does not matter to the hardware).
    mult, add : sequences of ``C`` ints
        Signed 16-bit multipliers and signed 32-bit additive terms (the node's ``mult`` /
        ``add`` constants, i.e. the fields of ``{node}_constants.mem``).
    shift : int
        ``0..30``, shared by the channels; rounding is round half up
        (``(v + 2**(shift-1)) >> shift``, arithmetic shift).

    Interface
    ---------
    i : In(stream.Signature(ArrayLayout(signed(in_bits), E)))
    o : Out(stream.Signature(ArrayLayout(signed(out_bits), E)))
        One output beat per input beat, same order.

    Timing
    ------
    Three registers with one global stall (:func:`hw.fixed_stream.stall_pipeline`):
    ``i.ready = ~o.valid | o.ready`` (combinational from ``o.ready``), ``o.valid`` a
    register.  A beat accepted at cycle ``t`` is offered from ``t + 3`` (``latency = 3``):
    register 1 the input beat and its channels' constants (the table read), register 2 the
    exact product ``x * mult`` (``in_bits + 16`` bits), register 3 the rounded, saturated
    result.  One beat per cycle while ``o`` is ready.

    Resources
    ---------
    ``E`` signed ``in_bits x 16`` multipliers, each followed by a register: with
    ``in_bits <= 27`` each maps to one DSP48E1/E2 (25x18 / 27x18; the product register is the
    DSP's ``M`` register), wider accumulators to two.  The sum ``x*mult + add + 2**(shift-1)``
    is exact (``max(in_bits + 16, 32) + 2`` bits) in fabric adders; saturation is two
    comparators and a mux per element.  The constant table is ``G`` words of ``48*E`` bits.
    """

    def __init__(self, *, channels: int, elems_per_beat: int, in_bits: int, out_bits: int,
                 mult, add, shift: int):
        check_bits("in_bits", in_bits, 2, MAX_IN_BITS)
        check_bits("out_bits", out_bits)
        check_int("shift", shift, 0, MAX_SHIFT)
        check_positive(channels=channels)
        self._mult = check_constants("mult", mult, channels, MULT_BITS)
        self._add = check_constants("add", add, channels, ADD_BITS)
        self._shift = shift
        super().__init__(channels=channels, elems_per_beat=elems_per_beat, in_bits=in_bits,
                         out_bits=out_bits)

    shift = property(lambda self: self._shift)

    @property
    def latency(self) -> int:
        """Cycles from accepting a beat to offering its result."""
        return AFFINE_LATENCY

    def elaborate(self, platform):
        m = Module()
        n = self._n
        advance, i_fire, _ = stall_pipeline(m, self.i, self.o, AFFINE_LATENCY)
        g = self._group(m, i_fire)
        table = ConstTable([[a, b] for a, b in zip(self._mult, self._add)],
                           [MULT_BITS, ADD_BITS], n)
        addr, en, consts = table.read(m, "constants")
        m.d.comb += [addr.eq(g), en.eq(advance)]

        x1 = [Signal(signed(self._in_bits), name=f"x1_{j}") for j in range(n)]
        p2 = [Signal(signed(self._in_bits + MULT_BITS), name=f"p2_{j}") for j in range(n)]
        a2 = [Signal(signed(ADD_BITS), name=f"a2_{j}") for j in range(n)]
        unused = []
        rounded = [round_shift(m, p2[j] + a2[j], self._shift, f"r{j}", unused) for j in range(n)]
        keep_unused(m, unused)
        with m.If(advance):
            for j in range(n):
                mult, add = consts[j]
                m.d.sync += [
                    x1[j].eq(self.i.payload[j]),
                    p2[j].eq(x1[j] * mult),
                    a2[j].eq(add),
                    self.o.payload[j].eq(saturate(rounded[j], self._out_bits)),
                ]
        return m


class FixedRPReLU(_ChannelStage):
    """Integer RPReLU per channel: ``d = x - gamma[c]``; ``y = d`` if ``d >= 0`` else
    ``round_shift(d * mult[c], shift)``; ``saturate(y + zeta[c])``.

    Parameters
    ----------
    channels, elems_per_beat : int
        ``C`` and ``E`` (divides ``C``).
    bits : int
        The format's ``bits`` (2..32), of input and output (same format).
    gamma, zeta : sequences of ``C`` ints
        Codes of the format (signed ``bits``).
    mult : sequence of ``C`` ints
        Signed 16-bit slopes of the negative side (``mult / 2**shift``).
    shift : int
        ``0..30``; round half up.

    Interface
    ---------
    i : In(stream.Signature(ArrayLayout(signed(bits), E)))
    o : Out(stream.Signature(ArrayLayout(signed(bits), E)))

    Timing
    ------
    Four registers with one global stall (:func:`hw.fixed_stream.stall_pipeline`),
    ``latency = 4``: the input beat and its constants, ``d = x - gamma`` (``bits + 1``
    bits, exact), ``d * mult`` (``bits + 17`` bits, exact; ``d`` carried beside it), then
    ``saturate(select + zeta)``.  ``i.ready = ~o.valid | o.ready``; one beat per cycle.

    Resources
    ---------
    ``E`` signed ``(bits + 1) x 16`` multipliers (one DSP48 each for ``bits <= 26``; the
    subtraction can use the DSP's pre-adder), the rest fabric adders and comparators.  The
    constant table is ``G`` words of ``(2*bits + 16)*E`` bits.
    """

    def __init__(self, *, channels: int, elems_per_beat: int, bits: int, gamma, mult, zeta,
                 shift: int):
        check_bits("bits", bits)
        check_int("shift", shift, 0, MAX_SHIFT)
        check_positive(channels=channels)
        self._gamma = check_constants("gamma", gamma, channels, bits)
        self._mult = check_constants("mult", mult, channels, MULT_BITS)
        self._zeta = check_constants("zeta", zeta, channels, bits)
        self._shift = shift
        super().__init__(channels=channels, elems_per_beat=elems_per_beat, in_bits=bits,
                         out_bits=bits)

    shift = property(lambda self: self._shift)
    bits = property(lambda self: self._in_bits)

    @property
    def latency(self) -> int:
        """Cycles from accepting a beat to offering its result."""
        return RPRELU_LATENCY

    def elaborate(self, platform):
        m = Module()
        n, bits = self._n, self._in_bits
        advance, i_fire, _ = stall_pipeline(m, self.i, self.o, RPRELU_LATENCY)
        g = self._group(m, i_fire)
        # Field order of the .mem word: gamma, mult, zeta.
        table = ConstTable([list(r) for r in zip(self._gamma, self._mult, self._zeta)],
                           [bits, MULT_BITS, bits], n)
        addr, en, consts = table.read(m, "constants")
        m.d.comb += [addr.eq(g), en.eq(advance)]

        unused = []
        with m.If(advance):
            for j in range(n):
                gamma, mult, zeta = consts[j]
                x1 = Signal(signed(bits), name=f"x1_{j}")
                d2 = Signal(signed(bits + 1), name=f"d2_{j}")
                m2 = Signal(signed(MULT_BITS), name=f"m2_{j}")
                z2 = Signal(signed(bits), name=f"z2_{j}")
                d3 = Signal(signed(bits + 1), name=f"d3_{j}")
                p3 = Signal(signed(bits + 1 + MULT_BITS), name=f"p3_{j}")
                z3 = Signal(signed(bits), name=f"z3_{j}")
                y = Mux(d3 >= 0, d3, round_shift(m, p3, self._shift, f"r{j}", unused))
                m.d.sync += [
                    x1.eq(self.i.payload[j]),
                    d2.eq(x1 - gamma), m2.eq(mult), z2.eq(zeta),
                    d3.eq(d2), p3.eq(d2 * m2), z3.eq(z2),
                    self.o.payload[j].eq(saturate(y + z3, bits)),
                ]
        keep_unused(m, unused)
        return m
