"""Network descriptions (models.zoo): the zoo's own files, a user's file through training and
export, training a BinaryNet built in Python, and one-line errors for bad files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models import zoo
from models.checkpoint import load_checkpoint
from models.layers import BinaryNet
from models.train import train

REPO = Path(__file__).resolve().parents[1]

USER_NET = """\
description = "784-32-10 with a 2-level thermometer (a user's own network)"

[network]
input_shape = [1, 28, 28]
thermometer_levels = 2
hidden = [32]
activation = "frac2"
classes = 10

[recipe]
epochs = 1
lr = 0.005
batch_size = 100
gate_lambda = 0.05
gate_lr_scale = 100.0
"""


def test_zoo_entries_are_description_files():
    files = sorted(p.stem for p in zoo.NETS_DIR.glob("*.toml"))
    assert files == sorted(zoo.names()) and "lfc_w1a1" in files
    for name in zoo.names():
        again = zoo.load_description(zoo.NETS_DIR / f"{name}.toml")
        assert again.build().config() == zoo.build(name).config()
        # What a checkpoint stores reads back to the same entry.
        entry = zoo.parse_description(json.loads(json.dumps(again.to_dict())), "meta", name)
        assert entry.build().config() == again.build().config()
        assert dict(entry.recipe) == dict(again.recipe)


def test_missing_recipe_keys_take_the_defaults(tmp_path):
    path = tmp_path / "small.toml"
    path.write_text('[network]\ninput_shape = [1, 28, 28]\nhidden = [16]\n')
    entry = zoo.resolve(path)
    assert entry.name == "small" and dict(entry.recipe) == dict(zoo.DEFAULT_RECIPE)
    assert entry.build().hidden == [16]


def test_json_descriptions_are_read_too(tmp_path):
    path = tmp_path / "n.json"
    path.write_text(json.dumps({"network": {"input_shape": [1, 28, 28], "hidden": [8],
                                            "convs": [{"channels": 4, "kernel": 3, "pool": 2}]},
                                "recipe": {"epochs": 2}}))
    entry = zoo.resolve(path)
    assert entry.recipe["epochs"] == 2 and entry.build().convs[0]["pool"] == 2


def test_user_file_trains_exports_and_matches_the_golden_model(tmp_path):
    """A network described only in a file, trained from another directory via the CLI: the
    checkpoint carries the description; export and the golden model agree with PyTorch."""
    work = tmp_path / "my project"
    work.mkdir()
    (work / "mynet.toml").write_text(USER_NET)
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "models.train", "--net", "mynet.toml",
                           "--limit", "2000", "--threads", "1"], cwd=work, capture_output=True,
                          text=True, timeout=300, env={**__import__("os").environ, **env})
    assert proc.returncode == 0, proc.stderr
    ckpt = work / "mynet.pt"
    assert f"saved {ckpt}" in proc.stdout and (work / "mynet.png").is_file()
    model, meta = load_checkpoint(ckpt)
    assert meta["net"] == "mynet" and meta["description"]["network"]["hidden"] == [32]
    assert meta["recipe"]["lr"] == 0.005 and model.activation == "frac2"
    # Downstream as for the zoo: export, then the golden model equals PyTorch on every activation.
    proc = subprocess.run([sys.executable, "-m", "models.export", "mynet.pt", "export"], cwd=work,
                          capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, **env})
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "sw.evaluate", "export", "--checkpoint",
                           "mynet.pt", "--images", "200"], cwd=work, capture_output=True,
                          text=True, timeout=300, env={**__import__("os").environ, **env})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "predictions 200/200" in proc.stdout and "all layers identical" in proc.stdout, proc.stdout


def test_a_binarynet_built_in_python_trains():
    torch.manual_seed(0)
    model = BinaryNet(input_shape=(1, 28, 28), hidden=[16], activation="sign")
    trained, history = train(model, epochs=1, limit=2000, batch_size=50, lr=0.01, progress=False)
    assert trained is model and not trained.training
    assert len(history["test_accuracy"]) == 1 and history["test_accuracy"][0] > 0.4
    with pytest.raises(TypeError, match="unknown recipe keys"):
        train(model, epoch=1)


@pytest.mark.parametrize("text,match", [
    ("[network]\ninput_shape = [1, 28, 28]\nhiden = [16]\n", "unknown [network] key(s) ['hiden']"),
    ("[network]\ninput_shape = [1, 28, 28]\nhidden = [16]\n[recipe]\nepochs = 1.5\n",
     "recipe.epochs must be an integer"),
    ("[network]\ninput_shape = [1, 28, 28]\nhidden = [16]\n[recipe]\nlr = 0\n", "recipe.lr must be > 0"),
    ("[network]\ninput_shape = [1, 28]\nhidden = [16]\n", "not a valid architecture"),
    ("[network]\ninput_shape = [1, 28, 28]\nhidden = [16]\nactivation = \"relu\"\n",
     "activation must be 'sign' or 'frac2'"),
    ("[recipe]\nepochs = 1\n", "missing [network] table"),
    ("[network\n", "not a valid TOML file"),
    ("[network]\ninput_shape = [1, 28, 28]\nhidden = [16]\n[training]\nepochs = 1\n",
     "unknown top-level key(s) ['training']"),
])
def test_bad_description_is_one_line_error(tmp_path, text, match):
    path = tmp_path / "bad net.toml"
    path.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "models.train", "--net", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], proc.stderr
    assert str(path) in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "bad net.pt").exists()


def test_missing_description_file_is_named(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "models.train", "--net", str(tmp_path / "x.toml")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "network description" in proc.stderr and "not found" in proc.stderr
