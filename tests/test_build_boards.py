"""Board registry: every board module is well formed; names, aliases and errors."""

import dataclasses

import pytest

import boards
from boards.base import Ecp5Board, Resources, ZynqBoard
from sw.errors import UserError

PARTS = {
    "ultra96v1": "xczu3eg-sbva484-1-e",
    "ultra96v2": "xczu3eg-sbva484-1-i",
    "zcu104": "xczu7ev-ffvc1156-2-e",
    "pynq_z2": "xc7z020clg400-1",
    "ulx3s": "LFE5U-85F-6BG381C",
}


def test_every_board_and_part():
    assert set(boards.board_names()) == set(PARTS)
    for name, part in PARTS.items():
        board = boards.get_board(name)
        assert board.name == name and board.part == part


def test_ultra96_means_v2():
    assert boards.get_board("ultra96") is boards.get_board("ultra96v2")
    assert boards.get_board("ultra96v1").part.endswith("-e")


def test_unknown_board_is_a_user_error_naming_the_boards():
    with pytest.raises(UserError, match="unknown board 'nope'.*ultra96v2.*ulx3s"):
        boards.get_board("nope")


@pytest.mark.parametrize("name", [n for n in PARTS if n != "ulx3s"])
def test_zynq_boards_are_complete(name):
    board = boards.get_board(name)
    assert isinstance(board, ZynqBoard)
    assert board.ps_ip == ("processing_system7" if name == "pynq_z2" else "zynq_ultra_ps_e")
    assert board.yosys_family == ("xc7" if name == "pynq_z2" else "xcup")
    assert board.gp_port and board.hp_port and board.pl_clock_property
    assert 0 < board.default_clock_mhz <= board.max_clock_mhz
    assert all(v > 0 for v in board.resources.to_json().values())


def test_ulx3s_pins_and_lpf():
    board = boards.get_board("ulx3s")
    assert isinstance(board, Ecp5Board)
    assert (board.device, board.package, board.speed) == ("85k", "CABGA381", 6)
    assert board.clock_pin == "G2" and board.clock_mhz == 25
    assert board.led_pins == ("B2", "C2", "C1", "D2", "D1", "E2", "E1", "H3")
    lpf = board.lpf()
    assert 'LOCATE COMP "clk25" SITE "G2";' in lpf
    assert 'FREQUENCY PORT "clk25" 25 MHZ;' in lpf
    for i, pin in enumerate(board.led_pins):
        assert f'LOCATE COMP "led[{i}]" SITE "{pin}";' in lpf


def test_board_validation():
    board = boards.get_board("ultra96")
    with pytest.raises(ValueError, match="family"):
        dataclasses.replace(board, family="virtex")
    with pytest.raises(ValueError, match="default_clock_mhz"):
        dataclasses.replace(board, default_clock_mhz=500.0)
    assert Resources(1, 2, 3, 4).to_json() == {"lut": 1, "ff": 2, "bram": 3, "dsp": 4}


@pytest.mark.parametrize("name", boards.board_names())
def test_default_clock_states_its_basis(name):
    """Every board's default clock says where it comes from, and FPS figures print it."""
    board = boards.get_board(name)
    mhz, source = boards.resolve_clock(name, None)
    assert mhz == board.default_clock_mhz
    assert board.clock_basis.split()[0].rstrip(":") in ("nextpnr-measured", "timing", "assumed")
    assert source.startswith(f"{board.name} default clock, ") and board.clock_basis in source


def test_clock_given_wins_and_is_checked():
    assert boards.resolve_clock(None, 123.5) == (123.5, "given with --clock")
    assert boards.resolve_clock(None, None)[0] == boards.get_board(boards.DEFAULT_TARGET).default_clock_mhz
    for bad in (float("nan"), float("inf"), 0.0, -5.0):
        with pytest.raises(UserError, match="--clock must be a positive number"):
            boards.resolve_clock("ultra96", bad)
