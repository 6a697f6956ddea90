"""Zynq builds: the Vivado Tcl script and constraints, the Yosys estimate, the build command."""

import json
import os
import re
import shutil
import subprocess
import textwrap

import pytest

import boards
from hw.build import _check_fit, main as build_main
from hw.logic_depth import proxy_clock_mhz
from hw.vivado import (BOARD_REPO_ENV, check_rom_files, constraints_xdc,
                       parse_vivado_summary, project_tcl)
from hw.yosys_estimate import count_xilinx_cells
from sw.network_io import load_compiled_network
from sw.errors import UserError
from tests.netfactory import random_compiled_network

ZYNQ = ["ultra96v1", "ultra96v2", "zcu104", "pynq_z2"]
_ROMS = [("rtl/L0_weights.mem", 16), ("rtl/L0_thresholds.mem", 4)]
_RTL = ["rtl/fracbnn_shell.v", "rtl/fracbnn_top.v", "rtl/fracbnn_rom.v"]


def _tcl(name, clock=150.0, ppb=8, board_repos=()):
    return project_tcl(boards.get_board(name), clock_mhz=clock, stream_in_bits=8 * ppb,
                       rtl_files=_RTL, roms=_ROMS, board_repos=board_repos)


@pytest.mark.parametrize("name", ZYNQ)
def test_tcl_has_the_parts_that_matter(name):
    board = boards.get_board(name)
    tcl = _tcl(name, clock=142.5)
    # Part and PS.
    assert f"set part {board.part}\n" in tcl and "-part $part " in tcl
    assert f"create_bd_cell -type ip -vlnv xilinx.com:ip:{board.ps_ip} zynq_ps" in tcl
    for key, value in board.ps_config.items():
        assert f"CONFIG.{key} {{{value}}}" in tcl
    # PL clock at the requested frequency, driving the accelerator, DMA and PS ports.
    assert f"CONFIG.{board.pl_clock_property} {{142.5}}" in tcl
    assert f"CONFIG.{board.pl_clock_actual_property}" in tcl
    if board.family == "zynq_us+":
        # The preset's clocks hold unless the override is cleared before the frequency is set.
        override = tcl.index("CONFIG.PSU__OVERRIDE__BASIC_CLOCK {0}")
        assert override < tcl.index(f"CONFIG.{board.pl_clock_property} {{142.5}}")
    else:
        assert "PSU__" not in tcl and "PCW_FPGA0_PERIPHERAL_FREQMHZ {142.5}" in tcl
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
    # Board files: FINN's board part first; RTL + init files; the runs; reports.
    assert f'set board_patterns [list "{board.vivado_board_part}"' in tcl
    assert "create_bd_cell -type module -reference fracbnn_shell fracbnn_0" in tcl
    assert '"rtl/L0_weights.mem" 16' in tcl and "Memory Initialization Files" in tcl
    assert "launch_runs synth_1" in tcl and "launch_runs impl_1 -to_step write_bitstream" in tcl
    assert "report_utilization" in tcl and "report_timing_summary" in tcl


def test_board_parts_are_finns():
    """The board parts are the names FINN's Zynq shell uses (finn src/finn/transformation/
    fpgadataflow/templates.py), FINN's parts (finn src/finn/util/basic.py pynq_part_map)."""
    finn = {"ultra96v1": ("avnet.com:ultra96v1:part0:1.2", "xczu3eg-sbva484-1-e"),
            "ultra96v2": ("avnet.com:ultra96v2:part0:1.2", "xczu3eg-sbva484-1-i"),
            "zcu104": ("xilinx.com:zcu104:part0:1.1", "xczu7ev-ffvc1156-2-e"),
            "pynq_z2": ("tul.com.tw:pynq-z2:part0:1.0", "xc7z020clg400-1")}
    for name, (board_part, part) in finn.items():
        board = boards.get_board(name)
        assert (board.vivado_board_part, board.part) == (board_part, part)
        assert board.board_part_patterns[0] == board_part
        assert "xhub::install" in board.board_files_install
    assert "https://github.com/Avnet/bdf" in boards.get_board("ultra96").board_files_install
    # Avnet's own repository has named the V1 files em.avnet.com:ultra96v1, Vivado 2018
    # em.avnet.com:ultra96.
    assert {"*:ultra96v1:part0:*", "em.avnet.com:ultra96:part0:*"} <= set(
        boards.get_board("ultra96v1").board_part_patterns)


