"""cocotb + Verilator co-simulation of generated accelerators against the golden and cycle models.

Each design is a random compiled network (tests/netfactory.py) generated with
``hw.generate``; the cocotb testbench (sim/tb_accelerator.py) checks registers, every
class and score of every image (with seeded random input idle cycles and output
backpressure, or none), per-image input-accept and first-output cycles against
``hw.cycle_model`` exactly, reset in the middle of an image, and TLAST framing errors.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from hw.generate import generate
from sim.build import REPO_ROOT
from sim.cosim import ALL_TESTS, TestbenchSpec, run_testbench
from sim.reference import reference
from sw.network_io import load_compiled_network
from sw.errors import UserError
from tests.netfactory import random_compiled_network, random_images

# name -> (netfactory kwargs, pixels per beat, images)
DESIGNS = {
    # Fully folded in neurons, one synapse fold: PE = 1, SIMD = MW.
    "sign_pe1_simd_mw": (dict(image=(1, 4, 4), levels=1, shape=(6, 4),
                              folding=[(1, 16), (1, 6)], seed=11), 4, 8),
    # Non-power-of-two divisors and 3 thermometer levels (MW0 = 36*3 = 108).
    "sign_nonpow2": (dict(image=(1, 6, 6), levels=3, shape=(12, 6, 3),
                          folding=[(3, 27), (3, 6), (3, 3)], seed=12), 6, 8),
    # Fractional activations with random gates (some folds skip the LSB pass).
    "frac2_random_gates": (dict(image=(1, 4, 4), levels=2, shape=(12, 10, 5),
                                outs=["frac2", "frac2"], folding=[(4, 8), (2, 4), (5, 5)],
                                seed=13), 8, 10),
    # Last layer padded (PE does not divide classes), frac2 then sign.
    "frac2_padded": (dict(image=(1, 4, 6), levels=1, shape=(8, 8, 3),
                          outs=["frac2", "sign"], folding=[(2, 5, True), (4, 4), (2, 8, True)],
                          seed=14), 8, 8),
    # Multithreshold 4- and 3-level activations (ungated 2-bit layers, one pass) and
    # per-class integer keys (negative scales included) on the scores.
    "multithreshold_keys": (dict(image=(1, 4, 4), levels=2, shape=(12, 8, 5),
                                 outs=["mt4", "mt3"], folding=[(4, 8), (2, 3), (2, 4, True)],
                                 class_scale=[2, -1, 1, 3, 1], class_bias=[0, 7, -3, 1, 2],
                                 seed=15), 8, 8),
}


@pytest.fixture(scope="module")
def build_root():
    # The shared cache (build/sim): the designs are deterministic, so re-runs skip the
    # Verilator builds; the key covers every HDL byte, so a changed generator rebuilds.
    return None


def _design(tmp_path_factory, name):
    kwargs, ppb, count = DESIGNS[name]
    root = tmp_path_factory.mktemp(name)
    net_dir = random_compiled_network(root / "net", **kwargs)
    design = generate(net_dir, root / "design", pixels_per_beat=ppb)
    net = load_compiled_network(net_dir)
    images = random_images(net, count, seed=kwargs["seed"])
    return net, design, ppb, images, root


@pytest.mark.parametrize("traffic", ["random", "none"])
@pytest.mark.parametrize("name", list(DESIGNS))
def test_cocotb_design(tmp_path_factory, build_root, name, traffic):
    net, design, ppb, images, root = _design(tmp_path_factory, name)
    ref = reference(net, images, pixels_per_beat=ppb)
    random_traffic = traffic == "random"
    spec = TestbenchSpec(images, ref.golden.classes, ref.golden.scores, ppb,
                         registers=ref.registers, pred_accept=ref.accept, pred_output=ref.output,
                         idle_prob=0.3 if random_traffic else 0.0,
                         stall_prob=0.4 if random_traffic else 0.0, seed=len(name),
                         layer_outputs=ref.golden.layer_outputs)
    tests = ALL_TESTS if random_traffic else ("test_images", "test_cycles")
    result = run_testbench(design, spec, tests=tests, build_root=build_root,
                           run_dir=root / f"run_{traffic}")
    assert result.tests == len(tests)
    assert result.ok, result.failure_summary()
    assert result.report["test_images"]["mismatch_count"] == 0
    cycles = result.report["test_cycles"]
    assert cycles["accept"] == (ref.accept - ref.accept[0]).tolist()
    assert cycles["output"] == (ref.output - ref.accept[0]).tolist()
    # Every layer engine's output stream was tapped and matched the golden model.
    layers = list(range(len(net.layers)))
    assert result.report["test_images"]["layers_checked"] == layers
    assert cycles["layers_checked"] == layers


def test_layer_taps_locate_a_divergence(tmp_path_factory, build_root):
    """A wrong inner-layer expectation is reported with its image, layer and neuron."""
    net, design, ppb, images, root = _design(tmp_path_factory, "frac2_random_gates")
    ref = reference(net, images, pixels_per_beat=ppb)
    layer_outputs = [a.copy() for a in ref.golden.layer_outputs]
    layer_outputs[1][2, 3] ^= 1
    spec = TestbenchSpec(images, ref.golden.classes, ref.golden.scores, ppb,
                         layer_outputs=layer_outputs)
    result = run_testbench(design, spec, tests=["test_cycles"], build_root=build_root,
                           run_dir=root / "run_taps")
    assert result.failed == 1
    first = result.report["test_cycles"]["mismatches"][0]
    assert first == {"image": 2, "what": "layer output", "layer": 1, "neuron": 3,
                     "expected": int(layer_outputs[1][2, 3]),
                     "got": int(ref.golden.layer_outputs[1][2, 3])}


def test_frac2_gating_changes_the_timing(tmp_path_factory):
    """The frac design's cycle stamps depend on the gates: the check is not vacuous."""
    net, _, ppb, images, _ = _design(tmp_path_factory, "frac2_random_gates")
    from hw.cycle_model import simulate_pipeline
    ref = reference(net, images, pixels_per_beat=ppb)
    closed = simulate_pipeline(net, len(images), pixels_per_beat=ppb, gates="closed")
    opened = simulate_pipeline(net, len(images), pixels_per_beat=ppb, gates="open")
    assert any(g is not None and g.any() and not g.all() for g in ref.golden.gates)
    assert list(closed.output_start) != list(ref.output) != list(opened.output_start)


