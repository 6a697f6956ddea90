"""AXI-Stream register slice: a two-entry skid buffer that registers ``valid``, the payload
and ``ready`` in both directions, at full throughput.

# Ref: the "skid buffer" register slice of verilog-axis (``axis_register``, REG_TYPE = 2) and of
# Xilinx' AXI4-Stream Register Slice IP ("fully registered" mode); written here from the
# handshake rules of AXI4-Stream, not from either source.
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RegisterSlice", "RegisterSliceTiming"]


class RegisterSlice(wiring.Component):
    """Cut every combinational path through a stream handshake.

    Parameters
    ----------
    payload_shape : shape-castable
        The payload's shape (a ``data`` layout or any Amaranth shape).

    Interface
    ---------
    i : In(stream.Signature(payload_shape))
    o : Out(stream.Signature(payload_shape))

    Timing
    ------
    ``o.valid``, ``o.payload`` and ``i.ready`` are flip-flops.  A beat accepted at cycle
    ``c`` is offered on ``o`` from cycle ``c + 1`` (``latency = 1``).  ``i.ready`` is low only
    while the skid register holds a beat, which happens when a beat arrives in a cycle in
    which ``o`` holds one that is not taken; with ``o.ready`` high every cycle the slice
    passes one beat per cycle.  Order is kept and no beat is lost or duplicated.
    ``o.ready`` reaches only the output register's load enable and the skid's control (the
    consumer's handshake logic ends here).
    """

    def __init__(self, payload_shape):
        self._shape = payload_shape
        super().__init__({"i": In(stream.Signature(payload_shape)),
                          "o": Out(stream.Signature(payload_shape))})

    @property
    def latency(self) -> int:
        """Cycles from a beat's acceptance to its first offer on ``o``."""
        return 1

    def elaborate(self, platform):
        m = Module()
        skid_valid = Signal()
        skid = Signal.like(self.o.payload, name="skid_payload")
        m.d.comb += self.i.ready.eq(~skid_valid)
        i_fire = self.i.valid & ~skid_valid
        out_free = ~self.o.valid | self.o.ready        # the output register may load
        with m.If(out_free):
            with m.If(skid_valid):
                m.d.sync += [self.o.payload.eq(skid), self.o.valid.eq(1), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [self.o.payload.eq(self.i.payload), self.o.valid.eq(i_fire)]
        with m.Elif(i_fire):
            m.d.sync += [skid.eq(self.i.payload), skid_valid.eq(1)]
        return m


class RegisterSliceTiming:
    """Cycle-exact model of :class:`RegisterSlice` (beat counts only), with the stage-model
    interface of :mod:`hw.cycle_model`: ``valid()``, ``ready(down_ready)``,
    ``step(in_fire, out_fire, cycle, in_valid)``."""

    def __init__(self):
        self.out_valid = False
        self.skid_valid = False

    def timing_state(self) -> tuple:
        """The complete state (hashable), for :mod:`hw.cycle_model`'s period detection."""
        return (self.out_valid, self.skid_valid)

    def valid(self) -> bool:
        return self.out_valid

    def ready(self, down_ready=True) -> bool:
        return not self.skid_valid

    def step(self, in_fire, out_fire, cycle=None, in_valid=True):
        if not self.out_valid or out_fire:
            if self.skid_valid:
                self.out_valid, self.skid_valid = True, False
            else:
                self.out_valid = bool(in_fire)
        elif in_fire:
            self.skid_valid = True
