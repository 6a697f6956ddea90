"""Xilinx ZCU104: Zynq UltraScale+ ZU7EV (``--board zcu104``)."""

from .base import Resources, ZynqBoard, board_store_install
from ._zynqmp import zynqmp_ps_config

__all__ = ["BOARD"]

BOARD = ZynqBoard(
    name="zcu104",
    title="Xilinx ZCU104",
    part="xczu7ev-ffvc1156-2-e",
    family="zynq_us+",
    ps_config=zynqmp_ps_config(gp_width=32, hp_width=128),
    gp_port="M_AXI_HPM0_FPD",
    hp_port="S_AXI_HP0_FPD",
    pl_clock_pin="pl_clk0",
    pl_clock_property="PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ",
    pl_clock_actual_property="PSU__CRL_APB__PL0_REF_CTRL__ACT_FREQMHZ",
    pl_reset_pin="pl_resetn0",
    gp_aclk_pin="maxihpm0_fpd_aclk",
    hp_aclk_pin="saxihp0_fpd_aclk",
    hp_data_width=128,
    default_clock_mhz=150.0,
    # hw.build checks every design's own netlist; this is the default network's.
    clock_basis=("timing proxy: lfc_w1a1's netlist (BNN-PYNQ folding) has paths of up to "
                 "5 LUT levels + 1 carry chain: 2 x (4 LUT + 1 carry) per 6.67 ns"),
    max_clock_mhz=400.0,
    resources=Resources(lut=230_400, ff=460_800, bram=312, dsp=1_728),
    yosys_family="xcup",
    vivado_board_part="xilinx.com:zcu104:part0:1.1",    # FINN's name
    vivado_board_alternatives=("xilinx.com:zcu104:part0:*",),
    board_files_install=(
        "the ZCU104 board files, which come with Vivado's Zynq UltraScale+ device support, "
        "or from Vivado's board store: in its Tcl console run "
        "`" + board_store_install("zcu104") + "`"),
)
