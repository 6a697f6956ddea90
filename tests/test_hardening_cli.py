"""Hardening of the command lines and the runtime API: every bad request is one line, early.

Relative paths and paths with spaces, ``--pixels-per-beat``, clocks (NaN, infinities, ranges),
unwritable outputs, final paths in ``hw.build``'s report, designs that do not match the
request, image dtypes, Ctrl-C during generation and temporaries left by killed processes.
Each command runs in this process through :func:`sw.errors.cli_main` (as ``python -m`` does),
so the exit status and the exact stderr are checked.  One test runs the cocotb engine for real
(small network, about half a minute).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sw.errors import UserError, cli_main
from tests.netfactory import random_compiled_network

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

REPO = Path(__file__).resolve().parents[1]
#: Valid pixels per beat of a 784-pixel image (the divisors up to 255).
PPB_784 = "choose one of 1, 2, 4, 7, 8, 14, 16, 28, 49, 56, 98, 112, 196"
NET784 = dict(image=(1, 28, 28), levels=1, shape=[8, 4], folding=[(4, 16), (4, 8)], seed=3)


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    root = tmp_path_factory.mktemp("hardening")
    return {
        "784": random_compiled_network(root / "net784", **NET784),
        "other": random_compiled_network(root / "other", **NET784, name="other_net"),
        "16": random_compiled_network(root / "net16", image=(1, 4, 4), levels=1, shape=[12, 5],
                                      folding=[(4, 16), (5, 4)], seed=21),
    }


def _main(command: str):
    import importlib
    return importlib.import_module(command).main


def run_cli(command: str, argv, capsys) -> tuple[int, str, str]:
    """Run ``python -m command argv`` in this process; return (status, stdout, stderr)."""
    with pytest.raises(SystemExit) as exc:
        cli_main(lambda: _main(command)([str(a) for a in argv]))
    captured = capsys.readouterr()
    return exc.value.code, captured.out, captured.err


def one_line_error(status: int, err: str, *parts: str) -> str:
    """Assert exit status 2 and a single ``error:`` line containing ``parts``; return it."""
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


def leftovers(directory: Path) -> list[str]:
    """Hidden temporaries (``.NAME.tmp-*``, ``.NAME.old-*``) in ``directory``."""
    return sorted(p.name for p in Path(directory).iterdir()
                  if p.name.startswith(".") and (".tmp-" in p.name or ".old-" in p.name))


# ------------------------------------------------------------------ 1. relative paths, spaces


def test_relative_paths_become_absolute_early(nets, tmp_path, monkeypatch):
    from sim.run import parse_args as run_args
    from sw.compare import parse_args as compare_args

    monkeypatch.chdir(tmp_path)
    args = run_args(["--net", "n", "--fold", "f.json", "--json", "r/out.json", "--design-dir",
                     "my design", "--build-root", "b/sim", "--data", "d"])
    for name, rel in (("net", "n"), ("fold", "f.json"), ("json", "r/out.json"),
                      ("design_dir", "my design"), ("build_root", "b/sim"), ("mnist_root", "d")):
        assert getattr(args, name) == tmp_path / rel, name
    args = compare_args(["--target", "sim", "--net", "n", "--design-dir", "d", "--build-root",
                         "b", "--json", "c.json", "--fold", "f.json"])
    for name, rel in (("net", "n"), ("design_dir", "d"), ("build_root", "b"),
                      ("json", "c.json"), ("fold", "f.json")):
        assert getattr(args, name) == tmp_path / rel, name
    assert not [p for p in tmp_path.iterdir()]      # checking created nothing


def test_simulator_paths_are_absolute(nets, tmp_path, monkeypatch):
    """The compilers and simulators run in other directories: a relative build root or
    design directory (the FileNotFoundError / Verilator "Cannot find file" of relative
    paths) is resolved by sim.build itself, for every caller."""
    from hw.generate import generate
    from sim import build as simbuild

    monkeypatch.chdir(tmp_path)
    generate(nets["16"], "design", pixels_per_beat=8)
    sources = simbuild.design_sources("design")
    assert all(p.is_absolute() and p.is_file()
               for p in (*sources.verilog, *sources.control, *sources.memories))
    assert simbuild.build_dir_for("ab" * 32, "batch", "cache/sim") == \
        tmp_path / "cache" / "sim" / f"batch-{'ab' * 8}"
    run_dir = simbuild.stage_memories(sources, "run")
    assert run_dir == tmp_path / "run" and (run_dir / "L0_weights.mem").is_file()


def test_runtime_resolves_its_paths(nets, tmp_path, monkeypatch):
    """``Accelerator("sim", build_root="build/sim")`` with relative paths: what reaches the
    simulator build is absolute (the build itself is replaced by a probe here)."""
    import shutil

    from sim import batch
    from sw.runtime import Accelerator

    seen = {}

    def probe(design_dir, **kw):
        seen.update(kw, design_dir=design_dir)
        raise RuntimeError("probe")

    monkeypatch.setattr(batch, "build_batch", probe)
    shutil.copytree(nets["16"], tmp_path / "net")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RuntimeError, match="probe"):
        Accelerator("sim", net="net", design_dir="design", build_root="build/sim")
    assert seen["design_dir"] == tmp_path / "design" and (tmp_path / "design" / "design.json").is_file()
    assert seen["build_root"] == tmp_path / "build" / "sim"


@pytest.mark.parametrize("command,argv", [
    ("sim.run", ["--build-root", "{tmp}/with space/sim"]),
    ("sw.compare", ["--target", "sim", "--build-root", "{tmp}/with space/sim"]),
])
def test_build_root_with_a_space_is_refused_up_front(nets, tmp_path, capsys, command, argv):
    argv = ["--net", nets["784"], "--images", "2"] + [a.format(tmp=tmp_path) for a in argv]
    status, out, err = run_cli(command, argv, capsys)
    one_line_error(status, err, f"'{tmp_path}/with space/sim' contains a space",
                   "without spaces")
    assert not list(tmp_path.iterdir())


def test_runtime_refuses_a_build_root_with_a_space(nets, tmp_path):
    from sw.runtime import Accelerator

    with pytest.raises(UserError, match="contains a space"):
        Accelerator("sim", net=nets["16"], build_root=tmp_path / "a b")
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------ 2. pixels per beat


@pytest.mark.parametrize("ppb", [392, 784, 3, 0])
@pytest.mark.parametrize("command,extra", [
    ("sim.run", ["--images", "2"]),
    ("sw.compare", ["--target", "sim", "--images", "2", "--no-pytorch"]),
    ("hw.generate", []),
    ("hw.build", ["--board", "ulx3s", "--quiet"]),
    ("hw.fold", ["--target-fps", "1e5", "--clock", "100"]),
    ("hw.sweep", ["--points", "2", "--clock", "100"]),
])
def test_pixels_per_beat_lists_the_valid_choices(nets, tmp_path, capsys, command, extra, ppb):
    out = tmp_path / "out"
    if command == "hw.generate":
        argv = [nets["784"], out]
    elif command == "hw.fold":
        argv = [nets["784"], "--out", out]
    elif command == "hw.sweep":
        argv = [nets["784"], "--out", out]
    elif command == "hw.build":
        argv = ["--net", nets["784"], "--out", out]
    else:
        argv = ["--net", nets["784"], "--design-dir", out]
    status, _, err = run_cli(command, argv + extra + ["--pixels-per-beat", ppb], capsys)
    line = one_line_error(status, err, "--pixels-per-beat", str(ppb), PPB_784)
    if ppb > 255:
        assert "at most 255 pixels per beat" in line
    elif ppb == 3:
        assert "not a multiple of 3 pixels per beat" in line
    assert not out.exists() and not leftovers(tmp_path)


@pytest.mark.parametrize("ppb,reason", [(392, "power of two"), (7, "power of two"),
                                        (3, "not a multiple of 3")])
def test_zynq_build_pixels_per_beat_fit_the_dma(nets, tmp_path, capsys, ppb, reason):
    out = tmp_path / "out"
    status, _, err = run_cli("hw.build", ["--board", "ultra96", "--net", nets["784"], "--out", out,
                                          "--quiet", "--pixels-per-beat", ppb], capsys)
    one_line_error(status, err, f"--pixels-per-beat {ppb}", reason, "choose one of 1, 2, 4, 8, 16")
    assert not out.exists() and not leftovers(tmp_path)


def test_runtime_pixels_per_beat(nets):
    from sw.runtime import Accelerator

    with pytest.raises(UserError, match=f"pixels_per_beat 392 does not suit.*{PPB_784}"):
        Accelerator("sim", net=nets["784"], pixels_per_beat=392)


# ------------------------------------------------------------------ 3. cocotb + --stall-percent


def test_cocotb_engine_honours_stall_percent(nets, tmp_path, capsys, monkeypatch):
    """A real (small) cocotb run with 30 % output backpressure: the testbench's random-stall
    test runs with that probability, outputs are exact and the report completes (it crashed
    with a TypeError).  Relative --build-root / --design-dir (with a space) / --json too."""
    monkeypatch.chdir(tmp_path)
    status, out, err = run_cli("sim.run", ["--net", nets["784"], "--engine", "cocotb",
                                           "--stall-percent", "30", "--images", "4",
                                           "--build-root", "cache/sim", "--design-dir",
                                           "my design", "--json", "reports/run.json"], capsys)
    assert status == 0, out + err
    assert "PASS: every output bit-exact" in out and "with 30 % output backpressure" in err
    report = json.loads((tmp_path / "reports" / "run.json").read_text())
    assert report["engine"] == "cocotb" and report["mismatches"] == 0 and report["timing"] is None
    run_dir = Path(report["run_dir"])
    config = json.loads((run_dir / "tb_config.json").read_text())
    assert config["stall_prob"] == 0.3 and config["idle_prob"] == 0.0
    findings = json.loads((run_dir / "tb_report.json").read_text())
    assert findings["test_images"]["images"] == 4 and findings["test_images"]["mismatch_count"] == 0
    assert report["sim_speed"]["cycles"] == findings["test_images"]["cycles"] > 0
    assert (tmp_path / "my design" / "design.json").is_file()
    assert [p.name for p in (tmp_path / "cache" / "sim").iterdir() if p.is_dir()]


def test_testbench_probabilities_are_checked():
    from sim.cosim import TestbenchSpec

    images = np.zeros((1, 16), np.uint8)
    for bad in (float("nan"), 1.0, -0.1):
        with pytest.raises(ValueError, match="stall_prob must be a probability"):
            TestbenchSpec(images, [0], [[0]], 8, stall_prob=bad)


# ------------------------------------------------------------------ 4. non-finite numbers


@pytest.mark.parametrize("clock", ["nan", "inf", "-inf", "0", "-5"])
@pytest.mark.parametrize("command,argv", [
    ("sim.run", ["--images", "2"]),
    ("sw.compare", ["--target", "sim", "--images", "2"]),
    ("hw.build", ["--board", "ultra96"]),
    ("sim.bench", []),
])
def test_clock_must_be_finite_and_positive(nets, tmp_path, capsys, command, argv, clock):
    if command != "sim.bench":
        argv = argv + ["--net", nets["784"]]
    if command == "hw.build":
        argv += ["--out", tmp_path / "out", "--quiet"]
    status, out, err = run_cli(command, argv + [f"--clock={clock}"], capsys)
    one_line_error(status, err, "--clock must be a positive number of MHz")
    assert not out and not list(tmp_path.iterdir())


def test_reports_never_hold_nan(tmp_path):
    from sw.atomic_dir import atomic_write_json

    path = atomic_write_json(tmp_path / "r.json", {"fps": float("nan"), "rate": [float("inf")],
                                                   "n": np.float32(2.5), "ok": True})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"fps": None, "rate": [None], "n": 2.5, "ok": True}


def test_resolve_clock_rejects_non_numbers():
    import boards

    for bad in ("100", True, [100]):
        with pytest.raises(UserError, match="clock_mhz must be a positive number of MHz"):
            boards.resolve_clock(None, bad, option="clock_mhz")
    assert boards.resolve_clock(None, np.float32(100.0))[0] == 100.0


# ------------------------------------------------------------------ 5. unwritable outputs


@pytest.mark.parametrize("command,argv,parts", [
    ("sim.run", ["--json", "/sys/fracbnn-report.json"], ["/sys/fracbnn-report.json", "not writable"]),
    ("sim.run", ["--json", "{tmp}"], ["{tmp} is a directory"]),
    ("sim.run", ["--json", "{file}/r.json"], ["{file} is not a directory"]),
    ("sim.run", ["--design-dir", "/sys/fracbnn-design"], ["/sys/fracbnn-design", "not writable"]),
    ("sim.run", ["--waves", "vcd", "--waves-file", "/sys/fracbnn.vcd"], ["/sys/fracbnn.vcd", "not writable"]),
    ("sim.run", ["--waves-file", "{tmp}/w.vcd"], ["--waves-file needs --waves vcd"]),
    ("sim.run", ["--design-dir", "{tmp}"], ["{tmp} exists and is not a generated design"]),
    ("sw.compare", ["--target", "sim", "--json", "{tmp}"], ["{tmp} is a directory"]),
    ("sw.compare", ["--target", "sim", "--design-dir", "{tmp}"],
     ["{tmp} exists and is not a generated design"]),
    ("sw.compare", ["--target", "sim", "--design-dir", "/sys/fracbnn-design"],
     ["/sys/fracbnn-design", "not writable"]),
    ("hw.generate", ["{net}", "/sys/fracbnn-design"], ["/sys/fracbnn-design", "not writable"]),
    ("hw.generate", ["{net}", "{file}/design"], ["{file} is a file, not a directory"]),
    ("hw.build", ["--board", "ulx3s", "--out", "/sys/fracbnn-build"],
     ["/sys/fracbnn-build", "not writable"]),
])
def test_unwritable_outputs_fail_before_the_work(nets, tmp_path, capsys, command, argv, parts):
    file = tmp_path / "plain.txt"
    file.write_text("x")
    fill = lambda s: str(s).format(tmp=tmp_path, file=file, net=nets["784"])  # noqa: E731
    argv = [fill(a) for a in argv]
    if command != "hw.generate":
        argv += ["--net", str(nets["784"])]
    if command in ("sim.run", "sw.compare"):
        argv += ["--images", "2"]
    status, out, err = run_cli(command, argv, capsys)
    one_line_error(status, err, *map(fill, parts))
    assert not out and "generating" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.txt"]


# ------------------------------------------------------------------ 6. final paths in reports


def test_final_paths_in_reports(tmp_path):
    from hw.build import _final_paths

    tmp, final = tmp_path / ".b.tmp-x", tmp_path / "b"
    got = _final_paths({"bit": str(tmp / "ecp5" / "ulx3s.bit"), "dir": str(tmp),
                        "note": f"see {tmp}/ecp5/nextpnr.log", "n": [1.5, str(tmp / "a")]},
                       tmp, final)
    assert got == {"bit": "ecp5/ulx3s.bit", "dir": ".", "note": f"see {final}/ecp5/nextpnr.log",
                   "n": [1.5, "a"]}


def test_ulx3s_report_names_the_final_bitstream(nets, tmp_path, capsys, monkeypatch):
    """hw.build's report.json names paths as they are after the build directory is renamed
    into place (the ECP5 tools are replaced by a stand-in that reports temporary paths, as
    hw.ecp5.ecp5_build does)."""
    import hw.ecp5 as ecp5

    def fake_rtl(net, images, *, mem_dir, out_dir, pixels_per_beat, pll, ram_style=None):
        (Path(out_dir) / "ulx3s_selftest.v").write_text("// stand-in\n")

    def fake_build(build_dir, board, *, clock_mhz, seed, allow_timing_fail, progress):
        build_dir = Path(build_dir).resolve()
        (build_dir / "ulx3s.bit").write_bytes(b"\xff" * 64)
        return {"cells": {}, "synth": {}, "lut_mapper": "abc9", "utilization": {},
                "fmax_mhz": 60.0, "clocks": {"clk": 60.0}, "clock_mhz": clock_mhz,
                "timing_met": True, "ebr_outreg": {}, "bitstream": str(build_dir / "ulx3s.bit"),
                "log": f"see {build_dir / 'nextpnr.log'}", "seconds": {}}

    monkeypatch.setattr(ecp5, "write_selftest_rtl", fake_rtl)
    monkeypatch.setattr(ecp5, "ecp5_build", fake_build)
    out = tmp_path / "ulx3s out"
    status, stdout, err = run_cli("hw.build", ["--board", "ulx3s", "--net", nets["784"], "--out",
                                               out, "--clock", "25", "--quiet",
                                               "--selftest-images", "2"], capsys)
    assert status == 0, err
    text = (out / "report.json").read_text()
    assert ".tmp-" not in text and "NaN" not in text
    report = json.loads(text)
    assert report["ecp5"]["bitstream"] == "ecp5/ulx3s.bit" and (out / "ecp5" / "ulx3s.bit").is_file()
    assert report["ecp5"]["log"] == f"see {out / 'ecp5' / 'nextpnr.log'}"
    assert f"openFPGALoader -b ulx3s '{out / 'ulx3s.bit'}'" in stdout
    assert not leftovers(tmp_path)


# ------------------------------------------------------------------ 7. design vs request


@pytest.fixture(scope="module")
def designs(nets, tmp_path_factory):
    from hw.generate import generate

    root = tmp_path_factory.mktemp("designs")
    return {"ppb4": generate(nets["784"], root / "ppb4", pixels_per_beat=4),
            "net16": generate(nets["16"], root / "net16", pixels_per_beat=8),
            "other": generate(nets["other"], root / "other", pixels_per_beat=8),
            "fold": generate(nets["784"], root / "fold", pixels_per_beat=8,
                             fold={"layers": [{"pe": 2, "simd": 16}, {"pe": 4, "simd": 8}]}),
            "mem": _retrained(generate(nets["784"], root / "mem", pixels_per_beat=8))}


def _retrained(design: Path) -> Path:
    """The design with other weights in one ROM (as for a retrained export of the same net)."""
    mem = design / "L1_weights.mem"
    lines = mem.read_text().splitlines()
    first = lines[0]
    lines[0] = first[:-1] + ("0" if first[-1] != "0" else "1")
    mem.write_text("\n".join(lines) + "\n")
    return design


@pytest.mark.parametrize("design,parts", [
    ("ppb4", ["generated with 4 pixels per beat, not the requested 8", "--pixels-per-beat 4"]),
    ("net16", ["names another network: its layers are 16x12 -> 12x5, random_net's 784x8 -> 8x4"]),
    ("other", ["names another network ('other_net', not 'random_net')"]),
    ("fold", ["has another folding: layer 0 PE/SIMD 2/16, requested 4/16"]),
    ("mem", ["names another export of random_net: its L1_weights.mem differs"]),
])
def test_compare_checks_the_design_against_the_request(nets, designs, capsys, design, parts):
    status, out, err = run_cli("sw.compare", ["--target", "sim", "--net", nets["784"],
                                              "--design-dir", designs[design], "--images", "5",
                                              "--no-pytorch"], capsys)
    one_line_error(status, err, f"the design in {designs[design]}", *parts)
    assert not out


def test_runtime_checks_the_design_against_the_request(nets, designs):
    from sw.runtime import Accelerator

    with pytest.raises(UserError, match="generated with 4 pixels per beat, not the requested 8"):
        Accelerator("sim", net=nets["784"], design_dir=designs["ppb4"])


# ------------------------------------------------------------------ 8. API types and bounds


@pytest.mark.parametrize("clock", ["100", True, float("nan")])
def test_runtime_clock_must_be_a_number(nets, clock):
    from sw.runtime import Accelerator

    with pytest.raises(UserError, match="clock_mhz must be a positive number of MHz"):
        Accelerator("sim", net=nets["16"], clock_mhz=clock)


@pytest.mark.parametrize("argv,parts", [
    (["--board", "pynq_z2", "--clock", "0.001"], ["--clock must be in [10, 250] MHz", "not 0.001"]),
    (["--board", "ultra96", "--clock", "5"], ["--clock must be in [10, "]),
    (["--board", "ulx3s", "--clock", "1"], ["--clock must be in [3.125, 400] MHz"]),
    (["--board", "ulx3s", "--selftest-images", "100000"],
     ["--selftest-images must be in 1..1000, not 100000"]),
    (["--board", "ulx3s", "--selftest-images", "900"],
     ["--selftest-images 900 does not fit the LFE5U-85F-6BG381C", "choose at most 596"]),
])
def test_build_bounds(nets, tmp_path, capsys, argv, parts):
    out = tmp_path / "out"
    status, _, err = run_cli("hw.build", argv + ["--net", nets["784"], "--out", out, "--quiet"],
                             capsys)
    one_line_error(status, err, *parts)
    assert not out.exists() and not leftovers(tmp_path)


# ------------------------------------------------------------------ 9. image dtypes


@pytest.mark.parametrize("images,parts", [
    (np.full((1, 16), 3.0, np.float32), ["not float32", "astype(np.uint8)"]),
    (np.ones((1, 16), bool), ["not bool"]),
    (np.full((1, 16), 300, np.int64), ["int64 values span 300..300, outside 0..255"]),
])
def test_image_dtype_errors_say_what_is_wrong(images, parts):
    from sw.runtime import pack_images

    with pytest.raises(UserError) as exc:
        pack_images(images, 8)
    for part in parts:
        assert part in str(exc.value)
    if images.dtype != np.int64:
        assert "outside" not in str(exc.value)
    assert pack_images(np.full((1, 16), 3, np.int16), 8).dtype == np.uint8


# ------------------------------------------------------------------ 10. Ctrl-C, stale temporaries


_INTERRUPT = """
import sys
import hw.mvtu
calls = []
elaborate = hw.mvtu.MatrixVectorThresholdUnit.elaborate
def interrupted(self, platform):          # Ctrl-C in the middle of the elaboration
    calls.append(1)
    if len(calls) == 2:
        raise KeyboardInterrupt
    return elaborate(self, platform)
