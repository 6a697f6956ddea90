"""Residual networks as zoo entries: description kind "resnet", training, checkpoints, eval,
and the eval-shaped batch-norm recalibration (models/residual.py, models/zoo.py,
models/train.py, models/checkpoint.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models import residual as rs
from models import train as train_mod
from models import zoo
from models.checkpoint import load_checkpoint, save_checkpoint
from models.data import mnist_tensors
from models.evaluate import evaluate
from models.evaluate import main as evaluate_main
from sw.errors import UserError

torch.set_num_threads(1)

_RESNET = """
[network]
kind = "resnet"
input_shape = [1, 28, 28]
thermometer_levels = 2
widths = [4, 8]
blocks = 1
activation = "sign"
"""


def test_zoo_resnet_entries():
    for name in ("tiny_resnet", "resnet_frac", "resnet_frac_cifar10"):
        entry = zoo.ZOO[name]
        model = zoo.build(name)
        assert entry.kind == "resnet" and isinstance(model, rs.ResNet)
        assert "kind" not in entry.arch and entry.to_dict()["network"]["kind"] == "resnet"
        again = zoo.parse_description(json.loads(json.dumps(entry.to_dict())), "meta", name)
        assert again.kind == "resnet" and again.build().config() == model.config()
    frac = zoo.build("resnet_frac")
    assert frac.input_shape == (1, 32, 32) and frac.widths == [16, 32, 64]
    assert frac.stage_blocks == [3, 3, 3] and frac.activation == "frac2"
    assert len(frac.blocks) == 9 and len(frac.gated_layers()) == 9
    cifar = zoo.build("resnet_frac_cifar10")
    assert cifar.config() == rs.resnet20("frac2").config()      # 3 x 32 = 96 input planes
    assert zoo.ZOO["tiny"].kind == "binary" and "kind" not in zoo.ZOO["tiny"].to_dict()["network"]


def test_resnet_description_file(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(_RESNET + '[recipe]\nepochs = 2\nrecalibrate_images = 100\n')
    entry = zoo.resolve(path)
    assert entry.kind == "resnet" and entry.recipe["recalibrate_images"] == 100
    assert entry.build().widths == [4, 8]


@pytest.mark.parametrize("text, match", [
    (_RESNET.replace('"resnet"', '"dense"'), "network.kind must be one of 'binary', 'resnet'"),
    (_RESNET + "hidden = [16]\n", "unknown [network] key(s) ['hidden'] for kind 'resnet'"),
    (_RESNET.replace("widths = [4, 8]\n", ""), 'kind "resnet" needs input_shape and widths'),
    (_RESNET.replace("[4, 8]", "[4, 12]"), "each width must be the previous one or twice it"),
    (_RESNET.replace('"sign"', '"relu"'), "activation must be one of"),
    (_RESNET + '[recipe]\nmethod = "dfa"\n', "cannot train a residual network"),
    (_RESNET + '[recipe]\nrecalibrate_images = -1\n', "recipe.recalibrate_images must be >= 0"),
])
def test_bad_resnet_descriptions_are_one_line_errors(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        zoo.resolve(path)
    assert match in str(info.value) and "\n" not in str(info.value)


def _codes_of_eval(model, images):
    """Every QuantBatchNorm's input in an eval forward (real values), in module order."""
    seen = {}
    norms = model.batch_norms()
    for k, m in enumerate(norms):
        def record(n, constants=None, m=m, k=k, original=m.forward_int):
            seen.setdefault(k, n.double() / float(1 << m.in_frac))
            return original(n, constants)
        m.forward_int = record                  # eval calls forward_int with the integers
    model.eval()
    try:
        with torch.no_grad():
            model(images)
    finally:
        for m in norms:
            del m.forward_int
    return [seen[k] for k in range(len(norms))]


@pytest.mark.parametrize("activation", ["sign", "frac2"])
def test_recalibration_measures_what_eval_computes(activation):
    torch.manual_seed(0)
    model = rs.ResNet(input_shape=(1, 28, 28), thermometer_levels=2, widths=(4, 8), blocks=1,
                      activation=activation)
    images = torch.randint(0, 256, (40, 784), generator=torch.Generator().manual_seed(1),
                           dtype=torch.uint8)
    model.train()
    with torch.no_grad():                    # move the running statistics somewhere
        model(images)
    model.recalibrate_batch_norm(images, batch=40)
    assert not model.training and not any(m.frozen for m in model.batch_norms())
    # Each batch norm's statistics are those of its input in eval (the integer network with
    # the new statistics), to within the float twin's rounding of a few codes.
    for norm, x in zip(model.batch_norms(), _codes_of_eval(model, images)):
        rows = x.reshape(-1, x.shape[-1]).double()
        scale = rows.std(0).clamp(min=1e-3)
        assert torch.allclose(norm.bn.running_mean.double(), rows.mean(0),
                              atol=0.05 * float(scale.max()))
    # Batches are averaged: two halves give the mean of the halves' statistics (stem).
    model.recalibrate_batch_norm(images, batch=20)
    acc = model.stem.accumulate(model.encode(images))[0].reshape(2, -1, 4).double()
    assert torch.allclose(model.stem_bn.bn.running_mean.double(), acc.mean(1).mean(0))
    assert torch.allclose(model.stem_bn.bn.running_var.double(), acc.var(1).mean(0))
    with pytest.raises(ValueError, match="batch must be a positive int"):
        model.recalibrate_batch_norm(images, batch=0)


