"""The residual-network accelerator (hw/residual_accelerator.py) in the Amaranth simulator:
a tiny ResNet (8x8 input, widths 4/8, one block per stage, sign and frac2 activations, a few
Adam steps from a random init, exported with export_resnet and uniform PE) gives every
image's class and scores exactly as the golden model, in order, under random input idle and
output backpressure; with the input back to back and the output always ready every image's
first input beat and first and last output beats come at the cycles the residual cycle model
predicts; the skip FIFO depths come from the cycle model and are enough (no deadlock, nothing
lost, even with deliberately shallow FIFOs the pipeline only slows)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hw.residual_accelerator import (ResidualAccelerator, plan_residual, refold_residual,
                                     uniform_folding)
from hw.residual_timing import simulate_residual, skip_fifo_depths
from sw.errors import UserError
from sw.golden import GoldenModel
from sw.network_io import load_network
from tests.accelerator_bench import AcceleratorTB
from tests.modelfactory import resnet_images, train_resnet_briefly

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
torch.set_num_threads(1)

PPB = 1


def _tiny(activation: str, steps: int = 4, seed: int = 0):
    """An 8x8 ResNet (widths 4/8, one block per stage, 4 classes) after a few Adam steps."""
    from models import residual as rs
    torch.manual_seed(seed)
    model = rs.ResNet(input_shape=(1, 8, 8), thermometer_levels=2, widths=(4, 8), blocks=1,
                      activation=activation, classes=4)
    return train_resnet_briefly(model, resnet_images(model, 64, seed), steps, split=32)


@pytest.fixture(scope="module", params=["sign", "frac2"])
def exported(request, tmp_path_factory):
    from models.export_residual import compile_resnet, export_resnet
    model = _tiny(request.param)
    images = resnet_images(model, 16, seed=5)
    out = tmp_path_factory.mktemp("resacc") / request.param
    fold = uniform_folding(compile_resnet(model))
    export_resnet(model, out, images, name=f"tiny_{request.param}", vectors=0, folding=fold)
    net = load_network(out)
    return net, out, images


def simulate(acc, images, *, idle=0.0, stall=0.0, seed=0, limit=200_000, registers=None,
             bad_tlast=None):
    """Classes, scores, tlast flags of ``images`` through ``acc``; timing in
    ``simulate.timing`` = (first input beats, first output beats, last output beats).
    ``registers`` (a dict) receives, after the last result, register values by name (and
    ``"cleared"``: IMAGES_DONE and STATUS after a CTRL clear); ``bad_tlast``: an input beat
    index whose tlast is inverted."""

    async def read_registers(ctx):
        from hw.axi_lite_regs import REG
        from tests.test_hw_accelerator import axil_master
        write, read = axil_master(acc)
        for name in ("ID", "CONFIG", "STATUS", "IMAGES_DONE", "LAYER_BASE"):
            registers[name] = await read(ctx, REG[name])
        await write(ctx, REG["CTRL"], 1)
        registers["cleared"] = (await read(ctx, REG["IMAGES_DONE"]),
                                await read(ctx, REG["STATUS"]))

    tb = AcceleratorTB(acc, PPB)
    result = tb.run(images, idle=idle, stall=stall, seed=seed, limit=limit, bad_tlast=bad_tlast,
                    after=read_registers if registers is not None else None)
    simulate.timing = tb.timing
    return result


def _accelerator(net, d, **kwargs):
    return ResidualAccelerator(net, init_dir=d, pixels_per_beat=PPB, **kwargs)


def _check(net, images, got):
    gold = GoldenModel(net).run(images)
    classes, scores, lasts = got
    np.testing.assert_array_equal(classes, gold.classes)
    np.testing.assert_array_equal(scores, gold.scores)
    assert (lasts[:, -1] == 1).all() and (lasts[:, :-1] == 0).all()
    return gold


@pytest.mark.parametrize("idle,stall", [(0.0, 0.0), (0.3, 0.5), (0.1, 0.9)])
def test_bit_exact_in_order(exported, idle, stall):
    """Every class and score equals the golden model's, in order, under random flow."""
    net, d, images = exported
    imgs = images[:6] if idle or stall else images[:10]
    gold = _check(net, imgs, simulate(_accelerator(net, d), imgs, idle=idle, stall=stall,
                                      seed=int(10 * stall)))
    assert len({tuple(r) for r in gold.scores.tolist()}) > len(imgs) // 2, "images should differ"


