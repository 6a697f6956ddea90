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

__all__ = ["ALIASES", "Board", "Ecp5Board", "Resources", "ZynqBoard", "board_names",
           "get_board"]

#: Alternative names accepted by :func:`get_board`.
ALIASES = {"ultra96": "ultra96v2"}

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
