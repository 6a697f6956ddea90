"""TUL PYNQ-Z2: Zynq-7000 XC7Z020 (``--board pynq_z2``)."""

from .base import Resources, ZynqBoard, board_store_install

__all__ = ["BOARD"]

BOARD = ZynqBoard(
    name="pynq_z2",
    title="TUL PYNQ-Z2",
    part="xc7z020clg400-1",
    family="zynq7",
    ps_config={
        "PCW_USE_M_AXI_GP0": "1",            # M_AXI_GP0: registers and DMA control
        "PCW_USE_S_AXI_HP0": "1",            # S_AXI_HP0: DMA to DDR
        "PCW_S_AXI_HP0_DATA_WIDTH": "64",
        "PCW_EN_CLK0_PORT": "1",
        "PCW_EN_RST0_PORT": "1",
    },
    gp_port="M_AXI_GP0",
    hp_port="S_AXI_HP0",
    pl_clock_pin="FCLK_CLK0",
    pl_clock_property="PCW_FPGA0_PERIPHERAL_FREQMHZ",
    pl_clock_actual_property="PCW_ACT_FPGA0_PERIPHERAL_FREQMHZ",
    pl_reset_pin="FCLK_RESET0_N",
    gp_aclk_pin="M_AXI_GP0_ACLK",
    hp_aclk_pin="S_AXI_HP0_ACLK",
    hp_data_width=64,
    default_clock_mhz=100.0,
    clock_basis=("assumed: BNN-PYNQ's PYNQ-Z1 clock; the logic-depth proxy is not calibrated "
                 "for Zynq-7000"),
    max_clock_mhz=250.0,
    resources=Resources(lut=53_200, ff=106_400, bram=140, dsp=220),
    yosys_family="xc7",
    vivado_board_part="tul.com.tw:pynq-z2:part0:1.0",   # FINN's name
    vivado_board_alternatives=("*:pynq-z2:part0:*",),
    board_files_install=(
        "TUL's PYNQ-Z2 board files: in Vivado's Tcl console run "
        "`" + board_store_install("pynq-z2") + "`, or unzip TUL's pynq-z2 board files "
        "(PYNQ-Z2 page of tulembedded.com) into a directory passed with --board-repo DIR"),
)
