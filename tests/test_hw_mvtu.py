# amaranth: UnusedElaboratable=no
# (components rejected by their constructor or only inspected are never elaborated)
"""MatrixVectorThresholdUnit in the Amaranth simulator: bit-exact and cycle-exact.

Every test builds a random layer (``sw.compiled_net.LayerSpec``), writes its ``.mem`` files,
streams random vectors through the engine with random input idle cycles and output
backpressure, and checks

* every output beat against the integer arithmetic of docs/compiled-network.md (numpy),
* no loss / duplication (exact beat count, nothing extra afterwards),
* the timing contract of the class docstring, cycle by cycle: ``i.ready`` in every cycle,
  and the first cycle each output beat is valid, predicted from ``vector_timing`` plus the
  output-credit rule (see :func:`check_timing`).
"""

from __future__ import annotations

import random
import re

import numpy as np
import pytest
from amaranth.hdl import Value
from amaranth.sim import Simulator

from hw.mvtu import MatrixVectorThresholdUnit, uses_lane_schedule
from sw.compiled_net import Folding, LayerSpec
from sw.memory_layout import pack_gate_words, pack_threshold_words, pack_weight_words
from sw.errors import UserError
from sw.memfile import write_mem

# ---------------------------------------------------------------------------- helpers


def make_layer(rng: np.random.Generator, mw, mh, pe, simd, in_bits, out, *, pad=False,
               gates="mixed", index=0) -> LayerSpec:
    """A random layer; ``gates``: "open", "closed", "mixed" (per fold), "random" or "none"
    (2-bit inputs without gates: both planes in one pass); ``out`` "mtK" is a multithreshold
    activation of ``K`` levels."""
    weights = rng.choice(np.array([-1, 1], dtype=np.int8), size=(mh, mw))
    acc_max = mw * (3 if in_bits == 2 else 1)
    thresholds = neg = g = None
    levels = int(out[2:]) if out.startswith("mt") else 0
    if out != "scores":
        count = {"sign": 1, "frac2": 3}.get(out, levels - 1)
        spread = max(1.0, 2.0 * np.sqrt(acc_max))
        th = np.rint(rng.normal(0, spread, size=(mh, count))).astype(np.int64)
        # a few thresholds at the ends of the range (always 1 / never 1)
        ends = rng.random((mh, count)) < 0.1
        th[ends] = rng.choice([-acc_max, acc_max + 1], size=int(ends.sum()))
        thresholds = np.sort(np.clip(th, -acc_max, acc_max + 1), axis=1)
        neg = rng.random(mh) < 0.5
    if in_bits == 2:
        spread = max(1.0, np.sqrt(mw))
        g = np.clip(np.rint(rng.normal(0, spread, size=mh)), -mw - 1, mw).astype(np.int64)
        if gates == "open":
            g[:] = -mw - 1
        elif gates == "closed":
            g[:] = mw
        elif gates == "mixed":
            for f in range(0, mh, pe):
                mode = rng.integers(3)
                if mode == 0:
                    g[f:f + pe] = mw
                elif mode == 1:
                    g[f:f + pe] = -mw - 1
        if gates == "none":
            g = None
    if levels:
        return LayerSpec(index, f"fc{index}", mw, mh, in_bits, "multithreshold",
                         Folding(pe, simd, pad), weights, thresholds, neg, g, levels=levels,
                         out_bias=-1, out_scale=1)
    return LayerSpec(index, f"fc{index}", mw, mh, in_bits, out, Folding(pe, simd, pad),
                     weights, thresholds, neg, g)


def write_mems(layer: LayerSpec, directory) -> None:
    i = layer.index
    write_mem(directory / f"L{i}_weights.mem", pack_weight_words(layer), layer.weight_width)
    if layer.out != "scores":
        write_mem(directory / f"L{i}_thresholds.mem", pack_threshold_words(layer),
                  layer.threshold_width)
    if layer.gated:
        write_mem(directory / f"L{i}_gates.mem", pack_gate_words(layer), layer.gate_width)


def random_inputs(rng, layer: LayerSpec, n: int) -> np.ndarray:
    """(n, in_bits, MW) bits; plane 0 = m (or the only plane), plane 1 = l."""
    return rng.integers(0, 2, size=(n, layer.in_bits, layer.in_features), dtype=np.int64)


