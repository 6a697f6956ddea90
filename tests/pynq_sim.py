"""A stand-in for the ``pynq`` package backed by an Amaranth simulation of the board shell.

``SimulatedPynq(net, init_dir, pixels_per_beat)`` has the surface :mod:`sw.runtime`'s
``"pynq"`` target uses: ``Overlay(bitfile)`` with the IPs ``fracbnn_0`` (``read``/``write``:
AXI4-Lite transactions on the simulated :class:`hw.board_shell.BoardShell`) and ``axi_dma_0``
(``sendchannel``/``recvchannel`` with ``transfer(buffer)``, ``idle``, ``error`` and ``wait()``,
modelling an AXI DMA in simple mode: MM2S streams the whole buffer with TLAST on its last beat;
S2MM accepts beats while armed and completes at the first TLAST, an error if the buffer fills
first), and ``allocate(shape, dtype)``.  So the runtime's register and DMA sequence runs
unchanged against the RTL, up to the pynq calls themselves.

The simulator runs in a background thread; one testbench serves commands from a queue, so the
design does not advance while the host "thinks" (as if the host were infinitely fast).  Reading
a running channel's ``idle`` advances the design by ``poll_cycles`` cycles (or until the
transfer is done); ``wait()`` runs it until done (at most ``max_cycles``).  ``stall=True`` models
an accelerator whose results never arrive: the DMA never accepts a result beat.
"""

from __future__ import annotations

import queue
import threading

import numpy as np
from amaranth.sim import Simulator

from hw.board_shell import BoardShell

__all__ = ["SimulatedPynq"]


class _Buffer(np.ndarray):
    """``pynq.allocate``'s buffer: an ndarray with ``freebuffer``."""

    freed = False

    def freebuffer(self):
        self.freed = True


class _Device:
    def __init__(self, net, init_dir, pixels_per_beat, max_cycles, stall=False):
        self.dut = BoardShell(net, init_dir=init_dir, pixels_per_beat=pixels_per_beat,
                              rom_mode="sim")
        self.ppb = pixels_per_beat
        self.max_cycles = max_cycles
        self.stall = stall
        self.log = []                   # every bus/DMA operation, in order
        self._cmds, self._replies = queue.Queue(), queue.Queue()
        sim = Simulator(self.dut)
        sim.add_clock(1e-8)
        sim.add_testbench(self._serve)
        self._thread = threading.Thread(target=self._run, args=(sim,), daemon=True)
        self._error = None
        self._thread.start()

    def _run(self, sim):
        try:
            sim.run()
        except BaseException as exc:     # reported to the caller of the next command
            self._error = exc
            self._replies.put(("error", exc))

    def call(self, *cmd):
        if self._error is not None:
            raise RuntimeError(f"simulation died: {self._error!r}")
        self._cmds.put(cmd)
        kind, value = self._replies.get(timeout=600)
        if kind == "error":
            raise value
        return value

    def close(self):
        if self._thread.is_alive():
            self._cmds.put(("stop",))
            self._thread.join(timeout=60)

    async def _serve(self, ctx):
        dut = self.dut
        while True:
            cmd = self._cmds.get()
            try:
                if cmd[0] == "stop":
                    return
                if cmd[0] == "read":
                    ctx.set(dut.s_axil_araddr, cmd[1])
                    ctx.set(dut.s_axil_arvalid, 1)
                    await ctx.tick().until(dut.s_axil_arready)
                    ctx.set(dut.s_axil_arvalid, 0)
                    ctx.set(dut.s_axil_rready, 1)
                    data, resp = await ctx.tick().sample(
                        dut.s_axil_rdata, dut.s_axil_rresp).until(dut.s_axil_rvalid)
                    ctx.set(dut.s_axil_rready, 0)
                    reply = int(data) if resp == 0 else RuntimeError(f"RRESP {resp}")
                elif cmd[0] == "write":
                    ctx.set(dut.s_axil_awaddr, cmd[1])
                    ctx.set(dut.s_axil_wdata, cmd[2])
                    ctx.set(dut.s_axil_wstrb, 0xF)
                    ctx.set(dut.s_axil_awvalid, 1)
                    ctx.set(dut.s_axil_wvalid, 1)
                    aw = w = False
                    while not (aw and w):
                        _, _, awr, wr = await ctx.tick().sample(dut.s_axil_awready,
                                                                dut.s_axil_wready)
                        aw, w = aw or bool(awr), w or bool(wr)
                        ctx.set(dut.s_axil_awvalid, int(not aw))
                        ctx.set(dut.s_axil_wvalid, int(not w))
                    ctx.set(dut.s_axil_bready, 1)
                    resp, = await ctx.tick().sample(dut.s_axil_bresp).until(dut.s_axil_bvalid)
                    ctx.set(dut.s_axil_bready, 0)
                    reply = None if resp == 0 else RuntimeError(f"BRESP {resp}")
                elif cmd[0] == "dma":
                    reply = await self._dma(ctx, *cmd[1:])
                else:
                    reply = RuntimeError(f"unknown command {cmd!r}")
            except BaseException as exc:
                reply = exc
            self._replies.put(("error", reply) if isinstance(reply, BaseException)
                              else ("ok", reply))

    async def _dma(self, ctx, send, recv_words, until, cycles):
        """Stream ``send`` (beats) on s_axis; accept m_axis into up to ``recv_words`` words
        (0 = S2MM not armed), for at most ``cycles`` cycles.  ``until``: "send" (all beats
        accepted) or "recv" (TLAST or ``recv_words`` words).  Returns ``(beats sent, words
        received, TLAST seen, until reached)``."""
        dut = self.dut
        sent, got, last_seen = 0, [], False
        for cycle in range(cycles + 1):
            done = (sent == len(send) if until == "send"
                    else last_seen or len(got) == recv_words)
            if done or cycle == cycles:
                break
            offer = sent < len(send)
            ctx.set(dut.s_axis_tvalid, int(offer))
            if offer:
                ctx.set(dut.s_axis_tdata, send[sent])
                ctx.set(dut.s_axis_tlast, int(sent == len(send) - 1))
            take = len(got) < recv_words and not last_seen and not self.stall
            ctx.set(dut.m_axis_tready, int(take))
            _, _, sready, mvalid, mdata, mlast = await ctx.tick().sample(
                dut.s_axis_tready, dut.m_axis_tvalid, dut.m_axis_tdata, dut.m_axis_tlast)
            if offer and sready:
                sent += 1
            if take and mvalid:
                got.append(int(mdata))
                last_seen = bool(mlast)
        ctx.set(dut.s_axis_tvalid, 0)
        ctx.set(dut.m_axis_tready, 0)
        return sent, got, last_seen, done


