"""The accelerator top level: AXI-Stream pixels in, class + scores out, AXI4-Lite registers.

Dataflow (one stage per box, all streams valid/ready)::

    s_axis -> framing check -> ThermometerEncoder -> [width conv + pad] -> MVTU 0
           -> [width conv] -> MVTU 1 -> ... -> MVTU L-1 -> OutputSerializer -> m_axis

A width converter is inserted only where the element counts differ (or layer 0 needs
padding); otherwise the streams are connected directly.  Ports are flat so the emitted
Verilog module (``fracbnn_top``) matches cocotbext-axi's ``from_prefix`` naming; see
docs/hardware.md "Top level".
"""

from __future__ import annotations

from pathlib import Path

from amaranth import Cat, Module, Signal, unsigned
from amaranth.hdl import Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from sw.compiled_net import CompiledNetwork
from sw.errors import UserError

from .axi_lite_regs import AxiLiteRegisterBlock, check_register_map
from .maxpool import MaxPoolUnit
from .output_serializer import SCORE_BEAT_BITS, OutputSerializer, argmax_latency
from .padding import PaddingStage
from .thermometer import ThermometerEncoder
from .width_converter import BIT, ML_PAIR, StreamWidthConverter
from .window import SlidingWindowGenerator

__all__ = ["Accelerator", "StageInfo", "plan_stages", "build_stage"]


class StageInfo:
    """Static description of one pipeline stage (used by the cycle model and design.json).

    ``kind`` is ``"thermometer"``, ``"convert"``, ``"pad"``, ``"window"``, ``"mvtu"``,
    ``"pool"`` or ``"serializer"``; ``params`` holds the numbers that determine its timing.
    """

    __slots__ = ("kind", "name", "params")

    def __init__(self, kind: str, name: str, **params):
        self.kind, self.name, self.params = kind, name, params

    def __repr__(self):
        return f"StageInfo({self.kind!r}, {self.name!r}, {self.params!r})"

    def to_json(self) -> dict:
        return {"kind": self.kind, "name": self.name, **self.params}


def _elem_for(layer):
    return ML_PAIR if layer.out_bits == 2 else BIT


