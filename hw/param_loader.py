"""Parameter loader: 32-bit register writes -> whole memory words, for writable parameters.

An accelerator built with writable parameters (``Accelerator(..., writable_params=True)``,
``python -m hw.generate --writable-params``) has RAMs instead of ROMs for every weight,
threshold and gate memory.  The host fills them through two AXI4-Lite registers
(docs/hardware.md, "Writable parameters"):

* ``PARAM_SELECT`` (write): bits [31:20] the memory index ``3*layer + kind`` (kind 0 weights,
  1 thresholds, 2 gates: :data:`sw.compiled_net.MEMORY_KINDS`), bits [19:0] the first word address;
  resets the chunk count.
* ``PARAM_DATA`` (write): the next 32-bit chunk of the current word, least significant chunk
  first; after ``ceil(width / 32)`` chunks the word (exactly the ``.mem`` file's word) is
  written to the memory and the address advances by one.

Writes to an index with no memory are ignored.  Only while the accelerator is idle.
"""

from __future__ import annotations

from amaranth import Array, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ParamLoader", "SELECT_ADDR_BITS", "SELECT_INDEX_BITS", "select_word"]

#: Bits of the word address and of the memory index in ``PARAM_SELECT``.
SELECT_ADDR_BITS = 20
SELECT_INDEX_BITS = 12


def select_word(index: int, addr: int = 0) -> int:
    """The ``PARAM_SELECT`` value for memory ``index`` starting at word ``addr``."""
    if not 0 <= index < 1 << SELECT_INDEX_BITS or not 0 <= addr < 1 << SELECT_ADDR_BITS:
        raise ValueError(f"memory index {index} / address {addr} out of range")
    return index << SELECT_ADDR_BITS | addr


class ParamLoader(wiring.Component):
    """Assemble memory words from register writes and write them.

    Parameters
    ----------
    widths : dict[int, int]
        Memory index -> word width in bits (the memories that exist).

    Interface
    ---------
    select_we, data_we : In(1)
        One-cycle strobes of a write to ``PARAM_SELECT`` / ``PARAM_DATA``; ``wdata`` In(32)
        holds the written value in that cycle.
    we : Out(1), index : Out(12), addr : Out(20), data : Out(max width)
        A memory write: in a cycle with ``we`` high, word ``addr`` of memory ``index``
        becomes ``data`` (zero-extended beyond the memory's width).  ``we`` rises the cycle
        after the strobe of the word's last chunk.
    """

    def __init__(self, widths: dict[int, int]):
        if not widths:
            raise ValueError("widths must name at least one memory")
        for index, width in widths.items():
            if not (isinstance(index, int) and 0 <= index < 1 << SELECT_INDEX_BITS):
                raise ValueError(f"memory index must be in [0, {1 << SELECT_INDEX_BITS}), "
                                 f"not {index!r}")
            if not (isinstance(width, int) and width >= 1):
                raise ValueError(f"width of memory {index} must be a positive int, "
                                 f"not {width!r}")
        self._widths = dict(widths)
        self._max_width = max(widths.values())
        super().__init__({
            "select_we": In(1), "data_we": In(1), "wdata": In(32),
            "we": Out(1), "index": Out(SELECT_INDEX_BITS), "addr": Out(SELECT_ADDR_BITS),
            "data": Out(self.max_width),
        })

    @property
    def widths(self) -> dict[int, int]:
        return dict(self._widths)

    @property
    def max_width(self) -> int:
        """Widest word, rounded up to whole 32-bit chunks."""
        return -(-self._max_width // 32) * 32

    def chunks(self, index: int) -> int:
        """32-bit writes per word of memory ``index``."""
        return -(-self._widths[index] // 32)

    def elaborate(self, platform):
        m = Module()
        n_chunks = self.max_width // 32
        top = max(self._widths) + 1
        # Chunks per word of each index (1 for indices without a memory: ignored anyway).
        table = Array(Const(self.chunks(i) if i in self._widths else 1, range(n_chunks + 1))
                      for i in range(top))
        index = Signal(SELECT_INDEX_BITS)
        addr = Signal(SELECT_ADDR_BITS)
        chunk = Signal(range(max(n_chunks, 2)))
        last = Signal(range(n_chunks + 1))          # chunks of the selected memory
        word = Signal(self.max_width)
        m.d.comb += [self.index.eq(index), self.data.eq(word)]
        m.d.sync += self.we.eq(0)
        with m.If(self.select_we):
            sel = self.wdata[SELECT_ADDR_BITS:]
            m.d.sync += [index.eq(sel), addr.eq(self.wdata[:SELECT_ADDR_BITS]), chunk.eq(0),
                         word.eq(0),
                         last.eq(Mux(sel < top, table[sel], 1))]
        with m.Elif(self.data_we):
            m.d.sync += word.word_select(chunk, 32).eq(self.wdata)
            with m.If(chunk == last - 1):
                m.d.sync += [self.we.eq(1), chunk.eq(0), self.addr.eq(addr),
                             addr.eq(addr + 1)]
            with m.Else():
                m.d.sync += chunk.eq(chunk + 1)
        return m
