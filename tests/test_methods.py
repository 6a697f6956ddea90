"""Training methods (models.methods: bp, dfa, drtp, selfbin), networks without batch norm, and
models.compare_methods: every method learns, is deterministic, exports exactly (golden model ==
PyTorch on every activation), and bad input is a one-line error."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models import zoo
from models.checkpoint import load_checkpoint, save_checkpoint
from models.export import compare_with_model, export
from models.fold import fold_layer
from models.layers import BinaryDense, BinaryNet
from models.methods import (METHODS, backward_step, feedback_matrices, feedback_seed,
                            selfbin_surrogate)
from models.train import train
from sw.network_io import load_compiled_network
from sw.errors import UserError
from sw.golden import GoldenModel
from sw.mnist import load_mnist

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
LIMIT = 20_000          # training images: about 0.5 s per MLP epoch here
N_COMPARE = 1000        # test images on which golden and PyTorch are compared


def _entry(hidden, batch_norm=True, activation="sign", convs=None, levels=1):
    network = {"input_shape": [1, 28, 28], "thermometer_levels": levels, "hidden": hidden,
               "activation": activation}
    if convs:
        network["convs"] = convs
    if not batch_norm:
        network["batch_norm"] = False
    recipe = {"epochs": 1, "lr": 0.005, "seed": 0}
    if activation == "frac2":
        recipe.update(gate_lambda=0.05, gate_lr_scale=100.0)
    return zoo.parse_description({"network": network, "recipe": recipe}, "test", "test")


def _export_and_compare(model, tmp_path, name="net"):
    """Export (refuses on any difference on 200 images), then golden == PyTorch on 1000."""
    ckpt = save_checkpoint(model, tmp_path / f"{name}.pt", {"net": name})
    net = export(ckpt, tmp_path / f"{name}_export", check=200, progress=False)
    assert net.source["checked_images"] == 200
    net = load_compiled_network(tmp_path / f"{name}_export")
    images, labels = load_mnist("test")
    images, labels = images[:N_COMPARE], labels[:N_COMPARE]
    loaded, _ = load_checkpoint(ckpt)
    res = GoldenModel(net).run(images)
    report = compare_with_model(loaded, net, images, res)
    assert report["predictions_agree"] == N_COMPARE
    for layer in report["layers"]:
        assert layer["mismatches"] == 0 and layer["gate_mismatches"] in (None, 0)
    assert report["identical"]
    return net, float(np.mean(res.classes == labels))


@pytest.mark.parametrize("batch_norm", [True, False], ids=["bn", "nobn"])
@pytest.mark.parametrize("method", METHODS)
def test_method_trains_and_exports_exactly(tmp_path, method, batch_norm):
    model, history = train(_entry([64, 64], batch_norm), limit=LIMIT, progress=False,
                           method=method)
    assert history["test_accuracy"][-1] > 0.35          # chance is 0.1
    assert not model.training and all(l.surrogate is None for l in model.layers)
    _, accuracy = _export_and_compare(model, tmp_path)
    assert accuracy > 0.35


@pytest.mark.parametrize("method", ["dfa", "drtp", "selfbin"])
def test_gated_frac2_net_trains_with_method_and_exports(tmp_path, method):
    model, history = train(_entry([64, 64], activation="frac2", levels=2), limit=LIMIT,
                           progress=False, method=method)
    assert history["test_accuracy"][-1] > 0.35
    assert 0 < history["lsb_fraction"][-1] < 1
    _export_and_compare(model, tmp_path)


def test_frac2_net_without_batch_norm_exports(tmp_path):
    model, history = train(_entry([64, 64], batch_norm=False, activation="frac2", levels=2),
                           limit=LIMIT, progress=False)
    assert history["test_accuracy"][-1] > 0.35
    _export_and_compare(model, tmp_path)


_CONV = [{"channels": 8, "kernel": 3, "pad": 1, "pool": 2}]


@pytest.mark.parametrize("method,batch_norm", [("dfa", True), ("drtp", True),
                                               ("selfbin", False)])
def test_conv_net_trains_with_method_and_exports(tmp_path, method, batch_norm):
    model, history = train(_entry([32], batch_norm, convs=_CONV), limit=LIMIT, progress=False,
                           method=method)
    assert history["test_accuracy"][-1] > 0.35
    _export_and_compare(model, tmp_path)


@pytest.mark.parametrize("method", ["dfa", "drtp", "selfbin"])
def test_methods_are_deterministic_under_the_seed(method):
    entry = _entry([32, 32])
    runs = [train(entry, limit=2000, progress=False, method=method, seed=seed)
            for seed in (3, 3, 4)]
    (a, ha), (b, hb), (c, _) = runs
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert ha["loss"] == hb["loss"] and ha["test_accuracy"] == hb["test_accuracy"]
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_feedback_matrices_are_seeded_and_leave_the_global_rng_alone():
    model = BinaryNet(hidden=[16, 12], convs=[{"channels": 4, "kernel": 3, "pad": 1,
                                                "pool": 2}])
    state = torch.get_rng_state()
    a, b, c = (feedback_matrices(model, s) for s in (0, 0, 1))
    assert torch.equal(torch.get_rng_state(), state)
    assert [tuple(m.shape) for m in a] == [(14 * 14 * 4, 10), (16, 10), (12, 10)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not any(torch.equal(x, y) for x, y in zip(a, c))
    assert feedback_seed(0) != 0 and feedback_seed(0) != feedback_seed(1)


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("method", ["dfa", "drtp"])
def test_local_methods_compute_the_projected_signal_gradients(method):
    """Hidden layer l gets exactly d/dθ <y_l, B_l s> with its input detached, s = e (DFA) or
    -onehot/B (DRTP); the last layer the true loss gradient; bp differs."""
    torch.manual_seed(0)
    model = BinaryNet(hidden=[16, 12]).train()
    x = torch.randint(0, 256, (32, 784), dtype=torch.uint8)
    y = torch.randint(0, 10, (32,))
    feedback = feedback_matrices(model, 0)
    backward_step(model, method, x, y, feedback)
    got = _grads(model)

    model.zero_grad(set_to_none=True)
    h = model.encode(x)
    outs = []
    for i in range(2):
        outs.append(model.apply_layer(i, h))
        h = outs[-1].detach()
    logits = model.apply_layer(2, h)
    onehot = F.one_hot(y, 10).float()
    signal = (torch.softmax(logits.detach(), 1) - onehot) / 32 if method == "dfa" else -onehot / 32
    F.cross_entropy(logits, y).backward()
    for out, b in zip(outs, feedback):
        out.backward(signal @ b.t())
    want = _grads(model)
    assert got.keys() == want.keys() and "layers.0.weight" in got
    for name in got:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-7)

    model.zero_grad(set_to_none=True)
    backward_step(model, "bp", x, y)
    assert not torch.allclose(model.layers[0].weight.grad, got["layers.0.weight"])
    # The last layer's gradient is the true one in every method.
    torch.testing.assert_close(model.layers[2].weight.grad, got["layers.2.weight"])


def test_selfbin_slope_schedule_and_surrogates():
    assert selfbin_surrogate(0, 100, 10.0, 0.25) == (1.0, False)
    slopes = [selfbin_surrogate(s, 100, 10.0, 0.25) for s in range(100)]
    soft = [s for s, exact in slopes if not exact]
    assert len(soft) == 75 and soft == sorted(soft) and soft[-1] < 10.0
    assert all(s == (10.0, True) for s in slopes[75:])
    assert selfbin_surrogate(0, 100, 10.0, 1.0) == (10.0, True)

    torch.manual_seed(0)
    model = BinaryNet(hidden=[16]).train()
    x = torch.randint(0, 256, (8, 784), dtype=torch.uint8)
    layer = model.layers[0]
    model.set_surrogate(2.0)
    soft = layer(model.encode(x))
    assert not torch.all(soft.abs() == 1)                     # tanh(2 t): not binary yet
    model.set_surrogate(2.0, exact=True)
    hard = layer(model.encode(x))
    assert torch.all(hard.abs() == 1)                         # exactly ±1
    model.eval()                                               # eval ignores the surrogate
    model.set_surrogate(2.0)
    assert torch.all(layer(model.encode(x)).abs() == 1)
    with pytest.raises(ValueError):
        model.set_surrogate(-1.0)

    # Exact phase: the forward is sign, the backward the derivative of tanh(s t).
    dense = BinaryDense(9, 3, 1, "sign", batch_norm=False).train()
    dense.surrogate = (3.0, True)
    acc = torch.tensor([[-9.0, -1.0, 0.0], [1.0, 3.0, 9.0]], requires_grad=True)
    out = dense.activate(acc)
    assert torch.equal(out, torch.tensor([[-1.0, -1.0, 1.0], [1.0, 1.0, 1.0]]))
    out.sum().backward()
    t = acc.detach() / 3.0                                     # fixed scale 1/sqrt(9), bias 0
    torch.testing.assert_close(acc.grad, 3.0 * (1 - torch.tanh(3.0 * t) ** 2) / 3.0)


def test_network_without_batch_norm_folds_a_plain_sign(tmp_path):
    torch.manual_seed(1)
    model = BinaryNet(hidden=[24, 16], batch_norm=False)
    assert model.config()["batch_norm"] is False
    assert "batch_norm" not in BinaryNet(hidden=[8]).config()   # unchanged for batch-norm nets
    assert not any(".bn." in name for name in model.state_dict())
    with torch.no_grad():
        for layer in model.layers[:-1]:
            layer.act_bias.normal_(0, 0.7)
        model.layers[-1].norm.log_gamma.fill_(0.4)
    ckpt = save_checkpoint(model, tmp_path / "nobn.pt", {"net": "nobn"})
    loaded, _ = load_checkpoint(ckpt)
    assert loaded.config() == model.config()
    # Threshold = the first integer acc with float32 acc * c + b >= 0 (numpy, independently).
    for i, layer in enumerate(loaded.layers[:-1]):
        neg, thresholds = fold_layer(layer, i)
        assert not neg.any()
        acc = np.arange(-layer.in_features, layer.in_features + 1, dtype=np.float32)[:, None]
        c = np.float32(1.0 / np.sqrt(layer.in_features))
        b = layer.act_bias.detach().numpy().astype(np.float32)
        on = (acc * c + b) >= np.float32(0)
        first = np.where(on.any(0), on.argmax(0) - layer.in_features, layer.in_features + 1)
        assert np.array_equal(thresholds[:, 0], first)
    net, _ = _export_and_compare(loaded, tmp_path, "nobn")
    assert net.output.mean == 0.0 and net.output.beta == 0.0
    assert net.output.scale == pytest.approx(np.exp(0.4) / np.sqrt(16), rel=1e-6)


def test_description_keys_for_methods_and_batch_norm(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('[network]\ninput_shape = [1, 28, 28]\nhidden = [16]\nbatch_norm = false\n'
                    '[recipe]\nmethod = "drtp"\n')
    entry = zoo.resolve(good)
    assert entry.recipe["method"] == "drtp" and entry.build().batch_norm is False
    for recipe, match in (('method = "sgd"', "recipe.method 'sgd' is not a training method"),
                          ("method = 3", "recipe.method must be a string"),
                          ("slope_final = 0.5", "recipe.slope_final must be a number >= 1"),
                          ("exact_fraction = 0.0", "recipe.exact_fraction must be in (0, 1]")):
        bad = tmp_path / "bad.toml"
        bad.write_text(f'[network]\ninput_shape = [1, 28, 28]\nhidden = [16]\n[recipe]\n{recipe}\n')
        with pytest.raises(UserError, match=re.escape(match)) as err:
            zoo.resolve(bad)
        assert "\n" not in str(err.value) and str(bad) in str(err.value)
    bad = tmp_path / "bn.toml"
    bad.write_text('[network]\ninput_shape = [1, 28, 28]\nhidden = [16]\nbatch_norm = "no"\n')
    with pytest.raises(UserError, match="batch_norm must be true or false"):
        zoo.resolve(bad)
    with pytest.raises(UserError, match="method 'backprop' is not a training method; choose "
                                        "one of bp, dfa, drtp, selfbin"):
        train("tiny", limit=100, progress=False, method="backprop")


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("args,match", [
    (("models.train", "--net", "tiny", "--method", "sgd"),
     "--method 'sgd' is not a training method; choose one of bp, dfa, drtp, selfbin"),
    (("models.compare_methods", "--out", "x", "--nets", "tfc,mlp"), "unknown network 'mlp'"),
    (("models.compare_methods", "--out", "x", "--methods", "bp,sgd"), "unknown method 'sgd'"),
    (("models.compare_methods", "--out", "x", "--batch-norm", "maybe"), "--batch-norm 'maybe'"),
])
def test_bad_method_options_are_one_line_errors(args, match):
    proc = _cli(*args, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], proc.stderr
    assert not (REPO / "x").exists()


def test_train_cli_method_option_is_recorded(tmp_path):
    out = tmp_path / "d.pt"
    proc = _cli("models.train", "--net", "tiny", "--method", "dfa", "--epochs", "1",
                "--limit", "10000", "--threads", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    _, meta = load_checkpoint(out)
    assert meta["recipe"]["method"] == "dfa" and meta["test_accuracy"] > 0.3


def test_compare_methods_quick_writes_table_json_and_png(tmp_path):
    out = tmp_path / "cmp"
    args = ("models.compare_methods", "--out", str(out), "--quick", "--batch-norm", "off")
    proc = _cli(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "methods.json").read_text())
    runs = report["runs"]
    assert [r["spec"]["method"] for r in runs] == list(METHODS)
    for r in runs:
        assert r["ok"] and r["export_identical"] and r["export_checked_images"] == 200
        assert r["spec"]["batch_norm"] is False and r["epochs"] == 2
        assert r["train_images"] == 1000 and len(r["history"]["test_accuracy"]) == 2
        assert 0 < r["train_memory_mib"] <= r["eval_memory_mib"] and r["train_seconds"] > 0
        assert (out / "runs" / r["spec"]["id"] / "export" / "network.json").is_file()
    table = (out / "methods.md").read_text()
    assert table.count("| no |") == 4 and "identical" in table
    assert (out / "methods.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # --resume reuses finished runs with the same specification.
    again = _cli(*args, "--resume")
    assert again.returncode == 0 and again.stdout.count("(reused)") == 4, again.stdout
    assert json.loads((out / "methods.json").read_text())["runs"][0]["test_accuracy"] \
        == runs[0]["test_accuracy"]


def test_rtl_runs_a_dfa_net_without_batch_norm_bit_exactly(tmp_path):
    """The hardware does not care how a network was trained: a DFA-trained net without batch
    norm runs through the generated RTL (Verilator) with every output and cycle as the golden
    and cycle models say."""
    from hw.generate import generate
    from sim.batch import build_batch, run_batch
    from sim.reference import compare_outputs, compare_timing, reference

    model, _ = train(_entry([64, 64], batch_norm=False), limit=LIMIT, progress=False,
                     method="dfa")
    ckpt = save_checkpoint(model, tmp_path / "d.pt", {"net": "d"})
    export(ckpt, tmp_path / "export", check=200, progress=False)
    net = load_compiled_network(tmp_path / "export")
    design = generate(tmp_path / "export", tmp_path / "design")
    images = load_mnist("test")[0][:200]
    ref = reference(net, images, pixels_per_beat=8)
    res = run_batch(build_batch(design), images)
    bad, notes = compare_outputs(res.classes, res.scores, ref.golden)
    assert bad == 0, notes
    assert compare_timing(res.first_in, res.first_out, ref) == []
