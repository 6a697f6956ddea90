"""An early exit's branch in the accelerator: its buffer sizes and its cycle-exact timing.

After layer ``k``'s engine (docs/hardware.md, "Early exits")::

    engine k -> fork -+-> [width conv] -> exit engine -> serializer -> decision -+-> result FIFO
                      |                                                          |
                      +-> hold buffer <--------------- decision fork ------------+-> order FIFO
                          |
                          +-> (the rest of the main chain: engine k + 1 ...)

The order and result FIFOs are read by the in-order merges at the output
(:class:`hw.exit_merge.InOrderMerge`, timing :class:`hw.exit_merge.MergeNestTiming`).
"""

from __future__ import annotations

__all__ = ["HOLD_IMAGES", "RESULT_IMAGES", "ORDER_DEPTH", "ExitBranchTiming"]

#: The hold buffer keeps this many images of layer k's beats (one is the minimum for deadlock
#: freedom; measured on tfc_exits with the later layers the bottleneck, 2 / 4 / 8 images give
#: 239 / 216 / 212 cycles per image against the 208 of the bound).
HOLD_IMAGES = 8
#: The result FIFO holds this many exit results (``1 + C`` beats each).
RESULT_IMAGES = 8
#: Decisions the order FIFO holds.
ORDER_DEPTH = 32


class ExitBranchTiming:
    """Cycle-exact timing of one exit's branch, as one stage of the main chain of
    :func:`hw.cycle_model.simulate_pipeline`: its input is engine ``k``'s output, its output
    the hold buffer's (towards engine ``k + 1``).

    ``branch`` are the stage models of the exit path up to its serializer (width converter,
    engine, serializer; the usual ``valid``/``ready``/``step`` interface), ``decision`` a
    :class:`hw.exit_decision.DecisionTiming`, ``beats`` layer ``k``'s beats per image.  The
    merge nest sets ``order_read`` and ``result_read`` in its ``ready`` call, before this
    stage steps.
    """

    def __init__(self, branch: list, decision, beats: int, classes: int):
        from .exit_decision import DecisionTiming
        from .hold_buffer import HoldBufferTiming
        from .stream_fork import ForkTiming
        from .sync_fifo_timing import SyncFifoTiming
        if not isinstance(decision, DecisionTiming):
            raise TypeError("decision must be a DecisionTiming")
        self.branch, self.decision = branch, decision
        self.fork, self.dfork = ForkTiming(2), ForkTiming(2)
        self.hold = HoldBufferTiming(beats, HOLD_IMAGES * beats)
        self.order = SyncFifoTiming(ORDER_DEPTH)
        self.result = SyncFifoTiming(RESULT_IMAGES * (1 + classes))
        self.order_read = self.result_read = False
        self._readies = None

    def valid(self) -> bool:
        return self.hold.o_valid()

    def ready(self, down_ready: bool) -> bool:
        down = self.decision.i_ready()
        readies = [False] * len(self.branch)
        for k in range(len(self.branch) - 1, -1, -1):
            readies[k] = self.branch[k].ready(down)
            down = readies[k]
        self._readies = readies
        self._down = down_ready
        self._fork_readies = [readies[0], self.hold.i_ready()]
        return self.fork.ready(self._fork_readies)

    def step(self, in_fire, out_fire, cycle, in_valid=True):
        br, dec, hold = self.branch, self.decision, self.hold
        # Every handshake of this cycle from the present state, then every state moves.
        branch_valid = self.fork.out_valid(0, in_valid)
        to_branch = branch_valid and self._fork_readies[0]
        to_hold = self.fork.out_valid(1, in_valid) and self._fork_readies[1]
        valids = [m.valid() for m in br]
        in_fires = [to_branch] + [valids[k - 1] and self._readies[k] for k in range(1, len(br))]
        out_fires = in_fires[1:] + [valids[-1] and dec.i_ready()]
        d_valid = dec.d_valid()
        d_readies = [hold.d_ready(), self.order.w_rdy()]
        d_fire = d_valid and self.dfork.ready(d_readies)
        to_hold_d = self.dfork.out_valid(0, d_valid) and d_readies[0]
        to_order = self.dfork.out_valid(1, d_valid) and d_readies[1]
        o_fire = dec.o_valid() and self.result.w_rdy()
        take = dec.d_payload()

        for k, m in enumerate(br):
            m.step(in_fires[k], out_fires[k], cycle, branch_valid if k == 0 else valids[k - 1])
        hold.step(to_hold, to_hold_d, take, self._down)
        self.order.step(to_order, self.order_read, take)
        self.result.step(o_fire, self.result_read)
        dec.step(out_fires[-1], d_fire, o_fire)
        self.fork.step(in_valid, self._fork_readies)
        self.dfork.step(d_valid, d_readies)
        self.order_read = self.result_read = False
