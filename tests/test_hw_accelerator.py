"""Whole-accelerator Amaranth simulation: bit-exact against the golden model, cycle-exact
against hw.cycle_model, plus framing/register behaviour."""

import os
import random

import numpy as np
import pytest
from amaranth.hdl import Value
from amaranth.sim import Simulator

from hw.accelerator import Accelerator, plan_stages
from hw.axi_lite_regs import REG
from hw.cycle_model import simulate_pipeline, stage_cycles_per_image, steady_state_ii
from sw.network_io import load_compiled_network
from sw.errors import UserError
from sw.golden import GoldenModel, max_pool
from tests.netfactory import random_compiled_network, random_images

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

# name -> (random_compiled_network kwargs, pixels per beat)
NETS = {
    # W1A1, SIMD not a multiple of the beat, padded last layer.
    "w1a1": (dict(image=(1, 3, 4), levels=1, shape=[6, 5], folding=[(2, 3), (2, 3, True)],
                  seed=2), 4),
    # Thermometer T=3, padded first layer, PE=1 last layer (serializer-bound).
    "w1a1_pad": (dict(image=(1, 5, 5), levels=3, shape=[16, 10],
                      folding=[(16, 8, True), (1, 16)], seed=4), 5),
    # Frac: 2-bit activations, gated LSB passes, one layer with speculation (SIMD=1).
    "frac": (dict(image=(1, 4, 4), levels=1, shape=[12, 8, 5], outs=["frac2", "frac2"],
                  folding=[(4, 16), (2, 1), (4, 2, True)], seed=3), 8),
    # Frac into sign, converters on both element kinds.
    "frac_sign": (dict(image=(1, 3, 4), levels=2, shape=[12, 6, 5], outs=["frac2", "sign"],
                       folding=[(3, 4, True), (2, 3), (2, 3, True)], seed=1), 4),
    # Multithreshold 3- and 4-level activations, ungated 2-bit layers (one pass), and a
    # thresholded last layer decoded by BNN-PYNQ's highest-set-bit rule.
    "mt_hsb": (dict(image=(1, 4, 4), levels=2, shape=[12, 8, 5], outs=["mt3", "mt4"],
                    folding=[(4, 8), (2, 3), (2, 4, True)], last="sign",
                    decoder="highest_set_bit", seed=5), 8),
    # Per-class integer keys on the scores, frac2 into a multithreshold layer, NF > 1.
    "keys": (dict(image=(1, 3, 4), levels=1, shape=[10, 6, 5], outs=["frac2", "mt3"],
                  folding=[(5, 4), (2, 5), (2, 3, True)], class_scale=[2, -1, 1, 3, 1],
                  class_bias=[0, 7, -3, 1, 2], seed=6), 4),
}


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    root = tmp_path_factory.mktemp("nets")
    out = {}
    for name, (kwargs, ppb) in NETS.items():
        d = random_compiled_network(root / name, **kwargs)
        out[name] = (load_compiled_network(d), d, ppb)
    return out