def test_tcl_rejects_a_stream_width_the_dma_cannot_have():
    with pytest.raises(ValueError, match="power of two"):
        _tcl("ultra96", ppb=3)


def test_tcl_is_tcl_85():
    """Vivado's interpreter is Tcl 8.5 (tclsh here is 8.6): no 8.6-only commands."""
    tcl = _tcl("ultra96")
    for word in ("lmap", "try", "throw", "tailcall", "coroutine", "zlib", "lpop"):
        assert not re.search(rf"(^|[\s\[;]){word}\s", tcl, re.M), word
    for phrase in ("string cat", "-stride", "file tempfile", "dict map"):
        assert phrase not in tcl


# A stand-in for Vivado: every command the script uses, with enough behaviour to check what
# matters.  The scenario (a Tcl dict, argv 2) sets what "Vivado" does:
#   wns, whs          slack of the worst setup / hold path ("" = no timed path)
#   board_parts       installed board parts; board_fpga: dict board part -> its part name
#   preset_clock      the PL clock (MHz) the board preset sets; with the preset applied,
#                     PSU__OVERRIDE__BASIC_CLOCK is 1 and a PL frequency set while it is 1 is
#                     ignored (what FINN's override clearing is for)
#   act_mhz           the clock the PS makes ("" = what was set)
#   readmem           vivado: the module reference's out-of-context synthesis run resolves each
#                     INIT_FILE as Vivado does (relative to its own run directory) and logs
#                     [Synth 8-3876] read successfully or [Synth 8-4445] could not open;
#                     silent: no $readmem lines; malformed: a [Synth 8-2898] $readmem warning
#   hwh               gen / srcs / none: where write_bitstream leaves the hardware handoff
_STUBS = textwrap.dedent(r"""
    array set ::sc {wns 0.25 whs 0.05 board_parts {} board_fpga {} preset_clock 100
                    act_mhz {} readmem vivado hwh gen progress 100%}
    array set ::sc [lindex $argv 1]
    set ::calls {}
    set ::sources {}
    array set ::cfg {}
    array set ::param {board.repoPaths {}}
    proc rec {cmd args} {lappend ::calls [concat [list $cmd] $args]}
    foreach cmd {update_compile_order create_bd_design create_bd_cell connect_bd_intf_net
                 connect_bd_net assign_bd_address validate_bd_design save_bd_design
                 generate_target wait_on_run open_run report_timing_summary set_msg_config} {
        proc $cmd args "rec $cmd {*}\$args; return {}"
    }
    proc current_project args {return p}
    proc current_fileset args {return f}
    proc current_design args {return d}
    proc get_fileset args {return f}
    foreach cmd {get_bd_cells get_bd_pins get_bd_intf_pins} {proc $cmd args {return $args}}
    proc get_files args {if {[lindex $args 0] eq "-filter"} {return {}}; return $args}
    proc make_wrapper args {return /nowhere/fracbnn_bd_wrapper.v}
    proc set_param {name value} {rec set_param $name $value; set ::param($name) $value}
    proc get_param {name} {return $::param($name)}
    proc create_project {name dir args} {
        rec create_project $name $dir {*}$args
        set ::proj_name $name; set ::proj_dir $dir; file mkdir $dir
    }
    proc run_dir {run} {return [file join $::proj_dir $::proj_name.runs $run]}
    proc get_runs args {
        if {[lindex $args 0] eq "-filter"} {
            return {synth_1 fracbnn_bd_fracbnn_0_0_synth_1 fracbnn_bd_zynq_ps_0_synth_1}
        }
        return [lindex $args end]
    }
    proc get_board_parts args {
        set pattern [lindex $args end]
        set found {}
        foreach bp $::sc(board_parts) {if {[string match -nocase $pattern $bp]} {lappend found $bp}}
        return $found
    }
    proc get_timing_paths args {return [expr {[lsearch $args -hold] >= 0 ? "hold" : "setup"}]}
    proc apply_bd_automation args {
        rec apply_bd_automation {*}$args
        if {[string match {*apply_board_preset "1"*} $args]} {
            set ::cfg(PSU__OVERRIDE__BASIC_CLOCK) 1
            set ::cfg(PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ) $::sc(preset_clock)
            set ::cfg(PCW_FPGA0_PERIPHERAL_FREQMHZ) $::sc(preset_clock)
        }
    }
    proc set_property args {
        rec set_property {*}$args
        if {[lindex $args 0] ne "-dict"} {return}
        foreach {key value} [lindex $args 1] {
            set key [string range $key [string length CONFIG.] end]
            if {[string match *PL0_REF_CTRL__FREQMHZ $key] &&
                    [info exists ::cfg(PSU__OVERRIDE__BASIC_CLOCK)] &&
                    $::cfg(PSU__OVERRIDE__BASIC_CLOCK) != 0} {
                continue   ;# the board preset's clock holds
            }
            set ::cfg($key) $value
        }
    }
    proc get_property {args} {
        set args [lsearch -all -inline -not -exact $args -quiet]
        lassign $args name obj
        switch -glob -- $name {
            PROGRESS {return $::sc(progress)}
            DIRECTORY {return [run_dir $obj]}
            SLACK {return [expr {$obj eq "hold" ? $::sc(whs) : $::sc(wns)}]}
            PART_NAME {
                if {[dict exists $::sc(board_fpga) $obj]} {return [dict get $::sc(board_fpga) $obj]}
                return {}
            }
            CONFIG.*ACT_* {
                if {$::sc(act_mhz) ne ""} {return $::sc(act_mhz)}
                return $::cfg([string map {CONFIG. "" ACT_ ""} $name])
            }
            default {return {}}
        }
    }
    proc add_files args {
        rec add_files {*}$args
        set skip 0
        foreach a $args {
            if {$skip} {set skip 0; continue}
            if {$a eq "-fileset"} {set skip 1; continue}
            if {[string match -* $a]} continue
            foreach f $a {lappend ::sources $f}
        }
    }
    proc write_log {run text} {
        file mkdir [run_dir $run]
        set fh [open [file join [run_dir $run] runme.log] w]; puts $fh $text; close $fh
    }
    proc launch_runs {run args} {
        rec launch_runs $run {*}$args
        if {$run eq "synth_1"} {
            write_log synth_1 "INFO: \[Synth 8-6157\] finished synthesizing module 'fracbnn_bd_wrapper'"
            write_log fracbnn_bd_zynq_ps_0_synth_1 "INFO: synthesized the PS"
            set log {}
            foreach src $::sources {
                if {![string match *.v $src] || ![file isfile $src]} continue
                set fh [open $src]; set text [read $fh]; close $fh
                foreach {all init} [regexp -all -inline {INIT_FILE\("([^"]*)"\)} $text] {
                    # Vivado resolves a relative name against the run directory.
                    set path [file join [run_dir fracbnn_bd_fracbnn_0_0_synth_1] $init]
                    switch $::sc(readmem) {
                        vivado {
                            if {[file readable $path]} {
                                lappend log "INFO: \[Synth 8-3876\] \$readmem data file '$init' is read successfully \[$src:3\]"
                            } else {
                                lappend log "CRITICAL WARNING: \[Synth 8-4445\] could not open \$readmem data file '$init'; please make sure the file is added to project and has read permission, ignoring \[$src:3\]"
                            }
                        }
                        malformed {lappend log "WARNING: \[Synth 8-2898\] ignoring malformed \$readmem task: invalid memory name \[$src:3\]"}
                        silent {}
                    }
                }
            }
            write_log fracbnn_bd_fracbnn_0_0_synth_1 [join $log "\n"]
        } else {
            file mkdir [run_dir impl_1]
            set fh [open [file join [run_dir impl_1] fracbnn_bd_wrapper.bit] w]; puts $fh BIT; close $fh
            if {$::sc(hwh) ne "none"} {
                set d [file join $::proj_dir $::proj_name.$::sc(hwh) sources_1 bd fracbnn_bd hw_handoff]
                file mkdir $d
                set fh [open [file join $d fracbnn_bd.hwh] w]; puts $fh "HWH from $::sc(hwh)"; close $fh
            }
        }
    }
    proc report_utilization args {
        if {[lsearch $args -return_string] < 0} {return {}}
        return "| CLB LUTs*     | 1234 |  0 |\n| CLB Registers | 2345 |  0 |\n| Block RAM Tile | 12.5 | 0 |\n| DSPs | 0 | 0 |"
    }
    if {[catch {source [lindex $argv 0]} err]} {puts "TCLERROR $err"}
    foreach c $::calls {puts "CALL $c"}
""")