def test_cocotb_lfc_shaped(tmp_path_factory, build_root):
    """LFC geometry (784-1024-1024-1024-10) with the BNN-PYNQ folding, random weights.

    About 80 s here, almost all of it the Verilator build of the ~2 MB design.
    """
    root = tmp_path_factory.mktemp("lfc")
    folding = [(32, 64, True), (64, 32), (32, 64), (16, 8, True)]
    net_dir = random_compiled_network(root / "net", image=(1, 28, 28), shape=(1024, 1024, 1024, 10),
                                      folding=folding, seed=21)
    design = generate(net_dir, root / "design", pixels_per_beat=8)
    net = load_compiled_network(net_dir)
    images = random_images(net, 6, seed=21)
    ref = reference(net, images, pixels_per_beat=8)
    spec = TestbenchSpec(images, ref.golden.classes, ref.golden.scores, 8,
                         registers=ref.registers, pred_accept=ref.accept, pred_output=ref.output,
                         idle_prob=0.2, stall_prob=0.3, seed=5,
                         layer_outputs=ref.golden.layer_outputs)
    tests = ("test_registers", "test_images", "test_cycles")
    result = run_testbench(design, spec, tests=tests, build_root=build_root, run_dir=root / "run")
    assert result.ok and result.tests == len(tests), result.failure_summary()
    assert result.report["test_cycles"]["accept"][1] == int(ref.accept[1] - ref.accept[0])
    assert result.report["test_cycles"]["layers_checked"] == [0, 1, 2, 3]


def test_fold_that_does_not_divide_is_refused(tmp_path):
    net_dir = random_compiled_network(tmp_path / "net", image=(1, 4, 4), shape=(6, 4), seed=3)
    fold = tmp_path / "fold.json"
    fold.write_text(json.dumps({"layers": [{"pe": 4, "simd": 16}, {"pe": 1, "simd": 6}]}))
    with pytest.raises(UserError, match=r"layer 0.*PE 4 does not divide MH 6"):
        generate(net_dir, tmp_path / "design", fold=fold)
    assert not (tmp_path / "design").exists()
    # The same through the command line: one line, exit status 2, no traceback.
    proc = subprocess.run([sys.executable, "-m", "sim.run", "--net", str(net_dir), "--fold",
                           str(fold), "--images", "2"], cwd=REPO_ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "PE 4 does not divide MH 6" in lines[-1]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("kind", ["frac2", "multithreshold"])
def test_cocotb_load_parameters(tmp_path_factory, build_root, kind):
    """Verilog RAMs (fracbnn_ram.v) through Verilator: a design generated for network A
    with --writable-params runs A exactly, is loaded with B (same shapes, other weights,
    thresholds and gates) over AXI4-Lite, and runs B exactly."""
    from sw.golden import GoldenModel
    from sw.runtime import parameter_writes
    kwargs = (dict(image=(1, 4, 4), levels=2, shape=(12, 10, 5), outs=["frac2", "frac2"],
                   folding=[(4, 8), (2, 4), (5, 5)]) if kind == "frac2" else
              dict(image=(1, 4, 4), levels=2, shape=(12, 8, 5), outs=["mt3", "mt4"],
                   folding=[(4, 8), (2, 3), (2, 4, True)], last="sign",
                   decoder="highest_set_bit"))
    root = tmp_path_factory.mktemp(f"load_{kind}")
    dir_a = random_compiled_network(root / "a", seed=31, **kwargs)
    dir_b = random_compiled_network(root / "b", seed=32, **kwargs)
    design = generate(dir_a, root / "design", pixels_per_beat=8, writable_params=True)
    assert (design / "fracbnn_ram.v").is_file()
    net_a, net_b = load_compiled_network(dir_a), load_compiled_network(dir_b)
    images = random_images(net_a, 6, seed=3)
    gold_a, gold_b = GoldenModel(net_a).run(images), GoldenModel(net_b).run(images)
    assert not np.array_equal(gold_a.scores, gold_b.scores)
    spec = TestbenchSpec(images, gold_a.classes, gold_a.scores, 8, idle_prob=0.0,
                         stall_prob=0.0, param_writes=parameter_writes(net_b),
                         load_classes=gold_b.classes, load_scores=gold_b.scores)
    result = run_testbench(design, spec, tests=["test_load_parameters"], build_root=build_root,
                           run_dir=root / "run")
    assert result.ok, result.failure_summary()
    assert result.report["test_load_parameters"]["mismatch_count"] == 0
    assert result.report["test_load_parameters"]["writes"] == len(parameter_writes(net_b))
