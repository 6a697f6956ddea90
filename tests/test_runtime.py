"""Host runtime: packing, the golden / sim / pynq targets, and the pynq register + DMA sequence
run against the simulated board shell (tests/pynq_sim.py stands in for the pynq package)."""

import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hw.axi_lite_regs import REG as HW_REG, REG_ID_VALUE as HW_ID, REG_VERSION_VALUE as HW_VER
from sw.network_io import load_compiled_network
from sw.errors import UserError
from sw.golden import GoldenModel
from sw.runtime import (REG, REG_ID_VALUE, REG_VERSION_VALUE, Accelerator, DeviceError,
                        RegisterDriver, check_results, pack_images, unpack_results)
from tests.netfactory import random_compiled_network, random_images
from tests.pynq_sim import SimulatedPynq


def test_register_map_matches_the_hardware():
    assert REG == HW_REG and REG_ID_VALUE == HW_ID and REG_VERSION_VALUE == HW_VER


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 5), st.sampled_from([1, 2, 4, 8]), st.integers(0, 2**32 - 1))
def test_pack_is_the_stream_beat_order(n, ppb, seed):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    buf = pack_images(images, ppb)
    assert buf.dtype == np.uint8 and buf.size == images.size
    # Beat k, pixel j at bits [8j, 8j+8): the little-endian bytes of the buffer in order.
    beats = [int.from_bytes(buf[k * ppb:(k + 1) * ppb].tobytes(), "little")
             for k in range(buf.size // ppb)]
    flat = images.reshape(-1)
    for k, beat in enumerate(beats):
        for j in range(ppb):
            assert (beat >> (8 * j)) & 0xFF == flat[k * ppb + j]


def test_pack_rejects_bad_input():
    with pytest.raises(UserError, match="do not split into 3-pixel beats"):
        pack_images(np.zeros((2, 16), np.uint8), 3)
    with pytest.raises(UserError, match="8-bit unsigned"):
        pack_images(np.full((1, 16), 300), 8)
    with pytest.raises(UserError, match=r"\(N, 16\)"):
        pack_images(np.zeros((2, 3, 16), np.uint8), 8, pixels=16)


def test_unpack_and_consistency_check():
    words = np.array([1, 0xFFFF_FFFE, 5, 2, 7, 3, 7, 0xFFFF_FFFF], dtype=np.uint32)
    classes, scores = unpack_results(words, 3)
    assert classes.tolist() == [1, 7] and scores.tolist() == [[-2, 5, 2], [3, 7, -1]]
    check_results(np.array([1]), np.array([[-2, 5, 2]]))
    check_results(np.array([0]), np.array([[4, 4, 1]]))       # ties: first maximum
    with pytest.raises(DeviceError, match="image 0 reports class 1 but its scores peak at 0"):
        check_results(np.array([1]), np.array([[4, 4, 1]]))
    with pytest.raises(DeviceError, match="not a whole number"):
        unpack_results(words[:7], 3)


@pytest.fixture(scope="module")
def net_dir(tmp_path_factory):
    return random_compiled_network(tmp_path_factory.mktemp("net") / "net", image=(1, 4, 4),
                                   shape=(8, 6, 4), outs=["frac2", "sign"],
                                   folding=[(2, 4), (2, 4), (2, 3)], seed=7)


def test_golden_target_is_the_golden_model(net_dir):
    net = load_compiled_network(net_dir)
    images = random_images(net, 20, seed=2)
    acc = Accelerator("golden", net=net_dir)
    classes, scores = acc.execute(images)
    ref = GoldenModel(net).run(images)
    assert np.array_equal(classes, ref.classes) and np.array_equal(scores, ref.scores)
    one_class, one_score = acc.execute(images[3])              # a single image
    assert one_class.tolist() == [ref.classes[3]]
    report = acc.throughput_test(count=50)
    assert report["batch_size"] == 50 and report["throughput[images/s]"] > 0


def test_sim_target_equals_golden_target(net_dir, tmp_path):
    net = load_compiled_network(net_dir)
    images = random_images(net, 40, seed=4)
    golden = Accelerator("golden", net=net_dir).execute(images)
    with Accelerator("sim", net=net_dir, build_root=tmp_path / "simbuild",
                     clock_mhz=200) as acc:
        classes, scores = acc.execute(images)
        assert np.array_equal(classes, golden[0]) and np.array_equal(scores, golden[1])
        report = acc.throughput_test(images)
    from hw.cycle_model import steady_state_ii
    assert report["fclk[mhz]"] == 200 and report["cycles"] > 0
    # Back-to-back images at the modelled initiation interval (gating makes it data dependent,
    # so the mean lies between the best and worst case).
    best = steady_state_ii(net, 8, worst=False)
    worst = steady_state_ii(net, 8, worst=True)
    assert best - 1 <= report["cycles_per_image"] <= worst + 1


@pytest.fixture()
def fake_pynq(net_dir, tmp_path):
    net = load_compiled_network(net_dir)
    fake = SimulatedPynq(net, net_dir, pixels_per_beat=8)
    bit = tmp_path / "fracbnn.bit"
    bit.write_bytes(b"bitstream")
    yield fake, bit
    fake.close()


def test_pynq_target_against_the_simulated_board(net_dir, fake_pynq):
    fake, bit = fake_pynq
    net = load_compiled_network(net_dir)
    images = random_images(net, 7, seed=5)
    acc = Accelerator("pynq", bitfile=bit, net=net_dir, pynq_module=fake, batch_size=3)
    classes, scores = acc.execute(images)
    golden = Accelerator("golden", net=net_dir).execute(images)
    assert np.array_equal(classes, golden[0]) and np.array_equal(scores, golden[1])
    assert fake.bitfiles == [str(bit)]

    log = fake.device.log
    reads = [op[1] for op in log if op[0] == "read"]
    # Identification before anything else: ID, VERSION, CONFIG and every layer's registers.
    first_write = next(i for i, op in enumerate(log) if op[0] == "write")
    assert {0x00, 0x04, 0x08, 0x20, 0x24, 0x28, 0x2C, 0x30, 0x34} <= set(reads[:first_write])
    assert log[first_write] == ("write", REG["CTRL"], 1)
    # Three DMA batches (3 + 3 + 1 images), S2MM armed before MM2S, both waited for.
    dma = [op for op in log if op[0] in ("transfer", "wait")]
    per_image_in, per_image_out = net.input.pixels, 4 * (1 + net.classes)
    assert dma == [op for k in (3, 3, 1) for op in (
        ("transfer", "recv", k * per_image_out), ("transfer", "send", k * per_image_in),
        ("wait", "send"), ("wait", "recv"))]
    # Afterwards: STATUS, IMAGES_DONE, CYCLES.
    tail = [op[1] for op in log[log.index(dma[-1]) + 1:] if op[0] == "read"]
    assert tail[:4] == [REG["STATUS"], REG["IMAGES_DONE"], REG["CYCLES_LO"], REG["CYCLES_HI"]]
    assert acc.last_run["register_cycles"] > 0


def test_pynq_target_rejects_a_bitstream_for_another_network(net_dir, fake_pynq, tmp_path):
    fake, bit = fake_pynq
    other = random_compiled_network(tmp_path / "other", image=(1, 4, 4), shape=(8, 6, 4),
                                    outs=["frac2", "sign"], folding=[(4, 4), (2, 4), (2, 3)])
    with pytest.raises(DeviceError, match="layer 0: the design has PE/SIMD 2/4"):
        Accelerator("pynq", bitfile=bit, net=other, pynq_module=fake)
    other5 = random_compiled_network(tmp_path / "other5", image=(1, 4, 4), shape=(8, 6, 5),
                                     outs=["frac2", "sign"], folding=[(2, 4), (2, 4), (1, 3)])
    with pytest.raises(DeviceError, match="the design has 4 classes, the network 5"):
        Accelerator("pynq", bitfile=bit, net=other5, pynq_module=fake)


def test_a_packet_ending_inside_an_image_sets_the_framing_error(net_dir, fake_pynq):
    fake, bit = fake_pynq
    overlay = fake.Overlay(str(bit))
    regs = RegisterDriver(overlay.fracbnn_0)
    regs.clear()
    half = np.zeros(24, dtype=np.uint8)         # 1.5 images of 16 pixels
    overlay.axi_dma_0.sendchannel.transfer(half)
    overlay.axi_dma_0.sendchannel.wait()
    with pytest.raises(DeviceError, match="framing error"):
        regs.check_after(0)
    regs.clear()
    assert regs.read("STATUS") & 2 == 0


def test_pynq_missing_is_a_clear_error(net_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynq", None)       # import pynq -> ImportError
    bit = tmp_path / "x.bit"
    bit.write_bytes(b"x")
    with pytest.raises(UserError, match="needs the PYNQ package"):
        Accelerator("pynq", bitfile=bit, net=net_dir)
    with pytest.raises(UserError, match="needs bitfile="):
        Accelerator("pynq", net=net_dir)
    with pytest.raises(UserError, match="unknown target 'fpga'"):
        Accelerator("fpga", net=net_dir)
    with pytest.raises(UserError, match="needs net="):
        Accelerator("golden")


def test_sim_target_loads_another_network(tmp_path):
    """The runtime's sim target with writable parameters: network A's results, then
    ``load(B)`` (its register writes made by the Verilator harness after reset) and B's
    results, every class and score exact; a design without writable parameters refuses."""
    from tests.netfactory import random_compiled_network, random_images
    kwargs = dict(image=(1, 4, 4), levels=2, shape=(12, 8, 5), outs=["mt3", "mt4"],
                  folding=[(4, 8), (2, 3), (2, 4, True)], last="sign",
                  decoder="highest_set_bit")
    dir_a = random_compiled_network(tmp_path / "a", seed=41, **kwargs)
    dir_b = random_compiled_network(tmp_path / "b", seed=42, **kwargs)
    images = random_images(load_compiled_network(dir_a), 12, seed=2)
    with Accelerator("sim", net=dir_a, writable_params=True,
                     build_root=tmp_path / "build") as acc:
        for d in (dir_a, dir_b):
            if d is dir_b:
                info = acc.load(d)
                assert info["writes"] > 0
            gold = GoldenModel(load_compiled_network(d)).run(images)
            classes, scores = acc.execute(images)
            np.testing.assert_array_equal(classes, gold.classes)
            np.testing.assert_array_equal(scores, gold.scores)
    with Accelerator("sim", net=dir_a, build_root=tmp_path / "build") as acc:
        with pytest.raises(UserError, match="not writable"):
            acc.load(dir_b)


def test_a_stalled_accelerator_is_a_one_line_error_not_a_hang(net_dir, tmp_path):
    """DMA.wait() has no timeout: the runtime polls with a deadline instead."""
    import time
    net = load_compiled_network(net_dir)
    fake = SimulatedPynq(net, net_dir, pixels_per_beat=8, stall=True)
    bit = tmp_path / "fracbnn.bit"
    bit.write_bytes(b"bitstream")
    try:
        acc = Accelerator("pynq", bitfile=bit, net=net_dir, pynq_module=fake, dma_timeout=0.5)
        start = time.monotonic()
        with pytest.raises(UserError) as err:
            acc.execute(random_images(net, 1, seed=1))
        took = time.monotonic() - start
    finally:
        fake.close()
    msg = str(err.value)
    assert "\n" not in msg and "accelerator stalled" in msg
    # One image goes in (MM2S finishes); its results never come out (S2MM does not).
    assert "axi_dma_0 S2MM channel (results out) was not done after 0.5 s (1 image(s)" in msg
    assert "dma_timeout=" in msg
    assert 0.5 <= took < 30
    log = fake.device.log
    assert ("wait", "send") in log and ("wait", "recv") not in log    # never a blocking wait
    assert log.count(("poll", "recv")) > 1


def test_dma_timeout_is_checked(net_dir, tmp_path):
    bit = tmp_path / "x.bit"
    bit.write_bytes(b"x")
    for bad in (0, -1.0, float("nan"), float("inf"), "5", True):
        with pytest.raises(UserError, match="dma_timeout must be a number of seconds > 0"):
            Accelerator("pynq", bitfile=bit, net=net_dir, dma_timeout=bad,
                        pynq_module=object())
    from sw.runtime import dma_timeout_for
    assert dma_timeout_for(1000) == pytest.approx(12.0) and dma_timeout_for(0) == 2.0


@pytest.fixture(scope="module")
def exit_net_dir(tmp_path_factory):
    return random_compiled_network(tmp_path_factory.mktemp("exits") / "net", image=(1, 4, 4),
                                   levels=2, shape=(12, 10, 8, 4),
                                   folding=[(4, 8), (2, 4), (4, 5), (2, 4)],
                                   exits=((0, 3), (1, 2)), seed=3)


def _exit_counts(net, images):
    exits = GoldenModel(net).run(images).exits
    return np.bincount(exits, minlength=len(net.exits) + 1)[:len(net.exits)].tolist()


def test_exit_counts_on_every_target(exit_net_dir, tmp_path):
    """Accelerator.exit_counts(): the golden model's exits, the EXITj_TAKEN registers of the
    simulated board (pynq target: EXITS checked with the design, counters read after the
    batch) and of the Verilated design (sim target)."""
    net = load_compiled_network(exit_net_dir)
    images = random_images(net, 12, seed=6)
    want = _exit_counts(net, images)
    assert len(want) == 2 and all(want) and sum(want) <= len(images)
    golden = Accelerator("golden", net=exit_net_dir)
    ref = golden.execute(images)
    assert golden.exit_counts() == want
    fake = SimulatedPynq(net, exit_net_dir, pixels_per_beat=8)
    bit = tmp_path / "fracbnn.bit"
    bit.write_bytes(b"bitstream")
    try:
        acc = Accelerator("pynq", bitfile=bit, net=exit_net_dir, pynq_module=fake,
                          batch_size=5)
        classes, scores = acc.execute(images)
        assert np.array_equal(classes, ref[0]) and np.array_equal(scores, ref[1])
        assert acc.exit_counts() == want
        reads = [op[1] for op in fake.device.log if op[0] == "read"]
        assert REG["EXITS"] in reads and REG["EXIT_BASE"] + 4 in reads
    finally:
        fake.close()
    with Accelerator("sim", net=exit_net_dir) as sim:
        classes, scores = sim.execute(images)
        assert np.array_equal(classes, ref[0]) and np.array_equal(scores, ref[1])
        assert sim.exit_counts() == want


def test_check_design_compares_the_exits(exit_net_dir):
    """A design whose EXITS register differs from the network's exits is refused."""
    from sim.reference import expected_registers

    net = load_compiled_network(exit_net_dir)

    class Mmio:
        def __init__(self, regs):
            self.regs = regs

        def read(self, offset):
            return self.regs.get(offset, 0)

    regs = expected_registers(net, 8)
    assert RegisterDriver(Mmio(regs)).check_design(net) == 8
    with pytest.raises(DeviceError, match="the design has 0 exits, the network 2"):
        RegisterDriver(Mmio({**regs, REG["EXITS"]: 0})).check_design(net)