_FINN_BOARD_PARTS = ("avnet.com:ultra96v1:part0:1.2 avnet.com:ultra96v2:part0:1.2 "
                     "xilinx.com:zcu104:part0:1.1 tul.com.tw:pynq-z2:part0:1.0")
needs_tclsh = pytest.mark.skipif(shutil.which("tclsh") is None, reason="tclsh not installed")


def _write_rtl(d):
    """A small stand-in for the generated RTL: two ROMs loading rtl/L0_*.mem by name."""
    rtl = d / "rtl"
    rtl.mkdir(parents=True, exist_ok=True)
    (rtl / "fracbnn_shell.v").write_text("module fracbnn_shell(input clk);\n"
                                         "  fracbnn_top top(.clk(clk));\nendmodule\n")
    (rtl / "fracbnn_top.v").write_text(
        "module fracbnn_top(input clk);\n"
        '  fracbnn_rom #(.DEPTH(16), .INIT_FILE("L0_weights.mem")) w(.clk(clk));\n'
        '  fracbnn_rom #(.DEPTH(4), .INIT_FILE("L0_thresholds.mem")) t(.clk(clk));\n'
        "endmodule\n")
    (rtl / "fracbnn_rom.v").write_text(
        'module fracbnn_rom #(parameter DEPTH = 16, parameter INIT_FILE = "rom.mem")'
        "(input clk);\n  reg [7:0] mem [0:DEPTH-1];\n  initial $readmemh(INIT_FILE, mem);\n"
        "endmodule\n")
    (rtl / "L0_weights.mem").write_text("".join(f"{i:02x}\n" for i in range(16)))
    (rtl / "L0_thresholds.mem").write_text("".join(f"{i:02x}\n" for i in range(4)))


