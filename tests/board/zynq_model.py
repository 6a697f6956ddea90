"""A register-level model of the Zynq system hw/vivado.py builds, for pynq's real drivers.

numpy and :mod:`sw` only (no Amaranth, no pynq), so it runs in the board session; the main
suite checks :class:`ShellModel` against the Amaranth simulation of the board shell
(tests/test_board_model.py), so what the board session tests against is what the RTL does.

* :class:`ShellModel`: ``fracbnn_0``, the board shell around the accelerator
  (hw/board_shell.py), at transaction level: the register map of docs/hardware.md, whole-image
  framing of the input stream (a DMA TLAST inside an image sets the sticky framing error),
  one result of ``1 + C`` words per image computed by the golden model, and TLAST on the last
  word of an image whose input ended a DMA packet; at most ``depth`` images in flight (then the
  input is held).  ``stall="input"`` never accepts a beat, ``stall="output"`` never returns a
  result (the two ways an accelerator can hang a DMA).
* :class:`AxiDmaModel`: ``axi_dma_0``, a Xilinx AXI DMA in simple (direct register) mode as in
  PG021: per channel DMACR (RS, Reset), DMASR (Halted, Idle, DMAIntErr, DMADecErr, IOC_Irq;
  write-1-to-clear), address (+MSB) and LENGTH; writing LENGTH while running starts a transfer;
  S2MM completes at TLAST with LENGTH = bytes received, a packet longer than the buffer is
  DMAIntErr; an address outside allocated memory is DMADecErr.
* :class:`ZynqModel`: the address map (the ``.hwh`` of tests/board/hwh.py), DDR as allocated
  buffers (separate from the host's cached copies: only flushed data reaches the DMA, only
  invalidated data reaches the host), and the PS clock registers PYNQ programs on download
  (CRL_APB).  Every register access advances the system by one step, in which MM2S moves up
  to ``beats_per_step`` beats and S2MM up to ``words_per_step`` words, so transfers take
  several polls as on a board.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from sw.compiled_net import CompiledNetwork
from sw.golden import GoldenModel

__all__ = ["ShellModel", "AxiDmaModel", "Ddr", "ZynqModel", "DMA_BASE", "ACCEL_BASE",
           "CRL_APB", "IOPLL_MHZ"]

#: Base addresses of the IPs (the .hwh of tests/board/hwh.py; 64 KiB each).
DMA_BASE, ACCEL_BASE, IP_RANGE = 0xA000_0000, 0xA001_0000, 0x1_0000
#: ZynqMP CRL_APB (PL clock control) and the IOPLL rate its reset values give.
CRL_APB, IOPLL_MHZ = 0xFF5E_0000, 1500.0
_PS_RESET = {
    CRL_APB + 0x20: 90 << 8 | 1 << 16,           # IOPLL_CTRL: FBDIV 90, DIV2 (33.33 MHz ref)
    **{CRL_APB + 0xC0 + 4 * i: 1 << 24 | 1 << 16 | 15 << 8 for i in range(4)},  # PLi_REF_CTRL
}

_ID, _VERSION = 0x464E4231, 0x00010001     # register map 1.1
_EXITS, _EXIT_BASE = 0xD0, 0xD4


class ShellModel:
    """The board shell (``fracbnn_0``) at transaction level; see the module docstring."""

    def __init__(self, net: CompiledNetwork, pixels_per_beat: int = 8, *, depth: int = 32,
                 stall: str | None = None):
        if stall not in (None, "input", "output"):
            raise ValueError(f"stall must be None, 'input' or 'output', not {stall!r}")
        self.net, self.ppb, self.depth, self.stall = net, pixels_per_beat, depth, stall
        self.pixels, self.classes = net.input.pixels, net.classes
        self._golden = GoldenModel(net)
        self.reset()

    def reset(self) -> None:
        self._partial = bytearray()           # bytes of the image being received
        self._inflight = 0                    # images received whose last word has not left
        self._out = deque()                   # (word, last word of its image, TLAST)
        self.images_done, self.framing, self.cycles, self._cycles_hi = 0, False, 0, 0
        self.exit_taken = [0] * len(self.net.exits)
        self._exit_of = deque()                # per result in flight: its exit (len: none)

    # -- AXI4-Lite --------------------------------------------------------------------------
    def read(self, offset: int) -> int:
        net = self.net
        if offset == 0x00:
            return _ID
        if offset == 0x04:
            return _VERSION
        if offset == 0x08:
            return (len(net.layers) | self.ppb << 8 | self.classes << 16
                    | net.input.levels << 24)
        if offset == 0x0C:
            return int(self._inflight > 0 or len(self._partial) > 0) | int(self.framing) << 1
        if offset == 0x10:
            return self.images_done
        if offset == 0x14:
            self._cycles_hi = self.cycles >> 32
            return self.cycles & 0xFFFF_FFFF
        if offset == 0x18:
            return self._cycles_hi
        if offset == _EXITS:
            return len(net.exits)
        if _EXIT_BASE <= offset < _EXIT_BASE + 4 * len(net.exits):
            return self.exit_taken[(offset - _EXIT_BASE) // 4]
        layer, field = divmod(offset - 0x20, 8)
        if 0x20 <= offset < _EXITS and layer < len(net.layers):
            spec = net.layers[layer]
            return (spec.folding.pe << 16 | spec.folding.simd if field == 0
                    else spec.in_features << 16 | spec.out_features)
        return 0                               # unmapped, PARAM_SELECT (not writable)

    def write(self, offset: int, value: int) -> None:
        if offset == 0x1C and value & 1:
            self.images_done, self.cycles, self.framing = 0, 0, False
            self.exit_taken = [0] * len(self.net.exits)

    # -- AXI4-Stream ------------------------------------------------------------------------
    def accepts(self) -> bool:
        """Whether the next input beat is accepted (tready)."""
        return self.stall != "input" and self._inflight < self.depth

    def push(self, beat: bytes, last: bool) -> None:
        """One input beat (``pixels_per_beat`` bytes) with the DMA's TLAST."""
        self._partial += beat
        image_done = len(self._partial) == self.pixels
        if last and not image_done:
            self.framing = True
        if not image_done:
            return
        image = np.frombuffer(bytes(self._partial), dtype=np.uint8)[None, :]
        self._partial.clear()
        self._inflight += 1
        if self.stall == "output":
            return
        result = self._golden.run(image)
        words = [int(result.classes[0])] + [int(v) & 0xFFFF_FFFF for v in result.scores[0]]
        self._exit_of.append(int(result.exits[0]))
        for k, word in enumerate(words):
            end = k == len(words) - 1
            self._out.append((word, end, end and last))

    def pop(self) -> tuple[int, bool] | None:
        """The next result word and its TLAST, or None (tvalid low)."""
        if not self._out:
            return None
        word, end, tlast = self._out.popleft()
        if end:
            self._inflight -= 1
            self.images_done += 1
            j = self._exit_of.popleft()
            if j < len(self.exit_taken):
                self.exit_taken[j] += 1
        return word, tlast


