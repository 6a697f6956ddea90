"""AxiLiteRegisterBlock: register map contents, AXI4-Lite handshakes, counters, sticky error."""

import pytest
from amaranth.sim import Simulator

from types import SimpleNamespace

from hw.axi_lite_regs import (MAX_EXITS, REG, REG_ID_VALUE, REG_VERSION_VALUE,
                              AxiLiteRegisterBlock, check_register_map, max_layers)
from sw.errors import UserError

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

LAYERS = [(32, 64, 832, 1024), (16, 32, 1024, 1024), (5, 16, 1024, 10)]


def make(**kw):
    return AxiLiteRegisterBlock(LAYERS, pixels_per_beat=8, classes=10, thermometer_levels=2,
                                **kw)


async def axil_read(ctx, dut, addr, delay_ready=0):
    ctx.set(dut.s_axil_araddr, addr)
    ctx.set(dut.s_axil_arvalid, 1)
    await ctx.tick().until(dut.s_axil_arready)
    ctx.set(dut.s_axil_arvalid, 0)
    if delay_ready:
        await ctx.tick().until(dut.s_axil_rvalid)
    for _ in range(delay_ready):  # rvalid must stay up until rready
        assert ctx.get(dut.s_axil_rvalid) == 1
        assert ctx.get(dut.s_axil_arready) == 0
        await ctx.tick()
    ctx.set(dut.s_axil_rready, 1)
    data, resp = await ctx.tick().sample(dut.s_axil_rdata, dut.s_axil_rresp).until(
        dut.s_axil_rvalid)
    ctx.set(dut.s_axil_rready, 0)
    assert resp == 0
    return data


async def axil_write(ctx, dut, addr, data, *, w_first=False, gap=0):
    """Write with AW and W offered independently (``gap`` cycles apart, either order)."""
    first, second = ((dut.s_axil_wvalid, dut.s_axil_wready), (dut.s_axil_awvalid,
                                                             dut.s_axil_awready))
    if not w_first:
        first, second = second, first
    ctx.set(dut.s_axil_awaddr, addr)
    ctx.set(dut.s_axil_wdata, data)
    ctx.set(dut.s_axil_wstrb, 0xF)
    ctx.set(first[0], 1)
    await ctx.tick().until(first[1])
    ctx.set(first[0], 0)
    for _ in range(gap):
        await ctx.tick()
    ctx.set(second[0], 1)
    await ctx.tick().until(second[1])
    ctx.set(second[0], 0)
    ctx.set(dut.s_axil_bready, 1)
    resp, = await ctx.tick().sample(dut.s_axil_bresp).until(dut.s_axil_bvalid)
    ctx.set(dut.s_axil_bready, 0)
    assert resp == 0


def run(bench, **kw):
    dut = make(**kw)
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def tb(ctx):
        await bench(ctx, dut)
    sim.add_testbench(tb)
    sim.run()


def test_constant_registers():
    async def bench(ctx, dut):
        assert await axil_read(ctx, dut, REG["ID"]) == REG_ID_VALUE
        assert await axil_read(ctx, dut, REG["VERSION"], delay_ready=3) == REG_VERSION_VALUE
        assert await axil_read(ctx, dut, REG["CONFIG"]) == 3 | 8 << 8 | 10 << 16 | 2 << 24
        for i, (pe, simd, mw, mh) in enumerate(LAYERS):
            assert await axil_read(ctx, dut, 0x20 + 8 * i) == pe << 16 | simd
            assert await axil_read(ctx, dut, 0x24 + 8 * i) == mw << 16 | mh
        assert await axil_read(ctx, dut, 0x20 + 8 * len(LAYERS)) == 0  # unmapped
        assert await axil_read(ctx, dut, REG["EXITS"]) == 0             # no early exits
        assert await axil_read(ctx, dut, REG["EXIT_BASE"]) == 0
        assert await axil_read(ctx, dut, 0xFC) == 0
        # Writes to read-only registers are ignored.
        await axil_write(ctx, dut, REG["ID"], 0)
        assert await axil_read(ctx, dut, REG["ID"]) == REG_ID_VALUE
    run(bench)


def test_status_counters_and_clear():
    async def bench(ctx, dut):
        assert await axil_read(ctx, dut, REG["STATUS"]) == 0
        ctx.set(dut.busy, 1)
        assert await axil_read(ctx, dut, REG["STATUS"]) == 1
        ctx.set(dut.busy, 0)
        for _ in range(3):  # three finished images
            ctx.set(dut.image_done, 1)
            await ctx.tick()
            ctx.set(dut.image_done, 0)
            await ctx.tick()
        ctx.set(dut.frame_error, 1)
        await ctx.tick()
        ctx.set(dut.frame_error, 0)
        await ctx.tick()
        assert await axil_read(ctx, dut, REG["STATUS"]) == 2  # sticky
        assert await axil_read(ctx, dut, REG["IMAGES_DONE"]) == 3
        lo1 = await axil_read(ctx, dut, REG["CYCLES_LO"])
        assert await axil_read(ctx, dut, REG["CYCLES_HI"]) == 0
        lo2 = await axil_read(ctx, dut, REG["CYCLES_LO"])
        assert lo2 - lo1 == 8  # each read takes four cycles (AR edge, 2 select stages, R edge)
        await axil_write(ctx, dut, REG["CTRL"], 0)  # bit 0 clear: no effect
        assert await axil_read(ctx, dut, REG["IMAGES_DONE"]) == 3
        await axil_write(ctx, dut, REG["CTRL"], 1, w_first=True, gap=2)
        assert await axil_read(ctx, dut, REG["STATUS"]) == 0
        assert await axil_read(ctx, dut, REG["IMAGES_DONE"]) == 0
        assert await axil_read(ctx, dut, REG["CYCLES_LO"]) < 12
    run(bench)