def test_cycle_exact(exported):
    """Back to back, output always ready: every image's first input beat and first and last
    output beats at the cycles of simulate_residual (gates from the golden model)."""
    net, d, images = exported
    imgs = images[:8]
    acc = _accelerator(net, d)
    gold = _check(net, imgs, simulate(acc, imgs))
    t_in, t_out, t_end = simulate.timing
    model = simulate_residual(net, len(imgs), pixels_per_beat=PPB, gates=gold.gates,
                              skip_depths=acc.skip_depths)
    np.testing.assert_array_equal(t_in, model.timing.input_start)
    np.testing.assert_array_equal(t_out, model.timing.output_start)
    np.testing.assert_array_equal(t_end, model.timing.output_end)


def test_skip_depths_from_the_model(exported):
    """The depths are max inner occupancy + 2 of the unbounded model (gates all open / all
    closed), so with them the model runs exactly as unbounded there; on real images (gates
    from the data) the unbounded occupancy stays within them too."""
    net, _, images = exported
    depths = skip_fifo_depths(net, PPB)
    assert set(depths) == {b.name for b in plan_residual(net, PPB).blocks} == \
        {"b0_add", "b1_add"}
    gated = any(l.gated for l in net.layers)
    for case in (["open", "closed"] if gated else ["open"]):
        free = simulate_residual(net, 4, pixels_per_beat=PPB, gates=case, skip_depths=None)
        sized = simulate_residual(net, 4, pixels_per_beat=PPB, gates=case)
        np.testing.assert_array_equal(free.timing.output_end, sized.timing.output_end)
        assert all(free.skip_inner[b] + 2 <= depths[b] for b in depths)
    gold = GoldenModel(net).run(images)
    free = simulate_residual(net, len(images), pixels_per_beat=PPB, gates=gold.gates,
                             skip_depths=None)
    assert all(free.skip_inner[b] + 2 <= depths[b] for b in depths), (free.skip_inner, depths)
    if gated:   # random gate patterns (per image a different share open): within them too
        rng = np.random.default_rng(11)
        n = 6
        for trial in range(3):
            p = rng.random((n, 1))
            gates = [None if g is None else rng.random((n, g.shape[1])) < p
                     for g in gold.gates]
            free = simulate_residual(net, n, pixels_per_beat=PPB, gates=gates,
                                     skip_depths=None)
            assert all(free.skip_inner[b] + 2 <= depths[b] for b in depths), \
                (trial, free.skip_inner, depths)


def test_plan_either_reader_order(exported):
    """The block's main path is the one holding the convolution, whichever of the fork's
    readers comes first in the node list."""
    import copy
    net, _, _ = exported
    plan = plan_residual(net, PPB)
    swapped = copy.deepcopy(net)
    nodes = swapped.nodes
    i = next(k for k, n in enumerate(nodes) if n.name == "b1_act")
    j = next(k for k, n in enumerate(nodes) if n.name == "b1_pool")
    pool = nodes.pop(j)
    nodes.insert(i, pool)           # the shortcut's pool before the block's binarize
    again = plan_residual(swapped, PPB)
    for a, b in zip(plan.blocks, again.blocks):
        assert [s.name for s in a.main] == [s.name for s in b.main]
        assert [s.name for s in a.skip] == [s.name for s in b.skip]


def _min_depth(net, name, depths, gates="open"):
    """The smallest depth of block ``name``'s skip FIFO with which the model finishes."""
    for depth in range(2, depths[name] + 1):
        try:
            simulate_residual(net, 3, pixels_per_beat=PPB, gates=gates,
                              skip_depths={**depths, name: depth}, max_cycles=30_000)
            return depth
        except RuntimeError:
            continue
    raise AssertionError(f"{name}: no depth up to {depths[name]} works")


def test_shallow_skip_fifo(exported):
    """The depth matters and the models know why: the first block's 3x3 window needs about
    a row of look-ahead past the fork, so a skip FIFO below it deadlocks (the model stalls,
    and so does the RTL: no output), while the smallest depth that works only slows the
    pipeline (RTL == model, every result exact, random flow too)."""
    net, d, images = exported
    depths = skip_fifo_depths(net, PPB)
    k = _min_depth(net, "b0_add", depths)
    assert 2 < k < depths["b0_add"]
    imgs = images[:3]
    gold = GoldenModel(net).run(imgs)
    acc = _accelerator(net, d, skip_depths={**depths, "b0_add": k})
    _check(net, imgs, simulate(acc, imgs))
    t_end = simulate.timing[2]
    model = simulate_residual(net, len(imgs), pixels_per_beat=PPB, gates=gold.gates,
                              skip_depths=acc.skip_depths)
    np.testing.assert_array_equal(t_end, model.timing.output_end)
    full = simulate_residual(net, len(imgs), pixels_per_beat=PPB, gates=gold.gates)
    assert (model.timing.output_end > full.timing.output_end).all()
    _check(net, imgs, simulate(acc, imgs, idle=0.2, stall=0.5, seed=3))
    stuck = _accelerator(net, d, skip_depths={**depths, "b0_add": k - 1})
    with pytest.raises(AssertionError, match="hung"):
        simulate(stuck, imgs[:1], limit=8_000)


