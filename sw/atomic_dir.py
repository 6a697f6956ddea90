"""Write an output directory atomically: all of it, or nothing.

Every command that writes a directory (export, generate, build) builds it in a temporary
sibling and renames it into place only when everything in it is written, so on any error the
destination is either absent or still the previous complete output.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import UserError

__all__ = ["check_replaceable", "atomic_directory", "atomic_write_text"]


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
    left as it was, and the exception propagates.
    """
    outdir = Path(outdir)
    check_replaceable(outdir, marker, what)
    try:
        outdir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {outdir.parent}: {exc}") from None
    tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.tmp-", dir=outdir.parent))
    backup = None
    try:
        yield tmp
        # mkdtemp makes the directory private (0700); give it the usual permissions.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        if outdir.exists():
            backup = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.old-", dir=outdir.parent))
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
    import os
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
