"""ULX3S: the self-test top (Amaranth simulation) and the open-source ECP5 flow on a small net."""

import dataclasses
import json

import numpy as np
import pytest
from amaranth.sim import Simulator

import boards
from boards.base import Resources
from hw.build import main as build_main
from hw.ecp5 import count_ecp5_cells, ecp5_build, parse_nextpnr_report, write_selftest_rtl
from hw.selftest import SelfTest, expected_beats, image_beats
from sw.network_io import load_compiled_network
from sw.errors import UserError
from sw.golden import GoldenModel
from tests.netfactory import random_compiled_network, random_images


@pytest.fixture(scope="module")
def net_dir(tmp_path_factory):
    """A small network with a fractional (2-bit) layer, for the Amaranth simulations."""
    return random_compiled_network(tmp_path_factory.mktemp("net") / "net", image=(1, 4, 4),
                                   shape=(8, 6, 4), outs=["frac2", "sign"],
                                   folding=[(2, 4), (2, 4), (2, 3)], seed=11)


@pytest.fixture(scope="module")
def sign_net_dir(tmp_path_factory):
    """A small 1-bit network for the Yosys/nextpnr flow.  (Engines of 2-bit layers use
    fracbnn_rom's slice mode, whose initial-block copy loop Yosys cannot evaluate; see the
    board-builds report.)"""
    return random_compiled_network(tmp_path_factory.mktemp("net") / "net", image=(1, 4, 4),
                                   shape=(8, 6, 4), folding=[(2, 4), (2, 4), (2, 3)], seed=11)


def _run_selftest(net, images, init_dir, expected=None, cycles=5000):
    dut = SelfTest(net, images, init_dir=init_dir, pixels_per_beat=8, rom_mode="sim",
                   expected=expected)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    seen = {}

    async def bench(ctx):
        for _ in range(cycles):
            await ctx.tick()
            if ctx.get(dut.done):
                break
        for name in ("done", "passed", "reg_ok", "bad_images", "led", "run_cycles"):
            seen[name] = ctx.get(getattr(dut, name))

    sim.add_testbench(bench)
    sim.run()
    return seen


def test_beat_packing():
    images = np.arange(16, dtype=np.uint8).reshape(1, 16)
    assert image_beats(images, 8) == [int.from_bytes(bytes(range(8)), "little"),
                                      int.from_bytes(bytes(range(8, 16)), "little")]
    assert expected_beats(np.array([2]), np.array([[-1, 5, 7]])) == [2, 0xFFFF_FFFF, 5, 7]


def test_selftest_passes_and_lights_pass(net_dir):
    net = load_compiled_network(net_dir)
    images = random_images(net, 5, seed=3)
    seen = _run_selftest(net, images, net_dir)
    assert seen["done"] == 1 and seen["passed"] == 1 and seen["reg_ok"] == 1
    assert seen["bad_images"] == 0
    assert seen["led"] & 0b1011 == 0b1001          # PASS + done, no FAIL
    assert seen["led"] >> 4 == 0


def test_selftest_detects_a_wrong_result(net_dir):
    net = load_compiled_network(net_dir)
    images = random_images(net, 5, seed=3)
    golden = GoldenModel(net).run(images)
    scores = golden.scores.copy()
    scores[1, 0] += 1                               # one wrong score in image 1
    classes = golden.classes.copy()
    classes[3] = (classes[3] + 1) % net.classes     # one wrong class in image 3
    seen = _run_selftest(net, images, net_dir, expected=(classes, scores))
    assert seen["done"] == 1 and seen["passed"] == 0 and seen["bad_images"] == 2
    assert seen["led"] & 0b1011 == 0b1010          # FAIL + done
    assert seen["led"] >> 4 == 2


def test_ecp5_cell_counting_matches_nextpnr():
    # LFC self-test after synth_ecp5: nextpnr reported "Total LUT4s: 36082/83640" for these.
    cells = {"CCU2C": 3188, "DP16KD": 178, "L6MUX21": 63, "LUT4": 29706, "PFUMX": 4979,
             "TRELLIS_FF": 14143}
    assert count_ecp5_cells(cells) == {"lut": 36082, "ff": 14143, "bram": 178, "dsp": 0,
                                       "carry": 3188}


def test_nextpnr_report_parsing():
    doc = {"utilization": {"DP16KD": {"used": 3, "available": 208}},
           "fmax": {"$glbnet$clk": {"achieved": 87.5, "constraint": 25.0}}}
    assert parse_nextpnr_report(doc) == {
        "utilization": {"DP16KD": {"used": 3, "available": 208}},
        "fmax_mhz": {"$glbnet$clk": 87.5}, "constraint_mhz": {"$glbnet$clk": 25.0}}