def plan_stages(net: CompiledNetwork, pixels_per_beat: int) -> list[StageInfo]:
    """The stage sequence of the accelerator for ``net`` (no hardware built).

    Per layer: a width converter where the element counts differ (or a dense first layer
    needs input padding); for a convolution the padding stage (``pad > 0``) and the sliding
    window generator, both at SIMD elements per beat; the layer engine; after a pooled
    convolution the max-pool unit at PE elements per beat.

    The stages are the main chain: a network's early exits branch off it after their
    layers' engines (:class:`Accelerator` adds the branches and
    :func:`hw.cycle_model.simulate_pipeline` their timing).

    Raises :class:`sw.errors.UserError` if the image size is not a multiple of
    ``pixels_per_beat``.
    """
    if not isinstance(pixels_per_beat, int) or isinstance(pixels_per_beat, bool) \
            or pixels_per_beat < 1:
        raise UserError(f"pixels per beat must be a positive integer, not {pixels_per_beat!r}")
    if net.input.pixel_bits != 8:
        raise UserError(f"the hardware takes 8-bit pixels, the network has "
                        f"{net.input.pixel_bits}-bit pixels; export it with 8-bit input")
    pixels = net.input.pixels
    if pixels % pixels_per_beat:
        raise UserError(f"the image has {pixels} pixels, not a multiple of {pixels_per_beat} "
                        f"pixels per beat; choose --pixels-per-beat from "
                        f"{[d for d in range(1, min(pixels, 64) + 1) if pixels % d == 0]}")
    levels = net.input.levels
    stages = [StageInfo("thermometer", "thermometer", pixels_per_beat=pixels_per_beat,
                        levels=levels, beats_per_image=pixels // pixels_per_beat)]
    elem, count, size = BIT, pixels_per_beat * levels, net.input.bits
    for layer in net.layers:
        i, simd, pe = layer.index, layer.folding.simd, layer.folding.pe
        planes = 1 if elem == BIT else 2
        pad = layer.mw_padded - layer.in_features
        if count != simd or pad:
            stages.append(StageInfo(
                "convert", f"convert{i}", layer=i, planes=planes, in_count=count, out_count=simd,
                vector_elems=layer.in_features if pad else None, pad_elems=pad,
                elems_per_image=size))
        if layer.conv is not None:
            c = layer.conv
            if c.pad:
                stages.append(StageInfo(
                    "pad", f"pad{i}", layer=i, planes=planes, channels=c.in_channels,
                    height=c.in_height, width=c.in_width, pad=c.pad, elems_per_beat=simd))
            stages.append(StageInfo(
                "window", f"window{i}", layer=i, planes=planes, channels=c.in_channels,
                height=c.padded_height, width=c.padded_width, kernel=c.kernel,
                stride=c.stride, simd=simd))
        stages.append(StageInfo(
            "mvtu", f"mvtu{i}", layer=i, pe=pe, simd=simd,
            synapse_folds=layer.synapse_folds, neuron_folds=layer.neuron_folds,
            in_bits=layer.in_bits, out=layer.out, vectors=layer.vectors_per_image))
        elem, count, size = _elem_for(layer), pe, layer.out_size
        if layer.pool:
            c = layer.conv
            stages.append(StageInfo(
                "pool", f"pool{i}", layer=i, planes=1 if elem == BIT else 2,
                channels=layer.out_features, height=c.out_height, width=c.out_width,
                elems_per_beat=pe, kernel=layer.pool, stride=layer.pool))
    last = net.layers[-1]
    stages.append(StageInfo("serializer", "serializer", classes=net.classes,
                            pe=last.folding.pe, neuron_folds=last.neuron_folds,
                            argmax_latency=argmax_latency(last.folding.pe,
                                                          net.output.class_keys is not None)))
    return stages


def build_stage(info: StageInfo):
    """The component of a ``convert``, ``pad``, ``window`` or ``pool`` stage."""
    p = info.params
    elem = BIT if p["planes"] == 1 else ML_PAIR
    if info.kind == "convert":
        return StreamWidthConverter(elem, p["in_count"], p["out_count"],
                                    vector_elems=p["vector_elems"], pad_elems=p["pad_elems"])
    if info.kind == "pad":
        return PaddingStage(elem, channels=p["channels"], height=p["height"], width=p["width"],
                            pad=p["pad"], elems_per_beat=p["elems_per_beat"])
    if info.kind == "window":
        return SlidingWindowGenerator(elem, channels=p["channels"], height=p["height"],
                                      width=p["width"], kernel=p["kernel"], stride=p["stride"],
                                      simd=p["simd"])
    if info.kind == "pool":
        return MaxPoolUnit(elem, channels=p["channels"], height=p["height"], width=p["width"],
                           elems_per_beat=p["elems_per_beat"], kernel=p["kernel"],
                           stride=p["stride"])
    raise ValueError(f"no stream component for stage kind {info.kind!r}")


class Accelerator(wiring.Component):
    """The whole streaming accelerator for one compiled network.

    Parameters
    ----------
    net : CompiledNetwork
        The network with its folding (use :func:`sw.compiled_net.refold` for another).
    init_dir : path
        Directory with the network's ``.mem`` files laid out for ``net``'s folding.
    pixels_per_beat : int
        Pixels per ``s_axis`` beat (``P`` must be a multiple of it).
    rom_mode : {"sim", "verilog"}
        ROM elaboration (Amaranth memories, or ``fracbnn_rom`` instances for Verilog).
    writable_params : bool
        Weight, threshold and gate memories are RAMs the host writes through the
        PARAM_SELECT / PARAM_DATA registers (:mod:`hw.param_loader`; docs/hardware.md
        "Writable parameters"), so a retrained network of the same shapes and folding needs
        no new bitstream.  Default ``False`` (ROMs).
    ram_style : hw.memory_style.RamStyle or str, optional
        Where the weight, threshold and gate memories go (``--ram-style`` syntax,
        :func:`hw.memory_style.parse_ram_style`; checked against ``net``, one-line
        :class:`sw.errors.UserError` otherwise); default ``auto`` everywhere, the depth-aware
        rule.  :attr:`rom_plan` lists the result.

    Ports (flat, see docs/hardware.md "Top level")
    -----
    ``s_axis_tdata[8*PPB-1:0]``, ``s_axis_tvalid``, ``s_axis_tready``, ``s_axis_tlast``;
    ``m_axis_tdata[31:0]``, ``m_axis_tvalid``, ``m_axis_tready``, ``m_axis_tlast``;
    ``s_axil_*`` (AXI4-Lite, :mod:`hw.axi_lite_regs`).  Clock ``clk`` and active-high
    synchronous reset ``rst`` come from the ``sync`` domain.

    Early exits (``net.exits``, after dense layers): each exit's branch (its classifier
    engine on the ``X<j>_*.mem`` memories, in ``rom_mode`` like the layers, placed by the
    ``auto`` rule) and the in-order merges (docs/hardware.md "Early exits"); the register
    block counts the results per exit (EXITS, EXITj_TAKEN).  Refused in one line: writable
    parameters with exits, an exit after a convolution, a network beyond the register map
    (:func:`hw.axi_lite_regs.check_register_map`).

    Framing: the input is counted in images of ``P/PPB`` beats regardless of ``tlast``; a
    ``tlast`` on any other beat, or missing on the last one, sets the sticky STATUS framing
    error.  Output: ``1 + C`` beats per image (class index, then the C scores
    sign-extended; a thresholded last layer's scores are its codes, zero-extended), ``tlast``
    on the last.
    """

    def __init__(self, net: CompiledNetwork, *, init_dir, pixels_per_beat: int = 8,
                 rom_mode: str = "sim", writable_params: bool = False, ram_style=None):
        from .memory_style import parse_ram_style
        from .mvtu import MatrixVectorThresholdUnit  # the layer engine

        if not isinstance(net, CompiledNetwork):
            raise TypeError(f"net must be a CompiledNetwork, not {type(net).__name__}")
        self._net = net
        self._ppb = pixels_per_beat
        self._rom_mode = rom_mode
        self._init_dir = Path(init_dir)
        if net.exits:
            if writable_params:
                raise UserError("writable parameters do not cover early exits yet; build the "
                                "exit network without --writable-params")
            for ex in net.exits:
                if net.layers[ex.after].conv is not None:
                    raise UserError(f"an early exit after convolution layer {ex.after} is not "
                                    f"supported in hardware; put exits after dense layers")
        self._stages = plan_stages(net, pixels_per_beat)
        self._beats_per_image = net.input.pixels // pixels_per_beat
        # Build the layer engines now so their timing properties are available up front.
        self._writable = bool(writable_params)
        self._ram_style = parse_ram_style(ram_style).check(net)
        self._mvtus = [MatrixVectorThresholdUnit(
            layer, init_dir=self._init_dir, rom_mode=rom_mode, writable_params=self._writable,
            ram_style=self._ram_style.for_layer(layer.index))
            for layer in net.layers]
        last = net.layers[-1]
        if last.out == "scores":
            self._acc_width = self._mvtus[-1].o.payload.shape().elem_shape.width
            score_range = (last.acc_min, last.acc_max)
        else:   # a thresholded last layer: its codes 0..levels-1 are the scores
            self._acc_width = last.out_bits + 1
            score_range = (0, last.levels - 1)
        if self._acc_width > SCORE_BEAT_BITS:
            raise UserError(f"last layer scores need {self._acc_width} bits, more than the "
                            f"{SCORE_BEAT_BITS}-bit output beat; reduce its fan-in")
        self._serializer = OutputSerializer(net.classes, last.folding.pe, last.neuron_folds,
                                            self._acc_width, keys=net.output.class_keys,
                                            score_range=score_range)
        self._exit_units = [self._exit_branch(ex) for ex in net.exits]
        check_register_map(net)
        self._regs = AxiLiteRegisterBlock(
            [(l.folding.pe, l.folding.simd, l.in_features, l.out_features) for l in net.layers],
            pixels_per_beat=pixels_per_beat, classes=net.classes,
            thermometer_levels=net.input.levels, writable_params=self._writable,
            exits=len(net.exits))
        super().__init__({
            "s_axis_tdata": In(8 * pixels_per_beat), "s_axis_tvalid": In(1),
            "s_axis_tready": Out(1), "s_axis_tlast": In(1),
            "m_axis_tdata": Out(SCORE_BEAT_BITS), "m_axis_tvalid": Out(1),
            "m_axis_tready": In(1), "m_axis_tlast": Out(1),
            **{name: member for name, member in self._regs.signature.members.items()
               if name.startswith("s_axil_")},
        })

    def _exit_branch(self, ex) -> dict:
        """The components of one early exit (docs/hardware.md "Early exits")."""
        from .exit_decision import ExitDecision
        from .mvtu import MatrixVectorThresholdUnit

        lay = ex.layer
        engine = MatrixVectorThresholdUnit(lay, init_dir=self._init_dir, rom_mode=self._rom_mode,
                                           file_prefix="X")
        width = engine.o.payload.shape().elem_shape.width
        if width > SCORE_BEAT_BITS:
            raise UserError(f"exit {lay.index} scores need {width} bits, more than the "
                            f"{SCORE_BEAT_BITS}-bit output beat")
        ser = OutputSerializer(self._net.classes, lay.folding.pe, lay.neuron_folds, width)
        return {"exit": ex, "engine": engine, "serializer": ser,
                "decision": ExitDecision(self._net.classes, ex.margin, width)}

    def _elaborate_exit(self, m: Module, j: int, unit: dict, upstream):
        """Fork layer ``k``'s stream to exit ``j``'s engine and a hold buffer; returns the
        hold buffer's output (the stream to engine ``k + 1``).  The order and result FIFOs
        go to :attr:`_exit_fifos` for the merges."""
        from .exit_branch import HOLD_IMAGES, ORDER_DEPTH, RESULT_IMAGES
        from .hold_buffer import HoldDropBuffer
        from .stream_fork import StreamFork
        from .width_converter import StreamWidthConverter

        if not hasattr(self, "_exit_fifos"):
            self._exit_fifos = {}
        src = self._net.layers[unit["exit"].after]
        lay = unit["exit"].layer
        shape = upstream.payload.shape()
        m.submodules[f"exit{j}_fork"] = fork = StreamFork(shape, 2)
        _connect_stream(m, upstream, fork.i)
        branch = fork.o0
        if src.folding.pe != lay.folding.simd:
            m.submodules[f"exit{j}_convert"] = conv = StreamWidthConverter(
                _elem_for(src), src.folding.pe, lay.folding.simd)
            _connect_stream(m, branch, conv.i)
            branch = conv.o
        engine, ser, decide = unit["engine"], unit["serializer"], unit["decision"]
        m.submodules[f"exit{j}_engine"] = engine
        m.submodules[f"exit{j}_serializer"] = ser
        m.submodules[f"exit{j}_decision"] = decide
        _connect_stream(m, branch, engine.i)
        _connect_stream(m, engine.o, ser.i)
        _connect_stream(m, ser.o, decide.i)
        # Layer k's beats per image; the buffer sizes are hw.exit_branch's.
        beats = src.neuron_folds * src.vectors_per_image
        m.submodules[f"exit{j}_hold"] = hold = HoldDropBuffer(len(Value.cast(upstream.payload)),
                                                              beats, HOLD_IMAGES * beats)
        m.d.comb += [hold.i.payload.eq(Value.cast(fork.o1.payload)),
                     hold.i.valid.eq(fork.o1.valid), fork.o1.ready.eq(hold.i.ready)]
        m.submodules[f"exit{j}_dfork"] = dfork = StreamFork(unsigned(1), 2)
        _connect_stream(m, decide.d, dfork.i)
        _connect_stream(m, dfork.o0, hold.d)                    # 1 = exits here: drop
        order = _fifo_stream(m, f"exit{j}_order", dfork.o1, ORDER_DEPTH)
        result = _fifo_stream(m, f"exit{j}_result", decide.o,
                              RESULT_IMAGES * (1 + self._net.classes))
        self._exit_fifos[j] = (order, result)
        out = stream.Signature(shape).create(path=(f"exit{j}_hold", "o"))
        m.d.comb += [Value.cast(out.payload).eq(hold.o.payload), out.valid.eq(hold.o.valid),
                     hold.o.ready.eq(out.ready)]
        return out

    net = property(lambda self: self._net)
    pixels_per_beat = property(lambda self: self._ppb)
    rom_mode = property(lambda self: self._rom_mode)
    beats_per_image = property(lambda self: self._beats_per_image)
    acc_width = property(lambda self: self._acc_width)
    writable_params = property(lambda self: self._writable)
    ram_style = property(lambda self: self._ram_style)

    @property
    def rom_plan(self) -> list:
        """Every parameter ROM of the design with its placement
        (:class:`hw.memory_style.RomPlacement`, layer by layer, then the exits' ``X<j>``
        ROMs; exits take the ``auto`` rule)."""
        return [p for engine in self.engines + self.exit_engines for p in engine.rom_plan]

    def param_widths(self) -> dict[int, int]:
        """Writable-parameter memory index (``3*layer + kind``) -> word width in bits."""
        from sw.compiled_net import MEMORY_KINDS
        from sw.memory_layout import memory_widths
        return {3 * i + MEMORY_KINDS.index(kind): width
                for i, layer in enumerate(self._net.layers)
                for kind, width in memory_widths(layer).items()}

    @property
    def stages(self) -> list[StageInfo]:
        """The pipeline stages in dataflow order."""
        return list(self._stages)

    @property
    def engines(self) -> list:
        """The layer engines (:class:`hw.mvtu.MatrixVectorThresholdUnit`), one per layer."""
        return list(self._mvtus)

    @property
    def exit_engines(self) -> list:
        """The early exits' classifier engines (:class:`hw.mvtu.MatrixVectorThresholdUnit`
        on the ``X<j>_*.mem`` memories), one per exit."""
        return [unit["engine"] for unit in self._exit_units]

    @property
    def output_beats_per_image(self) -> int:
        return 1 + self._net.classes

    def elaborate(self, platform):
        m = Module()
        net, ppb = self._net, self._ppb

        m.submodules.thermometer = therm = ThermometerEncoder(ppb, net.input.thresholds)
        m.submodules.regs = regs = self._regs
        m.submodules.serializer = ser = self._serializer

        # Input: AXI-Stream -> thermometer, with the framing check on the side.
        s_fire = Signal()
        m.d.comb += [
            therm.i.payload.eq(self.s_axis_tdata),
            therm.i.valid.eq(self.s_axis_tvalid),
            self.s_axis_tready.eq(therm.i.ready),
            s_fire.eq(self.s_axis_tvalid & therm.i.ready),
        ]
        beat = Signal(range(max(self._beats_per_image, 2)))
        last_beat = beat == self._beats_per_image - 1
        with m.If(s_fire):
            with m.If(last_beat):
                m.d.sync += beat.eq(0)
            with m.Else():
                m.d.sync += beat.eq(beat + 1)
        m.d.comb += regs.frame_error.eq(s_fire & (self.s_axis_tlast != last_beat))

        # Chain: thermometer -> (converter) -> MVTU -> ... -> serializer.
        upstream = therm.o
        mvtu_iter = iter(self._mvtus)
        for info in self._stages[1:-1]:
            if info.kind != "mvtu":
                stage = build_stage(info)
                m.submodules[info.name] = stage
                _connect_stream(m, upstream, stage.i)
                upstream = stage.o
            else:
                engine = next(mvtu_iter)
                m.submodules[info.name] = engine
                _connect_stream(m, upstream, engine.i)
                upstream = engine.o
                for j, unit in enumerate(self._exit_units):
                    if unit["exit"].after == info.params["layer"]:
                        upstream = self._elaborate_exit(m, j, unit, upstream)
        last = net.layers[-1]
        if last.out == "scores":
            _connect_stream(m, upstream, ser.i)
        else:
            # Thresholded last layer: lane p's code q (bit, or planes m, l) zero-extended.
            pay = upstream.payload
            for p in range(last.folding.pe):
                code = pay[p] if last.out_bits == 1 else Cat(pay.l[p], pay.m[p])
                m.d.comb += ser.i.payload[p].eq(code)
            m.d.comb += [ser.i.valid.eq(upstream.valid), upstream.ready.eq(ser.i.ready)]

        # Early exits: in-order merges, the last exit's innermost (docs/hardware.md).  A
        # merge's output is combinational from its selected input, so the last beat of a
        # result leaves every merge and m_axis in the same cycle: EXIT<j>_TAKEN counts it at
        # merge j when merge j took it from its exit.
        from .exit_merge import InOrderMerge
        out = ser.o
        for j in reversed(range(len(self._exit_units))):
            m.submodules[f"exit{j}_merge"] = merge = InOrderMerge()
            order, result = self._exit_fifos[j]
            _connect_stream(m, order, merge.order)
            _connect_stream(m, result, merge.exit)
            _connect_stream(m, out, merge.rest)
            out = merge.o
            m.d.comb += regs.exit_taken[j].eq(merge.o.valid & merge.o.ready
                                              & merge.o.payload.last & merge.taken)

        # Output: serializer (or the exits' merge) -> AXI-Stream.
        m_fire = Signal()
        m.d.comb += [
            self.m_axis_tdata.eq(out.payload.data),
            self.m_axis_tlast.eq(out.payload.last),
            self.m_axis_tvalid.eq(out.valid),
            out.ready.eq(self.m_axis_tready),
            m_fire.eq(out.valid & self.m_axis_tready),
        ]

        # Busy: images whose first beat came in and whose last result beat has not left.  The
        # handshakes are registered before they reach the counter (its carry chain is then
        # not behind the AXI-Stream ready/valid logic); `started_q` covers the one cycle in
        # which a started image is not yet counted.
        # "in_flight != 0" is a register of its own, updated with the counter from the
        # counter's present value (a compare with a constant, no carry chain before it; the
        # wide OR is not in front of the register file's read select).
        in_flight = Signal(16)
        in_flight_nz = Signal()
        started = s_fire & (beat == 0)
        finished = m_fire & out.payload.last
        started_q, finished_q = Signal(), Signal()
        m.d.sync += [started_q.eq(started), finished_q.eq(finished)]
        with m.If(started_q & ~finished_q):
            m.d.sync += [in_flight.eq(in_flight + 1), in_flight_nz.eq(in_flight != 0xFFFF)]
        with m.Elif(finished_q & ~started_q):
            m.d.sync += [in_flight.eq(in_flight - 1), in_flight_nz.eq(in_flight != 1)]
        m.d.comb += [
            regs.busy.eq(in_flight_nz | (beat != 0) | started_q),
            regs.image_done.eq(finished),
        ]

        if self._writable:
            from sw.compiled_net import MEMORY_KINDS
            from .param_loader import ParamLoader
            m.submodules.param_loader = loader = ParamLoader(self.param_widths())
            m.d.comb += [loader.select_we.eq(regs.param_select_we),
                         loader.data_we.eq(regs.param_data_we),
                         loader.wdata.eq(regs.param_wdata)]
            for i, eng in enumerate(self._mvtus):
                for k in range(len(MEMORY_KINDS)):
                    m.d.comb += eng.p_we[k].eq(loader.we & (loader.index == 3 * i + k))
                m.d.comb += [eng.p_addr.eq(loader.addr[:len(eng.p_addr)]),
                             eng.p_data.eq(loader.data[:len(eng.p_data)])]

        # Registers: pass the flat AXI4-Lite ports through.
        for name, member in self._regs.signature.members.items():
            if not name.startswith("s_axil_"):
                continue
            if member.flow == In:
                m.d.comb += getattr(regs, name).eq(getattr(self, name))
            else:
                m.d.comb += getattr(self, name).eq(getattr(regs, name))
        return m


def _fifo_stream(m: Module, name: str, source, depth: int):
    """``source`` through a :class:`amaranth.lib.fifo.SyncFIFOBuffered` of ``depth``; returns
    the FIFO's read side as a stream."""
    from amaranth.lib import fifo as _fifo
    from amaranth.lib import stream as _stream
    width = len(Value.cast(source.payload))
    m.submodules[name] = q = _fifo.SyncFIFOBuffered(width=width, depth=depth)
    m.d.comb += [q.w_data.eq(Value.cast(source.payload)), q.w_en.eq(source.valid),
                 source.ready.eq(q.w_rdy)]
    out = _stream.Signature(source.payload.shape()).create(path=(name, "r"))
    m.d.comb += [Value.cast(out.payload).eq(q.r_data), out.valid.eq(q.r_rdy),
                 q.r_en.eq(out.ready)]
    return out


def _connect_stream(m: Module, source, sink) -> None:
    """Connect two stream interfaces whose payloads have the same width."""
    src, dst = Value.cast(source.payload), Value.cast(sink.payload)
    if len(src) != len(dst):
        raise AssertionError(f"stream width mismatch: {len(src)} -> {len(dst)} bits")
    m.d.comb += [dst.eq(src), sink.valid.eq(source.valid), source.ready.eq(sink.ready)]
