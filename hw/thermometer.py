"""Thermometer encoder: 8-bit pixels in, ``T`` comparison bits per pixel out.

Implements the "Input encoding (thermometer)" section of docs/compiled-network.md: pixel ``p``
of a beat produces bits ``bit_k = pixel_p >= t_k`` for ``k < T`` and output bit ``p*T + k``
(pixel-major, plane-minor).  Only constant comparisons, no arithmetic.
"""

from __future__ import annotations

from amaranth import Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ThermometerEncoder", "ThermometerTiming", "default_thresholds"]


def default_thresholds(levels: int) -> list[int]:
    """The format's default thresholds ``t_k = floor(256 * (k + 1) / (T + 1))``."""
    if not isinstance(levels, int) or levels < 1:
        raise ValueError(f"thermometer levels must be a positive integer, not {levels!r}")
    return [256 * (k + 1) // (levels + 1) for k in range(levels)]


class ThermometerEncoder(wiring.Component):
    """Stream of ``PPB`` pixels per beat -> stream of ``PPB*T`` thermometer bits per beat.

    Parameters
    ----------
    pixels_per_beat : int
        ``PPB``, pixels per input beat; pixel ``j`` is at bits ``[8j, 8j+8)``.
    thresholds : sequence of int
        ``t_0 < ... < t_{T-1}``, each in ``[0, 256]`` (256 = never set).

    Interface
    ---------
    i : In(stream.Signature(unsigned(8*PPB)))
    o : Out(stream.Signature(unsigned(PPB*T)))
        Bit ``p*T + k`` is ``pixel_p >= t_k``.

    Timing
    ------
    One pipeline register: a beat accepted in cycle ``t`` is offered on ``o`` from cycle
    ``t+1`` (``latency == 1``).  ``i.ready = ~o.valid | o.ready``, so it sustains one beat per
    cycle and never loses a beat under backpressure.
    """

    def __init__(self, pixels_per_beat: int, thresholds):
        if not isinstance(pixels_per_beat, int) or pixels_per_beat < 1:
            raise ValueError(f"pixels_per_beat must be a positive integer, not {pixels_per_beat!r}")
        thresholds = [int(t) for t in thresholds]
        if not thresholds:
            raise ValueError("thresholds must not be empty")
        if any(not 0 <= t <= 256 for t in thresholds):
            raise ValueError(f"thresholds must lie in [0, 256], not {thresholds!r}")
        if any(a > b for a, b in zip(thresholds, thresholds[1:])):
            raise ValueError(f"thresholds must be non-decreasing, not {thresholds!r}")
        self._ppb = pixels_per_beat
        self._thresholds = tuple(thresholds)
        super().__init__({
            "i": In(stream.Signature(unsigned(8 * pixels_per_beat))),
            "o": Out(stream.Signature(unsigned(pixels_per_beat * len(thresholds)))),
        })

    @property
    def pixels_per_beat(self) -> int:
        return self._ppb

    @property
    def thresholds(self) -> tuple[int, ...]:
        return self._thresholds

    @property
    def levels(self) -> int:
        return len(self._thresholds)

    @property
    def latency(self) -> int:
        """Cycles from accepting a beat to offering its encoding."""
        return 1

    def elaborate(self, platform):
        m = Module()
        levels = self.levels
        bits = Signal(self._ppb * levels)
        for p in range(self._ppb):
            pixel = self.i.payload[8 * p: 8 * p + 8]
            for k, t in enumerate(self._thresholds):
                m.d.comb += bits[p * levels + k].eq(pixel >= t)

        # Plain pipeline register with pass-through ready.
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.i.ready):
            m.d.sync += self.o.valid.eq(self.i.valid)
            with m.If(self.i.valid):
                m.d.sync += self.o.payload.eq(bits)
        return m


class ThermometerTiming:
    """Cycle-exact model of :class:`ThermometerEncoder` (one pipeline register,
    ``i.ready = ~full | o.ready``), stage-model interface of :mod:`hw.cycle_model`."""

    def __init__(self):
        self.full = False

    def valid(self):
        return self.full

    def ready(self, down_ready):
        return (not self.full) or down_ready

    def step(self, in_fire, out_fire, cycle, in_valid=True):
        if (not self.full) or out_fire:
            self.full = in_fire
