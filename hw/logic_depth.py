"""Logic depth of a mapped Xilinx netlist: an open-tool timing proxy for builds without Vivado.

Contract
--------
:func:`logic_depth` reads a flattened Yosys JSON netlist (``write_json`` after ``synth_xilinx
-flatten``; a path or the parsed document) and returns the longest register-to-register path
counted in *LUT levels* and *carry chains*, with the path's cells, an endpoint histogram and
whether every path meets :data:`LUT_LEVEL_BUDGET` LUT levels plus :data:`CARRY_CHAIN_BUDGET`
carry chain (the depth at which 300 MHz on an UltraScale+ -1 part is usual; docs/boards.md,
"Timing proxy for Xilinx builds (no Vivado)").  It never runs Yosys; a bad file raises
:class:`sw.errors.UserError`.

Model (bit level; net bits are the nodes, each cell input-bit -> output-bit dependency an arc)
-----------------------------------------------------------------------------------------------
* Path start points: outputs of sequential cells (FD*/LD*, RAMB*, FIFO*, DSP48*, URAM*, unknown
  cells), top-level input ports, undriven nets.  Path endpoints: every non-clock input pin of a
  sequential cell (D, CE, R/S, addresses, write data ...) and the top-level output ports.
* LUT1..LUT6, LUT6_2, INV (and unmapped ``$_*_`` gates): one LUT level.
* MUXF7/MUXF8/MUXF9 (and F5/F6): no LUT level, counted as ``muxf``.
* CARRY4/CARRY8 (and MUXCY/XORCY): entering a carry cell by any pin except a CI fed by another
  carry cell's CO starts a new *carry chain*; every carry cell crossed counts one *carry cell*.
  Arcs are per bit (S[j], DI[j] only reach O[i], CO[i] for i >= j).
* LUTRAM (RAM32M, RAM64X1D, ...) and SRL (SRL16E, SRLC32E): a read is combinational from the
  read address to the data output, so the output counts one LUT level after the address; the
  stored data is a start point that already counts that level.  Write data, write enable and
  addresses are also endpoints.
* BUFG and other buffers: no level.  GND/VCC outputs are constants.

The *worst path* maximises, lexicographically, (LUT levels, carry chains, carry cells).  A
separate pass finds the most carry chains on any path (``max_carry_chains``), so
``meets_300mhz_rule`` = worst LUT levels <= 4 and most carry chains <= 1 checks every path.
A third pass starts only at block RAM outputs (``from_bram``): an unregistered RAMB output
(DOA_REG/DOB_REG = 0) is slow to leave the RAM, so those paths deserve their own number.

The graph is processed with an iterative topological order (Kahn) and a dynamic program; there
is no recursion, and netlists of a few hundred thousand cells take seconds.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from sw.errors import UserError

__all__ = ["logic_depth", "load_netlist", "proxy_clock_mhz", "LUT_LEVEL_BUDGET",
           "CARRY_CHAIN_BUDGET", "RULE_CLOCK_MHZ"]

#: LUT levels per path at which 300 MHz on an UltraScale+ -1 part is usual (with one carry chain).
LUT_LEVEL_BUDGET = 4
#: carry chains per path allowed by the same rule.
CARRY_CHAIN_BUDGET = 1
#: The clock the rule stands for.
RULE_CLOCK_MHZ = 300.0


def proxy_clock_mhz(proxy: dict) -> tuple[float, str]:
    """The UltraScale+ -1 clock the timing proxy supports, and why.

    The rule (<= 4 LUT levels + 1 carry chain per path at 300 MHz, i.e. 3.33 ns) scaled by
    whole multiples of the path budget: ``k`` times the levels and chains fit in ``k`` times
    the period, so 300 MHz for k = 1, 150 MHz for k = 2, 100 MHz for k = 3; a design deeper
    than that gets 100 MHz and a note that the proxy does not cover it.
    """
    levels, chains = proxy["lut_levels"], proxy.get("max_carry_chains", proxy["carry_chains"])
    depth = f"worst path {levels} LUT levels, at most {chains} carry chain(s) on a path"
    for k in (1, 2, 3):
        if levels <= k * LUT_LEVEL_BUDGET and chains <= k * CARRY_CHAIN_BUDGET:
            mhz = RULE_CLOCK_MHZ / k
            return mhz, (f"timing proxy: {depth} <= {k} x ({LUT_LEVEL_BUDGET} LUT + "
                         f"{CARRY_CHAIN_BUDGET} carry chain) per {1000 / mhz:.2f} ns")
    return RULE_CLOCK_MHZ / 3, f"assumed: {depth} is beyond what the timing proxy covers"

METHOD = ("longest path between sequential cells/ports of the flattened synth_xilinx netlist: "
          "LUT levels (LUTRAM/SRL read = 1, MUXF = 0), then carry chains entered, then carry cells")

# Arc kinds.  The DP key packs (primary, secondary, carry cells) into one int, 20 bits each.
_ZERO, _LUT, _MUXF, _ENTER, _CONT = range(5)
_SHIFT = 20
_MASK = (1 << _SHIFT) - 1

_LUT_CELLS = frozenset({"LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6", "LUT6_2", "INV",
                        "AND2B1L", "OR2L", "ROM16X1", "ROM32X1", "ROM64X1", "ROM128X1",
                        "ROM256X1", "$lut", "$sop"})
_MUXF_CELLS = frozenset({"MUXF5", "MUXF6", "MUXF7", "MUXF8", "MUXF9"})
_CARRY_CELLS = frozenset({"CARRY4", "CARRY8", "MUXCY", "XORCY"})
_BUF_CELLS = frozenset({"BUF", "BUFG", "BUFGCE", "BUFH", "BUFHCE", "BUFG_PS", "IBUF", "OBUF",
                        "$_BUF_"})
_CONST_CELLS = frozenset({"GND", "VCC"})
_LUTRAM_PREFIXES = ("RAM16X", "RAM32X", "RAM64X", "RAM128X", "RAM256X", "RAM512X", "RAM32M",
                    "RAM64M", "SRL")
#: clock pins are neither endpoints nor data inputs.
_CLOCK_PINS = frozenset({"C", "CLK", "WCLK", "G", "CLKARDCLK", "CLKBWRCLK", "CLKA", "CLKB",
                         "RDCLK", "WRCLK"})
_COARSE_SEQ = frozenset({"$dff", "$dffe", "$adff", "$adffe", "$sdff", "$sdffe", "$sdffce",
                         "$dffsr", "$dffsre", "$aldff", "$aldffe", "$dlatch", "$adlatch",
                         "$dlatchsr", "$sr", "$ff", "$mem", "$mem_v2", "$memrd", "$memrd_v2",
                         "$memwr", "$memwr_v2"})
# Used only when the JSON has no port_directions (hand-written netlists).
# Ref: Yosys `help write_json`: cells carry "port_directions" when the cell type is known.
_OUTPUT_PINS = frozenset({"O", "Q", "Y", "CO", "O5", "O6", "SPO", "DPO", "Q31", "P"})


def load_netlist(path) -> dict:
    """Parse a Yosys JSON netlist; :class:`UserError` if it is missing or not JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} does not exist; write it with Yosys `write_json`") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not a Yosys JSON netlist ({exc})") from None


