"""Convolution through the software stack: PyTorch eval == golden model, format v2, errors.

* Randomised conv models (random batch-norm statistics, gates and output norm, so outputs are
  mixed rather than constant) export exactly: every activation of every layer, every gate and
  every prediction of the golden model equals PyTorch's, borders (padding) included.
* The golden model's convolution equals an independent direct (loop) implementation.
* Compiled conv networks round-trip through network.json version 2; version 1 directories
  still load; inconsistent edits and bad foldings are one-line errors.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models import zoo
from models.export import compile_model, compare_with_model, default_folding
from models.layers import BinaryConv2d, BinaryNet
from sw.compiled_net import ConvGeometry, Folding, refold
from sw.network_io import load_compiled_network, write_compiled_network
from sw.datasets import load_images, pad_images
from sw.errors import UserError
from sw.golden import GoldenModel, conv_windows, max_pool
from tests.modelfactory import randomise_model

torch.set_num_threads(1)


def randomise(model: BinaryNet, seed: int = 0) -> BinaryNet:
    """Random (exportable) BN statistics, gates and output norm, spread with the fan-in."""
    return randomise_model(model, seed, mean_spread="fan_in")


CONFIGS = {
    # stride 2, 1x1 kernels, pad 2 on a 5x5 kernel, C=3 input (HWC), odd sizes, frac2 gating
    "rgb_stride": dict(input_shape=(3, 11, 9), thermometer_levels=2, hidden=[12],
                       activation="frac2", classes=5,
                       convs=[{"channels": 6, "kernel": 3, "stride": 2, "pad": 1},
                              {"channels": 5, "kernel": 1},
                              {"channels": 7, "kernel": 5, "pad": 2, "pool": 2}]),
    "sign_valid": dict(input_shape=(1, 9, 10), thermometer_levels=1, hidden=[],
                       activation="sign", classes=4,
                       convs=[{"channels": 4, "kernel": 3, "pool": 2},
                              {"channels": 6, "kernel": 2}]),
}


def naive_conv_codes(x: np.ndarray, w: np.ndarray, conv: ConvGeometry) -> np.ndarray:
    """Direct convolution of ±1 values: x (N, H, W, C) bits, w (OC, K*K*C) ±1 -> (N, OH, OW, OC)."""
    v = np.where(x == 1, 1, -1)
    p = conv.pad
    v = np.pad(v, ((0, 0), (p, p), (p, p), (0, 0)), constant_values=-1)
    k, s = conv.kernel, conv.stride
    wk = w.reshape(-1, k, k, conv.in_channels)
    out = np.zeros((x.shape[0], conv.out_height, conv.out_width, w.shape[0]), dtype=np.int64)
    for oy in range(conv.out_height):
        for ox in range(conv.out_width):
            patch = v[:, oy * s:oy * s + k, ox * s:ox * s + k, :]
            out[:, oy, ox, :] = np.einsum("nyxc,oyxc->no", patch, wk)
    return out


@pytest.mark.parametrize("name", ["tiny_conv", "tiny_conv_frac", "rgb_stride", "sign_valid"])
def test_pytorch_eval_equals_golden(name):
    model = zoo.build(name) if name in zoo.ZOO else BinaryNet(**CONFIGS[name])
    randomise(model)
    net = compile_model(model, name)
    rng = np.random.default_rng(1)
    if model.input_shape[0] == 1 and model.input_shape[1] >= 28:
        images = load_images("test", model.input_shape)[0][:64]
    else:
        images = rng.integers(0, 256, size=(64, model.pixels), dtype=np.uint8)
    golden = GoldenModel(net).run(images)
    report = compare_with_model(model, net, images, golden)
    assert report["identical"], report
    # The test can fail: outputs are mixed, not constant.
    for layer, out in zip(net.layers[:-1], golden.layer_outputs[:-1]):
        assert out.shape == (64, layer.out_size)
        assert len(np.unique(out)) > 1, f"layer {layer.index} is constant"
    for layer, gate in zip(net.layers, golden.gates):
        if gate is not None:
            assert gate.shape == (64, layer.vectors_per_image * layer.out_features)
            assert 0 < gate.mean() < 1


def test_golden_conv_equals_direct_convolution():
    model = randomise(BinaryNet(**CONFIGS["sign_valid"]))
    net = compile_model(model, "sign_valid")
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, size=(16, model.pixels), dtype=np.uint8)
    res = GoldenModel(net).run(images)
    x = (images >= 128).astype(np.uint8).reshape(16, 9, 10, 1)
    l0 = net.layers[0]
    acc = naive_conv_codes(x, l0.weights, l0.conv)
    a = np.where(l0.neg, -acc, acc)
    q = (a >= l0.thresholds[:, 0]).astype(np.uint8)
    pooled = max_pool(q, 2)
    assert np.array_equal(pooled.reshape(16, -1), res.layer_outputs[0])
    # and the pooled bits are the OR of the window bits
    assert np.array_equal(pooled, q[:, 0:6:2, 0:8:2] | q[:, 1:6:2, 0:8:2]
                          | q[:, 0:6:2, 1:8:2] | q[:, 1:6:2, 1:8:2])


def test_conv_windows_order_and_padding():
    conv = ConvGeometry(3, 4, 2, kernel=3, stride=1, pad=1)
    x = np.arange(24).reshape(1, 3, 4, 2) % 2
    win = conv_windows(x.astype(np.uint8), conv)
    assert win.shape == (1, 12, 18)
    # position (0, 0): window row ky=0 and column kx=0 are padding (0 bits)
    w00 = win[0, 0].reshape(3, 3, 2)
    assert not w00[0].any() and not w00[:, 0].any()
    assert np.array_equal(w00[1, 1], x[0, 0, 0]) and np.array_equal(w00[2, 2], x[0, 1, 1])


def test_format_round_trip_and_graph(tmp_path):
    model = randomise(BinaryNet(**CONFIGS["rgb_stride"]))
    net = compile_model(model, "rgb")
    write_compiled_network(net, tmp_path / "net")
    loaded = load_compiled_network(tmp_path / "net")
    for a, b in zip(net.layers, loaded.layers):
        assert a.conv == b.conv and a.pool == b.pool and np.array_equal(a.weights, b.weights)
    doc = json.loads((tmp_path / "net" / "network.json").read_text())
    assert doc["version"] == 2 and doc["input"]["order"] == "HWC"
    assert [n["op"] for n in doc["graph"]["nodes"]] == [
        "thermometer", "pad", "conv", "conv", "pad", "conv", "maxpool", "flatten", "dense",
        "dense"]
    shapes = {t["name"]: t["shape"] for t in doc["graph"]["tensors"]}
    assert shapes["x0"] == [11, 9, 6] and shapes["scores"] == [5]


def test_version_1_directory_still_loads(tmp_path):
    model = randomise(zoo.build("tiny"))
    net = compile_model(model, "tiny")
    write_compiled_network(net, tmp_path / "net")
    path = tmp_path / "net" / "network.json"
    doc = json.loads(path.read_text())
    doc["version"] = 1
    del doc["graph"], doc["input"]["order"]
    for layer in doc["layers"]:
        del layer["kind"]
    path.write_text(json.dumps(doc))
    loaded = load_compiled_network(tmp_path / "net")
    assert [l.name for l in loaded.layers] == [l.name for l in net.layers]


@pytest.mark.parametrize("edit, match", [
    (lambda j: j["layers"][0]["conv"].update(kernel=5), "inputs, not 9|out_height"),
    (lambda j: j["layers"][1]["conv"].update(in_channels=3), "over 3 channels has 27 inputs"),
    (lambda j: j["layers"][1]["conv"].update(in_height=10, out_height=10), "convolves a 10x14x16"),
    (lambda j: j["layers"][0]["conv"].update(out_height=3), "out_height is 3"),
    (lambda j: j["layers"][0].update(pool=1), "pool must be"),
    (lambda j: j["layers"][0]["conv"].update(kernel=40, pad=0), "larger than"),
])
def test_inconsistent_conv_edits_are_one_line_errors(tmp_path, edit, match):
    model = randomise(zoo.build("tiny_conv"))
    net = compile_model(model, "tiny_conv")
    write_compiled_network(net, tmp_path / "net")
    path = tmp_path / "net" / "network.json"
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(UserError, match=match) as info:
        load_compiled_network(tmp_path / "net")
    assert "\n" not in str(info.value)


def test_folding_must_divide_conv_channels():
    net = compile_model(randomise(zoo.build("tiny_conv")), "tiny_conv")
    fold = [l.folding for l in net.layers]
    fold[1] = Folding(16, 32)   # conv1 has 16 input channels, MW 144 (32 divides neither)
    with pytest.raises(UserError, match="does not divide the convolution's 16 input channels"):
        refold(net, fold)
    fold[1] = Folding(16, 8)
    assert refold(net, fold).layers[1].synapse_folds == 144 // 8
    fold[0] = Folding(16, 1, pad=True)
    with pytest.raises(UserError, match='"pad" is not allowed on a convolution'):
        refold(net, fold)


def test_default_folding_of_conv_layers():
    f = default_folding([(18, 64, 2), (576, 64, 64), (1600, 512), (512, 10)])
    assert [(x.pe, x.simd) for x in f] == [(16, 2), (16, 32), (16, 32), (10, 32)]


def test_model_errors():
    with pytest.raises(ValueError, match="kernel 5 is larger"):
        BinaryConv2d(1, 4, 5, in_height=3, in_width=3, in_bits=1, out="sign")
    with pytest.raises(ValueError, match="convs\\[0\\]"):
        BinaryNet(convs=[{"channels": 4}])
    with pytest.raises(UserError, match="kernel 9 is larger"):
        ConvGeometry(4, 4, 1, kernel=9, pad=2)


def test_mnist_padded_to_32():
    images, labels = load_images("test", (1, 32, 32))
    raw = load_images("test", (1, 28, 28))[0]
    assert images.shape == (10000, 1024) and labels.shape == (10000,)
    frame = images.reshape(-1, 32, 32)
    assert not frame[:, :2].any() and not frame[:, 30:].any() and not frame[:, :, :2].any()
    assert np.array_equal(frame[:, 2:30, 2:30].reshape(-1, 784), raw)
    assert np.array_equal(pad_images(raw[:3], 28, 28), raw[:3])
    with pytest.raises(UserError, match="no data set for 2x8x8"):
        load_images("test", (2, 8, 8))


def test_evaluate_per_image_json_lines(tmp_path):
    """sw.evaluate --per-image: every image's class and scores, one JSON object per line."""
    from sw.evaluate import main as evaluate_main

    net = compile_model(randomise(zoo.build("tiny_conv")), "tiny_conv")
    write_compiled_network(net, tmp_path / "net")
    out = tmp_path / "dir with space" / "per image.jsonl"
    assert evaluate_main([str(tmp_path / "net"), "--images", "12", "--per-image", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    images, labels = load_images("test", (1, 28, 28))
    golden = GoldenModel(net).run(images[:12])
    assert [r["image"] for r in rows] == list(range(12))
    assert [r["class"] for r in rows] == golden.classes.tolist()
    assert [r["scores"] for r in rows] == golden.scores.tolist()
    assert [r["label"] for r in rows] == labels[:12].tolist()
    with pytest.raises(UserError, match="is a directory"):
        evaluate_main([str(tmp_path / "net"), "--images", "2", "--per-image", str(tmp_path)])


def test_golden_refuses_images_of_the_wrong_shape():
    net = compile_model(randomise(BinaryNet(**CONFIGS["rgb_stride"])), "rgb")
    with pytest.raises(UserError, match=r"images must be \(N, 297\) uint8"):
        GoldenModel(net).run(np.zeros((2, 99), np.uint8))


def test_default_folding_of_cnv_is_the_fast_benchmark_folding():
    from models.export import _fold_shape
    from sim.bench import CNV_FOLDINGS

    shapes = [_fold_shape(l) for l in zoo.build("cnv_w1a1").layers]
    assert [f.to_json() for f in default_folding(shapes)] == [
        {"pe": f["pe"], "simd": f["simd"], "pad": False} for f in CNV_FOLDINGS["fast"]]