def input_beats(layer: LayerSpec, vectors: np.ndarray) -> list[int]:
    """Raw input beats: SF per vector, bit j of a plane = input sf*SIMD + j, l plane above m."""
    simd, sf = layer.folding.simd, layer.synapse_folds
    beats = []
    for vec in vectors:
        planes = np.zeros((layer.in_bits, layer.mw_padded), dtype=np.int64)
        planes[:, :layer.in_features] = vec  # padding inputs are 0
        for s in range(sf):
            word = 0
            for plane in range(layer.in_bits):
                chunk = planes[plane, s * simd:(s + 1) * simd]
                word |= int(sum(int(b) << j for j, b in enumerate(chunk))) << (plane * simd)
            beats.append(word)
    return beats


def reference(layer: LayerSpec, vectors: np.ndarray, acc_width: int):
    """Expected raw output beats and per-neuron gate patterns (docs/compiled-network.md)."""
    pe, nfn, mhp = layer.folding.pe, layer.neuron_folds, layer.mh_padded
    w = np.ones((mhp, layer.in_features), dtype=np.int64)
    w[:layer.out_features] = layer.weights
    beats, gate_patterns = [], []
    for vec in vectors:
        pm = 2 * vec[0] - 1
        if layer.in_bits == 1:
            acc = w @ pm
            gate = None
        elif not layer.gated:
            acc = 2 * (w @ pm) + w @ (2 * vec[1] - 1)
            gate = None
        else:
            acc_m = w @ pm
            gate = acc_m > layer.padded_gates()
            acc = 2 * acc_m + np.where(gate, w @ (2 * vec[1] - 1), 0)
        gate_patterns.append(gate)
        if layer.out == "scores":
            lanes = [int(a) & ((1 << acc_width) - 1) for a in acc]
            lane_w = acc_width
        else:
            th, neg = layer.padded_thresholds()
            a = np.where(neg, -acc, acc)
            q = (a[:, None] >= th).sum(axis=1)
            lanes, lane_w = [int(x) for x in q], 1
        for f in range(nfn):
            chunk = lanes[f * pe:(f + 1) * pe]
            if layer.out_bits == 2:
                m_ = sum((q >> 1) << p for p, q in enumerate(chunk))
                l_ = sum((q & 1) << p for p, q in enumerate(chunk))
                beats.append(m_ | (l_ << pe))
            else:
                beats.append(sum(v << (p * lane_w) for p, v in enumerate(chunk)))
    return beats, gate_patterns


def simulate(dut, beats, n_out, *, seed=0, in_idle=0.0, out_stall=0.0, out_block=0,
             extra_cycles=40):
    """Drive ``beats`` and drain ``n_out`` beats; return the per-cycle record and outputs.

    ``o.ready`` is low for the first ``out_block`` cycles, then low with probability
    ``out_stall``.  Record rows: (i_valid, i_ready, o_valid, o_ready, o_payload).  Once offered, an input
    beat stays valid until accepted (stream rule).  Runs ``extra_cycles`` past the last
    expected output to catch duplicates.
    """
    rng = random.Random(seed)
    rec, outs = [], []

    async def bench(ctx):
        k, offering, tail = 0, False, None
        limit = 200 + 50 * (len(beats) + n_out) * (1 + dut.synapse_folds)
        for cycle in range(limit * 10):
            if not offering and k < len(beats) and rng.random() >= in_idle:
                offering = True
            ctx.set(dut.i.valid, offering)
            if offering:
                ctx.set(Value.cast(dut.i.payload), beats[k])
            ready = cycle >= out_block and rng.random() >= out_stall
            ctx.set(dut.o.ready, ready)
            i_ready = ctx.get(dut.i.ready)
            o_valid = ctx.get(dut.o.valid)
            payload = ctx.get(Value.cast(dut.o.payload))
            rec.append((offering, i_ready, o_valid, ready, payload))
            if offering and i_ready:
                k += 1
                offering = False
            if o_valid and ready:
                outs.append(payload)
            if len(outs) >= n_out and tail is None:
                tail = cycle + extra_cycles
            await ctx.tick()
            if tail is not None and cycle >= tail:
                return
        raise AssertionError(f"timeout: {len(outs)} of {n_out} beats after {limit * 10} cycles")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return rec, outs