def _run_stubbed(d, scenario=None, *, env=None):
    """Run ``d/create_project.tcl`` in tclsh against the stubbed Vivado; (output, calls)."""
    (d / "stubs.tcl").write_text(_STUBS)
    sc = {"board_parts": f"{{{_FINN_BOARD_PARTS}}}", **(scenario or {})}
    words = " ".join(f"{k} {v if v != '' else '{}'}" for k, v in sc.items())
    run_env = {k: v for k, v in os.environ.items() if k != BOARD_REPO_ENV}
    run_env.update(env or {})
    out = subprocess.run(["tclsh", str(d / "stubs.tcl"), str(d / "create_project.tcl"), words],
                         capture_output=True, text=True, timeout=60, env=run_env).stdout
    calls = [line[5:] for line in out.splitlines() if line.startswith("CALL ")]
    return out, calls


@pytest.fixture
def stub_dir(tmp_path):
    """A build directory (stand-in RTL, init files) whose script is written by ``put``."""
    _write_rtl(tmp_path)

    def put(name="ultra96", **kw):
        (tmp_path / "create_project.tcl").write_text(_tcl(name, **kw))
        return tmp_path
    return put


@needs_tclsh
@pytest.mark.parametrize("name", ["ultra96", "pynq_z2"])
def test_tcl_runs_against_stubbed_vivado(stub_dir, name):
    """The whole script runs, its checks pass, and the PYNQ pair and the summary are written."""
    d = stub_dir(name)
    out, calls = _run_stubbed(d)
    assert "TCLERROR" not in out, out
    assert "launch_runs impl_1 -to_step write_bitstream -jobs 2" in calls
    assert "INFO: [fracbnn] synthesis read all 2 ROM init files" in out
    assert (d / "fracbnn.bit").read_text() == "BIT\n"
    assert (d / "fracbnn.hwh").read_text() == "HWH from gen\n"
    summary = parse_vivado_summary((d / "vivado_summary.txt").read_text())
    assert summary == {"clock_mhz": 150.0, "pl_clock_mhz": 150.0, "wns_ns": 0.25,
                       "whs_ns": 0.05, "lut": 1234, "ff": 2345, "bram": 12.5, "dsp": 0,
                       "fmax_mhz": pytest.approx(1000 / (1000 / 150 - 0.25))}


