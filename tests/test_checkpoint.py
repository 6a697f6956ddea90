"""models.checkpoint: packed round trip, atomic writes, one-line errors; shipped checkpoints."""

from __future__ import annotations


import pytest
import torch

from models import zoo
from models.checkpoint import FORMAT, VERSION, load_checkpoint, save_checkpoint
from models.layers import BinaryDense
from sw.errors import UserError

torch.set_num_threads(1)


def _trained_looking(name: str, seed: int = 0):
    """A zoo model with random latent weights and non-trivial norm statistics."""
    torch.manual_seed(seed)
    model = zoo.build(name).train()
    pixels = torch.randint(0, 256, (64, 784), dtype=torch.uint8)
    with torch.no_grad():
        for layer in model.layers:
            if layer.in_bits == 2:
                layer.gate_delta.normal_(0, 5)
            if layer.out != "scores":
                layer.act_bias.normal_(0, 0.3)
                layer.bn.weight.normal_(1, 0.5)
        model(pixels)
        model(pixels)
    return model.eval(), pixels


@pytest.mark.parametrize("name", ["tiny", "tiny_frac"])
def test_round_trip_identical_eval_outputs(tmp_path, name):
    model, pixels = _trained_looking(name)
    path = save_checkpoint(model, tmp_path / f"{name}.pt", {"net": name, "note": [1, 2]})
    loaded, meta = load_checkpoint(path)
    assert meta == {"net": name, "note": [1, 2]}
    assert not loaded.training
    assert loaded.config() == model.config()
    a, b = model.forward_trace(pixels), loaded.forward_trace(pixels)
    for key in ("outputs", "accs"):
        for x, y in zip(a[key], b[key]):
            assert torch.equal(x, y)
    for x, y in zip(a["gates"], b["gates"]):
        assert (x is None and y is None) or torch.equal(x, y)
    for layer, ref in zip(loaded.layers, model.layers):
        assert isinstance(layer, BinaryDense)
        assert set(layer.weight.detach().unique().tolist()) <= {-1.0, 1.0}
        assert torch.equal(layer.binary_weight(), ref.binary_weight())
    assert list(tmp_path.iterdir()) == [path]  # no temporary files left behind


def test_lfc_checkpoint_is_small(tmp_path):
    path = save_checkpoint(zoo.build("lfc_w1a1"), tmp_path / "lfc.pt")
    assert path.stat().st_size < 450_000  # ~2.9 Mbit of packed weights + small tensors


def test_meta_must_be_json(tmp_path):
    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(zoo.build("tiny"), tmp_path / "x.pt", {"bad": object()})
    assert not any(tmp_path.iterdir())


def _assert_one_line_user_error(path, match):
    with pytest.raises(UserError, match=match) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_missing_checkpoint(tmp_path):
    _assert_one_line_user_error(tmp_path / "nope.pt", "not found")


def test_corrupt_and_truncated_checkpoints(tmp_path):
    good = save_checkpoint(zoo.build("tiny"), tmp_path / "good.pt")
    raw = good.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(raw[: len(raw) // 2])
    _assert_one_line_user_error(tmp_path / "trunc.pt", "cannot be read")
    (tmp_path / "garbage.pt").write_bytes(b"\x00garbage" * 100)
    _assert_one_line_user_error(tmp_path / "garbage.pt", "cannot be read")
    (tmp_path / "empty.pt").write_bytes(b"")
    _assert_one_line_user_error(tmp_path / "empty.pt", "cannot be read")


def test_wrong_format_version_and_contents(tmp_path):
    model = zoo.build("tiny")
    save_checkpoint(model, tmp_path / "ok.pt")
    payload = torch.load(tmp_path / "ok.pt", weights_only=True)

    def write(name, **changes):
        p = tmp_path / name
        torch.save({**payload, **changes}, p)
        return p

    _assert_one_line_user_error(write("fmt.pt", format="something-else"), "wrong format")
    _assert_one_line_user_error(write("ver.pt", version=VERSION + 1), "version 2")
    torch.save(model.state_dict(), tmp_path / "plain.pt")  # a plain state dict is not a checkpoint
    _assert_one_line_user_error(tmp_path / "plain.pt", "wrong format")
    short = {k: dict(v) for k, v in payload["binary_weights"].items()}
    first = next(iter(short))
    short[first]["bits"] = short[first]["bits"][:-1]
    _assert_one_line_user_error(write("bits.pt", binary_weights=short), "packed bytes")
    tensors = dict(payload["tensors"])
    tensors.pop(next(iter(tensors)))
    _assert_one_line_user_error(write("missing.pt", tensors=tensors), "missing")
    _assert_one_line_user_error(write("cfg.pt", config={**payload["config"], "activation": "relu"}),
                                "bad config")
    assert payload["format"] == FORMAT


# Required accuracy of the shipped zoo checkpoints (models/checkpoints/README.md).
_SHIPPED_MIN_ACCURACY = {"tiny": 0.90, "tiny_frac": 0.90, "lfc_w1a1": 0.988, "lfc_frac": 0.990,
                         "tiny_conv": 0.95, "tiny_conv_frac": 0.975,
                         "cnv_w1a1": 0.99, "cnv_frac": 0.993,
                         "tfc_exits": 0.97, "tiny_resnet": 0.90, "resnet_frac": 0.994}


# Zoo models whose checkpoint is not shipped: CIFAR-10 ones train on the user's files
# (CIFAR-10 cannot be had here).
_NOT_SHIPPED = {"cnv_w1a1_cifar10", "tiny_conv_cifar10", "resnet_frac_cifar10"}
_SHIPPED = [name for name in zoo.names() if name not in _NOT_SHIPPED]


def test_unshipped_zoo_models_have_no_stale_checkpoint():
    assert _NOT_SHIPPED <= set(zoo.names())
    for name in _NOT_SHIPPED:
        assert not zoo.default_checkpoint(name).exists(), f"{name} is shipped now: update the test"


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.heavy)
                                  if n.startswith("cnv") or n == "resnet_frac" else n
                                  for n in _SHIPPED])
def test_shipped_checkpoint_accuracy_matches_its_record(name):
    from models.data import mnist_tensors
    from models.evaluate import evaluate

    path = zoo.default_checkpoint(name)
    assert path.is_file(), f"shipped checkpoint {path} missing; see models/checkpoints/README.md"
    assert path.stat().st_size < 1_000_000
    model, meta = load_checkpoint(path)
    assert meta["net"] == name and model.config() == zoo.build(name).config()
    x, y = mnist_tensors("test", input_shape=model.input_shape)
    result = evaluate(model, x, y)
    assert result["accuracy"] == meta["test_accuracy"]
    assert result["lsb_fraction"] == meta["lsb_fraction"]
    assert result["accuracy"] >= _SHIPPED_MIN_ACCURACY[name]
    if name == "lfc_frac":
        ref = load_checkpoint(zoo.default_checkpoint("lfc_w1a1"))[1]["test_accuracy"]
        assert result["accuracy"] > ref
        assert 0 < result["lsb_fraction"] < 1
    readme = (path.parent / "README.md").read_text()
    assert f"{100 * meta['test_accuracy']:.2f}" in readme
