"""Train -> export -> golden model: bit-identical to PyTorch on >= 2000 MNIST test images."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from models import zoo
from models.checkpoint import save_checkpoint
from models.export import compare_with_model, export
from models.train import train
from sw.compiled_net import load_compiled_network
from sw.golden import GoldenModel
from sw.mnist import load_mnist

N_IMAGES = 2000


@pytest.mark.parametrize("name", ["tiny", "tiny_frac"])
def test_train_export_golden_identical(tmp_path, name):
    torch.set_num_threads(1)
    recipe = zoo.recipe(name)
    recipe["epochs"] = 1
    model, history = train(name, limit=6000, progress=False, **recipe)
    assert history["test_accuracy"][-1] > 0.5  # trained, well above chance
    ckpt = save_checkpoint(model, tmp_path / f"{name}.pt", {"net": name})
    out = tmp_path / "export"
    export(ckpt, out, vectors=8, check=100, progress=False)

    net = load_compiled_network(out)
    images, labels = load_mnist("test")
    images, labels = images[:N_IMAGES], labels[:N_IMAGES]
    res = GoldenModel(net).run(images)
    report = compare_with_model(model, net, images, res)
    assert report["predictions_agree"] == N_IMAGES
    for layer in report["layers"]:
        assert layer["mismatches"] == 0
        assert layer["gate_mismatches"] in (None, 0)
    assert report["identical"]
    if name == "tiny_frac":
        assert all(f is not None and 0.0 < f < 1.0 for f in res.lsb_fraction[1:])
    assert np.mean(res.classes == labels) > 0.5

    # the CLI agrees and exits 0
    proc = subprocess.run([sys.executable, "-m", "sw.evaluate", str(out), "--images", str(N_IMAGES),
                           "--checkpoint", str(ckpt), "--json", str(tmp_path / "r.json")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["agreement"]["identical"] and rep["agreement"]["predictions_agree"] == N_IMAGES
    assert rep["correct"] == int(np.sum(res.classes == labels))


@pytest.mark.slow
@pytest.mark.parametrize("name", zoo.names())
def test_shipped_checkpoint_full_test_set(tmp_path, name):
    """Every shipped zoo checkpoint: golden == PyTorch on all 10,000 test images."""
    ckpt = zoo.default_checkpoint(name)
    if not ckpt.is_file():
        pytest.skip(f"{ckpt} not shipped")
    out = tmp_path / name
    export(ckpt, out, check=100, progress=False)
    proc = subprocess.run([sys.executable, "-m", "sw.evaluate", str(out), "--checkpoint", str(ckpt),
                           "--json", str(tmp_path / "r.json")],
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["images"] == 10_000 and rep["agreement"]["predictions_agree"] == 10_000
    assert rep["agreement"]["identical"]