def test_ulx3s_build_produces_bitstream_and_timing(sign_net_dir, tmp_path, capsys):
    net_dir = sign_net_dir
    out = tmp_path / "ulx3s"
    assert build_main(["--board", "ulx3s", "--net", str(net_dir), "--out", str(out),
                       "--quiet", "--selftest-images", "3"]) == 0
    text = capsys.readouterr().out
    bit = out / "ulx3s.bit"
    assert bit.is_file() and bit.stat().st_size > 10_000
    report = json.loads((out / "report.json").read_text())
    e = report["ecp5"]
    # Default design clock: the board's (80 MHz) from the 25 MHz oscillator through the PLL.
    default = boards.get_board("ulx3s").default_clock_mhz
    assert e["timing_met"] and e["fmax_mhz"] >= default and e["clock_mhz"] == default
    assert (out / "ecp5" / "fracbnn_pll.v").is_file()
    assert "EHXPLLL" in (out / "ecp5" / "fracbnn_pll.v").read_text()
    assert "via the ECP5 PLL" in report["selftest"]["clock"]
    util = e["utilization"]
    assert 0 < util["TRELLIS_COMB"]["used"] < util["TRELLIS_COMB"]["available"] == 83640
    assert util["TRELLIS_FF"]["used"] > 0 and util["TRELLIS_IO"]["used"] == 9   # clk + 8 LEDs
    assert (out / "ecp5" / "nextpnr_report.json").is_file()
    assert "Fmax" in text and "ulx3s.bit" in text
    net = load_compiled_network(net_dir)
    assert report["selftest"]["images"] == 3
    # The embedded images are the export's test vectors; their golden classes are reported.
    assert report["selftest"]["expected_classes"] == GoldenModel(net).run(
        _vector_images(net_dir, 3)).classes.tolist()


def _vector_images(net_dir, n):
    from sw.network_io import load_test_vectors
    return load_test_vectors(net_dir).images[:n].astype(np.uint8)


def test_does_not_fit_and_missed_timing_fail_with_numbers(sign_net_dir, tmp_path):
    net_dir = sign_net_dir
    net = load_compiled_network(net_dir)
    from hw.generate import generate
    build = tmp_path / "b"
    generate(net_dir, build)
    write_selftest_rtl(net, random_images(net, 2), mem_dir=build, out_dir=build)
    board = boards.get_board("ulx3s")
    small = dataclasses.replace(board, resources=Resources(lut=50, ff=40, bram=0, dsp=0))
    with pytest.raises(UserError, match=r"does not fit the LFE5U-85F-6BG381C: needs LUT4 \d+ of "
                                        r"50, FF \d+ of 40"):
        ecp5_build(build, small)
    assert not (build / "ulx3s.bit").exists()
    with pytest.raises(UserError, match=r"timing not met: achieved Fmax \d+\.\d MHz < 2000 MHz"):
        ecp5_build(build, board, clock_mhz=2000)
    assert not (build / "ulx3s.bit").exists()


@pytest.mark.heavy
def test_ulx3s_builds_tiny_conv(tmp_path, capsys):
    """The shipped conv zoo model (padding, window generators, max-pools) to a real ECP5
    bitstream that meets the default clock."""
    from models import zoo
    from models.export import export

    net_dir = tmp_path / "tiny_conv"
    export(zoo.default_checkpoint("tiny_conv"), net_dir, check=100, vectors=2, progress=False)
    out = tmp_path / "ulx3s"
    assert build_main(["--board", "ulx3s", "--net", str(net_dir), "--out", str(out),
                       "--quiet", "--selftest-images", "2"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["ecp5"]["timing_met"] and (out / "ulx3s.bit").stat().st_size > 10_000
    assert report["selftest"]["expected_classes"] == GoldenModel(
        load_compiled_network(net_dir)).run(_vector_images(net_dir, 2)).classes.tolist()
    assert "Fmax" in capsys.readouterr().out


def test_failed_tool_step_keeps_its_logs_and_tries_every_lut_mapper(sign_net_dir, tmp_path,
                                                                    monkeypatch):
    """A Yosys failure: every LUT mapper is tried (ABC9 can assert, ABC9 -dff can exhaust
    the WebAssembly stack), the build directory is not created, and the message names the
    log copied beside it (the temporary build directory is removed)."""
    import hw.ecp5
    tried = []

    def failing_yosys(script, cwd, log, *, what, timeout=None, expect=None):
        tried.append(script)
        log.write_text(f"log of try {len(tried)}\n")
        raise UserError(f"{what} failed: exit status 1; see {log}")

    monkeypatch.setattr(hw.ecp5, "run_yosys", failing_yosys)
    monkeypatch.setattr(hw.ecp5, "abc_works", lambda: True)
    out = tmp_path / "out dir" / "ulx3s"
    with pytest.raises(UserError, match="Yosys synth_ecp5 failed") as exc:
        build_main(["--board", "ulx3s", "--net", str(sign_net_dir), "--out", str(out),
                    "--quiet", "--selftest-images", "1"])
    assert len(tried) == 3 and "-dff" in tried[1] and "abc -lut 4" in tried[2]
    kept = out.with_name("ulx3s.failed-logs") / "ecp5" / "yosys_ecp5.log"
    assert str(exc.value).endswith(f"see {kept}") and kept.read_text() == "log of try 3\n"
    assert not out.exists()


def test_selftest_passes_with_early_exits(tmp_path):
    """The ULX3S self-test of an exit network: the embedded expected results are the golden
    model's with exits, and the accelerator's results and registers match them."""
    net_dir = random_compiled_network(tmp_path / "net", image=(1, 4, 4), levels=2,
                                      shape=(12, 10, 8, 4),
                                      folding=[(4, 8), (2, 4), (4, 5), (2, 4)],
                                      exits=((0, 3), (1, 2)), seed=3)
    net = load_compiled_network(net_dir)
    images = random_images(net, 6, seed=4)
    assert len(set(GoldenModel(net).run(images).exits.tolist())) > 1
    seen = _run_selftest(net, images, net_dir, cycles=20_000)
    assert seen["done"] == 1 and seen["passed"] == 1 and seen["reg_ok"] == 1
    assert seen["bad_images"] == 0
