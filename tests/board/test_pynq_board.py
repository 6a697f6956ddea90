"""The runtime's pynq target on pynq 4.0's own classes over a simulated board (nox -s board).

pynq.Overlay parses the design's .hwh and binds pynq.DefaultIP to fracbnn_0 and
pynq.lib.dma.DMA to axi_dma_0; pynq.allocate gives cacheable PynqBuffers; below them
tests/board/pynq_device.py answers the register accesses and cache maintenance with
tests/board/zynq_model.py (the accelerator's register map and stream behaviour, the AXI DMA's
registers as in PG021, DDR).  So the register and DMA sequence checked here is the one pynq's
drivers issue on a board, and the results must equal the numpy-2 golden results.
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

pynq = pytest.importorskip("pynq", reason="needs pynq 4.0: `nox -s board`")

from pynq.lib.dma import DMA  # noqa: E402

from sw.errors import UserError  # noqa: E402
from sw.runtime import REG, Accelerator, DeviceError  # noqa: E402

from .hwh import write_overlay  # noqa: E402
from .make_fixtures import DATA  # noqa: E402
from .pynq_device import SimulatedBoard, activate  # noqa: E402
from .zynq_model import ZynqModel  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# AXI DMA register offsets (PG021): MM2S at 0x00, S2MM at 0x30.
DMACR, DMASR, ADDR, ADDR_MSB, LENGTH = 0x00, 0x04, 0x18, 0x1C, 0x28
S2MM = 0x30


@pytest.fixture
def make_board(tmp_path):
    """``make_board(name, stall=None, net=None)`` -> (device, bitfile, expected): the overlay
    files for the network ``name`` of tests/board/data, a simulated board running that
    network (or ``net``) made pynq's active device."""
    restore = []

    def make(name, *, stall=None, net=None):
        from sw.network_io import load_network
        bit = write_overlay(tmp_path / f"overlay{len(restore)}", DATA / name)
        model = ZynqModel(net or load_network(DATA / name), stall=stall)
        device = SimulatedBoard(model)
        restore.append(activate(device))
        return device, bit, np.load(DATA / name / "expected.npz")

    yield make
    for undo in reversed(restore):
        undo()


def _writes(log, region, offset=None):
    return [i for i, op in enumerate(log) if op[0] == "write" and op[1] == region
            and (offset is None or op[2] == offset)]


@pytest.mark.parametrize("name", ["tiny_conv_frac", "dense_keys", "resnet_frac2"])
def test_runtime_on_pynqs_own_drivers(make_board, name):
    device, bit, expected = make_board(name)
    images = expected["images"]
    acc = Accelerator("pynq", bitfile=bit, batch_size=25)     # net/ beside the bitstream
    backend = acc._backend
    assert type(backend.overlay) is pynq.Overlay and type(backend.dma) is DMA
    assert type(backend.regs._mmio) is pynq.DefaultIP
    assert device.model.downloads == 1 and device.model.pl_clock_mhz(0) == pytest.approx(150)

    classes, scores = acc.execute(images)
    np.testing.assert_array_equal(classes, expected["classes"])
    np.testing.assert_array_equal(scores, expected["scores"])
    assert device.model.shell.images_done == len(images)
    assert acc.last_run["register_cycles"] > 0

    log = device.model.log
    # pynq's DMA driver started both channels (DMACR.RS) when the overlay bound it.
    assert [log[i][2:] for i in _writes(log, "dma") if log[i][2] in (DMACR, S2MM + DMACR)] \
        == [(DMACR, 1), (S2MM + DMACR, 1)]
    # Per batch (25 + 25 + 14 images): S2MM armed (address, MSB, length), then MM2S.
    per_in, per_out = len(images[0]), 4 * (1 + expected["scores"].shape[1])
    dma_writes = [log[i][2:] for i in _writes(log, "dma") if log[i][2] in
                  (ADDR, ADDR_MSB, LENGTH, S2MM + ADDR, S2MM + ADDR_MSB, S2MM + LENGTH)]
    assert [(o, v) for o, v in dma_writes if o in (LENGTH, S2MM + LENGTH)] == [
        pair for k in (25, 25, 14) for pair in ((S2MM + LENGTH, k * per_out),
                                                (LENGTH, k * per_in))]
    assert [o for o, _ in dma_writes] == [S2MM + ADDR, S2MM + ADDR_MSB, S2MM + LENGTH,
                                          ADDR, ADDR_MSB, LENGTH] * 3
    # The input buffer reached DDR (flush) before MM2S started; every result buffer was
    # invalidated after S2MM went idle, by wait(), which ran only then.
    mm2s_starts = _writes(log, "dma", LENGTH)
    s2mm_idle = [i for i, op in enumerate(log) if op[:3] == ("read", "dma", S2MM + DMASR)
                 and op[3] & 2]
    flushes = [e[3] for e in device.events if e[0] == "flush"]
    invalidates = [e[3] for e in device.events if e[0] == "invalidate"]
    assert len(flushes) == len(invalidates) == 3
    assert all(f <= start for f, start in zip(flushes, mm2s_starts))
    assert all(any(i <= at for i in s2mm_idle) for at in invalidates)
    # The accelerator: identified before the first write (CTRL clear), checked at the end.
    accel = [op for op in log if op[1] == "accel"]
    first_write = next(i for i, op in enumerate(accel) if op[0] == "write")
    assert accel[first_write][2:] == (REG["CTRL"], 1)
    assert {REG["ID"], REG["VERSION"], REG["CONFIG"], 0x20, 0x24} <= \
        {op[2] for op in accel[:first_write]}
    assert [op[2] for op in accel[-4:]] == [REG["STATUS"], REG["IMAGES_DONE"],
                                           REG["CYCLES_LO"], REG["CYCLES_HI"]]


