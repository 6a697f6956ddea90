"""Exporter (models/export.py): compile, agreement check, atomic CLI, folding defaults, errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import sw.network_io as network_io
from models import zoo
from models.checkpoint import save_checkpoint
from models.export import main as export_main
from models.export import (ExportError, compare_with_model, compile_model, default_folding, export,
                           sha256_file)
from sw.compiled_net import Folding
from sw.network_io import load_compiled_network, load_test_vectors
from sw.errors import cli_main
from sw.golden import GoldenModel
from sw.mnist import load_mnist
from tests.modelfactory import randomise_model

torch.set_num_threads(1)


def randomised(name, seed=0):
    """A zoo model with random (but exportable) BN statistics, gates and output norm."""
    return randomise_model(zoo.build(name), seed)


@pytest.fixture(scope="module")
def tiny_frac_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny_frac.pt"
    save_checkpoint(randomised("tiny_frac"), path, {"net": "tiny_frac"})
    return path


def test_default_folding_lfc_is_bnn_pynq():
    f = default_folding([(784, 1024), (1024, 1024), (1024, 1024), (1024, 10)])
    assert f == [Folding(32, 64, True), Folding(64, 32), Folding(32, 64), Folding(16, 8, True)]
    f3 = default_folding([(2352, 1024), (1024, 1024), (1024, 1024), (1024, 10)])
    assert f3[0] == Folding(32, 64, True) and f3[3] == Folding(16, 8, True)
    tiny = default_folding([(784, 64), (64, 64), (64, 10)])
    assert tiny[0].pad and tiny[0].simd == 64 and not tiny[1].pad


def test_export_round_trip(tmp_path, tiny_frac_ckpt):
    out = tmp_path / "out"
    net = export(tiny_frac_ckpt, out, vectors=5, check=100, progress=False)
    loaded = load_compiled_network(out)
    assert loaded.source["sha256"] == sha256_file(tiny_frac_ckpt)
    assert loaded.name == "tiny_frac" and loaded.input.thresholds == (85, 170)
    vec = load_test_vectors(out)
    images = load_mnist("test")[0][:5]
    np.testing.assert_array_equal(vec.images, images)
    res = GoldenModel(loaded).run(images)
    for got, want in zip(res.layer_outputs, vec.layers):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(res.classes, vec.classes)
    # the memories are exactly the network the exporter built
    for a, b in zip(net.layers, loaded.layers):
        np.testing.assert_array_equal(a.weights, b.weights)
        np.testing.assert_array_equal(a.gates if a.gates is not None else 0,
                                      b.gates if b.gates is not None else 0)
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".mem") == [
        "L0_thresholds.mem", "L0_weights.mem", "L1_gates.mem", "L1_thresholds.mem",
        "L1_weights.mem", "L2_gates.mem", "L2_weights.mem"]


def test_compare_detects_a_wrong_threshold():
    model = randomised("tiny")
    net = compile_model(model, "tiny")
    images = load_mnist("test")[0][:200]
    assert compare_with_model(model, net, images)["identical"]
    layer = net.layers[0]
    # move a threshold that matters: it must show up as a mismatch
    res = GoldenModel(net).run(images)
    ch = int(np.argmax(res.layer_outputs[0].std(axis=0)))
    layer.thresholds[ch, 0] += -3 if not layer.neg[ch] else 3
    report = compare_with_model(model, net, images)
    assert not report["identical"] and report["layers"][0]["mismatches"] > 0


def test_export_with_fold_file_and_atomic_failure(tmp_path, tiny_frac_ckpt, monkeypatch):
    fold = tmp_path / "fold.json"
    fold.write_text(json.dumps({"layers": [{"pe": 8, "simd": 49}, {"pe": 4, "simd": 16},
                                           {"pe": 4, "simd": 8, "pad": True}]}))
    out = tmp_path / "out"
    net = export(tiny_frac_ckpt, out, fold=fold, vectors=2, check=50, progress=False)
    assert net.layers[2].mh_padded == 12 and load_compiled_network(out).layers[0].folding.simd == 49

    def boom(*args, **kwargs):
        raise OSError("injected failure")
    monkeypatch.setattr(network_io, "write_coe", boom)
    out2 = tmp_path / "out2"
    with pytest.raises(OSError, match="injected"):
        export(tiny_frac_ckpt, out2, vectors=2, check=50, progress=False)
    assert not out2.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_unexportable_model_leaves_nothing(tmp_path):
    model = randomised("tiny")
    with torch.no_grad():
        model.layers[2].norm.log_gamma.fill_(-80.0)  # logit map collapses in float32
        model.layers[2].norm.beta.fill_(1.0)
    ckpt = tmp_path / "bad.pt"
    save_checkpoint(model, ckpt, {"net": "tiny"})
    with pytest.raises(ExportError, match="not strictly increasing"):
        export(ckpt, tmp_path / "out", check=10, progress=False)
    assert not (tmp_path / "out").exists()


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "models.export", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def run_cli_inprocess(capsys, *args):
    """models.export's CLI wrapper in this process: (exit status, stderr)."""
    with pytest.raises(SystemExit) as exc:
        cli_main(lambda: export_main([str(a) for a in args]))
    return exc.value.code, capsys.readouterr().err


def test_cli_errors_are_one_line(tmp_path, tiny_frac_ckpt, capsys):
    code, err = run_cli_inprocess(capsys, tmp_path / "missing.pt", tmp_path / "out")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: checkpoint") and "not found" in err
    fold = tmp_path / "fold.json"
    fold.write_text(json.dumps({"layers": [{"pe": 7, "simd": 49}] * 3}))
    code, err = run_cli_inprocess(capsys, tiny_frac_ckpt, tmp_path / "out", "--fold", fold)
    assert code == 2 and err.count("\n") == 1
    assert "PE 7 does not divide MH 64" in err
    assert not (tmp_path / "out").exists()
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(tiny_frac_ckpt.read_bytes()[:1000])
    code, err = run_cli_inprocess(capsys, corrupt, tmp_path / "out")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    # and the real entry point behaves the same
    proc = run_cli(tmp_path / "missing.pt", tmp_path / "out")
    assert proc.returncode == 2 and proc.stderr.startswith("error: checkpoint")


def test_cli_export_ok(tmp_path, tiny_frac_ckpt):
    proc = run_cli(tiny_frac_ckpt, tmp_path / "out", "--vectors", "3", "--check", "50")
    assert proc.returncode == 0, proc.stderr
    assert "golden == PyTorch on 50 test images" in proc.stdout
    assert len(load_test_vectors(tmp_path / "out").classes) == 3


def test_evaluate_cli_exits_1_on_disagreement(tmp_path, tiny_frac_ckpt):
    export(tiny_frac_ckpt, tmp_path / "out", vectors=0, check=20, progress=False)
    other = tmp_path / "other.pt"
    save_checkpoint(randomised("tiny_frac", seed=1), other, {"net": "tiny_frac"})
    proc = subprocess.run([sys.executable, "-m", "sw.evaluate", str(tmp_path / "out"), "--images",
                           "300", "--checkpoint", str(other), "--json", str(tmp_path / "r.json")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "MISMATCH" in proc.stdout
    rep = json.loads((tmp_path / "r.json").read_text())
    assert not rep["agreement"]["identical"] and rep["images"] == 300
    assert load_compiled_network(tmp_path / "out").test_vectors is None