def check_timing(dut, rec, gate_patterns):
    """Check ``i.ready`` and output-valid cycles against the documented timing contract.

    Returns the number of cycles the engine waited for an output credit at a fold start.
    """
    sf, nfn, depth = dut.synapse_folds, dut.neuron_folds, dut.output_depth
    in_acc = [t for t, r in enumerate(rec) if r[0] and r[1]]
    out_acc = [t for t, r in enumerate(rec) if r[2] and r[3]]
    n_vec = len(gate_patterns)
    assert len(in_acc) == n_vec * sf
    fold_starts, ready_times, release, credit_waits = [], [], [], 0  # credit takes
    engine_free = 0

    def credits_used(t):
        # a credit is back two cycles after its beat is accepted (cycle a -> usable at a + 2)
        return sum(1 for s in fold_starts if s < t) - sum(1 for a in out_acc if a + 1 < t)

    emit_free = 0     # lane schedule: first cycle the emitter can take the next vector
    for v in range(n_vec):
        timing = dut.vector_timing(gate_patterns[v])
        # the vector starts when its bank is full and the engine is free
        shift = max(in_acc[v * sf + sf - 1] + 1, engine_free)
        if dut.lane_scheduled:
            # reads never wait; the hand-off waits for the emitter, emits for credits
            done = max(shift + timing.compute_cycles, emit_free)
            t = done + 1
            for f in range(nfn):
                while credits_used(t) >= depth:
                    t += 1
                    credit_waits += 1
                ready_times.append(t + timing.output_offsets[f] - timing.credit_offsets[f])
                fold_starts.append(t)
                t += 1
            emit_free = t
            engine_free = done
            release.append(done + timing.bank_free_offset - timing.compute_cycles)
            continue
        # fold schedule: it can only wait at the reads that take output credits, each wait
        # delaying the rest of the vector
        for f in range(nfn):
            t = shift + timing.credit_offsets[f]
            while credits_used(t) >= depth:
                t += 1
                credit_waits += 1
            shift = t - timing.credit_offsets[f]
            ready_times.append(shift + timing.output_offsets[f])
            fold_starts.append(t)
        engine_free = shift + timing.compute_cycles
        release.append(shift + timing.bank_free_offset)

    # Output beats: first valid = max(written, previous beat accepted + 1).
    assert len(out_acc) == len(ready_times)
    for j, want in enumerate(ready_times):
        head = out_acc[j - 1] + 1 if j else 0
        want = max(want, head)
        first = next(t for t in range(head, len(rec)) if rec[t][2])
        assert first == want, f"output beat {j}: valid at cycle {first}, contract says {want}"
    # i.ready in every cycle: the bank being filled is free.
    accepted = 0
    for t, r in enumerate(rec):
        w = accepted // sf
        want = w < 2 or (w - 2 < n_vec and t >= release[w - 2])
        assert bool(r[1]) == bool(want), f"cycle {t}: i.ready {r[1]}, contract says {want}"
        if r[0] and r[1]:
            accepted += 1
    # o.valid in every cycle: high exactly while a written beat has not left yet.
    for t, r in enumerate(rec):
        pending = sum(1 for rt in ready_times if rt <= t) - sum(1 for a in out_acc if a < t)
        assert bool(r[2]) == (pending > 0), f"cycle {t}: o.valid {r[2]}, {pending} pending"
    return credit_waits


def run_case(tmp_path, *, mw, mh, pe, simd, in_bits, out, n_vec=3, seed=1, pad=False,
             gates="mixed", in_idle=0.0, out_stall=0.0, out_block=0, schedule=None):
    rng = np.random.default_rng(seed)
    layer = make_layer(rng, mw, mh, pe, simd, in_bits, out, pad=pad, gates=gates)
    write_mems(layer, tmp_path)
    dut = MatrixVectorThresholdUnit(layer, init_dir=tmp_path, lsb_schedule=schedule)
    vectors = random_inputs(rng, layer, n_vec)
    want, gate_patterns = reference(layer, vectors, dut.acc_width)
    rec, outs = simulate(dut, input_beats(layer, vectors), len(want), seed=seed,
                         in_idle=in_idle, out_stall=out_stall, out_block=out_block)
    assert outs == want
    waits = check_timing(dut, rec, gate_patterns)
    return dut, layer, rec, gate_patterns, waits


