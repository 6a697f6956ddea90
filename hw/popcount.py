"""Pipelined popcount of a wide bit vector: an adder tree, with or without a LUT counter level.

Two styles (:data:`POPCOUNT_STYLES`), the same ports and the same count:

``"adder"``
    The input bits are added pairwise, level by level (``ceil(log2(width))`` adder levels:
    1+1 -> 2 bits, 2+2 -> 3 bits, ...).
``"compressor"``
    A first level of 3:2 counters turns every 3 input bits into their 2-bit count (two
    functions of 3 bits: on a LUT6 FPGA each also holds a 2-input function in front of
    each bit, such as the XNOR of the layer engine, so two LUTs count three XNOR lanes);
    then the counts are added pairwise as above (``ceil(log2(ceil(width/3)))`` adder
    levels).  Behind the engine's XNOR it needs 7-17 % fewer LUTs than ``"adder"`` on
    UltraScale+ (Yosys, SIMD 32-256; docs/hardware.md, "Popcount"), fewer flip-flops, the
    same logic depth, and never more register stages.

Both: a register stage after every ``levels_per_stage`` levels (the counter level counts as
one) and after the last.  Optionally the input vector is registered first
(``register_input``), so that the path from a block-RAM output or the XNOR in front of the
tree ends at a flip-flop.  The tree never stalls: a new vector may enter every cycle and
comes out :func:`popcount_latency` cycles later, with a valid bit travelling alongside.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["PopcountTree", "popcount_width", "popcount_latency", "popcount_levels",
           "POPCOUNT_STYLES", "DEFAULT_POPCOUNT_STYLE"]

#: Tree styles of :class:`PopcountTree`.
POPCOUNT_STYLES = ("adder", "compressor")

#: The style :class:`PopcountTree` and :func:`popcount_latency` use by default.
DEFAULT_POPCOUNT_STYLE = "adder"

#: Input bits per counter of the ``"compressor"`` style's first level.
_COUNTER_BITS = 3


def popcount_width(width: int) -> int:
    """Bits of a count of up to ``width`` ones (``width.bit_length()``)."""
    return max(1, width.bit_length())


def _check_width(width) -> None:
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise ValueError(f"width must be a positive int, not {width!r}")


def _check_levels(levels_per_stage) -> None:
    if (not isinstance(levels_per_stage, int) or isinstance(levels_per_stage, bool)
            or levels_per_stage < 1):
        raise ValueError(f"levels_per_stage must be a positive int, not {levels_per_stage!r}")


def _check_style(style) -> None:
    if style not in POPCOUNT_STYLES:
        raise ValueError(f"style must be one of {POPCOUNT_STYLES}, not {style!r}")


def popcount_levels(width: int, style: str = DEFAULT_POPCOUNT_STYLE) -> int:
    """Logic levels of a ``width``-bit tree: adder levels, plus the counter level.

    ``"adder"``: ``ceil(log2(width))``.  ``"compressor"``: 0 for width 1, else
    ``1 + ceil(log2(ceil(width / 3)))`` (the 3:2 counters, then the adder levels over their
    counts), which is never more than the adder style's.
    """
    _check_width(width)
    _check_style(style)
    if style == "adder":
        return (width - 1).bit_length()
    if width == 1:
        return 0
    counters = -(-width // _COUNTER_BITS)
    return 1 + (counters - 1).bit_length()


def popcount_latency(width: int, levels_per_stage: int = 2, *, register_input: bool = True,
                     style: str = DEFAULT_POPCOUNT_STYLE) -> int:
    """Register stages (cycles) of a :class:`PopcountTree` of ``width`` bits.

    ``ceil(popcount_levels(width, style) / levels_per_stage)``, plus 1 for the input
    register if ``register_input`` (so at least 1, except a 1-bit tree without input
    register, which is combinational).  For example with ``levels_per_stage=2`` and no
    input register, widths 32 / 64 / 128 / 256 take 3 / 3 / 4 / 4 cycles in both styles;
    the ``"compressor"`` style is never slower and sometimes faster (width 5..6: 1 cycle,
    not 2; 17..24: 2, not 3).
    """
    _check_levels(levels_per_stage)
    levels = popcount_levels(width, style)
    return int(register_input) + -(-levels // levels_per_stage)


def _add_narrow(a, b):
    """``a + b`` of two 1- or 2-bit values of the same width, written as gates: (sum,
    carry) of 1-bit values, a 3-bit ripple sum of 2-bit ones.  Every output is a function of
    at most 4 operand bits, so that each of the first two adder levels is one LUT4 level
    (with the XNORs in front of level 1: two ``(w, x)`` pairs per LUT4)."""
    if len(a) == 1:
        return Cat(a ^ b, a & b)
    k0 = a[0] & b[0]
    return Cat(a[0] ^ b[0], a[1] ^ b[1] ^ k0, (a[1] & b[1]) | ((a[1] ^ b[1]) & k0))


def _count3(bits: list) -> list:
    """The binary count of 1 to 3 one-bit values, least significant bit first.

    Written as gates (parity and majority, not ``+``, which Yosys would map to a carry
    chain): each output is one LUT of the 3 inputs (and of what drives them, up to 6
    LUT inputs: the XNOR of 3 (w, x) pairs).
    """
    if len(bits) == 1:
        return [bits[0]]
    if len(bits) == 2:
        a, b = bits
        return [a ^ b, a & b]
    a, b, c = bits
    return [a ^ b ^ c, (a & b) | (a & c) | (b & c)]


class PopcountTree(wiring.Component):
    """Count the ones of ``i_data`` (a pipelined, never-stalling adder or compressor tree).

    Parameters
    ----------
    width : int
        Input bits (>= 1).
    levels_per_stage : int
        Logic levels between register stages (>= 1): adder levels, and for the
        ``"compressor"`` style also its counter level.  Default 2: on ECP5 two levels of
        small adders plus routing fit in about 5 ns, on UltraScale+ both styles stay within
        4 LUT levels and 1 carry chain per stage (``python -m hw.popcount_bench``).
    register_input : bool
        Register ``i_data`` before the first level (default).  Without it the first level is
        combinational from ``i_data``: for users that register the operands themselves (the
        MVTU registers the weight-ROM word, so that the register can sit in the block RAM's
        output register, and the activations, then XNORs them here).
    style : str
        ``"adder"`` or ``"compressor"`` (module docstring; default
        :data:`DEFAULT_POPCOUNT_STYLE`).
    narrow_adds : str or None
        How the adder levels whose operands are 1 or 2 bits wide are written: ``"add"``
        (``+``: Yosys maps them to carry chains), ``"gates"`` (:func:`_add_narrow`: each
        output a function of at most 4 operand bits, one LUT4 level per adder level; on
        ECP5 the ``tiny`` network's critical path went from 4 LUT levels behind the weight
        block RAMs to 2), or ``None`` (default): ``"gates"`` where the ``platform`` given
        to elaboration has ``lut_inputs == 4`` (:data:`hw.ecp5.ECP5_ELABORATION`), else
        ``"add"`` (UltraScale+: ``"gates"`` costs ~10 % more LUTs for the same depth).
        The count and the latency are the same.

    Ports
    -----
    i_data : In(width)
        The vector whose ones are counted.
    i_valid : In(1)
        Marks ``i_data`` as meaningful; delayed with the data to ``o_valid``.
    o_count : Out(popcount_width(width))
        ``popcount(i_data)`` of the vector presented ``latency`` cycles earlier.
    o_valid : Out(1)
        ``i_valid`` of that vector.

    Timing: a vector presented in cycle ``t`` appears at the outputs in cycle
    ``t + latency``, ``latency = popcount_latency(width, levels_per_stage,
    register_input=register_input, style=style)`` (``latency == 0``, only for a 1-bit tree
    without input register: combinationally in the same cycle).  One vector per cycle, no
    stall input.  Reset clears the valid pipeline only: the count registers have no reset
    (fewer loads on the reset net; a count is only read beside its valid bit).
    """

    # Ref: FINN's RTL MVU and the FPGA popcount / compressor-tree literature (e.g. M. Kumm,
    # P. Zipf, "Efficient high speed compression trees on Xilinx FPGAs"; M. T. Preusser,
    # "Generic and universal parallel matrix summation with a flexible compression goal for
    # Xilinx FPGAs", FPL 2017): count the XNOR bits with LUT-sized parallel counters
    # before adding, since a LUT6 sees 3 (w, x) pairs and two LUT6 give the 2-bit count of
    # 3 XNORs, where an adder tree starting from single bits spends a LUT per XNOR lane on
    # 1+1 additions.  The wider counters of that literature (6:3, and GPCs built on the carry
    # chain) are not used: Yosys maps them to more LUTs than this tree (docs/hardware.md).

    def __init__(self, width: int, *, levels_per_stage: int = 2, register_input: bool = True,
                 style: str = DEFAULT_POPCOUNT_STYLE, narrow_adds: str | None = None):
        _check_width(width)
        _check_levels(levels_per_stage)
        _check_style(style)
        if narrow_adds not in (None, "add", "gates"):
            raise ValueError(f"narrow_adds must be None, 'add' or 'gates', not {narrow_adds!r}")
        self._narrow_adds = narrow_adds
        self._width = width
        self._levels_per_stage = levels_per_stage
        self._register_input = bool(register_input)
        self._style = style
        super().__init__({
            "i_data": In(width),
            "i_valid": In(1),
            "o_count": Out(popcount_width(width)),
            "o_valid": Out(1),
        })

    @property
    def width(self) -> int:
        """Input bits."""
        return self._width

    @property
    def levels_per_stage(self) -> int:
        """Logic levels between register stages."""
        return self._levels_per_stage

    @property
    def register_input(self) -> bool:
        """Whether ``i_data`` is registered before the first level."""
        return self._register_input

    @property
    def style(self) -> str:
        """``"adder"`` or ``"compressor"``."""
        return self._style

    @property
    def latency(self) -> int:
        """Cycles from ``i_data`` to ``o_count`` (register stages of the tree)."""
        return popcount_latency(self._width, self._levels_per_stage,
                                register_input=self._register_input, style=self._style)

    def elaborate(self, platform):
        m = Module()
        gates = (self._narrow_adds == "gates" or self._narrow_adds is None
                 and getattr(platform, "lut_inputs", None) == 4)
        # Stage 1 (optional): the input register.
        data, valid, stage = self.i_data, self.i_valid, 0
        if self._register_input:
            data, valid, stage = (Signal(self._width, name="p0_data", reset_less=True),
                                  Signal(name="p0_valid"), 1)
            m.d.sync += [data.eq(self.i_data), valid.eq(self.i_valid)]

        def register(terms, valid, stage):
            # A register stage after every levels_per_stage levels and after the last.
            stage += 1
            regs = []
            for k, (t, top) in enumerate(terms):
                r = Signal(unsigned(len(t)), name=f"p{stage}_s{k}", reset_less=True)
                m.d.sync += r.eq(t)
                regs.append((r, top))
            v = Signal(name=f"p{stage}_valid")
            m.d.sync += v.eq(valid)
            return regs, v, stage

        # Terms: (value, largest value it can hold).  Level 0: the input bits.
        terms = [(data[k], 1) for k in range(self._width)]
        level = 0
        if self._style == "compressor" and self._width > 1:
            # The counter level: each 3 bits -> their 2-bit count (a last 1 or 2 bits too).
            counts = []
            for k in range(0, self._width, _COUNTER_BITS):
                group = [t for t, _ in terms[k:k + _COUNTER_BITS]]
                s = Signal(len(group).bit_length(), name=f"c{k // _COUNTER_BITS}")
                m.d.comb += s.eq(Cat(*_count3(group)))
                counts.append((s, len(group)))
            terms, level = counts, 1
            if level % self._levels_per_stage == 0 or len(terms) == 1:
                terms, valid, stage = register(terms, valid, stage)
        while len(terms) > 1:
            # One adder level: sum neighbours pairwise (an odd last term passes through).
            summed = []
            for k in range(0, len(terms) - 1, 2):
                (a, amax), (b, bmax) = terms[k], terms[k + 1]
                if self._style == "adder":     # (as wide as a full subtree of this level)
                    bits = popcount_width(min(self._width, 2 ** (level + 1)))
                else:
                    bits = (amax + bmax).bit_length()
                s = Signal(bits, name=f"l{level + 1}_s{k // 2}")
                if gates and len(a) == len(b) <= 2 and bits == len(a) + 1:
                    m.d.comb += s.eq(_add_narrow(a, b))
                else:
                    m.d.comb += s.eq(a + b)
                summed.append((s, amax + bmax))
            if len(terms) % 2:
                summed.append(terms[-1])
            terms = summed
            level += 1
            if level % self._levels_per_stage == 0 or len(terms) == 1:
                terms, valid, stage = register(terms, valid, stage)
        assert level == popcount_levels(self._width, self._style)
        assert stage == self.latency
        m.d.comb += [self.o_count.eq(terms[0][0]), self.o_valid.eq(valid)]
        return m