@needs_tclsh
def test_stubbed_pl_clock_override_is_cleared_before_the_frequency(stub_dir):
    """UltraScale+: PSU__OVERRIDE__BASIC_CLOCK {0} is set after the board preset and before
    the PL frequency; in the stub (as in Vivado) a frequency set while the override is on
    keeps the preset's clock, and the script's clock check stops such a build."""
    d = stub_dir("ultra96", clock=250.0)
    out, calls = _run_stubbed(d)
    assert "TCLERROR" not in out, out
    preset = next(i for i, c in enumerate(calls) if c.startswith("apply_bd_automation"))
    override = next(i for i, c in enumerate(calls) if "CONFIG.PSU__OVERRIDE__BASIC_CLOCK 0" in c)
    freq = next(i for i, c in enumerate(calls)
                if "CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ 250" in c)
    assert preset < override < freq
    assert "PL clock 0: 250 MHz" in out
    # The same script without the override: the preset's 100 MHz holds, and the check says so.
    tcl = (d / "create_project.tcl").read_text()
    line = "set_property -dict [list CONFIG.PSU__OVERRIDE__BASIC_CLOCK {0}] [get_bd_cells zynq_ps]\n"
    (d / "create_project.tcl").write_text(tcl.replace(line, ""))
    out, _ = _run_stubbed(d)
    assert ("TCLERROR the PS makes PL clock 0 at 100 MHz, not the 250 MHz asked for; rebuild "
            "with python -m hw.build --clock 100") in out
    assert not (d / "fracbnn.bit").exists()


@needs_tclsh
def test_stubbed_pl_clock_the_ps_cannot_make_fails(stub_dir):
    d = stub_dir("pynq_z2", clock=142.5)
    out, calls = _run_stubbed(d)
    assert "TCLERROR" not in out, out
    assert any("CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ 142.5" in c for c in calls)
    out, calls = _run_stubbed(d, {"act_mhz": "125.0"})
    assert "TCLERROR the PS makes PL clock 0 at 125.0 MHz, not the 142.5 MHz asked for" in out
    assert not any(c.startswith("launch_runs") for c in calls)     # before any slow step


@needs_tclsh
@pytest.mark.parametrize("where", ["gen", "srcs"])
def test_stubbed_hwh_is_found_in_gen_or_srcs(stub_dir, where):
    d = stub_dir()
    out, _ = _run_stubbed(d, {"hwh": where})
    assert "TCLERROR" not in out, out
    assert (d / "fracbnn.hwh").read_text() == f"HWH from {where}\n"
    assert f"fracbnn_ultra96v2.{where}/sources_1/bd/fracbnn_bd/hw_handoff/fracbnn_bd.hwh" in out


@needs_tclsh
def test_stubbed_missing_hwh_fails_naming_both_places(stub_dir):
    d = stub_dir()
    out, _ = _run_stubbed(d, {"hwh": "none"})
    err = next(line for line in out.splitlines() if line.startswith("TCLERROR"))
    assert "no hardware handoff fracbnn_bd.hwh after write_bitstream" in err
    for tree in ("gen", "srcs"):
        assert f"fracbnn_ultra96v2.{tree}/sources_1/bd/fracbnn_bd/hw_handoff/fracbnn_bd.hwh" in err
    assert not (d / "fracbnn.hwh").exists() and not (d / "fracbnn.bit").exists()