class _Mmio:
    def __init__(self, device):
        self._dev = device

    def read(self, offset, length=4):
        value = self._dev.call("read", offset)
        self._dev.log.append(("read", offset, value))
        return value

    def write(self, offset, value):
        self._dev.log.append(("write", offset, value))
        self._dev.call("write", offset, int(value))


class _Channel:
    def __init__(self, dma, name):
        self._dma, self.name = dma, name
        self.buffer = None
        self.running = False
        self.error = False

    def transfer(self, buffer):
        if self.running:
            raise RuntimeError(f"DMA {self.name} channel is already running")
        self.buffer, self.running = buffer, True
        self._dma._dev.log.append(("transfer", self.name, buffer.nbytes))

    @property
    def idle(self) -> bool:
        if self.running:
            self._dma._dev.log.append(("poll", self.name))
            self._dma._progress(self.name, self._dma.poll_cycles)
        return not self.running and not self.error

    def wait(self):
        self._dma._dev.log.append(("wait", self.name))
        if not self.running:
            if self.buffer is None:
                raise RuntimeError(f"{self.name}channel.wait() without a transfer")
            return
        if not self._dma._progress(self.name, self._dma._dev.max_cycles):
            raise TimeoutError(f"DMA {self.name} did not finish in {self._dma._dev.max_cycles} "
                               "cycles")
        if self.error:
            raise RuntimeError("S2MM buffer full before TLAST (DMA internal error)")


class _Dma:
    """AXI DMA (simple mode) model: both channels share one simulated stream."""

    def __init__(self, device, poll_cycles):
        self._dev = device
        self.poll_cycles = poll_cycles
        self.sendchannel = _Channel(self, "send")
        self.recvchannel = _Channel(self, "recv")
        self._sent = 0                  # beats of the send buffer already accepted
        self._received = []

    def _beats(self, buf) -> list[int]:
        raw = np.ascontiguousarray(buf).view(np.uint8).reshape(-1, self._dev.ppb)
        return [int.from_bytes(row.tobytes(), "little") for row in raw]

    def _progress(self, until, cycles) -> bool:
        """Run the stream for up to ``cycles`` cycles, until the ``until`` channel is done;
        return whether it is."""
        send, recv = self.sendchannel, self.recvchannel
        beats = self._beats(send.buffer)[self._sent:] if send.running else []
        room = recv.buffer.size - len(self._received) if recv.running else 0
        sent, got, last, done = self._dev.call("dma", beats, room, until, cycles)
        self._sent += sent
        if send.running and self._sent == len(self._beats(send.buffer)):
            send.running, self._sent = False, 0
        if recv.running:
            self._received += got
            if last or len(self._received) == recv.buffer.size:
                recv.error = not last       # full before TLAST: DMA internal error
                words = np.array(self._received, dtype=np.uint32)
                recv.buffer[:len(words)] = words
                recv.running = False
                self._received = []
        elif got:
            raise AssertionError("results arrived while S2MM was not armed")
        return done


class _Overlay:
    def __init__(self, device, poll_cycles):
        self.fracbnn_0 = _Mmio(device)
        self.axi_dma_0 = _Dma(device, poll_cycles)


class SimulatedPynq:
    """The ``pynq`` surface used by :mod:`sw.runtime`, on a simulated board shell."""

    def __init__(self, net, init_dir, pixels_per_beat: int = 8, max_cycles: int = 200_000,
                 poll_cycles: int = 200, stall: bool = False):
        self._args = (net, init_dir, pixels_per_beat, max_cycles, stall)
        self._poll_cycles = poll_cycles
        self.device = None
        self.bitfiles = []

    def Overlay(self, bitfile):  # noqa: N802 - pynq's name
        self.bitfiles.append(bitfile)
        if self.device is None:
            self.device = _Device(*self._args)
        return _Overlay(self.device, self._poll_cycles)

    @staticmethod
    def allocate(shape, dtype):
        return np.zeros(shape, dtype=dtype).view(_Buffer)

    def close(self):
        if self.device is not None:
            self.device.close()