def _base_type(cell_type: str) -> str:
    """``$paramod\\FDRE\\INIT=1'x`` and ``$paramod$<hash>\\RAM32M16`` -> the primitive name."""
    if cell_type.startswith("$paramod"):
        parts = cell_type.split("\\")
        if len(parts) > 1:
            return parts[1]
    return cell_type


def _kind(cell_type: str) -> str:
    """``lut``, ``muxf``, ``carry``, ``buf``, ``const``, ``lutram``, ``seq`` or ``unknown``."""
    if cell_type in _LUT_CELLS:
        return "lut"
    if cell_type in _MUXF_CELLS:
        return "muxf"
    if cell_type in _CARRY_CELLS:
        return "carry"
    if cell_type in _BUF_CELLS:
        return "buf"
    if cell_type in _CONST_CELLS:
        return "const"
    if cell_type.startswith(_LUTRAM_PREFIXES):
        return "lutram"
    if cell_type.startswith("$_"):     # unmapped fine-grained gate or flip-flop
        seq = any(s in cell_type for s in ("DFF", "DLATCH", "_SR_", "_FF_"))
        return "seq" if seq else "lut"
    if cell_type.startswith("$"):      # unmapped coarse cell: count one level
        return "seq" if cell_type in _COARSE_SEQ else "lut"
    if cell_type.startswith(("FD", "LD", "RAMB", "FIFO", "DSP48", "URAM")):
        return "seq"
    return "unknown"


