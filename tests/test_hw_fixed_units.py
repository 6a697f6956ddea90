"""The fixed-point residual-path units (hw/fixed_affine.py, fixed_add.py, avgpool2x2.py,
dup_channels.py, global_sumpool.py, binarize.py, fixed_linear.py) against sw/fixed_point.py:
random data with saturation corners, random input idle and output backpressure, every value
bit exact and nothing lost; and each unit's timing model equals its RTL's ready/valid in every
cycle (the handshakes of the same random runs, and for the join a random valid/ready drive)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from sw import fixed_point as fp
from tests.stream_bench import replay_timing, simulate_stage

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

# --------------------------------------------------------------------------- helpers


def pack(values, bits: int, n: int) -> list[int]:
    """``(..., C)`` signed codes -> raw beats of ``n`` elements of ``bits`` (element j at
    bits [j*bits, (j+1)*bits))."""
    v = np.asarray(values, dtype=np.int64).reshape(-1, n)
    mask = (1 << bits) - 1
    return [sum((int(e) & mask) << (j * bits) for j, e in enumerate(row)) for row in v]


def unpack(words, bits: int, n: int) -> np.ndarray:
    """Inverse of :func:`pack`: ``(len(words) * n,)`` int64."""
    out = []
    for w in words:
        for j in range(n):
            e = (w >> (j * bits)) & ((1 << bits) - 1)
            out.append(e - (1 << bits) if e >> (bits - 1) else e)
    return np.array(out, dtype=np.int64)


def corner_codes(rng, shape, bits: int, p_corner: float = 0.15) -> np.ndarray:
    """Random signed ``bits`` codes with a share of the extremes (lo, lo+1, -1, 0, hi-1, hi)."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    x = rng.integers(lo, hi + 1, size=shape, dtype=np.int64)
    corners = np.array([lo, lo + 1, -1, 0, 1, hi - 1, hi], dtype=np.int64)
    pick = rng.random(shape) < p_corner
    x[pick] = rng.choice(corners, size=int(pick.sum()))
    return x


def run_stage(dut, in_words, n_out, *, idle, stall, seed):
    """Stream through a one-input stage; check its timing model on the trace; outputs."""
    got, t_in, t_out, trace = simulate_stage(dut, in_words, n_out, idle=idle, stall=stall,
                                             seed=seed)
    replay_timing(dut.timing_model(), trace)
    assert len(t_in) == len(in_words)
    return got


FLOW = [(0.0, 0.0), (0.4, 0.0), (0.0, 0.5), (0.3, 0.4)]

# --------------------------------------------------------------------------- affine / rprelu


@pytest.mark.parametrize("channels,n,in_bits,out_bits,shift",
                         [(4, 1, 12, 8, 0), (8, 4, 16, 16, 8), (6, 6, 20, 16, 13),
                          (12, 4, 16, 10, 30), (4, 2, 33, 32, 5)])
