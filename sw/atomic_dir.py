"""Write an output directory atomically: all of it, or nothing.

Every command that writes a directory (export, generate, build) builds it in a temporary
sibling and renames it into place only when everything in it is written, so on any error the
destination is either absent or still the previous complete output.

Temporaries are named ``.NAME.tmp-HOST.PID-XXXXXXXX`` (and a replaced output's backup
``.NAME.old-HOST.PID-XXXXXXXX``): a process killed outright (SIGKILL, power loss) cannot remove
them, so the next write to the same destination from this host removes those of processes that
no longer exist (and puts back a backup whose replacement never arrived).

:func:`check_writable_dir` / :func:`check_writable_file` tell before any slow work whether an
output can be written at all; :func:`atomic_write_json` writes a report (never ``NaN``).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import UserError

__all__ = ["check_apart", "check_replaceable", "check_writable_dir", "check_writable_file", "atomic_directory",
           "atomic_write_text", "atomic_write_json", "json_safe", "remove_stale_temporaries"]


def _host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"


def _temp_prefix(name: str, kind: str) -> str:
    """``.NAME.tmp-HOST.PID-`` (``kind`` "tmp" or "old"): the owner is recognisable."""
    return f".{name}.{kind}-{_host_tag()}.{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True     # someone else's live process (or a number we cannot ask about)
    return True


def remove_stale_temporaries(dest) -> list[Path]:
    """Remove the temporaries beside ``dest`` left by dead processes of this host; return them.

    A stale ``.old-`` backup is the previous complete output whose replacement was killed
    between its two renames: it is put back as ``dest`` if ``dest`` is missing.
    """
    dest = Path(dest)
    pattern = re.compile(rf"^\.{re.escape(dest.name)}\.(tmp|old)-{re.escape(_host_tag())}"
                         rf"\.(\d+)-[A-Za-z0-9_]+$")
    removed = []
    try:
        entries = list(dest.parent.iterdir())
    except OSError:
        return removed
    for entry in sorted(entries):
        m = pattern.match(entry.name)
        if m is None or _pid_alive(int(m.group(2))):
            continue
        try:
            if m.group(1) == "old" and entry.is_dir() and not os.path.lexists(dest):
                os.rename(entry, dest)
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
        except OSError:
            pass        # someone else cleans it (or it is not ours to remove)
    return removed


def _nearest_existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def _probe_dir(directory: Path) -> str | None:
    """Why no file can be created in the existing ``directory`` (None if one can)."""
    if not directory.is_dir():
        return f"{directory} is not a directory"
    try:
        fd, probe = tempfile.mkstemp(prefix=".fracbnn-write-probe-", dir=directory)
    except OSError as exc:
        return f"{directory} is not writable ({exc.strerror or exc})"
    os.close(fd)
    os.unlink(probe)
    return None


def check_writable_dir(outdir, what: str = "output directory") -> Path:
    """Raise :class:`UserError` unless ``outdir`` can be created (or replaced); return it
    absolute.  Checks that it is not a file and that its nearest existing ancestor takes new
    entries (creating nothing that stays)."""
    outdir = Path(os.path.abspath(outdir))
    if outdir.exists() and not outdir.is_dir():
        raise UserError(f"{what} {outdir} exists and is not a directory; choose another path")
    where = outdir.parent if outdir.exists() else _nearest_existing(outdir.parent)
    if not where.is_dir():
        raise UserError(f"cannot create the {what} {outdir}: {where} is a file, not a "
                        "directory; choose a path under a directory")
    why = _probe_dir(where)
    if why is not None:
        raise UserError(f"cannot write the {what} {outdir}: {why}; choose a writable location")
    return outdir


def check_writable_file(path, what: str = "output file") -> Path:
    """Raise :class:`UserError` unless the file ``path`` can be written; return it absolute."""
    path = Path(os.path.abspath(path))
    if path.is_dir():
        raise UserError(f"{what} {path} is a directory; give a file name")
    where = _nearest_existing(path.parent)
    why = _probe_dir(where)
    if why is not None:
        raise UserError(f"cannot write the {what} {path}: {why}; choose a writable location")
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"cannot write the {what} {path}: it is read-only; choose another path")
    return path


def check_apart(outdir, inputs, what: str = "output directory") -> None:
    """Refuse an ``outdir`` that is, holds or lies inside one of the ``inputs`` (paths the
    command reads; ``None`` entries are skipped).  Replacing ``outdir`` would delete an input
    it holds, and re-writing an input directory (a re-export) would delete an ``outdir``
    inside it."""
    out = Path(os.path.realpath(os.path.abspath(outdir)))
    for given in inputs:
        if given is None:
            continue
        inp = Path(os.path.realpath(os.path.abspath(given)))
        if out == inp or inp.is_relative_to(out):
            raise UserError(f"the {what} {outdir} holds the input {given}, which replacing it "
                            "would delete; choose another output directory")
        if inp.is_dir() and out.is_relative_to(inp):
            raise UserError(f"the {what} {outdir} lies inside the input directory {given}, "
                            "which a re-export would delete with it; choose an output "
                            "directory outside it")


def check_replaceable(outdir: Path, marker: str, what: str) -> None:
    """Refuse an ``outdir`` that exists and is neither empty nor a previous ``what``.

    A previous output is recognised by its ``marker`` file (e.g. ``network.json``).
    """
    outdir = Path(outdir)
    if not outdir.exists():
        return
    if not outdir.is_dir():
        raise UserError(f"{outdir} exists and is not a directory; choose another output directory")
    if any(outdir.iterdir()) and not (outdir / marker).is_file():
        raise UserError(f"{outdir} exists and is not a {what}; remove it or choose another "
                        "output directory")


@contextmanager
def atomic_directory(outdir, *, marker: str, what: str):
    """Context manager yielding a temporary directory that becomes ``outdir`` on success.

    Parameters
    ----------
    outdir
        The destination. An existing one is replaced only if it is empty or holds ``marker``
        (:func:`check_replaceable`); it is swapped out only after the new one is complete.
    marker, what
        The file that identifies a previous output, and its name for error messages.

    On an exception inside the ``with`` block the temporary directory is removed, ``outdir`` is
    left as it was, and the exception propagates.  Temporaries of dead processes beside
    ``outdir`` are removed first (:func:`remove_stale_temporaries`).
    """
    outdir = Path(os.path.abspath(outdir))
    remove_stale_temporaries(outdir)
    check_replaceable(outdir, marker, what)
    try:
        outdir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {outdir.parent} for the {what} {outdir}: "
                        f"{exc.strerror or exc}; choose a writable location") from None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(outdir.name, "tmp"), dir=outdir.parent))
    except OSError as exc:
        raise UserError(f"cannot write the {what} {outdir}: {outdir.parent} is not writable "
                        f"({exc.strerror or exc}); choose a writable location") from None
    backup = None
    try:
        yield tmp
        # mkdtemp makes the directory private (0700); give it the usual permissions.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        if outdir.exists():
            backup = Path(tempfile.mkdtemp(prefix=_temp_prefix(outdir.name, "old"),
                                           dir=outdir.parent))
            os.rmdir(backup)
            os.rename(outdir, backup)
        os.rename(tmp, outdir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if backup is not None and backup.exists() and not outdir.exists():
            os.rename(backup, outdir)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` to ``path`` completely or not at all (temporary file beside it, then
    ``os.replace``), readable by all (0644); raises :class:`OSError` as the OS does."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path.name, "tmp"), dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def json_safe(obj):
    """``obj`` with every non-finite float (NaN, +-inf) replaced by ``None`` (JSON ``null``),
    tuples as lists and numpy scalars as Python numbers: what ``json.dumps(...,
    allow_nan=False)`` accepts."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", None) == 0:
        obj = obj.item()        # numpy scalar
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def atomic_write_json(path, obj, *, what: str = "report") -> Path:
    """Write ``obj`` as indented JSON (non-finite floats as ``null``, never a bare ``NaN``)
    atomically; an unwritable ``path`` is a :class:`UserError` naming it."""
    text = json.dumps(json_safe(obj), indent=1, allow_nan=False) + "\n"
    try:
        return atomic_write_text(path, text)
    except OSError as exc:
        raise UserError(f"cannot write the {what} {path}: {exc.strerror or exc}; choose a "
                        "writable location") from None
