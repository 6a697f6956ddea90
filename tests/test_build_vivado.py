"""Zynq builds: the Vivado Tcl script and constraints, the Yosys estimate, the build command."""

import json
import re
import shutil
import subprocess
import textwrap

import pytest

import boards
from hw.build import _check_fit, main as build_main
from hw.logic_depth import proxy_clock_mhz
from hw.vivado import constraints_xdc, parse_vivado_summary, project_tcl
from hw.yosys_estimate import count_xilinx_cells
from sw.compiled_net import load_compiled_network
from sw.errors import UserError
from tests.netfactory import random_compiled_network

ZYNQ = ["ultra96v1", "ultra96v2", "zcu104", "pynq_z2"]


def _tcl(name, clock=150.0, ppb=8):
    return project_tcl(boards.get_board(name), clock_mhz=clock, stream_in_bits=8 * ppb,
                       rtl_files=["rtl/fracbnn_shell.v", "rtl/fracbnn_top.v", "rtl/fracbnn_rom.v"],
                       mem_files=["rtl/L0_weights.mem", "rtl/L0_thresholds.mem"])


@pytest.mark.parametrize("name", ZYNQ)
def test_tcl_has_the_parts_that_matter(name):
    board = boards.get_board(name)
    tcl = _tcl(name, clock=142.5)
    # Part and PS.
    assert f"-part {board.part} " in tcl
    assert f"create_bd_cell -type ip -vlnv xilinx.com:ip:{board.ps_ip} zynq_ps" in tcl
    for key, value in board.ps_config.items():
        assert f"CONFIG.{key} {{{value}}}" in tcl
    # PL clock at the requested frequency, driving the accelerator, DMA and PS ports.
    assert f"CONFIG.{board.pl_clock_property} {{142.5}}" in tcl
    if board.family == "zynq_us+":
        # The preset's clocks hold unless the override is cleared before the frequency is set.
        override = tcl.index("CONFIG.PSU__OVERRIDE__BASIC_CLOCK {0}")
        assert override < tcl.index(f"CONFIG.{board.pl_clock_property} {{142.5}}")
    clock_net = re.search(r"connect_bd_net \[get_bd_pins zynq_ps/" + board.pl_clock_pin +
                          r"\](.*?)\n(?!\s)", tcl, re.S).group(1)
    for pin in ("fracbnn_0/clk", "axi_dma_0/m_axi_mm2s_aclk", "axi_dma_0/m_axi_s2mm_aclk",
                f"zynq_ps/{board.gp_aclk_pin}", f"zynq_ps/{board.hp_aclk_pin}"):
        assert pin in clock_net
    assert "set_property CONFIG.POLARITY ACTIVE_HIGH [get_bd_pins fracbnn_0/rst]" in tcl
    # DMA: simple mode, 64-bit MM2S stream into the accelerator, results into S2MM.
    assert "xilinx.com:ip:axi_dma axi_dma_0" in tcl
    assert "CONFIG.c_include_sg {0}" in tcl and "CONFIG.c_m_axis_mm2s_tdata_width {64}" in tcl
    assert ("connect_bd_intf_net [get_bd_intf_pins axi_dma_0/M_AXIS_MM2S] "
            "[get_bd_intf_pins fracbnn_0/s_axis]") in tcl
    assert ("connect_bd_intf_net [get_bd_intf_pins fracbnn_0/m_axis] "
            "[get_bd_intf_pins axi_dma_0/S_AXIS_S2MM]") in tcl
    # Registers on the GP port, DMA data on the HP port.
    assert f"[get_bd_intf_pins zynq_ps/{board.gp_port}] [get_bd_intf_pins axi_ctrl/S00_AXI]" in tcl
    assert "[get_bd_intf_pins axi_ctrl/M00_AXI] [get_bd_intf_pins fracbnn_0/s_axil]" in tcl
    assert f"[get_bd_intf_pins axi_mem/M00_AXI] [get_bd_intf_pins zynq_ps/{board.hp_port}]" in tcl
    # RTL + init files, synthesis, implementation, bitstream, .bit + .hwh export.
    assert "create_bd_cell -type module -reference fracbnn_shell fracbnn_0" in tcl
    assert "rtl/L0_weights.mem" in tcl and "Memory Initialization Files" in tcl
    assert "launch_runs synth_1" in tcl and "launch_runs impl_1 -to_step write_bitstream" in tcl
    assert "fracbnn_bd_wrapper.bit] \\\n    [file join $here fracbnn.bit]" in tcl
    assert "fracbnn_bd.hwh] 0]" in tcl and "[file join $here fracbnn.hwh]" in tcl
    assert "report_utilization" in tcl and "report_timing_summary" in tcl


