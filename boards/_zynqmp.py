"""Processing-system settings shared by the Zynq UltraScale+ boards (not a board)."""

from __future__ import annotations

__all__ = ["zynqmp_ps_config"]


def zynqmp_ps_config(*, gp_width: int = 32, hp_width: int = 64) -> dict:
    """``zynq_ultra_ps_e`` CONFIG properties: HPM0_FPD master (AXI4-Lite, DMA control),
    HP0_FPD slave (DMA data), PL clock 0 and PL reset 0 enabled; the clock frequency is set
    separately from ``--clock``."""
    return {
        "PSU__USE__M_AXI_GP0": "1",          # M_AXI_HPM0_FPD: registers and DMA control
        "PSU__MAXIGP0__DATA_WIDTH": str(gp_width),
        "PSU__USE__M_AXI_GP1": "0",
        "PSU__USE__M_AXI_GP2": "0",          # M_AXI_HPM0_LPD unused
        "PSU__USE__S_AXI_GP2": "1",          # S_AXI_HP0_FPD: DMA to DDR
        "PSU__SAXIGP2__DATA_WIDTH": str(hp_width),
        "PSU__FPGA_PL0_ENABLE": "1",
        "PSU__NUM_FABRIC_RESETS": "1",
    }
