"""sw.cifar: CIFAR-10 from the user's files, HWC order, safe unpickling and error messages."""

from __future__ import annotations

import io
import os
import pickle
import pickletools

import numpy as np
import pytest

import sw.cifar as cifar
from sw.cifar import (cifar10_label_names, find_cifar10_dir, load_cifar10, load_cifar10_flat,
                      write_cifar_fixture)
from sw.errors import UserError

N_TRAIN, N_TEST = 3, 4


@pytest.fixture
def cifar_dir(tmp_path):
    return write_cifar_fixture(tmp_path / "cifar-10-batches-py", N_TRAIN, N_TEST, seed=7)


def _source(directory, name):
    """Decode a batch we wrote ourselves with plain pickle (trusted test data): CHW rows, labels."""
    with open(directory / name, "rb") as f:
        d = pickle.load(f, encoding="bytes")
    return d[b"data"], np.asarray(d[b"labels"])


def _expected_hwc(rows):
    """images[n, y, x, c] = rows[n, c*1024 + y*32 + x], by explicit indexing (no reshape)."""
    n, y, x, c = np.indices((rows.shape[0], 32, 32, 3))
    return rows[n, c * 1024 + y * 32 + x]


def _write_batch(path, data, labels, **extra):
    """A batch as a Python 3 user would re-pickle it: protocol 2, byte keys."""
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"custom", b"labels": labels, b"data": data, **extra},
                    f, protocol=2)


def _one_line_error(excinfo):
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_fixture_round_trip_hwc(cifar_dir):
    rows, labels = _source(cifar_dir, "test_batch")
    x, y = load_cifar10(cifar_dir, "test")
    assert x.shape == (N_TEST, 32, 32, 3) and x.dtype == np.uint8
    assert y.shape == (N_TEST,) and y.dtype == np.int64
    np.testing.assert_array_equal(x, _expected_hwc(rows))
    np.testing.assert_array_equal(y, labels)
    # Spot checks of the CHW -> HWC mapping: red/green/blue planes of pixel (y=1, x=2).
    for c in range(3):
        assert x[2, 1, 2, c] == rows[2, c * 1024 + 1 * 32 + 2]
    flat, y2 = load_cifar10_flat(cifar_dir, "test")
    assert flat.shape == (N_TEST, 3072) and flat.dtype == np.uint8
    assert flat[3, (5 * 32 + 31) * 3 + 2] == rows[3, 2 * 1024 + 5 * 32 + 31]
    np.testing.assert_array_equal(flat, _expected_hwc(rows).reshape(N_TEST, 3072))
    np.testing.assert_array_equal(y2, labels)
    assert not x.flags.writeable and not flat.flags.writeable and not y.flags.writeable


def test_train_concatenates_batches_in_order(cifar_dir):
    src = [_source(cifar_dir, f"data_batch_{i}") for i in range(1, 6)]
    x, y = load_cifar10(cifar_dir, "train")
    assert x.shape == (5 * N_TRAIN, 32, 32, 3)
    np.testing.assert_array_equal(x, _expected_hwc(np.concatenate([r for r, _ in src])))
    np.testing.assert_array_equal(y, np.concatenate([l for _, l in src]))


def test_fixture_is_python2_cpickle_format(cifar_dir):
    raw = (cifar_dir / "test_batch").read_bytes()
    pickletools.dis(raw, out=io.StringIO())  # a well-formed opcode stream
    assert raw.startswith(b"\x80\x02}")
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in raw and b"U\x04data" in raw
    assert b"_codecs" not in raw and b"numpy._core" not in raw
    d = pickle.loads(raw, encoding="bytes")
    assert set(d) == {b"batch_label", b"labels", b"data", b"filenames"}
    meta = pickle.loads((cifar_dir / "batches.meta").read_bytes(), encoding="bytes")
    assert meta[b"num_vis"] == 3072 and len(meta[b"label_names"]) == 10
    assert cifar10_label_names(cifar_dir)[:3] == ["airplane", "automobile", "bird"]


def test_python2_cpickle_bytes_with_memo_load(tmp_path):
    """A batch spelt as Python 2's cPickle.dump(d, f, 2) writes it (BINPUT memo opcodes)."""
    rows = np.random.default_rng(3).integers(0, 256, size=(2, 3072), dtype=np.uint8)
    raw = (b"\x80\x02}q\x01(U\x04dataq\x02cnumpy.core.multiarray\n_reconstruct\nq\x03"
           b"cnumpy\nndarray\nq\x04K\x00\x85U\x01b\x87Rq\x05(K\x01K\x02M\x00\x0c\x86"
           b"cnumpy\ndtype\nq\x06U\x02u1K\x00K\x01\x87Rq\x07(K\x03U\x01|NNN"
           b"J\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89T\x00\x18\x00\x00" + rows.tobytes()
           + b"tbU\x06labelsq\x08]q\t(K\x06K\teU\x0bbatch_labelq\nU\x14testing batch 1 of 1"
           b"q\x0bU\tfilenamesq\x0c]q\r(U\x05a.pngq\x0eU\x05b.pngq\x0feu.")
    (tmp_path / "test_batch").write_bytes(raw)
    x, y = load_cifar10(tmp_path)
    np.testing.assert_array_equal(x, _expected_hwc(rows))
    assert y.tolist() == [6, 9]