# ---------------------------------------------------------------------------- tests


CASES = [
    # mw, mh, pe, simd, in_bits, out
    (12, 6, 2, 3, 1, "sign"),
    (12, 6, 3, 3, 1, "frac2"),
    (12, 6, 1, 12, 1, "sign"),      # PE=1, SIMD=MW (SF=1)
    (12, 6, 6, 4, 2, "frac2"),
    (12, 6, 2, 3, 2, "sign"),
    (9, 5, 5, 9, 2, "scores"),      # SF=1 with 2-bit inputs
    (16, 4, 2, 2, 2, "frac2"),      # SF=8 > gate_delay: speculation is abandoned
    (20, 3, 1, 5, 1, "scores"),
    (4, 4, 2, 1, 2, "sign"),        # SIMD=1: combinational popcount, gate_delay 1
    (6, 4, 2, 1, 1, "frac2"),
    (8, 4, 4, 2, 1, "sign"),        # NF=1
    (48, 8, 4, 16, 2, "scores"),    # SIMD=16: two popcount stages
]

#: Ungated 2-bit inputs (one pass over both planes) and multithreshold outputs.
UNGATED = [
    # mw, mh, pe, simd, in_bits, out
    (12, 6, 2, 3, 2, "mt3"),
    (12, 6, 3, 4, 2, "mt4"),
    (9, 5, 5, 9, 2, "scores"),      # SF=1
    (20, 4, 2, 5, 2, "mt2"),
    (12, 6, 6, 2, 1, "mt3"),        # 1-bit inputs, 3-level outputs
    (48, 8, 4, 16, 2, "sign"),      # 3*SIMD = 48-bit popcount
]


#: (case, LSB schedule): 2-bit cases with both schedules.
SCHEDULED = [(c, s) for c in CASES for s in (("fold", "lane") if c[4] == 2 else (None,))]


@pytest.mark.parametrize("mw,mh,pe,simd,in_bits,out,schedule",
                         [(*c, s) for c, s in SCHEDULED])
def test_bit_exact_back_to_back(tmp_path, mw, mh, pe, simd, in_bits, out, schedule):
    dut, _, rec, patterns, waits = run_case(tmp_path, mw=mw, mh=mh, pe=pe, simd=simd,
                                            in_bits=in_bits, out=out, n_vec=4,
                                            schedule=schedule)
    assert waits == 0  # no backpressure: never a bubble for lack of output credits
    # measured latency: vector 0 starts the cycle after its SF-th beat is accepted
    start = [t for t, r in enumerate(rec) if r[0] and r[1]][dut.synapse_folds - 1] + 1
    first_out = next(t for t, r in enumerate(rec) if r[2])
    if dut.lane_scheduled:
        rounds = dut.lsb_rounds(patterns[0])
        assert first_out - start == dut.latency + rounds * dut.synapse_folds
    else:
        open0 = dut.fold_gates(patterns[0])[0]
        assert first_out - start == dut.latency + (dut.synapse_folds if open0 else 0)
    # measured throughput: output beats of consecutive vectors are compute_cycles apart
    outs = [t for t, r in enumerate(rec) if r[2] and r[3]]
    nfn = dut.neuron_folds
    for v in range(1, 4):
        t0 = dut.vector_timing(patterns[v]).output_offsets[0]
        t_prev = dut.vector_timing(patterns[v - 1])
        gap = outs[v * nfn] - outs[(v - 1) * nfn]
        assert gap == t_prev.compute_cycles + t0 - t_prev.output_offsets[0]


