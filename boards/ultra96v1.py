"""Avnet Ultra96-V1: Zynq UltraScale+ ZU3EG, extended grade (``--board ultra96v1``)."""

from .base import Resources, ZynqBoard, board_store_install
from ._zynqmp import zynqmp_ps_config

__all__ = ["BOARD"]

BOARD = ZynqBoard(
    name="ultra96v1",
    title="Avnet Ultra96-V1",
    part="xczu3eg-sbva484-1-e",
    family="zynq_us+",
    ps_config=zynqmp_ps_config(gp_width=32, hp_width=64),
    gp_port="M_AXI_HPM0_FPD",
    hp_port="S_AXI_HP0_FPD",
    pl_clock_pin="pl_clk0",
    pl_clock_property="PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ",
    pl_clock_actual_property="PSU__CRL_APB__PL0_REF_CTRL__ACT_FREQMHZ",
    pl_reset_pin="pl_resetn0",
    gp_aclk_pin="maxihpm0_fpd_aclk",
    hp_aclk_pin="saxihp0_fpd_aclk",
    hp_data_width=64,
    default_clock_mhz=150.0,
    # hw.build checks every design's own netlist; this is the default network's.
    clock_basis=("timing proxy: lfc_w1a1's netlist (BNN-PYNQ folding) has paths of up to "
                 "5 LUT levels + 1 carry chain: 2 x (4 LUT + 1 carry) per 6.67 ns"),
    max_clock_mhz=400.0,
    resources=Resources(lut=70_560, ff=141_120, bram=216, dsp=360),
    yosys_family="xcup",
    # FINN's name (make_zynq_proj's shell template) = the Xilinx board store's Ultra96v1 1.2;
    # Avnet's own bdf repository has published it as em.avnet.com:ultra96v1, and Vivado
    # 2018.x shipped it as em.avnet.com:ultra96.
    vivado_board_part="avnet.com:ultra96v1:part0:1.2",
    vivado_board_alternatives=("*:ultra96v1:part0:*", "em.avnet.com:ultra96:part0:*"),
    board_files_install=(
        "Avnet's Ultra96-V1 board files: in Vivado's Tcl console run "
        "`" + board_store_install("ultra96v1") + "`, or clone "
        "https://github.com/Avnet/bdf and pass the clone with --board-repo DIR"),
)
