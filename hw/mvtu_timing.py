"""Cycle-exact timing of the layer engine (:class:`hw.mvtu.MatrixVectorThresholdUnit`).

Counters, not data: :class:`EngineTiming` (1-bit inputs and the ``"fold"`` LSB schedule) and
:class:`LaneEngineTiming` (the lane-compacted LSB schedule) follow the engine's timing
contract (its class docstring and docs/hardware.md "Timing contract"), with the stage-model
interface of :mod:`hw.cycle_model`: ``valid()``, ``ready(down_ready)``, ``step(in_fire,
out_fire, cycle, in_valid)``.  Frac layers' timing depends on the gate decisions: the
helpers turn ``GoldenModel(net).run(images).gates`` into per-vector patterns.
"""

from __future__ import annotations

import numpy as np

__all__ = ["engine_timing", "timing_of", "lane_compute_cycles", "padded_gates",
           "vector_gates", "fold_gate_fn", "lane_rounds_fn", "EngineTiming",
           "LaneEngineTiming"]


def engine_timing(layer) -> dict:
    """The layer engine's timing constants for ``layer`` (a LayerSpec), without building it.

    Mirrors the properties of :class:`hw.mvtu.MatrixVectorThresholdUnit` built with the
    default ``lsb_schedule`` (``popcount_latency`` of a :func:`hw.mvtu.popcount_width`-bit
    tree with 2 adder levels per stage, ``pipeline_latency = lp + 4`` (gated 2-bit inputs,
    fold schedule: ``lp + 5``),
    ``gate_delay = lp + 2``, ``output_depth = pipeline_latency + 2``, ``lane``: the
    lane-compacted LSB schedule is used, :func:`hw.mvtu.uses_lane_schedule`).
    """
    from .mvtu import (POPCOUNT_LEVELS_PER_STAGE, gate_delay_of, popcount_width,
                       uses_lane_schedule)
    from .popcount import popcount_latency
    lp = popcount_latency(popcount_width(layer), POPCOUNT_LEVELS_PER_STAGE)
    lane = uses_lane_schedule(layer)
    pipeline = lp + 4 + int(layer.gated and not lane)
    return {"popcount_latency": lp, "pipeline_latency": pipeline,
            "gate_delay": gate_delay_of(layer.folding.simd), "output_depth": pipeline + 2,
            "lane": lane}


def timing_of(engine) -> dict:
    """Timing constants of a built :class:`hw.mvtu.MatrixVectorThresholdUnit`."""
    return {"popcount_latency": engine.popcount_latency,
            "pipeline_latency": engine.pipeline_latency, "gate_delay": engine.gate_delay,
            "output_depth": engine.output_depth, "lane": engine.lane_scheduled}


def lane_compute_cycles(layer, gate_delay: int, rounds: int) -> int:
    """Lane schedule: ``NF*SF + gate_delay + R*SF`` engine cycles per vector."""
    sf, nf = layer.synapse_folds, layer.neuron_folds
    return nf * sf + gate_delay + rounds * sf


def padded_gates(layer, gates) -> np.ndarray:
    """``(N, MH)`` (or ``(MH,)``) gate decisions -> ``(N, NF, PE)`` with padding closed."""
    g = np.asarray(gates, dtype=bool)
    g = g.reshape(-1, g.shape[-1])
    padded = np.zeros((g.shape[0], layer.mh_padded), dtype=bool)
    padded[:, :layer.out_features] = g
    return padded.reshape(g.shape[0], layer.neuron_folds, layer.folding.pe)

def vector_gates(layer, gates, images) -> np.ndarray:
    """Per-image gates ``(N, V*MH)`` (``GoldenModel.run(...).gates[i]``) -> per input vector
    ``(N*V, MH)`` (``V`` = vectors per image: a convolution's output positions)."""
    if gates is None:
        raise ValueError(f"layer {layer.index} has 2-bit inputs: pass its gate decisions "
                         f"(GoldenModel(net).run(images).gates)")
    g = np.asarray(gates, dtype=bool)
    width = layer.vectors_per_image * layer.out_features
    if g.ndim != 2 or g.shape[0] < images or g.shape[1] != width:
        raise ValueError(f"gates of layer {layer.index} must be ({images}, {width}) "
                         f"booleans, not {g.shape}")
    return g.reshape(-1, layer.out_features)