@pytest.mark.parametrize("mw,mh,pe,simd,in_bits,out", UNGATED)
def test_ungated_two_bit_and_multithreshold(tmp_path, mw, mh, pe, simd, in_bits, out):
    """One pass per fold: NF*SF cycles per vector like a 1-bit layer, bit-exact, cycle-exact
    with random idle and backpressure."""
    dut, layer, rec, patterns, waits = run_case(tmp_path, mw=mw, mh=mh, pe=pe, simd=simd,
                                                in_bits=in_bits, out=out, n_vec=4,
                                                gates="none")
    assert waits == 0 and not dut.gated and not dut.lane_scheduled
    assert dut.compute_cycles(None) == layer.neuron_folds * layer.synapse_folds
    start = [t for t, r in enumerate(rec) if r[0] and r[1]][dut.synapse_folds - 1] + 1
    assert next(t for t, r in enumerate(rec) if r[2]) - start == dut.latency
    run_case(tmp_path, mw=mw, mh=mh, pe=pe, simd=simd, in_bits=in_bits, out=out, n_vec=4,
             seed=3, gates="none", in_idle=0.4, out_stall=0.5)


@pytest.mark.parametrize("mw,mh,pe,simd,in_bits,out,schedule", [
    (*CASES[0], None), (*CASES[3], "fold"), (*CASES[3], "lane"), (*CASES[5], "fold"),
    (*CASES[5], "lane"), (*CASES[6], "fold"), (*CASES[6], "lane")])
def test_random_idle_and_backpressure(tmp_path, mw, mh, pe, simd, in_bits, out, schedule):
    run_case(tmp_path, mw=mw, mh=mh, pe=pe, simd=simd, in_bits=in_bits, out=out, n_vec=5,
             seed=7, in_idle=0.4, out_stall=0.6, schedule=schedule)


@pytest.mark.parametrize("seed", range(8))
def test_random_configurations(tmp_path, seed):
    rng = random.Random(seed)
    schedule = ("fold", "lane")[seed % 2]
    in_bits = rng.choice([1, 2])
    out = rng.choice(["sign", "frac2", "scores"])
    mw, mh = rng.randint(2, 40), rng.randint(1, 12)
    simd = rng.choice([d for d in range(1, mw + 1) if mw % d == 0])
    pe = rng.choice([d for d in range(1, mh + 1) if mh % d == 0])
    run_case(tmp_path, mw=mw, mh=mh, pe=pe, simd=simd, in_bits=in_bits, out=out, n_vec=3,
             seed=seed, gates=rng.choice(["mixed", "random"]), in_idle=rng.choice([0, 0.3]),
             out_stall=rng.choice([0, 0.5]), schedule=schedule)


@pytest.mark.parametrize("schedule", ["fold", "lane"])
def test_gate_boundary_is_strictly_greater(tmp_path, schedule):
    # G equal to the actual acc_m of vector 0 must keep the gate closed (acc_m > G).
    rng = np.random.default_rng(11)
    layer = make_layer(rng, 12, 6, 2, 3, 2, "scores")
    vectors = random_inputs(rng, layer, 2)
    acc_m = layer.weights.astype(np.int64) @ (2 * vectors[0][0] - 1)
    layer.gates = acc_m - np.array([0, 1, 0, 1, 0, 0])   # 1 below opens, equal stays closed
    write_mems(layer, tmp_path)
    dut = MatrixVectorThresholdUnit(layer, init_dir=tmp_path, lsb_schedule=schedule)
    want, patterns = reference(layer, vectors, dut.acc_width)
    assert patterns[0].tolist() == [False, True, False, True, False, False]
    rec, outs = simulate(dut, input_beats(layer, vectors), len(want))
    assert outs == want
    check_timing(dut, rec, patterns)


@pytest.mark.parametrize("schedule", ["fold", "lane"])
def test_verilog_mode_elaborates(tmp_path, schedule):
    from amaranth.back import verilog
    rng = np.random.default_rng(5)
    layer = make_layer(rng, 12, 6, 3, 4, 2, "frac2", index=2)
    write_mems(layer, tmp_path)
    dut = MatrixVectorThresholdUnit(layer, init_dir=tmp_path, rom_mode="verilog",
                                    lsb_schedule=schedule)
    text = verilog.convert(dut, name="mvtu2")
    for name in ("L2_weights.mem", "L2_thresholds.mem", "L2_gates.mem"):
        assert f'.INIT_FILE("{name}")' in text
    assert "$mul" not in text and " * " not in text
    if schedule == "lane":
        # one weight ROM per lane, each keeping its SIMD bits of the wide file
        for p in range(3):
            assert f".LSB(32'd{4 * p})" in text or f".LSB({4 * p})" in text


