"""Self-test top: the accelerator, a few embedded test images and their expected results, LEDs.

For a board without a host (ULX3S): after reset the test streams every embedded image into the
accelerator at full rate (``s_axis`` valid whenever an image beat is left), accepts every result
beat (``m_axis_tready`` high) and compares it with the expected beat (class index, then each
score, TLAST on the last), then reads ID, STATUS and IMAGES_DONE over AXI4-Lite.  It passes when
every beat, TLAST and register is as expected.

The expected results are the integer golden model's (:class:`sw.golden.GoldenModel`) outputs for
the embedded images; images and expected beats live in ROMs (one ``8*PPB``-bit word per input
beat, one 32-bit word per output beat) initialised at elaboration.

LEDs (``led``, active high)::

    led[0]   PASS   test finished and everything matched
    led[1]   FAIL   test finished and something differed
    led[2]   alive  blinks (bit 22 of a free-running counter: ~3 Hz at 25 MHz)
    led[3]   done   test finished
    led[7:4] number of images with a wrong result beat (saturates at 15); FAIL with
             0 here means only a register read-back (ID, STATUS, IMAGES_DONE) was wrong

:class:`Ulx3sSelfTestTop` wraps it for the ULX3S: the 25 MHz oscillator (or an ECP5 PLL fed by
it) clocks everything and a power-on counter holds reset for 16 cycles.
"""

from __future__ import annotations

import numpy as np
from amaranth import Cat, Module, Mux, Signal
from amaranth.hdl import ClockDomain, ClockSignal, Instance, ResetSignal
from amaranth.lib import memory, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

__all__ = ["SelfTest", "Ulx3sSelfTestTop", "expected_beats", "image_beats", "LED_BITS"]

LED_BITS = 8
_ID, _STATUS, _IMAGES_DONE = 0x00, 0x0C, 0x10
_ID_VALUE = 0x464E4231


def image_beats(images: np.ndarray, pixels_per_beat: int) -> list[int]:
    """Input beats of ``images`` (uint8 (N, P)): pixel j of a beat at bits [8j, 8j+8)."""
    images = np.ascontiguousarray(images, dtype=np.uint8)
    flat = images.reshape(-1, pixels_per_beat)
    weights = [1 << (8 * j) for j in range(pixels_per_beat)]
    return [sum(int(p) * w for p, w in zip(row, weights)) for row in flat]


def expected_beats(classes: np.ndarray, scores: np.ndarray) -> list[int]:
    """Output beats (32-bit words) for the given classes (N,) and scores (N, C)."""
    words = []
    for cls, row in zip(np.asarray(classes), np.asarray(scores)):
        words.append(int(cls) & 0xFFFF_FFFF)
        words += [int(s) & 0xFFFF_FFFF for s in row]
    return words