def _top_module(doc: dict, top: str | None) -> tuple[str, dict]:
    modules = doc.get("modules") if isinstance(doc, dict) else None
    if not modules:
        raise UserError("the netlist has no modules; write it with Yosys `write_json`")
    if top is None:
        tops = [n for n, m in modules.items() if m.get("attributes", {}).get("top")
                not in (None, 0, "0", "00000000000000000000000000000000")]
        real = [n for n, m in modules.items() if not m.get("attributes", {}).get("blackbox")]
        top = tops[0] if len(tops) == 1 else real[0] if len(real) == 1 else None
        if top is None:
            raise UserError("cannot tell the netlist's top module; pass top=")
    if top not in modules:
        raise UserError(f"the netlist has no module {top!r}")
    module = modules[top]
    for name, cell in module.get("cells", {}).items():
        sub = modules.get(cell["type"])
        if sub is not None and not sub.get("attributes", {}).get("blackbox") and sub.get("cells"):
            raise UserError(f"the netlist is not flattened (cell {name} is a {cell['type']}); "
                            "synthesise with -flatten")
    return top, module


def _param_int(cell: dict, name: str) -> int | None:
    value = cell.get("parameters", {}).get(name)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value and set(value) <= {"0", "1"}:
        return int(value, 2)
    return None


