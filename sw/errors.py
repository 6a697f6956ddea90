"""User-facing errors and the CLI wrapper that reports them in one line.

A :class:`UserError` means the *user* has to change something (a missing or
corrupt file, a bad option, a schema mismatch).  Command-line entry points wrap
their ``main`` with :func:`cli_main`, which prints ``error: <message>`` to
stderr and exits with status 2 instead of showing a traceback.  Any other
exception is a bug and propagates with its traceback.
"""

from __future__ import annotations

import errno
import sys
from typing import Callable, NoReturn

__all__ = ["UserError", "cli_main", "os_error_message"]


class UserError(Exception):
    """An error caused by user input; its message names the problem and the fix."""


def cli_main(fn: Callable[[], int | None]) -> NoReturn:
    """Run ``fn()`` as a program and exit with its status.

    Parameters
    ----------
    fn
        The entry point; it returns an exit status (``None`` means 0).

    Exits with the status returned by ``fn``; with 2 after printing a single
    ``error: <msg>`` line to stderr if ``fn`` raises :class:`UserError`; with
    130 on Ctrl-C.
    """
    try:
        status = fn()
    except UserError as exc:
        msg = " ".join(str(exc).split())  # always one line
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:
        msg = os_error_message(exc)
        if msg is None:
            raise
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(0 if status is None else int(status))


_ACTIONABLE = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


def os_error_message(exc: OSError) -> str | None:
    """One line for an :class:`OSError` the user can act on, naming the file and the fix;
    ``None`` for other errors (bugs keep their traceback)."""
    what = _ACTIONABLE.get(exc.errno)
    if what is None:
        return None
    where = f" writing {exc.filename}" if exc.filename else ""
    fix = ("free some space or choose an output on another disk"
           if exc.errno in (errno.ENOSPC, errno.EDQUOT)
           else "choose a writable location")
    return f"{what}{where}; {fix} (nothing was left half-written)"