def fold_gate_fn(layer, gates, images):
    """vector index -> per-fold 'any gate open' list for one engine."""
    nf, pe = layer.neuron_folds, layer.folding.pe
    if not layer.gated:
        closed = [False] * nf
        return lambda v: closed
    g = vector_gates(layer, gates, images)
    padded = np.zeros((g.shape[0], layer.mh_padded), dtype=bool)
    padded[:, :layer.out_features] = g
    per_fold = padded.reshape(g.shape[0], nf, pe).any(axis=2)
    # Beyond the last image the engine never starts; any pattern will do.
    return lambda v: [bool(x) for x in per_fold[min(v, g.shape[0] - 1)]]


def lane_rounds_fn(layer, gates, images):
    """vector index -> LSB rounds ``R`` (most open gates in one PE lane) for one engine."""
    g = vector_gates(layer, gates, images)
    rounds = padded_gates(layer, g).sum(axis=1).max(axis=1)
    return lambda v: int(rounds[min(v, g.shape[0] - 1)])

class EngineTiming:
    """MatrixVectorThresholdUnit timing (see its class docstring)."""

    def __init__(self, layer, fold_gates_per_vector, timing):
        self.sf, self.nf = layer.synapse_folds, layer.neuron_folds
        self.two = layer.gated
        self.gd = timing["gate_delay"]
        self.write_delay = timing["pipeline_latency"] - 1   # FIFO write after the last read
        self.depth = timing["output_depth"]
        self.speculate = self.two and self.gd < self.sf
        self.gates = fold_gates_per_vector    # callable: vector index -> list[bool] per fold
        # Input side.
        self.full = [False, False]
        self.wr_bank = 0
        self.wr_sf = 0
        # Read sequencer: position of the next read of the active vector.
        self.active = False
        self.rd_bank = 0
        self.vec = 0           # index of the vector in rd_bank / being read
        self.pos = (0, 0, 0)   # (nf, lsb, sf)
        self.cur_gates = None
        self.credits = 0
        self.give_q = False    # a beat left in the previous cycle: its credit returns now
        # Output FIFO: cycles at which results are written; count of visible entries.
        self.pending = []
        self.fifo = 0

    def valid(self):
        return self.fifo > 0

    def ready(self, down_ready):
        return not self.full[self.wr_bank]

    def _fold_open(self, nf):
        return self.cur_gates[nf]

    def _accept_input(self, in_fire):
        """Input bank fill (both schedules); returns which bank became full this cycle."""
        set_full = [False, False]
        if in_fire:
            if self.wr_sf == self.sf - 1:
                self.wr_sf = 0
                set_full[self.wr_bank] = True
                self.wr_bank ^= 1
            else:
                self.wr_sf += 1
        return set_full

    def step(self, in_fire, out_fire, cycle, in_valid=True):
        set_full = self._accept_input(in_fire)
        clr_full = [False, False]

        # Candidate read of this cycle.
        nf, lsb, sf = self.pos
        abort = (self.speculate and self.active and lsb and sf == self.gd
                 and not self._fold_open(nf))
        cand = None                     # (bank, vector, nf, lsb, sf)
        if not self.active:
            if self.full[self.rd_bank]:
                cand = (self.rd_bank, self.vec, 0, 0, 0)
        elif abort and nf == self.nf - 1:
            clr_full[self.rd_bank] = True
            if self.full[self.rd_bank ^ 1]:
                cand = (self.rd_bank ^ 1, self.vec + 1, 0, 0, 0)
        elif abort:
            cand = (self.rd_bank, self.vec, nf + 1, 0, 0)
        else:
            cand = (self.rd_bank, self.vec, nf, lsb, sf)
        issue = False
        if cand is not None:
            fold_start = cand[3] == 0 and cand[4] == 0
            issue = (not fold_start) or self.credits < self.depth
        if issue:
            bank, vec, c_nf, c_lsb, c_sf = cand
            if vec != self.vec or self.cur_gates is None:
                self.vec = vec
                self.cur_gates = self.gates(vec)
            open_ = self.two and self.cur_gates[c_nf]
            last_sf = c_sf == self.sf - 1
            # The fold's result depends on reads up to its last used one.
            if last_sf and ((not self.two) or (c_lsb == 0 and not open_) or
                            (c_lsb == 1 and open_)):
                self.pending.append(cycle + self.write_delay)
            if c_sf == 0 and c_lsb == 0:
                self.credits += 1
            if not last_sf:
                self.active, self.rd_bank, self.pos = True, bank, (c_nf, c_lsb, c_sf + 1)
            elif self.two and c_lsb == 0:
                self.active, self.rd_bank, self.pos = True, bank, (c_nf, 1, 0)
            elif c_nf != self.nf - 1:
                self.active, self.rd_bank, self.pos = True, bank, (c_nf + 1, 0, 0)
            else:
                self.active, self.rd_bank, self.pos = False, bank ^ 1, (0, 0, 0)
                clr_full[bank] = True
                self.vec = vec + 1
                self.cur_gates = None
        elif abort:
            if nf == self.nf - 1:
                self.active, self.rd_bank, self.pos = False, self.rd_bank ^ 1, (0, 0, 0)
                self.vec += 1
                self.cur_gates = None
            else:
                self.pos = (nf + 1, 0, 0)

        # A credit returns two cycles after its beat leaves (the accept is registered).
        if self.give_q:
            self.credits -= 1
        self.give_q = out_fire
        if out_fire:
            self.fifo -= 1
        # Results written in this cycle become visible in the next.
        while self.pending and self.pending[0] <= cycle:
            self.pending.pop(0)
            self.fifo += 1
        for b in (0, 1):
            self.full[b] = (self.full[b] and not clr_full[b]) or set_full[b]


