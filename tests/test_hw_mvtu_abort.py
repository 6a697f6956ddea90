# amaranth: UnusedElaboratable=no
"""Fold LSB schedule: a speculative LSB pass abandoned while no output credit is free.

``MatrixVectorThresholdUnit`` (fold schedule, 2-bit inputs, ``gate_delay < SF``) starts every
fold's LSB pass speculatively and abandons it ``gate_delay`` cycles in when every gate of the
fold is closed.  The next fold's first read needs an output credit; when none is free the
sequencer still has to step its read position to that fold (``pos_*`` from ``pos_next_base``)
and wait there.  This test drives exactly that branch -- all gates closed, ``NF = 5`` folds
(so that the last free credit is taken by a fold that is not the vector's last one: the output
FIFO holds 8), ``SF = 8 > gate_delay``, outputs blocked for a long time, then randomly -- checks
it was taken (the engine's own ``abort`` with no read issued, on a fold before the last) and
checks every output beat against the golden model (:class:`sw.golden.GoldenModel`) of a random
network from tests/netfactory.py.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.hdl import Fragment, Value
from amaranth.sim import Simulator

from hw.mvtu import MatrixVectorThresholdUnit
from sw.network_io import load_compiled_network
from sw.golden import GoldenModel
from tests.netfactory import random_compiled_network, random_images
from tests.test_hw_mvtu import input_beats, reference


def _internal(fragment: Fragment, names: set[str]) -> dict:
    """The top fragment's own signals called ``names`` (read-only observation)."""
    found: dict = {}
    for statements in fragment.statements.values():
        for stmt in statements:
            for sig in (*stmt._lhs_signals(), *stmt._rhs_signals()):
                if sig.name in names:
                    found.setdefault(sig.name, {})[id(sig)] = sig
    assert all(len(found.get(n, ())) == 1 for n in names), {n: found.get(n) for n in names}
    return {n: next(iter(found[n].values())) for n in names}


@pytest.mark.parametrize("seed,block", [(5, 300), (6, 120)])
def test_abandoned_lsb_pass_without_output_credit(tmp_path, seed, block):
    net_dir = random_compiled_network(tmp_path / "net", image=(1, 4, 4), levels=1,
                                      shape=[16, 10], outs=["frac2"],
                                      folding=[(4, 4), (2, 2)], gates="closed", seed=seed)
    net = load_compiled_network(net_dir)
    layer = net.layers[1]
    dut = MatrixVectorThresholdUnit(layer, init_dir=net_dir, lsb_schedule="fold")
    sf, nf, depth = dut.synapse_folds, dut.neuron_folds, dut.output_depth
    # The case the branch needs: speculation abandoned part way, several folds, and a credit
    # limit that a non-last fold can exhaust.
    assert layer.in_bits == 2 and not dut.lane_scheduled
    assert sf > dut.gate_delay and nf >= 2 and depth % nf != 0

    images = random_images(net, 6, seed=seed)
    golden = GoldenModel(net).run(images)
    assert not golden.gates[1].any()                 # every gate closed
    q = np.asarray(golden.layer_outputs[0], dtype=np.int64)          # frac2 codes 0..3
    vectors = np.stack([q >> 1, q & 1], axis=1)                      # planes m, l
    beats = input_beats(layer, vectors)
    want, _ = reference(layer, vectors, dut.acc_width)

    fragment = Fragment.get(dut, None)
    sig = _internal(fragment, {"abort", "issue", "pos_nf"})
    rng = random.Random(seed)
    outs, hits, aborts = [], [], 0

    async def bench(ctx):
        nonlocal aborts
        k, offering = 0, False
        for cycle in range(20_000):
            if not offering and k < len(beats):
                offering = True
            ctx.set(dut.i.valid, offering)
            if offering:
                ctx.set(Value.cast(dut.i.payload), beats[k])
            ready = cycle >= block and rng.random() >= 0.7
            ctx.set(dut.o.ready, ready)
            abort, issue, pos_nf = (ctx.get(sig["abort"]), ctx.get(sig["issue"]),
                                    ctx.get(sig["pos_nf"]))
            aborts += bool(abort)
            if abort and not issue and pos_nf != nf - 1:
                hits.append((cycle, pos_nf))
            if offering and ctx.get(dut.i.ready):
                k += 1
                offering = False
            if ctx.get(dut.o.valid) and ready:
                outs.append(ctx.get(Value.cast(dut.o.payload)))
            await ctx.tick()
            if len(outs) == len(want) and k == len(beats):
                for _ in range(40):                  # nothing extra afterwards
                    ctx.set(dut.o.ready, 1)
                    assert not ctx.get(dut.o.valid)
                    await ctx.tick()
                return
        raise AssertionError(f"timeout: {len(outs)} of {len(want)} output beats")

    sim = Simulator(fragment)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()

    assert aborts >= len(images) * nf                # every fold abandoned its LSB pass
    assert hits, "no LSB pass was abandoned while the output credits were exhausted"
    assert outs == want
    pe, accw = layer.folding.pe, dut.acc_width
    lanes = []
    for word in outs:
        for p in range(pe):
            v = (word >> (p * accw)) & ((1 << accw) - 1)
            lanes.append(v - (1 << accw) if v >> (accw - 1) else v)
    scores = np.asarray(lanes, dtype=np.int64).reshape(len(images), nf * pe)
    np.testing.assert_array_equal(scores[:, :net.classes], golden.scores)
