"""Compiled-network data model, memory layouts, folding validation, atomic write, checked load."""

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import sw.network_io as network_io
from sw.network_json import network_to_json
from sw.compiled_net import (CompiledNetwork, Folding, InputSpec, LayerSpec, OutputSpec,
                             TestVectors, fold_config_from_json, refold, signed_bits)
from sw.memory_layout import (pack_gate_words, pack_threshold_words, pack_weight_words,
                              unpack_gate_words, unpack_threshold_words, unpack_weight_words)
from sw.network_io import load_compiled_network, load_test_vectors, write_compiled_network
from sw.errors import UserError
from sw.memfile import read_mem, write_mem


def random_layer(rng, index, mw, mh, in_bits, out, folding):
    acc = mw * (3 if in_bits == 2 else 1)
    th = neg = gates = None
    if out != "scores":
        count = 1 if out == "sign" else 3
        th = np.sort(rng.integers(-acc, acc + 2, (mh, count)), axis=1)
        neg = rng.integers(0, 2, mh).astype(bool)
    if in_bits == 2:
        gates = rng.integers(-mw - 1, mw + 1, mh)
    return LayerSpec(index, f"fc{index}", mw, mh, in_bits, out, folding,
                     rng.choice(np.array([-1, 1], np.int8), (mh, mw)), th, neg, gates)


