"""`python -m hw.generate`: outputs, design.json, refolding, and one-line user errors."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hw.cycle_model import simulate_pipeline, steady_state_ii
from hw.mvtu_timing import engine_timing
from sw.compiled_net import fold_config_from_json, refold
from sw.network_io import load_compiled_network
from tests.netfactory import random_compiled_network, random_images
from tests.test_hw_accelerator import check_exact, simulate

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

REPO = Path(__file__).resolve().parents[1]
NET = dict(image=(1, 4, 4), levels=1, shape=[12, 8, 5], outs=["frac2", "sign"],
           folding=[(4, 16), (2, 4), (5, 8)], seed=21)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "hw.generate", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return random_compiled_network(tmp_path_factory.mktemp("gen") / "net", **NET)


def test_generate_outputs(export, tmp_path):
    out = tmp_path / "design"
    res = run_cli(export, out, "--pixels-per-beat", 4)
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "design.json").read_text())
    for name in summary["files"]:
        assert (out / name).is_file(), name
    # The .mem files are the export's (same folding), byte for byte.
    for mem in sorted(export.glob("*.mem")):
        assert (out / mem.name).read_bytes() == mem.read_bytes()
    # Every ROM instance names an INIT_FILE that is present.
    top = (out / "fracbnn_top.v").read_text()
    assert re.search(r"^module fracbnn_top\(", top, re.M)
    inits = set(re.findall(r'\.INIT_FILE\("([^"]+)"\)', top))
    assert inits == {m.name for m in export.glob("*.mem")}
    ports = summary["ports"]
    assert ports["s_axis_tdata"] == {"direction": "in", "width": 32}
    assert ports["m_axis_tdata"] == {"direction": "out", "width": 32}
    assert ports["s_axil_araddr"]["width"] == 8 and ports["clk"]["direction"] == "in"
    net = load_compiled_network(export)
    assert [l["neuron_folds"] for l in summary["layers"]] == [l.neuron_folds for l in net.layers]
    l1 = summary["layers"][1]
    sf, nf = l1["synapse_folds"], l1["neuron_folds"]
    timing = engine_timing(net.layers[1])
    # every gate open: both passes of every fold (+ the lane schedule's wait for the gates)
    assert l1["cycles_per_vector"]["max"] == 2 * sf * nf + (
        timing["gate_delay"] if timing["lane"] else 0)
    model = summary["cycle_model"]
    assert model["ii"]["worst"] == steady_state_ii(net, 4, worst=True)
    assert model["latency"]["worst"] == simulate_pipeline(net, 1, pixels_per_beat=4,
                                                          gates="open").latency[0]
    assert model["latency"]["best"] <= model["latency"]["worst"]
    assert "II" in res.stdout


def test_refold_is_exact(export, tmp_path):
    """--fold re-lays out the memories; the refolded hardware still matches the golden model."""
    fold = {"layers": [{"pe": 2, "simd": 8}, {"pe": 4, "simd": 12},
                       {"pe": 2, "simd": 4, "pad": True}]}
    fold_file = tmp_path / "fold.json"
    fold_file.write_text(json.dumps(fold))
    out = tmp_path / "design"
    res = run_cli(export, out, "--fold", fold_file, "--pixels-per-beat", 8)
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "design.json").read_text())
    assert [(l["pe"], l["simd"]) for l in summary["layers"]] == [(2, 8), (4, 12), (2, 4)]
    assert summary["layers"][2]["mh_padded"] == 6
    net = load_compiled_network(export)
    net = refold(net, fold_config_from_json(fold, len(net.layers)))
    images = random_images(net, 3, seed=2)
    check_exact(net, simulate(net, out, 8, images), images)


def test_replaces_previous_output(export, tmp_path):
    out = tmp_path / "design"
    assert run_cli(export, out, "--pixels-per-beat", 4).returncode == 0
    (out / "stale.txt").write_text("old")
    assert run_cli(export, out, "--pixels-per-beat", 8).returncode == 0
    assert not (out / "stale.txt").exists()
    assert json.loads((out / "design.json").read_text())["pixels_per_beat"] == 8
    assert [p.name for p in tmp_path.iterdir()] == ["design"]  # no temporaries left


@pytest.mark.parametrize("case,pattern", [
    ("bad_fold", r"layer 1.*PE 3 does not divide MH 8"),
    ("bad_ppb", r"not a multiple of 3 pixels per beat"),
    ("missing", r"not found"),
    ("not_design", r"not a generated design"),
    ("fold_json", r"not valid JSON"),
])
def test_user_errors(export, tmp_path, case, pattern):
    out = tmp_path / "design"
    args = [export, out]
    if case == "bad_fold":
        f = tmp_path / "fold.json"
        f.write_text(json.dumps({"layers": [{"pe": 4, "simd": 16}, {"pe": 3, "simd": 4},
                                            {"pe": 5, "simd": 8}]}))
        args += ["--fold", f]
    elif case == "bad_ppb":
        args += ["--pixels-per-beat", 3]
    elif case == "missing":
        args = [tmp_path / "nope", out]
    elif case == "not_design":
        out.mkdir()
        (out / "precious.txt").write_text("keep")
    elif case == "fold_json":
        f = tmp_path / "fold.json"
        f.write_text("{")
        args += ["--fold", f]
    res = run_cli(*args)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert re.search(pattern, lines[0]), lines[0]
    if case == "not_design":
        assert (out / "precious.txt").read_text() == "keep"
    else:
        assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