class _Graph:
    """Bit-level arcs in CSR order plus start/endpoint bookkeeping."""

    def __init__(self, module: dict):
        self.names: list[str] = []        # cell name
        self.types: list[str] = []        # cell primitive type
        self.kinds: list[str] = []        # _kind() of each cell
        self.cell_out: list[int] = []     # a driven bit of each cell (for labels)
        self.port_of: dict[int, str] = {}     # top-level input bit -> "name[i]"
        self.driver: dict[int, tuple[int, str]] = {}   # bit -> (cell, pin)
        self.base: dict[int, int] = {}    # LUTRAM/SRL output bit -> stored-data start (1 LUT)
        self.endpoints: list[tuple[int, int, str]] = []   # (bit, cell or -1, pin label)
        self.bram_bits: list[int] = []
        self.unregistered_rambs = 0
        self.unregistered_dsps = 0
        self.unknown_types: dict[str, int] = {}
        self.netnames = module.get("netnames", {})
        self._public: dict[int, str] | None = None
        src: list[int] = []
        dst: list[int] = []
        kinds: list[int] = []
        cells: list[int] = []
        self._collect(module)
        const = {b for b, (ci, _) in self.driver.items() if self.kinds[ci] == "const"}
        for ci, cell in enumerate(self._cells):
            for s, d, k in self._arcs(ci, cell):
                if s not in const:
                    src.append(s)
                    dst.append(d)
                    kinds.append(k)
                    cells.append(ci)
        self._cells = None
        self._csr(src, dst, kinds, cells)

    # -- construction ---------------------------------------------------------------------
    def _collect(self, module: dict) -> None:
        """Drivers, cell table, endpoints and top-level ports."""
        maxbit = 1
        for pname, port in module.get("ports", {}).items():
            bits = port.get("bits", [])
            for i, b in enumerate(bits):
                if isinstance(b, int):
                    maxbit = max(maxbit, b)
                    label = f"port {pname}[{i}]" if len(bits) > 1 else f"port {pname}"
                    if port.get("direction") in ("input", "inout"):
                        self.port_of[b] = label
                    if port.get("direction") in ("output", "inout"):
                        self.endpoints.append((b, -1, label))
        self._cells = []
        for name, cell in module.get("cells", {}).items():
            conns = cell.get("connections", {})
            if not conns:
                continue            # $scopeinfo and other port-less cells
            ci = len(self.names)
            ctype = _base_type(cell["type"])
            self.names.append(name)
            self.types.append(ctype)
            self.kinds.append(_kind(ctype))
            dirs = cell.get("port_directions") or {
                p: "output" if p in _OUTPUT_PINS or p.startswith("DO") else "input" for p in conns}
            cell = {"dirs": dirs, "conns": conns, "raw": cell}
            self._cells.append(cell)
            first_out = -1
            for pin, bits in conns.items():
                if dirs.get(pin) in ("output", "inout"):
                    for b in bits:
                        if isinstance(b, int):
                            self.driver[b] = (ci, pin)
                            maxbit = max(maxbit, b)
                            first_out = b if first_out < 0 else first_out
            self.cell_out.append(first_out)
            if self.kinds[ci] in ("seq", "lutram", "unknown"):
                self._classify_seq(ci, ctype, cell)
        self.nbits = maxbit + 1

    def _classify_seq(self, ci: int, ctype: str, cell: dict) -> None:
        """Endpoints (non-clock inputs) and start-point bookkeeping of a sequential cell."""
        kind = self.kinds[ci]
        if kind == "unknown":
            self.unknown_types[ctype] = self.unknown_types.get(ctype, 0) + 1
        dirs, conns, raw = cell["dirs"], cell["conns"], cell["raw"]
        for pin, bits in conns.items():
            if dirs.get(pin) == "input" and pin not in _CLOCK_PINS:
                for i, b in enumerate(bits):
                    if isinstance(b, int):
                        self.endpoints.append((b, ci, f"{pin}[{i}]" if len(bits) > 1 else pin))
            elif dirs.get(pin) == "output":
                out = [b for b in bits if isinstance(b, int)]
                if kind == "lutram":
                    self.base.update((b, 1) for b in out)
                if ctype.startswith("RAMB") and pin.startswith(("DOUT", "DO")) \
                        and not pin.startswith("DOUTP") and "CAS" not in pin:
                    self.bram_bits += out
        if ctype.startswith("RAMB") and not (_param_int(raw, "DOA_REG") or
                                             _param_int(raw, "DOB_REG")):
            self.unregistered_rambs += 1
        if ctype.startswith("DSP48") and _param_int(raw, "PREG") == 0:
            self.unregistered_dsps += 1

    def _arcs(self, ci: int, cell: dict):
        """Yield (input bit, output bit, arc kind) through combinational cell ``ci``."""
        ctype, kind = self.types[ci], self.kinds[ci]
        dirs, conns = cell["dirs"], cell["conns"]
        ins = {p: b for p, b in conns.items() if dirs.get(p) == "input"}
        outs = {p: b for p, b in conns.items() if dirs.get(p) == "output"}
        if kind in ("lut", "muxf", "buf"):
            arc = {"lut": _LUT, "muxf": _MUXF, "buf": _ZERO}[kind]
            for ibits in ins.values():
                for s in ibits:
                    if isinstance(s, int):
                        for obits in outs.values():
                            for d in obits:
                                if isinstance(d, int):
                                    yield s, d, arc
        elif kind == "carry":
            yield from self._carry_arcs(ctype, cell["raw"], ins, outs)
        elif kind == "lutram":
            for pin, ibits in ins.items():
                for opin in _lutram_read_outputs(pin, list(outs)):
                    for s in ibits:
                        if isinstance(s, int):
                            for d in outs[opin]:
                                if isinstance(d, int):
                                    yield s, d, _LUT

    def _carry_arcs(self, ctype: str, raw: dict, ins: dict, outs: dict):
        # Ref: UG574 (UltraScale CLB User Guide), "Carry Logic": CARRY8 O[i]/CO[i] from S/DI[0..i]
        # and CI; CARRY_TYPE = DUAL_CY4 splits it into two 4-bit chains, the upper one fed by
        # CI_TOP.  Ref: UG953/UG974 (Libraries Guides) for CARRY4 (CI, CYINIT, DI, S, O, CO).
        def entry(pin, bit):
            if pin in ("CI", "CI_TOP") and bit in self.driver:
                dci, dpin = self.driver[bit]
                if dpin == "CO" or (dpin == "O" and self.types[dci] == "MUXCY"):
                    return _CONT
            return _ENTER
        if ctype not in ("CARRY4", "CARRY8"):     # MUXCY / XORCY: every input reaches O
            for pin, ibits in ins.items():
                for s in ibits:
                    if isinstance(s, int):
                        for d in outs.get("O", []):
                            if isinstance(d, int):
                                yield s, d, entry(pin, s)
            return
        dual = ctype == "CARRY8" and "DUAL" in str(raw.get("parameters", {}).get("CARRY_TYPE", ""))
        width = 8 if ctype == "CARRY8" else 4
        for i in range(width):
            lo = 4 if dual and i >= 4 else 0
            srcs = [(p, b) for p in ("S", "DI") for b in ins.get(p, [])[lo:i + 1]]
            cins = ("CI_TOP",) if lo else ("CI", "CYINIT")
            srcs += [(p, b) for p in cins for b in ins.get(p, [])]
            for pin, s in srcs:
                if isinstance(s, int):
                    for opin in ("O", "CO"):
                        obits = outs.get(opin, [])
                        if i < len(obits) and isinstance(obits[i], int):
                            yield s, obits[i], entry(pin, s)

    def _csr(self, src, dst, kinds, cells) -> None:
        n = self.nbits
        head = [0] * (n + 1)
        for s in src:
            head[s + 1] += 1
        for i in range(n):
            head[i + 1] += head[i]
        pos = head[:-1]
        m = len(src)
        self.a_src, self.a_dst = [0] * m, [0] * m
        self.a_kind, self.a_cell = [0] * m, [0] * m
        for i in range(m):
            j = pos[src[i]]
            pos[src[i]] = j + 1
            self.a_src[j], self.a_dst[j] = src[i], dst[i]
            self.a_kind[j], self.a_cell[j] = kinds[i], cells[i]
        self.head = head

    # -- analysis -------------------------------------------------------------------------
    def topo_order(self) -> tuple[list[int], int]:
        """Bits in topological order (Kahn, iterative) and the number left in loops."""
        indeg = [0] * self.nbits
        for d in self.a_dst:
            indeg[d] += 1
        stack = [b for b in range(self.nbits) if indeg[b] == 0]
        order, head, a_dst = [], self.head, self.a_dst
        while stack:
            b = stack.pop()
            order.append(b)
            for j in range(head[b], head[b + 1]):
                d = a_dst[j]
                indeg[d] -= 1
                if indeg[d] == 0:
                    stack.append(d)
        return order, self.nbits - len(order)

    def longest(self, order: list[int], lut_first: bool, starts: list[int] | None = None,
                no_ports: bool = False):
        """Longest-path DP: (value, predecessor arc) per bit.

        ``lut_first``: key (LUT levels, carry chains, carry cells), else (chains, LUTs, cells).
        ``starts``: only these bits start paths (value -1 = not reached); ``no_ports``: the
        top-level input ports do not.
        """
        w_lut, w_chain = (2 * _SHIFT, _SHIFT) if lut_first else (_SHIFT, 2 * _SHIFT)
        delta = {_ZERO: 0, _MUXF: 0, _LUT: 1 << w_lut, _ENTER: (1 << w_chain) + 1, _CONT: 1}
        arc_delta = [delta[k] for k in self.a_kind]
        if starts is None:
            val = [0] * self.nbits
            for d in self.a_dst:
                val[d] = -1
            for b, luts in self.base.items():
                val[b] = luts << w_lut
            if no_ports:
                for b in self.port_of:
                    val[b] = -1
        else:
            val = [-1] * self.nbits
            for b in starts:
                val[b] = 0
        pred = [-1] * self.nbits
        head, a_dst = self.head, self.a_dst
        for b in order:
            v = val[b]
            if v < 0:
                continue
            for j in range(head[b], head[b + 1]):
                nv = v + arc_delta[j]
                d = a_dst[j]
                if nv > val[d]:
                    val[d] = nv
                    pred[d] = j
        return val, pred

    # -- labels ---------------------------------------------------------------------------
    def public_name(self, bit: int) -> str | None:
        if self._public is None:
            self._public = {}
            for name, net in self.netnames.items():
                if net.get("hide_name") or name.startswith("$"):
                    continue
                bits = net.get("bits", [])
                for i, b in enumerate(bits):
                    if isinstance(b, int) and b not in self._public:
                        self._public[b] = f"{name}[{i}]" if len(bits) > 1 else name
        return self._public.get(bit)

    def cell_label(self, ci: int, bit: int | None = None) -> str:
        name = self.names[ci]
        if name.startswith("$"):
            name = self.public_name(self.cell_out[ci] if bit is None else bit) or name
        return f"{self.types[ci]} {name}"

    def start_label(self, bit: int) -> str:
        if bit in self.driver:
            ci, pin = self.driver[bit]
            return f"{self.cell_label(ci, bit)} ({pin})"
        return self.port_of.get(bit) or f"undriven {self.public_name(bit) or bit}"

    def end_label(self, ci: int, pin: str) -> str:
        return pin if ci < 0 else f"{self.cell_label(ci)} ({pin})"


