"""The layer engine's gateware for 1-bit inputs and for 2-bit inputs on the ``fold`` LSB
schedule (:class:`hw.mvtu.MatrixVectorThresholdUnit`; its class docstring is the contract)."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data

from sw.compiled_net import signed_bits

from .mvtu import POPCOUNT_LEVELS_PER_STAGE, popcount_width
from .popcount import PopcountTree

__all__ = ["elaborate_fold"]


def elaborate_fold(unit) -> Module:
    """The engine ``unit`` (1-bit inputs, or 2-bit on the fold schedule) as a Module."""
    m = Module()
    layer = unit._layer
    pe, simd, sf_n, nf_n = unit.pe, unit.simd, unit.synapse_folds, unit.neuron_folds
    two = unit.gated
    dual = unit.in_bits == 2 and not two    # both planes in one pass
    lp = unit.popcount_latency
    gd = unit.gate_delay
    speculate = two and gd < sf_n  # the LSB pass can be abandoned part way
    mw = layer.in_features
    in_w = simd * unit.in_bits
    accw = unit.acc_width
    # Counter ranges of at least 1 bit (no zero-width signals in the Verilog).
    sf_range, nf_range = range(max(sf_n, 2)), range(max(nf_n, 2))
    base_range = range(max(nf_n * sf_n, 2))

    # ---------------------------------------------------------- input buffer (2 banks)
    rport, full, clr_full = unit._input_buffer(m, in_w, sf_n, sf_range)

    # ---------------------------------------------------------- ROMs
    roms = {name: unit._rom(m, f"{name}_rom", name)
            for name in unit._rom_specs if name != "weights"}
    grom, trom = roms.get("gates"), roms.get("thresholds")
    w_roms = unit._weight_roms(m)
    w_addr = Signal(w_roms[0].addr_width)
    m.d.comb += [rom.addr.eq(w_addr) for rom in w_roms]
    w_data = Cat(rom.data for rom in w_roms)     # lanes 0.. in the block part first

    # ---------------------------------------------------------- issue (read sequencer)
    active = Signal()               # a vector is being read from rd_bank
    rd_bank = Signal()
    pos_nf = Signal(nf_range)    # next read of the active vector
    pos_sf = Signal(sf_range)
    pos_l = Signal()                # LSB pass
    pos_base = Signal(base_range)   # pos_nf * SF (weight address base)
    # The weight address comes from registers through multiplexers only (no adder in front
    # of the ROMs' address pins, which fan out to every block RAM of the layer):
    # pos_addr = pos_base + pos_sf, pos_next_base = pos_base + SF, kept beside pos_*.
    addr_range = range(max((nf_n + 2) * sf_n, 2))
    pos_addr = Signal(addr_range)
    pos_next_base = Signal(addr_range, init=sf_n)
    anyg_reg = Signal()             # any gate open in the last decided fold

    credits_used = Signal(range(unit.output_depth + 1))
    credit_ok = Signal(init=1)      # = credits_used < output_depth, kept as a flip-flop
    # pos_sf == SF - 1, pos_nf == NF - 1 and pos_sf == 0 as flip-flops beside the
    # counters (each update below sets them with the counter), so the issue and
    # bank-release logic decodes no counter.
    pos_last_sf = Signal(init=int(sf_n == 1))
    pos_last_nf = Signal(init=int(nf_n == 1))
    pos_first_sf = Signal(init=1)

    abort = Signal()                # abandon the speculative LSB pass now
    if speculate:
        m.d.comb += abort.eq(active & pos_l & (pos_sf == gd) & ~anyg_reg)

    # Candidate read for this cycle.
    c_valid = Signal()
    c_bank = Signal()
    c_nf = Signal(nf_range)
    c_sf = Signal(sf_range)
    c_l = Signal()
    c_base = Signal(base_range)
    c_addr = Signal(addr_range)     # = c_base + c_sf
    c_next_base = Signal(addr_range, init=sf_n)     # = c_base + SF
    last_fold = pos_last_nf
    c_last_sf = Signal()            # = c_sf == SF - 1
    c_last_nf = Signal()            # = c_nf == NF - 1
    c_first_sf = Signal()           # = c_sf == 0
    m.d.comb += [c_last_sf.eq(pos_last_sf), c_last_nf.eq(pos_last_nf),
                 c_first_sf.eq(pos_first_sf)]
    # The position registers of an idle sequencer hold the first read of a vector (every
    # branch that ends a vector resets them), so the candidate is the position itself
    # unless a speculative LSB pass is abandoned: with 1-bit inputs the weight-ROM
    # address is the pos_addr register, with no multiplexer in front.
    m.d.comb += [c_bank.eq(rd_bank), c_nf.eq(pos_nf), c_sf.eq(pos_sf), c_l.eq(pos_l),
                 c_base.eq(pos_base), c_addr.eq(pos_addr), c_next_base.eq(pos_next_base)]
    with m.If(~active):
        m.d.comb += c_valid.eq(full.bit_select(rd_bank, 1))
    with m.Elif(abort & last_fold):
        m.d.comb += [c_valid.eq(full.bit_select(~rd_bank, 1)), c_bank.eq(~rd_bank),
                     c_nf.eq(0), c_sf.eq(0), c_l.eq(0), c_base.eq(0), c_addr.eq(0),
                     c_next_base.eq(sf_n), c_last_sf.eq(sf_n == 1),
                     c_last_nf.eq(nf_n == 1), c_first_sf.eq(1)]
    with m.Elif(abort):
        m.d.comb += [c_valid.eq(1), c_nf.eq(pos_nf + 1), c_sf.eq(0), c_l.eq(0),
                     c_base.eq(pos_next_base), c_addr.eq(pos_next_base),
                     c_next_base.eq(pos_next_base + sf_n), c_last_sf.eq(sf_n == 1),
                     c_last_nf.eq(pos_nf + 1 == nf_n - 1), c_first_sf.eq(1)]
    with m.Else():
        m.d.comb += c_valid.eq(1)
    fold_start = c_first_sf & ~c_l
    issue = Signal()
    m.d.comb += issue.eq(c_valid & (~fold_start | credit_ok))

    # A vector ended by abandoning its last fold releases its bank now.
    with m.If(abort & last_fold):
        m.d.comb += clr_full.bit_select(rd_bank, 1).eq(1)

    # Each branch sets the position's flags with the position: a fold's first read
    # (pos_sf = 0), its last (pos_sf = SF - 1), the vector's last fold (pos_nf = NF - 1).
    def fold_flags(first, last_sf, last_nf):
        return [pos_first_sf.eq(first), pos_last_sf.eq(last_sf), pos_last_nf.eq(last_nf)]

    with m.If(issue):
        with m.If(~c_last_sf):
            m.d.sync += [active.eq(1), rd_bank.eq(c_bank), pos_nf.eq(c_nf),
                         pos_sf.eq(c_sf + 1), pos_l.eq(c_l), pos_base.eq(c_base),
                         pos_addr.eq(c_addr + 1), pos_next_base.eq(c_next_base),
                         *fold_flags(0, c_sf == sf_n - 2, c_last_nf)]
        with m.Elif(Const(two) & ~c_l):
            m.d.sync += [active.eq(1), rd_bank.eq(c_bank), pos_nf.eq(c_nf),
                         pos_sf.eq(0), pos_l.eq(1), pos_base.eq(c_base),
                         pos_addr.eq(c_base), pos_next_base.eq(c_next_base),
                         *fold_flags(1, sf_n == 1, c_last_nf)]
        with m.Elif(~c_last_nf):
            m.d.sync += [active.eq(1), rd_bank.eq(c_bank), pos_nf.eq(c_nf + 1),
                         pos_sf.eq(0), pos_l.eq(0), pos_base.eq(c_next_base),
                         pos_addr.eq(c_next_base), pos_next_base.eq(c_next_base + sf_n),
                         *fold_flags(1, sf_n == 1, c_nf == nf_n - 2)]
        with m.Else():
            # Last read of the vector: release its bank, look at the other one next.
            m.d.sync += [active.eq(0), rd_bank.eq(~c_bank), pos_nf.eq(0), pos_sf.eq(0),
                         pos_l.eq(0), pos_base.eq(0), pos_addr.eq(0),
                         pos_next_base.eq(sf_n), *fold_flags(1, sf_n == 1, nf_n == 1)]
            m.d.comb += clr_full.bit_select(c_bank, 1).eq(1)
    with m.Elif(abort):
        with m.If(last_fold):
            m.d.sync += [active.eq(0), rd_bank.eq(~rd_bank), pos_nf.eq(0), pos_sf.eq(0),
                         pos_l.eq(0), pos_base.eq(0), pos_addr.eq(0),
                         pos_next_base.eq(sf_n), *fold_flags(1, sf_n == 1, nf_n == 1)]
        with m.Else():
            m.d.sync += [pos_nf.eq(pos_nf + 1), pos_sf.eq(0), pos_l.eq(0),
                         pos_base.eq(pos_next_base), pos_addr.eq(pos_next_base),
                         pos_next_base.eq(pos_next_base + sf_n),
                         *fold_flags(1, sf_n == 1, pos_nf == nf_n - 2)]

    m.d.comb += [
        w_addr.eq(c_addr),
        rport.addr.eq(unit._inbuf_addr(c_bank, c_sf)),
    ]

    # Output credits: taken by a fold's first read, returned after its beat is accepted
    # (registered first: the accept, a FIFO-side signal, does not reach the sequencer's
    # counter in the same cycle).
    take = issue & fold_start
    give = Signal()
    m.d.sync += give.eq(unit.o.valid & unit.o.ready)
    with m.If(take & ~give):
        m.d.sync += [credits_used.eq(credits_used + 1),
                     credit_ok.eq(credits_used < unit.output_depth - 1)]
    with m.Elif(give & ~take):
        m.d.sync += [credits_used.eq(credits_used - 1), credit_ok.eq(1)]

    # ---------------------------------------------------------- tag pipeline
    # Stage k carries only the fields a stage >= k reads, so that no flip-flop is dead:
    # `lsb` (which plane a beat carries) with 2-bit inputs; `nf` up to the
    # stage that addresses the gate ROM (lp - 2, or lp - 1 when lp = 1) or the threshold
    # ROM (lp + 1).
    nf_until = (lp + 1 if layer.out != "scores" else
                unit._gate_rom_stage if two else -1)

    def tag_layout(k):
        fields = {"valid": 1, "first": 1, "last": 1}
        if two:
            fields["lsb"] = 1
        if k <= nf_until:
            fields["nf"] = nf_range
        return data.StructLayout(fields)

    tags = [Signal(tag_layout(0), name="tag_issue")]
    m.d.comb += [tags[0].valid.eq(issue), tags[0].first.eq(c_sf == 0),
                 tags[0].last.eq(c_last_sf)]
    if two:
        m.d.comb += tags[0].lsb.eq(c_l)
    if nf_until >= 0:
        m.d.comb += tags[0].nf.eq(c_nf)
    for k in range(1, lp + 2):
        t = Signal(tag_layout(k), name=f"tag_d{k}")
        m.d.sync += [t[name].eq(tags[-1][name]) for name, _ in t.shape()]
        tags.append(t)
    s1, sa = tags[1], tags[lp + 1]   # memory-data stage, accumulate stage

    # ---------------------------------------------------------- XNOR + popcount (S1 .. A)
    word = rport.data
    pw = popcount_width(layer)
    x = Signal(pw)
    if two:
        m.d.comb += x.eq(Mux(s1.lsb, word[simd:], word[:simd]))
    elif dual:
        # 2*popcount_m + popcount_l as one popcount: the MSB plane counted twice.
        m.d.comb += x.eq(Cat(word[:simd], word[:simd], word[simd:]))
    else:
        m.d.comb += x.eq(word)
    # The first register stage of the popcount: the weight-ROM word as read (a plain
    # register behind the memory, which block RAM output registers absorb) and x.
    # (reset-less: a block RAM output register has no reset wired here.)
    w_q = Signal(pe * simd, name="weights_q", reset_less=True)
    x_q = Signal(pw, name="x_q", reset_less=True)
    m.d.sync += [w_q.eq(w_data), x_q.eq(x)]
    counts = []
    for p in range(pe):
        tree = PopcountTree(pw, levels_per_stage=POPCOUNT_LEVELS_PER_STAGE,
                            register_input=False)
        m.submodules[f"popcount{p}"] = tree
        w_lane = w_q[p * simd:(p + 1) * simd]
        if dual:
            w_lane = Cat(w_lane, w_lane, w_lane)
        m.d.comb += [tree.i_data.eq(~(w_lane ^ x_q)),
                     tree.i_valid.eq(tags[2].valid)]
        counts.append(tree.o_count)

    # ---------------------------------------------------------- accumulate (stage A)
    res_valid = Signal()
    res_acc = Signal(data.ArrayLayout(signed(accw), pe))
    m.d.sync += res_valid.eq(0)
    if two:
        gates_reg = Signal(pe)
        gate_now = Signal(pe)
        gpm = unit._gate_words(m, grom, tags)
        # A pass's end value (end_acc, fold end_nf) is taken into res_acc one cycle later,
        # once "any gate open" has been formed from the registered gate bits.
        end_acc = Signal(data.ArrayLayout(signed(accw), pe))
        end_nf = Signal(nf_range)
        msb_end, lsb_end = Signal(), Signal()
    # Ungated 2-bit inputs: dot(w, 2m + l) = 2*(2*popcount_m + popcount_l) - 3*MW.
    k = 3 if dual else 1
    run_w = signed_bits(-k * mw, 2 * k * layer.mw_padded - k * mw)
    for p in range(pe):
        # The dot product accumulates directly: -MW + 2*popcount per fold, one adder
        # (one carry chain) per cycle.
        run = Signal(signed(run_w), name=f"run{p}")
        dot = Signal(signed(run_w), name=f"dot{p}")
        if not two:
            m.d.comb += dot.eq(Mux(sa.first, -k * mw, run) + (counts[p] << 1))
            with m.If(sa.valid):
                m.d.sync += run.eq(dot)
            with m.If(sa.valid & sa.last):
                m.d.sync += res_acc[p].eq(dot)
            continue
        # 2-bit: every value that ends a fold comes out of one adder.  MSB pass: dot =
        # dot_m; beside it run2 tracks 2*dot_m - MW, the LSB pass's start, and the gate
        # residual g - dot_m (sign = the gate, see _gate_residual).  LSB pass: dot =
        # 2*acc_m + (gate ? dot_l : 0): from run2 = 2*dot_m - MW, adding 2*popcount per
        # fold if the lane's gate is open, else MW on the first fold and 0 after.  The
        # gate is read from its register (gates_reg, set when the MSB pass ends), never
        # from the residual's carry chain, and each adder operand is one LUT4 (first,
        # lsb and two values; lsb, gate, first and a popcount bit).
        lsb_w = signed_bits(2 * layer.acc_min - mw, 2 * layer.acc_max + mw)
        run = Signal(signed(max(run_w, lsb_w)), name=f"run{p}")
        dot = Signal(signed(max(run_w, lsb_w)), name=f"dot{p}")
        run2 = Signal(signed(lsb_w), name=f"run2_{p}")
        run2_next = Signal(signed(lsb_w), name=f"run2_next{p}")
        m.d.comb += run2_next.eq(Mux(sa.first, -3 * mw, run2) + (counts[p] << 2))
        addend = Mux(sa.lsb & ~gates_reg[p], Mux(sa.first, mw, 0), counts[p] << 1)
        m.d.comb += dot.eq(Mux(sa.first, Mux(sa.lsb, run2, -mw), run) + addend)
        m.d.comb += gate_now[p].eq(unit._gate_residual(m, p, gpm[p], counts[p], sa))
        with m.If(sa.valid):
            m.d.sync += [run.eq(dot), run2.eq(run2_next)]
        with m.If(sa.valid & sa.last & ~sa.lsb):
            m.d.sync += end_acc[p].eq(dot << 1)
        with m.If(sa.valid & sa.last & sa.lsb):
            m.d.sync += end_acc[p].eq(dot)
    if not two:
        with m.If(sa.valid & sa.last):
            m.d.sync += res_valid.eq(1)
        res_nf = sa.nf if layer.out != "scores" else None
    else:
        # Stage A registers the gate bits (each lane's carry chain ends at a flip-flop);
        # the next cycle forms "any gate open" from them: the MSB pass's value is the
        # result if none is, else the LSB pass's end value will be (gate_delay and
        # pipeline_latency count this cycle).
        m.d.sync += [msb_end.eq(sa.valid & sa.last & ~sa.lsb),
                     lsb_end.eq(sa.valid & sa.last & sa.lsb)]
        with m.If(sa.valid & sa.last & ~sa.lsb):
            m.d.sync += gates_reg.eq(gate_now)
        if layer.out != "scores":
            with m.If(sa.valid & sa.last):
                m.d.sync += end_nf.eq(sa.nf)
        with m.If(msb_end):
            m.d.sync += [anyg_reg.eq(gates_reg.any()), res_valid.eq(~gates_reg.any()),
                         res_acc.eq(end_acc)]
        with m.If(lsb_end):
            m.d.sync += [res_valid.eq(anyg_reg), res_acc.eq(end_acc)]
        res_nf = end_nf

    # ---------------------------------------------------------- threshold + FIFO (stage R)
    unit._output_stage(m, trom, res_nf, res_acc, res_valid)
    return m
