"""Early exits in the Verilog flow: ``hw.generate`` writes and lists the exits' ``X{j}_*.mem``
ROMs, and the Verilated design (cocotb testbench and C++ batch harness) gives every image the
golden model's class and scores of the exit it takes, at the cycles the cycle model predicts,
with the EXITj_TAKEN registers counting the images per exit; ``python -m sim.run`` accepts an
exit network end to end."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from hw.generate import generate, memory_files
from sim.batch import build_batch, run_batch
from sim.cosim import TestbenchSpec, run_testbench
from sim.reference import (REGISTER_EXITS, compare_outputs, compare_timing, exit_counts,
                           layer_outputs_seen, reference)
from sw.golden import GoldenModel, exit_margins
from sw.network_io import load_compiled_network, write_compiled_network
from tests.netfactory import random_images, random_network

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

PPB = 8

# name -> (netfactory kwargs, images)
NETS = {
    # Two exits, sign activations, width converters into the exit engines.
    "sign": (dict(image=(1, 4, 4), levels=2, shape=(12, 10, 8, 4),
                  folding=[(4, 8), (2, 4), (4, 5), (2, 4)], exits=((0, 3), (1, 2)), seed=3), 24),
    # frac2 into a gated exit classifier (data-dependent exit engine), one exit.
    "frac": (dict(image=(1, 4, 4), levels=1, shape=(12, 8, 5), outs=["frac2", "frac2"],
                  folding=[(4, 16), (2, 4), (5, 2)], exits=((0, 4),), seed=4), 24),
}


@pytest.fixture(scope="module", params=list(NETS))
def design(request, tmp_path_factory):
    kwargs, count = NETS[request.param]
    root = tmp_path_factory.mktemp(f"exits_{request.param}")
    write_compiled_network(random_network(**kwargs), root / "net")
    net = load_compiled_network(root / "net")
    out = generate(root / "net", root / "design", pixels_per_beat=PPB)
    images = random_images(net, count, seed=kwargs["seed"] + 1)
    ref = reference(net, images, pixels_per_beat=PPB)
    assert len(set(ref.golden.exits.tolist())) > 1, "the test net should use several paths"
    return net, out, images, ref, root


def test_generate_writes_and_lists_the_exit_memories(design):
    net, out, _, _, _ = design
    doc = json.loads((out / "design.json").read_text())
    exit_files = [name for name, _, _ in memory_files(net) if name.startswith("X")]
    assert exit_files and all((out / f).is_file() for f in exit_files)
    assert set(exit_files) <= set(doc["files"])
    assert {m["file"] for m in doc["memories"] if m["name"].startswith("X")} == set(exit_files)
    assert [(e["after"], e["margin"], e["pe"], e["simd"]) for e in doc["exits"]] == \
        [(ex.after, ex.margin, ex.layer.folding.pe, ex.layer.folding.simd) for ex in net.exits]
    assert doc["registers"]["addresses"]["exits"] == REGISTER_EXITS
    lat, per_path = doc["cycle_model"]["latency"], doc["cycle_model"]["latency_per_path"]
    assert [p["path"] for p in per_path] == [f"exit{j}" for j in range(len(net.exits))] + \
        ["no exit"]
    assert 0 < lat["best"] == min(p["best"] for p in per_path)
    assert lat["worst"] == max(p["worst"] for p in per_path)
    assert doc["cycle_model"]["ii_exact"] == {"best": None, "worst": None}


def test_cocotb_exits_exact_in_outputs_cycles_and_counters(design):
    """Registers (EXITS), every output and tapped layer (random idle and backpressure), the
    per-exit counters and their clear, and every cycle stamp at full rate."""
    net, out, images, ref, root = design
    spec = TestbenchSpec(images, ref.golden.classes, ref.golden.scores, PPB,
                         registers=ref.registers, pred_accept=ref.accept, pred_output=ref.output,
                         idle_prob=0.3, stall_prob=0.4, seed=7,
                         layer_outputs=layer_outputs_seen(net, ref.golden),
                         exit_counts=exit_counts(net, ref.golden.exits))
    tests = ("test_registers", "test_images", "test_cycles")
    result = run_testbench(out, spec, tests=tests, run_dir=root / "run_cocotb")
    assert result.tests == len(tests) and result.ok, result.failure_summary()
    assert result.report["test_images"]["exit_counts"] == exit_counts(net, ref.golden.exits)
    layers = list(range(len(net.layers)))
    assert result.report["test_images"]["layers_checked"] == layers
    assert result.report["test_cycles"]["layers_checked"] == layers
    assert result.report["test_cycles"]["output"] == (ref.output - ref.accept[0]).tolist()


def test_batch_exits_exact_with_and_without_traffic(design):
    net, out, images, ref, _ = design
    built = build_batch(out)
    want = exit_counts(net, ref.golden.exits)
    res = run_batch(built, images)
    assert compare_outputs(res.classes, res.scores, ref.golden)[0] == 0
    assert compare_timing(res.first_in, res.first_out, ref) == []
    assert res.reg_exit_taken == want and res.reg_images_done == len(images)
    busy = run_batch(built, images, stall_percent=50, idle_percent=30, seed=3)
    assert compare_outputs(busy.classes, busy.scores, ref.golden)[0] == 0
    assert busy.reg_exit_taken == want and busy.framing_errors == 0


def test_sim_run_exit_network(tmp_path):
    """``python -m sim.run`` on an MNIST-shaped exit network (the exit margin puts about half
    the images on each path): PASS, cycle stamps included, and the per-exit counts."""
    import sim.run as simrun
    from sw.datasets import load_images

    net = random_network(image=(1, 28, 28), levels=1, shape=(16, 12, 10),
                         folding=[(4, 56), (4, 4), (5, 6)], exits=((0, 0),), seed=43)
    images, _ = load_images("test", (1, 28, 28), None)
    margins = exit_margins(GoldenModel(net).run(images[:200]).exit_scores[0])
    net = replace(net, exits=[replace(net.exits[0], margin=int(np.median(margins)) + 1)])
    write_compiled_network(net, tmp_path / "net")
    summary = tmp_path / "summary.json"
    status = simrun.main(["--net", str(tmp_path / "net"), "--images", "200",
                          "--json", str(summary)])
    s = json.loads(summary.read_text())
    assert status == 0 and s["mismatches"] == 0, s
    assert s["timing"]["disagreements"] == []
    [ex] = s["exits"]
    assert ex["images"] == ex["measured"] and 0 < ex["images"] < 200


def test_compare_reports_the_exits(tmp_path):
    """sw.compare on the shipped tfc_exits: images per exit on the target (golden here) equal
    the golden model's, and PyTorch's last layer is compared with the golden model without
    exits, so an exit network can AGREE."""
    import subprocess
    import sys

    from sim.build import REPO_ROOT
    from sw.compare import main as compare_main

    ckpt = REPO_ROOT / "models" / "checkpoints" / "tfc_exits.pt"
    proc = subprocess.run([sys.executable, "-m", "models.export", str(ckpt),
                           str(tmp_path / "net"), "--check", "20"], cwd=REPO_ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert compare_main(["--net", str(tmp_path / "net"), "--target", "golden", "--images", "100",
                         "--json", str(tmp_path / "r.json")]) == 0
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["agree"] and r["exits"]["target"] == r["exits"]["golden"]
    assert sum(r["exits"]["golden"]) > 0
    assert r["pytorch"]["compared_with"] == "golden model without exits"
