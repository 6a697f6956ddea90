"""Pipelined popcount: an adder tree that counts the ones of a wide bit vector.

The input vector is registered first (so the path from a block-RAM output or the XNOR
in front of the tree ends at a flip-flop), then the tree adds the bits pairwise, level by
level (``ceil(log2(width))`` adder levels), with a register stage after every
``levels_per_stage`` levels and after the last.  It never stalls: a new vector may enter every cycle and comes out ``latency`` cycles later, with
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


def popcount_latency(width: int, levels_per_stage: int = 2, *, register_input: bool = True) -> int:
    """Register stages of a :class:`PopcountTree` of ``width`` bits.

    ``ceil(levels / levels_per_stage)`` stages for the ``levels = ceil(log2(width))`` adder
    levels, plus 1 for the input register if ``register_input`` (so at least 1, except a
    1-bit tree without input register, which is combinational).
    """
    levels = (width - 1).bit_length()
    return int(register_input) + -(-levels // levels_per_stage)


class PopcountTree(wiring.Component):
    """Count the ones of ``i_data`` (a pipelined, never-stalling adder tree).

    Parameters
    ----------
    width : int
        Input bits (>= 1).
    levels_per_stage : int
        Adder levels between register stages (>= 1; default 2: on ECP5 two levels of small
        adders plus routing fit in about 5 ns, on UltraScale+ in 2 LUT levels or 1 carry chain).
    register_input : bool
        Register ``i_data`` before the first adder level (default).  Without it the first
        level is combinational from ``i_data``: for users that register the operands
        themselves (the MVTU registers the weight-ROM word, so that the register can sit in
        the block RAM's output register, and the activations, then XNORs them here).

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
    ``t + latency`` (``latency == 0``, only for a 1-bit tree without input register:
    combinationally in the same cycle).  One vector per cycle, no stall input.  Reset clears
    the valid pipeline.
    """

    def __init__(self, width: int, *, levels_per_stage: int = 2, register_input: bool = True):
        if not isinstance(width, int) or isinstance(width, bool) or width < 1:
            raise ValueError(f"width must be a positive int, not {width!r}")
        if (not isinstance(levels_per_stage, int) or isinstance(levels_per_stage, bool)
                or levels_per_stage < 1):
            raise ValueError(f"levels_per_stage must be a positive int, not {levels_per_stage!r}")
        self._width = width
        self._levels_per_stage = levels_per_stage
        self._register_input = bool(register_input)
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
    def register_input(self) -> bool:
        """Whether ``i_data`` is registered before the first adder level."""
        return self._register_input

    @property
    def latency(self) -> int:
        """Cycles from ``i_data`` to ``o_count`` (register stages of the tree)."""
        return popcount_latency(self._width, self._levels_per_stage,
                                register_input=self._register_input)

    def elaborate(self, platform):
        m = Module()
        # Stage 1 (optional): the input register; its bits are the level-0 1-bit counts.
        data, valid, stage = self.i_data, self.i_valid, 0
        if self._register_input:
            data, valid, stage = Signal(self._width, name="p0_data"), Signal(name="p0_valid"), 1
            m.d.sync += [data.eq(self.i_data), valid.eq(self.i_valid)]
        terms = [data[k] for k in range(self._width)]
        level = 0
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
