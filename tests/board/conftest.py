"""Fixtures of the board tests (no pynq here: the main suite collects this directory too)."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest

#: Set by ``nox -s board``: the tests run on the installed light package and numpy 1.26.
BOARD_SESSION = os.environ.get("FRACBNN_BOARD_SESSION") == "1"


def write_mnist_idx(directory: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """``images`` (N, 784) uint8 and ``labels`` as the MNIST test split's IDX files."""
    directory.mkdir(parents=True, exist_ok=True)
    n = len(images)
    (directory / "t10k-images-idx3-ubyte").write_bytes(
        struct.pack(">IIII", 0x803, n, 28, 28) + images.astype(np.uint8).tobytes())
    (directory / "t10k-labels-idx1-ubyte").write_bytes(
        struct.pack(">II", 0x801, n) + labels.astype(np.uint8).tobytes())
    return directory


@pytest.fixture
def mnist_dir(tmp_path):
    """200 random 28x28 images with random labels, as MNIST IDX files."""
    rng = np.random.default_rng(5)
    return write_mnist_idx(tmp_path / "mnist", rng.integers(0, 256, (200, 784), dtype=np.uint8),
                           rng.integers(0, 10, 200))