def test_python3_protocol2_pickle_loads(tmp_path):
    """Python 3's protocol 2 writes bytes as _codecs.encode(..., 'latin1') and numpy._core."""
    rows = np.arange(2 * 3072, dtype=np.int64).reshape(2, 3072).astype(np.uint8)
    _write_batch(tmp_path / "test_batch", rows, [3, 9])
    assert b"_codecs\nencode" in (tmp_path / "test_batch").read_bytes()
    x, y = load_cifar10(tmp_path)
    np.testing.assert_array_equal(x, _expected_hwc(rows))
    assert y.tolist() == [3, 9]


def test_relative_path_with_spaces_and_parent_form(tmp_path, monkeypatch):
    parent = tmp_path / "my cifar data"
    write_cifar_fixture(parent / "cifar-10-batches-py", N_TRAIN, N_TEST, seed=1)
    monkeypatch.chdir(tmp_path)
    want, _ = _source(parent / "cifar-10-batches-py", "test_batch")
    for arg in ("my cifar data", "my cifar data/cifar-10-batches-py", parent,
                "./my cifar data/cifar-10-batches-py/"):
        x, _ = load_cifar10(arg, "test")
        np.testing.assert_array_equal(x, _expected_hwc(want))
    assert find_cifar10_dir("my cifar data") == (parent / "cifar-10-batches-py").resolve()


def test_reload_after_the_file_changes(tmp_path):
    _write_batch(tmp_path / "test_batch", np.zeros((2, 3072), np.uint8), [1, 2])
    assert load_cifar10(tmp_path)[1].tolist() == [1, 2]
    _write_batch(tmp_path / "test_batch", np.zeros((3, 3072), np.uint8), [4, 5, 6])
    assert load_cifar10(tmp_path)[1].tolist() == [4, 5, 6]


