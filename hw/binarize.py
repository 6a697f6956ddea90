"""Per-channel thresholds of fixed-point codes -> binary or 2-bit activations (``binarize``
node of docs/compiled-network.md, "Residual networks (version 4)"), bit exact with
:func:`sw.fixed_point.threshold_levels`: ``L = #{k : q >= T[c, k]}``; ``sign`` (``K = 1``):
the bit ``L``; ``frac2`` (``K = 3``): the code ``L`` in 0..3 as the layer engine's ``m``/``l``
planes (``m = L >> 1``, ``l = L & 1``).  The output is the engine's input layout
(:func:`hw.mvtu.mvtu_in_layout`, :func:`hw.width_converter.beat_layout` of ``BIT`` /
``ML_PAIR``)."""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .fixed_stream import ConstTable, PipeTiming, check_bits, fixed_layout, stall_pipeline
from .pixel_stream import check_positive
from .width_converter import BIT, ML_PAIR, beat_layout

__all__ = ["Binarize", "BINARIZE_LATENCY", "ACTIVATION_COUNTS"]

#: Thresholds per channel by activation (as :data:`sw.residual_graph.ACTIVATION_COUNTS`).
ACTIVATION_COUNTS = {"sign": 1, "frac2": 3}
#: Pipeline registers (input beat and thresholds; activation).
BINARIZE_LATENCY = 2


class Binarize(wiring.Component):
    """``E`` fixed-point codes per beat -> ``E`` activations per beat.

    Parameters
    ----------
    channels, elems_per_beat : int
        ``C`` and ``E`` (divides ``C``; ``G = C/E`` beats per pixel, on both ports).
    bits : int
        Input format ``bits`` (2..32).
    activation : {"sign", "frac2"}
        ``K = 1`` or ``3`` thresholds per channel.
    thresholds : ``C`` rows of ``K`` ints
        ``T[c, k]`` in ``[lo, hi + 1]`` of the input format (``threshold_bits = bits + 1``,
        the fields of ``{node}_thresholds.mem``); ``lo`` means always, ``hi + 1`` never.
        They need not be ordered here (the count is exact either way; the format orders
        them).

    Interface
    ---------
    i : In(stream.Signature(ArrayLayout(signed(bits), E)))
    o : Out(stream.Signature(beat_layout(BIT or ML_PAIR, E)))
        ``unsigned(E)`` (element ``j`` at bit ``j``) for ``sign``,
        ``StructLayout({"m": E, "l": E})`` for ``frac2``: :func:`hw.mvtu.mvtu_in_layout`
        of ``in_bits`` 1 / 2 and ``SIMD = E``.

    Timing
    ------
    Two registers with one global stall (:func:`hw.fixed_stream.stall_pipeline`,
    ``latency = 2``): the input beat with its channels' thresholds (the table read), then the
    registered activation.  ``i.ready = ~o.valid | o.ready``; one beat per cycle.  ``K*E``
    signed ``bits + 1``-bit comparators, no DSPs; the table is ``G`` words of
    ``K*(bits+1)*E`` bits.
    """

    def __init__(self, *, channels: int, elems_per_beat: int, bits: int, activation: str,
                 thresholds):
        check_positive(channels=channels, elems_per_beat=elems_per_beat)
        check_bits("bits", bits)
        if channels % elems_per_beat:
            raise ValueError(f"elems_per_beat must divide channels {channels}, "
                             f"not {elems_per_beat!r}")
        if activation not in ACTIVATION_COUNTS:
            raise ValueError(f"activation must be one of {list(ACTIVATION_COUNTS)}, "
                             f"not {activation!r}")
        k = ACTIVATION_COUNTS[activation]
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        rows = [list(r) for r in thresholds]
        if len(rows) != channels or any(len(r) != k for r in rows):
            raise ValueError(f"thresholds must be {channels} rows of {k} (one row per channel)")
        for c, r in enumerate(rows):
            for t in r:
                if hasattr(t, "dtype"):
                    t = int(t)
                if not isinstance(t, int) or isinstance(t, bool) or not lo <= t <= hi + 1:
                    raise ValueError(f"threshold of channel {c} is {t!r}, outside "
                                     f"[{lo}, {hi + 1}] of the {bits}-bit input")
        self._rows = [[int(t) for t in r] for r in rows]
        self._channels, self._n, self._bits = channels, elems_per_beat, bits
        self._activation, self._k = activation, k
        elem = BIT if k == 1 else ML_PAIR
        super().__init__({"i": In(stream.Signature(fixed_layout(bits, elems_per_beat))),
                          "o": Out(stream.Signature(beat_layout(elem, elems_per_beat)))})

    channels = property(lambda self: self._channels)
    elems_per_beat = property(lambda self: self._n)
    bits = property(lambda self: self._bits)
    activation = property(lambda self: self._activation)
    threshold_bits = property(lambda self: self._bits + 1)

    @property
    def folds(self) -> int:
        return self._channels // self._n

    @property
    def latency(self) -> int:
        return BINARIZE_LATENCY

    def timing_model(self) -> PipeTiming:
        return PipeTiming(BINARIZE_LATENCY)

    def elaborate(self, platform):
        m = Module()
        n, g_n, tb = self._n, self.folds, self._bits + 1
        advance, i_fire, _ = stall_pipeline(m, self.i, self.o, BINARIZE_LATENCY)
        g = Signal(range(g_n), name="g")
        with m.If(i_fire):
            m.d.sync += g.eq(Mux(g == g_n - 1, 0, g + 1))
        table = ConstTable(self._rows, [tb] * self._k, n)
        addr, en, thr = table.read(m, "thresholds")
        m.d.comb += [addr.eq(g), en.eq(advance)]

        with m.If(advance):
            for j in range(n):
                x1 = Signal(signed(self._bits), name=f"x1_{j}")
                m.d.sync += x1.eq(self.i.payload[j])
                hits = [x1 >= t for t in thr[j]]
                if self._k == 1:
                    m.d.sync += self.o.payload[j].eq(hits[0])
                else:
                    level = Signal(range(self._k + 1), name=f"level{j}")
                    m.d.comb += level.eq(sum(hits))
                    m.d.sync += [self.o.payload.m[j].eq(level[1]),
                                 self.o.payload.l[j].eq(level[0])]
        return m
