"""Absorb the flip-flops behind ECP5 block RAM outputs into the EBRs' output registers.

Yosys ``synth_ecp5`` maps every memory to a DP16KD with ``REGMODE_A/B = "NOREG"``: the read
data leaves the EBR 5-6 ns after the clock edge (nextpnr's timing data for the -6 grade),
which alone caps any path that starts at a block RAM near 120-140 MHz.  The generator already
puts a plain register right behind each weight ROM (``hw/mvtu.py``, ``weights_q``); the EBR's
own output register (``REGMODE = "OUTREG"``) is that register, with a clock-to-out of about a
nanosecond.  :func:`absorb_output_registers` rewrites the synthesised JSON netlist (the one
nextpnr reads):

* a DP16KD qualifies when every read-data bit it drives (``DOA*``, ``DOB*``) goes to exactly
  one ``TRELLIS_FF`` data input and nowhere else, and those flip-flops share one clock (the
  EBR's read clock), one clock enable (or none) and have no set/reset (``LSR`` unused) and
  power-up value 0 (``REGSET = "RESET"``, as the EBR's output register);
* it then gets ``REGMODE_A = REGMODE_B = "OUTREG"``, ``OCEA = OCEB =`` the flip-flops' clock
  enable, both port clocks on the read clock (non-inverted; a ROM's unused write port has
  clock enable 0, so it still writes nothing), and the flip-flops are removed, their outputs
  driven by the EBR's data pins.  Both ports are configured alike so that the 36-bit
  pseudo-dual-port mode (read data on ``DOA`` and ``DOB``) is registered whichever port's
  output register carries which half.

The cycle behaviour is unchanged: a flip-flop that loads the EBR's data when its enable is high
becomes the output register that loads the same data under the same enable (Lattice TN1264,
"Memory Usage Guide for ECP5", output register / ``OCE``).  Yosys's DP16KD simulation model
ignores ``REGMODE``, so the rewritten netlist is checked structurally here, and the bitstream's
self-test is what checks it on the board.

# Ref: Lattice Semiconductor FPGA-TN-02204 (TN1264), ECP5 and ECP5-5G Memory Usage Guide,
#      sysMEM EBR ports and output registers (REGMODE, OCE).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

__all__ = ["absorb_output_registers", "absorb_in_file"]

_DATA_PINS = [f"DO{port}{i}" for port in "AB" for i in range(18)]


def _bit(conn: dict, pin: str):
    bits = conn.get(pin)
    return bits[0] if bits else None


def _ff_info(cell: dict):
    """``(clock, enable)`` of a plain flip-flop an EBR output register can replace, else
    ``None`` (enable: a net id, or ``"1"`` for none)."""
    p, c = cell["parameters"], cell["connections"]
    if str(p.get("CLKMUX", "CLK")).strip() != "CLK" or str(p.get("REGSET", "")).strip() != "RESET":
        return None
    lsr = _bit(c, "LSR")
    if lsr not in (None, "0") and str(p.get("LSRMUX", "LSR")).strip() != "0":
        return None
    cemux = str(p.get("CEMUX", "1")).strip()
    if cemux == "1":
        enable = "1"
    elif cemux == "CE":
        enable = _bit(c, "CE")
        if enable is None:
            return None
    else:
        return None
    clk = _bit(c, "CLK")
    return None if clk is None or isinstance(clk, str) else (clk, enable)


def absorb_output_registers(module: dict) -> dict:
    """Rewrite ``module`` (a Yosys JSON module, flattened) in place; return
    ``{"ebr": EBRs now OUTREG, "ff": flip-flops removed, "ebr_total": DP16KDs}``."""
    cells = module["cells"]
    sinks = defaultdict(list)                    # net -> [(cell name, pin)]
    for name, cell in cells.items():
        dirs = cell.get("port_directions", {})
        for pin, bits in cell["connections"].items():
            if dirs.get(pin, "input") == "output":
                continue
            for b in bits:
                if not isinstance(b, str):
                    sinks[b].append((name, pin))
    for port in module.get("ports", {}).values():
        if port.get("direction") in ("output", "inout"):
            for b in port["bits"]:
                if not isinstance(b, str):
                    sinks[b].append(("<port>", ""))

    ebr_total = converted = removed = 0
    for name, cell in list(cells.items()):
        if cell["type"] != "DP16KD":
            continue
        ebr_total += 1
        p, c = cell["parameters"], cell["connections"]
        if any(str(p.get(f"REGMODE_{x}", "NOREG")) != "NOREG" for x in "AB"):
            continue
        if any(_bit(c, f"RST{x}") not in (None, "0") for x in "AB"):
            continue
        plan, info = [], set()
        for pin in _DATA_PINS:
            b = _bit(c, pin)
            if b is None or isinstance(b, str) or not sinks.get(b):
                continue
            if len(sinks[b]) != 1:
                break
            ff_name, ff_pin = sinks[b][0]
            ff = cells.get(ff_name)
            if ff is None or ff["type"] != "TRELLIS_FF" or ff_pin != "DI":
                break
            ff_info = _ff_info(ff)
            if ff_info is None:
                break
            info.add(ff_info)
            plan.append((pin, ff_name))
        else:
            if not plan or len(info) != 1:
                continue
            clk, enable = info.pop()
            clocks = {_bit(c, f"CLK{x}") for x in "AB"} - {"0", None}
            if clocks != {clk}:
                continue
            for x in "AB":
                p[f"REGMODE_{x}"] = "OUTREG"
                p[f"CLK{x}MUX"] = f"CLK{x}"
                c[f"CLK{x}"] = [clk]
                c[f"OCE{x}"] = [enable]
            for pin, ff_name in plan:
                c[pin] = list(cells[ff_name]["connections"]["Q"])
                del cells[ff_name]
                removed += 1
            converted += 1
    return {"ebr": converted, "ff": removed, "ebr_total": ebr_total}


def absorb_in_file(path, top: str) -> dict:
    """:func:`absorb_output_registers` on module ``top`` of the JSON netlist ``path``
    (rewritten in place)."""
    path = Path(path)
    doc = json.loads(path.read_text())
    stats = absorb_output_registers(doc["modules"][top])
    path.write_text(json.dumps(doc))
    return stats