class SelfTest(wiring.Component):
    """Accelerator + embedded images + expected results + checker (``sync`` domain).

    Parameters
    ----------
    net : CompiledNetwork
        The network (with the design's folding).
    images : uint8 array (N, P)
        Test images, embedded in a ROM.
    init_dir : path
        The network's ``.mem`` files (read in ``rom_mode="sim"``; named in Verilog).
    pixels_per_beat : int
        Accelerator input width in pixels.
    rom_mode : {"sim", "verilog"}
        Passed to :class:`hw.accelerator.Accelerator`.
    expected : (classes, scores), optional
        Override the expected results (default: the golden model's); tests use it to check
        that a wrong expectation lights FAIL.
    ram_style : hw.memory_style.RamStyle or str, optional
        Where the accelerator's parameter memories go (:class:`hw.accelerator.Accelerator`);
        the ECP5 flow passes its ``ecp5`` rule.

    Ports
    -----
    led : Out(8)
        See the module docstring.

    Attributes (signals, for simulation)
    ----------
    done, passed, reg_ok : 1 bit
    bad_images : count of images with any wrong beat
    run_cycles : cycles from the first input beat offered to the last result beat
    """

    def __init__(self, net, images, *, init_dir, pixels_per_beat: int = 8,
                 rom_mode: str = "verilog", expected=None, ram_style=None):
        from sw.golden import GoldenModel

        images = np.ascontiguousarray(images, dtype=np.uint8)
        if images.ndim != 2 or images.shape[1] != net.input.pixels or len(images) < 1:
            raise ValueError(f"images must be (N >= 1, {net.input.pixels}) uint8, "
                             f"not shape {images.shape}")
        if expected is None:
            result = GoldenModel(net).run(images)
            expected = (result.classes, result.scores)
        self._net, self._images, self._ppb = net, images, pixels_per_beat
        self._rom_mode, self._init_dir = rom_mode, init_dir
        self._ram_style = ram_style
        self._in_words = image_beats(images, pixels_per_beat)
        self._out_words = expected_beats(*expected)
        n = len(images)
        if len(self._out_words) != n * (1 + net.classes):
            raise ValueError(f"expected results must have {n} images x {net.classes} classes")
        self.done = Signal()
        self.passed = Signal()
        self.reg_ok = Signal()
        self.bad_images = Signal(range(n + 1))
        self.run_cycles = Signal(32)
        super().__init__({"led": Out(LED_BITS)})

    images = property(lambda self: self._images)
    expected_words = property(lambda self: list(self._out_words))

    def elaborate(self, platform):
        from .accelerator import Accelerator

        m = Module()
        net, ppb = self._net, self._ppb
        n = len(self._images)
        beats_in = net.input.pixels // ppb
        beats_out = 1 + net.classes
        total_in, total_out = n * beats_in, n * beats_out

        m.submodules.accel = acc = Accelerator(net, init_dir=self._init_dir, pixels_per_beat=ppb,
                                               rom_mode=self._rom_mode,
                                               ram_style=self._ram_style)
        m.submodules.image_rom = image_rom = memory.Memory(
            shape=8 * ppb, depth=total_in, init=self._in_words)
        m.submodules.expect_rom = expect_rom = memory.Memory(
            shape=32, depth=total_out, init=self._out_words)
        rd_in = image_rom.read_port()
        rd_exp = expect_rom.read_port()

        # One cycle after reset the ROM outputs are valid (they read address 0 during reset).
        primed = Signal()
        m.d.sync += primed.eq(1)

        # Input: a prefetch queue.  Word k is read at address k (cycle t), lands in the ROM's
        # output register `word_q` (t + 2; a plain register behind the block RAM, which the ECP5
        # flow folds into the EBR's output register) and is queued; the queue's registered
        # output drives s_axis.  Credits keep in-flight reads within the queue's room, so the
        # handshake only touches the queue.
        depth = 8                # > the read-to-accept round trip: full rate
        m.submodules.in_queue = queue = SyncFIFOBuffered(width=8 * ppb, depth=depth)
        issued = Signal(range(total_in + 1))
        credits = Signal(range(depth + 1), init=depth)
        word_q = Signal(8 * ppb, reset_less=True)
        arrive = Signal(2)                      # reads in flight: bit k = arrives in k + 1
        in_beat = Signal(range(max(beats_in, 2)))
        issue = Signal()
        in_fire = Signal()
        m.d.comb += [
            issue.eq(primed & (issued != total_in) & (credits != 0)),
            rd_in.addr.eq(issued),
            acc.s_axis_tdata.eq(queue.r_data),
            acc.s_axis_tvalid.eq(queue.r_rdy),
            acc.s_axis_tlast.eq(in_beat == beats_in - 1),
            queue.r_en.eq(acc.s_axis_tready),
            in_fire.eq(acc.s_axis_tvalid & acc.s_axis_tready),
            queue.w_data.eq(word_q),
            queue.w_en.eq(arrive[0]),
        ]
        m.d.sync += [word_q.eq(rd_in.data), arrive.eq(Cat(arrive[1], issue))]
        m.d.sync += credits.eq(credits - issue + in_fire)
        with m.If(issue):
            m.d.sync += issued.eq(issued + 1)
        with m.If(in_fire):
            m.d.sync += in_beat.eq(in_beat + 1)
            with m.If(in_beat == beats_in - 1):
                m.d.sync += in_beat.eq(0)

        # Output: the expected word of beat `got` is on rd_exp.data while the beat fires; the
        # beat, its word (in `expect_q`, the ROM's output register) and its TLAST check are
        # registered and compared one cycle later.
        got = Signal(range(total_out + 1))
        got_next = Signal(range(total_out + 2), init=1)
        out_left = Signal(init=1)
        out_beat = Signal(range(max(beats_out, 2)))
        out_fire = Signal()
        image_bad = Signal()
        m.d.comb += [
            acc.m_axis_tready.eq(primed & out_left),
            out_fire.eq(acc.m_axis_tvalid & acc.m_axis_tready),
            rd_exp.addr.eq(Mux(out_fire, got_next, got)),
        ]
        expect_q = Signal(32, reset_less=True)
        beat_q = Signal(32, reset_less=True)
        fire_q, last_ok_q, end_q = Signal(), Signal(), Signal()
        m.d.sync += [expect_q.eq(rd_exp.data), beat_q.eq(acc.m_axis_tdata), fire_q.eq(out_fire),
                     last_ok_q.eq(acc.m_axis_tlast == (out_beat == beats_out - 1)),
                     end_q.eq(out_beat == beats_out - 1)]
        beat_ok = (beat_q == expect_q) & last_ok_q
        with m.If(out_fire):
            m.d.sync += [got.eq(got_next), got_next.eq(got_next + 1),
                         out_left.eq(got_next < total_out)]
            m.d.sync += out_beat.eq(out_beat + 1)
            with m.If(out_beat == beats_out - 1):
                m.d.sync += out_beat.eq(0)
        with m.If(fire_q):
            with m.If(end_q):
                m.d.sync += image_bad.eq(0)
                with m.If(image_bad | ~beat_ok):
                    m.d.sync += self.bad_images.eq(self.bad_images + 1)
            with m.Else():
                m.d.sync += image_bad.eq(image_bad | ~beat_ok)

        running = primed & ~self.done & out_left
        with m.If(running):
            m.d.sync += self.run_cycles.eq(self.run_cycles + 1)

        # Registers: read ID, STATUS, IMAGES_DONE once every result is in.
        checks = [(_ID, lambda v: v == _ID_VALUE),
                  (_STATUS, lambda v: v[1] == 0),          # no framing error
                  (_IMAGES_DONE, lambda v: v == n)]
        reg_good = Signal(init=1)
        m.d.comb += [acc.s_axil_awvalid.eq(0), acc.s_axil_wvalid.eq(0),
                     acc.s_axil_bready.eq(1), acc.s_axil_wstrb.eq(0)]
        with m.FSM(name="selftest"):
            with m.State("STREAM"):
                with m.If(primed & ~out_left & ~fire_q):
                    m.next = "AR0"
            for k, (addr, ok) in enumerate(checks):
                with m.State(f"AR{k}"):
                    m.d.comb += [acc.s_axil_araddr.eq(addr), acc.s_axil_arvalid.eq(1)]
                    with m.If(acc.s_axil_arready):
                        m.next = f"R{k}"
                with m.State(f"R{k}"):
                    m.d.comb += acc.s_axil_rready.eq(1)
                    with m.If(acc.s_axil_rvalid):
                        with m.If(~ok(acc.s_axil_rdata) | (acc.s_axil_rresp != 0)):
                            m.d.sync += reg_good.eq(0)
                        m.next = f"AR{k + 1}" if k + 1 < len(checks) else "DONE"
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)

        m.d.comb += [self.reg_ok.eq(reg_good),
                     self.passed.eq(self.done & reg_good & (self.bad_images == 0))]

        # LEDs.
        blink = Signal(23)
        m.d.sync += blink.eq(blink + 1)
        shown = Signal(4)
        m.d.comb += shown.eq(self.bad_images)
        with m.If(self.bad_images > 15):
            m.d.comb += shown.eq(15)
        m.d.comb += self.led.eq(self.passed | (self.done & ~self.passed) << 1
                                | blink[-1] << 2 | self.done << 3 | shown << 4)
        return m


