"""Convolutional networks through the whole accelerator in the Amaranth simulator.

Padding, sliding-window generators, conv engines, max-pools and width converters composed by
``hw.accelerator.plan_stages``: every class, score and per-layer engine output equals the
golden model, and every image's first input and first output cycle equals the cycle model
(:func:`hw.cycle_model.simulate_pipeline`, composed from each stage's timing model).
"""

import numpy as np
import pytest
import torch

from hw.cycle_model import simulate_pipeline, stage_cycles_per_image, steady_state_ii
from models.export import compile_model
from models.layers import BinaryNet
from sw.compiled_net import Folding, refold
from sw.network_io import load_compiled_network, write_compiled_network
from tests.test_conv import randomise
from tests.test_hw_accelerator import check_exact, simulate

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
torch.set_num_threads(1)

# name -> (BinaryNet kwargs, folding (pe, simd) per layer or None, pixels per beat)
NETS = {
    # 1-bit: same padding, 2x2 pool, valid conv, dense; SIMD < C on conv1.
    "sign": (dict(input_shape=(1, 6, 6), thermometer_levels=1, hidden=[8], activation="sign",
                  classes=4, convs=[{"channels": 4, "kernel": 3, "pad": 1, "pool": 2},
                                    {"channels": 6, "kernel": 2}]),
             [(2, 1), (3, 2), (4, 8), (2, 8)], 4),
    # frac2: C=3 input (T=2 -> 6 channels), stride 2, 1x1 kernel, pool on 2-bit codes, gating.
    "frac": (dict(input_shape=(3, 7, 5), thermometer_levels=2, hidden=[], activation="frac2",
                  classes=3, convs=[{"channels": 4, "kernel": 3, "stride": 2, "pad": 1},
                                    {"channels": 6, "kernel": 1, "pool": 2}]),
             [(2, 3), (6, 4), (3, 6)], 5),
}


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    root = tmp_path_factory.mktemp("convnets")
    out = {}
    for name, (kwargs, fold, ppb) in NETS.items():
        net = compile_model(randomise(BinaryNet(**kwargs), seed=3), name)
        net = refold(net, [Folding(pe, simd) for pe, simd in fold])
        write_compiled_network(net, root / name)
        out[name] = (load_compiled_network(root / name), root / name, ppb)
    return out


@pytest.mark.parametrize("name", list(NETS))
def test_conv_bit_and_cycle_exact(nets, name):
    net, d, ppb = nets[name]
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, size=(3, net.input.pixels), dtype=np.uint8)
    result = simulate(net, d, ppb, images)
    gold = check_exact(net, result, images)
    model = simulate_pipeline(net, len(images), pixels_per_beat=ppb, gates=gold.gates)
    np.testing.assert_array_equal(result[4], model.input_start)
    np.testing.assert_array_equal(result[5], model.output_start)


def test_conv_random_stalls(nets):
    net, d, ppb = nets["frac"]
    rng = np.random.default_rng(6)
    images = rng.integers(0, 256, size=(3, net.input.pixels), dtype=np.uint8)
    check_exact(net, simulate(net, d, ppb, images, idle=0.3, stall=0.5, seed=2), images)


def test_conv_steady_state_is_bottleneck(nets):
    net, _, ppb = nets["sign"]
    model = simulate_pipeline(net, 8, pixels_per_beat=ppb)
    cycles = stage_cycles_per_image(net, ppb)
    assert cycles["mvtu0"] == 36 * 9 * 2         # 6x6 positions, SF 9, NF 2
    assert set(model.output_intervals[-3:].tolist()) == {steady_state_ii(net, ppb)}


def test_periodic_cycle_model_equals_stepping_every_cycle(nets):
    """The period-detecting cycle model gives exactly the per-cycle model's events."""
    from tests.netfactory import random_network
    from tests.test_hw_accelerator import NETS as FC_NETS

    cases = [(net, ppb, None) for net, _, ppb in nets.values() if not any(
        l.in_bits == 2 for l in net.layers)]
    cases += [(nets["frac"][0], nets["frac"][2], g) for g in ("open", "closed")]
    for kwargs, ppb in FC_NETS.values():
        net = random_network(**kwargs)
        cases += [(net, ppb, g) for g in ("open", "closed")]
    for net, ppb, gates in cases:
        fast = simulate_pipeline(net, 14, pixels_per_beat=ppb, gates=gates)
        slow = simulate_pipeline(net, 14, pixels_per_beat=ppb, gates=gates, periodic=False)
        for name in ("input_start", "output_start", "output_end"):
            np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name),
                                          err_msg=f"{net.name} {gates} {name}")


def test_window_generator_bottleneck_is_reported():
    """A 1x1 stride-2 convolution whose engine is fast: the window generator's input side
    (every input pixel) sets the II, and generation says so with the fix."""
    from hw.cycle_model import bottleneck_notes

    net = compile_model(randomise(BinaryNet(
        input_shape=(1, 8, 8), thermometer_levels=4, hidden=[], activation="sign", classes=2,
        convs=[{"channels": 8, "kernel": 1, "stride": 2}])), "w")
    net = refold(net, [Folding(8, 1), Folding(2, 8)])
    notes = bottleneck_notes(net, 8)
    # 8x8 pixels of 4 channels at SIMD 1: 256 beats into the window generator (and out of
    # the width converter before it) against 4x4 positions x 4 beats = 64 engine cycles.
    assert [n.split(" needs")[0] for n in notes] == ["convert stage convert0", "window stage window0"]
    assert "256 cycles per image" in notes[1] and "raise the SIMD of layer 0" in notes[1]
    # SIMD 4 (one beat per pixel), PE 1 (8 neuron folds): the engine is the slowest again.
    assert bottleneck_notes(refold(net, [Folding(1, 4), Folding(2, 8)]), 8) == []


def test_exact_ii_is_the_periodic_interval(nets):
    """exact_steady_state_ii: the interval the stepped model settles to (stalls included),
    never below the bottleneck-stage bound."""
    from hw.cycle_model import exact_steady_state_ii

    for name, (net, _, ppb) in nets.items():
        for gates in ("closed", "open"):
            exact = exact_steady_state_ii(net, ppb, gates=gates)
            slow = simulate_pipeline(net, 24, pixels_per_beat=ppb, gates=gates, periodic=False)
            assert exact == slow.input_start[-1] - slow.input_start[-2], (name, gates)
            assert exact >= steady_state_ii(net, ppb, worst=gates == "open")
