"""The residual network's classifier on the pooled sums (``linear`` node of
docs/compiled-network.md, "Residual networks (version 4)"): ``score[k] = sum_c weight[k, c] *
x[c] + bias[k]``, exact (``x @ weight.T + bias`` as :mod:`sw.residual_golden`)."""

from __future__ import annotations

from amaranth import Array, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .fixed_stream import MAX_IN_BITS, check_bits, check_constants, check_int, fixed_layout
from .pixel_stream import check_positive

__all__ = ["FixedLinear", "LinearTiming", "score_bits", "BIAS_BITS"]

#: Width of a bias constant (signed), as ``sw.residual_graph.BIAS_BITS``.
BIAS_BITS = 32


def score_bits(channels: int, in_bits: int, weight_bits: int) -> int:
    """Signed width that holds every score: ``|score| <= C * 2**(in_bits-1) *
    2**(weight_bits-1) + 2**31``."""
    bound = channels * (1 << (in_bits - 1)) * (1 << (weight_bits - 1)) + (1 << (BIAS_BITS - 1))
    return bound.bit_length() + 1


class FixedLinear(wiring.Component):
    """Dense classifier over one ``C``-vector per image, ``E`` multipliers.

    Parameters
    ----------
    channels : int
        ``C``, inputs per image.
    elems_per_beat : int
        ``E``, inputs per beat and multipliers; divides ``C`` (``G = C/E`` beats per image).
    in_bits : int
        Signed input width (2..48): the pooled sums' (:func:`hw.global_sumpool.sum_bits`).
    classes : int
        ``K`` outputs per image.
    weight_bits : int
        2..16; ``weight`` is ``K`` rows of ``C`` signed ``weight_bits`` ints (the fields of
        ``{node}_weights.mem``), ``bias`` ``K`` signed 32-bit ints (``{node}_bias.mem``).

    Interface
    ---------
    i : In(stream.Signature(ArrayLayout(signed(in_bits), E)))
        ``G`` beats per image, element ``j`` of beat ``g`` = input ``g*E + j``.
    o : Out(stream.Signature(ArrayLayout(signed(W), 1)))
        ``K`` beats per image, class ``k`` in beat ``k`` (the layer engine's ``scores``
        layout with ``PE = 1``, ``NF = K``); ``W = score_bits(C, in_bits, weight_bits)``,
        which holds every score exactly.

    Storage and resources
    ---------------------
    A vector buffer (``G`` words of ``E*in_bits`` bits) and the weight table (``K*G`` words of
    ``E*weight_bits`` bits, word ``k*G + g`` = ``weight[k, g*E .. g*E + E - 1]``), both
    ``lib.memory.Memory`` with a synchronous read port; ``E`` signed
    ``in_bits x weight_bits`` multipliers (one DSP48 each for ``in_bits <= 27``), an adder
    tree over the ``E`` products and one accumulator of ``W`` bits.

    Timing (cycle exact, :class:`LinearTiming`)
    -------------------------------------------
    Two phases, not overlapped.  *Load*: ``i.ready`` is high (a register, independent of
    ``o.ready``) until the image's ``G`` beats are buffered.  *Compute*: one read of the
    buffer and the weight table per cycle for ``k = 0..K-1``, ``g = 0..G-1`` (in that order),
    through a three-register pipeline with one global stall (``advance = ~o.valid |
    o.ready``): the read data; the ``E`` products; the accumulator, which starts at
    ``bias[k]`` and is the output register (``o.valid`` after the class's last group).  The
    last read is issued in the last compute cycle and *load* resumes the next cycle, while the
    last scores drain.  With ``o`` ready an image takes ``G + K*G`` cycles; the first score
    leaves ``G + 3`` cycles after the image's last input beat.  The classifier runs once per
    image, after the global pool's ``H*W*G`` cycles, so this is never the bottleneck.
    """

    def __init__(self, *, channels: int, elems_per_beat: int, in_bits: int, classes: int,
                 weight_bits: int, weight, bias):
        check_positive(channels=channels, elems_per_beat=elems_per_beat, classes=classes)
        check_bits("in_bits", in_bits, 2, MAX_IN_BITS)
        check_int("weight_bits", weight_bits, 2, 16)
        if channels % elems_per_beat:
            raise ValueError(f"elems_per_beat must divide channels {channels}, "
                             f"not {elems_per_beat!r}")
        rows = [r for r in weight]
        if len(rows) != classes:
            raise ValueError(f"weight must have {classes} rows (one per class), not {len(rows)}")
        self._weight = [check_constants(f"weight row {k}", r, channels, weight_bits)
                        for k, r in enumerate(rows)]
        self._bias = check_constants("bias", bias, classes, BIAS_BITS)
        self._channels, self._n, self._in_bits = channels, elems_per_beat, in_bits
        self._classes, self._wb = classes, weight_bits
        self._score_bits = score_bits(channels, in_bits, weight_bits)
        super().__init__({
            "i": In(stream.Signature(fixed_layout(in_bits, elems_per_beat))),
            "o": Out(stream.Signature(data.ArrayLayout(signed(self._score_bits), 1)))})

    channels = property(lambda self: self._channels)
    classes = property(lambda self: self._classes)
    elems_per_beat = property(lambda self: self._n)
    out_bits = property(lambda self: self._score_bits)

    @property
    def folds(self) -> int:
        return self._channels // self._n

    @property
    def cycles_per_image(self) -> int:
        """Cycles per image with ``o`` always ready (load, then compute)."""
        return self.folds * (1 + self._classes)

    def timing_model(self) -> "LinearTiming":
        return LinearTiming(folds=self.folds, classes=self._classes)

    def elaborate(self, platform):
        m = Module()
        n, g_n, k_n, wb = self._n, self.folds, self._classes, self._wb
        m.submodules.vec = vec = memory.Memory(shape=fixed_layout(self._in_bits, n), depth=g_n,
                                               init=[])
        words = []
        for k in range(k_n):
            for g in range(g_n):
                words.append(sum((w & ((1 << wb) - 1)) << (j * wb)
                                 for j, w in enumerate(self._weight[k][g * n:(g + 1) * n])))
        m.submodules.weights = wmem = memory.Memory(shape=unsigned(n * wb), depth=k_n * g_n,
                                                    init=words)
        vw = vec.write_port()
        vr = vec.read_port(domain="sync")
        wr = wmem.read_port(domain="sync")

        load = Signal(init=1)
        g = Signal(range(g_n), name="g")
        k = Signal(range(k_n), name="k")
        waddr = Signal(range(k_n * g_n), name="waddr")
        advance, issue, i_fire = Signal(), Signal(), Signal()
        last_g = g == g_n - 1
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready),
                     issue.eq(~load & advance),
                     self.i.ready.eq(load),
                     i_fire.eq(self.i.valid & load),
                     vw.addr.eq(g), vw.data.eq(self.i.payload), vw.en.eq(i_fire),
                     vr.addr.eq(g), vr.en.eq(advance),
                     wr.addr.eq(waddr), wr.en.eq(advance)]

        with m.If(i_fire):
            m.d.sync += g.eq(Mux(last_g, 0, g + 1))
            with m.If(last_g):
                m.d.sync += [load.eq(0), k.eq(0), waddr.eq(0)]
        with m.Elif(issue):
            m.d.sync += [g.eq(Mux(last_g, 0, g + 1)), waddr.eq(waddr + 1)]
            with m.If(last_g):
                m.d.sync += k.eq(k + 1)
                with m.If(k == k_n - 1):
                    m.d.sync += [load.eq(1), k.eq(0)]

        # Pipeline: 1 read data, 2 products, 3 accumulator = output register.
        v1, first1, last1 = Signal(), Signal(), Signal()
        k1 = Signal(range(k_n))
        v2, first2, last2 = Signal(), Signal(), Signal()
        k2 = Signal(range(k_n))
        prod_w = self._in_bits + wb
        p2 = [Signal(signed(prod_w), name=f"p2_{j}") for j in range(n)]
        bias = Array(Const(b, signed(BIAS_BITS)) for b in self._bias)
        acc = Signal(signed(self._score_bits), name="acc")
        m.d.comb += self.o.payload[0].eq(acc)
        with m.If(advance):
            m.d.sync += [v1.eq(issue), first1.eq(g == 0), last1.eq(last_g), k1.eq(k),
                         v2.eq(v1), first2.eq(first1), last2.eq(last1), k2.eq(k1),
                         self.o.valid.eq(v2 & last2)]
            for j in range(n):
                m.d.sync += p2[j].eq(vr.data[j] * wr.data[j * wb:(j + 1) * wb].as_signed())
            with m.If(v2):
                m.d.sync += acc.eq(Mux(first2, bias[k2], acc) + sum(p2))
        return m