@pytest.mark.parametrize("flow", range(len(FLOW)))
def test_affine(channels, n, in_bits, out_bits, shift, flow):
    from hw.fixed_affine import FixedAffine
    rng = np.random.default_rng(channels * 31 + in_bits + flow)
    pixels = 24
    x = corner_codes(rng, (pixels, channels), in_bits)
    mult = corner_codes(rng, (channels,), fp.MULT_BITS, 0.3)
    add = corner_codes(rng, (channels,), fp.ADD_BITS, 0.3)
    fmt = fp.FixedPointFormat(out_bits, 0)
    want = fp.affine(x, mult, shift, add, fmt)
    dut = FixedAffine(channels=channels, elems_per_beat=n, in_bits=in_bits, out_bits=out_bits,
                      mult=mult, add=add, shift=shift)
    idle, stall = FLOW[flow]
    got = run_stage(dut, pack(x, in_bits, n), x.size // n, idle=idle, stall=stall, seed=flow)
    np.testing.assert_array_equal(unpack(got, out_bits, n), want.reshape(-1))
    if flow == 0:   # saturation corners were exercised
        assert (want == fmt.hi).any() or (want == fmt.lo).any() or shift == 30


@pytest.mark.parametrize("channels,n,bits,shift",
                         [(4, 1, 8, 0), (8, 4, 16, 7), (6, 3, 12, 15), (4, 4, 32, 30)])
@pytest.mark.parametrize("flow", range(len(FLOW)))
def test_rprelu(channels, n, bits, shift, flow):
    from hw.fixed_affine import FixedRPReLU
    rng = np.random.default_rng(channels * 7 + bits + flow)
    x = corner_codes(rng, (24, channels), bits)
    gamma = corner_codes(rng, (channels,), bits, 0.3)
    zeta = corner_codes(rng, (channels,), bits, 0.3)
    mult = corner_codes(rng, (channels,), fp.MULT_BITS, 0.3)
    fmt = fp.FixedPointFormat(bits, bits // 2)
    want = fp.rprelu(x, gamma, mult, shift, zeta, fmt)
    dut = FixedRPReLU(channels=channels, elems_per_beat=n, bits=bits, gamma=gamma, mult=mult,
                      zeta=zeta, shift=shift)
    idle, stall = FLOW[flow]
    got = run_stage(dut, pack(x, bits, n), x.size // n, idle=idle, stall=stall, seed=flow)
    np.testing.assert_array_equal(unpack(got, bits, n), want.reshape(-1))


def test_affine_rejects():
    from hw.fixed_affine import FixedAffine, FixedRPReLU
    ok = dict(channels=4, elems_per_beat=2, in_bits=16, out_bits=16, mult=[1] * 4,
              add=[0] * 4, shift=3)
    FixedAffine(**ok)
    for key, bad, msg in [("elems_per_beat", 3, "divide"), ("shift", 31, "shift"),
                          ("mult", [1, 2, 3, 1 << 15], "mult of channel 3"),
                          ("add", [0] * 3, "4 entries"), ("out_bits", 33, "out_bits"),
                          ("in_bits", 1, "in_bits")]:
        with pytest.raises(ValueError, match=msg):
            FixedAffine(**{**ok, key: bad})
    with pytest.raises(ValueError, match="gamma of channel 0"):
        FixedRPReLU(channels=2, elems_per_beat=1, bits=8, gamma=[128, 0], mult=[1, 1],
                    zeta=[0, 0], shift=0)


# --------------------------------------------------------------------------- add (the join)


class _Source:
    """A random valid that, once raised, holds until its handshake (the stream rule)."""

    def __init__(self, rng, p):
        self.rng, self.p, self.valid = rng, p, False

    def next(self, fired: bool) -> bool:
        if fired or not self.valid:
            self.valid = self.rng.random() < self.p
        return self.valid


@pytest.mark.parametrize("bits,n", [(2, 1), (8, 3), (16, 4), (32, 2)])
@pytest.mark.parametrize("pa,pb,pr", [(1.0, 1.0, 1.0), (0.7, 0.4, 0.6), (0.3, 0.9, 0.8),
                                      (0.9, 0.9, 0.3)])
def test_add(bits, n, pa, pb, pr):
    from hw.fixed_add import FixedAdd
    rng = np.random.default_rng(bits * 13 + n + int(pr * 10))
    beats = 150
    a = corner_codes(rng, (beats, n), bits, 0.3)
    b = corner_codes(rng, (beats, n), bits, 0.3)
    want = fp.add_saturate(a, b, fp.FixedPointFormat(bits, 0))
    wa, wb = pack(a, bits, n), pack(b, bits, n)
    dut = FixedAdd(bits=bits, elems_per_beat=n)
    model = dut.timing_model()
    got = []

    async def bench(ctx):
        r = random.Random(bits + n)
        sa, sb = _Source(r, pa), _Source(r, pb)
        ia = ib = 0
        fa = fb = False
        cycle = 0
        while len(got) < beats:
            assert cycle < 20 * beats
            va = sa.next(fa) and ia < beats
            vb = sb.next(fb) and ib < beats
            o_ready = r.random() < pr
            ctx.set(dut.a.valid, va)
            ctx.set(dut.b.valid, vb)
            ctx.set(dut.a.payload.as_value(), wa[min(ia, beats - 1)])
            ctx.set(dut.b.payload.as_value(), wb[min(ib, beats - 1)])
            ctx.set(dut.o.ready, o_ready)
            ready = model.port_ready(o_ready, va, vb)
            assert ctx.get(dut.a.ready) == ready, f"a.ready differs in cycle {cycle}"
            assert ctx.get(dut.b.ready) == ready, f"b.ready differs in cycle {cycle}"
            assert ctx.get(dut.o.valid) == model.valid(), f"o.valid differs in cycle {cycle}"
            out_fire = model.valid() and o_ready
            if out_fire:
                got.append(ctx.get(dut.o.payload.as_value()))
            fa = fb = ready
            ia += ready
            ib += ready
            model.step(ready, out_fire, cycle, va and vb)
            await ctx.tick()
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    np.testing.assert_array_equal(unpack(got, bits, n), want.reshape(-1))


# --------------------------------------------------------------------------- spatial units


@pytest.mark.parametrize("channels,n,h,w,bits",
                         [(1, 1, 2, 2, 2), (4, 2, 4, 6, 8), (6, 3, 6, 4, 16), (8, 8, 2, 8, 16),
                          (4, 1, 4, 4, 32)])
@pytest.mark.parametrize("flow", range(len(FLOW)))
def test_avgpool(channels, n, h, w, bits, flow):
    from hw.avgpool2x2 import AvgPool2x2
    rng = np.random.default_rng(channels + h * w + bits + flow)
    x = corner_codes(rng, (2, h, w, channels), bits, 0.3)
    want = fp.avg_pool_2x2(x)
    assert fp.FixedPointFormat(bits, 0).contains(want)
    dut = AvgPool2x2(channels=channels, height=h, width=w, elems_per_beat=n, bits=bits)
    idle, stall = FLOW[flow]
    got = run_stage(dut, pack(x, bits, n), want.size // n, idle=idle, stall=stall, seed=flow)
    np.testing.assert_array_equal(unpack(got, bits, n), want.reshape(-1))


def test_avgpool_extremes():
    """All-lo and all-hi windows and the rounding ties (sum = 4k + 2 rounds up)."""
    from hw.avgpool2x2 import AvgPool2x2
    bits = 8
    x = np.array([[[[-128], [-128]], [[-128], [-128]]], [[[127], [127]], [[127], [127]]],
                  [[[1], [1]], [[0], [0]]], [[[-1], [-1]], [[0], [0]]]], dtype=np.int64)
    want = fp.avg_pool_2x2(x)
    assert want.reshape(-1).tolist() == [-128, 127, 1, 0]
    dut = AvgPool2x2(channels=1, height=2, width=2, elems_per_beat=1, bits=bits)
    got = run_stage(dut, pack(x, bits, 1), 4, idle=0.2, stall=0.3, seed=1)
    np.testing.assert_array_equal(unpack(got, bits, 1), want.reshape(-1))


@pytest.mark.parametrize("channels,n,h,w,bits,shift",
                         [(1, 1, 1, 1, 4, 0), (4, 2, 3, 5, 8, 0), (6, 3, 4, 4, 16, 0),
                          (8, 8, 2, 3, 16, 0), (4, 1, 8, 8, 32, 0), (4, 2, 3, 5, 8, 3),
                          (4, 2, 3, 5, 8, 4), (6, 3, 4, 4, 16, 4), (4, 1, 8, 8, 16, 6),
                          (2, 2, 2, 2, 4, 1)])
@pytest.mark.parametrize("flow", range(len(FLOW)))
def test_global_sumpool(channels, n, h, w, bits, shift, flow):
    from hw.global_sumpool import GlobalSumPool
    rng = np.random.default_rng(channels + h * w + bits + flow + 7 * shift)
    x = corner_codes(rng, (4, h, w, channels), bits, 0.3)
    x[0] = -(1 << (bits - 1))          # the most negative sum
    x[1] = (1 << (bits - 1)) - 1       # the most positive
    if shift:                          # ties of the rounding: sums of +-2**(shift-1) (mod 2**shift)
        x[2] = 0
        x[2, 0, 0] = 1 << (shift - 1) if bits > shift else 1
        x[2, 0, 0, 0] = -(1 << (shift - 1)) if bits > shift else -1
    want = fp.global_sum_pool(x, shift)
    dut = GlobalSumPool(channels=channels, height=h, width=w, elems_per_beat=n, bits=bits,
                        shift=shift)
    s = dut.out_bits
    # The width holds the extremes and is the narrowest that does.
    assert -(1 << (s - 1)) <= want.min() and want.max() < (1 << (s - 1))
    assert s == 2 or want.min() < -(1 << (s - 2)) or want.max() >= (1 << (s - 2))
    idle, stall = FLOW[flow]
    got = run_stage(dut, pack(x, bits, n), want.size // n, idle=idle, stall=stall, seed=flow)
    np.testing.assert_array_equal(unpack(got, dut.out_bits, n), want.reshape(-1))


@pytest.mark.parametrize("channels,n,factor,bits",
                         [(1, 1, 1, 4), (1, 1, 2, 8), (4, 2, 2, 16), (6, 3, 3, 16),
                          (8, 8, 2, 32), (4, 4, 1, 8)])
@pytest.mark.parametrize("flow", range(len(FLOW)))
def test_dup_channels(channels, n, factor, bits, flow):
    from hw.dup_channels import DupChannels
    rng = np.random.default_rng(channels + factor + bits + flow)
    x = corner_codes(rng, (2, 3, 2, channels), bits, 0.3)
    want = fp.duplicate_channels(x, factor)
    dut = DupChannels(channels=channels, elems_per_beat=n, bits=bits, factor=factor)
    idle, stall = FLOW[flow]
    got = run_stage(dut, pack(x, bits, n), want.size // n, idle=idle, stall=stall, seed=flow)
    np.testing.assert_array_equal(unpack(got, bits, n), want.reshape(-1))


@pytest.mark.parametrize("activation", ["sign", "frac2"])
@pytest.mark.parametrize("channels,n,bits", [(1, 1, 2), (4, 2, 8), (6, 3, 16), (8, 8, 32)])
@pytest.mark.parametrize("flow", range(len(FLOW)))
def test_binarize(activation, channels, n, bits, flow):
    from hw.binarize import Binarize
    from tests.stream_bench import from_beats
    k = 1 if activation == "sign" else 3
    rng = np.random.default_rng(channels + bits + k + flow)
    x = corner_codes(rng, (30, channels), bits, 0.3)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    t = np.sort(rng.integers(lo, hi + 2, size=(channels, k)), axis=1)
    t[0, 0] = lo                        # always
    t[-1, -1] = hi + 1                  # never
    want = fp.threshold_levels(x, t)
    dut = Binarize(channels=channels, elems_per_beat=n, bits=bits, activation=activation,
                   thresholds=t)
    idle, stall = FLOW[flow]
    got = run_stage(dut, pack(x, bits, n), x.size // n, idle=idle, stall=stall, seed=flow)
    np.testing.assert_array_equal(from_beats(got, n, 1 if k == 1 else 2, want.shape), want)


def test_spatial_rejects():
    from hw.avgpool2x2 import AvgPool2x2
    from hw.binarize import Binarize
    from hw.dup_channels import DupChannels
    from hw.fixed_add import FixedAdd
    with pytest.raises(ValueError, match="even"):
        AvgPool2x2(channels=2, height=3, width=4, elems_per_beat=1, bits=8)
    with pytest.raises(ValueError, match="factor"):
        DupChannels(channels=2, elems_per_beat=1, bits=8, factor=0)
    with pytest.raises(ValueError, match="bits"):
        FixedAdd(bits=33, elems_per_beat=1)
    with pytest.raises(ValueError, match=r"channel 1 is 129"):
        Binarize(channels=2, elems_per_beat=1, bits=8, activation="sign",
                 thresholds=[[0], [129]])
    with pytest.raises(ValueError, match="activation"):
        Binarize(channels=2, elems_per_beat=1, bits=8, activation="tanh", thresholds=[[0]] * 2)


# --------------------------------------------------------------------------- Verilog lint


def _lint_units():
    from hw.avgpool2x2 import AvgPool2x2
    from hw.binarize import Binarize
    from hw.dup_channels import DupChannels
    from hw.fixed_add import FixedAdd
    from hw.fixed_affine import FixedAffine, FixedRPReLU
    from hw.fixed_linear import FixedLinear
    from hw.global_sumpool import GlobalSumPool
    c = 8
    return {
        "affine": lambda: FixedAffine(channels=c, elems_per_beat=4, in_bits=18, out_bits=16,
                                      mult=list(range(-4, 4)), add=[1 << 20] * c, shift=8),
        "rprelu": lambda: FixedRPReLU(channels=c, elems_per_beat=4, bits=16,
                                      gamma=[3] * c, mult=[100] * c, zeta=[-2] * c, shift=7),
        "add": lambda: FixedAdd(bits=16, elems_per_beat=4),
        "avgpool": lambda: AvgPool2x2(channels=c, height=4, width=4, elems_per_beat=4,
                                      bits=16),
        "dup": lambda: DupChannels(channels=c, elems_per_beat=4, bits=16, factor=2),
        "sumpool": lambda: GlobalSumPool(channels=c, height=4, width=4, elems_per_beat=4,
                                         bits=16),
        "sign": lambda: Binarize(channels=c, elems_per_beat=4, bits=16, activation="sign",
                                 thresholds=[[k] for k in range(c)]),
        "linear": lambda: FixedLinear(
            channels=c, elems_per_beat=4, in_bits=22, classes=3, weight_bits=8,
            weight=[[k - j for k in range(c)] for j in range(3)], bias=[5, -6, 7]),
        "frac2": lambda: Binarize(channels=c, elems_per_beat=4, bits=16, activation="frac2",
                                  thresholds=[[-k, 0, k] for k in range(c)]),
    }


@pytest.mark.parametrize("name", list(_lint_units()))
def test_lint_clean(tmp_path, name):
    """Each unit as one flat module is lint clean (`verilator --lint-only -Wall`, only
    Amaranth's width casts waived, as the accelerator)."""
    import shutil
    import subprocess

    from hw.generate import TOP_NAME, WAIVER_FILE
    from hw.netlist import convert_flat
    from sim.toolchain import verilator_env
    text = convert_flat(_lint_units()[name](), TOP_NAME)
    (tmp_path / f"{TOP_NAME}.v").write_text(text)
    shutil.copy(WAIVER_FILE, tmp_path / "verilator_waiver.vlt")
    result = subprocess.run(["verilator", "--lint-only", "-Wall", "--top-module", TOP_NAME,
                             "verilator_waiver.vlt", f"{TOP_NAME}.v"], cwd=tmp_path,
                            env=verilator_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- classifier


@pytest.mark.parametrize("channels,n,in_bits,classes,wb",
                         [(1, 1, 4, 2, 2), (4, 2, 10, 3, 8), (6, 3, 22, 10, 16),
                          (8, 8, 20, 4, 5), (8, 1, 36, 2, 16)])
@pytest.mark.parametrize("flow", range(len(FLOW)))
def test_linear(channels, n, in_bits, classes, wb, flow):
    from hw.fixed_linear import FixedLinear
    rng = np.random.default_rng(channels + in_bits + classes + flow)
    x = corner_codes(rng, (5, channels), in_bits, 0.3)
    x[0] = -(1 << (in_bits - 1))
    w = corner_codes(rng, (classes, channels), wb, 0.3)
    w[0] = -(1 << (wb - 1))
    bias = corner_codes(rng, (classes,), 32, 0.3)
    bias[0] = -(1 << 31)
    want = x @ w.T + bias
    dut = FixedLinear(channels=channels, elems_per_beat=n, in_bits=in_bits, classes=classes,
                      weight_bits=wb, weight=w, bias=bias)
    idle, stall = FLOW[flow]
    got = run_stage(dut, pack(x, in_bits, n), want.size, idle=idle, stall=stall, seed=flow)
    np.testing.assert_array_equal(unpack(got, dut.out_bits, 1), want.reshape(-1))


def test_linear_rate():
    """With ``o`` always ready and the input always offering: ``G + K*G`` cycles per image."""
    from hw.fixed_linear import FixedLinear
    c, n, k = 8, 2, 3
    dut = FixedLinear(channels=c, elems_per_beat=n, in_bits=8, classes=k, weight_bits=4,
                      weight=np.ones((k, c), dtype=np.int64), bias=[0] * k)
    got, t_in, t_out, _ = simulate_stage(dut, pack(np.ones((4, c)), 8, n), 4 * k)
    firsts = t_in[::c // n]
    assert np.diff(firsts).tolist() == [dut.cycles_per_image] * 3
    assert t_out[0] - t_in[c // n - 1] == c // n + 3


def test_linear_rejects():
    from hw.fixed_linear import FixedLinear
    ok = dict(channels=4, elems_per_beat=2, in_bits=10, classes=2, weight_bits=4,
              weight=[[1] * 4] * 2, bias=[0, 0])
    FixedLinear(**ok)
    for key, bad, msg in [("weight", [[1] * 4], "2 rows"), ("weight", [[1, 2, 3, 8]] * 2,
                          "weight row 0 of channel 3"), ("bias", [0, 1 << 31], "bias of channel 1"),
                          ("weight_bits", 17, "weight_bits"), ("elems_per_beat", 3, "divide")]:
        with pytest.raises(ValueError, match=msg):
            FixedLinear(**{**ok, key: bad})


# --------------------------------------------------------------------------- a real network


def _send_two(dut, wa, wb, n_out, seed):
    """Stream ``wa``/``wb`` into the join's ``a``/``b`` with independent random idle cycles
    and drain ``o`` with random stalls."""
    from tests.stream_bench import stream_recv, stream_send
    got = []
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def feed_a(ctx):
        await stream_send(ctx, dut.a, wa, rng=random.Random(seed), idle=0.3)

    async def feed_b(ctx):
        await stream_send(ctx, dut.b, wb, rng=random.Random(seed + 1), idle=0.3)

    async def drain(ctx):
        got.extend(await stream_recv(ctx, dut.o, n_out, rng=random.Random(seed + 2),
                                     stall=0.3))

    for bench in (feed_a, feed_b, drain):
        sim.add_testbench(bench)
    sim.run()
    return got


@pytest.fixture(scope="module", params=["sign", "frac2"])
def resnet(request):
    import torch

    from models import residual as rs
    from models.export_residual import compile_resnet
    from sw.golden import GoldenModel
    from tests.test_residual import _randomise
    torch.manual_seed(3)
    model = rs.tiny_resnet(request.param)
    rng = np.random.default_rng(4)
    _randomise(model, rng)          # non-trivial batch norms, slopes, thresholds, gates
    net = compile_resnet(model.eval())
    images = rng.integers(0, 256, size=(2, int(np.prod(model.input_shape))), dtype=np.uint8)
    return net, GoldenModel(net).run(images).tensors


def test_every_fixed_node_of_a_resnet(resnet):
    """Every fixed-point node of a compiled tiny ResNet, built by hw.residual_units.node_unit
    from the network, reproduces the golden model's tap of two images (random flow)."""
    from hw.residual_units import FIXED_OPS, node_unit, tensor_bits
    from tests.stream_bench import from_beats
    net, taps = resnet
    done = set()
    for k, node in enumerate(net.nodes):
        if node.op not in FIXED_OPS:
            continue
        x = taps[node.inputs[0]]
        want = taps[node.output]
        n = 4 if x.shape[-1] % 4 == 0 else 1
        dut = node_unit(net, node, n)
        xb = tensor_bits(net, node.inputs[0])
        if node.op == "add":
            got = _send_two(dut, pack(x, xb, n), pack(taps[node.inputs[1]], xb, n),
                            want.size // n, seed=k)
        else:
            n_out = want.size if node.op == "linear" else want.size // n
            got = run_stage(dut, pack(x, xb, n), n_out, idle=0.2, stall=0.3, seed=k)
        if node.op == "binarize":
            planes = 1 if node.attrs["activation"] == "sign" else 2
            got = from_beats(got, n, planes, want.shape)
        else:
            width = dut.o.payload.shape().elem_shape.width
            got = unpack(got, width, 1 if node.op == "linear" else n).reshape(want.shape)
        np.testing.assert_array_equal(got, want, err_msg=f"node {node.name} ({node.op})")
        done.add(node.op)
    assert done == set(FIXED_OPS)


# --------------------------------------------------------------------------- documented rates


def test_documented_latency_and_rate():
    """With the input always offering and ``o`` always ready: one input beat per cycle and
    the documented latency (affine 3, rprelu 4, binarize 2, avgpool / sumpool 1 after the
    window's last beat); dup_channels one output beat per cycle."""
    from hw.avgpool2x2 import AvgPool2x2
    from hw.binarize import Binarize
    from hw.dup_channels import DupChannels
    from hw.fixed_affine import FixedAffine, FixedRPReLU
    from hw.global_sumpool import GlobalSumPool
    c, n = 4, 2
    beats = pack(np.arange(4 * 4 * c) % 50, 16, n)
    for dut, lat in [
        (FixedAffine(channels=c, elems_per_beat=n, in_bits=16, out_bits=16, mult=[1] * c,
                     add=[0] * c, shift=0), 3),
        (FixedRPReLU(channels=c, elems_per_beat=n, bits=16, gamma=[0] * c, mult=[1] * c,
                     zeta=[0] * c, shift=0), 4),
        (Binarize(channels=c, elems_per_beat=n, bits=16, activation="sign",
                  thresholds=[[0]] * c), 2),
    ]:
        assert dut.latency == lat
        _, t_in, t_out, _ = simulate_stage(dut, beats, len(beats))
        assert t_in == list(range(len(beats)))
        assert t_out == [t + lat for t in t_in]
    pool = AvgPool2x2(channels=c, height=4, width=4, elems_per_beat=n, bits=16)
    _, t_in, t_out, _ = simulate_stage(pool, beats, len(beats) // 4)
    assert t_in == list(range(len(beats)))
    g = c // n      # window (y, x) = (1, 1) ends with input beat (1*4 + 1)*G + G - 1
    assert t_out[:g] == [(5 * g + j) + 1 for j in range(g)]
    spool = GlobalSumPool(channels=c, height=4, width=4, elems_per_beat=n, bits=16)
    _, t_in, t_out, _ = simulate_stage(spool, beats, g)
    assert t_in == list(range(len(beats))) and t_out == [len(beats) - g + j + 1
                                                         for j in range(g)]
    dup = DupChannels(channels=c, elems_per_beat=n, bits=16, factor=3)
    _, t_in, t_out, _ = simulate_stage(dup, beats, 3 * len(beats))
    assert t_out == list(range(1, 3 * len(beats) + 1))


# --------------------------------------------------------------------------- narrowing


@pytest.mark.parametrize("w,n,bits", [(16, 2, 22), (16, 16, 8), (8, 1, 16), (6, 3, 5), (4, 2, 32)])
@pytest.mark.parametrize("flow", range(len(FLOW)))
def test_fixed_narrow(w, n, bits, flow):
    """Every element in order, the timing model equal to the RTL in every cycle."""
    from hw.fixed_narrow import FixedNarrow
    rng = np.random.default_rng(w + n + bits + flow)
    x = corner_codes(rng, (7, w), bits, 0.3)
    dut = FixedNarrow(bits=bits, in_elems=w, out_elems=n)
    idle, stall = FLOW[flow]
    got = run_stage(dut, pack(x, bits, w), x.size // n, idle=idle, stall=stall, seed=flow)
    np.testing.assert_array_equal(unpack(got, bits, n).reshape(-1), x.reshape(-1))


def test_fixed_narrow_rate_and_rejects():
    from hw.fixed_narrow import FixedNarrow
    dut = FixedNarrow(bits=8, in_elems=8, out_elems=2)
    _, t_in, t_out, _ = simulate_stage(dut, pack(np.arange(24) % 100, 8, 8), 12)
    assert t_out == list(range(1, 13))              # one narrow beat per cycle, latency 1
    assert t_in == [0, 4, 8]                        # the next wide beat with the last piece
    with pytest.raises(ValueError, match="must divide"):
        FixedNarrow(bits=8, in_elems=8, out_elems=3)
