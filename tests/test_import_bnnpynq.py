"""models/import_bnnpynq.py: BNN-PYNQ parameter folders become exact compiled networks.

Synthetic folders (random weights, thresholds and padding bits in finnthesizer's layout,
written by tests/test_bnnpynq.py's packer) are checked against a scalar restatement of
BNN-PYNQ's arithmetic on every activation, then through the whole accelerator (Amaranth
simulation, bit- and cycle-exact); BNN-PYNQ's own trained LFC parameters are imported and
checked against the reference on MNIST.
"""

from __future__ import annotations

import numpy as np
import pytest

from hw.cycle_model import data_independent_ii, simulate_pipeline
from models.bnnpynq import load_params
from models.import_bnnpynq import (check_against_reference, compile_bnnpynq, import_bnnpynq,
                                   main)
from sw.network_io import load_compiled_network
from sw.errors import UserError
from sw.golden import GoldenModel
from tests.test_bnnpynq import SHARED, brute_force, geometry, write_folder

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

# 784 pixels padded to 800 (SIMD 16), a 3-level hidden layer feeding a 2-bit one-pass layer,
# and a last layer of 16 neurons (10 classes + 6 padding neurons that never fire).
A2 = [geometry(800, 12, 16, 4, 2), geometry(12, 12, 4, 3, 2), geometry(12, 16, 4, 4, 1)]
A1 = [geometry(800, 12, 16, 4, 1), geometry(12, 12, 4, 3, 1), geometry(12, 16, 4, 4, 1)]