def _lutram_read_outputs(pin: str, outputs: list[str]) -> list[str]:
    """Data outputs that a LUTRAM/SRL address pin reads combinationally."""
    # Ref: UG574, "Distributed RAM" / "Shift Registers": asynchronous read, synchronous write;
    # port names as in UG974 (RAM32M ADDRA..D -> DOA..D, RAM64X1D A -> SPO and DPRA -> DPO,
    # SRLC32E A -> Q).
    m = re.fullmatch(r"ADDR([A-H])", pin)
    if m:
        return [o for o in outputs if o == "DO" + m.group(1)]
    if pin.startswith("DPRA"):
        return [o for o in outputs if o == "DPO"]
    if pin == "A" or re.fullmatch(r"A\d", pin):
        return [o for o in outputs if o in ("O", "SPO", "Q")]
    return []


def _trace(g: _Graph, pred: list[int], bit: int, end: tuple[int, int, str]) -> dict:
    """The path ending at endpoint ``end`` (its bit is ``bit``) as a summary dict."""
    arcs = []
    while pred[bit] >= 0:
        arcs.append(pred[bit])
        bit = g.a_src[pred[bit]]
    arcs.reverse()
    kinds = [g.a_kind[j] for j in arcs]
    start = g.start_label(bit)
    path = [start.rsplit(" (", 1)[0]]
    path += [g.cell_label(g.a_cell[j], g.a_dst[j]) for j in arcs]
    end_label = g.end_label(end[1], end[2])
    path.append(end_label.rsplit(" (", 1)[0])
    return {"lut_levels": kinds.count(_LUT) + g.base.get(bit, 0),
            "carry_chains": kinds.count(_ENTER),
            "carry_cells": kinds.count(_ENTER) + kinds.count(_CONT),
            "muxf": kinds.count(_MUXF), "path": path, "start": start, "end": end_label}


