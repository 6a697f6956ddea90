"""Shared pieces of the fixed-point residual-path units (:mod:`hw.fixed_affine`,
:mod:`hw.fixed_add`, :mod:`hw.avgpool2x2`, :mod:`hw.dup_channels`, :mod:`hw.global_sumpool`,
:mod:`hw.binarize`, :mod:`hw.fixed_linear`).

Fixed-point pixel stream: images one after another, pixels in row-major ``(y, x)`` order (HWC),
each pixel's ``C`` channels as ``G = C/E`` beats of ``E`` elements (beat ``g``, element ``j`` =
channel ``g*E + j``); an element is a two's complement code (``signed(bits)``), a beat's
payload :func:`fixed_layout` ``= ArrayLayout(signed(bits), E)`` (element ``j`` at bits
``[j*bits, (j+1)*bits)``).  No ``last`` flag: units count beats.

Timing models (the stage-model interface of :mod:`hw.cycle_model`: ``valid()`` is ``o.valid``,
``ready(down_ready)`` is ``i.ready``, ``step(in_fire, out_fire, cycle, in_valid)`` one clock
edge):

* :class:`PipeTiming`: a ``L``-register pipeline with one global stall
  (``i.ready = ~o.valid | o.ready``);
* :class:`EmitTiming`: the accumulate-and-emit stage of :class:`hw.maxpool.MaxPoolUnit` (one
  register, ``pending`` when the held beat completes an output).
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, memory

__all__ = ["fixed_layout", "check_int", "check_bits", "check_constants", "saturate",
           "round_shift", "keep_unused", "ConstTable", "stall_pipeline", "accumulate_stage",
           "PipeTiming", "EmitTiming", "MAX_IN_BITS"]

#: Widest input element (an accumulator or a fixed-point code) the units accept.
MAX_IN_BITS = 48


def fixed_layout(bits: int, elems: int) -> data.ArrayLayout:
    """Payload of a beat of ``elems`` signed ``bits``-bit codes."""
    return data.ArrayLayout(signed(bits), elems)


def check_int(name: str, value, lo: int, hi: int | None = None) -> int:
    """``value`` must be an ``int`` (not a bool) in ``[lo, hi]``: one-line ``ValueError``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < lo \
            or (hi is not None and value > hi):
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be an int in {rng}, not {value!r}")
    return value


def check_bits(name: str, bits, lo: int = 2, hi: int = 32) -> int:
    """A width in ``lo..hi``."""
    return check_int(name, bits, lo, hi)


def check_constants(name: str, values, count: int, bits: int, *, lo: int | None = None,
                    hi: int | None = None) -> list[int]:
    """``count`` integers, each a signed ``bits``-bit value (or in ``[lo, hi]``); a list of
    Python ints.  One-line ``ValueError`` naming the first offending channel."""
    try:
        vals = [v for v in values]
    except TypeError:
        raise ValueError(f"{name} must be a sequence of {count} ints, not {values!r}") from None
    if len(vals) != count:
        raise ValueError(f"{name} must have {count} entries (one per channel), not {len(vals)}")
    lo = -(1 << (bits - 1)) if lo is None else lo
    hi = (1 << (bits - 1)) - 1 if hi is None else hi
    out = []
    for c, v in enumerate(vals):
        if hasattr(v, "dtype") and getattr(v.dtype, "kind", "") in "iu":
            v = int(v)
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise ValueError(f"{name} of channel {c} is {v!r}, outside [{lo}, {hi}]")
        out.append(v)
    return out


