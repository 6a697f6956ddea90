"""The accelerator with early exits (Amaranth simulation): every image's class and scores
equal the golden model's (whichever exit it takes), in image order, under random input idle
and output backpressure; the exits' later layers see only the images that continue; the
EXITj_TAKEN registers count the images per exit and CTRL clears them.
With the input back to back and the output always ready, every image's first input beat and
first and last output beats come at the cycles the cycle model predicts.  The Verilog flow
(exit memories, ``rom_mode="verilog"``, Verilator): tests/test_cosim_exits.py."""

from __future__ import annotations


import numpy as np
import pytest

from hw.accelerator import Accelerator
from hw.axi_lite_regs import REG
from hw.cycle_model import simulate_pipeline
from hw.generate import memory_files
from sw.errors import UserError
from sw.golden import GoldenModel
from sw.network_io import load_compiled_network, write_compiled_network
from tests.accelerator_bench import AcceleratorTB
from tests.netfactory import random_images, random_network
from tests.test_hw_accelerator import axil_master

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def simulate(net, init_dir, ppb, images, *, idle=0.0, stall=0.0, seed=0, registers=None):
    """Classes, scores, tlast flags and the images each engine saw, from the Amaranth model;
    timing in ``simulate.timing`` (:attr:`tests.accelerator_bench.AcceleratorTB.timing`).

    ``registers`` (a dict) receives, after the last result, EXITS and every EXITj_TAKEN
    (``"exits"``, ``"taken"``) and the counters after a CTRL clear (``"cleared"``)."""
    acc = Accelerator(net, init_dir=init_dir, pixels_per_beat=ppb)
    axil_write, axil_read = axil_master(acc)
    engine_beats = [0] * len(net.layers)
    taps = [x for e in acc.engines for x in (e.o.valid, e.o.ready)]

    def count(tap):
        for i in range(len(net.layers)):
            engine_beats[i] += bool(tap[2 * i] and tap[2 * i + 1])

    async def read_counters(ctx):
        exits = len(net.exits)
        registers["exits"] = await axil_read(ctx, REG["EXITS"])
        registers["taken"] = [await axil_read(ctx, REG["EXIT_BASE"] + 4 * j)
                              for j in range(exits + 1)]       # one past: reads 0
        await axil_write(ctx, REG["CTRL"], 1)
        registers["cleared"] = [await axil_read(ctx, REG["EXIT_BASE"] + 4 * j)
                                for j in range(exits)]

    tb = AcceleratorTB(acc, ppb)
    classes, scores, lasts = tb.run(images, idle=idle, stall=stall, seed=seed, taps=taps,
                                    on_cycle=count,
                                    after=read_counters if registers is not None else None)
    simulate.timing = tb.timing
    seen = [eb // l.neuron_folds for eb, l in zip(engine_beats, net.layers)]
    return classes, scores, lasts, seen


NETS = {
    # Two exits, sign activations, converters into the exit engines.
    "sign": dict(image=(1, 4, 4), levels=2, shape=(12, 10, 8, 4),
                 folding=[(4, 8), (2, 4), (4, 5), (2, 4)], exits=((0, 3), (1, 2)), seed=3),
    # frac2 into a gated exit classifier, one exit.
    "frac": dict(image=(1, 4, 4), levels=1, shape=(12, 8, 5), outs=["frac2", "frac2"],
                 folding=[(4, 16), (2, 4), (5, 2)], exits=((0, 4),), seed=4),
}


@pytest.fixture(scope="module", params=list(NETS))
def net_dir(request, tmp_path_factory):
    d = tmp_path_factory.mktemp("exits") / request.param
    write_compiled_network(random_network(**NETS[request.param]), d)
    return load_compiled_network(d), d


@pytest.mark.parametrize("idle,stall", [(0.0, 0.0), (0.3, 0.5), (0.1, 0.9)])
def test_bit_exact_in_order(net_dir, idle, stall):
    net, d = net_dir
    images = random_images(net, 14, seed=int(10 * stall))
    gold = GoldenModel(net).run(images)
    assert len(set(gold.exits.tolist())) > 1, "the test net should use several exits"
    regs = {}
    classes, scores, lasts, seen = simulate(net, d, 8, images, idle=idle, stall=stall,
                                            seed=int(10 * idle), registers=regs)
    np.testing.assert_array_equal(classes, gold.classes)
    np.testing.assert_array_equal(scores, gold.scores)
    assert (lasts[:, -1] == 1).all() and (lasts[:, :-1] == 0).all()
    # Engines after an exit process only the images that continue past it.
    stops = np.array([net.exits[j].after if j < len(net.exits) else len(net.layers)
                      for j in gold.exits])
    assert seen == [int(np.sum(stops >= i)) for i in range(len(net.layers))]
    # The host's per-exit counts.
    exits = len(net.exits)
    assert regs["exits"] == exits
    assert regs["taken"] == np.bincount(gold.exits, minlength=exits + 1)[:exits].tolist() + [0]
    assert regs["cleared"] == [0] * exits


def test_writable_parameters_refuse_exits(net_dir):
    net, d = net_dir
    with pytest.raises(UserError, match="writable parameters") as info:
        Accelerator(net, init_dir=d, pixels_per_beat=8, rom_mode="verilog",
                    writable_params=True)
    assert "\n" not in str(info.value)


def test_verilog_exit_engines_and_memories(net_dir):
    """rom_mode "verilog": the exit engines read the X<j> memories, listed in the ROM plan."""
    net, d = net_dir
    acc = Accelerator(net, init_dir=d, pixels_per_beat=8, rom_mode="verilog")
    assert [e.rom_mode for e in acc.exit_engines] == ["verilog"] * len(net.exits)
    exit_roms = [p for p in acc.rom_plan if p.name.startswith("X")]
    assert {p.file for p in exit_roms} == {name for name, _, _ in memory_files(net)
                                           if name.startswith("X")}
    assert {f"X{j}_weights.mem" for j in range(len(net.exits))} <= {p.file for p in exit_roms}
    assert all(p.requested == "auto" for p in exit_roms)


def test_resource_model_and_report_count_the_exits(net_dir):
    """The analytic model has a part X<j> per exit (its classifier's memories named X<j>.*),
    Yosys stages of an exit branch belong to it, and the per-layer table lists it."""
    from hw.resource_model import describe, estimate
    from hw.resource_report import layer_table
    from hw.yosys_estimate import part_of_stage

    net, _ = net_dir
    exits = [f"X{j}" for j in range(len(net.exits))]
    shape = describe(net)
    assert [p.name for p in shape.parts][-len(exits):] == exits
    assert all(m.name.startswith(p.name + ".") for p in shape.parts[-len(exits):]
               for m in p.memories)
    est = estimate(net)
    assert all(est["parts"][x]["lut"] > 0 and est["parts"][x]["ff"] > 0 for x in exits)
    assert part_of_stage("exit0_engine") == "X0" and part_of_stage("exit1_merge") == "X1"
    assert part_of_stage("mvtu1") == "L1" and part_of_stage("serializer") == "fixed"
    mems = [{"name": "X0.weights", "layer": 0, "style": "distributed"},
            {"name": "L0.weights", "layer": 0, "style": "block"}]
    rows = {r["part"]: r for r in layer_table(None, est["parts"], mems)}
    assert rows["X0"]["memories"] == ["weights distributed"]
    assert rows["L0"]["memories"] == ["weights block"]
    assert [r["part"] for r in layer_table(None, est["parts"], mems)][-len(exits) - 2:] == \
        exits + ["fixed", "total"]


def test_cycle_exact(net_dir):
    """Every image's timing equals the cycle model's, whichever exit it takes."""
    net, d = net_dir
    images = random_images(net, 40, seed=7)
    gold = GoldenModel(net).run(images)
    simulate(net, d, 8, images)
    t_in, t_out, t_end = simulate.timing
    model = simulate_pipeline(net, len(images), pixels_per_beat=8, gates=gold.gates,
                              exits=gold.exits, exit_gates=gold.exit_gates)
    np.testing.assert_array_equal(t_in, model.input_start)
    np.testing.assert_array_equal(t_out, model.output_start)
    np.testing.assert_array_equal(t_end, model.output_end)


def test_cycle_model_needs_the_exits(net_dir):
    net, _ = net_dir
    with pytest.raises(ValueError, match="pass exits="):
        simulate_pipeline(net, 2)
    with pytest.raises(ValueError, match="exits must be"):
        simulate_pipeline(net, 2, gates="open", exits=[0, len(net.exits) + 1])


def test_fold_search_folds_the_main_chain(net_dir):
    """hw.fold on an exit network: the main layers folded for the worst case (no image
    exits), the exit classifiers kept, listed and counted in the resources."""
    from hw.fold import fold_for_target, format_result, main_chain

    net, _ = net_dir
    res = fold_for_target(net, 1e5, 100.0, pixels_per_beat=8)
    assert [ex.layer.folding for ex in res.net.exits] == [ex.layer.folding for ex in net.exits]
    assert not main_chain(res.net).exits and main_chain(res.net).layers == res.net.layers
    text = format_result(res)
    assert all(f"exit after L{ex.after}" in text for ex in net.exits)
    assert res.resources["lut"] >= sum(p["lut"] for p in res.resources["parts"].values()) - 8
