"""Progress output that suits its reader: a bar on a terminal, a heartbeat in a log.

On a terminal (stderr is a TTY) :func:`progress_bar` is a ``tqdm`` bar.  Anywhere else (CI
logs, pipes, files) carriage-return bars are noise, and silence looks like a hang, so it
prints one plain line at most every :func:`heartbeat_seconds` (``FRACBNN_HEARTBEAT``
seconds, default 30)::

    simulating: 420/1000 img (42 %), 1 min 05 s elapsed

and a last line when it closes if the phase lasted that long.  :func:`heartbeat` does the
same for a phase with no iterations to count (a Verilator build, a Yosys run): a background
thread prints ``<what>: still running, <elapsed> elapsed`` until the block ends.

The module needs only the standard library; ``tqdm`` is imported on a terminal only.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager

__all__ = ["heartbeat_seconds", "is_terminal", "progress_bar", "progress_write", "heartbeat",
           "format_elapsed"]

_DEFAULT_HEARTBEAT_S = 30.0


def heartbeat_seconds() -> float:
    """Seconds between heartbeat lines: ``FRACBNN_HEARTBEAT`` (> 0), default 30."""
    try:
        value = float(os.environ.get("FRACBNN_HEARTBEAT", _DEFAULT_HEARTBEAT_S))
    except ValueError:
        return _DEFAULT_HEARTBEAT_S
    return value if value > 0 else _DEFAULT_HEARTBEAT_S


def is_terminal(stream=None) -> bool:
    """Whether ``stream`` (default stderr) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def format_elapsed(seconds: float) -> str:
    """``'42 s'``, ``'3 min 05 s'``, ``'1 h 02 min'``."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def progress_write(message: str) -> None:
    """Print a line to stderr without breaking a bar that is on screen."""
    if is_terminal():
        try:
            from tqdm import tqdm  # noqa: PLC0415 - terminal only
            tqdm.write(message, file=sys.stderr)
            return
        except ImportError:
            pass
    print(message, file=sys.stderr, flush=True)


class _Heartbeat:
    """The non-terminal stand-in for a tqdm bar: the subset of its interface the flow uses."""

    def __init__(self, iterable, total, desc, unit, disable, interval):
        self._iterable = iterable
        self.total = total if total is not None else _len_or_none(iterable)
        self.desc, self.unit, self.disable = desc, unit, disable
        self.n = 0
        self._postfix = ""
        self._interval = interval
        self._start = self._last = time.monotonic()
        self._printed = False

    def _line(self, elapsed: float) -> str:
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        share = f" ({100 * self.n / self.total:.0f} %)" if self.total else ""
        post = f" [{self._postfix}]" if self._postfix else ""
        return f"{self.desc}: {count} {self.unit}{share}{post}, {format_elapsed(elapsed)} elapsed"

    def _maybe_print(self, force: bool = False) -> None:
        if self.disable:
            return
        now = time.monotonic()
        if force or now - self._last >= self._interval:
            print(self._line(now - self._start), file=sys.stderr, flush=True)
            self._last = now
            self._printed = True

    def update(self, count: int = 1) -> None:
        self.n += count
        self._maybe_print()

    def set_postfix(self, ordered_dict=None, refresh=True, **kwargs) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self._postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        self._postfix = text

    def close(self) -> None:
        if not self.disable and (self._printed
                                 or time.monotonic() - self._start >= self._interval):
            self._postfix = ""
            self._maybe_print(force=True)
        self.disable = True

    def __iter__(self):
        for item in self._iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _len_or_none(iterable):
    try:
        return len(iterable)
    except TypeError:
        return None


def progress_bar(iterable=None, *, total: int | None = None, desc: str = "", unit: str = "it",
                 disable: bool = False, leave: bool = False):
    """A progress display over ``iterable`` (or updated by hand with ``update(n)``).

    A ``tqdm`` bar on stderr when stderr is a terminal (``leave`` as tqdm's), else a
    heartbeat (module docstring).  Both support iteration, ``update``, ``set_postfix``,
    ``set_postfix_str``, ``n``, ``close`` and ``with``.
    """
    if is_terminal():
        try:
            from tqdm import tqdm  # noqa: PLC0415 - terminal only
            return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, leave=leave,
                        file=sys.stderr, mininterval=1.0)
        except ImportError:
            pass
    return _Heartbeat(iterable, total, desc, unit, disable, heartbeat_seconds())


@contextmanager
def heartbeat(what: str, *, enabled: bool = True):
    """While the block runs, print ``<what>: still running, <elapsed> elapsed`` to stderr every
    :func:`heartbeat_seconds` (not on a terminal, where the caller's own display suffices, nor
    when ``enabled`` is false)."""
    if not enabled or is_terminal():
        yield
        return
    stop = threading.Event()
    start = time.monotonic()
    interval = heartbeat_seconds()

    def beat():
        while not stop.wait(interval):
            print(f"{what}: still running, {format_elapsed(time.monotonic() - start)} elapsed",
                  file=sys.stderr, flush=True)

    thread = threading.Thread(target=beat, name=f"heartbeat: {what}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
