"""CIFAR-10 loading without torch, from the user's own copy of the dataset.

Nothing is downloaded: the user fetches the "CIFAR-10 python version"
(``cifar-10-python.tar.gz``, https://www.cs.toronto.edu/~kriz/cifar.html, Alex
Krizhevsky, University of Toronto), extracts it and passes the resulting
``cifar-10-batches-py`` directory, or the directory containing it.

That directory holds ``data_batch_1`` .. ``data_batch_5`` (the 50,000 training
images, in that order), ``test_batch`` (the 10,000 test images) and
``batches.meta`` (class names).  Each is a protocol-2 pickle written by Python 2
(``cPickle``): a dict with byte-string keys ``b"data"`` (``uint8`` array of shape
(N, 3072), each row 1024 red, 1024 green, 1024 blue values, each plane 32x32
row-major, i.e. CHW), ``b"labels"`` (N ints in 0..9), ``b"batch_label"`` and
``b"filenames"``.  Re-pickled copies written by Python 3 (``str`` keys,
``_codecs.encode`` byte strings) load too.

Loaders return images in **HWC order** (channels fastest): ``(N, 32, 32, 3)``,
or flattened ``(N, 3072)`` where pixel ``(y, x)`` channel ``c`` is at
``(y * 32 + x) * 3 + c``.  That is the order in which our hardware streams
multi-channel inputs and in which the compiled-network format stores them; the
files' CHW rows are transposed on load.

The pickles are read with a restricted unpickler that can rebuild plain numpy
arrays and nothing else: any other global (``os.system``, ``builtins.eval``,
...: the usual pickle code-execution vector) is refused before it is called.
Files larger than 200 MB are refused before they are read.

Command line: ``python -m sw.cifar DIR`` checks a copy and prints its splits;
``python -m sw.cifar --write-fixture DIR`` writes a small synthetic copy.
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np

from .errors import UserError, cli_main

__all__ = ["SPLITS", "BATCH_FILES", "DIRNAME", "MAX_FILE_BYTES", "find_cifar10_dir",
           "load_cifar10", "load_cifar10_flat", "cifar10_label_names", "write_cifar_fixture"]

#: Split name -> number of images in the official dataset (smaller copies load too).
SPLITS = {"train": 50_000, "test": 10_000}

#: Split name -> batch files, in the order their images are concatenated.
BATCH_FILES = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}

#: Name of the directory inside ``cifar-10-python.tar.gz``.
DIRNAME = "cifar-10-batches-py"

#: A batch file larger than this is refused before reading (an official one is ~31 MB).
MAX_FILE_BYTES = 200 * 1024 * 1024

_META_FILE = "batches.meta"
_ROW = 3 * 32 * 32

_DOWNLOAD_HINT = ("CIFAR-10 cannot be downloaded here: download the \"CIFAR-10 python version\" "
                  "(cifar-10-python.tar.gz) from the dataset's home page "
                  "https://www.cs.toronto.edu/~kriz/cifar.html (Alex Krizhevsky, University of "
                  "Toronto), extract it with `tar xzf cifar-10-python.tar.gz` and pass the "
                  f"extracted {DIRNAME} directory (or the directory containing it)")

_REEXTRACT_HINT = ("re-extract it from cifar-10-python.tar.gz (the \"CIFAR-10 python version\" "
                   "from https://www.cs.toronto.edu/~kriz/cifar.html)")


# ---------------------------------------------------------------------------------------------
# Safe unpickling


def _safe_reconstruct(subtype, shape, dtype_code):
    """``numpy._core.multiarray._reconstruct`` restricted to what ``ndarray.__reduce__`` emits.

    A pickled array always starts as an empty ``ndarray`` of shape (0,) and type code ``b"b"``;
    its real shape and data come with the following BUILD.  Refusing anything else keeps a
    crafted pickle from asking for a huge allocation here.
    """
    from numpy._core.multiarray import _reconstruct  # not the deprecated numpy.core alias
    if subtype is not np.ndarray or tuple(shape) != (0,) or dtype_code not in (b"b", "b"):
        raise pickle.UnpicklingError("refusing numpy _reconstruct arguments that no plain "
                                     "array pickle uses")
    return _reconstruct(subtype, shape, dtype_code)


def _safe_dtype(*args):
    """``numpy.dtype`` without object dtypes (an array of objects is never CIFAR data)."""
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError("refusing a numpy object dtype")
    return dtype


def _latin1_encode(text, encoding="utf-8"):
    """``_codecs.encode`` as Python 3's protocol-2 pickles use it for ``bytes``: latin-1 only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("refusing _codecs.encode other than str -> latin1 bytes")
    return text.encode("latin-1")