def test_frozen_batch_norm_forward_is_the_float_twin_of_eval():
    torch.manual_seed(0)
    model = rs.tiny_resnet("sign", input_shape=(1, 28, 28))
    images = torch.randint(0, 256, (16, 784), generator=torch.Generator().manual_seed(2),
                           dtype=torch.uint8)
    model.recalibrate_batch_norm(images)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    model.freeze_batch_norm(True)
    logits = model(images)
    logits.sum().backward()                  # differentiable
    model.freeze_batch_norm(False)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)   # statistics not updated
    model.eval()
    with torch.no_grad():
        assert (logits.detach() - model(images)).abs().max() < 0.5


@pytest.fixture(scope="module")
def tiny_resnet_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("resnet") / "r.pt"
    rc = train_mod.main(["--net", "tiny_resnet", "--epochs", "1", "--limit", "1600",
                         "--batch-size", "16", "--threads", "1", "--out", str(out)])
    assert rc == 0
    return out


def test_tiny_resnet_trains_from_the_cli(tiny_resnet_run):
    model, meta = load_checkpoint(tiny_resnet_run)
    assert isinstance(model, rs.ResNet) and not model.training
    assert model.config() == zoo.build("tiny_resnet").config()
    assert meta["net"] == "tiny_resnet" and meta["train_images"] == 1600
    assert meta["description"]["network"]["kind"] == "resnet"
    assert meta["recipe"]["recalibrate_images"] == 2000
    assert meta["test_accuracy"] > 0.2                    # chance is 0.1 (measured: 35 %)
    assert 0 < meta["lsb_fraction"] < 1                   # frac2: gated convolutions
    assert tiny_resnet_run.with_suffix(".png").is_file()


def test_resnet_checkpoint_round_trip_and_eval_reproducible(tiny_resnet_run, tmp_path, capsys):
    model, meta = load_checkpoint(tiny_resnet_run)
    x, y = mnist_tensors("test", input_shape=model.input_shape)
    first = evaluate(model, x, y)
    assert first["accuracy"] == meta["test_accuracy"]      # the checkpoint's eval is the record's
    assert first["lsb_fraction"] == meta["lsb_fraction"]
    assert evaluate(model, x, y) == first
    # Saved again and reloaded: the same integer network, bit for bit.
    again, _ = load_checkpoint(save_checkpoint(model, tmp_path / "again.pt", meta))
    batch = x[:200]
    assert torch.equal(again.scores(batch), model.scores(batch))
    for a, b in zip(again.residual_codes(batch), model.residual_codes(batch)):
        assert torch.equal(a, b)
    report = tmp_path / "eval.json"
    assert evaluate_main([str(tiny_resnet_run), "--json", str(report)]) == 0
    assert json.loads(report.read_text())["accuracy"] == meta["test_accuracy"]
    assert f"{100 * meta['test_accuracy']:.2f}%" in capsys.readouterr().out


def test_resnet_checkpoint_with_a_bad_kind_or_config_is_refused(tiny_resnet_run, tmp_path):
    payload = torch.load(tiny_resnet_run, weights_only=True)
    for change, match in (({"kind": "graph"}, "unknown network kind 'graph'"),
                          ({"config": {**payload["config"], "widths": [8, 24]}},
                           "bad config: each width")):
        path = tmp_path / "bad.pt"
        torch.save({**payload, **change}, path)
        with pytest.raises(UserError, match=match):
            load_checkpoint(path)


def test_resnet_refuses_feedback_methods():
    with pytest.raises(UserError, match="cannot train a residual network"):
        train_mod.main(["--net", "tiny_resnet", "--method", "drtp", "--epochs", "1",
                        "--limit", "10", "--threads", "1", "--out", "/nonexistent/x.pt"])


def test_recalibrate_cli_uses_eval_shaped_passes(tiny_resnet_run, tmp_path):
    from models.recalibrate import main as recal_main
    out = tmp_path / "recal.pt"
    assert recal_main([str(tiny_resnet_run), "--out", str(out), "--images", "300"]) == 0
    model, meta = load_checkpoint(out)
    assert meta["recalibration"]["images"] == 300
    assert np.isfinite(meta["test_accuracy"])