def small_net(seed=0, levels=2):
    """A 3-layer frac2 net on 4x4 images with padding on both ends."""
    rng = np.random.default_rng(seed)
    inp = InputSpec(1, 4, 4, 8, tuple(256 * (k + 1) // (levels + 1) for k in range(levels)))
    layers = [random_layer(rng, 0, 16 * levels, 12, 1, "frac2", Folding(4, 5, True)),
              random_layer(rng, 1, 12, 6, 2, "sign", Folding(3, 4)),
              random_layer(rng, 2, 6, 5, 1, "scores", Folding(2, 3, True))]
    return CompiledNetwork("small", inp, layers, OutputSpec(5, 1.5, 0.25, -0.5),
                           {"checkpoint": "x.pt", "sha256": "0" * 64})


def test_signed_bits_matches_doc_example():
    assert signed_bits(-784, 785) == 11       # LFC layer 0 thresholds
    assert signed_bits(-1025, 1024) == 12     # gates of a 1024-input layer
    assert signed_bits(-1, 0) == 1
    assert signed_bits(-128, 127) == 8 and signed_bits(-128, 128) == 9


def test_lfc_sizes_match_doc_example():
    rng = np.random.default_rng(0)
    l0 = random_layer(rng, 0, 784, 1024, 1, "sign", Folding(32, 64, True))
    assert (l0.mw_padded, l0.mh_padded, l0.synapse_folds, l0.neuron_folds) == (832, 1024, 13, 32)
    assert (l0.weight_depth, l0.weight_width) == (416, 2048)
    assert (l0.threshold_bits, l0.threshold_width) == (11, 384)
    l1 = random_layer(rng, 1, 1024, 1024, 2, "frac2", Folding(64, 32))
    assert (l1.gate_bits, l1.gate_width, l1.neuron_folds) == (12, 768, 16)
    # 2-bit inputs: acc in [-3072, 3072], thresholds up to 3073 -> 13 bits, lane 3*13 + 1
    assert (l1.acc_min, l1.acc_max, l1.threshold_bits, l1.threshold_lane_bits) == (-3072, 3072, 13, 40)
    assert l1.threshold_width == 64 * 40


def test_weight_word_layout_by_hand():
    # MH=4, MW=6, PE=2, SIMD=3: NF=2, SF=2; word nf*SF+sf, bit p*SIMD+j <- neuron nf*PE+p, input sf*SIMD+j
    rng = np.random.default_rng(1)
    layer = random_layer(rng, 0, 6, 4, 1, "sign", Folding(2, 3))
    words = pack_weight_words(layer)
    assert len(words) == 4
    for nf in range(2):
        for sf in range(2):
            for p in range(2):
                for j in range(3):
                    bit = (words[nf * 2 + sf] >> (p * 3 + j)) & 1
                    assert bit == (layer.weights[nf * 2 + p, sf * 3 + j] > 0)
    assert all(w < 1 << 6 for w in words)


def test_padding_words_by_hand():
    # MW=5 padded to 6 by SIMD 3, MH=3 padded to 4 by PE 2; padding weights 1, thresholds acc_max+1
    rng = np.random.default_rng(2)
    layer = random_layer(rng, 0, 5, 3, 1, "sign", Folding(2, 3, True))
    bits = unpack_weight_words(pack_weight_words(layer), 2, 3, 4, 6)
    assert np.all(bits[3] == 1) and np.all(bits[:, 5] == 1)
    np.testing.assert_array_equal(bits[:3, :5], layer.weights > 0)
    th, neg = unpack_threshold_words(pack_threshold_words(layer), 2, 1, layer.threshold_bits)
    assert th[3, 0] == 6 and not neg[3]
    np.testing.assert_array_equal(th[:3], layer.thresholds)
    np.testing.assert_array_equal(neg[:3], layer.neg)


def test_threshold_lane_layout_by_hand():
    layer = LayerSpec(0, "fc0", 2, 2, 1, "frac2", Folding(2, 1),
                      np.ones((2, 2), np.int8), np.array([[-2, 0, 3], [-1, -1, 1]]),
                      np.array([True, False]))
    tw = layer.threshold_bits  # [-2, 3] -> 3 bits
    assert tw == 3 and layer.threshold_lane_bits == 10
    (word,) = pack_threshold_words(layer)
    lane0 = (0b110) | (0b000 << 3) | (0b011 << 6) | (1 << 9)
    lane1 = (0b111) | (0b111 << 3) | (0b001 << 6) | (0 << 9)
    assert word == lane0 | (lane1 << 10)


@settings(max_examples=40, deadline=None)
@given(mw=st.integers(1, 70), mh=st.integers(1, 20), pe=st.integers(1, 8), simd=st.integers(1, 40),
       in_bits=st.sampled_from([1, 2]), out=st.sampled_from(["sign", "frac2", "scores"]),
       seed=st.integers(0, 2**32 - 1))
def test_layout_round_trips(mw, mh, pe, simd, in_bits, out, seed):
    rng = np.random.default_rng(seed)
    layer = random_layer(rng, 0, mw, mh, in_bits, out, Folding(pe, simd, True))
    bits = unpack_weight_words(pack_weight_words(layer), pe, simd, layer.mh_padded, layer.mw_padded)
    np.testing.assert_array_equal(bits, layer.padded_weight_bits())
    if out != "scores":
        th, neg = unpack_threshold_words(pack_threshold_words(layer), pe, layer.threshold_count,
                                         layer.threshold_bits)
        ref_th, ref_neg = layer.padded_thresholds()
        np.testing.assert_array_equal(th, ref_th)
        np.testing.assert_array_equal(neg, ref_neg)
        assert all(w < 1 << layer.threshold_width for w in pack_threshold_words(layer))
    if in_bits == 2:
        np.testing.assert_array_equal(unpack_gate_words(pack_gate_words(layer), pe, layer.gate_bits),
                                      layer.padded_gates())
        assert all(w < 1 << layer.gate_width for w in pack_gate_words(layer))


def test_layer_spec_validation():
    rng = np.random.default_rng(3)
    good = random_layer(rng, 0, 4, 2, 1, "frac2", Folding(1, 1))
    with pytest.raises(UserError, match="not ordered"):
        LayerSpec(0, "x", 4, 2, 1, "frac2", Folding(1, 1), good.weights,
                  np.array([[0, 1, 0], [0, 0, 0]]), good.neg)
    with pytest.raises(UserError, match=r"must lie in \[-4, 5\]"):
        LayerSpec(0, "x", 4, 2, 1, "sign", Folding(1, 1), good.weights, np.array([[6], [0]]),
                  good.neg)
    with pytest.raises(UserError, match="gates"):
        LayerSpec(0, "x", 4, 2, 2, "sign", Folding(1, 1), good.weights, np.array([[0], [0]]),
                  good.neg, np.array([5, 0]))
    with pytest.raises(UserError, match="weights"):
        LayerSpec(0, "x", 4, 2, 1, "scores", Folding(1, 1), np.zeros((2, 4)))


# --------------------------------------------------------------------- folding validation

SHAPES = [(784, 1024), (1024, 1024), (1024, 1024), (1024, 10)]


def test_fold_config_accepts_bnn_pynq_lfc():
    cfg = {"layers": [{"pe": 32, "simd": 64, "pad": True}, {"pe": 64, "simd": 32},
                      {"pe": 32, "simd": 64}, {"pe": 16, "simd": 8, "pad": True}]}
    folding = fold_config_from_json(cfg, 4, SHAPES)
    assert folding[0] == Folding(32, 64, True) and folding[3] == Folding(16, 8, True)


@pytest.mark.parametrize("layers,match", [
    ([{"pe": 32, "simd": 64}, {"pe": 64, "simd": 32}, {"pe": 32, "simd": 64},
      {"pe": 16, "simd": 8, "pad": True}],
     r"layer 0: SIMD 64 does not divide MW 784; use one of \[1, 2, 4, 7, 8, 14, 16, 28, 49, 56, "
     r"98, 112, 196, 392, 784\] or \"pad\": true"),
    ([{"pe": 32, "simd": 56}, {"pe": 48, "simd": 32}, {"pe": 32, "simd": 64},
      {"pe": 16, "simd": 8, "pad": True}], r"layer 1: PE 48 does not divide MH 1024; use one of \[1, 2"),
    ([{"pe": 32, "simd": 56}, {"pe": 64, "simd": 32, "pad": True}, {"pe": 32, "simd": 64},
      {"pe": 16, "simd": 8}], r"layer 1: \"pad\" is allowed only on the first layer"),
    ([{"pe": 32, "simd": 56}, {"pe": 64, "simd": 32}, {"pe": 32, "simd": 64},
      {"pe": 16, "simd": 8}], r"layer 3: PE 16 does not divide MH 10; use one of \[1, 2, 5, 10\] or"),
    ([{"pe": 32, "simd": 56}], r"has 1 layer entries, the network has 4"),
    ([{"pe": 0, "simd": 56}] * 4, r"pe must be a positive int, not 0"),
    ([{"pe": 32, "simd": 56, "extra": 1}] * 4, r"layer 0 must be"),
])
def test_fold_config_errors(layers, match):
    with pytest.raises(UserError, match=match):
        fold_config_from_json({"layers": layers}, 4, SHAPES)


def test_fold_config_file_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        fold_config_from_json(tmp_path / "nope.json", 4)
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(UserError, match="not valid JSON"):
        fold_config_from_json(bad, 4)
    bad.write_text("[1, 2]")
    with pytest.raises(UserError, match='must be {"layers"'):
        fold_config_from_json(bad, 4)


# --------------------------------------------------------------------- write / load

def assert_same(a, b):
    assert network_to_json(a) == network_to_json(b)
    for la, lb in zip(a.layers, b.layers):
        for name in ("weights", "thresholds", "neg", "gates"):
            xa, xb = getattr(la, name), getattr(lb, name)
            assert (xa is None) == (xb is None)
            if xa is not None:
                np.testing.assert_array_equal(xa, xb)


def test_write_load_round_trip_and_refold(tmp_path):
    net = small_net()
    vec = TestVectors(np.arange(32, dtype=np.uint8).reshape(2, 16),
                      [np.zeros((2, 12), np.int64), np.ones((2, 6), np.int64),
                       np.arange(10).reshape(2, 5)], np.array([4, 4]))
    write_compiled_network(net, tmp_path / "out", vec)
    loaded = load_compiled_network(tmp_path / "out")
    assert loaded.test_vectors == "test_vectors.json"
    net.test_vectors = "test_vectors.json"
    assert_same(net, loaded)
    doc = json.loads((tmp_path / "out" / "network.json").read_text())
    assert doc["format"] == "fracbnn-compiled-network" and doc["version"] == 2
    assert [n["op"] for n in doc["graph"]["nodes"]] == ["thermometer", "flatten", "dense", "dense", "dense"]
    assert doc["layers"][0]["folding"]["mw_padded"] == 35 and doc["layers"][2]["folding"]["mh_padded"] == 6
    assert set(doc["layers"][1]["memories"]) == {"weights", "thresholds", "gates"}
    assert (tmp_path / "out" / "L1_gates.coe").is_file()
    v = load_test_vectors(tmp_path / "out")
    np.testing.assert_array_equal(v.images, vec.images)
    np.testing.assert_array_equal(v.layers[2], vec.layers[2])
    # refold: other memories, same network; overwriting a previous export is allowed
    other = refold(loaded, [Folding(12, 32), Folding(6, 12), Folding(5, 6)])
    write_compiled_network(other, tmp_path / "out")
    again = load_compiled_network(tmp_path / "out")
    assert again.layers[0].folding == Folding(12, 32)
    assert len(read_mem(tmp_path / "out" / "L0_weights.mem", 384, 1)) == 1
    for la, lb in zip(net.layers, again.layers):
        np.testing.assert_array_equal(la.weights, lb.weights)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_write_is_atomic(tmp_path, monkeypatch):
    net = small_net()
    calls = []

    def failing_write_coe(path, words, width):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full (injected)")
        return original(path, words, width)

    original = network_io.write_coe
    monkeypatch.setattr(network_io, "write_coe", failing_write_coe)
    with pytest.raises(OSError, match="injected"):
        write_compiled_network(net, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []  # neither OUTDIR nor a temp dir
    # a previous complete export survives a failed overwrite
    monkeypatch.setattr(network_io, "write_coe", original)
    write_compiled_network(net, tmp_path / "out")
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    calls.clear()
    monkeypatch.setattr(network_io, "write_coe", failing_write_coe)
    with pytest.raises(OSError):
        write_compiled_network(refold(net, [Folding(12, 32), Folding(6, 12), Folding(5, 6)]),
                               tmp_path / "out")
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_write_refuses_foreign_directory(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "precious.txt").write_text("keep me")
    with pytest.raises(UserError, match="not a compiled network"):
        write_compiled_network(small_net(), tmp_path / "out")
    assert (tmp_path / "out" / "precious.txt").read_text() == "keep me"


@pytest.fixture
def exported(tmp_path):
    write_compiled_network(small_net(), tmp_path / "net")
    return tmp_path / "net"


def edit_json(d, fn):
    doc = json.loads((d / "network.json").read_text())
    fn(doc)
    (d / "network.json").write_text(json.dumps(doc))


def without_digests(d):
    """Drop the memories' sha256 (as in exports that predate them), so that an edited .mem
    reaches the parser's own checks instead of the digest check."""
    edit_json(d, lambda j: [m.pop("sha256") for l in j["layers"] for m in l["memories"].values()])
    return d


@pytest.mark.parametrize("corrupt,match", [
    (lambda d: edit_json(d, lambda j: j.update(version=5)), "version 5 is not supported"),
    (lambda d: edit_json(d, lambda j: j.update(version=4)), "a residual network"),
    (lambda d: edit_json(d, lambda j: j["graph"]["nodes"].pop()), "graph does not match"),
    (lambda d: edit_json(d, lambda j: j["input"].update(order="CHW")), "input.order must be"),
    (lambda d: edit_json(d, lambda j: j.update(format="other")), "format 'other'"),
    (lambda d: (d / "L1_gates.mem").unlink(), "L1_gates.mem not found"),
    (lambda d: (d / "network.json").unlink(), "network.json not found"),
    (lambda d: (d / "network.json").write_text("{"), "not valid JSON"),
    (lambda d: (without_digests(d) / "L0_weights.mem").write_text(
        (d / "L0_weights.mem").read_text().replace("0", "z", 1)), "bad hex digit 'z'"),
    (lambda d: (without_digests(d) / "L0_weights.mem").write_text(
        "\n".join((d / "L0_weights.mem").read_text().splitlines()[1:])), "expected depth"),
    (lambda d: edit_json(d, lambda j: j["layers"][0]["memories"]["weights"].update(depth=99)),
     "needs 21x20"),
    (lambda d: edit_json(d, lambda j: j["layers"][1].pop("out")), "missing field layers\\[1\\].out"),
    (lambda d: edit_json(d, lambda j: j["layers"][1]["folding"].update(pe=5)), "PE 5 does not divide MH 6"),
    (lambda d: edit_json(d, lambda j: j["layers"][0].update(acc_max=3)), "acc_max is 3"),
    (lambda d: edit_json(d, lambda j: j["layers"][0]["memories"]["weights"].update(
        file="../x.mem")), "plain file name"),
])
def test_load_errors(exported, corrupt, match):
    corrupt(exported)
    with pytest.raises(UserError, match=match):
        load_compiled_network(exported)


def test_load_rejects_unordered_thresholds_and_bad_padding(exported):
    net = load_compiled_network(exported)
    without_digests(exported)
    layer = net.layers[0]
    tw, lw = layer.threshold_bits, layer.threshold_lane_bits
    words = read_mem(exported / "L0_thresholds.mem", layer.threshold_width, layer.neuron_folds)
    # neuron 0: T0 = 5, T1 = 1 (out of order)
    lane = (5 & ((1 << tw) - 1)) | (1 << tw)
    words[0] = (words[0] & ~((1 << lw) - 1)) | lane
    write_mem(exported / "L0_thresholds.mem", words, layer.threshold_width)
    with pytest.raises(UserError, match="not ordered"):
        load_compiled_network(exported)

    words = read_mem(exported / "L0_weights.mem", layer.weight_width, layer.weight_depth)
    write_mem(exported / "L0_weights.mem", [0] * len(words), layer.weight_width)
    with pytest.raises(UserError, match="padding weight bits"):
        load_compiled_network(exported)


def test_evaluate_cli_reports_corrupt_export_in_one_line(exported):
    edit_json(exported, lambda j: j.update(version=7))
    proc = subprocess.run([sys.executable, "-m", "sw.evaluate", str(exported)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    assert "version 7" in proc.stderr and "Traceback" not in proc.stderr


# ---------------------------------------------------------------- multi-threshold, decoders
def test_output_decoders_by_hand():
    scores = np.array([[3, 7, 7, -1], [0, 0, 0, 0], [-5, 2, 1, 2]])
    assert OutputSpec(4).decode(scores).tolist() == [1, 0, 1]          # ties: smallest index
    # keys = scale*score + bias: [6,-7,21,4], [0,0,0,5], [-10,-2,3,7]
    keyed = OutputSpec(4, class_scale=[2, -1, 3, 1], class_bias=[0, 0, 0, 5])
    assert keyed.decode(scores).tolist() == [2, 3, 3]
    bits = np.array([[1, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1], [1, 1, 0, 0]])
    hsb = OutputSpec(4, decoder="highest_set_bit")
    assert hsb.decode(bits).tolist() == [2, 0, 3, 1]
    assert hsb.class_keys == ((1, 2, 3, 4), (0, 0, 0, 0))
    for kwargs, match in [({"decoder": "lowest"}, "decoder must be one of"),
                          ({"class_scale": [1, 2]}, "must be 4 integers"),
                          ({"class_scale": [1, 0, 1, 1]}, "must not contain 0"),
                          ({"decoder": "highest_set_bit", "class_bias": [0] * 4},
                           "applies to the 'argmax' decoder only")]:
        with pytest.raises(UserError, match=match):
            OutputSpec(4, **kwargs)


def _mt_net(last="sign", decoder="highest_set_bit", **out):
    from tests.netfactory import random_network
    return random_network(shape=(6, 5, 4), outs=["mt3", "mt4"], last=last, decoder=decoder,
                          folding=[(2, 4), (5, 3), (2, 5)], seed=9, **out)


@pytest.mark.parametrize("kwargs", [{}, {"last": "scores", "decoder": "argmax",
                                         "class_scale": [1, -2, 3, 1],
                                         "class_bias": [0, 4, -1, 2]}])
def test_multithreshold_round_trip(tmp_path, kwargs):
    net = _mt_net(**kwargs)
    assert [l.levels for l in net.layers[:2]] == [3, 4]
    assert [l.in_bits for l in net.layers] == [1, 2, 2]
    assert not any(l.gated for l in net.layers)
    write_compiled_network(net, tmp_path / "n")
    doc = json.loads((tmp_path / "n" / "network.json").read_text())
    assert doc["layers"][0]["out"] == "multithreshold" and doc["layers"][0]["levels"] == 3
    assert "gates" not in doc["layers"][1]["memories"]
    fc0 = next(n for n in doc["graph"]["nodes"] if n["name"] == "fc0")["outputs"][0]
    assert next(t for t in doc["graph"]["tensors"] if t["name"] == fc0)["type"] == "code2"
    back = load_compiled_network(tmp_path / "n")
    assert back.output == net.output
    for a, b in zip(net.layers, back.layers):
        assert (a.levels, a.out_bias, a.out_scale, a.gated) == \
            (b.levels, b.out_bias, b.out_scale, b.gated)
        np.testing.assert_array_equal(a.thresholds if a.thresholds is not None else 0,
                                      b.thresholds if b.thresholds is not None else 0)


def test_multithreshold_validation():
    w = np.ones((3, 4), np.int8)
    th = np.zeros((3, 2), np.int64)
    ok = LayerSpec(0, "fc0", 4, 3, 1, "multithreshold", Folding(1, 1), w, th,
                   np.zeros(3, bool), levels=3, out_bias=-1, out_scale=1)
    assert (ok.threshold_count, ok.out_bits) == (2, 2)
    with pytest.raises(UserError, match="levels in \\[2, 3, 4\\], not 5"):
        LayerSpec(0, "fc0", 4, 3, 1, "multithreshold", Folding(1, 1), w, th,
                  np.zeros(3, bool), levels=5, out_bias=0, out_scale=1)
    with pytest.raises(UserError, match="out_scale != 0"):
        LayerSpec(0, "fc0", 4, 3, 1, "multithreshold", Folding(1, 1), w, th,
                  np.zeros(3, bool), levels=3, out_bias=0, out_scale=0)
    with pytest.raises(UserError, match="a sign activation has levels/out_bias/out_scale"):
        LayerSpec(0, "fc0", 4, 3, 1, "sign", Folding(1, 1), w, th[:, :1],
                  np.zeros(3, bool), levels=3, out_bias=-1, out_scale=2)
    # A gated layer must follow a frac2 layer, an ungated 2-bit one a multithreshold layer.
    net = _mt_net()
    layers = list(net.layers)
    l1 = layers[1]
    layers[1] = LayerSpec(1, "fc1", l1.in_features, l1.out_features, 2, l1.out, l1.folding,
                          l1.weights, l1.thresholds, l1.neg, np.zeros(l1.out_features, np.int64),
                          levels=l1.levels, out_bias=l1.out_bias, out_scale=l1.out_scale)
    with pytest.raises(UserError, match="has gates exactly when it follows a frac2"):
        CompiledNetwork("x", net.input, layers, net.output)
    with pytest.raises(UserError, match="'highest_set_bit' needs a last layer with 1-bit"):
        _mt_net(last="mt3")