@needs_tclsh
def test_stubbed_rom_init_files_reach_the_ooc_synthesis(stub_dir):
    """The module reference's out-of-context run gets the init files by absolute path (the
    stub resolves names like Vivado, against the run directory), and the script checks the
    logs of every synthesis run for it."""
    d = stub_dir()
    out, calls = _run_stubbed(d)
    assert "TCLERROR" not in out, out
    top = (d / "vivado_rtl" / "fracbnn_top.v").read_text()
    for mem in ("L0_weights.mem", "L0_thresholds.mem"):
        assert f'.INIT_FILE("{(d / "rtl" / mem).resolve()}")' in top
    assert 'INIT_FILE = "rom.mem"' in (d / "vivado_rtl" / "fracbnn_rom.v").read_text()
    added = [c for c in calls if c.startswith("add_files -norecurse")]
    assert str(d / "vivado_rtl" / "fracbnn_top.v") in added[0]
    assert str(d / "rtl" / "L0_weights.mem") in added[1]
    assert str(d / "rtl" / "fracbnn_top.v") not in " ".join(added)
    log = (d / "vivado" / "fracbnn_ultra96v2.runs" / "fracbnn_bd_fracbnn_0_0_synth_1" /
           "runme.log").read_text()
    assert log.count("[Synth 8-3876]") == 2 and "8-4445" not in log
    assert "set_msg_config -id {Synth 8-4445} -new_severity ERROR" in calls
    # Were the names left relative, the run directory would not have them: the check stops it.
    tcl = (d / "create_project.tcl").read_text()
    tcl = tcl.replace("set vivado_rtl [fracbnn_absolute_rtl $here $rtl_files $roms "
                      "[file join $here vivado_rtl]]",
                      "set vivado_rtl {}\nforeach f $rtl_files {lappend vivado_rtl "
                      "[file join $here $f]}")
    (d / "create_project.tcl").write_text(tcl)
    out, calls = _run_stubbed(d)
    assert ("TCLERROR synthesis did not load a ROM init file, so the bitstream would compute "
            "with empty ROMs: CRITICAL WARNING: [Synth 8-4445] could not open $readmem data "
            "file 'L0_weights.mem'") in out
    assert not any(c.startswith("launch_runs impl_1") for c in calls)
    assert not (d / "fracbnn.bit").exists()


@needs_tclsh
@pytest.mark.parametrize("readmem, message", [
    ("malformed", "TCLERROR synthesis did not load a ROM init file, so the bitstream would "
                  "compute with empty ROMs: WARNING: [Synth 8-2898] ignoring malformed $readmem"),
    ("silent", "TCLERROR synthesis did not report reading L0_weights.mem, L0_thresholds.mem "
               "(no [Synth 8-3876]"),
])
def test_stubbed_synthesis_without_proof_of_reading_fails(stub_dir, readmem, message):
    d = stub_dir()
    out, calls = _run_stubbed(d, {"readmem": readmem})
    assert message in out
    assert not any(c.startswith("launch_runs impl_1") for c in calls)


@needs_tclsh
@pytest.mark.parametrize("content, message", [
    ("", "ROM init file rtl/L0_thresholds.mem is empty, so the ROM would be all zeros"),
    ("\n\n", "ROM init file rtl/L0_thresholds.mem is empty"),
    ("00\n01\n", "ROM init file rtl/L0_thresholds.mem has 2 words but its ROM 4"),
    (None, "ROM init file rtl/L0_thresholds.mem is missing"),
])
def test_stubbed_empty_rom_fails_before_vivado_starts(stub_dir, content, message):
    d = stub_dir()
    mem = d / "rtl" / "L0_thresholds.mem"
    if content is None:
        mem.unlink()
    else:
        mem.write_text(content)
    out, calls = _run_stubbed(d)
    assert f"TCLERROR {message}" in out
    assert f"ERROR: [fracbnn] {message}" in out
    assert calls == []                      # not even the project was created


