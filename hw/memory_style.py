"""Where each parameter memory goes: block RAM or distributed (LUT) ROM.

Every layer has a weight memory, a threshold memory (unless it outputs scores) and a gate
memory (2-bit gated layers), each a ``fracbnn_rom`` (``fracbnn_ram`` with writable
parameters) whose ``STYLE`` becomes the ``rom_style``/``ram_style`` attribute that Yosys
(``synth_xilinx``, ``synth_ecp5``) and Vivado honour.  This module is the one place that
decides it:

* the **request** per memory, ``auto``, ``block`` or ``distributed``: from the user's
  ``--ram-style`` (:func:`parse_ram_style`, :class:`RamStyle`) and, for weights, the
  folding's ``block_lanes`` (PE lanes ``0..K-1`` in block RAM, the rest distributed;
  ``hw.fold`` chooses it);
* the **placement** of an ``auto`` memory by the depth-aware rule :func:`auto_style`;
* the **plan** of every ROM the generator instantiates (:func:`layer_rom_plan`,
  :func:`rom_plan`), which ``hw/mvtu.py`` builds, ``design.json`` lists and
  ``hw.resource_model`` counts, so the three cannot disagree.

The rule (``auto``)
-------------------
Block RAM is built of fixed tiles whose shallowest shape is 512 words: a Xilinx RAMB18 is
16Kx1, 8Kx2, 4Kx4, 2Kx9, 1Kx18 or 512x36 (RAMB36: twice as wide, up to 512x72), an ECP5
EBR the same 18 Kb shapes.  A memory ``D`` words deep therefore fills at most ``D/512`` of
every tile it occupies, however wide it is.  A LUT6 is a 64 x 1 ROM (LUTRAM 64x1 per LUT6;
an ECP5 slice's two LUT4 and PFUMX make 32 x 1).  Hence:

* ``distributed`` if ``depth <= 32`` (:data:`DISTRIBUTED_MAX_DEPTH`): in block RAM the
  memory would leave at least 15/16 of every tile empty (a 4 x 512 ROM took 7.5 BRAM36), and
  in LUTs each bit column is a 5-input function of the address, one LUT6 with an input to
  spare for the engine's read-address multiplexer (one slice on ECP5), so the ROM adds no
  LUT level to the engine's paths;
* ``distributed`` if it holds fewer than 4096 bits (:data:`BLOCK_MIN_BITS`): under a quarter
  of a RAMB18's 16 Kb of data, a few dozen LUTs;
* ``block`` otherwise (deeper than 32 words and at least 4 Kb).

Why not 64 words (one LUT6 per column at rest): measured on ``tiny``, whose layer-0 weight
ROM is 52 x 1024 bits (29 RAMB18 at 10 % fill), Yosys maps it to about 3 LUTs and a
flip-flop per column (7,896 LUT / 7,091 FF / 0 BRAM36 against 4,886 / 6,067 / 14.5) and the
path from the address registers through it is 5 LUT levels (741 endpoints over the 300 MHz
rule, so ``hw.build`` picks 150 MHz instead of 300): with 6 address bits the read-address
multiplexer no longer fits in the ROM's LUT.  A design short of block RAM can still ask for
it per memory (``--ram-style L0.weights=distributed``).  The constants are the
``SHALLOW_MAX_DEPTH`` and ``BLOCK_MIN_BITS`` of ``fracbnn_rom`` (``hw/verilog/fracbnn_rom.v``,
whose ``STYLE = 0`` applies this rule when the module is instantiated by hand; the generator
always passes ``STYLE`` 1 or 2).

``--ram-style`` syntax
----------------------
Comma-separated items, at most one per target; the most specific wins::

    auto | block | distributed           every memory not named below (default auto)
    L<i>=STYLE                           every memory of layer i
    L<i>.<kind>=STYLE                    one memory: kind weights, thresholds or gates

e.g. ``--ram-style block`` or ``--ram-style L0=block,L2.thresholds=distributed``.  A layer
whose folding has ``block_lanes`` keeps that placement for its weights: naming
``L<i>.weights`` there is an error (drop one of the two), ``L<i>=`` and the global style
apply to its other memories.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from sw.compiled_net import MEMORY_KINDS, CompiledNetwork, LayerSpec
from sw.memory_layout import memory_widths
from sw.errors import UserError

__all__ = ["RAM_STYLES", "PLACEMENTS", "BLOCK_MIN_BITS", "DISTRIBUTED_MAX_DEPTH", "auto_style",
           "auto_reason", "RamStyle", "parse_ram_style", "RomPlacement", "layer_rom_plan",
           "rom_plan"]

#: Requests a memory can have.
RAM_STYLES = ("auto", "block", "distributed")
#: What a request resolves to.
PLACEMENTS = ("block", "distributed")

_ROM_SOURCE = Path(__file__).with_name("verilog") / "fracbnn_rom.v"


def _rom_parameter(name: str, default: int) -> int:
    """A default parameter of ``hw/verilog/fracbnn_rom.v`` (the rule's single source)."""
    try:
        text = _ROM_SOURCE.read_text()
    except OSError:
        return default
    m = re.search(rf"parameter\s+integer\s+{name}\s*=\s*(\d+)", text)
    return int(m.group(1)) if m else default


#: ``auto``: memories with fewer bits than this are distributed.
BLOCK_MIN_BITS = _rom_parameter("BLOCK_MIN_BITS", 4096)
#: ``auto``: memories of at most this many words are distributed.
DISTRIBUTED_MAX_DEPTH = _rom_parameter("SHALLOW_MAX_DEPTH", 32)


def auto_style(width: int, depth: int) -> str:
    """``"block"`` or ``"distributed"`` for a ``width`` x ``depth`` memory by the depth-aware
    rule (module docstring): distributed when at most :data:`DISTRIBUTED_MAX_DEPTH` words
    deep or smaller than :data:`BLOCK_MIN_BITS` bits, block RAM otherwise."""
    shallow = depth <= DISTRIBUTED_MAX_DEPTH
    return "distributed" if shallow or width * depth < BLOCK_MIN_BITS else "block"


def auto_reason(width: int, depth: int) -> str:
    """Why :func:`auto_style` places a ``width`` x ``depth`` memory where it does (a phrase
    for reports)."""
    limit = DISTRIBUTED_MAX_DEPTH
    if depth <= limit:
        return f"depth {depth} <= {limit}"
    if width * depth < BLOCK_MIN_BITS:
        return f"{width * depth} bits < {BLOCK_MIN_BITS}"
    return f"depth {depth} > {limit} and {width * depth} bits >= {BLOCK_MIN_BITS}"


@dataclass(frozen=True)
class RamStyle:
    """A parsed ``--ram-style``: the request for every parameter memory.

    ``default`` applies to memories not named; ``layers`` maps a layer index to the style
    of all its memories; ``memories`` maps ``(layer, kind)`` to one memory's style.
    """

    default: str = "auto"
    layers: dict = field(default_factory=dict)
    memories: dict = field(default_factory=dict)

    def __post_init__(self):
        for style in (self.default, *self.layers.values(), *self.memories.values()):
            if style not in RAM_STYLES:
                raise ValueError(f"style must be one of {RAM_STYLES}, not {style!r}")

    def requested(self, layer: int, kind: str) -> str:
        """The request for memory ``kind`` of layer ``layer`` (most specific item wins)."""
        return self.memories.get((layer, kind), self.layers.get(layer, self.default))

    def for_layer(self, layer: int) -> dict[str, str]:
        """``{kind: request}`` for every kind of :data:`MEMORY_KINDS` of layer ``layer``."""
        return {kind: self.requested(layer, kind) for kind in MEMORY_KINDS}

    def text(self) -> str:
        """The ``--ram-style`` form (round-trips through :func:`parse_ram_style`)."""
        items = [self.default]
        items += [f"L{i}={s}" for i, s in sorted(self.layers.items())]
        items += [f"L{i}.{k}={s}" for (i, k), s in sorted(self.memories.items())]
        return ",".join(items)

    def check(self, net: CompiledNetwork, option: str = "--ram-style") -> "RamStyle":
        """Raise a one-line :class:`UserError` if an item names a layer or memory ``net``
        does not have, or a weight memory its folding places by ``block_lanes``; return
        ``self``."""
        n = len(net.layers)
        for i in sorted({*self.layers, *(i for i, _ in self.memories)}):
            if i >= n:
                raise UserError(f"{option}: L{i} names no layer: {net.name} has layers "
                                f"L0..L{n - 1}")
        for (i, kind), style in sorted(self.memories.items()):
            layer = net.layers[i]
            have = list(memory_widths(layer))
            if kind not in have:
                raise UserError(f"{option}: layer L{i} has no {kind} memory (it has "
                                f"{', '.join(have)}); drop L{i}.{kind}={style}")
            if kind == "weights" and layer.folding.block_lanes is not None:
                raise UserError(
                    f"{option}: L{i}.weights={style} conflicts with the folding's "
                    f"block_lanes {layer.folding.block_lanes} for layer {i}, which already "
                    "places its weights; drop one of the two")
        return self


def parse_ram_style(text: str | None, *, option: str = "--ram-style") -> RamStyle:
    """Parse a ``--ram-style`` value (module docstring); ``None`` or ``""`` is ``auto``.

    Raises a one-line :class:`sw.errors.UserError` naming the bad item and the fix.  The
    layer indices and kinds are checked against a network by :meth:`RamStyle.check`.
    """
    if isinstance(text, RamStyle):
        return text
    if text is None or not str(text).strip():
        return RamStyle()
    choices = "auto, block or distributed"
    default, layers, memories = None, {}, {}
    for raw in str(text).split(","):
        item = raw.strip()
        if not item:
            raise UserError(f"{option} {text!r} has an empty item; separate items by single "
                            "commas, e.g. L0=block,L2.thresholds=distributed")
        if "=" not in item:
            if item not in RAM_STYLES:
                raise UserError(f"{option}: unknown style {item!r}; use {choices} (alone: "
                                "every memory), or TARGET=STYLE with TARGET L<i> or L<i>.<kind>")
            if default is not None:
                raise UserError(f"{option} {text!r} gives the global style twice ({default!r} "
                                f"and {item!r}); give it once")
            default = item
            continue
        target_text, _, style = (s.strip() for s in item.partition("="))
        if style not in RAM_STYLES:
            raise UserError(f"{option}: unknown style {style!r} in {item!r}; use {choices}")
        m = re.fullmatch(r"L(\d+)(?:\.(\w+))?", target_text)
        if m is None:
            raise UserError(f"{option}: {target_text!r} in {item!r} names no memory; use "
                            f"L<i> (a layer's memories) or L<i>.<kind> with kind "
                            f"{', '.join(MEMORY_KINDS)}, e.g. L0.weights={style}")
        i, kind = int(m.group(1)), m.group(2)
        if kind is not None and kind not in MEMORY_KINDS:
            raise UserError(f"{option}: unknown memory kind {kind!r} in {item!r}; use "
                            f"{', '.join(MEMORY_KINDS)}")
        key, table = ((i, kind), memories) if kind else (i, layers)
        if key in table:
            raise UserError(f"{option} {text!r} names {target_text} twice; give each target "
                            "once")
        table[key] = style
    return RamStyle(default or "auto", layers, memories)


@dataclass(frozen=True)
class RomPlacement:
    """One ROM the generator instantiates for a parameter memory, and where it goes.

    ``name``: ``L<i>.<kind>``, or for a weight memory built in pieces ``L<i>.weights[lo:hi]``
    (PE lanes ``lo..hi-1`` of every word: ``block_lanes`` slices, or one ROM per lane under
    the lane LSB schedule).  ``width`` and ``depth`` are the ROM's (the bits it keeps);
    ``file_width`` the ``.mem`` file's word width.  ``requested``: ``auto``, ``block``,
    ``distributed`` or ``block_lanes`` (placed by the folding); ``style``: ``block`` or
    ``distributed``; ``reason``: why.
    """

    name: str
    layer: int
    kind: str
    file: str
    width: int
    depth: int
    file_width: int
    lanes: tuple[int, int] | None
    requested: str
    style: str
    reason: str

    @property
    def bits(self) -> int:
        return self.width * self.depth

    def to_json(self) -> dict:
        return {"name": self.name, "layer": self.layer, "kind": self.kind, "file": self.file,
                "width": self.width, "depth": self.depth, "bits": self.bits,
                "lanes": None if self.lanes is None else list(self.lanes),
                "requested": self.requested, "style": self.style, "reason": self.reason}


def _depth(layer: LayerSpec, kind: str) -> int:
    return layer.weight_depth if kind == "weights" else layer.neuron_folds


def layer_rom_plan(layer: LayerSpec, requested: dict[str, str] | None = None, *,
                   lane_roms: bool | None = None, prefix: str = "L") -> list[RomPlacement]:
    """The ROMs of ``layer``'s engine with their placement.

    ``prefix`` starts the names and files: ``L`` for a layer, ``X`` for an early exit's
    classifier (``X<j>.weights``, ``X<j>_weights.mem``).

    ``requested``: ``{kind: "auto" | "block" | "distributed"}`` (missing kinds: ``auto``;
    :meth:`RamStyle.for_layer`).  Weights: one ROM of ``PE*SIMD`` bits per word, or with
    ``Folding.block_lanes = K`` (0 < K < PE) two slices, lanes ``0..K-1`` block and the
    others distributed (``K`` = 0 or PE: the whole ROM distributed or block); with
    ``lane_roms`` (the lane LSB schedule; default :func:`hw.mvtu.uses_lane_schedule`) one
    ``SIMD``-bit ROM per PE lane, lane ``p`` block iff ``p < K``.  An ``auto`` ROM is placed
    by :func:`auto_style` on the bits it keeps.
    """
    if lane_roms is None:
        from .mvtu import uses_lane_schedule
        lane_roms = uses_lane_schedule(layer)
    requested = dict(requested or {})
    i, pe, simd = layer.index, layer.folding.pe, layer.folding.simd
    k = layer.folding.block_lanes
    out = []
    for kind, file_width in memory_widths(layer).items():
        depth = _depth(layer, kind)
        want = requested.get(kind, "auto")
        if want not in RAM_STYLES:
            raise ValueError(f"style must be one of {RAM_STYLES}, not {want!r}")
        if kind != "weights":
            pieces = [(None, file_width, want)]
        elif lane_roms:
            pieces = [((p, p + 1), simd, want if k is None else
                       "block" if p < k else "distributed") for p in range(pe)]
        elif k is None:
            pieces = [(None, file_width, want)]
        elif k in (0, pe):
            pieces = [(None, file_width, "block" if k else "distributed")]
        else:
            pieces = [((0, k), k * simd, "block"), ((k, pe), (pe - k) * simd, "distributed")]
        for lanes, width, style in pieces:
            name = f"{prefix}{i}.{kind}" + ("" if lanes is None else f"[{lanes[0]}:{lanes[1]}]")
            by_folding = kind == "weights" and k is not None
            if style == "auto":
                placed, reason = auto_style(width, depth), auto_reason(width, depth)
            else:
                placed = style
                reason = (f"folding block_lanes {k} of {pe}" if by_folding
                          else "requested (--ram-style)")
            out.append(RomPlacement(name, i, kind, f"{prefix}{i}_{kind}.mem", width, depth,
                                    file_width, lanes, "block_lanes" if by_folding else style,
                                    placed, reason))
    return out


def rom_plan(net: CompiledNetwork, ram_style: RamStyle | str | None = None) -> list[RomPlacement]:
    """:func:`layer_rom_plan` of every layer of ``net`` under ``ram_style`` (checked
    against ``net``)."""
    spec = parse_ram_style(ram_style) if not isinstance(ram_style, RamStyle) else ram_style
    spec.check(net)
    return [p for layer in net.layers
            for p in layer_rom_plan(layer, spec.for_layer(layer.index))]
