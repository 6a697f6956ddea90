"""Writable parameters: hw.param_loader, RAM-backed engines and the runtime's load sequence.

An accelerator built for network A with ``writable_params=True`` runs A bit-exactly, is then
loaded with network B (same shapes, other weights/thresholds/gates) through the AXI4-Lite
PARAM registers, and runs B bit-exactly and cycle-exactly (Amaranth simulation)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.accelerator import Accelerator
from hw.axi_lite_regs import PARAM_WRITABLE, REG
from hw.cycle_model import simulate_pipeline
from hw.param_loader import SELECT_ADDR_BITS, ParamLoader, select_word
from sw.network_io import load_compiled_network
from sw.errors import UserError
from sw.golden import GoldenModel
from sw.runtime import (Accelerator as Runtime, DeviceError, RegisterDriver, check_same_hardware,
                        parameter_memories, parameter_writes)
from tests.netfactory import random_compiled_network, random_images
from tests.test_hw_accelerator import _beats, axil_master

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def test_select_word_layout():
    import sw.runtime as rt
    assert rt._SELECT_ADDR_BITS == SELECT_ADDR_BITS
    assert select_word(7, 5) == 7 << 20 | 5
    with pytest.raises(ValueError):
        select_word(1 << 12)


@pytest.mark.parametrize("widths", [{0: 5, 1: 40, 4: 96}, {2: 32}, {0: 2048, 3: 33}])
def test_param_loader_assembles_words(widths):
    """Random words through PARAM_SELECT/PARAM_DATA strobes: every write lands with the
    right index, address and data, one per word, addresses counting up."""
    dut = ParamLoader(widths)
    rng = random.Random(len(widths))
    plan = []                                # (index, start, words)
    for index, width in widths.items():
        start = rng.randrange(4)
        plan.append((index, start, [rng.getrandbits(width) for _ in range(3)]))
    # No such memory: one chunk per word, written to index 99, which no memory decodes.
    plan.append((99, 0, [rng.getrandbits(32)]))
    got = []

    async def bench(ctx):
        for index, start, words in plan:
            ctx.set(dut.wdata, select_word(index, start))
            ctx.set(dut.select_we, 1)
            await ctx.tick()
            ctx.set(dut.select_we, 0)
            chunks = dut.chunks(index) if index in widths else 1
            for w in words:
                for k in range(chunks):
                    ctx.set(dut.wdata, (w >> (32 * k)) & 0xFFFF_FFFF)
                    ctx.set(dut.data_we, 1)
                    await ctx.tick()
                    ctx.set(dut.data_we, 0)
                    for _ in range(rng.randrange(3)):        # AXI-Lite gaps
                        if ctx.get(dut.we):
                            got.append((ctx.get(dut.index), ctx.get(dut.addr), ctx.get(dut.data)))
                        await ctx.tick()
                    if ctx.get(dut.we):
                        got.append((ctx.get(dut.index), ctx.get(dut.addr), ctx.get(dut.data)))
        for _ in range(3):
            await ctx.tick()
            if ctx.get(dut.we):
                got.append((ctx.get(dut.index), ctx.get(dut.addr), ctx.get(dut.data)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    want = [(index, start + a, w) for index, start, words in plan for a, w in enumerate(words)]
    assert got == want


# Same shapes and folding, different parameters: A and B.  "frac" has gates and 2-bit
# layers (one with the speculative fold schedule), "mt" multithreshold layers, an ungated
# 2-bit layer and a thresholded last layer with the highest-set-bit decoder.
NETS = {
    "frac": (dict(image=(1, 4, 4), levels=1, shape=[12, 8, 5], outs=["frac2", "frac2"],
                  folding=[(4, 16), (2, 1), (4, 2, True)]), 8),
    "mt": (dict(image=(1, 4, 4), levels=2, shape=[12, 8, 5], outs=["mt3", "mt4"],
                folding=[(4, 8), (2, 3), (2, 4, True)], last="sign",
                decoder="highest_set_bit"), 8),
}


@pytest.mark.parametrize("name", list(NETS))
def test_load_network_b_into_hardware_for_a(tmp_path, name):
    kwargs, ppb = NETS[name]
    dir_a = random_compiled_network(tmp_path / "a", seed=21, **kwargs)
    dir_b = random_compiled_network(tmp_path / "b", seed=22, **kwargs)
    net_a, net_b = load_compiled_network(dir_a), load_compiled_network(dir_b)
    check_same_hardware(net_a, net_b)
    acc = Accelerator(net_a, init_dir=dir_a, pixels_per_beat=ppb, writable_params=True)
    images = random_images(net_a, 3, seed=5)
    beats = _beats(images, ppb)
    c = net_a.classes
    write, read = axil_master(acc)
    runs, info = [], {}

    async def run_images(ctx):
        out, t_in, t_out, cycle = [], [], [], 0
        ctx.set(acc.m_axis_tready, 1)
        k = 0
        while len(out) < len(images) * (1 + c):
            if k < len(beats):
                ctx.set(acc.s_axis_tdata, beats[k])
                ctx.set(acc.s_axis_tlast, int(k % (len(beats) // 3) == len(beats) // 3 - 1))
                ctx.set(acc.s_axis_tvalid, 1)
            else:
                ctx.set(acc.s_axis_tvalid, 0)
            _, _, ready, valid, data = await ctx.tick().sample(
                acc.s_axis_tready, acc.m_axis_tvalid, acc.m_axis_tdata)
            if k < len(beats) and ready:
                if k % (len(beats) // 3) == 0:
                    t_in.append(cycle)
                k += 1
            if valid:
                if len(out) % (1 + c) == 0:
                    t_out.append(cycle)
                out.append(data)
            cycle += 1
            assert cycle < 20000
        ctx.set(acc.s_axis_tvalid, 0)
        words = np.array(out, dtype=np.int64).reshape(len(images), 1 + c)
        scores = np.where(words[:, 1:] >= 1 << 31, words[:, 1:] - (1 << 32), words[:, 1:])
        return words[:, 0], scores, t_in, t_out

    async def bench(ctx):
        info["param_select"] = await read(ctx, REG["PARAM_SELECT"])
        runs.append(await run_images(ctx))
        for offset, value in parameter_writes(net_b):
            await write(ctx, offset, value)
        for _ in range(5):
            await ctx.tick()
        runs.append(await run_images(ctx))

    sim = Simulator(acc)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert info["param_select"] == PARAM_WRITABLE | 3 * len(net_a.layers)
    for net, (classes, scores, t_in, t_out) in zip((net_a, net_b), runs):
        gold = GoldenModel(net).run(images)
        np.testing.assert_array_equal(classes, gold.classes)
        np.testing.assert_array_equal(scores, gold.scores)
        model = simulate_pipeline(net, len(images), pixels_per_beat=ppb, gates=gold.gates)
        # Each run starts from an idle pipeline: the cycle stamps relative to its first beat.
        np.testing.assert_array_equal(np.array(t_in) - t_in[0], model.input_start)
        np.testing.assert_array_equal(np.array(t_out) - t_in[0], model.output_start)
    # The two networks really differ on these images (else the load would prove nothing).
    assert not np.array_equal(GoldenModel(net_a).run(images).layer_outputs[0],
                              GoldenModel(net_b).run(images).layer_outputs[0])


class _FakeMMIO:
    def __init__(self, regs):
        self.regs, self.writes = dict(regs), []

    def read(self, offset):
        return self.regs.get(offset, 0)

    def write(self, offset, value):
        self.writes.append((offset, value))


def _design_regs(net, ppb, writable):
    from hw.axi_lite_regs import AxiLiteRegisterBlock
    block = AxiLiteRegisterBlock(
        [(l.folding.pe, l.folding.simd, l.in_features, l.out_features) for l in net.layers],
        pixels_per_beat=ppb, classes=net.classes, thermometer_levels=net.input.levels,
        writable_params=writable)
    return block.constant_registers()


def test_register_driver_load_checks_before_writing(tmp_path):
    kwargs, ppb = NETS["frac"]
    net_a = load_compiled_network(random_compiled_network(tmp_path / "a", seed=1, **kwargs))
    mmio = _FakeMMIO(_design_regs(net_a, ppb, writable=False))
    with pytest.raises(DeviceError, match="not writable"):
        RegisterDriver(mmio).load_parameters(net_a)
    assert mmio.writes == []
    mmio = _FakeMMIO(_design_regs(net_a, ppb, writable=True))
    n = RegisterDriver(mmio).load_parameters(net_a)
    assert n == len(mmio.writes) == len(parameter_writes(net_a))
    # One PARAM_SELECT per memory, then ceil(width/32) PARAM_DATA writes per word.
    mems = parameter_memories(net_a)
    assert sum(1 for o, _ in mmio.writes if o == REG["PARAM_SELECT"]) == len(mems)
    assert n == sum(1 + len(words) * -(-width // 32) for _, width, words in mems)


def test_runtime_load_refuses_another_shape(tmp_path):
    kwargs, _ = NETS["mt"]
    dir_a = random_compiled_network(tmp_path / "a", seed=1, **kwargs)
    other = dict(kwargs, shape=[12, 8, 4])
    dir_c = random_compiled_network(tmp_path / "c", seed=2, **other)
    rt = Runtime("golden", net=dir_a)
    with pytest.raises(UserError, match=r"does not fit the loaded hardware: network\.\w+"):
        rt.load(dir_c)
    dir_b = random_compiled_network(tmp_path / "b", seed=3, **kwargs)
    rt.load(dir_b)
    images = random_images(rt.net, 4)
    np.testing.assert_array_equal(rt.execute(images)[0],
                                  GoldenModel(load_compiled_network(dir_b)).run(images).classes)
