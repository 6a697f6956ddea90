"""A minimal ``.hwh`` of the block design hw/vivado.py builds, for pynq's real Overlay.

Vivado writes ``fracbnn.hwh`` beside ``fracbnn.bit``; PYNQ's Overlay parses it (pynqmetadata)
into the IP dictionary its drivers bind to.  Without Vivado, :func:`overlay_hwh` writes what
that file says about the parts PYNQ reads, for the Ultra96 (Zynq UltraScale+):

* ``axi_dma_0`` (``xilinx.com:ip:axi_dma:7.1``, bound to ``pynq.lib.dma.DMA``) with the
  ``CONFIG.*`` settings of :func:`dma_parameters` (= ``hw.vivado.dma_config``, checked by
  tests/test_board_model.py), upper case (HDL generics) and lower case (what the driver
  reads), no interrupts connected (the runtime polls), at :data:`zynq_model.DMA_BASE`;
* ``fracbnn_0`` (the ``fracbnn_shell`` module reference, bound to ``pynq.DefaultIP``) at
  :data:`zynq_model.ACCEL_BASE`, both on the PS's ``M_AXI_HPM0_FPD``;
* ``zynq_ps`` (``zynq_ultra_ps_e``) with PL clock 0 enabled at ``clock_mhz`` (PYNQ programs
  it on download) and clocks 1-3 off.

Ports and nets are left out: PYNQ's runtime views use the address map and parameters.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .zynq_model import ACCEL_BASE, DMA_BASE, IOPLL_MHZ, IP_RANGE

__all__ = ["dma_parameters", "overlay_hwh", "write_overlay"]

_HP_DATA_WIDTH = 64          # Ultra96 S_AXI_HP0_FPD (boards/ultra96v1.py: hp_data_width)


def dma_parameters(stream_in_bits: int, hp_data_width: int = _HP_DATA_WIDTH) -> dict[str, str]:
    """``axi_dma_0``'s configuration on a Zynq UltraScale+ board (as hw.vivado.dma_config)."""
    mm_width = max(hp_data_width, 32)
    return {
        "c_include_sg": "0", "c_sg_length_width": "26", "c_sg_include_stscntrl_strm": "0",
        "c_include_mm2s": "1", "c_include_s2mm": "1",
        "c_m_axis_mm2s_tdata_width": str(stream_in_bits), "c_s_axis_s2mm_tdata_width": "32",
        "c_m_axi_mm2s_data_width": str(max(mm_width, stream_in_bits)),
        "c_m_axi_s2mm_data_width": str(mm_width),
        "c_mm2s_burst_size": "64", "c_s2mm_burst_size": "64", "c_addr_width": "64",
    }


def _params(params: dict) -> str:
    return "\n".join(f'        <PARAMETER NAME="{k}" VALUE="{v}"/>' for k, v in params.items())


def _bus(name, kind, role):
    return (f'        <BUSINTERFACE BUSNAME="{name}_bus" NAME="{name}" TYPE="{role}" '
            f'VLNV="xilinx.com:interface:{kind}:1.0"/>')


def _range(instance, base, high, master, slave, memtype="REGISTER", block="Reg"):
    return (f'        <MEMRANGE ADDRESSBLOCK="{block}" BASENAME="C_BASEADDR" '
            f'BASEVALUE="0x{base:08X}" HIGHNAME="C_HIGHADDR" HIGHVALUE="0x{high:08X}" '
            f'INSTANCE="{instance}" IS_DATA="TRUE" IS_INSTRUCTION="TRUE" '
            f'MASTERBUSINTERFACE="{master}" MEMTYPE="{memtype}" SLAVEBUSINTERFACE="{slave}"/>')


