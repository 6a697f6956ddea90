"""The residual join: saturating element-wise addition of two fixed-point streams (``add``
node of docs/compiled-network.md, "Residual networks (version 4)"), bit exact with
:func:`sw.fixed_point.add_saturate`."""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .fixed_stream import check_bits, fixed_layout, saturate
from .pixel_stream import check_positive

__all__ = ["FixedAdd", "AddTiming"]


class FixedAdd(wiring.Component):
    """``o = saturate(a + b)`` element by element, the two inputs consumed in lockstep.

    Parameters
    ----------
    bits : int
        The format's ``bits`` (2..32), of both inputs and the output (the ``add`` node
        requires one format for all three).
    elems_per_beat : int
        ``E``, elements per beat on all three ports.

    Interface
    ---------
    a, b : In(stream.Signature(ArrayLayout(signed(bits), E)))
        The two branches (main path and shortcut), same shape, same beat order.
    o : Out(stream.Signature(ArrayLayout(signed(bits), E)))
        Beat ``k`` is ``saturate(a_k + b_k)`` (the exact ``bits + 1``-bit sum clamped to
        ``[-2**(bits-1), 2**(bits-1) - 1]``).

    Timing
    ------
    One output register (``latency = 1``): with ``advance = ~o.valid | o.ready``,
    ``a.ready = b.ready = advance & a.valid & b.valid``: a beat is taken from both inputs in
    the same cycle, never from one alone (each ready depends combinationally on the other
    input's valid and on ``o.ready``; no valid depends on a ready).  ``o.valid`` is a
    register: the pair taken at cycle ``t`` is offered from ``t + 1``.  One beat per cycle
    while both inputs offer and ``o`` is ready.  No DSPs: ``E`` adders of ``bits + 1`` bits
    and a clamp each.
    """

    def __init__(self, *, bits: int, elems_per_beat: int):
        check_bits("bits", bits)
        check_positive(elems_per_beat=elems_per_beat)
        self._bits, self._n = bits, elems_per_beat
        layout = fixed_layout(bits, elems_per_beat)
        super().__init__({"a": In(stream.Signature(layout)), "b": In(stream.Signature(layout)),
                          "o": Out(stream.Signature(layout))})

    bits = property(lambda self: self._bits)
    elems_per_beat = property(lambda self: self._n)

    @property
    def latency(self) -> int:
        """Cycles from taking a pair to offering its sum."""
        return 1

    def timing_model(self) -> "AddTiming":
        """A fresh :class:`AddTiming`."""
        return AddTiming()

    def elaborate(self, platform):
        m = Module()
        advance, fire = Signal(), Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready),
                     fire.eq(advance & self.a.valid & self.b.valid),
                     self.a.ready.eq(fire), self.b.ready.eq(fire)]
        with m.If(advance):
            m.d.sync += self.o.valid.eq(fire)
        with m.If(fire):
            for j in range(self._n):
                m.d.sync += self.o.payload[j].eq(
                    saturate(self.a.payload[j] + self.b.payload[j], self._bits))
        return m


class AddTiming:
    """Cycle-exact timing of :class:`FixedAdd` (the stage-model interface of
    :mod:`hw.cycle_model`, with the pair as one input).

    ``valid()`` is ``o.valid``; ``ready(down_ready)`` whether a pair would be taken this cycle
    if both inputs offer (``~o.valid | o.ready``); ``port_ready(down_ready, a_valid,
    b_valid)`` the ``a.ready``/``b.ready`` wire; ``step(in_fire, out_fire, ...)`` with
    ``in_fire`` = the pair was taken.
    """

    __slots__ = ("v",)

    def __init__(self):
        self.v = False

    def valid(self) -> bool:
        return self.v

    def ready(self, down_ready: bool) -> bool:
        return (not self.v) or down_ready

    def port_ready(self, down_ready: bool, a_valid: bool, b_valid: bool) -> bool:
        return self.ready(down_ready) and a_valid and b_valid

    def step(self, in_fire: bool, out_fire: bool, cycle: int = 0, in_valid: bool = True) -> None:
        if (not self.v) or out_fire:
            self.v = bool(in_fire)
