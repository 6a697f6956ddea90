"""The board shell: the accelerator as a DMA-attached AXI peripheral (one DMA packet = one batch).

A Xilinx AXI DMA in simple mode moves one *packet* per transfer: MM2S sends TLAST only on the
last beat of the buffer, and an S2MM transfer completes at the first TLAST it receives.  The
accelerator frames every image (TLAST on each image's last beat in and out), so between the two
sits :class:`DmaFramingAdapter`:

* input: the adapter marks every image's last beat with TLAST for the accelerator (and passes
  the DMA's own TLAST through, so a packet that ends inside an image still sets the
  accelerator's sticky framing error), and remembers per image whether the DMA packet ended
  with it;
* output: TLAST goes to the DMA only on the last result beat of an image whose input ended a
  DMA packet, so one S2MM transfer receives exactly the results of one MM2S transfer.

The per-image flags wait in a FIFO of ``depth`` entries (images in flight); when it is full the
adapter holds the last input beat of the next image (backpressure, never loss).  Latency: none
(combinational pass-through of data, valid and ready).

:class:`BoardShell` is the adapter around the accelerator with the same flat ports as
``fracbnn_top`` (``s_axis_*``, ``m_axis_*``, ``s_axil_*``, ``clk``, ``rst``); in
``rom_mode="verilog"`` it instantiates the generated ``fracbnn_top`` module by name, so the
Vivado project builds exactly the generator's RTL.
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.hdl import ClockSignal, Instance, ResetSignal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["DmaFramingAdapter", "BoardShell", "SHELL_NAME"]

#: Verilog module name of :class:`BoardShell`.
SHELL_NAME = "fracbnn_shell"


def _check_positive(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, not {value!r}")


class DmaFramingAdapter(wiring.Component):
    """Per-image framing (accelerator side) <-> per-batch framing (DMA side).

    Parameters
    ----------
    in_width, out_width : int
        ``tdata`` widths of the input and output streams.
    in_beats_per_image, out_beats_per_image : int
        Beats of one image on the input and output side.
    depth : int
        Images that may be inside the accelerator at once before the input is held.

    Ports
    -----
    ``dma_in_*``   : AXI4-Stream slave from the DMA's MM2S (``tdata, tvalid, tready, tlast``).
    ``acc_in_*``   : AXI4-Stream master to the accelerator's ``s_axis``.
    ``acc_out_*``  : AXI4-Stream slave from the accelerator's ``m_axis``.
    ``dma_out_*``  : AXI4-Stream master to the DMA's S2MM.
    """

    def __init__(self, *, in_width: int, out_width: int, in_beats_per_image: int,
                 out_beats_per_image: int, depth: int = 32):
        for name, value in (("in_width", in_width), ("out_width", out_width),
                            ("in_beats_per_image", in_beats_per_image),
                            ("out_beats_per_image", out_beats_per_image), ("depth", depth)):
            _check_positive(name, value)
        self._in_beats = in_beats_per_image
        self._out_beats = out_beats_per_image
        self._depth = depth
        super().__init__({
            "dma_in_tdata": In(in_width), "dma_in_tvalid": In(1), "dma_in_tready": Out(1),
            "dma_in_tlast": In(1),
            "acc_in_tdata": Out(in_width), "acc_in_tvalid": Out(1), "acc_in_tready": In(1),
            "acc_in_tlast": Out(1),
            "acc_out_tdata": In(out_width), "acc_out_tvalid": In(1), "acc_out_tready": Out(1),
            "acc_out_tlast": In(1),
            "dma_out_tdata": Out(out_width), "dma_out_tvalid": Out(1), "dma_out_tready": In(1),
            "dma_out_tlast": Out(1),
        })

    in_beats_per_image = property(lambda self: self._in_beats)
    out_beats_per_image = property(lambda self: self._out_beats)
    depth = property(lambda self: self._depth)

    def elaborate(self, platform):
        m = Module()
        m.submodules.flags = flags = fifo.SyncFIFOBuffered(width=1, depth=self._depth)

        # Input side: count beats, tag each image's last beat, remember whether the packet ended.
        beat = Signal(range(max(self._in_beats, 2)))
        image_end = beat == self._in_beats - 1
        hold = image_end & ~flags.w_rdy          # no room for this image's flag yet
        in_fire = self.dma_in_tvalid & self.acc_in_tready & ~hold
        m.d.comb += [
            self.acc_in_tdata.eq(self.dma_in_tdata),
            self.acc_in_tvalid.eq(self.dma_in_tvalid & ~hold),
            self.acc_in_tlast.eq(self.dma_in_tlast | image_end),
            self.dma_in_tready.eq(self.acc_in_tready & ~hold),
            flags.w_data.eq(self.dma_in_tlast),
            flags.w_en.eq(in_fire & image_end),
        ]
        with m.If(in_fire):
            m.d.sync += beat.eq(0 if self._in_beats == 1 else (beat + 1))
            with m.If(image_end):
                m.d.sync += beat.eq(0)

        # Output side: TLAST to the DMA only where the image closed a packet.
        frame_end = self.acc_out_tlast
        wait_flag = frame_end & ~flags.r_rdy     # cannot happen in order; never guess
        m.d.comb += [
            self.dma_out_tdata.eq(self.acc_out_tdata),
            self.dma_out_tvalid.eq(self.acc_out_tvalid & ~wait_flag),
            self.dma_out_tlast.eq(frame_end & flags.r_data[0]),
            self.acc_out_tready.eq(self.dma_out_tready & ~wait_flag),
            flags.r_en.eq(self.acc_out_tvalid & self.dma_out_tready & frame_end & flags.r_rdy),
        ]
        return m


class BoardShell(wiring.Component):
    """The accelerator behind a :class:`DmaFramingAdapter`, with ``fracbnn_top``'s flat ports.

    Parameters
    ----------
    net : CompiledNetwork or ResidualNetwork
        The network (with the folding the design is generated for): a layer chain
        (:class:`hw.accelerator.Accelerator`) or a residual network
        (:class:`hw.residual_accelerator.ResidualAccelerator`, one PE for every convolution);
        both have the same ports, registers and framing.
    init_dir : path
        Directory of the ``.mem`` files (only read in ``rom_mode="sim"``).
    pixels_per_beat : int
        Pixels per input beat.
    rom_mode : {"sim", "verilog"}
        ``"sim"``: the Amaranth :class:`hw.accelerator.Accelerator` inside (simulation);
        ``"verilog"``: an ``Instance`` of the generated ``fracbnn_top`` module.
    depth : int
        Flag FIFO depth of the adapter.
    """

    def __init__(self, net, *, init_dir=None, pixels_per_beat: int = 8, rom_mode: str = "verilog",
                 depth: int = 32):
        from .accelerator import plan_stages
        from .axi_lite_regs import axil_signature
        from .output_serializer import SCORE_BEAT_BITS

        if rom_mode not in ("sim", "verilog"):
            raise ValueError(f"rom_mode must be 'sim' or 'verilog', not {rom_mode!r}")
        from sw.compiled_net import CompiledNetwork
        if isinstance(net, CompiledNetwork):
            plan_stages(net, pixels_per_beat)   # validates pixels_per_beat
        else:                                   # a residual (version 4) network
            from .residual_accelerator import plan_residual
            plan_residual(net, pixels_per_beat)
        self._net, self._ppb, self._rom_mode = net, pixels_per_beat, rom_mode
        self._init_dir = init_dir
        self._adapter = DmaFramingAdapter(
            in_width=8 * pixels_per_beat, out_width=SCORE_BEAT_BITS,
            in_beats_per_image=net.input.pixels // pixels_per_beat,
            out_beats_per_image=1 + net.classes, depth=depth)
        super().__init__({
            "s_axis_tdata": In(8 * pixels_per_beat), "s_axis_tvalid": In(1),
            "s_axis_tready": Out(1), "s_axis_tlast": In(1),
            "m_axis_tdata": Out(SCORE_BEAT_BITS), "m_axis_tvalid": Out(1),
            "m_axis_tready": In(1), "m_axis_tlast": Out(1),
            **axil_signature(),
        })

    adapter = property(lambda self: self._adapter)

    def elaborate(self, platform):
        m = Module()
        m.submodules.framing = ad = self._adapter
        m.d.comb += [
            ad.dma_in_tdata.eq(self.s_axis_tdata), ad.dma_in_tvalid.eq(self.s_axis_tvalid),
            ad.dma_in_tlast.eq(self.s_axis_tlast), self.s_axis_tready.eq(ad.dma_in_tready),
            self.m_axis_tdata.eq(ad.dma_out_tdata), self.m_axis_tvalid.eq(ad.dma_out_tvalid),
            self.m_axis_tlast.eq(ad.dma_out_tlast), ad.dma_out_tready.eq(self.m_axis_tready),
        ]
        # Accelerator-side nets, by fracbnn_top port name.
        acc = {
            "s_axis_tdata": ad.acc_in_tdata, "s_axis_tvalid": ad.acc_in_tvalid,
            "s_axis_tready": ad.acc_in_tready, "s_axis_tlast": ad.acc_in_tlast,
            "m_axis_tdata": ad.acc_out_tdata, "m_axis_tvalid": ad.acc_out_tvalid,
            "m_axis_tready": ad.acc_out_tready, "m_axis_tlast": ad.acc_out_tlast,
        }
        axil = {name: getattr(self, name) for name in self.signature.members
                if name.startswith("s_axil_")}
        if self._rom_mode == "sim":
            from sw.compiled_net import CompiledNetwork

            from .accelerator import Accelerator
            from .residual_accelerator import ResidualAccelerator
            kind = Accelerator if isinstance(self._net, CompiledNetwork) else ResidualAccelerator
            m.submodules.accel = core = kind(self._net, init_dir=self._init_dir,
                                             pixels_per_beat=self._ppb, rom_mode="sim")
            for name, member in core.signature.members.items():
                outer = acc.get(name, axil.get(name))
                if member.flow == In:
                    m.d.comb += getattr(core, name).eq(outer)
                else:
                    m.d.comb += outer.eq(getattr(core, name))
        else:
            from .generate import TOP_NAME
            ports = {"i_clk": ClockSignal(), "i_rst": ResetSignal()}
            for name, sig in {**acc, **axil}.items():
                inward = name in ("m_axis_tready", "s_axis_tdata", "s_axis_tvalid",
                                  "s_axis_tlast") or (
                    name.startswith("s_axil_") and self.signature.members[name].flow == In)
                ports[("i_" if inward else "o_") + name] = sig
            m.submodules.accel = Instance(TOP_NAME, **ports)
        return m