def test_tcl_rejects_a_stream_width_the_dma_cannot_have():
    with pytest.raises(ValueError, match="power of two"):
        _tcl("ultra96", ppb=3)


_STUBS = textwrap.dedent(r"""
    set ::calls {}
    foreach cmd {create_project set_property add_files update_compile_order create_bd_design
                 create_bd_cell apply_bd_automation connect_bd_intf_net connect_bd_net
                 assign_bd_address validate_bd_design save_bd_design generate_target
                 launch_runs wait_on_run open_run report_timing_summary} {
        proc $cmd args "lappend ::calls \[list $cmd \$args\]; return {}"
    }
    proc current_project args {return p}
    proc current_fileset args {return f}
    proc current_design args {return d}
    proc get_board_parts args {return {}}
    proc get_files args {return [list /nowhere/fracbnn_bd.hwh]}
    proc get_fileset args {return f}
    foreach cmd {get_bd_cells get_bd_pins get_bd_intf_pins get_runs get_timing_paths} {
        proc $cmd args {return $args}
    }
    proc make_wrapper args {return /nowhere/wrapper.v}
    proc get_property {name obj} {
        switch $name { PROGRESS {return "100%"} SLACK {return $::slack} default {return /run} }
    }
    proc report_utilization args {
        if {[lsearch $args -return_string] < 0} {return {}}
        return "| CLB LUTs*     | 1234 |  0 |\n| CLB Registers | 2345 |  0 |\n| Block RAM Tile | 12.5 | 0 |\n| DSPs | 0 | 0 |"
    }
    rename file _file
    proc file {sub args} {
        if {$sub eq "copy"} {lappend ::calls [list copy {*}$args]; return}
        return [_file $sub {*}$args]
    }
    set ::slack [lindex $argv 1]
    if {[catch {source [lindex $argv 0]} err]} {puts "TCLERROR $err"}
    foreach c $::calls {puts "CALL $c"}
""")


@pytest.mark.skipif(shutil.which("tclsh") is None, reason="tclsh not installed")
@pytest.mark.parametrize("name", ["ultra96", "pynq_z2"])
def test_tcl_runs_against_stubbed_vivado(tmp_path, name):
    """The script is valid Tcl: run it with every Vivado command stubbed out."""
    (tmp_path / "create_project.tcl").write_text(_tcl(name))
    (tmp_path / "stubs.tcl").write_text(_STUBS)
    out = subprocess.run(["tclsh", str(tmp_path / "stubs.tcl"),
                          str(tmp_path / "create_project.tcl"), "0.25"],
                         capture_output=True, text=True, timeout=60).stdout
    assert "TCLERROR" not in out
    assert "CALL launch_runs {impl_1 -to_step write_bitstream -jobs 2}" in out
    copies = [line for line in out.splitlines() if line.startswith("CALL copy")]
    assert any(line.endswith("fracbnn.bit") for line in copies)
    assert any(line.endswith("fracbnn.hwh") for line in copies)
    summary = parse_vivado_summary((tmp_path / "vivado_summary.txt").read_text())
    assert summary == {"clock_mhz": 150.0, "wns_ns": 0.25, "lut": 1234, "ff": 2345,
                       "bram": 12.5, "dsp": 0, "fmax_mhz": pytest.approx(1000 / (1000 / 150 - 0.25))}
    # Negative slack: reports still written, then a clear error.
    out = subprocess.run(["tclsh", str(tmp_path / "stubs.tcl"),
                          str(tmp_path / "create_project.tcl"), "-0.5"],
                         capture_output=True, text=True, timeout=60).stdout
    assert "TCLERROR timing not met at 150 MHz: worst negative slack -0.5 ns" in out