def _worst(g: _Graph, val: list[int], pred: list[int], no_ports: bool = False) -> dict | None:
    best, best_end = -1, None
    for end in g.endpoints:
        if val[end[0]] > best and not (no_ports and end[1] < 0):
            best, best_end = val[end[0]], end
    return None if best_end is None else _trace(g, pred, best_end[0], best_end)


def _module_of(g: _Graph, end: tuple[int, int, str]) -> str:
    bit, ci, pin = end
    if ci < 0:
        return "(ports)"
    name = g.names[ci]
    if name.startswith("$"):
        name = g.public_name(g.cell_out[ci]) or g.public_name(bit) or ""
    return name.split(".", 1)[0] if "." in name else "(top)"


def _endpoint_stats(g: _Graph, val_l: list[int], val_c: list[int]) -> dict:
    hist: dict[int, int] = {}
    by_module: dict[str, dict] = {}
    violating = 0
    for end in g.endpoints:
        v1, v2 = val_l[end[0]], val_c[end[0]]
        if v1 < 0:
            continue
        luts, chains = v1 >> 2 * _SHIFT, v2 >> 2 * _SHIFT
        bad = luts > LUT_LEVEL_BUDGET or chains > CARRY_CHAIN_BUDGET
        violating += bad
        hist[luts] = hist.get(luts, 0) + 1
        mod = by_module.setdefault(_module_of(g, end), {"endpoints": 0, "lut_levels": -1,
                                                       "carry_chains": 0, "violating": 0})
        mod["endpoints"] += 1
        mod["violating"] += bad
        if luts > mod["lut_levels"]:
            mod["lut_levels"], mod["worst_end"] = luts, g.end_label(end[1], end[2])
        mod["carry_chains"] = max(mod["carry_chains"], chains)
    return {"endpoints": sum(hist.values()), "violating_endpoints": violating,
            "endpoint_lut_histogram": dict(sorted(hist.items())),
            "by_module": dict(sorted(by_module.items()))}