def _folder(tmp_path, cfgs, seed):
    """A random parameter folder; thresholds spread over the accumulator ranges so every
    level occurs, some beyond them (the importer clamps those)."""
    rng = np.random.default_rng(seed)
    weights = [rng.integers(0, 2, size=(c["mh"], c["mw"]), dtype=np.uint8) for c in cfgs]
    thresholds = []
    for k, c in enumerate(cfgs):
        in_bits = 1 if k == 0 else cfgs[k - 1]["api"]
        mw = 784 if k == 0 else c["mw"]
        if in_bits == 1 and all(x["api"] == 1 for x in cfgs):
            t = rng.integers(mw // 2 - 12, mw // 2 + 13, size=(c["mh"], 1))
        else:
            t = rng.integers(-10, 11, size=(c["mh"], c["api"]))
        t[0] = -(1 << 15)                         # always fires
        t = np.sort(t, axis=1).astype(np.int64)
        if k == len(cfgs) - 1:
            # Higher classes fire more rarely, so the highest set bit varies.
            lo, hi = (0, mw) if all(x["api"] == 1 for x in cfgs) else (-mw, mw)
            t[1:10, 0] = [lo + (hi - lo) * (25 + 6 * n) // 100 for n in range(1, 10)]
            t[10:] = (1 << 15) - 1                # padding neurons: never fire
        thresholds.append(t)
    d = tmp_path / f"params{seed}"
    write_folder(d, cfgs, weights, thresholds)
    return d, weights, thresholds


def _images(n, seed):
    rng = np.random.default_rng(seed)
    # Dark and bright pixels around BNN-PYNQ's 128 threshold.
    return rng.integers(0, 256, size=(n, 784), dtype=np.uint8)


@pytest.mark.parametrize("cfgs,seed", [(A2, 1), (A2, 2), (A1, 3), (A1, 4)])
def test_synthetic_matches_scalar_semantics(tmp_path, cfgs, seed):
    d, w, t = _folder(tmp_path, cfgs, seed)
    layers = load_params(d)
    net = compile_bnnpynq(layers, "synthetic", {})
    images = _images(40, seed)
    classes, outs = brute_force(cfgs, w, t, images, 10)
    gold = GoldenModel(net).run(images)
    np.testing.assert_array_equal(gold.classes, classes)
    # The last layer's 10 real outputs; the scalar model's values are -1/0/+1 for 2-bit
    # layers (our code q = value + 1).
    np.testing.assert_array_equal(gold.scores, outs[:, :10])
    assert len(set(gold.classes.tolist())) >= 2, "test images should reach several classes"
    for layer in net.layers[1:]:
        assert not layer.gated
    report = check_against_reference(net, layers, images)
    assert report["layer_mismatches"] == [0, 0, 0] and report["class_mismatches"] == 0
    if cfgs is A2:
        assert [l.out for l in net.layers] == ["multithreshold", "multithreshold", "sign"]
        assert [l.in_bits for l in net.layers] == [1, 2, 2]
        # One pass per fold: NF*SF cycles (784 inputs need no padding at SIMD 16, so layer 0
        # takes 49 folds where BNN-PYNQ's 800-wide matrix takes 50).
        assert data_independent_ii(net) == max(l.weight_depth for l in net.layers) == 147


@pytest.mark.parametrize("cfgs,seed", [(A2, 5), (A1, 6)])
def test_synthetic_through_the_accelerator(tmp_path, cfgs, seed):
    """The imported network in the Amaranth simulation: every layer's outputs, class and
    output bit equal the golden model, every cycle stamp the cycle model."""
    from tests.test_hw_accelerator import check_exact, simulate
    d, _, _ = _folder(tmp_path, cfgs, seed)
    out = tmp_path / "imported"
    import_bnnpynq(d, out, check=0, vectors=0)
    net = load_compiled_network(out)
    images = _images(4, seed)
    result = simulate(net, out, 16, images)
    gold = check_exact(net, result, images)
    model = simulate_pipeline(net, len(images), pixels_per_beat=16, gates=gold.gates)
    np.testing.assert_array_equal(result[4], model.input_start)
    np.testing.assert_array_equal(result[5], model.output_start)


def _mnist_or_skip():
    from sw.mnist import load_mnist
    try:
        return load_mnist("test")
    except UserError as exc:
        pytest.skip(f"MNIST unavailable: {exc}")


# Correct answers on the first 2000 MNIST test images (the whole 10,000: 9840 / 9849, the
# published 98.40 % / 98.49 %; `python -m models.import_bnnpynq DIR OUT --check 10000`).
FIRST_2000 = {"lfcW1A1": 1954, "lfcW1A2": 1956}


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared BNN-PYNQ parameters absent")
@pytest.mark.parametrize("name", ["lfcW1A1", "lfcW1A2"])
def test_shared_lfc_import(tmp_path, name, capsys):
    _mnist_or_skip()
    out = tmp_path / "out dir"           # a space in the path is ordinary input
    assert main([str(SHARED / name), str(out), "--check", "2000"]) == 0
    printed = capsys.readouterr().out
    assert f"{FIRST_2000[name]}/2000 correct" in printed and "identical" in printed
    net = load_compiled_network(out)
    assert net.output.decoder == "highest_set_bit" and net.classes == 10
    assert [(l.folding.pe, l.folding.simd) for l in net.layers] == \
        [(32, 64), (64, 32), (32, 64), (16, 8)]
    # BNN-PYNQ's folding: 512 cycles per image for W1A1 and W1A2 alike (one pass per fold).
    assert data_independent_ii(net) == 512
    assert net.source["checked_images"] == 2000


def test_cli_errors(tmp_path, capsys):
    with pytest.raises(UserError, match="parameter folder not found|config.h"):
        main([str(tmp_path / "missing"), str(tmp_path / "out")])
    d, _, _ = _folder(tmp_path, A2, 7)
    with pytest.raises(UserError, match="--check and --vectors must be >= 0"):
        main([str(d), str(tmp_path / "out"), "--check", "-1"])
    # A config that does not match the files is refused before anything is written.
    bad = tmp_path / "bad.h"
    bad.write_text((d / "config.h").read_text().replace("#define L1_PE 3", "#define L1_PE 6")
                   .replace("#define L1_TMEM 4", "#define L1_TMEM 2"))
    with pytest.raises(UserError):
        main([str(d), str(tmp_path / "out"), "--config", str(bad), "--check", "0"])
    assert not (tmp_path / "out").exists()
