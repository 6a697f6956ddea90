"""Avnet Ultra96-V2: Zynq UltraScale+ ZU3EG, industrial grade (``--board ultra96`` or ``ultra96v2``).

The same board as the V1 (:mod:`boards.ultra96v1`) but for the part's temperature grade and the
Vivado board files.
"""

from dataclasses import replace

from .ultra96v1 import BOARD as _V1

__all__ = ["BOARD"]

BOARD = replace(
    _V1,
    name="ultra96v2",
    title="Avnet Ultra96-V2",
    part="xczu3eg-sbva484-1-i",
    vivado_board_part="avnet.com:ultra96v2:part0:1.2",
)
