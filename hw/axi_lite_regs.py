"""AXI4-Lite register block: identification, configuration read-back, status and counters.

Register map (32-bit registers, byte addresses; documented in docs/hardware.md "Register map"):

====  ===========  ====  ==================================================================
Addr  Name         Acc   Contents
====  ===========  ====  ==================================================================
0x00  ID           RO    0x464E4231 ("FNB1")
0x04  VERSION      RO    register-map version, 0x00010001 (1.1)
0x08  CONFIG       RO    [7:0] layers, [15:8] pixels per beat, [23:16] classes,
                         [31:24] thermometer levels
0x0C  STATUS       RO    bit 0 busy (an image is inside the pipeline), bit 1 sticky framing error
0x10  IMAGES_DONE  RO    images whose last output beat was accepted (since reset/clear)
0x14  CYCLES_LO    RO    clock cycles since reset/clear, bits [31:0]; reading it latches [63:32]
0x18  CYCLES_HI    RO    bits [63:32] latched by the last CYCLES_LO read
0x1C  CTRL         WO    write bit 0 = 1: clear IMAGES_DONE, CYCLES, the exit counters and
                         the framing error
0x20+8i LAYERi_FOLD RO   {PE, SIMD}: PE in [31:16], SIMD in [15:0] (i < 22)
0x24+8i LAYERi_SHAPE RO  {MW, MH}: MW in [31:16], MH in [15:0]
0xD0  EXITS        RO    number of early exits (0..8)
0xD4+4j EXITj_TAKEN RO   images whose result left through exit j (last output beat accepted)
                         since reset/clear (j < EXITS)
0xF8  PARAM_SELECT RW    read: bit 31 = the parameters are writable, [11:0] memories
                         (3 per layer); write (writable builds): [31:20] memory index
                         3*layer + kind, [19:0] first word address (hw.param_loader)
0xFC  PARAM_DATA   WO    next 32-bit chunk of the current parameter word (writable builds)
====  ===========  ====  ==================================================================

0xF4 is reserved.  Unmapped addresses read 0; writes other than to CTRL and the PARAM registers are ignored;
every response is OKAY.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["AxiLiteRegisterBlock", "AXIL_ADDR_BITS", "REG", "REG_ID_VALUE", "REG_VERSION_VALUE",
           "PARAM_WRITABLE", "MAX_EXITS", "axil_signature", "max_layers", "check_register_map"]

AXIL_ADDR_BITS = 8
REG_ID_VALUE = 0x464E4231
REG_VERSION_VALUE = 0x00010001     # 1.1: EXITS and EXITj_TAKEN

#: Register byte addresses.
REG = {
    "ID": 0x00, "VERSION": 0x04, "CONFIG": 0x08, "STATUS": 0x0C, "IMAGES_DONE": 0x10,
    "CYCLES_LO": 0x14, "CYCLES_HI": 0x18, "CTRL": 0x1C, "LAYER_BASE": 0x20,
    "EXITS": 0xD0, "EXIT_BASE": 0xD4, "PARAM_SELECT": 0xF8, "PARAM_DATA": 0xFC,
}

#: Most early exits with a counter (EXIT0_TAKEN .. EXIT7_TAKEN, below the reserved 0xF4).
MAX_EXITS = 8

#: PARAM_SELECT read-back bit: the parameter memories are writable.
PARAM_WRITABLE = 1 << 31


def max_layers() -> int:
    """Most layers whose two read-back registers fit below the exit registers."""
    return (REG["EXITS"] - REG["LAYER_BASE"]) // 8


def check_register_map(net) -> None:
    """Raise a one-line :class:`sw.errors.UserError` unless ``net``'s layers and early exits
    fit the register map (at most :func:`max_layers` layers and :data:`MAX_EXITS` exits)."""
    from sw.errors import UserError
    if len(net.layers) > max_layers():
        raise UserError(f"{net.name} has {len(net.layers)} layers; the register map reads back "
                        f"at most {max_layers()}: merge or drop layers")
    if len(net.exits) > MAX_EXITS:
        raise UserError(f"{net.name} has {len(net.exits)} early exits; the register map counts "
                        f"at most {MAX_EXITS}: drop exits")


def axil_signature() -> dict:
    """Flat AXI4-Lite slave members (prefix ``s_axil_``), as seen from the slave."""
    return {
        "s_axil_awaddr": In(AXIL_ADDR_BITS), "s_axil_awvalid": In(1), "s_axil_awready": Out(1),
        "s_axil_wdata": In(32), "s_axil_wstrb": In(4), "s_axil_wvalid": In(1),
        "s_axil_wready": Out(1),
        "s_axil_bresp": Out(2), "s_axil_bvalid": Out(1), "s_axil_bready": In(1),
        "s_axil_araddr": In(AXIL_ADDR_BITS), "s_axil_arvalid": In(1), "s_axil_arready": Out(1),
        "s_axil_rdata": Out(32), "s_axil_rresp": Out(2), "s_axil_rvalid": Out(1),
        "s_axil_rready": In(1),
    }


def _check_field(name, value, bits):
    if not isinstance(value, int) or not 0 <= value < 2 ** bits:
        raise ValueError(f"{name} must be an integer in [0, {2 ** bits}), not {value!r}")


class AxiLiteRegisterBlock(wiring.Component):
    """AXI4-Lite slave for the accelerator's register map (see the module docstring).

    Parameters
    ----------
    layers : sequence of (pe, simd, mw, mh)
        Per-layer folding and shape for the read-back registers (each field < 2**16).
    pixels_per_beat, classes, thermometer_levels : int
        Packed into CONFIG (each < 256).
    exits : int
        Early exits (0..:data:`MAX_EXITS`): EXITS reads it, and each has a counter.

    Interface
    ---------
    ``s_axil_*`` : flat AXI4-Lite slave (8-bit addresses, 32-bit data).
    busy : In(1)            level, STATUS bit 0.
    image_done : In(1)      one-cycle pulse per finished image (increments IMAGES_DONE).
    frame_error : In(1)     one-cycle pulse; sets the sticky STATUS bit 1.
    clear : Out(1)          one-cycle pulse when CTRL bit 0 is written.
    exit_taken : In(exits)  (exits only) bit j: one-cycle pulse per result that left through
                            exit j (increments EXITj_TAKEN).
    param_select_we, param_data_we : Out(1), param_wdata : Out(32)
                            (``writable_params`` only) one-cycle pulse of a write to
                            PARAM_SELECT / PARAM_DATA, with the written value.

    Handshakes
    ----------
    Write address and write data are accepted independently (``awready = ~have_aw & ~bvalid``,
    ``wready = ~have_w & ~bvalid``); once both are held the write is performed and ``bvalid``
    raised the next cycle; a new write is accepted after ``bready``.  Reads: ``arready`` is
    high while no read is in progress; the address is registered at the ``arvalid & arready``
    edge, the constant and the live registers are selected from it into two registers the
    next cycle, and the cycle after one of them becomes ``rdata`` with ``rvalid`` (3 cycles from
    the address handshake to ``rvalid``; no path from the AR port to ``rdata``).  One
    outstanding transaction per channel; responses are always OKAY (0).  ``wstrb`` is ignored
    (registers are written whole).
    """

    def __init__(self, layers, *, pixels_per_beat: int, classes: int, thermometer_levels: int,
                 writable_params: bool = False, exits: int = 0):
        layers = [tuple(int(v) for v in layer) for layer in layers]
        if not 1 <= len(layers) <= max_layers():
            raise ValueError(f"layers must have between 1 and {max_layers()} entries, "
                             f"not {len(layers)}")
        for i, layer in enumerate(layers):
            if len(layer) != 4:
                raise ValueError(f"layers[{i}] must be (pe, simd, mw, mh), not {layer!r}")
            for name, value in zip(("pe", "simd", "mw", "mh"), layer):
                _check_field(f"layer {i} {name}", value, 16)
        _check_field("pixels_per_beat", pixels_per_beat, 8)
        _check_field("classes", classes, 8)
        _check_field("thermometer_levels", thermometer_levels, 8)
        if not isinstance(exits, int) or not 0 <= exits <= MAX_EXITS:
            raise ValueError(f"exits must be an integer in [0, {MAX_EXITS}], not {exits!r}")
        self._exits = exits
        self._layers = tuple(layers)
        #: 64-bit free-running cycle counter (exposed for tests).
        self.cycle_counter = Signal(64)
        self._config = (len(layers) | pixels_per_beat << 8 | classes << 16
                        | thermometer_levels << 24)
        self._writable = bool(writable_params)
        members = {**axil_signature(), "busy": In(1), "image_done": In(1),
                   "frame_error": In(1), "clear": Out(1)}
        if exits:
            members["exit_taken"] = In(exits)
        if self._writable:
            members.update({"param_select_we": Out(1), "param_data_we": Out(1),
                            "param_wdata": Out(32)})
        super().__init__(members)

    @property
    def config_word(self) -> int:
        """Value of the CONFIG register."""
        return self._config

    @property
    def layers(self):
        return self._layers

    def constant_registers(self) -> dict[int, int]:
        """Byte address -> value of every read-only constant register."""
        regs = {REG["ID"]: REG_ID_VALUE, REG["VERSION"]: REG_VERSION_VALUE,
                REG["CONFIG"]: self._config, REG["EXITS"]: self._exits,
                REG["PARAM_SELECT"]: (PARAM_WRITABLE | 3 * len(self._layers)
                                      if self._writable else 0)}
        for i, (pe, simd, mw, mh) in enumerate(self._layers):
            regs[REG["LAYER_BASE"] + 8 * i] = pe << 16 | simd
            regs[REG["LAYER_BASE"] + 8 * i + 4] = mw << 16 | mh
        return regs

    def elaborate(self, platform):
        m = Module()

        # Counters and sticky status.
        images_done = Signal(32)
        cycles = self.cycle_counter
        cycles_hi_latch = Signal(32)
        frame_err = Signal()
        exit_counts = [Signal(32, name=f"exit{j}_taken") for j in range(self._exits)]
        m.d.comb += self.clear.eq(0)
        with m.If(self.clear):
            m.d.sync += [images_done.eq(0), cycles.eq(0), frame_err.eq(0),
                         *(c.eq(0) for c in exit_counts)]
        with m.Else():
            m.d.sync += cycles.eq(cycles + 1)
            with m.If(self.image_done):
                m.d.sync += images_done.eq(images_done + 1)
            for j, count in enumerate(exit_counts):
                with m.If(self.exit_taken[j]):
                    m.d.sync += count.eq(count + 1)
            with m.If(self.frame_error):
                m.d.sync += frame_err.eq(1)

        # Write channel: independent AW / W capture, one outstanding write.
        have_aw = Signal()
        have_w = Signal()
        aw_addr = Signal(AXIL_ADDR_BITS)
        w_data = Signal(32)
        bvalid = Signal()
        m.d.comb += [
            self.s_axil_awready.eq(~have_aw & ~bvalid),
            self.s_axil_wready.eq(~have_w & ~bvalid),
            self.s_axil_bvalid.eq(bvalid),
            self.s_axil_bresp.eq(0),
        ]
        with m.If(self.s_axil_awvalid & self.s_axil_awready):
            m.d.sync += [have_aw.eq(1), aw_addr.eq(self.s_axil_awaddr)]
        with m.If(self.s_axil_wvalid & self.s_axil_wready):
            m.d.sync += [have_w.eq(1), w_data.eq(self.s_axil_wdata)]
        with m.If(have_aw & have_w):
            m.d.sync += [have_aw.eq(0), have_w.eq(0), bvalid.eq(1)]
            with m.If((aw_addr[2:] == REG["CTRL"] >> 2) & w_data[0]):
                m.d.comb += self.clear.eq(1)
            if self._writable:
                m.d.comb += [
                    self.param_select_we.eq(aw_addr[2:] == REG["PARAM_SELECT"] >> 2),
                    self.param_data_we.eq(aw_addr[2:] == REG["PARAM_DATA"] >> 2),
                ]
        if self._writable:
            m.d.comb += self.param_wdata.eq(w_data)
        with m.If(bvalid & self.s_axil_bready):
            m.d.sync += bvalid.eq(0)

        # Read channel, three stages: the address is captured from the port; the next cycle
        # the constant registers and the live ones are each selected into a register; the
        # cycle after, one of the two becomes rdata with rvalid.  No path joins the AR port,
        # the address decode and the final select in one cycle.
        rvalid = Signal()
        rdata = Signal(32)
        ar_busy = Signal()              # stage 1 -> 2: the address is held
        sel_busy = Signal()             # stage 2 -> 3: both candidates are held
        ar_word = Signal(AXIL_ADDR_BITS - 2)
        const_q, live_q, live_hit = Signal(32), Signal(32), Signal()
        m.d.comb += [
            self.s_axil_arready.eq(~rvalid & ~ar_busy & ~sel_busy),
            self.s_axil_rvalid.eq(rvalid),
            self.s_axil_rdata.eq(rdata),
            self.s_axil_rresp.eq(0),
        ]
        # The live registers' one-hot select is decoded from the port as the address is
        # captured (one LUT of the 6 word-address bits per register), so that selecting a live
        # register in stage 2 is an AND-OR of 4 words (and the exit counters), not a decode
        # followed by a mux.
        live_names = ("STATUS", "IMAGES_DONE", "CYCLES_LO", "CYCLES_HI")
        live_addrs = [REG[name] for name in live_names] + [REG["EXIT_BASE"] + 4 * j
                                                           for j in range(self._exits)]
        live_sel = Signal(len(live_addrs))
        with m.If(self.s_axil_arvalid & self.s_axil_arready):
            m.d.sync += [ar_busy.eq(1), ar_word.eq(self.s_axil_araddr[2:]),
                         live_sel.eq(Cat(self.s_axil_araddr[2:] == addr >> 2
                                         for addr in live_addrs))]
        with m.If(ar_busy):
            # The constant registers as a 2**6-word table indexed by the word address, bit by
            # bit: every bit of const_q is a 6-input function of ar_word (one LUT6).
            words = 1 << (AXIL_ADDR_BITS - 2)
            table = [0] * words
            for addr, value in self.constant_registers().items():
                table[addr >> 2] = value
            m.d.sync += [ar_busy.eq(0), sel_busy.eq(1),
                         const_q.eq(Cat(Const(sum((table[w] >> b & 1) << w for w in range(words)),
                                              words).bit_select(ar_word, 1) for b in range(32))),
                         live_hit.eq(live_sel.any())]
            live_values = (self.busy | frame_err << 1, images_done, cycles[:32], cycles_hi_latch,
                           *exit_counts)
            selected = [Mux(sel, value, 0) for sel, value in zip(live_sel, live_values)]
            live_word = selected[0]
            for value in selected[1:]:
                live_word = live_word | value
            m.d.sync += live_q.eq(live_word)
            # Reading CYCLES_LO latches the high word for a consistent 64-bit read.
            with m.If(live_sel[live_names.index("CYCLES_LO")]):
                m.d.sync += cycles_hi_latch.eq(cycles[32:])
        with m.If(sel_busy):
            m.d.sync += [sel_busy.eq(0), rvalid.eq(1), rdata.eq(Mux(live_hit, live_q, const_q))]
        with m.If(rvalid & self.s_axil_rready):
            m.d.sync += rvalid.eq(0)

        # Inputs ignored by design (wstrb; the byte offset of the read address) feed a sink
        # named `unused_*`: Verilator's idiom for deliberately unused bits (its default
        # -unused-regexp), kept through Yosys' clean-up by the `keep` attribute.
        unused = Signal(name="unused_axil_inputs", attrs={"keep": 1})
        m.d.comb += unused.eq(Cat(self.s_axil_wstrb, self.s_axil_araddr[:2]).any())
        return m
