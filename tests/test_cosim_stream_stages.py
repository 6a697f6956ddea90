"""The streaming stages (window, padding, max pool) each on its own, on their emitted Verilog:
cocotb (sim/tb_stream_stages.py) with Verilator, every beat vs numpy, every cycle's handshake vs
the stage's timing model, nothing lost or duplicated.

Each case emits one stage (:func:`sim.tb_stream_stages.write_stage_design`), builds it with
:func:`sim.build.build_cocotb` (cached by the Verilog's hash under this module's temporary
directory, or under ``$FRACBNN_SIM_BUILD`` when that is set) and runs the cocotb test there.
"""

from __future__ import annotations

import json
import os

import pytest

from sim import build as simbuild
from sim.tb_stream_stages import CONFIG_ENV, write_stage_design

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

IDLE, STALL = 0.3, 0.5

#: name: (kind, elem, geometry, images, idle, stall).  One Verilator build each.
CASES = {
    "window-bit-k3s1-c3s1-5x6": ("window", "bit", dict(channels=3, height=5, width=6, kernel=3,
                                                       stride=1, simd=1), 3, 0.0, 0.0),
    "window-pair-k2s2-c4s2-7x7": ("window", "pair", dict(channels=4, height=7, width=7,
                                                         kernel=2, stride=2, simd=2), 2,
                                  IDLE, STALL),
    "padding-bit-c6n3-5x5-p1": ("padding", "bit", dict(channels=6, height=5, width=5, pad=1,
                                                       elems_per_beat=3), 3, IDLE, STALL),
    "padding-pair-c2n2-4x6-p2": ("padding", "pair", dict(channels=2, height=4, width=6, pad=2,
                                                         elems_per_beat=2), 3, IDLE, STALL),
    "maxpool-bit-c4n2-6x7-k2": ("maxpool", "bit", dict(channels=4, height=6, width=7,
                                                       elems_per_beat=2, kernel=2, stride=2),
                                3, IDLE, STALL),
    "maxpool-pair-c3n3-5x5-k2": ("maxpool", "pair", dict(channels=3, height=5, width=5,
                                                         elems_per_beat=3, kernel=2, stride=2),
                                 3, IDLE, STALL),
}


@pytest.fixture(scope="module")
def build_root(tmp_path_factory):
    """Where the models are built: the project's cache when ``$FRACBNN_SIM_BUILD`` is set,
    else a fresh directory (every run builds from scratch)."""
    if os.environ.get("FRACBNN_SIM_BUILD"):
        return None
    return tmp_path_factory.mktemp("stage_builds")


def run_case(name, tmp_path, build_root, **overrides) -> tuple[int, int, dict]:
    """Emit, build and simulate case ``name``; return (tests, failed, report)."""
    kind, elem, geometry, images, idle, stall = CASES[name]
    design = write_stage_design(kind, elem, geometry, tmp_path / "design")
    built = simbuild.build_cocotb(design, build_root=build_root)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    report = run_dir / "tb_report.json"
    cfg = {"kind": kind, "elem": elem, "geometry": geometry, "images": images,
           "seed": sum(map(ord, name)), "idle_prob": idle, "stall_prob": stall,
           "drain_cycles": 50, "report": str(report.resolve()), **overrides}
    cfg_path = run_dir / "tb_config.json"
    cfg_path.write_text(json.dumps(cfg, indent=1))
    tests, failed, _ = simbuild.run_cocotb(built, run_dir, test_module="sim.tb_stream_stages",
                                           seed=cfg["seed"],
                                           extra_env={CONFIG_ENV: str(cfg_path.resolve())})
    facts = json.loads(report.read_text()) if report.exists() else {}
    return tests, failed, facts


@pytest.mark.parametrize("name", list(CASES))
def test_stage_cosim(name, tmp_path, build_root):
    tests, failed, facts = run_case(name, tmp_path, build_root)
    where = f"see {tmp_path / 'run' / 'sim.log'}"
    assert tests == 1 and failed == 0, f"{facts.get('errors', 'no report')}; {where}"
    assert facts["errors"] == [] and facts["mismatch_count"] == 0
    assert facts["timing_error_count"] == 0
    assert facts["input_beats"] == facts["expected_input_beats"] > 0
    assert facts["output_beats"] == facts["received"] == facts["expected_output_beats"] > 0
    # The drain window really was watched after the last output beat.
    assert facts["cycles"] - 1 - facts["last_output_cycle"] >= 50
    _, _, _, _, idle, stall = CASES[name]
    # The random traffic really happened (and none where there is none).
    assert (facts["output_stall_cycles"] > 0) == (stall > 0)
    assert (facts["input_idle_cycles"] > 0) == (idle > 0)


def test_stage_cosim_can_fail(tmp_path, build_root):
    """The same testbench with a wrong reference beat and a timing model that misses one input
    transfer fails and says both (the design and its build are those of a case above)."""
    inject = {"flip_expected_beat": 5, "model_drop_in_fire": 40}
    tests, failed, facts = run_case("padding-bit-c6n3-5x5-p1", tmp_path, build_root,
                                    inject=inject)
    assert (tests, failed) == (1, 1)
    assert facts["mismatch_count"] == 1 and facts["mismatches"][0]["beat"] == 5
    assert facts["timing_error_count"] > 0
    assert len(facts["errors"]) == 2
    assert facts["errors"][0].startswith("1 wrong output beats; first: beat 5 (image 0")
    assert "handshake differences from the timing model" in facts["errors"][1]