def test_refusals(exported):
    """One-line errors: convolutions with different PEs; scores wider than the output beat."""
    import copy
    from dataclasses import replace
    net, _, _ = exported
    mixed = copy.deepcopy(net)
    mixed.layers[-1] = replace(mixed.layers[-1],
                               folding=replace(mixed.layers[-1].folding, pe=8))
    with pytest.raises(UserError, match="uniform_folding") as info:
        plan_residual(mixed, PPB)
    assert "\n" not in str(info.value)
    wide = copy.deepcopy(net)
    lin = wide.producer("scores")
    lin.constants["bias"] = np.full_like(lin.constants["bias"], (1 << 31) - 1)
    with pytest.raises(UserError, match="scores need 3[3-9] bits") as info:
        plan_residual(wide, PPB)
    assert "\n" not in str(info.value)


def test_value_ranges_hold_every_tap(exported):
    """The interval bounds behind the output width contain every golden tap of the test
    images, and the scores' width is narrower than the linear unit's generic bound."""
    from hw.fixed_linear import score_bits
    from hw.residual_accelerator import score_range_bits, value_ranges
    from hw.residual_units import tensor_bits
    net, _, images = exported
    taps = GoldenModel(net).run(images).tensors
    ranges = value_ranges(net)
    assert set(ranges) >= {n.output for n in net.nodes if n.op not in ("thermometer",
                                                                        "binarize")}
    for name, (lo, hi) in ranges.items():
        x = taps[name].reshape(len(images), -1, len(lo))
        assert (x >= lo).all() and (x <= hi).all(), name
    lin = net.producer("scores")
    assert score_range_bits(net) < score_bits(net.tensor(lin.inputs[0]).shape[0],
                                              tensor_bits(net, lin.inputs[0]),
                                              lin.attrs["weight_bits"])


def test_registers_and_framing(exported):
    """The AXI4-Lite block of the chain accelerator: ID, CONFIG (the convolutions as layers),
    LAYER0_FOLD, IMAGES_DONE and STATUS after a run; CTRL clears; a wrong tlast sets the
    sticky framing error without disturbing the results."""
    from hw.axi_lite_regs import REG_ID_VALUE
    net, d, images = exported
    imgs = images[:2]
    regs = {}
    _check(net, imgs, simulate(_accelerator(net, d), imgs, registers=regs))
    assert regs["ID"] == REG_ID_VALUE
    assert regs["CONFIG"] == (len(net.layers) | PPB << 8 | net.classes << 16
                              | net.input.levels << 24)
    assert regs["LAYER_BASE"] == net.layers[0].folding.pe << 16 | net.layers[0].folding.simd
    assert regs["IMAGES_DONE"] == 2 and regs["STATUS"] == 0
    assert regs["cleared"] == (0, 0)
    regs = {}
    _check(net, imgs, simulate(_accelerator(net, d), imgs, registers=regs, bad_tlast=5))
    assert regs["STATUS"] == 2 and regs["cleared"] == (0, 0)