def test_constraints_and_cell_counting():
    xdc = constraints_xdc(boards.get_board("ultra96"))
    assert "xczu3eg-sbva484-1-i" in xdc and "BITSTREAM.GENERAL.COMPRESS" in xdc
    counts = count_xilinx_cells({"LUT6": 10, "LUT2": 5, "INV": 1, "FDRE": 7, "FDSE": 1,
                                 "RAMB36E2": 3, "RAMB18E2": 3, "DSP48E2": 2, "RAM32M16": 2,
                                 "SRLC32E": 4, "CARRY8": 1})
    assert counts["lut"] == 10 + 5 + 1 + 2 * 8 + 4 and counts["lut_memory"] == 20
    assert (counts["ff"], counts["bram"], counts["dsp"]) == (8, 4.5, 2)


def test_fit_check_names_the_numbers():
    board = boards.get_board("ultra96")
    _check_fit(board, {"lut": 70_000, "ff": 1, "bram": 216, "dsp": 0}, "x")
    with pytest.raises(UserError, match=r"does not fit the xczu3eg-sbva484-1-i: x needs "
                                        r"LUT 80000 of 70560, BRAM36 300 of 216"):
        _check_fit(board, {"lut": 80_000, "ff": 1, "bram": 300, "dsp": 0}, "x")


@pytest.fixture(scope="module")
def small_net(tmp_path_factory):
    # Layer 0's weights (64 x 64 = 4 Kb) are big enough for block RAM, the rest is LUT ROM
    # (32 words or fewer) unless the build asks otherwise.
    return random_compiled_network(tmp_path_factory.mktemp("net") / "net", image=(1, 8, 8),
                                   shape=(64, 32, 10), folding=[(2, 32), (4, 16), (2, 8, True)],
                                   seed=5)


