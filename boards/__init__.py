"""Board definitions: one small declarative module per board.

Each module ``boards/<name>.py`` defines ``BOARD`` (:class:`boards.base.ZynqBoard` or
:class:`boards.base.Ecp5Board`); :func:`get_board` finds it by name, so adding a board is
adding a file.  ``ultra96`` is an alias of ``ultra96v2``.
"""

from __future__ import annotations

import importlib
import pkgutil

from sw.errors import UserError

from .base import Board, Ecp5Board, Resources, ZynqBoard

__all__ = ["ALIASES", "DEFAULT_TARGET", "Board", "Ecp5Board", "Resources", "ZynqBoard",
           "board_names", "get_board", "resolve_clock"]

#: Alternative names accepted by :func:`get_board`.
ALIASES = {"ultra96": "ultra96v2"}

#: The board whose default clock FPS figures use when no ``--board`` is given (BNN-PYNQ's and
#: FINN's reference platform, so our figures compare with theirs).
DEFAULT_TARGET = "ultra96"

_NOT_BOARDS = {"base"}


def board_names() -> list[str]:
    """Every board module name (without aliases), sorted."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__)
                  if not m.name.startswith("_") and m.name not in _NOT_BOARDS)


def get_board(name: str) -> Board:
    """The board called ``name`` (or an alias of it).

    Raises :class:`sw.errors.UserError` naming the known boards if there is none.
    """
    key = ALIASES.get(name, name)
    if key not in board_names():
        known = ", ".join(board_names() + sorted(ALIASES))
        raise UserError(f"unknown board {name!r}; choose one of: {known}")
    module = importlib.import_module(f"{__name__}.{key}")
    board = getattr(module, "BOARD", None)
    if not isinstance(board, (ZynqBoard, Ecp5Board)):
        raise TypeError(f"boards/{key}.py must define BOARD as a ZynqBoard or Ecp5Board")
    return board


def resolve_clock(board: str | None, clock, *, option: str = "--clock") -> tuple[float, str]:
    """The clock (MHz) for FPS figures and builds, and where it comes from.

    ``clock`` (a ``--clock`` value) wins if given; otherwise the default clock of ``board``
    (default :data:`DEFAULT_TARGET`) with its :attr:`~boards.base.ZynqBoard.clock_basis`.
    Raises :class:`sw.errors.UserError` for a clock that is not a finite positive real number
    (NaN, infinities, zero, negatives, strings and booleans included); ``option`` names the
    setting in that message (``"clock_mhz"`` for the runtime API).
    """
    import math
    import numbers

    target = get_board(board or DEFAULT_TARGET)
    if clock is None:
        return target.default_clock_mhz, (f"{target.name} default clock, "
                                          f"{target.clock_basis}")
    if isinstance(clock, bool) or not isinstance(clock, numbers.Real):
        raise UserError(f"{option} must be a positive number of MHz, not {clock!r} (a "
                        f"{type(clock).__name__}); pass a number such as 100.0")
    if not (math.isfinite(clock) and clock > 0):
        raise UserError(f"{option} must be a positive number of MHz, not {clock!r}; "
                        "pass a finite clock above 0, e.g. 100")
    return float(clock), "given with --clock"
