"""hw.ecp5_outreg: which flip-flops behind EBR outputs become output registers, and how."""

import copy

from hw.ecp5_outreg import absorb_output_registers

CLK, CE, RST = 2, 3, 4


def _ebr(do_bits, clka="0", clkb=CLK):
    conn = {"CLKA": [clka], "CLKB": [clkb], "RSTA": ["0"], "RSTB": ["0"], "CEA": ["0"],
            "CEB": ["1"], "OCEA": ["0"], "OCEB": ["1"]}
    conn.update({pin: [b] for pin, b in do_bits.items()})
    return {"type": "DP16KD", "connections": conn,
            "port_directions": {**{p: "input" for p in conn if not p.startswith("DO")},
                                **{p: "output" for p in do_bits}},
            "parameters": {"REGMODE_A": "NOREG", "REGMODE_B": "NOREG", "CLKAMUX": "INV",
                           "CLKBMUX": "CLKB"}}


def _ff(d, q, ce=CE, lsr=None, regset="RESET"):
    conn = {"CLK": [CLK], "DI": [d], "Q": [q]}
    params = {"CLKMUX": "CLK", "REGSET": regset, "CEMUX": "CE" if ce is not None else "1 ",
              "LSRMUX": "LSR", "GSR": "DISABLED"}
    if ce is not None:
        conn["CE"] = [ce]
    if lsr is not None:
        conn["LSR"] = [lsr]
    return {"type": "TRELLIS_FF", "connections": conn, "parameters": params,
            "port_directions": {"CLK": "input", "DI": "input", "CE": "input", "LSR": "input",
                                "Q": "output"}}


def _lut(a, z):
    return {"type": "LUT4", "connections": {"A": [a], "Z": [z]}, "parameters": {},
            "port_directions": {"A": "input", "Z": "output"}}


def _module(cells):
    return {"ports": {}, "cells": cells}


def test_registered_rom_output_becomes_outreg():
    m = _module({"rom": _ebr({"DOA0": 10, "DOB3": 11}),
                 "q0": _ff(10, 20), "q1": _ff(11, 21), "use": _lut(20, 30)})
    stats = absorb_output_registers(m)
    assert stats == {"ebr": 1, "ff": 2, "ebr_total": 1}
    rom = m["cells"]["rom"]
    assert rom["parameters"]["REGMODE_A"] == rom["parameters"]["REGMODE_B"] == "OUTREG"
    assert rom["parameters"]["CLKAMUX"] == "CLKA" and rom["parameters"]["CLKBMUX"] == "CLKB"
    assert rom["connections"]["CLKA"] == rom["connections"]["CLKB"] == [CLK]
    assert rom["connections"]["OCEA"] == rom["connections"]["OCEB"] == [CE]
    # The flip-flops are gone; their outputs now come from the EBR's data pins.
    assert rom["connections"]["DOA0"] == [20] and rom["connections"]["DOB3"] == [21]
    assert set(m["cells"]) == {"rom", "use"}


def test_always_enabled_register_gets_oce_1():
    m = _module({"rom": _ebr({"DOA0": 10}), "q0": _ff(10, 20, ce=None)})
    assert absorb_output_registers(m)["ebr"] == 1
    assert m["cells"]["rom"]["connections"]["OCEA"] == ["1"]


def test_ebrs_that_do_not_qualify_are_left_alone():
    cases = {
        "data bit also feeds logic": {"rom": _ebr({"DOA0": 10}), "q0": _ff(10, 20),
                                      "l": _lut(10, 30)},
        "data bit into logic only": {"rom": _ebr({"DOA0": 10}), "l": _lut(10, 30)},
        "register with a reset": {"rom": _ebr({"DOA0": 10}), "q0": _ff(10, 20, lsr=RST)},
        "register powering up at 1": {"rom": _ebr({"DOA0": 10}), "q0": _ff(10, 20, regset="SET")},
        "two clock enables": {"rom": _ebr({"DOA0": 10, "DOA1": 11}), "q0": _ff(10, 20),
                              "q1": _ff(11, 21, ce=5)},
        "read clock differs": {"rom": _ebr({"DOA0": 10}, clkb=7), "q0": _ff(10, 20)},
    }
    for why, cells in cases.items():
        m = _module(copy.deepcopy(cells))
        before = copy.deepcopy(m)
        assert absorb_output_registers(m)["ebr"] == 0, why
        assert m == before, why


def test_top_level_output_is_a_sink():
    m = _module({"rom": _ebr({"DOA0": 10}), "q0": _ff(10, 20)})
    m["ports"] = {"o": {"direction": "output", "bits": [10]}}
    assert absorb_output_registers(m)["ebr"] == 0
