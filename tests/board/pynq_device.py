"""A ``pynq.Device`` whose programmable logic is :class:`zynq_model.ZynqModel`.

Everything above the device is real pynq 4.0 code: ``pynq.Overlay`` (its ``.hwh`` parsed by
pynqmetadata, drivers bound by VLNV, PL clocks programmed on download), ``pynq.DefaultIP``
and ``pynq.MMIO`` for ``fracbnn_0``, ``pynq.lib.dma.DMA`` for ``axi_dma_0`` and
``pynq.allocate`` / ``pynq.buffer.PynqBuffer`` for the buffers.  The device provides what
pynq's board device (``EmbeddedDevice``: /dev/mem, FPGA manager, XRT) provides there, as
pynq's own mock devices do (``REGISTER_RW`` capability):

* ``read_registers`` / ``write_registers``: 32-bit accesses to the model's address map;
* ``allocate``: a cacheable ``PynqBuffer`` at a DDR address of the model; ``flush`` copies the
  host's bytes to the model's DDR, ``invalidate`` copies DDR back (so a result read without
  the invalidate PYNQ's ``wait()`` does would be stale);
* ``get_bitfile_metadata``: ``RuntimeMetadataParser(Metadata(hwh))``, the parser
  ``EmbeddedDevice`` uses (without the XRT xclbin it synthesises for its memory manager,
  which needs ``xclbinutil`` from XRT; this device allocates itself);
* ``download``: resets the model (a new bitstream) and runs ``Device.post_download``.

Activate with :func:`activate` (sets ``pynq.Device.active_device``; undo with the returned
callable).
"""

from __future__ import annotations

import ctypes
import itertools
from pathlib import Path

import numpy as np
import pynq
from pynq.buffer import PynqBuffer
from pynqmetadata.frontends import Metadata
from pynqmetadata.views.runtime import RuntimeMetadataParser

from .zynq_model import ZynqModel

__all__ = ["SimulatedBoard", "activate"]


class SimulatedBoard(pynq.Device):
    """See the module docstring.  ``events``: ``("download", bitfile)``, ``("flush", address,
    nbytes, at)``, ``("invalidate", address, nbytes, at)`` in order; ``at`` is the length of
    ``model.log`` then (the register accesses before it)."""

    def __init__(self, model: ZynqModel):
        super().__init__("fracbnn_simulated_board")
        self.name = "fracbnn_simulated_board"
        self.capabilities = {"REGISTER_RW": True}
        self.arch = "aarch64"            # pynq.ps.Clocks: Zynq UltraScale+
        self.model = model
        self.events: list[tuple] = []
        self._buffers: dict[int, int] = {}   # bo -> DDR address
        self._bo = itertools.count(1)

    # -- registers (pynq.MMIO with REGISTER_RW) ---------------------------------------------
    def read_registers(self, address: int, length: int) -> bytes:
        words = [self.model.read(address + 4 * k) for k in range(max(1, length // 4))]
        return b"".join(w.to_bytes(4, "little") for w in words)[:length]

    def write_registers(self, address: int, data: bytes) -> None:
        for k in range(0, len(data), 4):
            self.model.write(address + k, int.from_bytes(data[k:k + 4], "little"))

    # -- memory ------------------------------------------------------------------------------
    def allocate(self, shape, dtype, **kwargs):
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        bo = next(self._bo)
        self._buffers[bo] = self.model.ddr.alloc(nbytes)
        return PynqBuffer(shape, dtype, device=self, device_address=self._buffers[bo], bo=bo,
                          coherent=False)

    def flush(self, bo, offset, vaddr, length):
        address = self._buffers[bo] + offset
        self.events.append(("flush", address, length, len(self.model.log)))
        self.model.ddr.write(address, ctypes.string_at(vaddr, length))

    def invalidate(self, bo, offset, vaddr, length):
        address = self._buffers[bo] + offset
        self.events.append(("invalidate", address, length, len(self.model.log)))
        ctypes.memmove(vaddr, self.model.ddr.read(address, length), length)

    # -- bitstreams ----------------------------------------------------------------------------
    def get_bitfile_metadata(self, bitfile_name: str, partial: bool = False):
        parser = RuntimeMetadataParser(Metadata(input=str(Path(bitfile_name).with_suffix(".hwh"))))
        parser.refresh_hierarchy_dict()
        parser.bin_data = parser.xclbin_data = parser.dtbo_data = None
        return parser

    def download(self, bitstream, parser=None):
        self.events.append(("download", bitstream.bitfile_name))
        self.model.reset()
        self.post_download(bitstream, parser, self.name)


def activate(device: SimulatedBoard):
    """Make ``device`` pynq's active device (what ``Overlay``/``allocate`` use without a
    ``device=``); returns a callable that restores the previous state, including pynq's
    cached clock controller (``pynq.ps.Clocks`` keeps the first device it saw)."""
    from pynq.ps import Clocks

    had = "_active_device" in vars(pynq.Device)
    previous = vars(pynq.Device).get("_active_device")
    pynq.Device.active_device = device
    if "_real_instance" in vars(Clocks):
        del Clocks._real_instance

    def restore():
        if had:
            pynq.Device.active_device = previous
        elif "_active_device" in vars(pynq.Device):
            del pynq.Device._active_device
        if "_real_instance" in vars(Clocks):
            del Clocks._real_instance
        Clocks.device = None

    return restore
