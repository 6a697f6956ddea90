"""Early exits on the PyTorch side: BinaryNet exit heads, joint training, export (golden ==
PyTorch on every exit head's activations and gates), calibration on the training set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.calibrate_exits import calibrate_scores
from models.checkpoint import save_checkpoint
from models.export import compare_with_model, compile_model, export
from models.layers import BinaryNet
from models.train import train
from models.zoo import parse_description
from sw.network_io import load_compiled_network
from sw.errors import UserError
from sw.golden import GoldenModel, exit_margins
from sw.mnist import load_mnist
from tests.modelfactory import randomise_model

torch.set_num_threads(1)


def randomised(activation, seed=0):
    """A multi-exit MLP with random (but exportable) BN statistics, gates and norms."""
    model = BinaryNet((1, 28, 28), 2, hidden=(48, 32, 32), activation=activation,
                      exits=[{"after": 0}, {"after": 1}])
    return randomise_model(model, seed)


@pytest.mark.parametrize("activation", ["sign", "frac2"])
def test_golden_equals_pytorch_on_every_exit(activation):
    model = randomised(activation)
    net = compile_model(model, "x", exit_margins=[4, 2])
    assert [(e.after, e.margin, e.layer.gated) for e in net.exits] == \
        [(0, 4, activation == "frac2"), (1, 2, activation == "frac2")]
    images = load_mnist("test")[0][:300]
    golden = GoldenModel(net).run(images)
    report = compare_with_model(model, net, images, golden)
    assert report["identical"] and report["exit_mismatches"] == [0, 0]
    trace = model.forward_trace(torch.from_numpy(images.copy()))
    for j in range(2):
        np.testing.assert_array_equal(trace["exit_accs"][j].numpy(), golden.exit_scores[j])
    # forward_exits == forward_trace's logits; the last is forward()'s.
    outs = model.forward_exits(torch.from_numpy(images[:50]))
    assert torch.equal(outs[-1], model(torch.from_numpy(images[:50])))
    assert torch.equal(outs[0], trace["exit_outputs"][0][:50])


def test_compare_detects_a_wrong_exit_weight():
    model = randomised("sign")
    net = compile_model(model, "x", exit_margins=[4, 2])
    net.exits[1].layer.weights[3, :] *= -1
    report = compare_with_model(model, net, load_mnist("test")[0][:100])
    assert not report["identical"] and report["exit_mismatches"][1] > 0


def test_export_calibrates_on_training_set(tmp_path):
    ckpt = tmp_path / "m.pt"
    save_checkpoint(randomised("frac2"), ckpt, {"net": "multi"})
    net = export(ckpt, tmp_path / "out", vectors=4, check=200, progress=False,
                 exit_calibration_limit=3000, exit_max_loss=1.0)
    cal = net.source["exit_calibration"]
    assert cal["set"] == "train" and cal["images"] == 3000
    assert cal["exit_accuracy"] >= cal["full_accuracy"] - 0.01 - 1e-12
    back = load_compiled_network(tmp_path / "out")
    assert [e.margin for e in back.exits] == cal["margins"]
    with pytest.raises(UserError, match="exit margins"):
        export(ckpt, tmp_path / "bad", exit_margins=[1], progress=False)
    with pytest.raises(UserError, match="margin"):
        export(ckpt, tmp_path / "bad", exit_margins=[1, -1], progress=False)
    assert not (tmp_path / "bad").exists()


def test_calibrate_scores_rule():
    rng = np.random.default_rng(0)
    n = 2000
    labels = rng.integers(0, 4, n)
    final = np.where(rng.random(n) < 0.9, labels, (labels + 1) % 4)
    scores = rng.integers(-8, 9, (n, 4))
    scores[np.arange(n), labels] += rng.integers(0, 12, n)   # confident ones mostly right
    cal = calibrate_scores([scores], final, labels, 2.0, [17 + 17 + 1])
    full = np.mean(final == labels)
    assert cal.exit_accuracy >= full - 0.02 - 1e-12 and cal.full_accuracy == full
    # The smallest margin: one less breaks the budget (or it is 0).
    m = cal.margins[0]
    assert 0 < m < 35
    margins = exit_margins(scores)
    acc_below = np.mean(np.where(margins >= m - 1, scores.argmax(1) == labels, final == labels))
    assert acc_below < full - 0.02
    assert cal.share[0] + cal.share[1] == pytest.approx(1.0)
    loose = calibrate_scores([scores], final, labels, 100.0, [35])
    assert loose.margins == [0] and loose.share[0] == 1.0
    with pytest.raises(UserError, match="max-loss"):
        calibrate_scores([scores], final, labels, -1, [35])


def test_description_and_bad_exits():
    base = {"network": {"input_shape": [1, 28, 28], "hidden": [16, 16],
                        "exits": [{"after": 0}]}}
    entry = parse_description(base, "x.toml", "x")
    assert entry.build().config()["exits"] == [{"after": 0}]
    for bad in ([{"after": 2}], [{"after": 1}, {"after": 0}], [{"at": 0}], [{"after": True}]):
        with pytest.raises(UserError, match="exits"):
            parse_description({"network": {**base["network"], "exits": bad}}, "x.toml", "x")


def test_joint_training_runs():
    model = BinaryNet((1, 28, 28), 1, hidden=(16, 16), exits=[{"after": 0}])
    model, hist = train(model, limit=512, epochs=1, batch_size=128, progress=False,
                        exit_weight=0.5)
    assert np.isfinite(hist["loss"][0])
    assert any(p.grad is not None for p in model.exit_heads.parameters())


def test_evaluate_cli_reports_exits(tmp_path, capsys):
    from sw.evaluate import main as evaluate_main
    ckpt = tmp_path / "m.pt"
    model = randomised("sign")
    save_checkpoint(model, ckpt, {"net": "multi"})
    export(ckpt, tmp_path / "out", vectors=2, check=100, progress=False, exit_margins=[6, 3])
    assert evaluate_main([str(tmp_path / "out"), "--checkpoint", str(ckpt), "--images",
                          "300"]) == 0
    out = capsys.readouterr().out
    assert "images per exit" in out and "exit 1: identical" in out


def test_feedback_methods_refuse_exit_networks():
    """DFA/DRTP give hidden layers projected errors of the last layer only: the exit heads'
    joint loss needs backpropagation (bp, selfbin)."""
    model = BinaryNet((1, 28, 28), 1, hidden=(16, 16), exits=[{"after": 0}])
    for method in ("dfa", "drtp"):
        with pytest.raises(UserError, match="early exits train with --method bp or selfbin"):
            train(model, epochs=1, limit=200, batch_size=100, method=method, progress=False)
    trained, history = train(model, epochs=1, limit=200, batch_size=100, method="selfbin",
                             progress=False)
    assert len(history["test_accuracy"]) == 1
