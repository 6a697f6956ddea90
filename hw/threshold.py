"""Threshold unit: per-neuron monotone activation of the integer accumulator.

Exactly docs/compiled-network.md, "Layer arithmetic": per lane ``a = neg ? -acc : acc`` and
``q = [a >= T0] + ... + [a >= T_{k-1}]`` for ``k = levels - 1`` ordered thresholds; two levels
(``sign``) give the bit ``q``, three or four (``frac2``, ``multithreshold``) the planes
``m = q >> 1``, ``l = q & 1``.  Only negation and comparators: no multipliers, no DSPs.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["THRESHOLD_KINDS", "threshold_count", "threshold_lane_bits", "out_layout",
           "ThresholdUnit"]

#: Output kinds with thresholds, and their threshold counts (``None``: ``levels - 1``).
THRESHOLD_KINDS = {"sign": 1, "frac2": 3, "multithreshold": None}


def threshold_count(out: str, levels: int | None = None) -> int:
    """Thresholds per neuron for an output kind (``sign``: 1, ``frac2``: 3,
    ``multithreshold``: ``levels - 1`` with ``levels`` 2, 3 or 4)."""
    if out not in THRESHOLD_KINDS:
        raise ValueError(f"out must be one of {sorted(THRESHOLD_KINDS)}, not {out!r}")
    if out == "multithreshold":
        if levels not in (2, 3, 4):
            raise ValueError(f"levels must be 2, 3 or 4, not {levels!r}")
        return levels - 1
    return THRESHOLD_KINDS[out]


def threshold_lane_bits(out: str, threshold_bits: int, levels: int | None = None) -> int:
    """Bits of one lane of a threshold word: ``LW = count * TW + 1`` (the ``neg`` flag last)."""
    return threshold_count(out, levels) * threshold_bits + 1


def out_layout(out: str, pe: int, levels: int | None = None):
    """Stream payload of ``pe`` activations: ``unsigned(pe)`` (two levels: sign) or
    ``{"m", "l"}`` planes (three or four levels)."""
    if threshold_count(out, levels) == 1:
        return unsigned(pe)
    return data.StructLayout({"m": pe, "l": pe})


class ThresholdUnit(wiring.Component):
    """``pe`` lanes of accumulator -> activation, one register stage (latency 1).

    The comparator results are registered (a carry chain and its sign fix-up per threshold,
    then a flip-flop); ``act`` is decoded from those registers (``sign``: the register itself,
    ``frac2``: majority and parity of the three), so the output is a register or one LUT
    behind one.  ``act`` in cycle ``t + 1`` is the activation of ``acc``/``thresholds`` in
    cycle ``t``.

    Parameters
    ----------
    pe : int
        Lanes (neurons per beat).
    acc_width : int
        Signed width of each accumulator.
    out : {"sign", "frac2", "multithreshold"}
        Activation kind (1, 3 or ``levels - 1`` thresholds per lane).
    threshold_bits : int
        ``TW``, two's-complement width of each threshold.

    Ports
    -----
    acc : In(ArrayLayout(signed(acc_width), pe))
        Lane ``p`` is the accumulator of neuron ``nf*PE + p``.
    thresholds : In(pe * LW)
        One threshold-ROM word: lane ``p`` at bits ``[p*LW, (p+1)*LW)``, threshold ``c`` at
        ``[c*TW, (c+1)*TW)`` of the lane, ``neg`` at bit ``count*TW``.
    act : Out(out_layout(out, pe, levels))
        One threshold: bit ``p`` = ``a_p >= T0_p``; more: ``m[p] = q_p >> 1``,
        ``l[p] = q_p & 1``.
    levels : int, optional
        Output levels of a ``multithreshold`` activation (2, 3 or 4).
    """

    def __init__(self, pe: int, acc_width: int, out: str, threshold_bits: int,
                 levels: int | None = None):
        for name, value in (("pe", pe), ("acc_width", acc_width),
                            ("threshold_bits", threshold_bits)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, not {value!r}")
        self._count = threshold_count(out, levels)
        self._pe = pe
        self._acc_width = acc_width
        self._out = out
        self._threshold_bits = threshold_bits
        super().__init__({
            "acc": In(data.ArrayLayout(signed(acc_width), pe)),
            "thresholds": In(pe * self.lane_bits),
            "act": Out(out_layout(out, pe, levels)),
        })

    @property
    def pe(self) -> int:
        """Lanes."""
        return self._pe

    @property
    def acc_width(self) -> int:
        """Signed accumulator width."""
        return self._acc_width

    @property
    def out(self) -> str:
        """Activation kind."""
        return self._out

    @property
    def count(self) -> int:
        """Thresholds per lane."""
        return self._count

    @property
    def threshold_bits(self) -> int:
        """Threshold width ``TW``."""
        return self._threshold_bits

    @property
    def lane_bits(self) -> int:
        """``LW = count * TW + 1``."""
        return self._count * self._threshold_bits + 1

    @property
    def latency(self) -> int:
        """Cycles from ``acc``/``thresholds`` to ``act``: the registered comparisons."""
        return 1

    def elaborate(self, platform):
        m = Module()
        tw, lw = self._threshold_bits, self.lane_bits
        for p in range(self._pe):
            lane = self.thresholds[p * lw:(p + 1) * lw]
            neg = lane[self._count * tw]
            acc = self.acc[p]
            # |acc| range is symmetric, so -acc fits one extra bit.
            a = Signal(signed(self._acc_width + 1), name=f"a{p}")
            m.d.comb += a.eq(Mux(neg, -acc, acc))
            ge = []
            for c in range(self._count):
                t = lane[c * tw:(c + 1) * tw].as_signed()
                g = Signal(name=f"ge{p}_{c}", reset_less=True)
                m.d.sync += g.eq(a >= t)
                ge.append(g)
            if self._count == 1:
                m.d.comb += self.act[p].eq(ge[0])
            elif self._count == 2:
                # Ordered thresholds: ge1 implies ge0, so q = ge0 + ge1 has m = ge1, l = ge0 ^ ge1.
                g0, g1 = ge
                m.d.comb += [self.act.m[p].eq(g1), self.act.l[p].eq(g0 ^ g1)]
            else:
                # q = ge0 + ge1 + ge2: m = q >> 1 is the majority, l = q & 1 the parity.
                g0, g1, g2 = ge
                m.d.comb += [self.act.m[p].eq((g0 & g1) | (g0 & g2) | (g1 & g2)),
                             self.act.l[p].eq(g0 ^ g1 ^ g2)]
        return m