def test_cycles_high_word_latched():
    async def bench(ctx, dut):
        # Preload the counter just below a 32-bit wrap.
        ctx.set(dut.cycle_counter, (1 << 32) - 2)
        lo = await axil_read(ctx, dut, REG["CYCLES_LO"])
        ctx.set(dut.cycle_counter, 0x5_0000_0000)  # moves on; HI must stay latched
        hi = await axil_read(ctx, dut, REG["CYCLES_HI"])
        assert (hi << 32 | lo) in range((1 << 32) - 2, (1 << 32) + 3)
    run(bench)


def test_write_handshake_independent():
    """AW without W is held; W without AW is held; B only after both."""
    async def bench(ctx, dut):
        ctx.set(dut.s_axil_awaddr, REG["CTRL"])
        ctx.set(dut.s_axil_awvalid, 1)
        await ctx.tick().until(dut.s_axil_awready)
        ctx.set(dut.s_axil_awvalid, 0)
        for _ in range(3):
            await ctx.tick()
            assert ctx.get(dut.s_axil_bvalid) == 0
            assert ctx.get(dut.s_axil_awready) == 0  # one outstanding write
            assert ctx.get(dut.s_axil_wready) == 1
        ctx.set(dut.s_axil_wdata, 1)
        ctx.set(dut.s_axil_wvalid, 1)
        await ctx.tick().until(dut.s_axil_wready)
        ctx.set(dut.s_axil_wvalid, 0)
        await ctx.tick()
        assert ctx.get(dut.s_axil_bvalid) == 1
        for _ in range(2):  # held until bready
            await ctx.tick()
            assert ctx.get(dut.s_axil_bvalid) == 1
            assert ctx.get(dut.s_axil_awready) == 0 and ctx.get(dut.s_axil_wready) == 0
        ctx.set(dut.s_axil_bready, 1)
        await ctx.tick()
        ctx.set(dut.s_axil_bready, 0)
        assert ctx.get(dut.s_axil_bvalid) == 0
        assert ctx.get(dut.s_axil_awready) == 1
    run(bench)


def test_rejects_bad_config():
    with pytest.raises(ValueError, match="layer 0 pe"):
        AxiLiteRegisterBlock([(1 << 16, 1, 1, 1)], pixels_per_beat=1, classes=1,
                             thermometer_levels=1)
    with pytest.raises(ValueError, match="classes"):
        AxiLiteRegisterBlock([(1, 1, 1, 1)], pixels_per_beat=1, classes=256,
                             thermometer_levels=1)
    with pytest.raises(ValueError, match="layers"):
        AxiLiteRegisterBlock([(1, 1, 1, 1)] * 30, pixels_per_beat=1, classes=1,
                             thermometer_levels=1)


def test_exit_counters_and_clear():
    """EXITS reads the number of exits; EXITj_TAKEN counts the pulses of exit_taken bit j;
    CTRL clears them with the other counters; counters past the last exit read 0."""
    async def bench(ctx, dut):
        assert await axil_read(ctx, dut, REG["EXITS"]) == 2
        for bits in (0b01, 0b10, 0b01, 0b00, 0b01):
            ctx.set(dut.exit_taken, bits)
            await ctx.tick()
        ctx.set(dut.exit_taken, 0)
        assert await axil_read(ctx, dut, REG["EXIT_BASE"]) == 3
        assert await axil_read(ctx, dut, REG["EXIT_BASE"] + 4, delay_ready=2) == 1
        assert await axil_read(ctx, dut, REG["EXIT_BASE"] + 8) == 0
        assert await axil_read(ctx, dut, REG["IMAGES_DONE"]) == 0    # counted apart
        await axil_write(ctx, dut, REG["CTRL"], 1)
        assert await axil_read(ctx, dut, REG["EXIT_BASE"]) == 0
        assert await axil_read(ctx, dut, REG["EXIT_BASE"] + 4) == 0
    run(bench, exits=2)


def test_register_map_limits():
    """Layers stop below EXITS, the exit counters below PARAM_SELECT; a network that does
    not fit is a one-line UserError."""
    assert REG["LAYER_BASE"] + 8 * max_layers() <= REG["EXITS"]
    assert REG["EXIT_BASE"] + 4 * MAX_EXITS <= REG["PARAM_SELECT"]
    fits = SimpleNamespace(name="n", layers=[0] * max_layers(), exits=[0] * MAX_EXITS)
    check_register_map(fits)
    for layers, exits, what in ((max_layers() + 1, 0, "layers"), (2, MAX_EXITS + 1, "exits")):
        with pytest.raises(UserError, match=what) as info:
            check_register_map(SimpleNamespace(name="n", layers=[0] * layers,
                                               exits=[0] * exits))
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="exits"):
        make(exits=MAX_EXITS + 1)
