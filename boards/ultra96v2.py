"""Avnet Ultra96-V2: Zynq UltraScale+ ZU3EG, industrial grade (``--board ultra96`` or ``ultra96v2``).

The same board as the V1 (:mod:`boards.ultra96v1`) but for the part's temperature grade and the
Vivado board files.
"""

from dataclasses import replace

from .base import board_store_install
from .ultra96v1 import BOARD as _V1

__all__ = ["BOARD"]

BOARD = replace(
    _V1,
    name="ultra96v2",
    title="Avnet Ultra96-V2",
    part="xczu3eg-sbva484-1-i",
    # FINN's name; Avnet's later 1.3 files are avnet-tria:ultra96v2:part0:1.3.
    vivado_board_part="avnet.com:ultra96v2:part0:1.2",
    vivado_board_alternatives=("*:ultra96v2:part0:*",),
    board_files_install=(
        "Avnet's Ultra96-V2 board files: in Vivado's Tcl console run "
        "`" + board_store_install("ultra96v2") + "`, or clone "
        "https://github.com/Avnet/bdf and pass the clone with --board-repo DIR"),
)
