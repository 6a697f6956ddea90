"""Cycle-exact timing of :class:`amaranth.lib.fifo.SyncFIFOBuffered` (depth >= 2), with the
stage-model conventions of :mod:`hw.cycle_model`.

# Ref: amaranth/lib/fifo.py (0.5), SyncFIFOBuffered.elaborate: an inner FIFO of ``depth - 1``
# entries in a memory with a synchronous read port, and an output register (``r_rdy``).

Contract modelled: ``w_rdy`` while the inner FIFO holds fewer than ``depth - 1`` entries; a
write at cycle ``c`` enters the inner FIFO; the inner FIFO's head moves into the output
register when the register is empty or being read, and is readable (``r_rdy``) from the next
cycle.  So an empty FIFO shows a written entry two cycles after the write.
"""

from __future__ import annotations

from collections import deque

__all__ = ["SyncFifoTiming"]


class SyncFifoTiming:
    """Counters (and the entries' values, for FIFOs whose content steers timing) of one
    ``SyncFIFOBuffered``.

    ``w_rdy()`` and ``r_rdy()`` are the port flags of the present cycle, ``head()`` the value
    in the output register; :meth:`step` applies one clock edge with the write and read
    handshakes of that cycle (``r_en`` counts only while ``r_rdy``: the RTL's read of an empty
    output register has no effect).
    """

    __slots__ = ("depth", "inner", "out", "has_out")

    def __init__(self, depth: int):
        if not isinstance(depth, int) or depth < 2:
            raise ValueError(f"depth must be an integer >= 2, not {depth!r}")
        self.depth = depth
        self.inner: deque = deque()
        self.out = None
        self.has_out = False

    def w_rdy(self) -> bool:
        return len(self.inner) != self.depth - 1

    def r_rdy(self) -> bool:
        return self.has_out

    def head(self):
        return self.out

    def step(self, w_en: bool, r_en: bool, value=None) -> None:
        do_write = w_en and self.w_rdy()
        read = r_en and self.has_out
        do_inner_read = bool(self.inner) and (not self.has_out or read)
        if do_inner_read:
            self.out, self.has_out = self.inner.popleft(), True
        elif read:
            self.out, self.has_out = None, False
        if do_write:
            self.inner.append(value)

    def timing_state(self) -> tuple:
        return (tuple(self.inner), self.out, self.has_out)
