"""Read-only memories initialised from the exported ``.mem`` files.

The ``.mem`` files are the source of truth for weights, thresholds and gates
(docs/compiled-network.md, "Memory files").  :class:`InitFileROM` has two
elaborations with the same one-cycle read latency:

* ``rom_mode="sim"``: an :class:`amaranth.lib.memory.Memory` initialised from the file
  (for the Amaranth simulator);
* ``rom_mode="verilog"``: an ``Instance`` of the hand-written ``fracbnn_rom`` module
  (``hw/verilog/fracbnn_rom.v``, ``$readmemh(INIT_FILE)``), so the emitted Verilog
  loads the file at elaboration and new weights need no new HDL.

With ``writable=True`` the memory also has a write port (``w_en``, ``w_addr``, ``w_data``:
a whole word of the ``.mem`` file, of which a slice ROM keeps its bits); the Verilog form is
then a ``fracbnn_ram`` instance.  Accelerators built with writable parameters load new
weights, thresholds and gates at run time (docs/hardware.md, "Writable parameters").
"""

from __future__ import annotations

from pathlib import Path

from amaranth.hdl import ClockSignal, Instance, Module
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from sw.memfile import read_mem

__all__ = ["ROM_MODES", "ROM_STYLES", "VERILOG_ROM_SOURCE", "VERILOG_RAM_SOURCE", "InitFileROM"]

#: Accepted ``rom_mode`` values.
ROM_MODES = ("sim", "verilog")
#: Accepted ``style`` values (placement of the Verilog ROM; see fracbnn_rom.v).
ROM_STYLES = ("auto", "block", "distributed")

#: The Verilog module instantiated in ``rom_mode="verilog"``.
VERILOG_ROM_SOURCE = Path(__file__).with_name("verilog") / "fracbnn_rom.v"
#: The Verilog module instantiated for ``writable=True``.
VERILOG_RAM_SOURCE = Path(__file__).with_name("verilog") / "fracbnn_ram.v"