@needs_tclsh
def test_stubbed_rom_the_rtl_does_not_load_fails(stub_dir):
    d = stub_dir()
    top = d / "rtl" / "fracbnn_top.v"
    top.write_text(top.read_text().replace("L0_thresholds.mem", "L9_thresholds.mem"))
    out, _ = _run_stubbed(d)
    assert ('TCLERROR no ROM in the RTL loads rtl/L0_thresholds.mem (no INIT_FILE '
            '"L0_thresholds.mem" in rtl/fracbnn_shell.v, rtl/fracbnn_top.v, rtl/fracbnn_rom.v)'
            in out)


@needs_tclsh
def test_stubbed_missing_board_part_says_what_to_install(stub_dir):
    d = stub_dir("ultra96")
    out, calls = _run_stubbed(d, {"board_parts": "{xilinx.com:zcu104:part0:1.1}"})
    err = next(line for line in out.splitlines() if line.startswith("TCLERROR"))
    assert err.startswith("TCLERROR no board files for the Avnet Ultra96-V2 (board part "
                          "avnet.com:ultra96v2:part0:1.2 or *:ultra96v2:part0:*)")
    assert ("install Avnet's Ultra96-V2 board files: in Vivado's Tcl console run "
            "`xhub::refresh_catalog [xhub::get_xstores xilinx_board_store]; "
            "xhub::install [xhub::get_xitems *ultra96v2*]`, or clone "
            "https://github.com/Avnet/bdf") in err
    assert "--board-repo DIR or FRACBNN_BOARD_REPO=DIR" in err
    assert not any(c.startswith("create_bd_design") for c in calls)


@needs_tclsh
@pytest.mark.parametrize("installed, chosen", [
    ("avnet.com:ultra96v1:part0:1.2", "avnet.com:ultra96v1:part0:1.2"),
    ("em.avnet.com:ultra96v1:part0:1.2", "em.avnet.com:ultra96v1:part0:1.2"),
    ("em.avnet.com:ultra96:part0:1.2", "em.avnet.com:ultra96:part0:1.2"),
])
def test_stubbed_board_part_names_of_the_ultra96v1(stub_dir, installed, chosen):
    d = stub_dir("ultra96v1")
    out, calls = _run_stubbed(d, {"board_parts": f"{{{installed} xilinx.com:zcu104:part0:1.1}}"})
    assert "TCLERROR" not in out, out
    assert f"set_property board_part {chosen} p" in calls


@needs_tclsh
def test_stubbed_board_files_for_another_part_fail(stub_dir):
    d = stub_dir("ultra96v1")
    out, _ = _run_stubbed(d, {"board_parts": "{em.avnet.com:ultra96:part0:1.2}",
                              "board_fpga": "{em.avnet.com:ultra96:part0:1.2 xczu3eg-sbva484-1-i}"})
    assert ("TCLERROR board files em.avnet.com:ultra96:part0:1.2 are for the part "
            "xczu3eg-sbva484-1-i, not the board's xczu3eg-sbva484-1-e") in out


@needs_tclsh
def test_stubbed_board_repositories_come_before_the_project(stub_dir, tmp_path_factory):
    given, env1, env2 = (tmp_path_factory.mktemp(n) for n in ("given", "env1", "env2"))
    d = stub_dir(board_repos=[str(given)])
    out, calls = _run_stubbed(d, env={BOARD_REPO_ENV: f"{env1}{os.pathsep}{env2}"})
    assert "TCLERROR" not in out, out
    param = next(i for i, c in enumerate(calls) if c.startswith("set_param board.repoPaths"))
    assert calls[param] == f"set_param board.repoPaths {{{given} {env1} {env2}}}"
    assert param < next(i for i, c in enumerate(calls) if c.startswith("create_project"))
    out, calls = _run_stubbed(d, env={BOARD_REPO_ENV: str(tmp_path_factory.getbasetemp() / "no")})
    assert "is not a directory; pass the directory that holds the board files" in out
    assert calls == []


