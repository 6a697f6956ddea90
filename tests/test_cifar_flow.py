"""CIFAR-10 from the user's files through the whole flow, on a fixture in the exact format.

models.train -> models.export -> sw.evaluate -> sw.compare -> sim.run (RTL), all reading
the same ``cifar-10-batches-py`` directory (written by :func:`sw.cifar.write_cifar_fixture`);
images reach the network in HWC order.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from sw.cifar import load_cifar10, write_cifar_fixture
from sw.datasets import load_images
from sw.errors import UserError

pytestmark = pytest.mark.slow


def run(*args, cwd=None):
    proc = subprocess.run([sys.executable, "-m", *map(str, args)], capture_output=True,
                          text=True, timeout=1200, cwd=cwd)
    return proc


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    root = tmp_path_factory.mktemp("data with space")
    return write_cifar_fixture(root / "cifar-10-batches-py", n_train_per_batch=40, n_test=24)


def test_load_images_is_hwc(cifar):
    images, labels = load_images("test", (3, 32, 32), cifar)
    hwc, ref_labels = load_cifar10(cifar, "test")
    assert images.shape == (24, 3072) and np.array_equal(images.reshape(24, 32, 32, 3), hwc)
    assert np.array_equal(labels, ref_labels)
    with pytest.raises(UserError, match="need the data set directory"):
        load_images("test", (3, 32, 32), None)


def test_cifar_train_export_evaluate_simulate(cifar, tmp_path):
    ckpt = tmp_path / "c.pt"
    p = run("models.train", "--net", "tiny_conv_cifar10", "--epochs", "1", "--data", cifar,
            "--out", ckpt, "--threads", "1")
    assert p.returncode == 0, p.stderr[-2000:]
    exp = tmp_path / "exp"
    p = run("models.export", ckpt, exp, "--data", cifar, "--check", "24", "--vectors", "4")
    assert p.returncode == 0, p.stderr[-2000:]
    doc = json.loads((exp / "network.json").read_text())
    assert doc["input"]["channels"] == 3 and doc["input"]["order"] == "HWC"
    p = run("sw.evaluate", exp, "--data", cifar, "--checkpoint", ckpt, "--json", tmp_path / "e.json")
    assert p.returncode == 0, p.stdout + p.stderr
    rep = json.loads((tmp_path / "e.json").read_text())
    assert rep["images"] == 24 and rep["agreement"]["identical"]
    p = run("sw.compare", "--target", "golden", "--net", exp, "--checkpoint", ckpt, "--data",
            cifar, "--images", "24")
    assert p.returncode == 0, p.stdout + p.stderr
    p = run("sim.run", "--net", exp, "--data", cifar, "--images", "6", "--json",
            tmp_path / "s.json")
    assert p.returncode == 0, p.stdout + p.stderr
    sim = json.loads((tmp_path / "s.json").read_text())
    assert sim["mismatches"] == 0 and not sim["timing"]["disagreements"]


def test_cifar_network_without_data_is_one_line_error(tmp_path):
    p = run("models.train", "--net", "tiny_conv_cifar10", "--epochs", "1", "--out",
            tmp_path / "x.pt")
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and "cifar-10-batches-py" in p.stderr
    assert not (tmp_path / "x.pt").exists()


def test_cifar_resnet_train_export_evaluate(cifar, tmp_path):
    """The residual network's CIFAR-10 route (``resnet_frac_cifar10``'s input: 32 thermometer
    levels per colour, 96 planes) on the fixture: a narrow description of the same kind
    trains, exports (golden == PyTorch on every tap) and evaluates from the same files."""
    desc = tmp_path / "res_cifar.toml"
    desc.write_text('[network]\nkind = "resnet"\ninput_shape = [3, 32, 32]\n'
                    'thermometer_levels = 32\nwidths = [4, 8]\nblocks = 1\n'
                    'activation = "frac2"\nclasses = 10\n\n'
                    '[recipe]\nepochs = 1\nbatch_size = 32\nrecalibrate_images = 64\n')
    ckpt = tmp_path / "r.pt"
    p = run("models.train", "--net", desc, "--data", cifar, "--out", ckpt, "--threads", "1")
    assert p.returncode == 0, p.stderr[-2000:]
    exp = tmp_path / "exp"
    p = run("models.export", ckpt, exp, "--data", cifar, "--check", "24", "--vectors", "2")
    assert p.returncode == 0, p.stderr[-2000:]
    doc = json.loads((exp / "network.json").read_text())
    assert doc["version"] == 4 and doc["input"]["channels"] == 3
    p = run("sw.evaluate", exp, "--data", cifar, "--checkpoint", ckpt, "--json",
            tmp_path / "e.json")
    assert p.returncode == 0, p.stdout + p.stderr
    rep = json.loads((tmp_path / "e.json").read_text())
    assert rep["images"] == 24 and rep["agreement"]["identical"]
