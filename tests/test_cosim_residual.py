"""cocotb (sim/tb_accelerator.py) on the emitted Verilog of a residual accelerator: the fork,
skip FIFO and add of every block, the fixed-point units (affine, RPReLU, 2x2 average pool,
channel duplication, global pool with its shift, classifier) and the gated engines, with
random input idle and output backpressure: registers, every class and score exact, and at full
rate every image's first input and output cycle equal to the residual cycle model; and
``python -m sim.run --engine cocotb`` on a residual network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sim.cosim import TestbenchSpec, run_testbench

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
torch.set_num_threads(1)
PPB = 8


@pytest.fixture(scope="module")
def design(tmp_path_factory):
    """A tiny frac2 ResNet (8x8, widths 4/8: a stride-2 block with pool and duplication; the
    global pool averages with shift 2) and its generated design."""
    from hw.residual_generate import generate_residual
    from models import residual as rs
    from models.export_residual import export_resnet
    from sim.run import _residual_reference
    from sw.network_io import load_network
    from tests.modelfactory import resnet_images, train_resnet_briefly

    torch.manual_seed(0)
    model = rs.ResNet(input_shape=(1, 8, 8), thermometer_levels=2, widths=(4, 8), blocks=1,
                      activation="frac2", classes=4, pool_shift=2)
    model = train_resnet_briefly(model, resnet_images(model, 64, 0), 4, split=32)
    root = tmp_path_factory.mktemp("cosim_res")
    images = resnet_images(model, 10, seed=9)
    export_resnet(model, root / "net", images, name="tiny_frac2_avg", vectors=0)
    generate_residual(root / "net", root / "design", pixels_per_beat=PPB)
    net = load_network(root / "net")
    from hw.residual_accelerator import resolve_folding
    net, _ = resolve_folding(net)
    from sw.golden import GoldenModel
    # With every tensor (sim.run's reference keeps classes, scores and gates only).
    ref = _residual_reference(net, images, pixels_per_beat=PPB,
                              golden=GoldenModel(net).run(images))
    assert ref.golden.layer_outputs
    return net, root, images, ref


def test_cocotb_residual_exact_under_traffic_and_cycle_exact(design):
    net, root, images, ref = design
    assert any(n.op == "global_sumpool" and n.attrs["shift"] == 2 for n in net.nodes)
    assert {"add", "avgpool2x2", "dup_channels", "rprelu"} <= {n.op for n in net.nodes}
    assert any(l.gated for l in net.layers)
    spec = TestbenchSpec(images, ref.golden.classes, ref.golden.scores, PPB,
                         registers=ref.registers, pred_accept=ref.accept, pred_output=ref.output,
                         idle_prob=0.3, stall_prob=0.4, seed=5,
                         layer_outputs=ref.golden.layer_outputs)
    tests = ("test_registers", "test_images", "test_cycles")
    result = run_testbench(root / "design", spec, tests=tests, run_dir=root / "run")
    assert result.tests == len(tests) and result.ok, result.failure_summary()
    assert result.report["test_cycles"]["output"] == (ref.output - ref.accept[0]).tolist()
    layers = list(range(len(net.layers)))          # every convolution's accumulators tapped
    assert result.report["test_images"]["layers_checked"] == layers
    assert result.report["test_cycles"]["layers_checked"] == layers


def test_cocotb_residual_catches_a_wrong_score(design):
    """The same run with one expected score, or one tapped accumulator, off by one fails
    (the checks can fail)."""
    net, root, images, ref = design
    scores = ref.golden.scores.copy()
    scores[3, 1] += 1
    spec = TestbenchSpec(images, ref.golden.classes, scores, PPB, registers=ref.registers,
                         idle_prob=0.3, stall_prob=0.4, seed=5)
    result = run_testbench(root / "design", spec, tests=("test_images",),
                           run_dir=root / "run_bad")
    assert not result.ok
    # And a wrong accumulator of one convolution's tap.
    taps = [t.copy() for t in ref.golden.layer_outputs]
    taps[1][2, 5] += 1
    spec = TestbenchSpec(images, ref.golden.classes, ref.golden.scores, PPB,
                         registers=ref.registers, seed=5, layer_outputs=taps)
    result = run_testbench(root / "design", spec, tests=("test_images",),
                           run_dir=root / "run_bad_tap")
    assert not result.ok and "'layer': 1" in result.failure_summary()


def test_board_shell_runs_a_residual_network(design):
    """The board shell (DMA framing) around the residual accelerator, Amaranth simulation:
    one DMA packet of three images gives their classes and scores, TLAST on the last word."""
    from tests.pynq_sim import _Device

    net, root, images, ref = design
    rtl = _Device(net, root / "design", PPB, max_cycles=200_000)
    try:
        raw = np.ascontiguousarray(images[:3]).reshape(-1, PPB)
        beats = [int.from_bytes(row.tobytes(), "little") for row in raw]
        sent, _, _, done = rtl.call("dma", beats, 0, "send", 100_000)
        assert done and sent == len(beats)
        words = 3 * (1 + net.classes)
        _, got, last, done = rtl.call("dma", [], words, "recv", 100_000)
        assert done and last and len(got) == words
    finally:
        rtl.close()
    want = []
    for k in range(3):
        want += [int(ref.golden.classes[k])] + [int(s) & 0xFFFFFFFF for s in ref.golden.scores[k]]
    assert got == want


def test_runtime_golden_and_sim_targets_run_a_residual_network(design, tmp_path):
    """sw.runtime's golden and sim targets (the host side of sw.compare) take a residual
    network: the same classes and scores as the golden model; the sim target reuses the
    generated design after checking it is this network's."""
    from sw.runtime import Accelerator
    net, root, images, ref = design
    for target, extra in (("golden", {}),
                          ("sim", {"design_dir": root / "design", "pixels_per_beat": PPB,
                                   "build_root": tmp_path / "build"})):
        with Accelerator(target, net=root / "net", **extra) as acc:
            classes, scores = acc.execute(images)
        np.testing.assert_array_equal(classes, ref.golden.classes)
        np.testing.assert_array_equal(scores, ref.golden.scores)