def test_plain_pickle_load_is_never_used(cifar_dir, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("plain pickle.load/loads used")
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    cifar._load_split.cache_clear()
    assert load_cifar10(cifar_dir, "train")[0].shape[0] == 5 * N_TRAIN
    assert len(cifar10_label_names(cifar_dir)) == 10


def test_missing_directory_says_how_to_get_cifar(tmp_path):
    with pytest.raises(UserError) as excinfo:
        load_cifar10(tmp_path / "nope")
    msg = _one_line_error(excinfo)
    for part in ("does not exist", "cannot be downloaded", "CIFAR-10 python version",
                 "cifar-10-python.tar.gz", "Krizhevsky", "University of Toronto"):
        assert part in msg


def test_path_is_a_file(tmp_path):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8b")
    with pytest.raises(UserError, match="extract it first"):
        load_cifar10(tmp_path / "cifar-10-python.tar.gz")


@pytest.mark.parametrize("split,name", [("test", "test_batch"), ("train", "data_batch_3")])
def test_missing_batch_file_is_named(cifar_dir, split, name):
    (cifar_dir / name).unlink()
    with pytest.raises(UserError, match=f"batch file {name} not found") as excinfo:
        load_cifar10(cifar_dir, split)
    assert "cifar-10-python.tar.gz" in _one_line_error(excinfo)


def test_unknown_split(cifar_dir):
    with pytest.raises(UserError, match="split"):
        load_cifar10(cifar_dir, "validation")


def test_truncated_file(cifar_dir):
    raw = (cifar_dir / "test_batch").read_bytes()
    for cut in (len(raw) // 2, len(raw) - 1, 10):
        (cifar_dir / "test_batch").write_bytes(raw[:cut])
        with pytest.raises(UserError, match="is truncated") as excinfo:
            load_cifar10(cifar_dir, "test")
        _one_line_error(excinfo)


def test_random_bytes(cifar_dir):
    (cifar_dir / "test_batch").write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(UserError, match="not a CIFAR-10 python pickle") as excinfo:
        load_cifar10(cifar_dir, "test")
    _one_line_error(excinfo)


@pytest.mark.parametrize("obj", [[1, 2, 3], {b"x": 1}, {b"data": [1, 2]}, "a string"])
def test_pickle_of_another_object(cifar_dir, obj):
    with open(cifar_dir / "test_batch", "wb") as f:
        pickle.dump(obj, f, protocol=2)
    with pytest.raises(UserError, match="not a CIFAR-10 python pickle|b'data' is a list"):
        load_cifar10(cifar_dir, "test")


def test_pickle_of_other_globals_is_refused(cifar_dir):
    import collections
    with open(cifar_dir / "test_batch", "wb") as f:
        pickle.dump(collections.OrderedDict(data=1), f, protocol=2)
    with pytest.raises(UserError, match="refusing to load global collections.OrderedDict"):
        load_cifar10(cifar_dir, "test")


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


@pytest.mark.parametrize("payload", ["os.system", "builtins.eval", "codecs", "bytes"])
def test_malicious_pickle_is_not_executed(cifar_dir, payload):
    marker = cifar_dir.parent / "pwned"
    path = cifar_dir / "test_batch"
    if payload == "os.system":
        with open(path, "wb") as f:
            pickle.dump({b"data": _Exploit(marker), b"labels": [0]}, f, protocol=2)
        expected = r"refusing to load global (os|posix)\.system"
    elif payload == "builtins.eval":
        code = f"open({str(marker)!r}, 'w').close()"
        path.write_bytes(b"\x80\x02cbuiltins\neval\n" + pickle.dumps(code, protocol=2)[2:-1]
                         + b"\x85R.")
        expected = "refusing to load global builtins.eval"
    elif payload == "codecs":  # an allowed global called with arguments no array pickle uses
        path.write_bytes(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x05\x00\x00\x00rot13"
                         b"\x86R.")
        expected = "refusing _codecs.encode"
    else:  # bytes(2**30): a 1 GiB allocation request
        path.write_bytes(b"\x80\x02c__builtin__\nbytes\nJ\x00\x00\x00\x40\x85R.")
        expected = "refusing bytes"
    with pytest.raises(UserError, match=expected) as excinfo:
        load_cifar10(cifar_dir, "test")
    assert "not a CIFAR-10 python pickle" in _one_line_error(excinfo)
    assert not marker.exists()


def test_huge_reconstruct_shape_is_refused(cifar_dir):
    raw = (cifar_dir / "test_batch").read_bytes()
    # ndarray.__reduce__'s placeholder shape (0,) -> (2**31 - 1,): a crafted allocation request.
    bad = raw.replace(b"cnumpy\nndarray\nK\x00\x85", b"cnumpy\nndarray\nJ\xff\xff\xff\x7f\x85", 1)
    assert bad != raw
    (cifar_dir / "test_batch").write_bytes(bad)
    with pytest.raises(UserError, match="_reconstruct arguments"):
        load_cifar10(cifar_dir, "test")


@pytest.mark.parametrize("data,match", [
    (np.zeros((2, 3071), np.uint8), r"uint8 of shape \(2, 3071\), expected uint8 \(N, 3072\)"),
    (np.zeros((2, 3, 1024), np.uint8), r"shape \(2, 3, 1024\)"),
    (np.zeros((2, 3072), np.float32), r"float32 of shape \(2, 3072\)"),
    (np.zeros((0, 3072), np.uint8), r"N > 0"),
    (np.zeros((3, 3072), np.uint8), r"2 labels for 3 images"),
])
def test_wrong_shapes_and_dtypes(tmp_path, data, match):
    _write_batch(tmp_path / "test_batch", data, [0, 1])
    with pytest.raises(UserError, match=match) as excinfo:
        load_cifar10(tmp_path)
    _one_line_error(excinfo)


@pytest.mark.parametrize("labels", [[0, 10], [-1, 3], [0.0, 1.0]])
def test_bad_labels(tmp_path, labels):
    _write_batch(tmp_path / "test_batch", np.zeros((2, 3072), np.uint8), labels)
    with pytest.raises(UserError, match=r"labels outside 0\.\.9|not a list of ints"):
        load_cifar10(tmp_path)


def test_oversized_file_is_refused_before_reading(tmp_path, monkeypatch):
    with open(tmp_path / "test_batch", "wb") as f:  # sparse: no 200 MB actually written
        f.truncate(cifar.MAX_FILE_BYTES + 1)

    def no_read(*args, **kwargs):
        raise AssertionError("an oversized file was opened")
    monkeypatch.setattr("builtins.open", no_read)
    with pytest.raises(UserError, match="too large .* not read"):
        load_cifar10(tmp_path)


def test_fixture_arguments_are_checked(tmp_path):
    with pytest.raises(UserError, match="n_test must be a positive integer"):
        write_cifar_fixture(tmp_path / "f", 1, 0)


def test_command_line(cifar_dir, capsys):
    assert cifar.main([str(cifar_dir.parent)]) == 0
    out = capsys.readouterr().out
    assert f"train: {5 * N_TRAIN} images" in out and f"test: {N_TEST} images" in out
    assert "airplane" in out