def test_build_ultra96_writes_everything_and_a_sane_estimate(small_net, tmp_path, capsys):
    out = tmp_path / "b"
    assert build_main(["--board", "ultra96", "--net", str(small_net), "--out", str(out),
                       "--clock", "200", "--quiet", "--no-vivado",
                       "--ram-style", "L1.weights=block"]) == 0
    text = capsys.readouterr().out
    assert "vivado -mode batch -source create_project.tcl" in text
    for f in ("create_project.tcl", "constraints.xdc", "ooc.xdc", "report.json", "report.md",
              "rtl/fracbnn_top.v", "rtl/fracbnn_shell.v", "rtl/fracbnn_rom.v",
              "rtl/L0_weights.mem", "rtl/L2_weights.mem", "net/network.json"):
        assert (out / f).is_file(), f
    tcl = (out / "create_project.tcl").read_text()
    assert "xczu3eg-sbva484-1-i" in tcl and "PL0_REF_CTRL__FREQMHZ {200}" in tcl
    assert "rtl/L0_weights.mem" in tcl
    report = json.loads((out / "report.json").read_text())
    y, a = report["estimate"]["yosys"], report["estimate"]["analytic"]
    assert y["family"] == "xcup"
    # Sane: logic and registers exist, the 8 Kb weight ROM is in block RAM, no multipliers,
    # and the two independent estimates agree within a factor of three.
    assert y["lut"] > 100 and y["ff"] > 100
    assert y["bram"] >= 0.5 and y["dsp"] == 0 and a["bram"] >= 0.5
    for key in ("lut", "ff"):
        assert a[key] / 3 <= y[key] <= a[key] * 3, (key, y[key], a[key])
    # Registers at least hold every PE's accumulator and the popcount inputs.
    net = load_compiled_network(small_net)
    assert y["ff"] >= sum(l.folding.pe * l.folding.simd for l in net.layers)
    # The placement asked for, in design.json and the report; the model counts it the same.
    mems = {m["name"]: m["style"] for m in report["design"]["memories"]}
    assert mems == {"L0.weights": "block", "L0.thresholds": "distributed",
                    "L1.weights": "block", "L1.thresholds": "distributed",
                    "L2.weights": "distributed"}
    assert report["design"]["ram_style"] == "auto,L1.weights=block"
    assert y["bram"] == a["bram"] == a["parts"]["L0"]["bram"] + a["parts"]["L1"]["bram"]
    assert a["parts"]["L1"]["bram"] > 0
    # Shares of the xczu3eg and the per-layer table: Yosys's stages add up to its totals.
    shares = {r["name"]: r for r in report["resources"]["shares"]["yosys"]}
    assert shares["LUT"]["used"] == y["lut"] and shares["LUT"]["available"] == 70_560
    assert shares["BRAM36"]["share"] == pytest.approx(100 * y["bram"] / 216)
    rows = {r["part"]: r for r in report["per_layer"]}
    assert list(rows) == ["L0", "L1", "L2", "fixed", "total"]
    assert "mvtu0" in rows["L0"]["stages"] and "serializer" in rows["fixed"]["stages"]
    for key, total in (("lut", y["lut"]), ("ff", y["ff"]), ("bram", y["bram"])):
        assert rows["total"]["yosys"][key] == total
        assert sum(rows[p]["yosys"][key] for p in ("L0", "L1", "L2", "fixed")) == total
    for part in ("L0", "L1", "L2"):
        assert rows[part]["yosys"]["bram"] == a["parts"][part]["bram"]
    assert report["resources"]["attribution"]["unattributed"] == 0
    assert rows["L0"]["memories"][0] == "weights block"
    assert f"LUT {y['lut']:,} / 70,560" in text and "which estimate to trust" in text
    md = (out / "report.md").read_text()
    assert "| L0 | " in md and "Vivado's utilization.rpt after implementation" in md


def test_build_ultra96_default_clock_is_what_the_timing_proxy_supports(small_net, tmp_path,
                                                                      capsys):
    """Without --clock an UltraScale+ build takes the clock its own netlist's logic depth
    supports (hw.logic_depth.proxy_clock_mhz), writes it into the Vivado script and says why."""
    out = tmp_path / "b"
    assert build_main(["--board", "ultra96", "--net", str(small_net), "--out", str(out),
                       "--quiet", "--no-vivado"]) == 0
    text = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    proxy = report["estimate"]["yosys"]["timing_proxy"]
    mhz, why = proxy_clock_mhz(proxy)
    assert report["clock_mhz"] == mhz and report["clock_source"] == why
    assert f"PL0_REF_CTRL__FREQMHZ {{{mhz:g}}}" in (out / "create_project.tcl").read_text()
    assert f"clock     {mhz:g} MHz ({why})" in text
    assert f"timing    proxy: worst path {proxy['lut_levels']} LUT levels" in text


def test_build_errors_are_one_line(small_net, tmp_path, capsys):
    for argv, msg in ((["--board", "zcu105"], "unknown board 'zcu105'"),
                      (["--board", "pynq_z2", "--clock", "300"], "--clock must be in [10, 250]"),
                      (["--board", "ultra96", "--fold", str(tmp_path / "nofold.json")],
                       "nofold.json")):
        with pytest.raises(SystemExit) as exc:
            from sw.errors import cli_main
            cli_main(lambda: build_main(argv + ["--net", str(small_net), "--out",
                                                str(tmp_path / "x"), "--quiet"]))
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and msg in err and err.count("\n") == 1
        assert not (tmp_path / "x").exists()
    assert not list(tmp_path.glob(".x.tmp-*"))
