"""The layer engine's gateware for 2-bit inputs on the lane-compacted LSB schedule
(:class:`hw.mvtu.MatrixVectorThresholdUnit`; its class docstring is the contract)."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, memory

from sw.compiled_net import signed_bits

from .mvtu import POPCOUNT_LEVELS_PER_STAGE
from .popcount import PopcountTree

__all__ = ["elaborate_lane"]


def elaborate_lane(unit) -> Module:
    """2-bit layer, lane-compacted LSB schedule (see the class docstring)."""
    m = Module()
    layer = unit._layer
    pe, simd, sf_n, nf_n = unit.pe, unit.simd, unit.synapse_folds, unit.neuron_folds
    lp = unit.popcount_latency
    mw = layer.in_features
    accw = unit.acc_width
    sf_range, nf_range = range(max(sf_n, 2)), range(max(nf_n, 2))
    base_range = range(max(nf_n * sf_n, 2))
    fold_base_range = range(max((nf_n - 1) * sf_n + 1, 2))   # fold * SF, fold < NF

    # ---------------------------------------------------------- input buffer (2 banks)
    rport, full, clr_full = unit._input_buffer(m, 2 * simd, sf_n, sf_range)

    # ---------------------------------------------------------- ROMs
    # One weight ROM per lane (its SIMD bits of every word of the wide weight file), so
    # that in the LSB phase every lane reads its own neuron fold.
    lane_roms = [unit._rom(m, f"weights_rom{p}", "weights", lo=p, hi=p + 1)
                 for p in range(pe)]
    grom = unit._rom(m, "gates_rom", "gates")
    trom = None
    if layer.out != "scores":
        trom = unit._rom(m, "thresholds_rom", "thresholds")

    # ---------------------------------------------------------- issue (read sequencer)
    # MSB phase: reads (nf, sf) in order.  LSB phase: once every gate of the vector is
    # known, rounds of SF reads in which each lane reads its next open neuron fold; when
    # no lane has one left the vector is handed to the emitter (which must be idle) and
    # the sequencer starts the next vector in the same cycle.
    MSB, LSB = 0, 1
    active = Signal()               # a vector is in progress (bank rd_bank)
    rd_bank = Signal()
    phase = Signal()
    st_bank = Signal()              # accumulator-store half of the vector being read
    pos_nf = Signal(nf_range)       # next MSB read
    pos_sf = Signal(sf_range)       # next read's synapse fold (LSB: 0 = round start)
    msb_addr = Signal(base_range)   # next MSB read's weight word, pos_nf * SF + pos_sf (0
                                    # outside the MSB phase)
    gates_known = Signal()          # every gate of the vector is in `pending`
    pending = [Signal(max(nf_n, 1), name=f"pending{p}") for p in range(pe)]
    lane_nf = [Signal(nf_range, name=f"lane_nf{p}") for p in range(pe)]
    # Each lane's next LSB read's weight word within a round: its fold's base + pos_sf.
    lane_addr = [Signal(base_range, name=f"lane_addr{p}") for p in range(pe)]
    lane_on = Signal(pe)

    # Emitter: reads the finished vector's store half, one output beat per cycle.
    em_busy = Signal()
    em_bank = Signal()
    em_nf = Signal(nf_range)
    credits_used = Signal(range(unit.output_depth + 1))
    credit_ok = credits_used < unit.output_depth

    # `pending` next cycle has two candidates: `pend_gate` (stage A writes a gate of the
    # MSB phase; written below) and `pend_round` (a round's start clears each lane's picked
    # bit).  Never both at once: a round starts only once every gate of the vector is known,
    # and the next vector's gates arrive after its hand-off.  Each lane's next open neuron
    # fold (lowest pending bit), its weight base and whether it has one are registers
    # (pick_*, and pick_any for the lanes together) that always equal those of `pending`:
    # both candidates are encoded, and a round's start only selects, so that it does not
    # wait for the priority encoders, nor they for it.  A vector's gates arrive in neuron
    # fold order into an empty `pending` (its previous vector's rounds cleared every bit
    # before the hand-off), so the lowest bit of `pend_gate` is the lowest of `pending` if
    # there is one, else the arriving gate's fold: the gate's carry chain meets no encoder.
    gate_set = Signal(pe)           # a set gate (registered from stage A) joins lane p
    gate_nf = Signal(nf_range)      # ... of this neuron fold
    gate_base = Signal(fold_base_range)  # its weight base, gate_nf * SF
    pend_gate = [Signal(max(nf_n, 1), name=f"pend_gate{p}") for p in range(pe)]
    pend_round = [Signal(max(nf_n, 1), name=f"pend_round{p}") for p in range(pe)]
    pick_nf = [Signal(nf_range, name=f"pick_nf{p}") for p in range(pe)]
    pick_base = [Signal(fold_base_range, name=f"pick_base{p}") for p in range(pe)]
    pick_on = Signal(pe)
    pick_any = Signal()

    def lowest(vec, name):
        """(fold, base, any) of the lowest set bit of ``vec``: a tree priority encoder
        (log2(NF) levels of 2:1 selects, not a chain of NF), the base a table of the
        fold (no multiplier)."""
        nf_s = Signal(nf_range, name=f"{name}_nf")
        base_s = Signal(fold_base_range, name=f"{name}_base")

        def encode(lo, hi):                 # bits [lo, hi) -> (any, index - lo)
            if hi - lo == 1:
                return vec[lo], Const(0, 1)
            mid = lo + (1 << ((hi - lo - 1).bit_length() - 1))
            a_any, a_idx = encode(lo, mid)
            b_any, b_idx = encode(mid, hi)
            k = (mid - lo).bit_length() - 1  # mid - lo = 2**k > every upper index
            idx = Signal(k + 1, name=f"{name}_i{lo}_{hi}")
            b_low = b_idx[:k]
            upper = Cat(b_low, Const(0, k - len(b_low)), Const(1, 1)) if k > len(b_low) \
                else Cat(b_low, Const(1, 1))
            m.d.comb += idx.eq(Mux(a_any, a_idx, upper))
            return a_any | b_any, idx

        any_, idx = encode(0, nf_n)
        m.d.comb += nf_s.eq(idx)
        with m.Switch(nf_s):
            for k in range(nf_n):
                with m.Case(k):
                    m.d.comb += base_s.eq(k * sf_n)
        return nf_s, base_s, any_

    picks_gate = []
    for p in range(pe):
        m.d.comb += [pend_gate[p].eq(pending[p]), pend_round[p].eq(pending[p]),
                     pend_round[p].bit_select(pick_nf[p], 1).eq(0)]
        nf_p, base_p, on_p = lowest(pending[p], f"pick_now{p}")
        picks_gate.append((Mux(on_p, nf_p, Mux(gate_set[p], gate_nf, 0)),
                           Mux(on_p, base_p, Mux(gate_set[p], gate_base, 0)),
                           on_p | gate_set[p]))
    picks_round = [lowest(pend_round[p], f"pick_round{p}") for p in range(pe)]

    c_valid = Signal()
    c_bank = Signal()
    c_stb = Signal()
    c_lsb = Signal()
    c_nf = Signal(nf_range)
    c_sf = Signal(sf_range)
    round_start = Signal()          # an LSB round's first read: lanes pick
    handoff = Signal()              # the vector is done: emitter takes it, bank released
    m.d.comb += [c_bank.eq(rd_bank), c_stb.eq(st_bank)]
    with m.If(~active):
        m.d.comb += c_valid.eq(full.bit_select(rd_bank, 1))
    with m.Elif(phase == MSB):
        m.d.comb += [c_valid.eq(1), c_nf.eq(pos_nf), c_sf.eq(pos_sf)]
    with m.Elif(pos_sf != 0):
        m.d.comb += [c_valid.eq(1), c_lsb.eq(1), c_sf.eq(pos_sf)]
    with m.Elif(gates_known & pick_any):
        m.d.comb += [c_valid.eq(1), c_lsb.eq(1), round_start.eq(1)]
    with m.Elif(gates_known & ~em_busy):
        m.d.comb += [handoff.eq(1), c_valid.eq(full.bit_select(~rd_bank, 1)),
                     c_bank.eq(~rd_bank), c_stb.eq(~st_bank)]
    issue = c_valid

    u_nf = [Mux(round_start, pick_nf[p], lane_nf[p]) for p in range(pe)]
    # Weight-ROM addresses from registers through multiplexers only (no adder): the MSB
    # phase (and an idle or handing-off sequencer, whose address is 0) reads msb_addr, a
    # round's first read the picked fold's base, its later reads lane_addr.
    u_addr = [Mux(round_start, pick_base[p], lane_addr[p]) for p in range(pe)]
    u_on = Mux(round_start, pick_on, lane_on)

    for p in range(pe):
        (nf_g, base_g, on_g), (nf_r, base_r, on_r) = picks_gate[p], picks_round[p]
        m.d.sync += [pending[p].eq(Mux(round_start, pend_round[p], pend_gate[p])),
                     pick_nf[p].eq(Mux(round_start, nf_r, nf_g)),
                     pick_base[p].eq(Mux(round_start, base_r, base_g)),
                     pick_on[p].eq(Mux(round_start, on_r, on_g))]
    m.d.sync += pick_any.eq(Mux(round_start, Cat(r[2] for r in picks_round).any(),
                                Cat(g[2] for g in picks_gate).any()))

    with m.If(handoff):
        m.d.comb += clr_full.bit_select(rd_bank, 1).eq(1)
        m.d.sync += [active.eq(0), rd_bank.eq(~rd_bank), st_bank.eq(~st_bank),
                     phase.eq(MSB), gates_known.eq(0),
                     em_busy.eq(1), em_bank.eq(st_bank), em_nf.eq(0)]
    c_last_sf = c_sf == sf_n - 1
    with m.If(issue):
        m.d.sync += [active.eq(1), rd_bank.eq(c_bank), st_bank.eq(c_stb), phase.eq(c_lsb)]
        with m.If(~c_lsb):
            with m.If(~c_last_sf):
                m.d.sync += [pos_nf.eq(c_nf), pos_sf.eq(c_sf + 1), msb_addr.eq(msb_addr + 1)]
            with m.Elif(c_nf != nf_n - 1):
                m.d.sync += [pos_nf.eq(c_nf + 1), pos_sf.eq(0), msb_addr.eq(msb_addr + 1)]
            with m.Else():
                m.d.sync += [phase.eq(LSB), pos_nf.eq(0), pos_sf.eq(0), msb_addr.eq(0)]
        with m.Else():
            m.d.sync += [pos_sf.eq(Mux(c_last_sf, 0, c_sf + 1)), lane_on.eq(u_on)]
            m.d.sync += [lane_nf[p].eq(u_nf[p]) for p in range(pe)]
            m.d.sync += [lane_addr[p].eq(u_addr[p] + 1) for p in range(pe)]

    m.d.comb += rport.addr.eq(unit._inbuf_addr(c_bank, c_sf))
    for p in range(pe):
        m.d.comb += lane_roms[p].addr.eq(Mux(c_lsb, u_addr[p], msb_addr))

    emit = Signal()
    m.d.comb += emit.eq(em_busy & credit_ok)
    with m.If(emit):
        with m.If(em_nf == nf_n - 1):
            m.d.sync += [em_busy.eq(0), em_nf.eq(0)]
        with m.Else():
            m.d.sync += em_nf.eq(em_nf + 1)

    # Output credits: taken by an emit, returned after its beat is accepted (registered
    # first, as in the fold schedule).
    give = Signal()
    m.d.sync += give.eq(unit.o.valid & unit.o.ready)
    with m.If(emit & ~give):
        m.d.sync += credits_used.eq(credits_used + 1)
    with m.Elif(give & ~emit):
        m.d.sync += credits_used.eq(credits_used - 1)

    # ---------------------------------------------------------- tag pipeline
    # Reads and emits travel side by side with the same latency, so an emit reaches the
    # store after every accumulation of its vector.
    # The store half and the lanes' folds are last read in the stage before A (which
    # registers the store's addresses), so stage A's tag leaves them out.
    def tag_layout(k):
        fields = {"valid": 1, "first": 1, "last": 1, "lsb": 1, "nf": nf_range,
                  "lane_on": pe, "em_valid": 1, "em_nf": nf_range, "em_bank": 1}
        if k <= lp:
            fields.update(stb=1, lane_nf=data.ArrayLayout(nf_range, pe))
        return data.StructLayout(fields)

    tags = [Signal(tag_layout(0), name="tag_issue")]
    m.d.comb += [tags[0].valid.eq(issue), tags[0].first.eq(c_sf == 0),
                 tags[0].last.eq(c_last_sf), tags[0].lsb.eq(c_lsb),
                 tags[0].nf.eq(c_nf), tags[0].stb.eq(c_stb), tags[0].lane_on.eq(u_on),
                 tags[0].em_valid.eq(emit), tags[0].em_nf.eq(em_nf),
                 tags[0].em_bank.eq(em_bank)]
    m.d.comb += [tags[0].lane_nf[p].eq(u_nf[p]) for p in range(pe)]
    for k in range(1, lp + 2):
        t = Signal(tag_layout(k), name=f"tag_d{k}")
        m.d.sync += [t[name].eq(tags[-1][name]) for name, _ in t.shape()]
        tags.append(t)
    s1, sa = tags[1], tags[lp + 1]

    # ---------------------------------------------------------- XNOR + popcount
    word = rport.data
    x = Signal(simd)
    m.d.comb += x.eq(Mux(s1.lsb, word[simd:], word[:simd]))
    x_q = Signal(simd, name="x_q")          # first popcount stage: ROM words and x
    m.d.sync += x_q.eq(x)
    counts = []
    for p in range(pe):
        w_q = Signal(simd, name=f"weights_q{p}")
        m.d.sync += w_q.eq(lane_roms[p].data)
        tree = PopcountTree(simd, levels_per_stage=POPCOUNT_LEVELS_PER_STAGE,
                            register_input=False)
        m.submodules[f"popcount{p}"] = tree
        m.d.comb += [tree.i_data.eq(~(w_q ^ x_q)), tree.i_valid.eq(tags[2].valid)]
        counts.append(tree.o_count)

    # ---------------------------------------------------------- accumulate (stage A)
    # Per lane an accumulator store of 2 x NF entries (two halves, vectors alternate):
    # the MSB phase writes 2*acc_m (and the gate bit into `pending`), the LSB phase adds
    # dot_l to its neuron's entry, the emitter reads one entry per lane of the other half.
    gpm = unit._gate_words(m, grom, tags)
    res_valid = Signal()
    res_acc = Signal(data.ArrayLayout(signed(accw), pe))
    m.d.sync += res_valid.eq(sa.em_valid)
    msb_done = sa.valid & sa.last & ~sa.lsb
    # The gate bits of a fold's MSB pass are registered (with the fold and its weight
    # base) before they join the pending masks: the gate's carry chain ends in a
    # flip-flop, not in the lanes' pick logic (gate_delay = popcount_latency + 2).
    gate_done = Signal()                # gate_q holds the gates of fold gate_nf
    gate_q = Signal(pe, name="gate_q", reset_less=True)
    m.d.sync += [gate_done.eq(msb_done), gate_nf.eq(sa.nf)]
    with m.Switch(sa.nf):               # gate_base = nf * SF, a table (no multiplier)
        for k in range(nf_n):
            with m.Case(k):
                m.d.sync += gate_base.eq(k * sf_n)
    with m.If(gate_done & (gate_nf == nf_n - 1)):
        m.d.sync += gates_known.eq(1)
    # Store entry of (half, fold): Cat(fold, half), a power-of-two stride (no adder).
    nf_bits = max(1, (nf_n - 1).bit_length())
    sl = tags[lp]                           # the stage before A
    run_w = max(signed_bits(-mw, 2 * layer.mw_padded - mw),
                signed_bits(layer.acc_min - mw, layer.acc_max + mw))
    for p in range(pe):
        # The dot product accumulates directly, one adder (one carry chain) per cycle:
        # MSB pass from -MW, storing 2*dot_m; LSB round from the stored 2*dot_m - MW
        # (read and offset one stage early), storing 2*dot_m + dot_l.
        run = Signal(signed(run_w), name=f"run{p}")
        dot = Signal(signed(run_w), name=f"dot{p}")
        stored_m = Signal(signed(run_w), name=f"stored_m{p}", reset_less=True)
        m.d.comb += dot.eq(Mux(sa.first, Mux(sa.lsb, stored_m, -mw), run)
                           + (counts[p] << 1))
        with m.If(sa.valid):
            m.d.sync += run.eq(dot)
        store = memory.Memory(shape=signed(accw), depth=2 << nf_bits, init=[])
        m.submodules[f"acc_store{p}"] = store
        st_w = store.write_port()
        st_r = store.read_port(domain="comb")
        st_e = store.read_port(domain="comb")
        # The write address: stage A's entry, registered one stage early.
        w_addr = Signal(nf_bits + 1, name=f"store_waddr{p}", reset_less=True)
        m.d.sync += w_addr.eq(Cat(Mux(sl.lsb, sl.lane_nf[p], sl.nf)[:nf_bits], sl.stb))
        m.d.comb += [
            st_r.addr.eq(Cat(sl.lane_nf[p][:nf_bits], sl.stb)),
            st_w.addr.eq(w_addr),
            st_w.data.eq(Mux(sa.lsb, dot, dot << 1)),
            st_w.en.eq(sa.valid & sa.last & (~sa.lsb | sa.lane_on[p])),
            st_e.addr.eq(Cat(sa.em_nf[:nf_bits], sa.em_bank)),
        ]
        m.d.sync += stored_m.eq(st_r.data - mw)
        m.d.sync += gate_q[p].eq(unit._gate_residual(m, p, gpm[p], counts[p], sa))
        with m.If(gate_done):
            m.d.comb += pend_gate[p].bit_select(gate_nf, 1).eq(gate_q[p])
        m.d.comb += gate_set[p].eq(gate_done & gate_q[p])
        with m.If(sa.em_valid):
            m.d.sync += res_acc[p].eq(st_e.data)

    # ---------------------------------------------------------- threshold + FIFO (stage R)
    unit._output_stage(m, trom, None if trom is None else sa.em_nf, res_acc, res_valid)
    return m