def _empty_bytes(*args):
    """``bytes()`` as Python 3's protocol-2 pickles use it for ``b""`` (an empty array's data)."""
    if args:
        raise pickle.UnpicklingError("refusing bytes() with arguments")
    return b""


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild plain numpy arrays and nothing else.

    Python 2 pickles of arrays name ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``
    and ``numpy.dtype``; Python 3 ones with numpy 2 name ``numpy._core.multiarray`` and, at
    protocol 2, ``_codecs.encode`` for every non-empty ``bytes`` object and ``bytes()``
    (spelt ``__builtin__.bytes``) for ``b""``.  Each is replaced by a wrapper that accepts only
    the arguments a plain array pickle uses.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _safe_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _safe_reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _safe_dtype,
        ("_codecs", "encode"): _latin1_encode,
        ("__builtin__", "bytes"): _empty_bytes,
        ("builtins", "bytes"): _empty_bytes,
    }

    def find_class(self, module: str, name: str):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


_UNPICKLE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
                    LookupError, struct.error, MemoryError, OverflowError, RecursionError)


def _read_pickle(path: Path, what: str) -> object:
    """Size-check ``path`` and unpickle it with :class:`_NumpyOnlyUnpickler`."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise UserError(f"CIFAR-10 {what} {path} is too large ({size / 2**20:.0f} MB, the "
                            f"limit is {MAX_FILE_BYTES // 2**20} MB; an official batch is ~31 MB) "
                            f"and was not read; {_REEXTRACT_HINT}")
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise UserError(f"CIFAR-10 {what} {path} not found; {_DOWNLOAD_HINT}") from None
    except OSError as exc:
        raise UserError(f"cannot read CIFAR-10 {what} {path}: {exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise UserError(f"CIFAR-10 {what} {path} grew beyond {MAX_FILE_BYTES // 2**20} MB "
                        "while being read; it is not a CIFAR-10 batch")
    try:
        return _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except _UNPICKLE_ERRORS as exc:
        if isinstance(exc, EOFError) or "truncated" in str(exc):
            raise UserError(f"CIFAR-10 {what} {path} is truncated ({len(raw)} bytes, the pickle "
                            f"ends early); {_REEXTRACT_HINT}") from None
        raise UserError(f"CIFAR-10 {what} {path} is not a CIFAR-10 python pickle ({exc}); "
                        f"{_REEXTRACT_HINT}") from None


def _str_keys(obj: object, path: Path, what: str) -> dict[str, object]:
    """The pickled dict with its (bytes or str) keys as str."""
    if not isinstance(obj, dict):
        raise UserError(f"CIFAR-10 {what} {path} is not a CIFAR-10 python pickle (it holds a "
                        f"{type(obj).__name__}, not a dict); {_REEXTRACT_HINT}")
    return {(k.decode("latin-1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _check_batch(obj: object, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Validate one unpickled batch; return its CHW rows (N, 3072) and int64 labels (N,)."""
    d = _str_keys(obj, path, "batch file")
    missing = [k for k in ("data", "labels") if k not in d]
    if missing:
        keys = " or ".join(repr(k.encode()) for k in missing)
        raise UserError(f"CIFAR-10 batch file {path} is not a CIFAR-10 python pickle (no {keys} "
                        f"entry); {_REEXTRACT_HINT}")
    data, labels = d["data"], d["labels"]
    if not isinstance(data, np.ndarray):
        raise UserError(f"CIFAR-10 batch file {path}: b'data' is a {type(data).__name__}, "
                        f"expected a uint8 numpy array (N, 3072); {_REEXTRACT_HINT}")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _ROW or data.shape[0] == 0:
        raise UserError(f"CIFAR-10 batch file {path}: b'data' is {data.dtype} of shape "
                        f"{data.shape}, expected uint8 (N, 3072) with N > 0; {_REEXTRACT_HINT}")
    n = data.shape[0]
    if isinstance(labels, np.ndarray):
        ok = labels.ndim == 1 and labels.dtype.kind in "iu"
    else:
        ok = (isinstance(labels, (list, tuple))
              and all(isinstance(v, int) and not isinstance(v, bool) for v in labels))
    if not ok:
        raise UserError(f"CIFAR-10 batch file {path}: b'labels' is not a list of ints; "
                        f"{_REEXTRACT_HINT}")
    if len(labels) != n:
        raise UserError(f"CIFAR-10 batch file {path}: {len(labels)} labels for {n} images; "
                        f"{_REEXTRACT_HINT}")
    lo, hi = min(labels), max(labels)
    if lo < 0 or hi > 9:
        raise UserError(f"CIFAR-10 batch file {path}: labels outside 0..9 (min {lo}, max {hi}); "
                        f"{_REEXTRACT_HINT}")
    return data, np.asarray(labels, dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# Public API


def find_cifar10_dir(directory: str | os.PathLike) -> Path:
    """Resolve the user's path to the ``cifar-10-batches-py`` directory.

    Parameters
    ----------
    directory
        The ``cifar-10-batches-py`` directory itself, or its parent. Relative paths are taken
        from the current directory.

    Returns
    -------
    Path
        The absolute path of the directory holding the batch files.

    Raises
    ------
    UserError
        If the path does not exist or is a file.
    """
    path = Path(directory).expanduser()
    if not path.exists():
        raise UserError(f"CIFAR-10 directory {path} does not exist; {_DOWNLOAD_HINT}")
    if not path.is_dir():
        raise UserError(f"CIFAR-10 path {path} is a file, not a directory; if it is "
                        "cifar-10-python.tar.gz extract it first with `tar xzf "
                        f"cifar-10-python.tar.gz` and pass the extracted {DIRNAME} directory")
    names = (*BATCH_FILES["train"], *BATCH_FILES["test"], _META_FILE)
    if not any((path / name).exists() for name in names) and (path / DIRNAME).is_dir():
        path = path / DIRNAME
    return path.resolve()


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=2)
def _load_split(directory: Path, split: str, _stamps: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Load, check and concatenate one split's batches; images HWC (N, 32, 32, 3)."""
    rows, labels = [], []
    for name in BATCH_FILES[split]:
        path = directory / name
        if not path.is_file():
            raise UserError(f"CIFAR-10 batch file {name} not found in {directory}; "
                            f"{_DOWNLOAD_HINT}")
        r, l = _check_batch(_read_pickle(path, "batch file"), path)
        rows.append(r)
        labels.append(l)
    chw = rows[0] if len(rows) == 1 else np.concatenate(rows)
    hwc = np.ascontiguousarray(chw.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return hwc, np.concatenate(labels)


def load_cifar10(directory: str | os.PathLike,
                 split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Load a CIFAR-10 split from the user's ``cifar-10-batches-py`` directory.

    Parameters
    ----------
    directory
        The extracted ``cifar-10-batches-py`` directory, or the directory containing it.
    split
        ``"test"`` (``test_batch``, 10,000 images) or ``"train"`` (``data_batch_1`` ..
        ``data_batch_5`` concatenated in order, 50,000 images).

    Returns
    -------
    images : np.ndarray
        ``uint8`` array of shape (N, 32, 32, 3) in **HWC order** (row, column, RGB channel),
        the order our hardware streams multi-channel inputs and the compiled-network format
        uses; the files' CHW rows are transposed.
    labels : np.ndarray
        ``int64`` array of shape (N,), classes 0..9 (names: :func:`cifar10_label_names`).

    The arrays are cached; callers receive read-only views, copy before writing.

    Raises
    ------
    UserError
        Unknown split, missing directory or batch file, a file over 200 MB, a truncated
        file, a file that is not a CIFAR-10 pickle (including one that tries to import
        anything but numpy arrays), wrong shapes or dtypes, or labels outside 0..9.
    """
    if split not in SPLITS:
        raise UserError(f"CIFAR-10 split must be one of {sorted(SPLITS)}, not {split!r}")
    root = find_cifar10_dir(directory)
    stamps = tuple(_stamp(root / name) for name in BATCH_FILES[split])
    images, labels = _load_split(root, split, stamps)
    images, labels = images.view(), labels.view()
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def load_cifar10_flat(directory: str | os.PathLike,
                      split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`load_cifar10`, with each image flattened in HWC order.

    Returns
    -------
    images : np.ndarray
        ``uint8`` array of shape (N, 3072): pixel ``(y, x)`` channel ``c`` (0 red, 1 green,
        2 blue) at index ``(y * 32 + x) * 3 + c`` (channels fastest, the order our hardware
        streams multi-channel inputs and the compiled-network format uses).
    labels : np.ndarray
        ``int64`` array of shape (N,), classes 0..9.
    """
    images, labels = load_cifar10(directory, split)
    return images.reshape(images.shape[0], _ROW), labels


def cifar10_label_names(directory: str | os.PathLike) -> list[str]:
    """The 10 class names from ``batches.meta`` (``b"label_names"``), in label order.

    Raises
    ------
    UserError
        If ``batches.meta`` is missing, too large, truncated or not a CIFAR-10 meta pickle.
    """
    path = find_cifar10_dir(directory) / _META_FILE
    d = _str_keys(_read_pickle(path, "meta file"), path, "meta file")
    names = d.get("label_names")
    if not (isinstance(names, list) and len(names) == 10
            and all(isinstance(n, (bytes, str)) for n in names)):
        raise UserError(f"CIFAR-10 meta file {path} has no list of 10 b'label_names'; "
                        f"{_REEXTRACT_HINT}")
    return [n.decode("latin-1") if isinstance(n, bytes) else n for n in names]


# ---------------------------------------------------------------------------------------------
# Fixture writer: the exact byte format of Python 2's cPickle.dump(obj, f, 2)


class _Py2Pickler:
    """Protocol-2 pickles as Python 2's ``cPickle`` writes them for CIFAR-10.

    Byte strings are STRING opcodes (``U``/``T``, which Python 3 reads back as ``bytes``
    under ``encoding="bytes"``), and arrays name ``numpy.core.multiarray._reconstruct`` with
    Python 2 numpy's ``dtype('u1', 0, 1)`` state, unlike Python 3's ``pickle`` (which writes
    ``_codecs.encode`` calls and ``numpy._core``).  Only the types CIFAR-10 uses are handled.
    """

    _BATCH = 1000  # cPickle's APPENDS/SETITEMS batch size

    def __init__(self) -> None:
        self.out = io.BytesIO()

    def dumps(self, obj: object) -> bytes:
        self.out.write(b"\x80\x02")
        self._save(obj)
        self.out.write(b".")
        return self.out.getvalue()

    def _save(self, obj: object) -> None:  # noqa: C901 - one branch per opcode family
        w = self.out.write
        if obj is None:
            w(b"N")
        elif isinstance(obj, bool):
            w(b"\x88" if obj else b"\x89")
        elif isinstance(obj, int):
            if 0 <= obj < 0x100:
                w(b"K" + bytes([obj]))
            elif 0 <= obj < 0x10000:
                w(b"M" + struct.pack("<H", obj))
            else:
                w(b"J" + struct.pack("<i", obj))
        elif isinstance(obj, (bytes, str)):
            raw = obj.encode("latin-1") if isinstance(obj, str) else obj
            w((b"U" + bytes([len(raw)]) if len(raw) < 0x100 else b"T" + struct.pack("<I", len(raw)))
              + raw)
        elif isinstance(obj, tuple):
            if not obj:
                w(b")")
                return
            if len(obj) > 3:
                w(b"(")
            for item in obj:
                self._save(item)
            w(b"t" if len(obj) > 3 else b"\x85\x86\x87"[len(obj) - 1:len(obj)])
        elif isinstance(obj, list):
            w(b"]")
            for i in range(0, len(obj), self._BATCH):
                chunk = obj[i:i + self._BATCH]
                if len(chunk) > 1:
                    w(b"(")
                for item in chunk:
                    self._save(item)
                w(b"e" if len(chunk) > 1 else b"a")
        elif isinstance(obj, dict):
            w(b"}")
            items = list(obj.items())
            for i in range(0, len(items), self._BATCH):
                chunk = items[i:i + self._BATCH]
                if len(chunk) > 1:
                    w(b"(")
                for k, v in chunk:
                    self._save(k)
                    self._save(v)
                w(b"u" if len(chunk) > 1 else b"s")
        elif isinstance(obj, np.ndarray) and obj.dtype == np.uint8:
            w(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n")
            self._save((0,))
            self._save(b"b")
            w(b"\x87R(")                       # TUPLE3 REDUCE, then the BUILD state tuple
            self._save(1)                      # state version
            self._save(tuple(int(n) for n in obj.shape))
            w(b"cnumpy\ndtype\n")
            self._save((b"u1", 0, 1))
            w(b"R")
            self._save((3, b"|", None, None, None, -1, -1, 0))
            w(b"b")                            # BUILD dtype
            self._save(False)                  # not Fortran order
            self._save(np.ascontiguousarray(obj).tobytes())
            w(b"tb")                           # TUPLE, BUILD array
        else:
            raise TypeError(f"cannot write {type(obj).__name__} in a CIFAR-10 fixture")


_FIXTURE_NAMES = ["airplane", "automobile", "bird", "cat", "deer",
                  "dog", "frog", "horse", "ship", "truck"]


def write_cifar_fixture(directory: str | os.PathLike, n_train_per_batch: int = 20,
                        n_test: int = 20, seed: int = 0) -> Path:
    """Write a small synthetic CIFAR-10 copy in the official file format.

    ``directory`` (created if needed) receives ``data_batch_1`` .. ``data_batch_5`` with
    ``n_train_per_batch`` images each, ``test_batch`` with ``n_test`` images and
    ``batches.meta``, each byte-for-byte the kind of protocol-2 pickle Python 2's ``cPickle``
    wrote for the official files (byte-string keys ``b"batch_label"``, ``b"labels"``,
    ``b"data"``, ``b"filenames"``; ``b"label_names"``, ``b"num_cases_per_batch"``,
    ``b"num_vis"`` in the meta file).  Pixels (CHW rows, uint8) and labels are uniform
    random from ``numpy.random.default_rng(seed)``, batch by batch in file order.

    Returns
    -------
    Path
        ``directory``, ready for :func:`load_cifar10`.

    Raises
    ------
    UserError
        If a count is not a positive integer or the directory cannot be written.
    """
    for name, value in (("n_train_per_batch", n_train_per_batch), ("n_test", n_test)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UserError(f"write_cifar_fixture: {name} must be a positive integer, "
                            f"not {value!r}")
    out = Path(directory)
    rng = np.random.default_rng(seed)
    files = {}
    for i, name in enumerate(BATCH_FILES["train"] + BATCH_FILES["test"]):
        n = n_test if name == "test_batch" else n_train_per_batch
        label = (b"testing batch 1 of 1" if name == "test_batch"
                 else b"training batch %d of 5" % (i + 1))
        files[name] = {
            b"batch_label": label,
            b"labels": [int(v) for v in rng.integers(0, 10, size=n)],
            b"data": rng.integers(0, 256, size=(n, _ROW), dtype=np.uint8),
            b"filenames": [b"fixture_%s_%05d.png" % (name.encode(), j) for j in range(n)],
        }
    files[_META_FILE] = {
        b"num_cases_per_batch": n_train_per_batch,
        b"label_names": [n.encode() for n in _FIXTURE_NAMES],
        b"num_vis": _ROW,
    }
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, obj in files.items():
            (out / name).write_bytes(_Py2Pickler().dumps(obj))
    except OSError as exc:
        raise UserError(f"cannot write the CIFAR-10 fixture to {out}: {exc}") from None
    return out


# ---------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> int:
    """``python -m sw.cifar DIR``: check a CIFAR-10 copy and print a summary of its splits."""
    parser = argparse.ArgumentParser(prog="python -m sw.cifar",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", help=f"the extracted {DIRNAME} directory or its parent")
    parser.add_argument("--write-fixture", action="store_true",
                        help="write a small synthetic copy into DIRECTORY instead")
    parser.add_argument("--n-train-per-batch", type=int, default=20)
    parser.add_argument("--n-test", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.write_fixture:
        out = write_cifar_fixture(args.directory, args.n_train_per_batch, args.n_test, args.seed)
        print(f"wrote a CIFAR-10 fixture to {out}")
        return 0
    root = find_cifar10_dir(args.directory)
    print(f"{root}")
    for split in ("train", "test"):
        images, labels = load_cifar10(root, split)
        counts = np.bincount(labels, minlength=10).tolist()
        print(f"{split}: {images.shape[0]} images {images.shape[1:]} uint8 HWC, "
              f"labels per class {counts}")
    print("classes: " + ", ".join(cifar10_label_names(root)))
    return 0


if __name__ == "__main__":
    cli_main(main)
