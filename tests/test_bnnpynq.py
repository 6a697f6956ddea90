"""models/bnnpynq.py: finnthesizer folder reader and BNN-PYNQ FC reference executor."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from models.bnnpynq import (BnnPynqError, LayerParams, accuracy, binarize_images, load_params,
                            main, read_config, reference_forward)
from sw.errors import UserError

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "bnn-pynq" / "mnist"
NETS = ["lfcW1A1", "lfcW1A2"]


# ----------------------------------------------------------------------------- helpers
def config_text(layers: list[dict]) -> str:
    """A config.h in finnthesizer's style (comment block, then one define per field)."""
    text = "/**\n * Finnthesizer Config-File Generation\n *\n **/\n\n#ifndef __LAYER_CONFIG_H_\n"
    for k, c in enumerate(layers):
        text += (f"/**\n * Fully-Connected Layer L{k}:\n"
                 f" *     MatW = {c['mw']} MatH = {c['mh']}\n**/\n")
        for name in ("simd", "pe", "wmem", "tmem", "mw", "mh", "wpi", "api", "wpf", "apf"):
            if name in c:
                text += f"#define L{k}_{name.upper()} {c[name]}\n"
        text += "\n"
    return text + "#endif //__LAYER_CONFIG_H_\n"


def geometry(mw: int, mh: int, simd: int, pe: int, api: int) -> dict:
    return {"simd": simd, "pe": pe, "wmem": (mw // simd) * (mh // pe), "tmem": mh // pe,
            "mw": mw, "mh": mh, "wpi": 1, "api": api, "wpf": 0, "apf": 0}


def write_folder(d: Path, cfgs: list[dict], weights: list[np.ndarray],
                 thresholds: list[np.ndarray]) -> None:
    """Pack (MH, MW) weight bits and (MH, API) thresholds in finnthesizer's file layout,
    word by word: neuron n -> PE n % PE, fold n // PE; word fold*SF + sf holds synapses
    sf*SIMD + i in bit i; thresholds fold-major, API consecutive int64 per neuron."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.h").write_text(config_text(cfgs))
    for k, (c, w, t) in enumerate(zip(cfgs, weights, thresholds)):
        sf_count = c["mw"] // c["simd"]
        for p in range(c["pe"]):
            words, thres = [], []
            for fold in range(c["tmem"]):
                n = fold * c["pe"] + p
                for sf in range(sf_count):
                    word = 0
                    for i in range(c["simd"]):
                        word |= int(w[n, sf * c["simd"] + i]) << i
                    words.append(word)
                thres.extend(int(v) for v in t[n])
            np.array(words, dtype="<u8").tofile(d / f"{k}-{p}-weights.bin")
            np.array(thres, dtype="<i8").tofile(d / f"{k}-{p}-thres.bin")


def brute_force(cfgs, weights, thresholds, images, num_classes):
    """Scalar re-statement of the documented semantics, one image and neuron at a time."""
    classes, outs = [], []
    for img in images:
        act = [1 if v >= 128 else 0 for v in img] + [0] * (cfgs[0]["mw"] - len(img))
        in_bits = 1
        for c, w, t in zip(cfgs, weights, thresholds):
            nxt = []
            for n in range(c["mh"]):
                if in_bits == 1 and c["api"] == 1:
                    acc = sum(1 for s in range(c["mw"]) if w[n, s] == act[s])
                else:
                    vals = [2 * a - 1 for a in act] if in_bits == 1 else act
                    acc = sum(v if w[n, s] else -v for s, v in enumerate(vals))
                fired = sum(1 for th in t[n] if th < acc)
                nxt.append(fired - 1 if c["api"] == 2 else fired)
            act, in_bits = nxt, c["api"]
        low = act[:num_classes]
        set_bits = [i for i, b in enumerate(low) if b]
        classes.append(max(set_bits) if set_bits else 0)
        outs.append(act)
    return np.array(classes), np.array(outs)


def random_net(rng, cfgs):
    weights = [rng.integers(0, 2, size=(c["mh"], c["mw"]), dtype=np.uint8) for c in cfgs]
    thresholds = []
    for k, c in enumerate(cfgs):
        in_bits = 1 if k == 0 else cfgs[k - 1]["api"]
        if in_bits == 1 and c["api"] == 1:  # popcount 0..MW: thresholds around MW/2
            t = rng.integers(c["mw"] // 3, 2 * c["mw"] // 3 + 1, size=(c["mh"], 1))
        else:                               # signed sum -MW..MW: thresholds around 0
            t = rng.integers(-c["mw"] // 3, c["mw"] // 3 + 1, size=(c["mh"], c["api"]))
        thresholds.append(np.sort(t, axis=1).astype(np.int64))
    return weights, thresholds


A2_NET = [geometry(16, 8, 4, 2, 2), geometry(8, 8, 8, 4, 2), geometry(8, 4, 2, 2, 1)]
A1_NET = [geometry(16, 8, 8, 2, 1), geometry(8, 8, 4, 4, 1), geometry(8, 4, 2, 4, 1)]


@pytest.fixture
def a2_folder(tmp_path):
    rng = np.random.default_rng(7)
    w, t = random_net(rng, A2_NET)
    write_folder(tmp_path / "net", A2_NET, w, t)
    return tmp_path / "net", w, t


# ----------------------------------------------------------------------------- config
def test_read_config_synthetic(tmp_path):
    (tmp_path / "config.h").write_text(config_text(A2_NET))
    cfg = read_config(tmp_path)  # folder or file
    assert cfg == read_config(tmp_path / "config.h")
    assert len(cfg) == 3
    for got, want in zip(cfg, A2_NET):
        assert {k: got[k] for k in want} == want


def test_read_config_defaults_wpf_apf(tmp_path):
    c = {k: v for k, v in geometry(16, 8, 4, 2, 1).items() if k not in ("wpf", "apf")}
    (tmp_path / "config.h").write_text(config_text([c]))
    assert read_config(tmp_path)[0]["wpf"] == 0 and read_config(tmp_path)[0]["apf"] == 0


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared BNN-PYNQ parameters absent")
def test_read_config_shared():
    a1, a2 = (read_config(SHARED / n / "config.h") for n in NETS)
    assert [(c["mw"], c["mh"], c["simd"], c["pe"]) for c in a1] == [
        (832, 1024, 64, 32), (1024, 1024, 32, 64), (1024, 1024, 64, 32), (1024, 64, 8, 16)]
    assert [c["api"] for c in a1] == [1, 1, 1, 1]
    assert [c["api"] for c in a2] == [2, 2, 2, 1]
    assert a1[0]["wmem"] == 416 and a1[3]["tmem"] == 4


@pytest.mark.parametrize("edit, match", [
    (lambda t: t.replace("#define L1_PE 4\n", ""), r"L1_PE missing"),
    (lambda t: t.replace("#define L0_SIMD 4", "#define L0_SIMD four"), r"L0_SIMD is 'four'"),
    (lambda t: t.replace("#define L0_WMEM 16", "#define L0_WMEM 15"), r"L0_WMEM is 15, expected"),
    (lambda t: t.replace("#define L0_TMEM 4", "#define L0_TMEM 3"), r"L0_TMEM is 3, expected"),
    (lambda t: t.replace("#define L0_MW 16", "#define L0_MW 18"), r"not a multiple"),
    (lambda t: t + "#define L0_PE 3\n", r"L0_PE defined twice"),
    (lambda t: t.replace("L1_", "L5_"), r"layer L1 has no defines"),
    (lambda t: "/* nothing */\n", r"no '#define"),
    (lambda t: t.replace("#define L1_MW 8", "#define L1_MW 16")
     .replace("#define L1_WMEM 2", "#define L1_WMEM 4"), r"L1_MW 16 differs from L0_MH 8"),
])
def test_read_config_errors(tmp_path, edit, match):
    (tmp_path / "config.h").write_text(edit(config_text(A2_NET)))
    with pytest.raises(ValueError, match=match) as exc:
        read_config(tmp_path / "config.h")
    assert isinstance(exc.value, UserError)
    assert "\n" not in str(exc.value) and "config.h" in str(exc.value)


def test_read_config_missing_file(tmp_path):
    with pytest.raises(BnnPynqError, match=r"config\.h: config file not found"):
        read_config(tmp_path)


# ----------------------------------------------------------------------------- layout
def test_round_trip_layout(a2_folder):
    d, w, t = a2_folder
    layers = load_params(d)
    assert [type(x) for x in layers] == [LayerParams] * 3
    for layer, c, wk, tk in zip(layers, A2_NET, w, t):
        assert (layer.mw, layer.mh, layer.simd, layer.pe, layer.api) == (
            c["mw"], c["mh"], c["simd"], c["pe"], c["api"])
        assert layer.weights.shape == (c["mh"], c["mw"]) and layer.weights.dtype == np.uint8
        assert layer.thresholds.shape == (c["mh"], c["api"]) and layer.thresholds.dtype == np.int64
        np.testing.assert_array_equal(layer.weights, wk)
        np.testing.assert_array_equal(layer.thresholds, tk)


def test_round_trip_simd64(tmp_path):
    cfg = [geometry(128, 4, 64, 2, 1)]
    w = np.random.default_rng(3).integers(0, 2, size=(4, 128), dtype=np.uint8)
    w[:, 63] = 1  # bit 63 set: the sign bit of the word
    t = np.array([[10], [-5], [32767], [-32768]], dtype=np.int64)
    write_folder(tmp_path, cfg, [w], [t])
    (layer,) = load_params(tmp_path)
    np.testing.assert_array_equal(layer.weights, w)
    np.testing.assert_array_equal(layer.thresholds, t)


def test_explicit_config_matches(a2_folder):
    d, w, _ = a2_folder
    layers = load_params(d, config=read_config(d))
    np.testing.assert_array_equal(layers[0].weights, w[0])


def test_bit_order_known_word(tmp_path):
    """Lane 0 is bit 0: the word 0b0110 gives synapses (0, 1, 1, 0)."""
    cfg = [geometry(4, 1, 4, 1, 1)]
    (tmp_path / "config.h").write_text(config_text(cfg))
    np.array([0b0110], dtype="<u8").tofile(tmp_path / "0-0-weights.bin")
    np.array([2], dtype="<i8").tofile(tmp_path / "0-0-thres.bin")
    (layer,) = load_params(tmp_path)
    assert layer.weights.tolist() == [[0, 1, 1, 0]]


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared BNN-PYNQ parameters absent")
@pytest.mark.parametrize("net", NETS)
def test_shared_padding_layout(net):
    """finnthesizer pads with weight bits 1 and thresholds 32767: visible only if the
    PE interleaving and bit order are read right."""
    layers = load_params(SHARED / net)
    assert layers[0].weights[:, 784:].all()                  # synapses 784..831
    assert layers[-1].weights[10:].all()                     # neurons 10..63
    assert (layers[-1].thresholds[10:] == 32767).all()
    assert (layers[-1].thresholds[:10] < 32767).all()
    assert all((np.diff(x.thresholds, axis=1) >= 0).all() for x in layers)


# ----------------------------------------------------------------------------- load errors
def _corrupt(d: Path, name: str, data: bytes | None) -> None:
    if data is None:
        (d / name).unlink()
    else:
        (d / name).write_bytes(data)


@pytest.mark.parametrize("name, data, match", [
    ("0-1-weights.bin", None, r"0-1-weights\.bin: weight file not found"),
    ("1-3-thres.bin", None, r"1-3-thres\.bin: threshold file not found"),
    ("0-0-weights.bin", b"\0" * 24,
     r"0-0-weights\.bin: 24 bytes, expected 128 \(16 64-bit words\)"),
    ("0-0-thres.bin", b"\0" * 8, r"0-0-thres\.bin: 8 bytes, expected 64 \(8 64-bit words\)"),
    ("0-0-weights.bin", np.full(16, 16, "<u8").tobytes(), r"bits set at or above SIMD=4"),
    ("2-0-thres.bin", np.array([0, 40000], "<i8").tobytes(), r"word 1 is 40000, outside the int16"),
], ids=["no-weights", "no-thres", "short-weights", "short-thres", "high-bits", "thres-range"])
def test_load_errors(a2_folder, name, data, match):
    d, _, _ = a2_folder
    _corrupt(d, name, data)
    with pytest.raises(ValueError, match=match) as exc:
        load_params(d)
    assert "\n" not in str(exc.value)


def test_load_unsupported_precision(tmp_path):
    cfg = [dict(geometry(16, 8, 4, 2, 1), wpi=2)]
    (tmp_path / "config.h").write_text(config_text(cfg))
    with pytest.raises(BnnPynqError, match=r"L0: WPI=2 WPF=0; only binary weights"):
        load_params(tmp_path)
    cfg = [geometry(16, 8, 4, 2, 3)]
    (tmp_path / "config.h").write_text(config_text(cfg))
    with pytest.raises(BnnPynqError, match=r"API=3"):
        load_params(tmp_path)


def test_load_missing_folder(tmp_path):
    with pytest.raises(BnnPynqError, match="parameter folder not found"):
        load_params(tmp_path / "nope")


def test_bad_explicit_config(a2_folder):
    d, _, _ = a2_folder
    with pytest.raises(BnnPynqError, match=r"config: L0_API missing"):
        load_params(d, config=[{k: v for k, v in A2_NET[0].items() if k != "api"}])


# ----------------------------------------------------------------------------- forward
@pytest.mark.parametrize("cfgs", [A2_NET, A1_NET], ids=["A2", "A1"])
def test_forward_matches_brute_force(tmp_path, cfgs):
    rng = np.random.default_rng(11)
    w, t = random_net(rng, cfgs)
    write_folder(tmp_path, cfgs, w, t)
    layers = load_params(tmp_path)
    images = rng.integers(0, 256, size=(40, 12), dtype=np.uint8)  # 12 pixels, 4 pad bits
    images[:, 0] = [127, 128] * 20                                # the binarisation edge
    classes, outs = reference_forward(layers, images, num_classes=3)
    want_classes, want_outs = brute_force(cfgs, w, t, images, 3)
    np.testing.assert_array_equal(outs, want_outs)
    np.testing.assert_array_equal(classes, want_classes)
    assert outs.dtype == np.uint8 and outs.shape == (40, 4) and classes.dtype == np.int64


def test_class_is_highest_set_bit_or_zero():
    """One W1A1 layer, 4 neurons on 4 input bits, weight rows one-hot, threshold 3: neuron n
    fires iff all 4 XNOR lanes match, i.e. the input bits equal row n."""
    w = np.eye(4, dtype=np.uint8)
    layer = LayerParams(index=0, simd=4, pe=1, wmem=4, tmem=4, mw=4, mh=4, wpi=1, api=1,
                        wpf=0, apf=0, weights=w, thresholds=np.full((4, 1), 3, np.int64))
    imgs = np.array([[255, 0, 0, 0], [0, 0, 255, 0], [0, 0, 0, 0], [0, 0, 0, 255]], np.uint8)
    classes, outs = reference_forward([layer], imgs, num_classes=4)
    assert outs.tolist() == [[1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1]]
    assert classes.tolist() == [0, 2, 0, 3]
    # two bits set -> the higher one; a bit beyond num_classes is masked away
    both = dataclasses.replace(layer, weights=np.ones((4, 4), np.uint8),
                               thresholds=np.array([[0], [5], [0], [0]], np.int64))
    classes, _ = reference_forward([both], np.full((1, 4), 255, np.uint8), num_classes=3)
    assert classes.tolist() == [2]


def test_binarize_images_edges():
    bits = binarize_images(np.array([[0, 127, 128, 255]], np.uint8), 6)
    assert bits.tolist() == [[0, 0, 1, 1, 0, 0]]


@pytest.mark.parametrize("images, match", [
    (np.zeros((2, 17), np.uint8), r"17 pixels per image but the first layer has only MW=16"),
    (np.zeros(16, np.uint8), r"shape \(16,\)"),
    (np.zeros((2, 16), np.float32), r"dtype float32"),
    (np.full((2, 16), 300, np.int32), r"pixel values 300\.\.300"),
])
def test_forward_bad_images(a2_folder, images, match):
    layers = load_params(a2_folder[0])
    with pytest.raises(ValueError, match=match):
        reference_forward(layers, images, num_classes=3)


def test_forward_bad_num_classes(a2_folder):
    layers = load_params(a2_folder[0])
    with pytest.raises(BnnPynqError, match=r"num_classes: 5, expected 1\.\.4"):
        reference_forward(layers, np.zeros((1, 16), np.uint8), num_classes=5)


# ----------------------------------------------------------------------------- shared data
def _mnist_or_skip():
    from sw.mnist import load_mnist
    try:
        return load_mnist("test")
    except UserError as exc:
        pytest.skip(f"MNIST unavailable: {exc}")


# Correct answers on the first 500 MNIST test images, measured with this module.  Over all
# 10,000 test images it gives 9840 (98.40 %) for lfcW1A1 and 9849 (98.49 %) for lfcW1A2,
# exactly BNN-PYNQ's published accuracies (`python -m models.bnnpynq DIR`, ~2-3 s each).
FIRST_500 = {"lfcW1A1": 493, "lfcW1A2": 492}


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared BNN-PYNQ parameters absent")
@pytest.mark.parametrize("net", NETS)
def test_shared_accuracy_first_500(net):
    _mnist_or_skip()
    r = accuracy(SHARED / net, images=500)
    assert (r["correct"], r["total"]) == (FIRST_500[net], 500)


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared BNN-PYNQ parameters absent")
def test_cli(capsys):
    _mnist_or_skip()
    assert main([str(SHARED / "lfcW1A1"), "--images", "100"]) == 0
    out = capsys.readouterr().out
    assert "/100 correct, accuracy" in out and "%" in out
    with pytest.raises(BnnPynqError, match="--images is 0"):
        main([str(SHARED / "lfcW1A1"), "--images", "0"])
