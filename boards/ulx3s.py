"""Radiona ULX3S with an ECP5-85F (``--board ulx3s``): open-source flow, self-test top."""

from .base import Ecp5Board, Resources

__all__ = ["BOARD"]

BOARD = Ecp5Board(
    name="ulx3s",
    title="Radiona ULX3S (ECP5-85F)",
    part="LFE5U-85F-6BG381C",
    device="85k",
    package="CABGA381",
    speed=6,
    clock_pin="G2",
    clock_mhz=25.0,
    # nextpnr-ecp5 (seed 1) Fmax of the self-test (docs/boards.md "ULX3S clock"): lfc_w1a1
    # 110.4 MHz, tiny 160.9, tiny_frac 158.7, tiny_conv 97.4, tiny_conv_frac 79.9 (classic ABC
    # mapping; build it with --clock 75); 80 MHz from the PLL is met by the others.
    default_clock_mhz=80.0,
    clock_basis=("nextpnr-measured: the zoo's lfc_w1a1, tiny, tiny_frac and tiny_conv "
                 "self-tests reach 97.4-160.9 MHz, 80 MHz is met by each; tiny_conv_frac "
                 "reaches 79.9 (use --clock 75)"),
    led_pins=("B2", "C2", "C1", "D2", "D1", "E2", "E1", "H3"),
    io_standard="LVCMOS33",
    resources=Resources(lut=83_640, ff=83_640, bram=208, dsp=156),
)