def _run_in_thread(fn, limit=60.0):
    """``fn()`` in a daemon thread: a regression back to a blocking wait() fails the test
    after ``limit`` seconds instead of hanging the session."""
    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:     # handed to the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"the runtime hung for {limit} s on a stalled accelerator"
    return box


@pytest.mark.parametrize("stall, channel", [("output", "S2MM channel (results out)"),
                                            ("input", "MM2S channel (images in)")])
def test_a_stalled_accelerator_times_out(make_board, stall, channel):
    device, bit, expected = make_board("dense_keys", stall=stall)
    acc = Accelerator("pynq", bitfile=bit, dma_timeout=0.3)
    start = time.monotonic()
    box = _run_in_thread(lambda: acc.execute(expected["images"][:3]))
    took = time.monotonic() - start
    err = box.get("error")
    assert isinstance(err, UserError), box
    msg = str(err)
    assert "\n" not in msg and msg.startswith("the accelerator stalled: the axi_dma_0 " + channel)
    assert "not done after 0.3 s (3 image(s) in the batch)" in msg and "dma_timeout=" in msg
    assert 0.3 <= took < 30
    # pynq's blocking wait() was never entered on the stalled channel: its status was polled.
    offset = S2MM + DMASR if stall == "output" else DMASR
    polls = [op for op in device.model.log if op[:3] == ("read", "dma", offset)]
    assert len(polls) > 10 and not any(op[3] & 2 for op in polls[2:])


def test_another_networks_bitstream_is_refused(make_board):
    from sw.network_io import load_compiled_network
    other = load_compiled_network(DATA / "dense_hsb")
    device, bit, _ = make_board("dense_keys", net=other)          # the PL runs dense_hsb
    with pytest.raises(DeviceError, match="the design has 2 layers, the network 4"):
        Accelerator("pynq", bitfile=bit)
    device, bit, _ = make_board("dense_keys")
    acc = Accelerator("pynq", bitfile=bit)
    with pytest.raises(DeviceError, match="parameters are not writable"):
        acc.load(DATA / "dense_keys")


def test_compare_command_on_the_board(make_board, mnist_dir, tmp_path, capsys):
    """``python -m sw.compare --target pynq`` (what failed with numpy 1.26 before): the
    network from net/ beside the bitstream, MNIST from IDX files, no PyTorch."""
    from sw.compare import main
    _, bit, _ = make_board("tiny_conv_frac")
    report_path = tmp_path / "report.json"
    status = main(["--target", "pynq", "--bitfile", str(bit), "--images", "40",
                   "--batch-size", "16", "--data", str(mnist_dir), "--json", str(report_path)])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "golden      40/40 images identical" in out and "AGREE" in out
    report = json.loads(report_path.read_text())
    assert report["target"] == "pynq" and report["golden_agreement"] == 40
    assert report["throughput"]["register_cycles"] > 0
    assert "skipped" in report["pytorch"]