class Ulx3sSelfTestTop(wiring.Component):
    """:class:`SelfTest` on the ULX3S: ports ``clk25`` (25 MHz oscillator) and ``led[7:0]``.

    Parameters
    ----------
    selftest : SelfTest
        The design to run.
    pll : str, optional
        Name of a PLL module (``clkin`` -> ``clkout0``, ``locked``; written by ``ecppll``, see
        :func:`hw.ecp5.write_pll`) that derives the design clock from ``clk25``; default: none,
        the design runs at 25 MHz.

    The ``sync`` domain is clocked by ``clk25`` (or the PLL output); a reset-less power-on
    counter holds its reset for the first 16 cycles after configuration (after PLL lock).
    """

    def __init__(self, selftest: SelfTest, *, pll: str | None = None):
        self._selftest = selftest
        self._pll = pll
        super().__init__({"clk25": In(1), "led": Out(LED_BITS)})

    selftest = property(lambda self: self._selftest)
    pll = property(lambda self: self._pll)

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain("sync")
        m.domains.por = ClockDomain("por", reset_less=True)
        clk, locked = Signal(), Signal()
        if self._pll is None:
            m.d.comb += [clk.eq(self.clk25), locked.eq(1)]
        else:
            m.submodules.pll = Instance(self._pll, i_clkin=self.clk25, o_clkout0=clk,
                                        o_locked=locked)
        # Power-on reset: 16 cycles after the PLL locks; the reset comes from a flip-flop, so
        # that its (chip-wide) net is the only delay on the reset paths.
        por = Signal(5)
        por_rst = Signal(init=1)
        m.d.comb += [ClockSignal("sync").eq(clk), ClockSignal("por").eq(clk),
                     ResetSignal("sync").eq(por_rst)]
        m.d.por += por_rst.eq(~por[4])
        with m.If(locked & ~por[4]):
            m.d.por += por.eq(por + 1)
        m.submodules.selftest = st = self._selftest
        m.d.comb += self.led.eq(st.led)
        return m