def overlay_hwh(stream_in_bits: int, clock_mhz: float = 150.0) -> str:
    """The ``.hwh`` text (see the module docstring)."""
    dma = dma_parameters(stream_in_bits)
    dma_params = {**{k.upper(): v for k, v in dma.items()}, **dma}
    div0 = round(IOPLL_MHZ / clock_mhz)
    ps = {}
    for i in range(4):
        on = i == 0
        ps[f"PSU__FPGA_PL{i}_ENABLE"] = "1" if on else "0"
        ps[f"PSU__CRL_APB__PL{i}_REF_CTRL__SRCSEL"] = "IOPLL"
        ps[f"PSU__CRL_APB__PL{i}_REF_CTRL__DIVISOR0"] = str(div0 if on else 15)
        ps[f"PSU__CRL_APB__PL{i}_REF_CTRL__DIVISOR1"] = "1"
        if on:
            ps[f"PSU__CRL_APB__PL{i}_REF_CTRL__FREQMHZ"] = f"{clock_mhz:g}"
            ps[f"PSU__CRL_APB__PL{i}_REF_CTRL__ACT_FREQMHZ"] = f"{IOPLL_MHZ / div0:g}"
    ddr = [_range("zynq_ps", 0, 0x7FFF_FFFF, m, "S_AXI_HP0_FPD", "MEMORY", "HP0_DDR_LOW")
           for m in ("M_AXI_MM2S", "M_AXI_S2MM")]
    regs = [_range("axi_dma_0", DMA_BASE, DMA_BASE + IP_RANGE - 1, "M_AXI_HPM0_FPD",
                   "S_AXI_LITE"),
            _range("fracbnn_0", ACCEL_BASE, ACCEL_BASE + IP_RANGE - 1, "M_AXI_HPM0_FPD",
                   "s_axil", block="reg0")]
    nl = "\n"
    return f"""<?xml version="1.0" encoding="UTF-8" standalone="no" ?>
<EDKSYSTEM EDWVERSION="1.2" TIMESTAMP="tests/board/hwh.py" VIVADOVERSION="2023.2">
  <SYSTEMINFO ARCH="zynquplus" DEVICE="xczu3eg" NAME="fracbnn_bd" PACKAGE="sbva484" SPEEDGRADE="-1"/>
  <EXTERNALPORTS/>
  <EXTERNALINTERFACES/>
  <MODULES>
    <MODULE FULLNAME="/axi_dma_0" HWVERSION="7.1" INSTANCE="axi_dma_0" IPTYPE="PERIPHERAL" IS_ENABLE="1" MODCLASS="PERIPHERAL" MODTYPE="axi_dma" VLNV="xilinx.com:ip:axi_dma:7.1">
      <PARAMETERS>
{_params(dma_params)}
      </PARAMETERS>
      <MEMORYMAP>
{nl.join(ddr)}
      </MEMORYMAP>
      <PORTS/>
      <BUSINTERFACES>
{_bus("S_AXI_LITE", "aximm", "SLAVE")}
{_bus("M_AXI_MM2S", "aximm", "MASTER")}
{_bus("M_AXI_S2MM", "aximm", "MASTER")}
{_bus("M_AXIS_MM2S", "axis", "INITIATOR")}
{_bus("S_AXIS_S2MM", "axis", "TARGET")}
      </BUSINTERFACES>
    </MODULE>
    <MODULE FULLNAME="/fracbnn_0" HWVERSION="1.0" INSTANCE="fracbnn_0" IPTYPE="PERIPHERAL" IS_ENABLE="1" MODCLASS="PERIPHERAL" MODTYPE="fracbnn_shell" VLNV="xilinx.com:module_ref:fracbnn_shell:1.0">
      <PARAMETERS/>
      <PORTS/>
      <BUSINTERFACES>
{_bus("s_axil", "aximm", "SLAVE")}
{_bus("s_axis", "axis", "TARGET")}
{_bus("m_axis", "axis", "INITIATOR")}
      </BUSINTERFACES>
    </MODULE>
    <MODULE FULLNAME="/zynq_ps" HWVERSION="3.5" INSTANCE="zynq_ps" IPTYPE="PERIPHERAL" IS_ENABLE="1" IS_PL="FALSE" MODTYPE="zynq_ultra_ps_e" VLNV="xilinx.com:ip:zynq_ultra_ps_e:3.5">
      <PARAMETERS>
{_params(ps)}
      </PARAMETERS>
      <MEMORYMAP>
{nl.join(regs)}
      </MEMORYMAP>
      <PORTS/>
      <BUSINTERFACES>
{_bus("M_AXI_HPM0_FPD", "aximm", "MASTER")}
{_bus("S_AXI_HP0_FPD", "aximm", "SLAVE")}
      </BUSINTERFACES>
    </MODULE>
  </MODULES>
</EDKSYSTEM>
"""


def write_overlay(directory: Path, net_dir: Path, pixels_per_beat: int = 8,
                  clock_mhz: float = 150.0) -> Path:
    """What ``hw.build --board ultra96`` leaves for the board: ``fracbnn.bit`` (a placeholder:
    the simulated device does not parse it), ``fracbnn.hwh`` and ``net/``.  Returns the
    ``.bit`` path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    bit = directory / "fracbnn.bit"
    bit.write_bytes(b"placeholder bitstream: the simulated device loads ZynqModel instead")
    (directory / "fracbnn.hwh").write_text(overlay_hwh(8 * pixels_per_beat, clock_mhz))
    shutil.copytree(net_dir, directory / "net")
    return bit
