"""The generated Verilog is lint-clean under `verilator --lint-only -Wall` with the waiver."""

import subprocess

import pytest

from hw.generate import TOP_NAME, generate
from sim.toolchain import verilator_env
from tests.netfactory import random_compiled_network

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

DESIGNS = {
    "w1a1": (dict(image=(1, 3, 4), levels=1, shape=[6, 5], folding=[(2, 3), (2, 3, True)],
                  seed=2), 4),
    "frac": (dict(image=(1, 4, 4), levels=2, shape=[12, 8, 5], outs=["frac2", "sign"],
                  folding=[(4, 16, True), (2, 1), (1, 8, False)], seed=3), 8),
}


def lint(outdir, *files):
    cmd = ["verilator", "--lint-only", "-Wall", "--top-module", TOP_NAME, *files]
    return subprocess.run(cmd, cwd=outdir, env=verilator_env(), capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("name", list(DESIGNS))
def test_lint_clean(tmp_path, name):
    kwargs, ppb = DESIGNS[name]
    net_dir = random_compiled_network(tmp_path / "net", **kwargs)
    out = generate(net_dir, tmp_path / "design", pixels_per_beat=ppb)
    result = lint(out, "verilator_waiver.vlt", f"{TOP_NAME}.v", "fracbnn_rom.v")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "%Warning" not in result.stderr and "%Error" not in result.stderr


def test_lint_catches_problems_without_waiver(tmp_path):
    """The waiver is what silences Amaranth's width casts: without it -Wall complains."""
    kwargs, ppb = DESIGNS["w1a1"]
    net_dir = random_compiled_network(tmp_path / "net", **kwargs)
    out = generate(net_dir, tmp_path / "design", pixels_per_beat=ppb)
    result = lint(out, f"{TOP_NAME}.v", "fracbnn_rom.v")
    assert result.returncode != 0
    assert "%Warning-WIDTH" in result.stderr


def test_rom_is_clean_without_waiver(tmp_path):
    """The hand-written ROM needs no waiver at all."""
    kwargs, ppb = DESIGNS["w1a1"]
    net_dir = random_compiled_network(tmp_path / "net", **kwargs)
    out = generate(net_dir, tmp_path / "design", pixels_per_beat=ppb)
    cmd = ["verilator", "--lint-only", "-Wall", "--top-module", "fracbnn_rom", "fracbnn_rom.v"]
    result = subprocess.run(cmd, cwd=out, env=verilator_env(), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
