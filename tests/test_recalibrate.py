"""models.recalibrate: batch-norm statistics re-estimated on training images, kept only if
they help on those training images; parameters untouched; deterministic."""

import torch

from models import zoo
from models.checkpoint import load_checkpoint
from models.recalibrate import main, recalibrate_batch_norm

torch.set_num_threads(1)


def test_recalibration_only_touches_running_statistics(tmp_path):
    model, _ = load_checkpoint(zoo.default_checkpoint("tiny_conv"))
    params = {k: v.clone() for k, v in model.named_parameters()}
    images = torch.randint(0, 256, (1200, model.pixels), dtype=torch.uint8)
    recalibrate_batch_norm(model, images)
    assert not model.training
    assert all(torch.equal(params[k], v) for k, v in model.named_parameters())
    bn = model.layers[0].bn
    again, _ = load_checkpoint(zoo.default_checkpoint("tiny_conv"))
    recalibrate_batch_norm(again, images)
    assert torch.equal(bn.running_mean, again.layers[0].bn.running_mean)
    assert bn.momentum == 0.1   # restored


def test_cli_keeps_only_what_helps_on_training_images(tmp_path):
    out = tmp_path / "r.pt"
    assert main([str(zoo.default_checkpoint("tiny_conv")), "--out", str(out),
                 "--images", "2000"]) == 0
    model, meta = load_checkpoint(out)
    rec = meta["recalibration"]
    assert rec["images"] == 2000
    assert rec["kept"] == (rec["train_accuracy_after"] > rec["train_accuracy_before"])
    if not rec["kept"]:
        assert meta["test_accuracy"] == rec["test_accuracy_before"]
