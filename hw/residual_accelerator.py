"""The accelerator of a residual network (compiled-network version 4): AXI-Stream pixels in,
class + scores out, the stream pipeline built from the network's graph.

Dataflow (docs/hardware.md "Residual accelerator")::

    s_axis -> ThermometerEncoder -> [convert] -> [pad] -> window -> MVTU (scores) -> affine
           -> block 0 -> block 1 -> ... -> global_sumpool -> linear -> OutputSerializer
    block:   fork -+-> binarize -> [convert] -> [pad] -> window -> MVTU -> affine -> rprelu -+-> add -> affine
                   |                                                                        |
                   +-> [avgpool2x2] -> [dup_channels] -> skip FIFO --------------------------+

Each node of the graph becomes one stage: ``thermometer`` the encoder; ``conv`` a width
converter where the element counts differ, the padding stage (``pad > 0``), the sliding window
generator and a layer engine (:class:`hw.mvtu.MatrixVectorThresholdUnit`) with ``out =
"scores"`` (raw accumulators, ``PE`` per beat); every fixed-point node its unit
(:func:`hw.residual_units.node_unit`); a tensor read by two nodes (the block input) a
:class:`hw.stream_fork.StreamFork` whose first output feeds the block's main path and whose
second output goes through the shortcut's units (``avgpool2x2``, ``dup_channels``) and a skip
FIFO (:class:`amaranth.lib.fifo.SyncFIFOBuffered`) into the ``add`` (:class:`hw.fixed_add.
FixedAdd`); the classifier's scores (``K`` beats of one score) go through the
:class:`hw.output_serializer.OutputSerializer` (``PE = 1``, ``NF = K``).

Folding: the convolutions share one PE (:func:`uniform_folding` makes such a folding); every
fixed-point stream carries ``N`` channels per beat (:func:`fixed_elems_per_beat`: as few as
the slowest engine's rate allows), each engine's ``PE`` score lanes narrowed to ``N`` by
:class:`hw.fixed_narrow.FixedNarrow`, so both inputs of every join have the same ``N``.
Binary streams are re-packed to each engine's SIMD by
:class:`hw.width_converter.StreamWidthConverter`.  The Verilog design directory:
:mod:`hw.residual_generate`.

Skip FIFO depths: computed from the timing models (:func:`hw.residual_timing.skip_fifo_depths`):
the cycle model (:func:`hw.residual_timing.simulate_residual`) with unbounded skip FIFOs, every
gate open, every gate closed and mixed gate sequences, gives each FIFO's largest occupancy; the
depth makes the FIFO never refuse a write in those runs (docs/hardware.md: why no depth that
large can deadlock, and what is only measured).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from sw.compiled_net import Folding
from sw.errors import UserError
from sw.residual_graph import Node, ResidualNetwork

from .accelerator import StageInfo, _connect_stream, _fifo_stream, build_stage
from .axi_lite_regs import AxiLiteRegisterBlock, check_register_map
from .output_serializer import (
    SCORE_BEAT_BITS,
    OutputSerializer,
)
from .residual_units import node_unit, tensor_bits
from .stream_fork import StreamFork
from .width_converter import BIT, ML_PAIR

__all__ = [
    "PlanBlock",
    "PlanStage",
    "ResidualAccelerator",
    "ResidualPlan",
    "fixed_elems_per_beat",
    "plan_residual",
    "score_range_bits",
    "uniform_folding",
    "value_ranges",
]


# ----------------------------------------------------------------------------- the plan


@dataclass
class PlanStage:
    """One stream stage: ``kind`` ``thermometer``, ``convert``, ``pad``, ``window``, ``mvtu``,
    ``narrow`` (:class:`hw.fixed_narrow.FixedNarrow` after an engine: ``PE`` scores per beat
    to ``fixed_elems``; ``layer``), ``fixed`` (a fixed-point node's unit, ``node``), or
    ``serializer``."""

    kind: str
    name: str
    info: StageInfo | None = None
    node: Node | None = None
    layer: object = None


@dataclass
class PlanBlock:
    """A fork/join: ``fork`` (the tensor read by two nodes) into ``main`` (the stages up to the
    ``add``'s input with a convolution) and ``skip`` (the shortcut's stages), joined by
    ``add``; the skip FIFO sits between the last skip stage and the add."""

    name: str
    fork: str
    main: list
    skip: list
    add: Node


@dataclass
class ResidualPlan:
    """``elems_per_beat``: the engines' ``PE``; ``fixed_elems``: elements per beat of every
    fixed-point stream (:func:`fixed_elems_per_beat`)."""

    items: list
    elems_per_beat: int
    fixed_elems: int
    score_bits: int
    blocks: list = field(default_factory=list)


def fixed_elems_per_beat(net: ResidualNetwork) -> int:
    """Elements per beat of the fixed-point streams: the smallest divisor ``N`` of the
    engines' ``PE`` with which no fixed-point tensor needs more beats per image than the
    slowest engine's cycles per image with every gate closed (``out pixels * NF * SF``, a
    lower bound of its time).  So the fixed-point units (a multiplier per lane for batch norm
    and RPReLU) are as narrow as the throughput allows: a ResNet-20 at PE 16 needs 2 lanes
    (its 32x32x16 maps: 8,192 beats against the engines' 9,216 cycles), not 16."""
    pe = net.layers[0].folding.pe
    bound = max(l.conv.out_height * l.conv.out_width * l.neuron_folds * l.synapse_folds
                for l in net.layers)
    maps = [net.tensor(node.output).shape for node in net.nodes
            if net.tensor(node.output).type in ("fixed", "acc")]    # (H, W, C) each
    return next(n for n in range(1, pe + 1) if pe % n == 0
                and all(shape[-1] % n == 0 and math.prod(shape) // n <= bound
                        for shape in maps))


def uniform_folding(net: ResidualNetwork, max_pe: int = 16) -> list[Folding]:
    """The network's foldings with one PE for every convolution: the largest divisor of the
    greatest common divisor of their output channels that is at most ``max_pe``; SIMD kept.
    Pass it to :func:`models.export_residual.export_resnet` (``folding=``)."""
    g = 0
    for layer in net.layers:
        g = math.gcd(g, layer.out_features)
    pe = max(d for d in range(1, min(g, max_pe) + 1) if g % d == 0)
    return [Folding(pe=pe, simd=l.folding.simd) for l in net.layers]


def refold_residual(net: ResidualNetwork, folding: list[Folding]) -> ResidualNetwork:
    """The same network with another folding (one :class:`Folding` per convolution; the
    memories are laid out anew when written)."""
    from dataclasses import replace

    from sw.compiled_net import validate_folding
    if len(folding) != len(net.layers):
        raise UserError(f"the folding has {len(folding)} entries, the network has "
                        f"{len(net.layers)} convolutions")
    validate_folding(folding, [l.fold_shape for l in net.layers])
    return replace(net, layers=[replace(l, folding=f) for l, f in zip(net.layers, folding)])


def resolve_folding(net: ResidualNetwork, fold=None) -> tuple[ResidualNetwork, str | None]:
    """The network with the folding the accelerator is generated with, and a note saying
    where it came from when it is not the export's own: ``fold`` a folding JSON path or dict
    (``{"layers": [{"pe", "simd"}, ...]}``, one entry per convolution), a list of
    :class:`Folding`, ``"uniform"`` (:func:`uniform_folding`) or ``None``: the export's own
    folding when every convolution has the same PE, else :func:`uniform_folding` (the
    fixed-point streams need one PE for every convolution; the exporter's default folding
    gives wider layers more PEs)."""
    if fold is None:
        if len({l.folding.pe for l in net.layers}) <= 1:
            return net, None
        folding = uniform_folding(net)
        pes = ", ".join(str(l.folding.pe) for l in net.layers)
        return refold_residual(net, folding), (
            f"the export's convolutions have PE {pes}; the residual accelerator needs one PE "
            f"for every convolution: refolded to PE {folding[0].pe} (SIMD kept; --fold "
            f"FOLD.json chooses another)")
    if isinstance(fold, str) and fold == "uniform":
        folding = uniform_folding(net)
        return refold_residual(net, folding), f"uniform folding, PE {folding[0].pe}"
    if isinstance(fold, (str, Path, dict)):
        from sw.compiled_net import fold_config_from_json
        folding = fold_config_from_json(fold, len(net.layers),
                                        [l.fold_shape for l in net.layers])
        return refold_residual(net, folding), f"folding from {fold if not isinstance(fold, dict) else 'the given dict'}"
    return refold_residual(net, list(fold)), "the given folding"


def value_ranges(net: ResidualNetwork) -> dict:
    """Per tensor (but the image and binary maps) the per-channel ``(lo, hi)`` int64 arrays
    its values can take, from the constants by interval arithmetic (sound: every unit is
    monotone on each piece, so the extremes are at the pieces' ends): ``conv``
    ``[acc_min, acc_max]``; ``affine`` its two ends (saturated); ``rprelu`` its ends and
    ``d = 0, -1``; ``add`` the sums (saturated); ``avgpool2x2`` the input's; ``dup_channels``
    tiled; ``global_sumpool`` ``H*W`` times, shifted; ``linear`` ``bias + sum`` over the box."""
    from sw import fixed_point as fp
    rng: dict = {}
    for node in net.nodes:
        out = net.tensor(node.output)
        c = node.constants
        if node.op == "conv":
            lay = net.layers[node.attrs["layer"]]
            rng[node.output] = (np.full(out.channels, lay.acc_min, np.int64),
                                np.full(out.channels, lay.acc_max, np.int64))
            continue
        if node.op in ("thermometer", "binarize"):
            continue
        lo, hi = rng[node.inputs[0]]
        if node.op == "affine":
            y = fp.affine(np.stack([lo, hi]), c["mult"], node.attrs["shift"], c["add"], out.fmt)
        elif node.op == "rprelu":
            g = np.asarray(c["gamma"], np.int64)
            pts = np.stack([lo, hi, np.clip(g, lo, hi), np.clip(g - 1, lo, hi)])
            y = fp.rprelu(pts, g, c["mult"], node.attrs["shift"], c["zeta"], out.fmt)
        elif node.op == "add":
            lo2, hi2 = rng[node.inputs[1]]
            y = out.fmt.saturate(np.stack([lo + lo2, hi + hi2]))
        elif node.op == "avgpool2x2":
            y = np.stack([lo, hi])
        elif node.op == "dup_channels":
            y = np.stack([np.tile(lo, node.attrs["factor"]), np.tile(hi, node.attrs["factor"])])
        elif node.op == "global_sumpool":
            x = net.tensor(node.inputs[0])
            y = fp.round_shift(np.stack([lo, hi]) * (x.shape[0] * x.shape[1]),
                               node.attrs["shift"])
        else:   # linear
            w = np.asarray(c["weight"], dtype=object)
            b = np.asarray(c["bias"], dtype=object)
            lo_o, hi_o = lo.astype(object), hi.astype(object)
            y = np.stack([b + np.where(w > 0, w * lo_o, w * hi_o).sum(axis=1),
                          b + np.where(w > 0, w * hi_o, w * lo_o).sum(axis=1)])
        rng[node.output] = (y.min(axis=0), y.max(axis=0))
    return rng


def score_range_bits(net: ResidualNetwork) -> int:
    """Signed width of the classifier's scores over every input (:func:`value_ranges`):
    usually far narrower than the linear unit's ``score_bits`` bound (any code at every
    pixel, any 32-bit bias); the output beat carries their low bits."""
    from sw.compiled_net import signed_bits
    lo, hi = value_ranges(net)["scores"]
    return max(2, signed_bits(int(min(lo)), int(max(hi))))


def narrow_unit(net: ResidualNetwork, layer, plan: ResidualPlan):
    """The :class:`hw.fixed_narrow.FixedNarrow` after ``layer``'s engine in ``plan``."""
    from .fixed_narrow import FixedNarrow
    return FixedNarrow(bits=tensor_bits(net, net.conv_node(layer.index).output),
                       in_elems=plan.elems_per_beat, out_elems=plan.fixed_elems)


def _consumers(net: ResidualNetwork) -> dict:
    out: dict = {}
    for node in net.nodes:
        for t in node.inputs:
            out.setdefault(t, []).append(node)
    return out


def plan_residual(net: ResidualNetwork, pixels_per_beat: int, *,
                  check_scores: bool = True) -> ResidualPlan:
    """The stage plan of :class:`ResidualAccelerator` for ``net`` (no hardware built).
    One-line :class:`UserError` for what the composition does not support (with
    ``check_scores``, the default, also scores wider than the 32-bit output beat; the timing
    does not depend on it)."""
    if not isinstance(net, ResidualNetwork):
        raise UserError(f"the residual accelerator needs a version 4 network, not "
                        f"{type(net).__name__}")
    if not isinstance(pixels_per_beat, int) or isinstance(pixels_per_beat, bool) \
            or pixels_per_beat < 1 or net.input.pixels % pixels_per_beat:
        raise UserError(f"the image has {net.input.pixels} values, not a multiple of "
                        f"{pixels_per_beat!r} pixels per beat")
    pes = [l.folding.pe for l in net.layers]
    if len(set(pes)) != 1:
        raise UserError(f"the convolutions have PE {', '.join(map(str, pes))}: the fixed-point "
                        f"streams need one PE for every convolution; refold with "
                        f"hw.residual_accelerator.uniform_folding")
    e = pes[0]
    f = fixed_elems_per_beat(net)
    cons = _consumers(net)
    state = {"count": pixels_per_beat * net.input.levels, "elem": BIT,
             "size": net.input.bits}
    blocks: list = []

    def stages_of(node: Node) -> list:
        if node.op == "thermometer":
            return [PlanStage("thermometer", "thermometer")]
        if node.op == "conv":
            layer = net.layers[node.attrs["layer"]]
            i, simd, c = layer.index, layer.folding.simd, layer.conv
            planes = 1 if state["elem"] == BIT else 2
            out = []
            if state["count"] != simd:
                out.append(PlanStage("convert", f"convert{i}", StageInfo(
                    "convert", f"convert{i}", layer=i, planes=planes, in_count=state["count"],
                    out_count=simd, vector_elems=None, pad_elems=0,
                    elems_per_image=state["size"])))
            if c.pad:
                out.append(PlanStage("pad", f"pad{i}", StageInfo(
                    "pad", f"pad{i}", layer=i, planes=planes, channels=c.in_channels,
                    height=c.in_height, width=c.in_width, pad=c.pad, elems_per_beat=simd)))
            out.append(PlanStage("window", f"window{i}", StageInfo(
                "window", f"window{i}", layer=i, planes=planes, channels=c.in_channels,
                height=c.padded_height, width=c.padded_width, kernel=c.kernel,
                stride=c.stride, simd=simd)))
            out.append(PlanStage("mvtu", f"mvtu{i}", layer=layer))
            if f != e:
                out.append(PlanStage("narrow", f"narrow{i}", layer=layer))
            return out
        x = net.tensor(node.inputs[0])
        if x.shape[-1] % f:
            raise UserError(f"node {node.name}: {x.shape[-1]} channels are not a multiple of "
                            f"the {f} elements per beat")
        if node.op == "binarize":
            t = net.tensor(node.output)
            state.update(count=f, elem=BIT if t.type == "bit" else ML_PAIR,
                         size=math.prod(t.shape))
        return [PlanStage("fixed", node.name, node=node)]

    def branch(first: Node, fork: str):
        """Stages from ``first`` up to (not including) the add it reaches, and that add."""
        out, node = [], first
        while node.op != "add":
            out += stages_of(node)
            nxt = cons.get(node.output, [])
            if len(nxt) != 1:
                raise UserError(f"tensor {node.output} inside the block from {fork} is read by "
                                f"{len(nxt)} nodes; nested forks are not supported")
            node = nxt[0]
        return out, node

    items: list = []
    t = "image"
    while t != "scores":
        readers = cons.get(t, [])
        if len(readers) == 1:
            node = readers[0]
            if node.op == "add":
                raise UserError(f"node {node.name}: an add outside a fork/join block")
            items += stages_of(node)
            t = node.output
            continue
        if len(readers) != 2:
            raise UserError(f"tensor {t} is read by {len(readers)} nodes; the residual "
                            f"accelerator supports forks of two")
        paths = [([], r) if r.op == "add" else branch(r, t) for r in readers]
        # The main path is the one with the convolution (either reader may come first).
        if not any(s.kind == "mvtu" for s in paths[0][0]):
            paths.reverse()
        (main, add), (skip, add2) = paths
        if add is not add2:
            raise UserError(f"the two paths from fork {t} end in different adds "
                            f"({add.name}, {add2.name})")
        if not any(s.kind == "mvtu" for s in main) or any(
                s.kind != "fixed" or s.node.op not in ("avgpool2x2", "dup_channels")
                for s in skip):
            raise UserError(f"block {add.name}: the shortcut from {t} must be avgpool2x2 / "
                            f"dup_channels only and the main path hold the convolution")
        blk = PlanBlock(add.name, t, main, skip, add)
        items.append(blk)
        blocks.append(blk)
        t = add.output
    lin = net.producer("scores")
    width = score_range_bits(net)
    if check_scores and width > SCORE_BEAT_BITS:
        raise UserError(f"classifier {lin.name}'s scores need {width} bits, more than the "
                        f"{SCORE_BEAT_BITS}-bit output beat")
    items.append(PlanStage("serializer", "serializer"))
    return ResidualPlan(items, e, f, width, blocks)


# ----------------------------------------------------------------------------- hardware


class ResidualAccelerator(wiring.Component):
    """The streaming accelerator of a residual network (module docstring).

    Parameters
    ----------
    net : ResidualNetwork
        With one PE for every convolution (:func:`uniform_folding`).
    init_dir : path
        The export directory (the engines' ``L{i}_*.mem`` files; the fixed-point units' constants
        come from ``net``'s nodes, read from the same directory by the loader).
    pixels_per_beat : int
    rom_mode : {"sim", "verilog"}
        The engines' ROMs (the fixed-point units' tables are initialised memories either way).
    skip_depths : dict, optional
        Skip FIFO depth per block (add node name); default :func:`hw.residual_timing.skip_fifo_depths`.

    Ports: those of :class:`hw.accelerator.Accelerator`: ``s_axis_*`` (images counted in
    beats, ``tlast`` checked: the sticky STATUS framing error), ``m_axis_*`` and the
    AXI4-Lite registers (:class:`hw.axi_lite_regs.AxiLiteRegisterBlock`: ID, CONFIG with the
    convolutions as layers, STATUS, IMAGES_DONE, CYCLES, LAYERi_FOLD/SHAPE of the
    convolutions; no exits, no writable parameters).  Output per image: the class, then the
    ``K`` scores sign-extended.
    """

    def __init__(self, net: ResidualNetwork, *, init_dir, pixels_per_beat: int = 1,
                 rom_mode: str = "sim", skip_depths: dict | None = None):
        from .mvtu import MatrixVectorThresholdUnit
        self._net, self._ppb, self._rom_mode = net, pixels_per_beat, rom_mode
        self._init_dir = Path(init_dir)
        self._plan = plan_residual(net, pixels_per_beat)
        if skip_depths is None:
            from .residual_timing import skip_fifo_depths    # (it plans with this module)
            skip_depths = skip_fifo_depths(net, pixels_per_beat)
        self._skip_depths = dict(skip_depths)
        self._engines = [MatrixVectorThresholdUnit(l, init_dir=self._init_dir, rom_mode=rom_mode)
                         for l in net.layers]
        for l, eng in zip(net.layers, self._engines):
            w = eng.o.payload.shape().elem_shape.width
            node = net.conv_node(l.index)
            if w != tensor_bits(net, node.output):
                raise AssertionError(f"engine {l.index} emits {w}-bit scores, its affine takes "
                                     f"{tensor_bits(net, node.output)}")
        self._serializer = OutputSerializer(net.classes, 1, net.classes, self._plan.score_bits)
        for blk in self._plan.blocks:
            depth = self._skip_depths.get(blk.name)
            if not isinstance(depth, int) or depth < 2:
                raise UserError(f"block {blk.name}: skip FIFO depth must be an int >= 2, "
                                f"not {depth!r}")
        check_register_map(net)
        self._regs = AxiLiteRegisterBlock(
            [(l.folding.pe, l.folding.simd, l.in_features, l.out_features) for l in net.layers],
            pixels_per_beat=pixels_per_beat, classes=net.classes,
            thermometer_levels=net.input.levels)
        self._beats_per_image = net.input.pixels // pixels_per_beat
        super().__init__({
            "s_axis_tdata": In(8 * pixels_per_beat), "s_axis_tvalid": In(1),
            "s_axis_tready": Out(1), "s_axis_tlast": In(1),
            "m_axis_tdata": Out(SCORE_BEAT_BITS), "m_axis_tvalid": Out(1),
            "m_axis_tready": In(1), "m_axis_tlast": Out(1),
            **{name: member for name, member in self._regs.signature.members.items()
               if name.startswith("s_axil_")}})

    net = property(lambda self: self._net)
    plan = property(lambda self: self._plan)
    skip_depths = property(lambda self: dict(self._skip_depths))
    engines = property(lambda self: list(self._engines))
    elems_per_beat = property(lambda self: self._plan.elems_per_beat)

    def elaborate(self, platform):
        from .thermometer import ThermometerEncoder
        m = Module()
        net = self._net
        m.submodules.thermometer = therm = ThermometerEncoder(self._ppb, net.input.thresholds)
        m.submodules.regs = regs = self._regs
        s_fire = Signal()
        m.d.comb += [therm.i.payload.eq(self.s_axis_tdata),
                     therm.i.valid.eq(self.s_axis_tvalid),
                     self.s_axis_tready.eq(therm.i.ready),
                     s_fire.eq(self.s_axis_tvalid & therm.i.ready)]
        # Framing check as Accelerator's: images are counted in beats, tlast only checked.
        beat = Signal(range(max(self._beats_per_image, 2)))
        last_beat = beat == self._beats_per_image - 1
        with m.If(s_fire):
            m.d.sync += beat.eq(Mux(last_beat, 0, beat + 1))
        m.d.comb += regs.frame_error.eq(s_fire & (self.s_axis_tlast != last_beat))

        m.submodules.serializer = ser = self._serializer
        out = self._build(m, self._plan.items[1:-1], therm.o)
        # The linear unit's scores are score_bits wide; their range fits plan.score_bits.
        m.d.comb += [ser.i.payload[0].eq(out.payload[0]), ser.i.valid.eq(out.valid),
                     out.ready.eq(ser.i.ready)]
        m_fire = Signal()
        m.d.comb += [self.m_axis_tdata.eq(ser.o.payload.data),
                     self.m_axis_tlast.eq(ser.o.payload.last),
                     self.m_axis_tvalid.eq(ser.o.valid), ser.o.ready.eq(self.m_axis_tready),
                     m_fire.eq(ser.o.valid & self.m_axis_tready)]

        # Busy / IMAGES_DONE exactly as Accelerator (registered handshakes into the counter).
        in_flight, in_flight_nz = Signal(16), Signal()
        started = s_fire & (beat == 0)
        finished = m_fire & ser.o.payload.last
        started_q, finished_q = Signal(), Signal()
        m.d.sync += [started_q.eq(started), finished_q.eq(finished)]
        with m.If(started_q & ~finished_q):
            m.d.sync += [in_flight.eq(in_flight + 1), in_flight_nz.eq(in_flight != 0xFFFF)]
        with m.Elif(finished_q & ~started_q):
            m.d.sync += [in_flight.eq(in_flight - 1), in_flight_nz.eq(in_flight != 1)]
        m.d.comb += [regs.busy.eq(in_flight_nz | (beat != 0) | started_q),
                     regs.image_done.eq(finished)]
        for name, member in self._regs.signature.members.items():
            if name.startswith("s_axil_"):
                if member.flow == In:
                    m.d.comb += getattr(regs, name).eq(getattr(self, name))
                else:
                    m.d.comb += getattr(self, name).eq(getattr(regs, name))
        return m

    def _build(self, m: Module, items: list, upstream):
        e = self._plan.fixed_elems
        for item in items:
            if isinstance(item, PlanBlock):
                m.submodules[f"{item.name}_fork"] = fork = StreamFork(upstream.payload.shape(), 2)
                _connect_stream(m, upstream, fork.i)
                a = self._build(m, item.main, fork.o0)
                b = self._build(m, item.skip, fork.o1)
                b = _fifo_stream(m, f"{item.name}_skip", b, self._skip_depths[item.name])
                m.submodules[item.name] = add = node_unit(self._net, item.add, e)
                _connect_stream(m, a, add.a)
                _connect_stream(m, b, add.b)
                upstream = add.o
                continue
            if item.kind == "mvtu":
                comp = self._engines[item.layer.index]
            elif item.kind == "narrow":
                comp = narrow_unit(self._net, item.layer, self._plan)
            elif item.kind == "fixed":
                comp = node_unit(self._net, item.node, e)
            else:
                comp = build_stage(item.info)
            m.submodules[item.name] = comp
            _connect_stream(m, upstream, comp.i)
            upstream = comp.o
        return upstream