class Ddr:
    """DDR as the allocated buffers: ``alloc(nbytes) -> address``, ``read``/``write`` of a
    range inside one buffer (None / False where no buffer holds it: a decode error)."""

    BASE, ALIGN = 0x1000_0000, 4096

    def __init__(self):
        self._regions: dict[int, bytearray] = {}
        self._next = self.BASE

    def alloc(self, nbytes: int) -> int:
        address = self._next
        self._regions[address] = bytearray(max(nbytes, 1))
        self._next += -(-max(nbytes, 1) // self.ALIGN) * self.ALIGN
        return address

    def _find(self, address: int, nbytes: int):
        for base, mem in self._regions.items():
            if base <= address and address + nbytes <= base + len(mem):
                return mem, address - base
        return None, 0

    def read(self, address: int, nbytes: int) -> bytes | None:
        mem, off = self._find(address, nbytes)
        return None if mem is None else bytes(mem[off:off + nbytes])

    def write(self, address: int, data: bytes) -> bool:
        mem, off = self._find(address, len(data))
        if mem is not None:
            mem[off:off + len(data)] = data
        return mem is not None


# DMASR bits (PG021 table 2-10 / 2-17).
HALTED, IDLE, INT_ERR, SLV_ERR, DEC_ERR, IOC_IRQ, ERR_IRQ = 1, 2, 0x10, 0x20, 0x40, 0x1000, 0x4000


class _Channel:
    def __init__(self, offset: int):
        self.offset = offset
        self.reset()

    def reset(self):
        self.dmacr, self.dmasr = 0x0001_0002, 0x0001_0000 | HALTED
        self.address, self.length = 0, 0
        self.active, self.pos = False, 0

    def fail(self, bit):
        self.dmasr = (self.dmasr & ~IDLE) | bit | HALTED | ERR_IRQ
        self.active = False

    def finish(self):
        self.dmasr |= IDLE | IOC_IRQ
        self.active = False


class AxiDmaModel:
    """``axi_dma_0`` in simple mode (PG021); see the module docstring."""

    def __init__(self, ddr: Ddr, shell: ShellModel, *, beats_per_step: int = 8,
                 words_per_step: int = 8):
        self.ddr, self.shell = ddr, shell
        self.mm2s, self.s2mm = _Channel(0x00), _Channel(0x30)
        self.beats_per_step, self.words_per_step = beats_per_step, words_per_step

    def _channel(self, offset):
        return (self.mm2s, offset) if offset < 0x30 else (self.s2mm, offset - 0x30)

    def read(self, offset: int) -> int:
        ch, reg = self._channel(offset)
        return {0x00: ch.dmacr, 0x04: ch.dmasr, 0x18: ch.address & 0xFFFF_FFFF,
                0x1C: ch.address >> 32, 0x28: ch.length}.get(reg, 0)

    def write(self, offset: int, value: int) -> None:
        ch, reg = self._channel(offset)
        if reg == 0x00:
            if value & 4:                       # soft reset: both channels
                self.mm2s.reset()
                self.s2mm.reset()
                return
            ch.dmacr = value
            if value & 1:
                ch.dmasr &= ~HALTED
            elif not ch.active:
                ch.dmasr |= HALTED
        elif reg == 0x04:
            ch.dmasr &= ~(value & (IOC_IRQ | ERR_IRQ | 0x2000))
        elif reg == 0x18:
            ch.address = (ch.address & ~0xFFFF_FFFF) | value
        elif reg == 0x1C:
            ch.address = (ch.address & 0xFFFF_FFFF) | value << 32
        elif reg == 0x28 and not ch.dmasr & HALTED:
            ch.length, ch.pos = value, 0
            ch.dmasr &= ~IDLE
            if value == 0:
                ch.fail(INT_ERR)
            elif self.ddr.read(ch.address, value) is None:
                ch.fail(DEC_ERR)
            else:
                ch.active = True

    def step(self) -> None:
        """One step of both channels: MM2S beats into the shell, result words into DDR."""
        ch, ppb = self.mm2s, self.shell.ppb
        for _ in range(self.beats_per_step):
            if not ch.active or not self.shell.accepts():
                break
            beat = self.ddr.read(ch.address + ch.pos, ppb)
            ch.pos += ppb
            self.shell.push(beat, last=ch.pos >= ch.length)
            if ch.pos >= ch.length:
                ch.finish()
        ch = self.s2mm
        for _ in range(self.words_per_step):
            if not ch.active:
                break
            if ch.pos + 4 > ch.length:
                if self.shell._out:             # more data than the buffer holds
                    ch.fail(INT_ERR)
                break
            beat = self.shell.pop()
            if beat is None:
                break
            word, tlast = beat
            self.ddr.write(ch.address + ch.pos, word.to_bytes(4, "little"))
            ch.pos += 4
            if tlast:
                ch.length = ch.pos              # bytes actually received
                ch.finish()


class ZynqModel:
    """The system: ``read(address)`` / ``write(address, value)`` of 32-bit registers (each
    one step of the DMA), :class:`Ddr` ``ddr``, and ``log`` of every register access
    ``(op, region, offset, value)`` with region ``"dma"``, ``"accel"`` or ``"ps"``."""

    def __init__(self, net: CompiledNetwork, pixels_per_beat: int = 8, *,
                 stall: str | None = None):
        self.ddr = Ddr()
        self.shell = ShellModel(net, pixels_per_beat, stall=stall)
        self.dma = AxiDmaModel(self.ddr, self.shell)
        self.ps = dict(_PS_RESET)
        self.log: list[tuple] = []
        self.downloads = 0

    def reset(self) -> None:
        """What loading the bitstream does to the PL: everything back to reset."""
        self.shell.reset()
        self.dma.mm2s.reset()
        self.dma.s2mm.reset()
        self.downloads += 1

    def _region(self, address: int):
        if DMA_BASE <= address < DMA_BASE + IP_RANGE:
            return "dma", self.dma, address - DMA_BASE
        if ACCEL_BASE <= address < ACCEL_BASE + IP_RANGE:
            return "accel", self.shell, address - ACCEL_BASE
        return "ps", None, address

    def read(self, address: int) -> int:
        name, target, offset = self._region(address)
        value = self.ps.get(address, 0) if target is None else target.read(offset)
        self.log.append(("read", name, offset, value))
        self._step()
        return value

    def write(self, address: int, value: int) -> None:
        name, target, offset = self._region(address)
        self.log.append(("write", name, offset, value))
        if target is None:
            self.ps[address] = value
        else:
            target.write(offset, value)
        self._step()

    def _step(self) -> None:
        self.dma.step()
        self.shell.cycles += 16                  # a register access: ~16 PL clock cycles

    def pl_clock_mhz(self, index: int = 0) -> float:
        """PL clock ``index`` as PYNQ set it (IOPLL / DIVISOR0 / DIVISOR1 of PLi_REF_CTRL)."""
        ctrl = self.ps[CRL_APB + 0xC0 + 4 * index]
        return IOPLL_MHZ / ((ctrl >> 8 & 0x3F) * (ctrl >> 16 & 0x3F))
