"""Pipelined popcount: an adder tree that counts the ones of a wide bit vector.

The tree adds the input bits pairwise, level by level (``ceil(log2(width))`` adder
levels), and puts a register stage after every ``levels_per_stage`` levels.  It never
stalls: a new vector may enter every cycle and comes out ``latency`` cycles later, with
a valid bit travelling alongside.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["PopcountTree", "popcount_width", "popcount_latency"]


def popcount_width(width: int) -> int:
    """Bits of a count of up to ``width`` ones (``width.bit_length()``)."""
    return max(1, width.bit_length())


def popcount_latency(width: int, levels_per_stage: int = 3) -> int:
    """Register stages of a :class:`PopcountTree` of ``width`` bits.

    ``ceil(levels / levels_per_stage)`` with ``levels = ceil(log2(width))`` adder levels;
    0 (purely combinational) for ``width == 1``.
    """
    levels = (width - 1).bit_length()
    return -(-levels // levels_per_stage)


class PopcountTree(wiring.Component):
    """Count the ones of ``i_data`` (a pipelined, never-stalling adder tree).

    Parameters
    ----------
    width : int
        Input bits (>= 1).
    levels_per_stage : int
        Adder levels between register stages (>= 1; default 3).

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
    ``t + latency`` (``latency == 0``: combinationally in the same cycle).  One vector
    per cycle, no stall input.  Reset clears the valid pipeline.
    """

    def __init__(self, width: int, *, levels_per_stage: int = 3):
        if not isinstance(width, int) or isinstance(width, bool) or width < 1:
            raise ValueError(f"width must be a positive int, not {width!r}")
        if (not isinstance(levels_per_stage, int) or isinstance(levels_per_stage, bool)
                or levels_per_stage < 1):
            raise ValueError(f"levels_per_stage must be a positive int, not {levels_per_stage!r}")
        self._width = width
        self._levels_per_stage = levels_per_stage
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
        """Adder levels between register stages."""
        return self._levels_per_stage

    @property
    def latency(self) -> int:
        """Cycles from ``i_data`` to ``o_count`` (register stages of the tree)."""
        return popcount_latency(self._width, self._levels_per_stage)

    def elaborate(self, platform):
        m = Module()
        # Level 0: the input bits as 1-bit counts.
        terms = [self.i_data[k] for k in range(self._width)]
        valid = self.i_valid
        level = 0
        stage = 0
        while len(terms) > 1:
            # One adder level: sum neighbours pairwise (an odd last term passes through).
            width = popcount_width(min(self._width, 2 ** (level + 1)))
            summed = []
            for k in range(0, len(terms) - 1, 2):
                s = Signal(width, name=f"l{level + 1}_s{k // 2}")
                m.d.comb += s.eq(terms[k] + terms[k + 1])
                summed.append(s)
            if len(terms) % 2:
                summed.append(terms[-1])
            terms = summed
            level += 1
            # Register after every levels_per_stage levels and after the last level.
            if level % self._levels_per_stage == 0 or len(terms) == 1:
                stage += 1
                regs = []
                for k, t in enumerate(terms):
                    r = Signal(unsigned(len(t)), name=f"p{stage}_s{k}")
                    m.d.sync += r.eq(t)
                    regs.append(r)
                v = Signal(name=f"p{stage}_valid")
                m.d.sync += v.eq(valid)
                terms, valid = regs, v
        assert stage == self.latency
        m.d.comb += [self.o_count.eq(terms[0]), self.o_valid.eq(valid)]
        return m
