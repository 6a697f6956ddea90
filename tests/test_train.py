"""models.train / models.evaluate: determinism, learning, curves, CLI error handling."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models import train as train_mod
from models.checkpoint import load_checkpoint
from models.evaluate import main as evaluate_main

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]


def _train(tmp_path, name, net="tiny", seed=0, limit=3000, epochs=1):
    out = tmp_path / name
    rc = train_mod.main(["--net", net, "--epochs", str(epochs), "--seed", str(seed), "--limit", str(limit),
                         "--threads", "1", "--out", str(out)])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    return {"a": _train(tmp, "a.pt"), "b": _train(tmp, "b.pt"), "c": _train(tmp, "c.pt", seed=1)}


def _state(path):
    model, meta = load_checkpoint(path)
    return model.state_dict(), meta


def test_training_is_deterministic_under_the_seed(tiny_runs):
    (sa, ma), (sb, mb) = _state(tiny_runs["a"]), _state(tiny_runs["b"])
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert ma["history"]["loss"] == mb["history"]["loss"]
    assert ma["test_accuracy"] == mb["test_accuracy"]
    sc, _ = _state(tiny_runs["c"])
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)  # another seed, another model


def test_one_epoch_on_a_subset_beats_chance(tiny_runs):
    _, meta = _state(tiny_runs["a"])
    assert meta["net"] == "tiny" and meta["train_images"] == 3000
    assert meta["recipe"]["epochs"] == 1 and meta["recipe"]["seed"] == 0
    assert meta["test_accuracy"] > 0.6  # chance is 0.1
    assert meta["history"]["epoch"] == [1]
    assert meta["lsb_fraction"] is None


def test_training_curve_png_written(tiny_runs):
    png = tiny_runs["a"].with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gated_net_trains_and_reports_lsb_fraction(tmp_path):
    out = _train(tmp_path, "f.pt", net="tiny_frac", limit=2000)
    _, meta = _state(out)
    assert 0 < meta["lsb_fraction"] < 1
    assert meta["test_accuracy"] > 0.6


def test_evaluate_cli_matches_training_record(tiny_runs, tmp_path, capsys):
    report = tmp_path / "eval.json"
    assert evaluate_main([str(tiny_runs["a"]), "--json", str(report)]) == 0
    result = json.loads(report.read_text())
    _, meta = _state(tiny_runs["a"])
    assert result["accuracy"] == meta["test_accuracy"] and result["total"] == 10_000
    assert f"{100 * meta['test_accuracy']:.2f}%" in capsys.readouterr().out


def test_lr_schedule():
    assert train_mod.lr_at(0, 100, 1e-2, 1e-4) == pytest.approx(1e-2)
    assert train_mod.lr_at(50, 100, 1e-2, 1e-4) == pytest.approx((1e-2 + 1e-4) / 2)
    assert train_mod.lr_at(100, 100, 1e-2, 1e-4) == pytest.approx(1e-4)
    assert train_mod.lr_at(0, 100, 1e-2, 1e-4, warmup_steps=10) == pytest.approx(1e-3)


def _run_cli(*args):
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("args,match", [
    (("models.evaluate", "does/not/exist.pt"), "not found"),
    (("models.train", "--net", "nope"), "unknown zoo model"),
    (("models.train", "--net", "tiny", "--epochs", "0"), "--epochs"),
    (("models.train", "--net", "tiny", "--finetune-epochs", "-1"), "--finetune-epochs must be >= 0"),
    (("models.train", "--net", "tiny", "--finetune-epochs", "2,x"), "--finetune-epochs must be epoch"),
    # An unwritable --out is refused before training (a 1-epoch run would take seconds here,
    # and the timeout below minutes).
    (("models.train", "--net", "tiny", "--out", "/sys/fracbnn-tiny.pt"),
     "cannot write the --out checkpoint /sys/fracbnn-tiny.pt"),
    pytest.param(("models.train", "--net", "tiny", "--device", "cuda"), "no CUDA GPU",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here")),
])
def test_cli_user_errors_exit_2_with_one_line(args, match):
    proc = _run_cli(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0]
    assert "Traceback" not in proc.stderr


def test_init_fine_tunes_from_the_checkpoint(tiny_runs, tmp_path):
    """``--init``: the run starts from the checkpoint's weights (a learning rate too small to
    flip a sign keeps every binary weight), continues its history and records it."""
    base = tiny_runs["a"]
    out = tmp_path / "ft.pt"
    args = ["--net", "tiny", "--epochs", "1", "--limit", "3000", "--threads", "1",
            "--init", str(base), "--lr", "1e-9"]
    assert train_mod.main([*args, "--out", str(out)]) == 0
    (sa, ma), (sf, mf) = _state(base), _state(out)
    binary = [k for k in sa if k.endswith(".weight") and set(sa[k].unique().tolist()) <= {-1.0, 1.0}]
    assert binary and all(torch.equal(sa[k], sf[k]) for k in binary)
    assert mf["history"]["epoch"] == [1, 2] and mf["history"]["stage"] == [1, 2]
    assert mf["history"]["test_accuracy"][0] == ma["test_accuracy"]
    assert mf["test_accuracy"] == mf["history"]["test_accuracy"][-1]
    assert mf["init"]["checkpoint"] == base.name and mf["init"]["command"] == ma["command"]
    assert "--init" in mf["command"] and "init" not in mf["init"]
    again = tmp_path / "ft2.pt"      # a fine-tune of a fine-tune keeps the whole chain
    assert train_mod.main([*args, "--init", str(out), "--out", str(again)]) == 0
    _, m2 = _state(again)
    assert m2["history"]["epoch"] == [1, 2, 3] and m2["init"]["init"] == mf["init"]
    assert m2["history"]["stage"] == [1, 2, 3]
    # With a learning rate large enough to flip signs within 24 steps from the clip bound,
    # the fine-tune moves, deterministically.
    outs = [tmp_path / f"ft{i}.pt" for i in range(2)]
    for o in outs:
        assert train_mod.main([*args[:-1], "0.1", "--out", str(o)]) == 0
    (s0, m0), (s1, m1) = _state(outs[0]), _state(outs[1])
    assert all(torch.equal(s0[k], s1[k]) for k in s0)
    assert m0["history"]["loss"] == m1["history"]["loss"]
    assert not all(torch.equal(s0[k], sa[k]) for k in binary)


def test_recipe_finetune_stages_are_the_init_runs(tmp_path):
    """A recipe with ``finetune_epochs`` trains, then fine-tunes stage by stage from the saved
    weights in the same command: bit for bit what the run without the stages followed by
    ``--init`` runs give (``--init`` runs the recipe's stages from the first: its epochs and
    lr default to them)."""
    text = (REPO / "models/nets/tiny.toml").read_text()
    desc = tmp_path / "tinyft.toml"
    desc.write_text(text.replace("[recipe]\n", "[recipe]\nfinetune_epochs = [1, 1]\n"
                                 "finetune_lr = 2e-3\n"))
    common = ["--net", str(desc), "--epochs", "1", "--limit", "3000", "--threads", "1"]
    one, first, second, third = (tmp_path / n for n in ("one.pt", "1.pt", "2.pt", "3.pt"))
    assert train_mod.main([*common, "--out", str(one)]) == 0
    assert train_mod.main([*common, "--finetune-epochs", "0", "--out", str(first)]) == 0
    init = ["--net", str(desc), "--limit", "3000", "--threads", "1", "--init"]
    # All stages from the first run's checkpoint; or one stage at a time.
    assert train_mod.main([*init, str(first), "--out", str(second)]) == 0
    assert train_mod.main([*init, str(first), "--finetune-epochs", "0", "--out", str(third)]) == 0
    assert train_mod.main([*init, str(third), "--epochs", "1", "--lr", "2e-3",
                           "--finetune-epochs", "0", "--out", str(third)]) == 0
    (s1, m1), (sf, mf) = _state(one), _state(first)
    for path in (second, third):
        s2, m2 = _state(path)
        assert all(torch.equal(s1[k], s2[k]) for k in s1)
        assert m1["history"]["epoch"] == m2["history"]["epoch"] == [1, 2, 3]
        assert m1["history"]["stage"] == m2["history"]["stage"] == [1, 2, 3]
        for key in ("loss", "train_accuracy", "test_accuracy"):
            assert m1["history"][key] == m2["history"][key]
        assert m2["recipe"]["lr"] == 2e-3
    assert tuple(m1["recipe"]["finetune_epochs"]) == (1, 1) and mf["history"]["epoch"] == [1]
    assert not all(torch.equal(s1[k], sf[k]) for k in s1)


@pytest.mark.parametrize("value,match", [("-1", "must be >= 0"), ("3,0", "each >= 1"),
                                         ("x", "separated by commas")])
def test_finetune_epochs_option_errors(value, match):
    from sw.errors import UserError

    with pytest.raises(UserError, match=match):
        train_mod.main(["--net", "tiny", "--finetune-epochs", value, "--out", "/nonexistent/x.pt"])


def test_init_with_another_architecture_is_a_one_line_error(tiny_runs, tmp_path):
    from models.checkpoint import save_checkpoint
    from sw.errors import UserError

    with pytest.raises(UserError, match="another architecture than --net tiny_resnet"):
        train_mod.main(["--net", "tiny_resnet", "--init", str(tiny_runs["a"]),
                        "--out", str(tmp_path / "x.pt")])
    model, _ = load_checkpoint(tiny_runs["a"])
    bare = save_checkpoint(model, tmp_path / "bare.pt", {})
    with pytest.raises(UserError, match="no training history"):
        train_mod.main(["--net", "tiny", "--init", str(bare), "--out", str(tmp_path / "y.pt")])
    assert not (tmp_path / "x.pt").exists() and not (tmp_path / "y.pt").exists()


def test_evaluate_cli_rejects_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    proc = _run_cli("models.evaluate", str(bad))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_random_shift_translates_with_zero_fill():
    from models.data import random_shift

    images = torch.randint(1, 256, (6, 784), dtype=torch.uint8)
    gen = torch.Generator().manual_seed(7)
    offsets = torch.randint(-2, 3, (2, 6), generator=torch.Generator().manual_seed(7))
    shifted = random_shift(images, 2, gen)
    for b in range(6):
        dy, dx = offsets[:, b].tolist()
        src = images[b].reshape(28, 28)
        ref = torch.zeros_like(src)
        ref[max(dy, 0):28 + min(dy, 0), max(dx, 0):28 + min(dx, 0)] = \
            src[max(-dy, 0):28 + min(-dy, 0), max(-dx, 0):28 + min(-dx, 0)]
        assert torch.equal(shifted[b].reshape(28, 28), ref)
    assert random_shift(images, 0) is images


def test_auto_device_without_a_gpu_is_the_cpu_run(tiny_runs, tmp_path):
    """``--device auto`` on a machine without CUDA trains exactly the default CPU run; the
    checkpoint records the device."""
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: auto picks it")
    out = tmp_path / "auto.pt"
    assert train_mod.main(["--net", "tiny", "--epochs", "1", "--seed", "0", "--limit", "3000",
                           "--threads", "1", "--out", str(out), "--device", "auto"]) == 0
    (sa, ma), (sb, mb) = _state(tiny_runs["a"]), _state(out)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert ma["history"]["loss"] == mb["history"]["loss"]
    assert ma["device"] == mb["device"] == "cpu"


def test_iterate_batches_on_a_device_keeps_the_order():
    from models.data import iterate_batches

    plain = list(iterate_batches(10, 4, torch.Generator().manual_seed(3)))
    moved = list(iterate_batches(10, 4, torch.Generator().manual_seed(3), device="cpu"))
    assert [b.tolist() for b in plain] == [b.tolist() for b in moved]
    assert [len(b) for b in plain] == [4, 4, 2]
