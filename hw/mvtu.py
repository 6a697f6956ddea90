"""Matrix-vector-threshold unit: one folded binary dense layer (FINN MVAU style).

One :class:`MatrixVectorThresholdUnit` computes one layer of the compiled network
(docs/compiled-network.md, "Layer arithmetic"): XNOR-popcount dot products folded over
``PE`` neurons x ``SIMD`` inputs per cycle, FracBNN's gated two-pass evaluation for 2-bit
inputs, and the threshold activation (or raw scores for the last layer).  See the class
docstring for the exact timing contract the whole-pipeline cycle model is built from.

This module holds the component (parameters, ports, timing properties, the ROMs, input buffer
and output stage the schedules share); its two schedules' datapaths are
:func:`hw.mvtu_fold.elaborate_fold` (1-bit inputs; 2-bit inputs on the fold LSB schedule) and
:func:`hw.mvtu_lane.elaborate_lane` (the lane-compacted LSB schedule); its counter-level
timing model is :mod:`hw.mvtu_timing`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from amaranth.hdl import Cat, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from sw.compiled_net import MEMORY_KINDS, LayerSpec, signed_bits
from sw.errors import UserError
from sw.memfile import read_mem

from .popcount import popcount_latency
from .rom import ROM_MODES, InitFileROM
from .threshold import ThresholdUnit, out_layout

__all__ = ["POPCOUNT_LEVELS_PER_STAGE", "LSB_SCHEDULES", "LSB_SCHEDULE", "uses_lane_schedule",
           "popcount_width", "gate_delay_of", "VectorTiming", "mvtu_in_layout", "mvtu_out_layout",
           "MatrixVectorThresholdUnit"]

#: Adder levels per register stage of the PE popcount trees (fixes ``popcount_latency``).
POPCOUNT_LEVELS_PER_STAGE = 2

#: LSB-pass schedules of layers with 2-bit inputs (see :class:`MatrixVectorThresholdUnit`):
#: ``"fold"``, ``"lane"``, or ``"auto"`` = ``"lane"`` where it can save cycles at all
#: (:func:`uses_lane_schedule`), else ``"fold"``.
LSB_SCHEDULES = ("fold", "lane", "auto")

#: The default schedule (the cycle model uses it for engines it does not see).
LSB_SCHEDULE = "auto"


def uses_lane_schedule(layer: LayerSpec, lsb_schedule: str | None = None) -> bool:
    """Does the engine of ``layer`` run the lane-compacted LSB schedule?

    Never for 1-bit or ungated 2-bit inputs.  ``"auto"`` (and ``None`` while :data:`LSB_SCHEDULE` is
    ``"auto"``) picks it exactly when it can beat running every LSB pass, i.e. when one
    LSB round is cheaper than ``NF`` of them: ``(NF - 1)*SF > gate_delay``
    (:func:`gate_delay_of`).  Otherwise
    (``NF = 1``, or few short folds) the lane schedule never saves a cycle while the fold
    schedule never costs more than ungated, so ``"auto"`` keeps the fold schedule.
    """
    if lsb_schedule is None:
        lsb_schedule = LSB_SCHEDULE
    if lsb_schedule not in LSB_SCHEDULES:
        raise ValueError(f"lsb_schedule must be one of {LSB_SCHEDULES}, not {lsb_schedule!r}")
    if not layer.gated or lsb_schedule == "fold":
        return False
    if lsb_schedule == "lane":
        return True
    return (layer.neuron_folds - 1) * layer.synapse_folds > gate_delay_of(layer.folding.simd)


def popcount_width(layer: LayerSpec) -> int:
    """Bits each PE's popcount tree counts per cycle: ``SIMD``, or ``3*SIMD`` for ungated
    2-bit inputs (one pass over both planes: the MSB plane's XNOR bits twice, the LSB
    plane's once, so the count is ``2*popcount_m + popcount_l``)."""
    simd = layer.folding.simd
    return 3 * simd if layer.in_bits == 2 and not layer.gated else simd


def gate_delay_of(simd: int) -> int:
    """``gate_delay`` of a 2-bit engine of ``SIMD`` lanes (either schedule):
    ``popcount_latency + 2``.  Stage A registers the lanes' gate bits (the carry chains of
    the gate residuals end at flip-flops); "any gate open" (fold schedule) or the pending
    masks (lane schedule) are formed from those registers in the next cycle."""
    return popcount_latency(simd, POPCOUNT_LEVELS_PER_STAGE) + 2


def mvtu_in_layout(in_bits: int, simd: int):
    """Input beat: ``unsigned(SIMD)`` (1-bit inputs) or ``{"m": SIMD, "l": SIMD}`` planes."""
    if in_bits == 1:
        return unsigned(simd)
    if in_bits == 2:
        return data.StructLayout({"m": simd, "l": simd})
    raise ValueError(f"in_bits must be 1 or 2, not {in_bits!r}")


def mvtu_out_layout(out: str, pe: int, acc_width: int, levels: int | None = None):
    """Output beat: two levels ``unsigned(PE)``, three or four ``{"m", "l"}``, scores
    ``ArrayLayout``."""
    if out == "scores":
        return data.ArrayLayout(signed(acc_width), pe)
    return out_layout(out, pe, levels)


@dataclass(frozen=True)
class VectorTiming:
    """Cycle offsets of one vector, relative to the cycle ``s`` of its first weight read.

    Attributes
    ----------
    compute_cycles
        Engine-busy cycles: the next vector's first read can issue at ``s + compute_cycles``.
    output_offsets
        ``output_offsets[nf]``: cycle (minus ``s``) in which output beat ``nf`` is first
        valid on ``o``, assuming ``o.ready`` stays high (no backpressure).
    bank_free_offset
        Cycle (minus ``s``) from which the vector's input bank accepts the next input beat
        (``i.ready`` can be high again for it).
    credit_offsets
        ``credit_offsets[nf]``: cycle (minus ``s``) of the read that takes output beat
        ``nf``'s credit (the engine may wait there; a wait of ``k`` cycles delays everything
        after it by ``k``).
    """

    compute_cycles: int
    output_offsets: tuple[int, ...]
    bank_free_offset: int
    credit_offsets: tuple[int, ...]


class _RegisteredRead:
    """``addr`` and ``data`` of a memory read with one cycle of latency."""

    def __init__(self, addr, data):
        self.addr, self.data = addr, data


class MatrixVectorThresholdUnit(wiring.Component):
    """One binary dense layer: input buffer, weight ROM, PE x SIMD XNOR-popcount, thresholds.

    Parameters
    ----------
    layer : sw.compiled_net.LayerSpec
        The layer (shape, in_bits, out kind, folding).  Its contents are *not* taken from
        the arrays but from the memory files, the source of truth.
    init_dir : str or Path
        Directory with ``L{index}_weights.mem``, ``L{index}_thresholds.mem`` (sign/frac2)
        and ``L{index}_gates.mem`` (2-bit inputs); ``file_prefix`` replaces the ``L``
        (``"X"``: an early exit's classifier, docs/compiled-network.md "Early exits").
    rom_mode : {"sim", "verilog"}
        How the ROMs elaborate (see :class:`hw.rom.InitFileROM`).
    writable_params : bool
        Weight, threshold and gate memories are RAMs written through ``p_we`` (one enable per
        memory of :data:`MEMORY_KINDS`), ``p_addr`` and ``p_data`` (a whole word of the
        memory's ``.mem`` file, zero-extended), docs/hardware.md "Writable parameters".
        Only while the engine is idle; no effect on timing.
    ram_style : dict, optional
        ``{kind: "auto" | "block" | "distributed"}``: where the weight, threshold and gate
        memories go (:func:`hw.memory_style.layer_rom_plan`; ``Folding.block_lanes`` places
        the weights where it is set); default every memory ``auto``, resolved by
        :func:`hw.memory_style.auto_style`.  Only the Verilog form's ``STYLE`` changes; no
        effect on timing.
    lsb_schedule : {"fold", "lane", "auto"}, optional
        How a layer with 2-bit inputs schedules its LSB passes (default
        :data:`LSB_SCHEDULE`; ignored for 1-bit inputs): ``"fold"`` runs a fold's LSB pass
        if any of its ``PE`` gates is open; ``"lane"`` lets every lane run only its own open
        neurons (see "Lane schedule" below); ``"auto"``: ``"lane"`` where it can save
        cycles (:func:`uses_lane_schedule`), else ``"fold"``.

    Ports
    -----
    i : In(stream.Signature(mvtu_in_layout(in_bits, SIMD)))
        One beat per synapse fold, ``SF`` beats per input vector, vectors back to back.
        Bit ``j`` (of each plane) is input ``sf*SIMD + j``; padding inputs must be 0.
    o : Out(stream.Signature(mvtu_out_layout(out, PE, acc_width)))
        One beat per neuron fold, ``NF`` beats per vector, in order ``nf = 0..NF-1``.  Lane
        ``p`` is neuron ``nf*PE + p``: sign bit, frac2 planes ``m``/``l`` (``q = 2m + l``),
        or the signed score ``acc``.

    Arithmetic: per neuron ``dot = 2*popcount(XNOR(w, x)) - MW`` (true ``MW``); 1-bit inputs:
    ``acc = dot``; 2-bit inputs: ``acc_m = dot(m)``, ``gate = acc_m > G``,
    ``acc = 2*acc_m + (gate ? dot(l) : 0)``.  Accumulators are ``acc_width`` bits, the
    smallest signed width holding ``[acc_min, acc_max]``.

    Timing contract (cycle-exact; used by the whole-pipeline cycle model)
    ---------------------------------------------------------------------
    * **Input buffer.**  Two banks of ``SF`` words, filled alternately (bank 0 first).
      ``i.ready`` is high exactly while the bank being filled is free.  A bank becomes
      *full* at the end of the cycle that accepts its ``SF``-th beat (visible to the engine
      the next cycle).
    * **Engine start.**  The engine issues one read (weight word + input word) per cycle.
      It starts vector ``v`` (issues its first read) in the first cycle ``s_v`` in which
      (a) ``v``'s bank is full, (b) the engine is free, i.e. ``s_v >= s_{v-1} +
      compute_cycles(v-1)``, and (c) an output credit is free.  There are
      ``output_depth`` credits; one is taken by the first read of every neuron fold and
      returned two cycles after that fold's output beat is accepted (``o.valid & o.ready``,
      registered once before it reaches the credit counter).
      Condition (c) is checked at the start of every neuron fold, so a blocked output stalls
      the engine only between neuron folds; without backpressure it never stalls.
    * **Schedule of a vector** (no stall): neuron folds back to back from ``s_v``.
      1-bit inputs: fold ``nf`` reads ``sf = 0..SF-1`` (``SF`` cycles).  2-bit inputs:
      the MSB pass (``SF`` cycles), then, speculatively, the LSB pass.  The gate decision
      of the fold is known ``gate_delay`` cycles after the MSB pass; if no lane's gate is
      open the LSB pass is abandoned there and the next fold starts at once.  A fold thus
      takes ``SF`` (1-bit), ``2*SF`` (2-bit, some gate open) or
      ``SF + min(gate_delay, SF)`` (2-bit, all gates closed) cycles.
      :meth:`compute_cycles` is the sum over the folds.
    * **Outputs.**  Beat ``nf`` is written into the output FIFO (depth ``output_depth``)
      ``pipeline_latency - 1`` cycles after the fold's last *used* read (the last read of its
      last needed pass: the MSB pass if all gates are closed), so it is valid on ``o``
      ``pipeline_latency`` cycles after that read, or in the cycle after the previous beat
      was accepted if that is later (FIFO order).  ``latency`` is this, counted from ``s_v``,
      for fold 0 of a 1-bit layer (or of a 2-bit layer whose fold 0 has all gates closed).
    * **Bank release.**  A vector's bank accepts input again from ``s_v + compute_cycles``
      on; for a 2-bit layer whose last fold has all gates closed and ``gate_delay < SF``,
      one cycle later (the abandonment is decided in that cycle).
    :meth:`vector_timing` returns all these offsets for a given gate pattern.

    Lane schedule (2-bit inputs, ``lsb_schedule="lane"``; replaces the rules above except
    the input buffer)
    ------------------------------------------------------------------------------------
    * **Storage.**  Every lane has its own weight ROM (its ``SIMD`` bits of each word of the
      wide weight file, :class:`hw.rom.InitFileROM` with ``file_width``/``lsb``) and an
      accumulator store of ``2 x NF`` entries (two halves; consecutive vectors alternate).
    * **MSB phase.**  From ``s_v`` (bank full and the sequencer free): reads ``(nf, sf)`` in
      order, ``NF*SF`` cycles, all lanes at address ``nf*SF + sf``.  Stage A writes
      ``2*acc_m`` into the store and the gate bit ``acc_m > G`` into the lane's pending mask.
    * **Gate wait.**  The last gates are known ``gate_delay`` cycles after the last MSB read;
      the sequencer issues nothing in between.
    * **LSB phase.**  ``R = lsb_rounds(gates)`` rounds (``R`` = the largest number of open
      gates in one lane) of ``SF`` reads; in a round lane ``p`` reads its lowest pending
      neuron fold (address ``nf_p*SF + sf``, in increasing ``nf_p``) and adds ``dot_l`` to
      that store entry, or idles if it has none left.  No output credit is needed.
    * **Hand-off.**  In cycle ``s_v + compute_cycles`` (``compute_cycles = NF*SF +
      gate_delay + R*SF``) the sequencer hands the vector to the emitter, releases its bank
      (it accepts input from the next cycle: ``bank_free_offset = compute_cycles + 1``) and
      can issue the next vector's first read in the same cycle.  If the emitter still holds
      the previous vector, the hand-off (and the next vector) waits until the cycle after
      the emitter's last beat issue.
    * **Emitter.**  From the cycle after the hand-off it issues one output beat per cycle,
      ``nf = 0..NF-1``, each when an output credit is free (one credit per beat, returned two
      cycles after the beat is accepted); beat ``nf`` is valid ``pipeline_latency`` cycles
      after its issue.  Without backpressure: ``output_offsets[nf] = compute_cycles + 1 + nf
      + pipeline_latency``.  It overlaps the next vector's reads, so the engine's cycles per
      vector are ``compute_cycles``.
    """

    def __init__(self, layer: LayerSpec, *, init_dir, rom_mode: str = "sim",
                 lsb_schedule: str | None = None, writable_params: bool = False,
                 ram_style: dict | None = None, file_prefix: str = "L"):
        if not isinstance(layer, LayerSpec):
            raise TypeError(f"layer must be a sw.compiled_net.LayerSpec, not {type(layer).__name__}")
        if rom_mode not in ROM_MODES:
            raise ValueError(f"rom_mode must be one of {ROM_MODES}, not {rom_mode!r}")
        if lsb_schedule is None:
            lsb_schedule = LSB_SCHEDULE
        self._lane = uses_lane_schedule(layer, lsb_schedule)   # validates lsb_schedule
        self._lsb_schedule = lsb_schedule
        pe, simd = layer.folding.pe, layer.folding.simd
        mw, mh = layer.in_features, layer.out_features
        where = f"layer {layer.index}"
        if layer.mw_padded % simd or layer.mh_padded % pe:
            raise UserError(f"{where}: SIMD {simd} must divide MWp {layer.mw_padded} and PE {pe} "
                            f"must divide MHp {layer.mh_padded}; choose another folding")
        if not layer.folding.pad and (layer.mw_padded != mw or layer.mh_padded != mh):
            raise UserError(f"{where}: folding PE={pe}, SIMD={simd} does not divide the "
                            f"{mh}x{mw} layer; choose divisors or set \"pad\": true")
        self._layer = layer
        self._init_dir = Path(init_dir)
        self._rom_mode = rom_mode
        idx = layer.index
        # (width, depth, file) of each ROM; the files are read and checked now so that a
        # missing or malformed file is reported at construction, not at elaboration.
        self._rom_specs = {"weights": (layer.weight_width, layer.weight_depth,
                                       self._init_dir / f"{file_prefix}{idx}_weights.mem")}
        if layer.out != "scores":
            self._rom_specs["thresholds"] = (layer.threshold_width, layer.neuron_folds,
                                             self._init_dir / f"{file_prefix}{idx}_thresholds.mem")
        if layer.gated:
            self._rom_specs["gates"] = (layer.gate_width, layer.neuron_folds,
                                        self._init_dir / f"{file_prefix}{idx}_gates.mem")
        for width, depth, path in self._rom_specs.values():
            read_mem(path, width, depth)
        from .memory_style import layer_rom_plan
        self._rom_plan = layer_rom_plan(layer, ram_style, lane_roms=self._lane,
                                        prefix=file_prefix)
        self._writable = bool(writable_params)
        members = {
            "i": In(stream.Signature(mvtu_in_layout(layer.in_bits, simd))),
            "o": Out(stream.Signature(mvtu_out_layout(layer.out, pe, self.acc_width,
                                                      layer.levels))),
        }
        if self._writable:
            members.update({
                "p_we": In(len(MEMORY_KINDS)),
                "p_addr": In(max(1, max(d for _, d, _ in self._rom_specs.values()) - 1)
                             .bit_length()),
                "p_data": In(max(w for w, _, _ in self._rom_specs.values())),
            })
        super().__init__(members)

    # ------------------------------------------------------------------ read-only facts
    @property
    def layer(self) -> LayerSpec:
        """The layer this engine computes."""
        return self._layer

    @property
    def rom_mode(self) -> str:
        """``"sim"`` or ``"verilog"``."""
        return self._rom_mode

    @property
    def lsb_schedule(self) -> str:
        """The requested schedule, ``"fold"``, ``"lane"`` or ``"auto"`` (see
        :attr:`lane_scheduled` for the one in use)."""
        return self._lsb_schedule

    @property
    def pe(self) -> int:
        """Neurons computed in parallel."""
        return self._layer.folding.pe

    @property
    def simd(self) -> int:
        """Input bits per PE per cycle."""
        return self._layer.folding.simd

    @property
    def synapse_folds(self) -> int:
        """``SF = MWp / SIMD``: input beats (and reads per pass) per vector."""
        return self._layer.synapse_folds

    @property
    def neuron_folds(self) -> int:
        """``NF = MHp / PE``: output beats per vector."""
        return self._layer.neuron_folds

    @property
    def in_bits(self) -> int:
        """1 or 2 (two planes: gated LSB pass, or both planes at once)."""
        return self._layer.in_bits

    @property
    def gated(self) -> bool:
        """2-bit inputs with a gated LSB pass (else one pass per fold)."""
        return self._layer.gated

    @property
    def acc_width(self) -> int:
        """Signed accumulator (and score) width holding ``[acc_min, acc_max]``."""
        return signed_bits(self._layer.acc_min, self._layer.acc_max)

    @property
    def popcount_latency(self) -> int:
        """Register stages of each popcount (:func:`popcount_width` bits): the operand
        registers (weight word, x) and the adder tree's stages."""
        return popcount_latency(popcount_width(self._layer), POPCOUNT_LEVELS_PER_STAGE)

    @property
    def pipeline_latency(self) -> int:
        """Cycles from a fold's last used read to its output beat being valid on ``o``.

        Read (1) + popcount tree + accumulate (1) + threshold compare (1) + FIFO write (1);
        2-bit inputs with the fold schedule one more (``popcount_latency + 5``): a pass's end
        value waits one cycle in a register until the fold's gates are decided (whether the
        MSB pass's value is the result or the LSB pass follows is known only then).
        """
        return self.popcount_latency + 4 + int(self.gated and not self.lane_scheduled)

    @property
    def gate_delay(self) -> int:
        """Cycles after an MSB pass until the gate decision steers the read sequence
        (2-bit inputs): ``popcount_latency + 2`` (:func:`gate_delay_of`).  (1-bit engines
        have no gates; the same number.)"""
        return gate_delay_of(self.simd)

    @property
    def latency(self) -> int:
        """Cycles from a vector's first read to its first output beat (no backpressure).

        Fold schedule: ``SF - 1 + pipeline_latency``; for a 2-bit layer whose fold 0 has a
        gate open, ``SF`` more.  Lane schedule: ``NF*SF + gate_delay + 1 + pipeline_latency``
        for a vector with every gate closed (``R = 0``), ``R*SF`` more in general.
        """
        if self.lane_scheduled:
            return (self.neuron_folds * self.synapse_folds + self.gate_delay + 1
                    + self.pipeline_latency)
        return self.synapse_folds - 1 + self.pipeline_latency

    @property
    def output_depth(self) -> int:
        """Output FIFO depth = output credits, ``pipeline_latency + 2``: enough for zero
        bubbles without backpressure (a credit is back two cycles after its beat leaves)."""
        return self.pipeline_latency + 2

    # ------------------------------------------------------------------ timing model
    @property
    def lane_scheduled(self) -> bool:
        """True for a 2-bit layer running the lane-compacted LSB schedule."""
        return self._lane

    def neuron_gates(self, gate_pattern=None) -> np.ndarray:
        """Per padded neuron (``MHp``): is its gate open?  ``gate_pattern`` has ``MH`` or ``MHp``
        booleans (``GoldenModel(...).run(...).gates[i][image]``); ``None``: every real gate
        open.  Padding neurons never open (their gate is ``MW``)."""
        mh, mhp = self._layer.out_features, self._layer.mh_padded
        g = np.zeros(mhp, dtype=bool)
        if not self.gated:
            if gate_pattern is not None and np.asarray(gate_pattern).any():
                raise ValueError("a layer without gates has no open gates")
            return g
        if gate_pattern is None:
            g[:mh] = True
            return g
        pat = np.asarray(gate_pattern, dtype=bool).reshape(-1)
        if pat.size not in (mh, mhp):
            raise ValueError(f"gate_pattern must have {mh} (MH) or {mhp} (MHp) entries, "
                             f"not {pat.size}")
        g[:pat.size] = pat
        g[mh:] = False
        return g

    def lsb_rounds(self, gate_pattern=None) -> int:
        """``R``: LSB rounds of the lane schedule, the largest number of open gates in one PE
        lane (lane ``p`` holds neurons ``nf*PE + p``).  0 for 1-bit inputs."""
        if not self.gated:
            self.neuron_gates(gate_pattern)
            return 0
        g = self.neuron_gates(gate_pattern).reshape(self.neuron_folds, self.pe)
        return int(g.sum(axis=0).max())

    def fold_gates(self, gate_pattern=None) -> list[bool]:
        """Per neuron fold: is any lane's gate open?  (All ``False`` for 1-bit inputs.)

        ``gate_pattern``: booleans per neuron (``MH`` or ``MHp`` of them, as
        ``GoldenModel(...).run(...).gates[i][image]``) or per fold (``NF``).  ``None`` for a
        2-bit layer means every gate open.  Padding neurons never open (their gate is ``MW``).
        """
        nf, pe = self.neuron_folds, self.pe
        if not self.gated:
            if gate_pattern is not None and np.asarray(gate_pattern).any():
                raise ValueError("a layer without gates has no open gates")
            return [False] * nf
        if gate_pattern is None:
            return [True] * nf
        g = np.asarray(gate_pattern, dtype=bool).reshape(-1)
        if g.size == nf and nf not in (self._layer.out_features, self._layer.mh_padded):
            return [bool(x) for x in g]
        return [bool(x) for x in self.neuron_gates(g).reshape(nf, pe).any(axis=1)]

    def fold_cycles(self, gate_pattern=None) -> list[int]:
        """Engine cycles of each neuron fold, fold schedule (see the class docstring)."""
        if self.lane_scheduled:
            raise ValueError("fold_cycles: the lane schedule has no per-fold cycle count; "
                             "use compute_cycles or vector_timing")
        sf = self.synapse_folds
        if not self.gated:
            return [sf] * self.neuron_folds
        closed = sf + min(self.gate_delay, sf)
        return [2 * sf if g else closed for g in self.fold_gates(gate_pattern)]

    def compute_cycles(self, gate_pattern=None) -> int:
        """Engine-busy cycles per vector.

        1-bit inputs: ``NF*SF``.  2-bit inputs, fold schedule: the sum over neuron folds of
        ``2*SF`` (some gate open) or ``SF + min(gate_delay, SF)`` (all closed).  Lane
        schedule: ``NF*SF + gate_delay + R*SF`` with ``R = lsb_rounds(gate_pattern)`` (the
        output beats are emitted while the next vector is read).
        """
        if self.lane_scheduled:
            sf, nf = self.synapse_folds, self.neuron_folds
            return nf * sf + self.gate_delay + self.lsb_rounds(gate_pattern) * sf
        return sum(self.fold_cycles(gate_pattern))

    def vector_timing(self, gate_pattern=None) -> VectorTiming:
        """All cycle offsets of one vector (no backpressure), see :class:`VectorTiming`."""
        sf, lat = self.synapse_folds, self.pipeline_latency
        if self.lane_scheduled:
            done = self.compute_cycles(gate_pattern)    # hand-off to the emitter
            credits = tuple(done + 1 + k for k in range(self.neuron_folds))
            return VectorTiming(done, tuple(c + lat for c in credits), done + 1, credits)
        gates = self.fold_gates(gate_pattern)
        offsets, credits, start = [], [], 0
        for g, cycles in zip(gates, self.fold_cycles(gate_pattern)):
            used = 2 * sf if g else sf  # reads up to the last one the result depends on
            offsets.append(start + used - 1 + lat)
            credits.append(start)
            start += cycles
        free = start
        if self.gated and not gates[-1] and self.gate_delay < sf:
            free += 1
        return VectorTiming(start, tuple(offsets), free, tuple(credits))

    @property
    def rom_plan(self) -> list:
        """The engine's ROMs and their placement (:class:`hw.memory_style.RomPlacement`, in
        the order they are built)."""
        return list(self._rom_plan)

    def _placement(self, kind: str, lanes: tuple | None = None):
        return next(p for p in self._rom_plan if p.kind == kind and p.lanes == lanes)

    def _weight_roms(self, m) -> list:
        """The fold schedule's weight ROMs: one for the whole word, or with
        ``Folding.block_lanes = K`` (0 < K < PE) a block-RAM slice of lanes ``0..K-1`` and a
        distributed slice of the rest (both read the same ``.mem`` file; same address, same
        latency, so the word they give together is the one ROM's)."""
        parts = [p for p in self._rom_plan if p.kind == "weights"]
        roms = []
        for part in parts:
            lo, hi = part.lanes if part.lanes is not None else (None, None)
            roms.append(self._rom(m, "weights_rom" if len(parts) == 1 else
                                  f"weights_rom_{part.style}", "weights", lo=lo, hi=hi))
        return roms

    def _rom(self, m, submodule: str, name: str, *, lo: int | None = None,
             hi: int | None = None):
        """The ROM (a RAM with ``writable_params``) of memory ``name``, added as ``submodule``;
        for ``weights`` lanes ``lo..hi-1`` of the file's words (default: all), placed as
        :attr:`rom_plan` says.  With writable parameters its write port is driven by
        ``p_we[kind]``, ``p_addr``, ``p_data``."""
        width, depth, path = self._rom_specs[name]
        style = self._placement(name, None if lo is None else (lo, hi)).style
        kw = {}
        if name == "weights" and lo is not None:
            kw = dict(file_width=width, lsb=lo * self.simd)
            width = (hi - lo) * self.simd
        rom = InitFileROM(width, depth, path, rom_mode=self._rom_mode, style=style,
                          writable=self._writable, **kw)
        m.submodules[submodule] = rom
        if self._writable:
            m.d.comb += [rom.w_en.eq(self.p_we[MEMORY_KINDS.index(name)]),
                         rom.w_addr.eq(self.p_addr[:rom.addr_width]),
                         rom.w_data.eq(self.p_data[:rom.file_width])]
        return rom

    def _inbuf_addr(self, bank, sf):
        """Input-buffer address of word ``sf`` of ``bank``: ``Cat(sf, bank)``."""
        bits = (self.synapse_folds - 1).bit_length()
        return Cat(sf[:bits], bank) if bits else bank

    def _input_buffer(self, m, width, sf_n, sf_range):
        """Ping-pong input banks of ``sf_n`` words each, filled from ``i``.

        Returns the read port, ``full`` (bit b: bank b holds a complete vector not yet
        released) and ``clr_full`` (the engine drives bit b for one cycle to release bank b).
        Word ``sf`` of bank ``b`` is at address ``{b, sf}`` (:meth:`_inbuf_addr`: banks
        ``2**ceil(log2(SF))`` words apart, so an address is a concatenation, not a sum).
        """
        stride = 1 << (sf_n - 1).bit_length()
        m.submodules.inbuf = inbuf = memory.Memory(shape=width, depth=2 * stride, init=[])
        wport = inbuf.write_port()
        # A synchronous read built as an asynchronous port and a reset-less register whose
        # power-up value synthesis drops (the ``_noinit`` name, see hw/ecp5.py): block RAM
        # cannot hold one, so synthesis would otherwise emulate it with a multiplexer behind
        # the RAM (which also keeps the next register out of an ECP5 EBR's output register).
        # Nothing reads the buffer before writing it.  Data one cycle after the address.
        comb_port = inbuf.read_port(domain="comb")
        rport = _RegisteredRead(comb_port.addr, Signal(width, name="inbuf_rdata_noinit",
                                                       reset_less=True))
        m.d.sync += rport.data.eq(comb_port.data)
        full = Signal(2)
        wr_bank = Signal()
        wr_sf = Signal(sf_range)
        m.d.comb += [
            self.i.ready.eq(~full.bit_select(wr_bank, 1)),
            wport.addr.eq(self._inbuf_addr(wr_bank, wr_sf)),
            wport.data.eq(Value.cast(self.i.payload)),
            wport.en.eq(self.i.valid & self.i.ready),
        ]
        set_full = Signal(2)
        clr_full = Signal(2)
        with m.If(self.i.valid & self.i.ready):
            with m.If(wr_sf == sf_n - 1):
                m.d.sync += [wr_sf.eq(0), wr_bank.eq(~wr_bank)]
                m.d.comb += set_full.bit_select(wr_bank, 1).eq(1)
            with m.Else():
                m.d.sync += wr_sf.eq(wr_sf + 1)
        m.d.sync += full.eq((full & ~clr_full) | set_full)
        return rport, full, clr_full

    def _output_stage(self, m, trom, nf, res_acc, res_valid):
        """Stage R: thresholds (``trom`` word of fold ``nf``, ready this cycle) or raw scores
        (``trom`` None) of the result valid when ``res_valid``, registered, then written into
        the output FIFO that drives ``o`` in the next cycle."""
        layer = self._layer
        out_w = len(Value.cast(self.o.payload))
        m.submodules.out_fifo = ofifo = fifo.SyncFIFO(width=out_w, depth=self.output_depth)
        # One register stage between the result and the FIFO write (the threshold unit's
        # registered comparisons; raw scores are registered alike), so the comparator carry
        # chains do not share a cycle with the FIFO's write port.
        w_en = Signal()
        m.d.sync += w_en.eq(res_valid)
        if trom is None:
            scores = Signal(out_w, name="scores_reg", reset_less=True)
            m.d.sync += scores.eq(Value.cast(res_acc))
            m.d.comb += ofifo.w_data.eq(scores)
        else:
            m.d.comb += trom.addr.eq(nf)
            m.submodules.threshold = thr = ThresholdUnit(self.pe, self.acc_width, layer.out,
                                                         layer.threshold_bits, layer.levels)
            m.d.comb += [thr.acc.eq(res_acc), thr.thresholds.eq(trom.data),
                         ofifo.w_data.eq(Value.cast(thr.act))]
        m.d.comb += [
            ofifo.w_en.eq(w_en),
            self.o.valid.eq(ofifo.r_rdy),
            self.o.payload.eq(ofifo.r_data),
            ofifo.r_en.eq(self.o.ready),
        ]

    # ------------------------------------------------------------------ gateware
    def elaborate(self, platform):
        from .mvtu_fold import elaborate_fold
        from .mvtu_lane import elaborate_lane
        return elaborate_lane(self) if self.lane_scheduled else elaborate_fold(self)

    @property
    def _gate_rom_stage(self) -> int:
        """Tag stage that addresses the gate ROM: two before the accumulate stage's ROM word
        register (``popcount_latency - 2``), one where the popcount is too short for that."""
        lp = self.popcount_latency
        return lp - 2 if lp >= 2 else lp - 1

    def _gate_words(self, m, grom, tags):
        """Per lane ``G + MW`` (``G`` the lane's gate threshold of the fold in the accumulate
        stage A), registered, so that these registers hold fold A's words in stage A.

        The gate ROM (one cycle read) is addressed two stages before stage A and its words
        registered once more (where the popcount pipeline is that deep), so the registers the
        lanes' gate residuals start from are placed with the lanes, not with the ROM."""
        gw, mw = self._layer.gate_bits, self._layer.in_features
        extra = self.popcount_latency - 1 - self._gate_rom_stage
        m.d.comb += grom.addr.eq(tags[self._gate_rom_stage].nf)
        words = []
        for p in range(self.pe):
            g = grom.data[p * gw:(p + 1) * gw].as_signed()
            lo, hi = -(1 << (gw - 1)) + mw, (1 << (gw - 1)) - 1 + mw
            shape = signed(signed_bits(lo, hi))
            w = Signal(shape, name=f"gate_plus_mw{p}", reset_less=True)
            if extra:
                rom_side = Signal(shape, name=f"gate_plus_mw_rom{p}", reset_less=True)
                m.d.sync += [rom_side.eq(g + mw), w.eq(rom_side)]
            else:
                m.d.sync += w.eq(g + mw)
            words.append(w)
        return words

    def _gate_residual(self, m, p, gpm, count, sa):
        """Lane ``p``'s gate ``dot_m > G`` of stage A as the sign of one subtraction.

        A residual ``r = G - dot`` is kept beside the MSB pass's running dot product
        (``r = G + MW - 2*popcount`` on a fold's first read, ``r - 2*popcount`` after), so
        ``dot > G`` is ``r < 0``: one carry chain, not an adder followed by a comparator."""
        gw, mw = self._layer.gate_bits, self._layer.in_features
        lo = -(1 << (gw - 1)) + mw - 2 * self._layer.mw_padded
        hi = (1 << (gw - 1)) - 1 + mw
        r = Signal(signed(signed_bits(lo, hi)), name=f"gate_res{p}")
        r_next = Signal(signed(len(r)), name=f"gate_res_next{p}")
        m.d.comb += r_next.eq(Mux(sa.first, gpm, r) - (count << 1))
        with m.If(sa.valid):
            m.d.sync += r.eq(r_next)
        return r_next < 0