def logic_depth(netlist, top: str | None = None) -> dict:
    """Longest register-to-register path of a flattened Yosys ``synth_xilinx`` JSON netlist.

    Parameters
    ----------
    netlist : path or dict
        ``write_json`` output (a path) or the parsed document.
    top : str, optional
        Module to analyse (default: the module marked ``top``, or the only non-blackbox one).

    Returns a dict (see the module docstring for what is counted):

    * ``lut_levels``, ``carry_chains``, ``carry_cells``, ``muxf``, ``path`` (``"TYPE name"``
      from start to end; auto-named cells are shown by the public net they drive), ``start``,
      ``end`` (with the pin): the worst path;
    * ``max_carry_chains`` and ``carry_path`` (same keys as the worst path): the most carry
      chains on any path;
    * ``reg_to_reg``: the worst path between sequential cells only (no top-level port at
      either end; same keys, ``None`` if there is none);
    * ``meets_300mhz_rule``: every path has <= 4 LUT levels and <= 1 carry chain;
    * ``from_bram``: worst path from a block RAM output (same keys; ``None`` without RAMB)
      plus ``unregistered_rambs``;
    * ``endpoints``, ``violating_endpoints``, ``endpoint_lut_histogram`` ({LUT levels: number
      of endpoint pins}), ``by_module`` ({first name component: endpoints, lut_levels,
      carry_chains, violating, worst_end});
    * ``rule``, ``method``, ``notes`` (unknown cells, loops, unregistered DSPs), ``cells``,
      ``seconds``.
    """
    t0 = time.monotonic()
    doc = netlist if isinstance(netlist, dict) else load_netlist(netlist)
    _, module = _top_module(doc, top)
    g = _Graph(module)
    order, loop_bits = g.topo_order()
    val_l, pred_l = g.longest(order, lut_first=True)
    val_c, pred_c = g.longest(order, lut_first=False)
    worst = _worst(g, val_l, pred_l)
    if worst is None:
        raise UserError("the netlist has no path endpoints (no flip-flops, RAMs or outputs)")
    carry = _worst(g, val_c, pred_c)
    val_r, pred_r = g.longest(order, lut_first=True, no_ports=True)
    reg_to_reg = _worst(g, val_r, pred_r, no_ports=True)
    from_bram = None
    if g.bram_bits:
        val_b, pred_b = g.longest(order, lut_first=True, starts=g.bram_bits)
        from_bram = _worst(g, val_b, pred_b)
        if from_bram is not None:
            from_bram["unregistered_rambs"] = g.unregistered_rambs
    notes = []
    if g.unknown_types:
        notes.append("cells of unknown type treated as sequential: " +
                     ", ".join(f"{t} x{n}" for t, n in sorted(g.unknown_types.items())))
    if loop_bits:
        notes.append(f"{loop_bits} net bits are on or behind combinational loops (not counted)")
    if g.unregistered_dsps:
        notes.append(f"{g.unregistered_dsps} DSP48 without PREG treated as sequential")
    meets = (worst["lut_levels"] <= LUT_LEVEL_BUDGET and
             carry["carry_chains"] <= CARRY_CHAIN_BUDGET)
    return {**worst, "meets_300mhz_rule": meets, "max_carry_chains": carry["carry_chains"],
            "carry_path": carry, "reg_to_reg": reg_to_reg, "from_bram": from_bram, **_endpoint_stats(g, val_l, val_c),
            "rule": {"max_lut_levels": LUT_LEVEL_BUDGET, "max_carry_chains": CARRY_CHAIN_BUDGET},
            "method": METHOD, "notes": notes, "cells": len(g.names),
            "seconds": round(time.monotonic() - t0, 2)}
