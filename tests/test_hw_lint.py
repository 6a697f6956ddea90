"""The generated Verilog is lint-clean under `verilator --lint-only -Wall` with a waiver of
Amaranth's width casts (WIDTHEXPAND/WIDTHTRUNC) only."""

import re
import subprocess

import pytest

from hw.generate import TOP_NAME, WAIVER_FILE, generate
from hw.netlist import move_inits_to_initial
from sim.toolchain import verilator_env
from tests.netfactory import random_compiled_network

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

#: The only rules hw/verilator_waiver.vlt may waive (Amaranth's implicit width casts).
WIDTH_RULES = {"WIDTHEXPAND", "WIDTHTRUNC"}

DESIGNS = {
    "w1a1": (dict(image=(1, 3, 4), levels=1, shape=[6, 5], folding=[(2, 3), (2, 3, True)],
                  seed=2), 4),
    "frac": (dict(image=(1, 4, 4), levels=2, shape=[12, 8, 5], outs=["frac2", "sign"],
                  folding=[(4, 16, True), (2, 1), (1, 8, False)], seed=3), 8),
    # Early exits: forks, exit engines (X* ROMs), decisions, hold buffers, FIFOs, merges, and
    # the exit counters of the register block.
    "exits": (dict(image=(1, 4, 4), levels=2, shape=(12, 10, 8, 4),
                   folding=[(4, 8), (2, 4), (4, 5), (2, 4)], exits=((0, 3), (1, 2)), seed=3), 8),
    # Convolutions (tests/test_hw_conv_accelerator.py): padding, window generators, max-pool
    # on bits and on 2-bit codes.
    "conv_sign": "sign",
    "conv_frac": "frac",
}


def _export(tmp_path, name):
    spec = DESIGNS[name]
    if isinstance(spec, str):
        from models.export import compile_model
        from models.layers import BinaryNet
        from sw.compiled_net import Folding, refold
        from sw.network_io import write_compiled_network
        from tests.test_conv import randomise
        from tests.test_hw_conv_accelerator import NETS as CONV_NETS

        kwargs, fold, ppb = CONV_NETS[spec]
        net = refold(compile_model(randomise(BinaryNet(**kwargs), seed=3), name),
                     [Folding(pe, simd) for pe, simd in fold])
        return write_compiled_network(net, tmp_path / "net"), ppb
    kwargs, ppb = spec
    return random_compiled_network(tmp_path / "net", **kwargs), ppb


def lint(outdir, *files):
    cmd = ["verilator", "--lint-only", "-Wall", "--top-module", TOP_NAME, *files]
    return subprocess.run(cmd, cwd=outdir, env=verilator_env(), capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("name", list(DESIGNS))
def test_lint_clean(tmp_path, name):
    net_dir, ppb = _export(tmp_path, name)
    out = generate(net_dir, tmp_path / "design", pixels_per_beat=ppb)
    result = lint(out, "verilator_waiver.vlt", f"{TOP_NAME}.v", "fracbnn_rom.v")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "%Warning" not in result.stderr and "%Error" not in result.stderr


@pytest.mark.parametrize("name", list(DESIGNS))
def test_without_waiver_only_width_warnings(tmp_path, name):
    """The waiver silences Amaranth's width casts and nothing else: without it -Wall reports
    WIDTHEXPAND/WIDTHTRUNC warnings only."""
    net_dir, ppb = _export(tmp_path, name)
    out = generate(net_dir, tmp_path / "design", pixels_per_beat=ppb)
    result = lint(out, f"{TOP_NAME}.v", "fracbnn_rom.v")
    assert result.returncode != 0
    rules = set(re.findall(r"^%Warning-(\w+):", result.stderr, re.M))
    assert rules and rules <= WIDTH_RULES, result.stderr[-4000:]


def test_waiver_names_only_width_rules():
    rules = re.findall(r"^lint_off -rule (\w+) -file \"\*fracbnn_top\.v\"$",
                       WAIVER_FILE.read_text(), re.M)
    assert set(rules) == WIDTH_RULES
    assert len(re.findall(r"^lint_off", WAIVER_FILE.read_text(), re.M)) == len(rules)


def test_move_inits_to_initial():
    text = ("  reg [3:0] count = 4'h0;\n  reg \\mvtu0.acc  = 1'h1;\n"
            "  reg signed [7:0] s = 8'sh00;\n  reg [2:0] mem [7:0];\n")
    assert move_inits_to_initial(text) == (
        "  reg [3:0] count;\n  initial count = 4'h0;\n"
        "  reg \\mvtu0.acc ;\n  initial \\mvtu0.acc = 1'h1;\n"
        "  reg signed [7:0] s;\n  initial s = 8'sh00;\n  reg [2:0] mem [7:0];\n")


def test_rom_is_clean_without_waiver(tmp_path):
    """The hand-written ROM needs no waiver at all."""
    kwargs, ppb = DESIGNS["w1a1"]
    net_dir = random_compiled_network(tmp_path / "net", **kwargs)
    out = generate(net_dir, tmp_path / "design", pixels_per_beat=ppb)
    cmd = ["verilator", "--lint-only", "-Wall", "--top-module", "fracbnn_rom", "fracbnn_rom.v"]
    result = subprocess.run(cmd, cwd=out, env=verilator_env(), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