def test_lint(exported, tmp_path):
    """The whole residual accelerator (rom_mode "verilog": the engines' fracbnn_rom ROMs) as
    one flat module is lint clean (`verilator --lint-only -Wall`, Amaranth's width casts
    waived), frac2 included (its lane-schedule engines' fold-base registers are as wide as
    their largest base, ``(NF - 1) * SF``)."""
    import shutil
    import subprocess

    from hw.generate import TOP_NAME, WAIVER_FILE
    from hw.netlist import convert_flat
    from sim.toolchain import verilator_env
    net, d, _ = exported
    acc = _accelerator(net, d, rom_mode="verilog")
    (tmp_path / f"{TOP_NAME}.v").write_text(convert_flat(acc, TOP_NAME))
    shutil.copy(WAIVER_FILE, tmp_path / "verilator_waiver.vlt")
    shutil.copy(Path(__file__).parent.parent / "hw" / "verilog" / "fracbnn_rom.v", tmp_path)
    result = subprocess.run(["verilator", "--lint-only", "-Wall", "--top-module", TOP_NAME,
                             "verilator_waiver.vlt", f"{TOP_NAME}.v", "fracbnn_rom.v"],
                            cwd=tmp_path, env=verilator_env(), capture_output=True, text=True,
                            timeout=600, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_verilator_batch(exported, tmp_path):
    """The emitted Verilog (generate_residual: the hw.generate layout) in the C++ batch
    harness of sim/batch.py (Verilator): every class and score equals the golden model's,
    every image's first input and first output beat the cycle model's (back to back, output
    always ready), and under random idle / backpressure still every result; the registers
    after the run (ID, IMAGES_DONE, STATUS idle, no framing error)."""
    import json

    from hw.axi_lite_regs import REG_ID_VALUE
    from hw.residual_generate import generate_residual
    from sim.batch import build_batch, run_batch
    net, d, images = exported
    out = generate_residual(d, tmp_path / "design", pixels_per_beat=PPB)
    doc = json.loads((out / "design.json").read_text())
    assert doc["skip_fifo_depths"] == skip_fifo_depths(net, PPB)
    assert all((out / f).is_file() for f in doc["files"])
    built = build_batch(out, jobs=1)
    gold = GoldenModel(net).run(images)
    res = run_batch(built, images)
    np.testing.assert_array_equal(res.classes, gold.classes)
    np.testing.assert_array_equal(res.scores, gold.scores)
    model = simulate_residual(net, len(images), pixels_per_beat=PPB, gates=gold.gates)
    t0 = res.first_in[0]
    np.testing.assert_array_equal(res.first_in - t0, model.timing.input_start)
    np.testing.assert_array_equal(res.first_out - t0, model.timing.output_start)
    np.testing.assert_array_equal(res.last_out - t0, model.timing.output_end)
    assert (res.reg_id, res.reg_images_done, res.reg_status, res.framing_errors) == \
        (REG_ID_VALUE, len(images), 0, 0)
    rough = run_batch(built, images, stall_percent=40, idle_percent=30, seed=5)
    np.testing.assert_array_equal(rough.classes, gold.classes)
    np.testing.assert_array_equal(rough.scores, gold.scores)


def test_cli(exported, tmp_path, capsys):
    """``python -m hw.residual_generate EXPORTDIR OUTDIR``: the design directory and a
    one-line summary (depths, cycle model); a bad beat size is a one-line error."""
    import json

    from hw.residual_generate import main
    from hw.residual_timing import cycle_summary
    net, d, _ = exported
    assert main([str(d), str(tmp_path / "out")]) == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and "skip FIFO depths" in line and "II" in line
    doc = json.loads((tmp_path / "out" / "design.json").read_text())
    assert doc["cycle_model"] == cycle_summary(net, PPB)
    # The engines' bound (64 pixels x SF 9, both planes with gates open); the one-lane
    # fixed-point streams (fixed_elems 1 of PE 4) add at most 2 %.
    bound = 576 if not net.layers[-1].gated else 1152
    assert doc["fixed_elems"] == 1 and doc["elems_per_beat"] == 4
    assert bound <= doc["cycle_model"]["open"]["ii"] <= 1.02 * bound
    assert main([str(d), str(tmp_path / "bad"), "--pixels-per-beat", "5"]) == 2
    assert "not a multiple of 5" in capsys.readouterr().out
    assert not (tmp_path / "bad").exists()


def test_resnet20_fixed_point_streams_are_two_lanes():
    """ResNet-20 at the benchmark's folding (PE 16, stem SIMD 96): the fixed-point units need
    2 lanes (the 32x32x16 maps' 8,192 beats per image stay under the engines' 9,216
    cycles), each engine is followed by a 16 -> 2 narrowing stage; at the exporter's
    folding (stem SIMD 32: 27,648 cycles) one lane is enough."""
    from hw.residual_accelerator import fixed_elems_per_beat, narrow_unit
    from models.export_residual import compile_resnet
    from models.residual import resnet20
    from sim.resnet_bench import BENCH_FOLDING
    from sw.compiled_net import Folding
    torch.manual_seed(0)
    net = compile_resnet(resnet20().eval(), "r20")
    assert fixed_elems_per_beat(refold_residual(net, uniform_folding(net))) == 1
    net = refold_residual(net, [Folding(pe=f["pe"], simd=f["simd"]) for f in BENCH_FOLDING])
    plan = plan_residual(net, 8, check_scores=False)
    assert (plan.elems_per_beat, plan.fixed_elems, fixed_elems_per_beat(net)) == (16, 2, 2)
    narrows = [s for s in plan.items if getattr(s, "kind", None) == "narrow"]
    narrows += [s for b in plan.blocks for s in b.main if s.kind == "narrow"]
    assert sorted(s.layer.index for s in narrows) == list(range(len(net.layers)))
    assert narrow_unit(net, net.layers[0], plan).pieces == 8