@needs_tclsh
@pytest.mark.parametrize("wns, whs, message", [
    ("-0.5", "0.05", "TCLERROR timing not met at 150 MHz: worst negative slack -0.5 ns, worst "
                     "hold slack 0.05 ns"),
    ("0.2", "-0.01", "TCLERROR timing not met at 150 MHz: worst negative slack 0.2 ns, worst "
                     "hold slack -0.01 ns"),
    ("", "", "TCLERROR no timed path (WNS '', WHS ''), so the PL clock has no constraint"),
])
def test_stubbed_timing_failure_writes_reports_and_no_bitstream(stub_dir, wns, whs, message):
    d = stub_dir()
    (d / "fracbnn.bit").write_text("stale")          # an earlier run's must not survive
    out, _ = _run_stubbed(d, {"wns": wns, "whs": whs})
    assert message in out
    assert (d / "vivado_summary.txt").is_file()
    assert not (d / "fracbnn.bit").exists() and not (d / "fracbnn.hwh").exists()


def test_rom_files_are_checked_before_the_script_is_written(tmp_path):
    _write_rtl(tmp_path)
    rtl = tmp_path / "rtl"
    roms = [("L0_weights.mem", 8, 16), ("L0_thresholds.mem", 8, 4)]
    check_rom_files(rtl, roms)
    for content, message in (("", "is empty, so the ROM would be all zeros"),
                             ("\n", "is empty"),
                             ("00\n", "has 1 words, expected depth 4"),
                             (None, "is missing, so the ROM would be empty")):
        mem = rtl / "L0_thresholds.mem"
        mem.unlink(missing_ok=True)
        if content is not None:
            mem.write_text(content)
        with pytest.raises(UserError, match=re.escape(message)):
            check_rom_files(rtl, roms)


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
    # The generated script against the stubbed Vivado: the generated RTL names every init
    # file (5 ROMs), each with its ROM's depth, and the out-of-context run reads them all.
    if shutil.which("tclsh"):
        out_text, _ = _run_stubbed(out)
        assert "TCLERROR" not in out_text, out_text
        assert "INFO: [fracbnn] synthesis read all 5 ROM init files" in out_text
        assert (out / "fracbnn.bit").is_file() and (out / "fracbnn.hwh").is_file()


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
                       "nofold.json"),
                      (["--board", "ultra96", "--board-repo", str(tmp_path / "nobdf")],
                       "nobdf is not a directory; pass the directory that holds the board files"),
                      (["--board", "ulx3s", "--board-repo", str(tmp_path)],
                       "--board-repo is for the Vivado build of Zynq boards")):
        with pytest.raises(SystemExit) as exc:
            from sw.errors import cli_main
            cli_main(lambda: build_main(argv + ["--net", str(small_net), "--out",
                                                str(tmp_path / "x"), "--quiet"]))
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and msg in err and err.count("\n") == 1
        assert not (tmp_path / "x").exists()
    assert not list(tmp_path.glob(".x.tmp-*"))


def test_failed_vivado_run_reports_the_scripts_refusal(tmp_path, monkeypatch):
    """A Vivado run that the script stops: the build's one-line error is the script's
    ``ERROR: [fracbnn]`` line (problem and fix), not Vivado's generic ones."""
    import argparse
    import stat

    from hw.build import _maybe_run_vivado

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "vivado"
    fake.write_text("#!/bin/sh\necho 'ERROR: [Common 17-39] source failed due to earlier errors.'\n"
                    "echo 'ERROR: [fracbnn] ROM init file rtl/L0_weights.mem is empty, so the ROM "
                    "would be all zeros in the bitstream; regenerate this directory'\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "b"
    out.mkdir()
    report = {}
    with pytest.raises(UserError, match=re.escape(
            "Vivado failed: ERROR: [fracbnn] ROM init file rtl/L0_weights.mem is empty")):
        _maybe_run_vivado(out, report, argparse.Namespace(no_vivado=False))
    assert report["vivado"]["ran"] and json.loads((out / "report.json").read_text())
