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
from sw.network_io import load_compiled_network
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


def _golden_equals_pytorch(tmp_path, name, images=None):
    ckpt = zoo.default_checkpoint(name)
    if not ckpt.is_file():
        pytest.skip(f"{ckpt} not shipped")
    out = tmp_path / name
    export(ckpt, out, check=100, progress=False)
    count = [] if images is None else ["--images", str(images)]
    proc = subprocess.run([sys.executable, "-m", "sw.evaluate", str(out), "--checkpoint", str(ckpt),
                           "--json", str(tmp_path / "r.json"), *count],
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    expected = images or 10_000
    assert rep["images"] == expected and rep["agreement"]["predictions_agree"] == expected
    assert rep["agreement"]["identical"]


#: The CNV models take minutes per 10,000 images: their full test set is a benchmark.
_FULL = [pytest.param(n, marks=pytest.mark.heavy) if n.startswith("cnv") else n
         for n in zoo.names() if zoo.ZOO[n].kind == "binary"]   # residual nets: no export yet


@pytest.mark.slow
@pytest.mark.parametrize("name", _FULL)
def test_shipped_checkpoint_full_test_set(tmp_path, name):
    """Every shipped zoo checkpoint: golden == PyTorch on all 10,000 test images."""
    _golden_equals_pytorch(tmp_path, name)


@pytest.mark.parametrize("name", ["cnv_w1a1", "cnv_frac"])
def test_shipped_cnv_checkpoints_first_images(tmp_path, name):
    """The CNV models in the suite: golden == PyTorch on the first 500 test images."""
    _golden_equals_pytorch(tmp_path, name, images=500)