@pytest.mark.parametrize("mw,mh,pe,simd,in_bits,out,schedule", [
    (*CASES[2], None), (*CASES[5], "fold"), (*CASES[5], "lane"), (*CASES[8], "fold"),
    (*CASES[8], "lane")])
def test_long_output_block_fills_fifo_and_stalls(tmp_path, mw, mh, pe, simd, in_bits, out,
                                                 schedule):
    # o.ready low for 80 cycles: the FIFO fills, the engine waits for credits, then drains.
    dut, *_, waits = run_case(tmp_path, mw=mw, mh=mh, pe=pe, simd=simd, in_bits=in_bits,
                              out=out, n_vec=14, seed=3, out_block=80, out_stall=0.3,
                              schedule=schedule)
    assert waits > 0


def test_padding_first_and_last_layer(tmp_path):
    # MW=10 padded to 12 (SIMD 4), MH=5 padded to 6 (PE 3)
    dut, layer, *_ = run_case(tmp_path, mw=10, mh=5, pe=3, simd=4, in_bits=1, out="scores",
                              pad=True, n_vec=3)
    assert (layer.mw_padded, layer.mh_padded) == (12, 6)


@pytest.mark.parametrize("gates", ["open", "closed", "mixed"])
def test_gating_skips_cycles(tmp_path, gates):
    dut, layer, rec, patterns, waits = run_case(
        tmp_path, mw=16, mh=8, pe=2, simd=2, in_bits=2, out="frac2", gates=gates, n_vec=3,
        schedule="fold")
    sf, nfn = dut.synapse_folds, dut.neuron_folds
    folds = [dut.fold_gates(p) for p in patterns]
    opened = sum(map(sum, folds))
    if gates == "open":
        assert opened == 3 * nfn
    elif gates == "closed":
        assert opened == 0
    else:
        assert 0 < opened < 3 * nfn
    for p, f in zip(patterns, folds):
        want = sum(2 * sf if g else sf + min(dut.gate_delay, sf) for g in f)
        assert dut.compute_cycles(p) == want
    # measured: first input beat to last output beat spans the compute of all vectors
    first_in = next(t for t, r in enumerate(rec) if r[0] and r[1])
    last_out = max(t for t, r in enumerate(rec) if r[2] and r[3])
    total = sum(dut.compute_cycles(p) for p in patterns)
    last = dut.vector_timing(patterns[-1])
    # vector 0 starts SF cycles after its first beat (full at SF), then back to back
    assert last_out == first_in + sf + total - last.compute_cycles + last.output_offsets[-1]
    if gates == "closed":
        assert total < 3 * nfn * 2 * sf  # the skipped LSB passes saved cycles


@pytest.mark.parametrize("gates", ["open", "closed", "mixed", "random"])
def test_lane_schedule_cycles(tmp_path, gates):
    """Lane schedule, measured: NF*SF + gate_delay + R*SF cycles per vector."""
    dut, layer, rec, patterns, waits = run_case(
        tmp_path, mw=16, mh=12, pe=4, simd=2, in_bits=2, out="frac2", gates=gates, n_vec=4,
        schedule="lane")
    sf, nfn, gd = dut.synapse_folds, dut.neuron_folds, dut.gate_delay
    rounds = [dut.lsb_rounds(p) for p in patterns]
    for p, r in zip(patterns, rounds):
        lanes = np.asarray(p).reshape(nfn, dut.pe).sum(axis=0)
        assert r == lanes.max()
        assert dut.compute_cycles(p) == nfn * sf + gd + r * sf
    if gates == "open":
        assert rounds == [nfn] * 4
    if gates == "closed":
        assert rounds == [0] * 4
    first_in = next(t for t, r in enumerate(rec) if r[0] and r[1])
    last_out = max(t for t, r in enumerate(rec) if r[2] and r[3])
    total = sum(dut.compute_cycles(p) for p in patterns)
    last = dut.vector_timing(patterns[-1])
    assert last_out == first_in + sf + total - last.compute_cycles + last.output_offsets[-1]


