"""Brevitas' BNN-PYNQ networks (TFC, SFC, LFC, CNV in 1W1A / 1W2A), trained briefly,
exported to QONNX and imported: the round trip of ``models.import_qonnx`` on the networks FINN
users start from.

``python -m models.brevitas_nets --out DIR [--nets tfc_1w1a,...] [--steps N] [--check N]``
builds each FC network with ``brevitas_examples.bnn_pynq.models.model_with_cfg(name,
pretrained=False)`` (the pretrained weights cannot be downloaded here) and CNV with its class
for one input channel (``CNV(10, 1, act_bits, 8, in_ch=1)``: MNIST padded to 32x32 with
black; its cfg is for CIFAR-10, which is not available here), trains it for
``--steps`` Adam steps of 100 MNIST training images with BNN-PYNQ's recipe (squared hinge
loss on ±1 targets, weights clipped to [-1, 1] after every step; seeded), exports it with
``brevitas.export.export_qonnx``, imports it with :func:`models.import_qonnx.import_qonnx`
(checked against QONNX's executor on ``--check`` MNIST test images) and writes
``DIR/<name>.onnx``, ``DIR/<name>/`` (the compiled network) and ``DIR/summary.json`` /
``DIR/summary.md`` (accuracy, agreement, cycles per image at the default folding, times).
Needs the ``qonnx`` extra (pyproject.toml).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from sw.errors import UserError, cli_main

__all__ = ["NETS", "input_shape", "build", "train_briefly", "export", "main"]

#: The networks of brevitas_examples.bnn_pynq this module handles.
NETS = ("tfc_1w1a", "tfc_1w2a", "sfc_1w1a", "sfc_1w2a", "lfc_1w1a", "lfc_1w2a", "cnv_1w1a",
        "cnv_1w2a")


def input_shape(name: str) -> tuple[int, int, int]:
    """``(C, H, W)`` of network ``name``'s input (CNV: MNIST padded to 32x32)."""
    return (1, 32, 32) if name.startswith("cnv") else (1, 28, 28)


def _brevitas():
    try:
        import brevitas  # noqa: F401
        from brevitas.export import export_qonnx
        from brevitas_examples.bnn_pynq.models import model_with_cfg
    except ImportError as exc:
        raise UserError(f"this needs brevitas ({exc}); install the qonnx extra: pip install "
                        "brevitas==0.13.4 qonnx==1.0.0 onnx onnxruntime onnxoptimizer") from None
    return model_with_cfg, export_qonnx


def build(name: str):
    """A freshly initialised Brevitas bnn_pynq FC network (eval mode off)."""
    if name not in NETS:
        raise UserError(f"unknown network {name!r}; choose from {', '.join(NETS)}")
    model_with_cfg, _ = _brevitas()
    if name.startswith("cnv"):
        from brevitas_examples.bnn_pynq.models.CNV import CNV
        return CNV(num_classes=10, weight_bit_width=1, act_bit_width=int(name[-2]),
                   in_bit_width=8, in_ch=1)
    model, _ = model_with_cfg(name, pretrained=False)
    return model


def train_briefly(model, steps: int, *, seed: int = 0, batch: int = 100, lr: float = 0.02,
                  data=None, shape=(1, 28, 28)):
    """``steps`` Adam steps (BNN-PYNQ's recipe: squared hinge loss on ±1 one-hot targets,
    ``clip_weights(-1, 1)`` after each step) on MNIST training images in [0, 1]; seeded.
    Returns the model in eval mode."""
    import torch
    from sw.datasets import load_images

    x, y = load_images("train", shape, data)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (batch,), generator=gen).numpy()
        # HWC bytes -> NCHW floats in [0, 1] (ToTensor)
        xb = torch.from_numpy(x[idx].astype(np.float32) / 255).reshape(
            batch, shape[1], shape[2], shape[0]).permute(0, 3, 1, 2).contiguous()
        target = torch.full((batch, 10), -1.0)
        target[torch.arange(batch), torch.from_numpy(y[idx]).long()] = 1.0
        out = model(xb)
        loss = torch.mean(torch.clamp(1.0 - out * target, min=0) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.clip_weights(-1.0, 1.0)
    return model.eval()


def export(model, path: str | Path, *, dynamo: bool = True, shape=(1, 1, 28, 28)) -> Path:
    """``brevitas.export.export_qonnx`` of ``model`` for inputs of ``shape`` in [0, 1]
    (``dynamo=False``: torch's TorchScript exporter, MatMul instead of Gemm).  The ``.onnx``
    file is self-contained: the dynamo exporter's external-data leftover is removed."""
    import torch
    _, export_qonnx = _brevitas()
    path = Path(path)
    model.eval()
    export_qonnx(model, torch.rand(*shape), str(path), **({} if dynamo else {"dynamo": False}))
    path.with_name(path.name + ".data").unlink(missing_ok=True)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Train, export, import every network; print and write the summary table."""
    import torch
    from hw.cycle_model import data_independent_ii
    from models.import_qonnx import import_qonnx

    ap = argparse.ArgumentParser(prog="python -m models.brevitas_nets", description=__doc__
                                 .split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, metavar="DIR")
    ap.add_argument("--nets", default=",".join(NETS), help="comma-separated (default: all)")
    ap.add_argument("--steps", type=int, default=600,
                    help="training steps of 100 images (default 600 = one epoch)")
    ap.add_argument("--check", type=int, default=10000,
                    help="MNIST test images compared with QONNX's executor (default 10000)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    nets = [n.strip() for n in args.nets.split(",") if n.strip()]
    for n in nets:
        if n not in NETS:
            raise UserError(f"unknown network {n!r} in --nets; choose from {', '.join(NETS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in nets:
        t0 = time.perf_counter()
        shape = input_shape(name)
        model = train_briefly(build(name), args.steps, seed=args.seed, shape=shape)
        t_train = time.perf_counter() - t0
        onnx_path = export(model, args.out / f"{name}.onnx", shape=(1, *shape))
        r = import_qonnx(onnx_path, args.out / name, check=args.check)
        c = r["check"]
        row = {"net": name, "train_steps": args.steps, "train_seconds": round(t_train, 1),
               "images": c["images"], "correct": c["correct"],
               "accuracy": c["correct"] / max(c["images"], 1),
               "activation_mismatches": sum(c["layer_mismatches"]),
               "class_mismatches": c["class_mismatches"],
               "cycles_per_image": data_independent_ii(r["net"]),
               "import_seconds": round(r["seconds"], 1)}
        rows.append(row)
        print(f"{name}: {row['correct']}/{row['images']} correct ({100 * row['accuracy']:.2f} %), "
              f"{row['activation_mismatches']} activation and {row['class_mismatches']} class "
              f"mismatches vs QONNX's executor, {row['cycles_per_image']:g} cycles/image, "
              f"trained {row['train_seconds']} s, imported {row['import_seconds']} s", flush=True)
    (args.out / "summary.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = ["| network | steps | MNIST test accuracy | images vs executor | mismatches "
             "(activations / classes) | cycles/image (default folding) | import s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['net']} | {r['train_steps']} | {100 * r['accuracy']:.2f} % | "
                     f"{r['images']} | {r['activation_mismatches']} / {r['class_mismatches']} | "
                     f"{r['cycles_per_image']:g} | {r['import_seconds']} |")
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    cli_main(lambda: main(sys.argv[1:]))