def saturate(v: Value, bits: int) -> Value:
    """Clamp a signed value to the ``signed(bits)`` range (the result fits ``bits``)."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return Mux(v > hi, hi, Mux(v < lo, lo, v))


def round_shift(m: Module, v: Value, shift: int, name: str, unused: list) -> Value:
    """``(v + 2**(shift-1)) >> shift`` with an arithmetic shift (``shift = 0``: ``v``):
    round half up, as :func:`sw.fixed_point.round_shift`.  ``v`` must be signed.

    The rounding sum is the comb signal ``name`` (one bit wider than ``v``); its low
    ``shift`` bits, which only carry into the result, are appended to ``unused`` for
    :func:`keep_unused` (Verilator would flag them as unused bits otherwise)."""
    if shift == 0:
        return v
    t = Signal(signed(len(v) + 1), name=name)
    m.d.comb += t.eq(v + (1 << (shift - 1)))
    unused.append(t[:shift])
    return t[shift:].as_signed()


def keep_unused(m: Module, bits: list, name: str = "unused_round_bits") -> None:
    """Mark ``bits`` as deliberately unused: one ``keep`` wire named ``unused_*`` (Verilator's
    idiom, its default ``-unused-regexp``) reading their OR, as :mod:`hw.axi_lite_regs` does;
    synthesis removes it (nothing reads it)."""
    if bits:
        sink = Signal(name=name, attrs={"keep": 1})
        m.d.comb += sink.eq(Cat(*bits).any())


class ConstTable:
    """Per-channel constants of one unit as a ``G``-word memory, word ``g`` = the constants
    of channels ``g*E .. g*E + E - 1`` (each channel's fields packed low to high, element
    ``j`` at ``j * sum(widths)``), with one synchronous read port.

    The words are built from the node's constants (:attr:`sw.residual_graph.Node.constants`,
    the parsed and checked ``{node}_{kind}.mem`` files: one channel per file word; the
    table regroups them ``E`` per word so that one read serves a beat).  The memory's
    initial contents are emitted with the design (a ``$readmemh``-free initialised RAM in
    Verilog, ROM inference: LUT ROM for small ``G``, block RAM by the tool's rule).

    :meth:`read` adds it to ``m`` and returns ``(addr, en, fields)`` with ``fields[j][k]``
    the signed value of field ``k`` of element ``j`` in the read data (valid the cycle after
    an enabled read; held while ``en`` is low).
    """

    def __init__(self, rows: list[list[int]], widths: list[int], elems: int):
        self.widths = list(widths)
        self.elems = elems
        self.lane_bits = sum(self.widths)
        self.depth = len(rows) // elems
        words = []
        for g in range(self.depth):
            word, off = 0, 0
            for j in range(elems):
                for v, w in zip(rows[g * elems + j], self.widths):
                    word |= (v & ((1 << w) - 1)) << off
                    off += w
            words.append(word)
        self.words = words

    def read(self, m: Module, name: str):
        width = self.lane_bits * self.elems
        mem = memory.Memory(shape=unsigned(width), depth=self.depth, init=self.words)
        m.submodules[name] = mem
        port = mem.read_port(domain="sync")
        fields = []
        for j in range(self.elems):
            off = j * self.lane_bits
            lane = []
            for w in self.widths:
                lane.append(port.data[off:off + w].as_signed())
                off += w
            fields.append(lane)
        return port.addr, port.en, fields


def stall_pipeline(m: Module, i, o, stages: int):
    """The valid chain of a ``stages``-register pipeline with one global stall between stream
    ports ``i`` and ``o``: ``advance = ~o.valid | o.ready``, ``i.ready = advance``, every
    register loads when ``advance``.  Returns ``(advance, i_fire, valids)`` (``valids[k]``:
    register ``k + 1`` holds a beat; ``o.valid`` is the last)."""
    advance, i_fire = Signal(name="advance"), Signal(name="i_fire")
    valids = [Signal(name=f"v{k + 1}") for k in range(stages)]
    m.d.comb += [advance.eq(~valids[-1] | o.ready), i.ready.eq(advance),
                 i_fire.eq(i.valid & advance), o.valid.eq(valids[-1])]
    with m.If(advance):
        m.d.sync += valids[0].eq(i_fire)
        for k in range(1, stages):
            m.d.sync += valids[k].eq(valids[k - 1])
    return advance, i_fire, valids


def accumulate_stage(m: Module, i, o, *, name: str, sum_shape, elems: int, depth: int,
                     addr: Value, first: Value, last: Value) -> list:
    """A streaming accumulator's read-modify-write stage: a memory of ``depth`` words of
    ``elems`` partial sums, read at ``addr`` as a beat arrives and written back one cycle
    later with the beat added (``first``: the beat starts the sum instead); a beat with
    ``last`` set is not written back but offered on ``o`` (its sums, the returned totals)
    until taken.  ``addr``, ``first`` and ``last`` are the arriving beat's (from the caller's
    counters before they step on ``i``'s handshake).

    Handshake: ``i.ready = ~pending | o.ready`` (``pending``: a last beat waits), ``o.valid =
    pending``; one beat per cycle; latency 1.  Returns ``(i_fire, totals)``: ``totals[j]``,
    of ``sum_shape``, is lane ``j``'s sum of the beat in the stage (the caller maps it to
    ``o.payload``)."""
    m.submodules[name] = mem = memory.Memory(shape=data.ArrayLayout(sum_shape, elems),
                                             depth=depth, init=[])
    wport = mem.write_port()
    rport = mem.read_port(domain="sync", transparent_for=(wport,))
    v1, first1, last1 = Signal(), Signal(), Signal()
    addr1 = Signal(range(depth))
    beat1 = Signal(i.payload.shape())
    pending, advance, i_fire = Signal(), Signal(), Signal()
    m.d.comb += [
        pending.eq(v1 & last1),
        advance.eq(~pending | o.ready),
        i.ready.eq(advance),
        i_fire.eq(i.valid & advance),
        o.valid.eq(pending),
        wport.addr.eq(addr1),
        wport.en.eq(v1 & ~last1),
        rport.addr.eq(addr),
        rport.en.eq(advance),
    ]
    totals = []
    for j in range(elems):
        total = Signal(sum_shape, name=f"sum{j}")
        m.d.comb += [total.eq(Mux(first1, beat1[j], rport.data[j] + beat1[j])),
                     wport.data[j].eq(total)]
        totals.append(total)
    with m.If(advance):
        m.d.sync += v1.eq(i_fire)
        with m.If(i_fire):
            m.d.sync += [first1.eq(first), last1.eq(last), addr1.eq(addr),
                         beat1.eq(i.payload)]
    return i_fire, totals


class PipeTiming:
    """Cycle-exact timing of :func:`stall_pipeline` with ``latency`` registers: a beat
    accepted at cycle ``t`` is offered from ``t + latency``; the whole pipeline stalls while
    the output is offered and refused (``i.ready = ~o.valid | o.ready``)."""

    __slots__ = ("v",)

    def __init__(self, latency: int):
        check_int("latency", latency, 1)
        self.v = [False] * latency

    def valid(self) -> bool:
        return self.v[-1]

    def ready(self, down_ready: bool) -> bool:
        return (not self.v[-1]) or down_ready

    def step(self, in_fire: bool, out_fire: bool, cycle: int = 0, in_valid: bool = True) -> None:
        if (not self.v[-1]) or out_fire:
            self.v = [bool(in_fire)] + self.v[:-1]


class EmitTiming:
    """Cycle-exact timing of an accumulate-and-emit stage (the structure of
    :class:`hw.maxpool.MaxPoolUnit`): one register holds the last accepted beat, ``pending``
    when that beat completes an output beat; ``o.valid = pending``,
    ``i.ready = ~pending | o.ready``.  ``emits[k]`` says whether input beat ``k`` of an image
    (``len(emits)`` beats) completes an output beat."""

    __slots__ = ("_emits", "_beats", "pos", "pending")

    def __init__(self, emits):
        self._emits = bytes(bytearray(1 if e else 0 for e in emits))
        self._beats = len(self._emits)
        if not self._beats:
            raise ValueError("an image has at least one beat")
        self.pos = 0
        self.pending = False

    def valid(self) -> bool:
        return self.pending

    def ready(self, down_ready: bool) -> bool:
        return (not self.pending) or down_ready

    def step(self, in_fire: bool, out_fire: bool, cycle: int = 0, in_valid: bool = True) -> None:
        if in_fire:
            self.pending = self._emits[self.pos] == 1
            self.pos += 1
            if self.pos == self._beats:
                self.pos = 0
        elif out_fire:
            self.pending = False