def test_lane_schedule_beats_fold_schedule(tmp_path):
    """One open gate per fold, each in a different lane: the fold schedule runs every LSB
    pass, the lane schedule one round; both bit-exact, measured cycles as predicted."""
    rng = np.random.default_rng(21)
    mw, mh, pe, simd = 16, 16, 4, 2
    layer = make_layer(rng, mw, mh, pe, simd, 2, "sign", gates="closed")
    for f in range(mh // pe):
        layer.gates[f * pe + f % pe] = -mw - 1       # neuron (f, lane f % PE) always open
    write_mems(layer, tmp_path)
    vectors = random_inputs(rng, layer, 3)
    spans = {}
    for schedule in ("fold", "lane"):
        dut = MatrixVectorThresholdUnit(layer, init_dir=tmp_path, lsb_schedule=schedule)
        want, patterns = reference(layer, vectors, dut.acc_width)
        rec, outs = simulate(dut, input_beats(layer, vectors), len(want))
        assert outs == want
        check_timing(dut, rec, patterns)
        assert all(dut.fold_gates(p) == [True] * 4 for p in patterns)
        spans[schedule] = sum(dut.compute_cycles(p) for p in patterns)
        sf = dut.synapse_folds
        if schedule == "lane":
            assert [dut.lsb_rounds(p) for p in patterns] == [1] * 3
            assert spans["lane"] == 3 * (4 * sf + dut.gate_delay + sf)
        else:
            assert spans["fold"] == 3 * 4 * 2 * sf
    assert spans["lane"] < spans["fold"]


def test_compute_cycles_formula(tmp_path):
    rng = np.random.default_rng(3)
    layer = make_layer(rng, 12, 6, 3, 3, 2, "frac2")
    write_mems(layer, tmp_path)
    dut = MatrixVectorThresholdUnit(layer, init_dir=tmp_path, lsb_schedule="fold")
    assert (dut.pe, dut.simd, dut.synapse_folds, dut.neuron_folds) == (3, 3, 4, 2)
    assert dut.compute_cycles([True, False]) == 8 + 4 + min(dut.gate_delay, 4)
    assert dut.compute_cycles(np.array([0, 0, 0, 0, 1, 0], bool)) == (4 + min(dut.gate_delay, 4)) + 8
    assert dut.compute_cycles() == 16  # None: all open
    assert dut.latency == 4 - 1 + dut.pipeline_latency
    lane = MatrixVectorThresholdUnit(layer, init_dir=tmp_path, lsb_schedule="lane")
    gd = lane.gate_delay
    # R = most open gates in one lane (lane p = neurons p and 3 + p)
    assert lane.lsb_rounds(np.array([1, 0, 0, 0, 1, 0], bool)) == 1
    assert lane.lsb_rounds(np.array([1, 0, 0, 1, 0, 0], bool)) == 2
    assert lane.compute_cycles(np.array([1, 0, 0, 0, 1, 0], bool)) == 8 + gd + 4
    assert lane.compute_cycles(np.zeros(6, bool)) == 8 + gd
    assert lane.compute_cycles() == 8 + gd + 8  # None: all open
    assert lane.latency == 8 + gd + 1 + lane.pipeline_latency
    with pytest.raises(ValueError, match="MH"):
        lane.lsb_rounds([True, False])            # per-fold patterns do not define R
    with pytest.raises(ValueError, match="lsb_schedule"):
        MatrixVectorThresholdUnit(layer, init_dir=tmp_path, lsb_schedule="round")


def test_auto_schedule_picks_lane_only_where_it_can_save(tmp_path):
    rng = np.random.default_rng(4)
    # (NF - 1)*SF > the lane schedule's gate_delay: lane; NF = 1 or short folds (also
    # (NF - 1)*SF == gate_delay, where one round costs as much as every LSB pass): fold;
    # 1-bit inputs: never lane
    for (mw, mh, pe, simd, in_bits), lane in [((15, 6, 3, 3, 2), True),
                                              ((12, 6, 3, 3, 2), False),
                                              ((9, 5, 5, 9, 2), False),
                                              ((4, 4, 2, 2, 2), False),
                                              ((12, 6, 3, 3, 1), False)]:
        layer = make_layer(rng, mw, mh, pe, simd, in_bits, "sign")
        write_mems(layer, tmp_path)
        dut = MatrixVectorThresholdUnit(layer, init_dir=tmp_path, lsb_schedule="auto")
        assert dut.lane_scheduled == lane
        assert uses_lane_schedule(layer, "auto") == lane
        if in_bits == 2:
            lane_gd = MatrixVectorThresholdUnit(layer, init_dir=tmp_path,
                                                lsb_schedule="lane").gate_delay
            assert lane_gd == dut.popcount_latency + 2
            nf_sf_gd = (dut.neuron_folds - 1) * dut.synapse_folds > lane_gd
            assert lane == nf_sf_gd
            assert uses_lane_schedule(layer, "lane") and not uses_lane_schedule(layer, "fold")


def test_rejects_bad_folding_and_files(tmp_path):
    rng = np.random.default_rng(0)
    layer = make_layer(rng, 12, 6, 4, 5, 1, "sign")   # neither divides, no pad
    write_mems(layer, tmp_path)
    with pytest.raises(UserError, match="does not divide"):
        MatrixVectorThresholdUnit(layer, init_dir=tmp_path)
    layer = make_layer(rng, 12, 6, 2, 3, 1, "sign")
    with pytest.raises(UserError, match="not found"):
        MatrixVectorThresholdUnit(layer, init_dir=tmp_path / "missing")
    with pytest.raises(ValueError, match="rom_mode"):
        MatrixVectorThresholdUnit(layer, init_dir=tmp_path, rom_mode="asic")


@pytest.mark.parametrize("schedule,block_lanes", [("fold", 1), ("fold", 0), ("fold", 3),
                                                  ("lane", 2)])
def test_block_lanes_split_the_weight_rom(tmp_path, schedule, block_lanes):
    """Folding.block_lanes places lanes 0..K-1 in block RAM and the rest in LUT ROM: the
    same words, the same cycles (Amaranth sim), and the Verilog asks for each placement."""
    from dataclasses import replace

    from amaranth.back import verilog
    rng = np.random.default_rng(21)
    layer = make_layer(rng, 12, 6, 3, 4, 2, "frac2", index=1, gates="mixed")
    layer = replace(layer, folding=Folding(3, 4, False, block_lanes))
    write_mems(layer, tmp_path)
    dut = MatrixVectorThresholdUnit(layer, init_dir=tmp_path, lsb_schedule=schedule)
    vectors = random_inputs(rng, layer, 3)
    want, patterns = reference(layer, vectors, dut.acc_width)
    rec, outs = simulate(dut, input_beats(layer, vectors), len(want))
    assert outs == want
    check_timing(dut, rec, patterns)
    text = verilog.convert(MatrixVectorThresholdUnit(layer, init_dir=tmp_path,
                                                     rom_mode="verilog", lsb_schedule=schedule),
                           name="mvtu1")
    styles = re.findall(r"\.STYLE\((?:32'd)?(\d+)\)", text)
    # Every ROM carries its placement; the thresholds and gates (2 words) are distributed.
    plan = MatrixVectorThresholdUnit(layer, init_dir=tmp_path, lsb_schedule=schedule).rom_plan
    assert sorted(styles) == sorted({"block": "1", "distributed": "2"}[p.style] for p in plan)
    assert [p.style for p in plan if p.kind != "weights"] == ["distributed"] * 2
    weights = [p.style for p in plan if p.kind == "weights"]
    n_block, n_dist = weights.count("block"), weights.count("distributed")
    if schedule == "lane":
        assert (n_block, n_dist) == (block_lanes, 3 - block_lanes)
    else:
        assert (n_block, n_dist) == {0: (0, 1), 3: (1, 0)}.get(block_lanes, (1, 1))


def test_block_lanes_checked():
    with pytest.raises(UserError, match="block_lanes must be an int in 0..pe=4"):
        Folding(4, 2, False, 5)
    assert Folding(4, 2, False, 3).to_json() == {"pe": 4, "simd": 2, "pad": False,
                                                 "block_lanes": 3}
    assert "block_lanes" not in Folding(4, 2).to_json()