hw.mvtu.MatrixVectorThresholdUnit.elaborate = interrupted
from hw.generate import main
from sw.errors import cli_main
cli_main(lambda: main(sys.argv[1:]))
"""


def test_ctrl_c_in_generate_is_one_line(tmp_path):
    net = random_compiled_network(tmp_path / "net", image=(1, 4, 4), levels=1, shape=[12, 8, 5],
                                  outs=["frac2", "sign"], folding=[(4, 16), (2, 4), (5, 8)],
                                  seed=21)
    proc = subprocess.run([sys.executable, "-c", _INTERRUPT, str(net), str(tmp_path / "design")],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 130
    assert proc.stderr == "error: interrupted\n"      # no UnusedElaboratable flood
    assert not (tmp_path / "design").exists() and not leftovers(tmp_path)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporaries_of_killed_runs_are_removed(nets, tmp_path):
    from hw.generate import generate
    from sw.atomic_dir import _host_tag

    host, dead = _host_tag(), _dead_pid()
    stale = [tmp_path / f".design.tmp-{host}.{dead}-abc123_x", tmp_path / f".design.old-{host}.{dead}-q1"]
    live = tmp_path / f".design.tmp-{host}.{os.getpid()}-live1"      # a run still going
    foreign = tmp_path / f".design.tmp-otherhost.{dead}-zz9"           # another machine's
    other = tmp_path / f".other.tmp-{host}.{dead}-abc"                 # another destination
    for d in (*stale, live, foreign, other):
        d.mkdir()
        (d / "fracbnn_top.v").write_text("partial")
    (stale[1] / "design.json").write_text("{}")   # a backup is a complete previous output
    generate(nets["16"], tmp_path / "design", pixels_per_beat=8)
    assert json.loads((tmp_path / "design" / "design.json").read_text())["network"] == "random_net"
    assert not any(d.exists() for d in stale)
    assert live.exists() and foreign.exists() and other.exists()


def test_a_backup_whose_replacement_was_killed_is_put_back(tmp_path):
    from sw.atomic_dir import _host_tag, remove_stale_temporaries

    backup = tmp_path / f".net.old-{_host_tag()}.{_dead_pid()}-k1"
    backup.mkdir()
    (backup / "network.json").write_text("{}")
    remove_stale_temporaries(tmp_path / "net")
    assert (tmp_path / "net" / "network.json").read_text() == "{}" and not backup.exists()


# ------------------------------------------------------------------ output placement, disk full


def test_output_under_a_file_names_the_file(nets, tmp_path, capsys):
    (tmp_path / "plain").write_text("x")
    status, _, err = run_cli("hw.generate", [nets["16"], tmp_path / "plain" / "design"], capsys)
    one_line_error(status, err, "plain is a file, not a directory", "choose a path under a directory")


@pytest.mark.parametrize("where, parts", [
    ("inside", ("lies inside the input directory", "choose an output directory outside it")),
    ("same", ("holds the input", "choose another output directory")),
])
def test_output_must_stay_apart_from_the_input(tmp_path, capsys, where, parts):
    net = random_compiled_network(tmp_path / "net", image=(1, 4, 4), levels=1, shape=[12, 5],
                                  folding=[(4, 16), (5, 4)], seed=21)
    before = sorted(p.name for p in net.iterdir())
    out = net / "design" if where == "inside" else net
    status, _, err = run_cli("hw.generate", [net, out], capsys)
    one_line_error(status, err, *parts)
    assert sorted(p.name for p in net.iterdir()) == before


def test_export_refuses_an_output_holding_the_checkpoint(tmp_path, capsys):
    import shutil
    ckpt = tmp_path / "ckpts" / "tiny.pt"
    ckpt.parent.mkdir()
    shutil.copyfile(REPO / "models" / "checkpoints" / "tiny.pt", ckpt)
    status, _, err = run_cli("models.export", [ckpt, tmp_path / "ckpts"], capsys)
    one_line_error(status, err, "holds the input", "tiny.pt")
    assert ckpt.is_file()


def test_disk_full_is_one_line_and_leaves_nothing(nets, tmp_path, capsys, monkeypatch):
    import errno
    import shutil

    import hw.generate

    real = shutil.copyfile
    calls = []

    def full(src, dst, *args, **kwargs):
        calls.append(dst)
        if len(calls) == 2:            # the first memory file is written, the second is not
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(hw.generate.shutil, "copyfile", full)
    status, _, err = run_cli("hw.generate", [nets["16"], tmp_path / "design"], capsys)
    one_line_error(status, err, "no space left on the device writing", "free some space")
    assert len(calls) == 2
    assert not (tmp_path / "design").exists() and not leftovers(tmp_path)


def test_other_os_errors_stay_bugs():
    from sw.errors import os_error_message
    assert os_error_message(OSError(5, "Input/output error", "x")) is None
    assert os_error_message(PermissionError(13, "Permission denied", "/ro/x")) == (
        "permission denied writing /ro/x; choose a writable location "
        "(nothing was left half-written)")