class LaneEngineTiming(EngineTiming):
    """MatrixVectorThresholdUnit timing, 2-bit inputs, lane-compacted LSB schedule."""

    def __init__(self, layer, rounds_per_vector, timing):
        super().__init__(layer, None, timing)
        self.rounds = rounds_per_vector    # callable: vector index -> R
        self.lsb = False                   # in the LSB phase
        self.nf_pos = 0
        self.sf_pos = 0
        self.gates_known_at = None         # first cycle the LSB phase may start
        self.rounds_left = 0
        self.em_busy = False               # emitter holds a vector
        self.em_nf = 0

    def step(self, in_fire, out_fire, cycle, in_valid=True):
        set_full = self._accept_input(in_fire)
        clr_full = [False, False]

        # Read sequencer: candidate (lsb, nf, sf) of this cycle, or a hand-off.
        cand = None
        handoff = False
        bank = self.rd_bank
        if not self.active:
            if self.full[bank]:
                cand = (False, 0, 0)
        elif not self.lsb:
            cand = (False, self.nf_pos, self.sf_pos)
        elif self.sf_pos != 0:
            cand = (True, 0, self.sf_pos)
        elif cycle >= self.gates_known_at:
            if self.rounds_left:
                cand = (True, 0, 0)
            elif not self.em_busy:
                handoff = True
                clr_full[bank] = True
                bank ^= 1
                if self.full[bank]:
                    cand = (False, 0, 0)
        # Emitter: one beat per cycle while it holds a vector and a credit is free.
        emit = self.em_busy and self.credits < self.depth
        if emit:
            self.credits += 1
            self.pending.append(cycle + self.write_delay)
            if self.em_nf == self.nf - 1:
                self.em_busy, self.em_nf = False, 0
            else:
                self.em_nf += 1
        if handoff:
            self.active, self.rd_bank, self.lsb = False, bank, False
            self.em_busy, self.em_nf = True, 0
            self.vec += 1
        if cand is not None:
            lsb, nf, sf = cand
            last_sf = sf == self.sf - 1
            self.active, self.rd_bank = True, bank
            if not lsb:
                if not last_sf:
                    self.nf_pos, self.sf_pos = nf, sf + 1
                elif nf != self.nf - 1:
                    self.nf_pos, self.sf_pos = nf + 1, 0
                else:
                    # Stage A of this read registers the last gates: known gate_delay later.
                    self.lsb, self.nf_pos, self.sf_pos = True, 0, 0
                    self.gates_known_at = cycle + self.gd + 1
                    self.rounds_left = self.rounds(self.vec)
            else:
                if sf == 0:
                    self.rounds_left -= 1
                self.sf_pos = 0 if last_sf else sf + 1

        # A credit returns two cycles after its beat leaves (the accept is registered).
        if self.give_q:
            self.credits -= 1
        self.give_q = out_fire
        if out_fire:
            self.fifo -= 1
        while self.pending and self.pending[0] <= cycle:
            self.pending.pop(0)
            self.fifo += 1
        for b in (0, 1):
            self.full[b] = (self.full[b] and not clr_full[b]) or set_full[b]
