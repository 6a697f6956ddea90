"""The package installs (`pip install .`) and the flow runs from a directory outside the
repository: a network described only in a TOML file is trained, exported, checked against
PyTorch, co-simulated bit- and cycle-exactly and built, through the `fracbnn` console command."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

NET = """\
[network]
input_shape = [1, 28, 28]
thermometer_levels = 1
hidden = [32]
activation = "sign"

[recipe]
epochs = 1
lr = 0.01
batch_size = 100
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The package installed with pip (no dependencies: they are this interpreter's) into a
    target directory, away from the checkout."""
    target = tmp_path_factory.mktemp("site")
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
           str(REPO)]
    if importlib.util.find_spec("setuptools") is not None:
        cmd.insert(4, "--no-build-isolation")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=target)
    assert proc.returncode == 0, proc.stderr
    return target


def _env(site: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    env["FRACBNN_SIM_BUILD"] = str(site.parent / "sim-cache")
    return env


def test_package_data_is_installed(installed):
    for rel in ("models/nets/lfc_w1a1.toml", "models/checkpoints/lfc_w1a1.pt",
                "hw/verilog/fracbnn_rom.v", "hw/calibration/xcup.json",
                "hw/verilator_waiver.vlt", "sim/harness/batch_main.cpp", "sw/cli.py",
                "boards/ultra96v2.py"):
        assert (installed / rel).is_file(), rel
    assert (installed / "bin" / "fracbnn").is_file()


def test_flow_from_outside_the_repository(installed, tmp_path):
    work = tmp_path / "my project"
    work.mkdir()
    (work / "small.toml").write_text(NET)
    env = _env(installed)

    def fracbnn(*args, timeout=600):
        proc = subprocess.run([sys.executable, "-m", "sw.cli", *args], cwd=work, env=env,
                              capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, f"fracbnn {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    # The modules come from the installed copy, not the checkout.
    where = subprocess.run([sys.executable, "-c", "import models, sim; print(models.__file__)"],
                           cwd=work, env=env, capture_output=True, text=True).stdout
    assert where.startswith(str(installed)), where
    assert "saved" in fracbnn("train", "--net", "small.toml", "--limit", "3000", "--threads", "1")
    fracbnn("export", "small.pt", "export")
    assert "all layers identical" in fracbnn("golden", "export", "--checkpoint", "small.pt",
                                             "--images", "500")
    out = fracbnn("sim", "--net", "export", "--images", "100", "--waves", "vcd", "--shards", "1")
    assert "PASS: every output bit-exact and every cycle stamp" in out
    assert f"waveform  {work / 'batch.vcd'}" in out and (work / "batch.vcd").stat().st_size > 0
    out = fracbnn("build", "--board", "ultra96", "--net", "export", "--no-estimate")
    assert (work / "build" / "ultra96v2" / "create_project.tcl").is_file()
    assert f"wrote     {work / 'build' / 'ultra96v2'}" in out
    # Nothing was written into the installed package.
    assert not (installed / "build").exists() and not list(installed.glob("models/*.pt"))


def test_fracbnn_command_lists_and_refuses(installed, tmp_path):
    env = _env(installed)
    proc = subprocess.run([str(installed / "bin" / "fracbnn"), "--help"], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "train" in proc.stdout and "python -m sim.run" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "sw.cli", "trian"], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: unknown command 'trian'")
    assert proc.stderr.count("\n") == 1
