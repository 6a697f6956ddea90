"""The C++ batch harness (sim/batch.py) agrees with the golden model and the cycle model.

A small frac2 network with random gates (data-dependent timing) is generated with
``hw.generate`` and a few hundred random images are streamed through the Verilated
design at full rate (every output and every per-image cycle stamp must match) and with
random idle cycles and backpressure (every output must still match).
"""

from __future__ import annotations

import numpy as np
import pytest

from hw.generate import generate
from sim.batch import build_batch, run_batch
from sim.reference import compare_outputs, compare_timing, reference
from sw.network_io import load_compiled_network
from tests.netfactory import random_compiled_network, random_images

PPB = 4
IMAGES = 300


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cosim_batch")
    net_dir = random_compiled_network(root / "net", image=(1, 4, 6), levels=2, shape=(12, 9, 4),
                                      outs=["frac2", "sign"],
                                      folding=[(3, 16), (3, 6), (2, 9)], seed=31)
    design = generate(net_dir, root / "design", pixels_per_beat=PPB)
    net = load_compiled_network(net_dir)
    images = random_images(net, IMAGES, seed=31)
    ref = reference(net, images, pixels_per_beat=PPB)
    built = build_batch(design)  # shared cache build/sim (keyed by the HDL)
    return net, images, ref, built


def test_full_rate_is_exact_in_outputs_and_cycles(setup):
    net, images, ref, built = setup
    seen = []
    res = run_batch(built, images, progress=seen.append)
    bad, notes = compare_outputs(res.classes, res.scores, ref.golden)
    assert bad == 0, notes
    assert compare_timing(res.first_in, res.first_out, ref) == []
    # Gating made the timing data dependent, so the exact match above is meaningful.
    assert len(set(np.diff(ref.output).tolist())) > 1
    beats_in = net.input.pixels // PPB
    assert np.all(res.last_in - res.first_in >= beats_in - 1)  # the pipeline may stall input
    assert np.all(res.last_out - res.first_out == net.classes)
    assert res.framing_errors == 0
    assert (res.reg_id, res.reg_images_done, res.reg_status & 3) == (0x464E4231, IMAGES, 0)
    assert res.total_cycles <= res.reg_cycles <= res.total_cycles + 40
    assert seen and seen[-1] == IMAGES


def test_backpressure_and_idle_keep_outputs_exact(setup):
    _, images, ref, built = setup
    res = run_batch(built, images, stall_percent=45, idle_percent=25, seed=9)
    bad, notes = compare_outputs(res.classes, res.scores, ref.golden)
    assert bad == 0, notes
    assert res.framing_errors == 0 and res.reg_images_done == IMAGES
    # The random traffic really did change the timing.
    assert compare_timing(res.first_in, res.first_out, ref) != []


def test_a_corrupted_result_is_detected(setup):
    """compare_outputs names image, score index, expected and got."""
    net, images, _, built = setup
    ref = reference(net, images[:20], pixels_per_beat=PPB, cycle_model=False)
    res = run_batch(built, images[:20])
    scores = res.scores.copy()
    scores[7, 1] += 2
    bad, notes = compare_outputs(res.classes, scores, ref.golden)
    assert bad == 1
    assert notes[0] == (f"image 7: last layer neuron (score) 1 expected {ref.golden.scores[7, 1]}, "
                        f"got {ref.golden.scores[7, 1] + 2}")


@pytest.mark.parametrize("engine,count", [("batch", 300), ("cocotb", 6)])
def test_sim_run_main_job(tmp_path, engine, count):
    """``python -m sim.run`` end to end on an MNIST-shaped net: PASS and its JSON summary."""
    import json
    import subprocess
    import sys

    from sim.build import REPO_ROOT

    net_dir = random_compiled_network(tmp_path / "net", image=(1, 28, 28), levels=1,
                                      shape=(16, 10), outs=["frac2"],
                                      folding=[(4, 56), (5, 8)], seed=41)
    summary = tmp_path / "summary.json"
    proc = subprocess.run([sys.executable, "-m", "sim.run", "--net", str(net_dir), "--images",
                           str(count), "--engine", engine, "--json", str(summary)],
                          cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS: every output bit-exact and every cycle stamp equal to the cycle model" in proc.stdout
    s = json.loads(summary.read_text())
    assert (s["images"], s["mismatches"], s["engine"]) == (count, 0, engine)
    assert s["accuracy"] == s["golden_accuracy"]
    t = s["timing"]
    assert t["disagreements"] == [] and t["ii_measured"] == t["ii_modelled"]
    assert t["latency_measured_first"] == t["latency_modelled_first"] > 0
    assert s["sim_speed"]["images_per_s"] > 0


def test_sim_run_fails_on_a_wrong_reference(tmp_path, monkeypatch, capsys):
    """Exit status 1 and FAIL when the design disagrees with the reference (here: a score
    and a cycle prediction of the reference are perturbed)."""
    import sim.run as simrun

    net_dir = random_compiled_network(tmp_path / "net", image=(1, 28, 28), levels=1,
                                      shape=(16, 10), outs=["frac2"],
                                      folding=[(4, 56), (5, 8)], seed=41)
    real_reference = simrun.reference

    def perturbed(*args, **kwargs):
        ref = real_reference(*args, **kwargs)
        ref.golden.scores[3, 2] += 1
        ref.output[5] += 1
        return ref

    monkeypatch.setattr(simrun, "reference", perturbed)
    status = simrun.main(["--net", str(net_dir), "--images", "20"])
    out = capsys.readouterr().out
    assert status == 1
    assert "mismatches       1" in out and "FAIL" in out
    assert "image 3: last layer neuron (score) 2" in out
    assert "first output cycle of image 5" in out