class LinearTiming:
    """Cycle-exact timing of :class:`FixedLinear` (stage-model interface of
    :mod:`hw.cycle_model`; ``i.ready`` does not depend on ``o.ready``)."""

    __slots__ = ("folds", "classes", "load", "g", "k", "v1", "last1", "v2", "last2", "ov")

    def __init__(self, *, folds: int, classes: int):
        check_positive(folds=folds, classes=classes)
        self.folds, self.classes = folds, classes
        self.load, self.g, self.k = True, 0, 0
        self.v1 = self.last1 = self.v2 = self.last2 = self.ov = False

    def valid(self) -> bool:
        return self.ov

    def ready(self, down_ready: bool) -> bool:
        return self.load

    def step(self, in_fire: bool, out_fire: bool, cycle: int = 0, in_valid: bool = True) -> None:
        advance = (not self.ov) or out_fire
        issue = (not self.load) and advance
        last_g = self.g == self.folds - 1
        if advance:
            self.ov = self.v2 and self.last2
            self.v2, self.last2 = self.v1, self.last1
            self.v1, self.last1 = issue, last_g
        if in_fire:
            self.g = 0 if last_g else self.g + 1
            if last_g:
                self.load, self.k = False, 0
        elif issue:
            self.g = 0 if last_g else self.g + 1
            if last_g:
                self.k += 1
                if self.k == self.classes:
                    self.load, self.k = True, 0
