"""The model zoo: named architectures with their training recipes.

Each entry pairs the :class:`~models.layers.BinaryNet` constructor arguments
(``arch``) with the recipe ``python -m models.train --net NAME`` uses by default
(``recipe``).  Trained checkpoints ship as ``models/checkpoints/<name>.pt``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from sw.errors import UserError

from .layers import BinaryNet

__all__ = ["ZooEntry", "ZOO", "names", "build", "recipe", "default_checkpoint", "CHECKPOINT_DIR"]

#: Directory of the shipped checkpoints.
CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"


@dataclass(frozen=True)
class ZooEntry:
    """One zoo model.

    Attributes
    ----------
    description
        One line for humans.
    arch
        Keyword arguments of :class:`BinaryNet`.
    recipe
        Training defaults: ``epochs``, ``lr`` (Adam, peak), ``lr_final`` (end of the
        cosine decay), ``batch_size``, ``seed``, ``gate_lambda`` (weight of the gate
        sparsity penalty), ``gate_lr_scale`` (learning-rate multiplier of ``gate_delta``,
        which lives on the integer accumulator scale), ``warmup_epochs``, ``max_shift``
        (random translation of training images by up to this many pixels, 0 = off).
    """

    description: str
    arch: Mapping[str, Any]
    recipe: Mapping[str, Any] = field(default_factory=dict)


_DEFAULT_RECIPE = {"epochs": 10, "lr": 3e-3, "lr_final": 3e-5, "batch_size": 128, "seed": 0,
                   "gate_lambda": 0.0, "gate_lr_scale": 1.0, "warmup_epochs": 0, "max_shift": 0}


def _entry(description: str, arch: dict, **recipe_overrides) -> ZooEntry:
    unknown = set(recipe_overrides) - set(_DEFAULT_RECIPE)
    if unknown:
        raise ValueError(f"unknown recipe keys {sorted(unknown)}")
    return ZooEntry(description, MappingProxyType(dict(arch)),
                    MappingProxyType({**_DEFAULT_RECIPE, **recipe_overrides}))


# BNN-PYNQ's CNV feature extractor: valid 3x3 convolutions 64, 64, pool, 128, 128, pool, 256, 256.
_CNV_CONVS = ({"channels": 64, "kernel": 3}, {"channels": 64, "kernel": 3, "pool": 2},
              {"channels": 128, "kernel": 3}, {"channels": 128, "kernel": 3, "pool": 2},
              {"channels": 256, "kernel": 3}, {"channels": 256, "kernel": 3})
# Two "same" 3x3 convolutions with 2x2 max-pools (test-sized).
_TINY_CONVS = ({"channels": 16, "kernel": 3, "pad": 1, "pool": 2},
               {"channels": 32, "kernel": 3, "pad": 1, "pool": 2})

ZOO: Mapping[str, ZooEntry] = MappingProxyType({
    "tiny": _entry(
        "784-64-64-10, 1-bit activations, input binarised at 128 (fast tests)",
        dict(input_shape=(1, 28, 28), thermometer_levels=1, hidden=[64, 64],
             activation="sign", classes=10, dropout=0.0),
        epochs=3, lr=5e-3, batch_size=128),
    "tiny_frac": _entry(
        "1568-64-64-10, 2-bit thermometer input, 2-bit activations with precision gating (fast tests)",
        dict(input_shape=(1, 28, 28), thermometer_levels=2, hidden=[64, 64],
             activation="frac2", classes=10, dropout=0.0),
        epochs=3, lr=5e-3, batch_size=128, gate_lambda=0.05, gate_lr_scale=100.0),
    "lfc_w1a1": _entry(
        "BNN-PYNQ LFC-W1A1: 784-1024-1024-1024-10, 1-bit weights and activations, input binarised at 128",
        dict(input_shape=(1, 28, 28), thermometer_levels=1, hidden=[1024, 1024, 1024],
             activation="sign", classes=10, dropout=0.1),
        epochs=15, lr=3e-3, lr_final=1e-5, batch_size=128, max_shift=2),
    "lfc_frac": _entry(
        "LFC with FracBNN activations: 2352-1024-1024-1024-10, 3-level thermometer input, "
        "2-bit activations with precision gating",
        dict(input_shape=(1, 28, 28), thermometer_levels=3, hidden=[1024, 1024, 1024],
             activation="frac2", classes=10, dropout=0.1),
        epochs=12, lr=3e-3, lr_final=1e-5, batch_size=128, gate_lambda=0.05, gate_lr_scale=100.0,
        max_shift=2),
    "tiny_conv": _entry(
        "conv 16 (3x3 same) + pool, conv 32 (3x3 same) + pool, 1568-64-10; 1-bit activations, "
        "input binarised at 128 (fast tests)",
        dict(input_shape=(1, 28, 28), thermometer_levels=1, hidden=[64],
             activation="sign", classes=10, dropout=0.0,
             convs=_TINY_CONVS),
        epochs=4, lr=5e-3, batch_size=128),
    "tiny_conv_frac": _entry(
        "tiny_conv with a 2-level thermometer input and FracBNN 2-bit gated activations",
        dict(input_shape=(1, 28, 28), thermometer_levels=2, hidden=[64],
             activation="frac2", classes=10, dropout=0.0,
             convs=_TINY_CONVS),
        epochs=4, lr=5e-3, batch_size=128, gate_lambda=0.05, gate_lr_scale=100.0),
    "cnv_w1a1": _entry(
        "BNN-PYNQ CNV-W1A1 on 32x32 (MNIST padded, thermometer T=2): 3x3 valid convs 64, 64, "
        "pool, 128, 128, pool, 256, 256, dense 512, 512, 10",
        dict(input_shape=(1, 32, 32), thermometer_levels=2, hidden=[512, 512],
             activation="sign", classes=10, dropout=0.0,
             convs=_CNV_CONVS),
        epochs=4, lr=3e-3, lr_final=1e-5, batch_size=128, max_shift=2),
    "cnv_w1a1_cifar10": _entry(
        "the cnv_w1a1 topology on CIFAR-10 (3x32x32, thermometer T=8 per colour channel = 24 "
        "binary input channels); train it from your own cifar-10-batches-py (--data DIR)",
        dict(input_shape=(3, 32, 32), thermometer_levels=8, hidden=[512, 512],
             activation="sign", classes=10, dropout=0.0,
             convs=_CNV_CONVS),
        epochs=30, lr=3e-3, lr_final=1e-5, batch_size=128, max_shift=2),
    "tiny_conv_cifar10": _entry(
        "a test-sized conv net for CIFAR-10 files (3x32x32, T=2): conv 8 (pad 1) + pool, "
        "conv 16 + pool, dense 10",
        dict(input_shape=(3, 32, 32), thermometer_levels=2, hidden=[],
             activation="sign", classes=10, dropout=0.0,
             convs=[{"channels": 8, "kernel": 3, "pad": 1, "pool": 2},
                    {"channels": 16, "kernel": 3, "pool": 2}]),
        epochs=2, lr=5e-3, batch_size=64, max_shift=2),
    "cnv_frac": _entry(
        "CNV with FracBNN activations: the cnv_w1a1 topology, 2-bit gated activations",
        dict(input_shape=(1, 32, 32), thermometer_levels=2, hidden=[512, 512],
             activation="frac2", classes=10, dropout=0.0,
             convs=_CNV_CONVS),
        epochs=3, lr=3e-3, lr_final=1e-5, batch_size=128, max_shift=2, gate_lambda=0.05,
        gate_lr_scale=100.0),
})


def names() -> list[str]:
    """Zoo model names, in definition order."""
    return list(ZOO)


def _get(name: str) -> ZooEntry:
    try:
        return ZOO[name]
    except KeyError:
        raise UserError(f"unknown zoo model {name!r}; choose one of {', '.join(ZOO)}") from None


def build(name: str) -> BinaryNet:
    """A freshly initialised (untrained) model of zoo entry ``name``."""
    return BinaryNet(**_get(name).arch)


def recipe(name: str) -> dict[str, Any]:
    """A mutable copy of the training recipe of ``name``."""
    return dict(_get(name).recipe)


def default_checkpoint(name: str) -> Path:
    """Path of the shipped checkpoint of ``name``: ``models/checkpoints/<name>.pt``."""
    _get(name)
    return CHECKPOINT_DIR / f"{name}.pt"