class InitFileROM(wiring.Component):
    """A ``width`` x ``depth`` ROM with one synchronous read port.

    Parameters
    ----------
    width, depth : int
        Word width in bits and number of words (both >= 1).
    init_file : str or Path
        The ``.mem`` file (exactly ``depth`` words of ``ceil(width/4)`` hex digits); it is
        read and checked here in both modes (:class:`sw.errors.UserError` if missing or
        malformed).
    rom_mode : {"sim", "verilog"}
        Elaboration: Amaranth memory, or ``fracbnn_rom`` instance.
    init_name : str, optional
        The ``INIT_FILE`` parameter of the Verilog instance; default: the file's base name
        (the generator copies the ``.mem`` files next to the Verilog).
    file_width : int, optional
        Word width of the ``.mem`` file when the ROM keeps only a slice of each word (one PE
        lane's bits of a wide weight file); default ``width`` (the whole word).
    lsb : int, optional
        First file-word bit the ROM keeps: word ``k`` of the ROM is bits
        ``[lsb, lsb + width)`` of file word ``k``.  Default 0.  The Verilog form passes
        ``FILE_WIDTH``/``LSB`` to ``fracbnn_rom``, which ``$readmemh``'s the wide file and
        keeps its slice, so a per-lane ROM needs no extra export file.
    style : {"auto", "block", "distributed"}
        Placement of the Verilog ROM (``STYLE`` of ``fracbnn_rom``: 0, 1, 2 in this order,
        i.e. its ``rom_style``/``ram_style`` attribute): ``fracbnn_rom``'s own size rule
        (default), or forced; the generator always forces the placement
        :mod:`hw.memory_style` chose.  No effect in ``rom_mode="sim"`` and none on timing.
    writable : bool
        Add the write port below (default ``False``).

    Ports
    -----
    addr : In(addr_width)
        Read address, sampled at the clock edge ending a cycle in which ``en`` is high.
    en : In(1), init 1
        Read enable; while low, ``data`` holds its value.
    data : Out(width)
        ``mem[addr]`` of the previous enabled cycle (1-cycle read latency).
    w_en, w_addr, w_data : In(1), In(addr_width), In(file_width)   (``writable`` only)
        In a cycle with ``w_en`` high, word ``w_addr`` becomes bits ``[lsb, lsb + width)``
        of ``w_data``; reads see it from the next cycle.
    """

    def __init__(self, width: int, depth: int, init_file, *, rom_mode: str = "sim",
                 init_name: str | None = None, file_width: int | None = None, lsb: int = 0,
                 style: str = "auto", writable: bool = False):
        if file_width is None:
            file_width = width
        for name, value in (("width", width), ("depth", depth), ("file_width", file_width)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, not {value!r}")
        if not isinstance(lsb, int) or isinstance(lsb, bool) or not 0 <= lsb <= file_width - width:
            raise ValueError(f"lsb must be an int in [0, file_width - width] = "
                             f"[0, {file_width - width}], not {lsb!r}")
        if rom_mode not in ROM_MODES:
            raise ValueError(f"rom_mode must be one of {ROM_MODES}, not {rom_mode!r}")
        if style not in ROM_STYLES:
            raise ValueError(f"style must be one of {ROM_STYLES}, not {style!r}")
        self._style = style
        self._writable = bool(writable)
        self._width = width
        self._depth = depth
        self._init_file = Path(init_file)
        self._rom_mode = rom_mode
        self._init_name = init_name if init_name is not None else self._init_file.name
        self._file_width = file_width
        self._lsb = lsb
        mask = (1 << width) - 1
        self._words = tuple((w >> lsb) & mask
                            for w in read_mem(self._init_file, file_width, depth))
        members = {"addr": In(self.addr_width), "en": In(1, init=1), "data": Out(width)}
        if self._writable:
            members.update({"w_en": In(1), "w_addr": In(self.addr_width),
                            "w_data": In(file_width)})
        super().__init__(members)

    @property
    def width(self) -> int:
        """Word width in bits."""
        return self._width

    @property
    def depth(self) -> int:
        """Number of words."""
        return self._depth

    @property
    def addr_width(self) -> int:
        """Address bits (at least 1)."""
        return max(1, (self._depth - 1).bit_length())

    @property
    def init_file(self) -> Path:
        """The ``.mem`` file the contents come from."""
        return self._init_file

    @property
    def init_name(self) -> str:
        """``INIT_FILE`` of the Verilog instance."""
        return self._init_name

    @property
    def style(self) -> str:
        """Placement: ``"auto"``, ``"block"`` or ``"distributed"``."""
        return self._style

    @property
    def rom_mode(self) -> str:
        """``"sim"`` or ``"verilog"``."""
        return self._rom_mode

    @property
    def words(self) -> tuple[int, ...]:
        """The contents, as read from :attr:`init_file` (and sliced)."""
        return self._words

    @property
    def file_width(self) -> int:
        """Word width of :attr:`init_file` (``width`` unless the ROM keeps a slice)."""
        return self._file_width

    @property
    def lsb(self) -> int:
        """First bit of each file word that the ROM keeps."""
        return self._lsb

    @property
    def writable(self) -> bool:
        """Has a write port."""
        return self._writable

    @property
    def latency(self) -> int:
        """Read latency in cycles (always 1)."""
        return 1

    def elaborate(self, platform):
        m = Module()
        if self._rom_mode == "sim":
            m.submodules.mem = mem = memory.Memory(
                shape=self._width, depth=self._depth, init=self._words)
            port = mem.read_port(domain="sync", transparent_for=())
            m.d.comb += [port.addr.eq(self.addr), port.en.eq(self.en), self.data.eq(port.data)]
            if self._writable:
                wport = mem.write_port()
                m.d.comb += [wport.en.eq(self.w_en), wport.addr.eq(self.w_addr),
                             wport.data.eq(self.w_data[self._lsb:self._lsb + self._width])]
        else:
            write = ({} if not self._writable else
                     {"i_we": self.w_en, "i_waddr": self.w_addr, "i_wdata": self.w_data})
            m.submodules.rom = Instance(
                "fracbnn_ram" if self._writable else "fracbnn_rom",
                p_WIDTH=self._width,
                p_DEPTH=self._depth,
                p_ADDR_WIDTH=self.addr_width,
                p_INIT_FILE=self._init_name,
                **({} if self._file_width == self._width and self._lsb == 0 else
                   {"p_FILE_WIDTH": self._file_width, "p_LSB": self._lsb}),
                **({} if self._style == "auto" else {"p_STYLE": ROM_STYLES.index(self._style)}),
                i_clk=ClockSignal("sync"),
                i_en=self.en,
                i_addr=self.addr,
                o_data=self.data,
                **write,
            )
        return m