def _beats(images, ppb):
    words = []
    for img in images:
        for b in range(len(img) // ppb):
            words.append(sum(int(v) << (8 * j) for j, v in enumerate(img[b * ppb:(b + 1) * ppb])))
    return words


def _decode_tap(layer, engine, payload):
    """One engine output beat -> the PE neuron values in golden-model form."""
    pe = layer.folding.pe
    if layer.out_bits == 1:
        return [(payload >> p) & 1 for p in range(pe)]
    if layer.out_bits == 2:  # StructLayout({"m": PE, "l": PE})
        return [2 * ((payload >> p) & 1) + ((payload >> (pe + p)) & 1) for p in range(pe)]
    w = engine.acc_width
    vals = [(payload >> (p * w)) & ((1 << w) - 1) for p in range(pe)]
    return [v - (1 << w) if v >> (w - 1) else v for v in vals]


def simulate(net, init_dir, ppb, images, *, idle=0.0, stall=0.0, seed=0, tlast=None):
    """Run ``images`` through the Amaranth model of the accelerator.

    Returns (classes, scores, tlast flags, per-layer tap outputs, first-input cycles,
    first-output cycles).
    """
    acc = Accelerator(net, init_dir=init_dir, pixels_per_beat=ppb)
    n, b = len(images), net.input.pixels // ppb
    beats = _beats(images, ppb)
    lasts = tlast if tlast is not None else [int(k % b == b - 1) for k in range(len(beats))]
    c = net.classes
    got, t_in, t_out = [], [], []
    taps = [[] for _ in net.layers]
    tap_sigs = []
    for eng in acc.engines:
        tap_sigs += [eng.o.valid, eng.o.ready, Value.cast(eng.o.payload)]

    async def feed(ctx):
        rng, cycle = random.Random(seed), 0
        for k, word in enumerate(beats):
            while rng.random() < idle:
                ctx.set(acc.s_axis_tvalid, 0)
                await ctx.tick()
                cycle += 1
            ctx.set(acc.s_axis_tdata, word)
            ctx.set(acc.s_axis_tlast, lasts[k])
            ctx.set(acc.s_axis_tvalid, 1)
            while True:
                _, _, ready = await ctx.tick().sample(acc.s_axis_tready)
                if ready:
                    t_in.append(cycle)
                cycle += 1
                if ready:
                    break
        ctx.set(acc.s_axis_tvalid, 0)

    # Engine beats per image: a pooled convolution's last positions may be dropped by its
    # max-pool, so they can leave after the image's result: keep sampling until all came.
    tap_len = [n * l.vectors_per_image * l.mh_padded for l in net.layers]

    async def drain(ctx):
        rng, cycle = random.Random(seed + 1), 0
        while len(got) < n * (1 + c) or any(len(t) < k for t, k in zip(taps, tap_len)):
            ready = rng.random() >= stall
            ctx.set(acc.m_axis_tready, int(ready))
            _, _, valid, data, last, *tap = await ctx.tick().sample(
                acc.m_axis_tvalid, acc.m_axis_tdata, acc.m_axis_tlast, *tap_sigs)
            if valid and ready:
                got.append((data, last))
                t_out.append(cycle)
            for i, (layer, eng) in enumerate(zip(net.layers, acc.engines)):
                tv, tr, tp = tap[3 * i:3 * i + 3]
                if tv and tr:
                    taps[i] += _decode_tap(layer, eng, tp)
            cycle += 1
            assert cycle < 200_000, "accelerator hung"

    sim = Simulator(acc)
    sim.add_clock(1e-8)
    sim.add_testbench(feed)
    sim.add_testbench(drain)
    sim.run()
    out = np.array(got, dtype=np.int64).reshape(n, 1 + c, 2)
    scores = out[:, 1:, 0]
    scores = np.where(scores >= 1 << 31, scores - (1 << 32), scores)
    tap_arrays = []
    for layer, t in zip(net.layers, taps):
        # An engine emits V vectors (output positions) of MHp neurons per image.
        arr = np.array(t, dtype=np.int64).reshape(n, layer.vectors_per_image, layer.mh_padded)
        tap_arrays.append(arr[:, :, :layer.out_features].reshape(n, -1))
    return (out[:, 0, 0], scores, out[:, :, 1], tap_arrays,
            np.array(t_in[::b]), np.array(t_out[::1 + c]))


def axil_master(acc):
    """``(write, read)``: async AXI4-Lite single transfers on ``acc``'s ``s_axil_*`` ports
    for an Amaranth testbench (``await write(ctx, addr, value)``, ``await read(ctx, addr)``)."""
    async def write(ctx, addr, value):
        ctx.set(acc.s_axil_awaddr, addr)
        ctx.set(acc.s_axil_wdata, value)
        ctx.set(acc.s_axil_awvalid, 1)
        ctx.set(acc.s_axil_wvalid, 1)
        await ctx.tick().until(acc.s_axil_awready)
        ctx.set(acc.s_axil_awvalid, 0)
        ctx.set(acc.s_axil_wvalid, 0)
        ctx.set(acc.s_axil_bready, 1)
        await ctx.tick().until(acc.s_axil_bvalid)
        ctx.set(acc.s_axil_bready, 0)

    async def read(ctx, addr):
        ctx.set(acc.s_axil_araddr, addr)
        ctx.set(acc.s_axil_arvalid, 1)
        await ctx.tick().until(acc.s_axil_arready)
        ctx.set(acc.s_axil_arvalid, 0)
        ctx.set(acc.s_axil_rready, 1)
        data, = await ctx.tick().sample(acc.s_axil_rdata).until(acc.s_axil_rvalid)
        ctx.set(acc.s_axil_rready, 0)
        return data
    return write, read


def check_exact(net, result, images):
    gold = GoldenModel(net).run(images)
    classes, scores, lasts, taps, _, _ = result
    np.testing.assert_array_equal(classes, gold.classes)
    np.testing.assert_array_equal(scores, gold.scores)
    expected_last = np.zeros_like(lasts)
    expected_last[:, -1] = 1
    np.testing.assert_array_equal(lasts, expected_last)
    for i, (tap, want) in enumerate(zip(taps, gold.layer_outputs)):
        if net.layers[i].pool:
            # The engine's output is the map before its max-pool: pool it here.
            layer = net.layers[i]
            pre = tap.reshape(len(images), layer.conv.out_height, layer.conv.out_width, -1)
            tap = max_pool(pre, layer.pool).reshape(len(images), -1)
        np.testing.assert_array_equal(tap, want, err_msg=f"layer {i} tap")
    return gold


@pytest.mark.parametrize("name", list(NETS))
def test_bit_and_cycle_exact(nets, name):
    """Back-to-back images at full rate: every output and every timing as predicted."""
    net, d, ppb = nets[name]
    images = random_images(net, 6, seed=11)
    result = simulate(net, d, ppb, images)
    gold = check_exact(net, result, images)
    model = simulate_pipeline(net, len(images), pixels_per_beat=ppb, gates=gold.gates)
    np.testing.assert_array_equal(result[4], model.input_start)
    np.testing.assert_array_equal(result[5], model.output_start)


@pytest.mark.parametrize("name", ["w1a1", "frac"])
def test_random_stalls(nets, name):
    """Idle input cycles and output backpressure lose or duplicate nothing."""
    net, d, ppb = nets[name]
    images = random_images(net, 5, seed=5)
    result = simulate(net, d, ppb, images, idle=0.3, stall=0.5, seed=7)
    check_exact(net, result, images)


@pytest.mark.parametrize("gates", ["open", "closed"])
def test_frac_gating_extremes(tmp_path, gates):
    """All-open gates cost 2*SF per fold; all-closed the abandoned-pass minimum; both exact."""
    kwargs, ppb = NETS["frac"]
    d = random_compiled_network(tmp_path / gates, **{**kwargs, "gates": gates})
    net = load_compiled_network(d)
    images = random_images(net, 4, seed=3)
    result = simulate(net, d, ppb, images)
    gold = check_exact(net, result, images)
    assert gold.lsb_fraction[1] == (1.0 if gates == "open" else 0.0)
    model = simulate_pipeline(net, len(images), pixels_per_beat=ppb, gates=gates)
    np.testing.assert_array_equal(result[4], model.input_start)
    np.testing.assert_array_equal(result[5], model.output_start)


def test_steady_state_ii_is_bottleneck(nets):
    """In steady state images leave exactly max(stage cycles per image) apart."""
    for name, (net, _, ppb) in nets.items():
        for case in ("open", "closed"):
            model = simulate_pipeline(net, 24, pixels_per_beat=ppb, gates=case)
            ii = steady_state_ii(net, ppb, worst=case == "open")
            assert set(model.output_intervals[-6:].tolist()) == {ii}, (name, case)
    # A W1A1 LFC-like folding: layer 0 is the bottleneck with NF*SF cycles.
    net, _, ppb = nets["w1a1"]
    cycles = stage_cycles_per_image(net, ppb)
    assert cycles["mvtu0"] == net.layers[0].neuron_folds * net.layers[0].synapse_folds


def test_engine_timing_matches_engines(nets):
    """The model's folding-derived engine constants are the built engines' own."""
    from hw.mvtu_timing import engine_timing, timing_of
    for net, d, ppb in nets.values():
        acc = Accelerator(net, init_dir=d, pixels_per_beat=ppb)
        for layer, engine in zip(net.layers, acc.engines):
            assert engine_timing(layer) == timing_of(engine)
            assert stage_cycles_per_image(net, ppb, worst=True)[f"mvtu{layer.index}"] == \
                engine.compute_cycles()


def test_framing_error_and_registers(nets):
    """A misplaced TLAST sets STATUS bit 1; IMAGES_DONE counts; CTRL clears."""
    net, d, ppb = nets["w1a1"]
    acc = Accelerator(net, init_dir=d, pixels_per_beat=ppb)
    b = net.input.pixels // ppb
    images = random_images(net, 2, seed=9)
    beats = _beats(images, ppb)
    lasts = [0] * len(beats)
    lasts[b - 1] = 1          # image 0 correct
    lasts[b] = 1              # image 1: TLAST on its first beat (and missing on its last)
    reads = {}
    axil_write, axil_read = axil_master(acc)

    async def bench(ctx):
        reads["idle"] = await axil_read(ctx, REG["STATUS"])
        ctx.set(acc.m_axis_tready, 1)
        for k, word in enumerate(beats):
            ctx.set(acc.s_axis_tdata, word)
            ctx.set(acc.s_axis_tlast, lasts[k])
            ctx.set(acc.s_axis_tvalid, 1)
            await ctx.tick().until(acc.s_axis_tready)
        ctx.set(acc.s_axis_tvalid, 0)
        reads["busy"] = await axil_read(ctx, REG["STATUS"])
        for _ in range(400):
            await ctx.tick()
        reads["done"] = await axil_read(ctx, REG["STATUS"])
        reads["images"] = await axil_read(ctx, REG["IMAGES_DONE"])
        reads["config"] = await axil_read(ctx, REG["CONFIG"])
        reads["layer1"] = await axil_read(ctx, REG["LAYER_BASE"] + 8 + 4)
        await axil_write(ctx, REG["CTRL"], 1)
        reads["cleared"] = await axil_read(ctx, REG["STATUS"])
        reads["images_cleared"] = await axil_read(ctx, REG["IMAGES_DONE"])

    sim = Simulator(acc)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert reads["idle"] == 0
    assert reads["busy"] & 1 == 1
    assert reads["done"] == 0b10          # idle, sticky framing error
    assert reads["images"] == 2
    assert reads["config"] == 2 | ppb << 8 | net.classes << 16 | net.input.levels << 24
    assert reads["layer1"] == net.layers[1].in_features << 16 | net.layers[1].out_features
    assert reads["cleared"] == 0 and reads["images_cleared"] == 0


def test_pixels_per_beat_must_divide(nets):
    net, d, _ = nets["w1a1"]
    with pytest.raises(UserError, match="pixels per beat"):
        plan_stages(net, 5)
    with pytest.raises(UserError, match="pixels per beat"):
        Accelerator(net, init_dir=d, pixels_per_beat=7)


# More random networks on demand: HW_RANDOM_NETS=60 python -m pytest tests/test_hw_accelerator.py
RANDOM_NETS = int(os.environ.get("HW_RANDOM_NETS", "6"))


def _random_config(rng):
    """A random small network, folding and pixels-per-beat (all legal)."""
    from sw.compiled_net import divisors
    c, h, w = 1, int(rng.integers(1, 5)), int(rng.integers(2, 6))
    levels = int(rng.integers(1, 4))
    n_layers = int(rng.integers(1, 4))
    shape = [int(rng.integers(2, 13)) for _ in range(n_layers - 1)] + [int(rng.integers(1, 8))]
    outs = [str(rng.choice(["sign", "frac2", "mt3", "mt4"])) for _ in range(n_layers - 1)]
    last = str(rng.choice(["scores", "scores", "sign", "mt3"]))
    folding, mw = [], c * h * w * levels
    for i, mh in enumerate(shape):
        pad_in = i == 0 and rng.random() < 0.5
        pad_out = i == n_layers - 1 and rng.random() < 0.5
        simd = int(rng.integers(1, mw + 1)) if pad_in else int(rng.choice(divisors(mw)))
        pe = int(rng.integers(1, mh + 1)) if pad_out else int(rng.choice(divisors(mh)))
        folding.append((pe, simd, bool(pad_in or pad_out)))
        mw = mh
    ppb = int(rng.choice(divisors(c * h * w)))
    return dict(image=(c, h, w), levels=levels, shape=shape, outs=outs, folding=folding,
                last=last, decoder="highest_set_bit" if last == "sign" else "argmax",
                seed=int(rng.integers(1 << 30))), ppb


@pytest.mark.parametrize("seed", range(RANDOM_NETS))
def test_random_networks(tmp_path, seed):
    """Random shapes, kinds and foldings: bit-exact and cycle-exact."""
    kwargs, ppb = _random_config(np.random.default_rng(1000 + seed))
    d = random_compiled_network(tmp_path / "net", **kwargs)
    net = load_compiled_network(d)
    images = random_images(net, 4, seed=seed)
    result = simulate(net, d, ppb, images)
    gold = check_exact(net, result, images)
    model = simulate_pipeline(net, len(images), pixels_per_beat=ppb, gates=gold.gates)
    np.testing.assert_array_equal(result[4], model.input_start, err_msg=str(kwargs))
    np.testing.assert_array_equal(result[5], model.output_start, err_msg=str(kwargs))
    # The same network under random input gaps and output backpressure.
    check_exact(net, simulate(net, d, ppb, images, idle=0.3, stall=0.4, seed=seed), images)
