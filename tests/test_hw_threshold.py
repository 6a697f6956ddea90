# amaranth: UnusedElaboratable=no
# (components rejected by their constructor are never elaborated)
"""ThresholdUnit against the integer rule of docs/compiled-network.md ("Layer arithmetic")."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Value
from amaranth.sim import Simulator

from hw.threshold import ThresholdUnit, threshold_lane_bits
from sw.compiled_net import signed_bits


def pack_thresholds(th, neg, tw):
    """One ROM word: lane p at [p*LW, (p+1)*LW), threshold c at [c*TW, ...), neg last."""
    count = th.shape[1]
    lw = count * tw + 1
    word = 0
    for p in range(th.shape[0]):
        lane = int(neg[p]) << (count * tw)
        for c in range(count):
            lane |= (int(th[p, c]) & ((1 << tw) - 1)) << (c * tw)
        word |= lane << (p * lw)
    return word


@pytest.mark.parametrize("out,pe,acc_max", [("sign", 1, 7), ("sign", 5, 100),
                                            ("frac2", 3, 36), ("frac2", 4, 3)])
def test_matches_integer_rule(out, pe, acc_max):
    rng = np.random.default_rng(pe * 100 + acc_max)
    count = 1 if out == "sign" else 3
    accw = signed_bits(-acc_max, acc_max)
    tw = signed_bits(-acc_max, acc_max + 1)
    dut = ThresholdUnit(pe, accw, out, tw)
    assert dut.lane_bits == threshold_lane_bits(out, tw) == count * tw + 1
    assert dut.latency == 1
    cases = []
    for _ in range(150):
        acc = rng.integers(-acc_max, acc_max + 1, size=pe)
        th = np.sort(rng.integers(-acc_max, acc_max + 2, size=(pe, count)), axis=1)
        # thresholds equal to +-acc exercise the >= boundary; the range ends: always/never
        hit = rng.random(pe) < 0.3
        th[hit, 0] = np.minimum(np.abs(acc[hit]), acc_max + 1)
        th = np.sort(th, axis=1)
        neg = rng.random(pe) < 0.5
        cases.append((acc, th, neg))
    cases.append((np.full(pe, -acc_max), np.full((pe, count), -acc_max), np.zeros(pe, bool)))
    cases.append((np.full(pe, acc_max), np.full((pe, count), acc_max + 1), np.zeros(pe, bool)))
    cases.append((np.full(pe, -acc_max), np.full((pe, count), acc_max), np.ones(pe, bool)))
    got = []

    async def bench(ctx):
        for acc, th, neg in cases:
            for p in range(pe):
                ctx.set(dut.acc[p], int(acc[p]))
            ctx.set(dut.thresholds, pack_thresholds(th, neg, tw))
            await ctx.tick()                        # latency 1: the registered comparisons
            got.append(ctx.get(Value.cast(dut.act)))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    for (acc, th, neg), word in zip(cases, got):
        a = np.where(neg, -acc, acc)
        q = (a[:, None] >= th).sum(axis=1)
        if out == "sign":
            want = sum(int(b) << p for p, b in enumerate(q))
        else:
            want = sum(int(x >> 1) << p for p, x in enumerate(q)) | \
                sum(int(x & 1) << (pe + p) for p, x in enumerate(q))
        assert word == want, (acc, th, neg)


def test_no_multipliers():
    from amaranth.back import rtlil
    text = rtlil.convert(ThresholdUnit(4, 9, "frac2", 9))
    assert "$mul" not in text


@pytest.mark.parametrize("kwargs,match", [
    ({"pe": 0, "acc_width": 8, "out": "sign", "threshold_bits": 8}, "pe must be"),
    ({"pe": 2, "acc_width": 8, "out": "scores", "threshold_bits": 8}, "out must be"),
    ({"pe": 2, "acc_width": 8, "out": "sign", "threshold_bits": 0}, "threshold_bits must be"),
])
def test_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ThresholdUnit(**kwargs)
