"""A tiny stand-in accelerator with the ``fracbnn_top`` ports, for testing sim/ alone.

It lets the co-simulation plumbing (toolchain, cached builds, ``$readmemh``
staging, the cocotb testbench, the C++ batch harness) be tested without the
generator.  Function: ``score_c = bias_c + sum(pixel_p for p % C == c)`` with
signed 32-bit biases from a ``$readmemh`` ROM (``bias.mem``), class = smallest
index of the maximal score.  Registers follow the hardware register map (ID,
VERSION, CONFIG, STATUS busy/framing error, IMAGES_DONE, CYCLES, CTRL clear,
layer 0 read-back).

Timing (cycle 0 = first input beat accepted, no stalls): an image's ``B``
beats are accepted on cycles ``t .. t+B-1`` (``tready`` high only while
receiving), then ``C + 1`` cycles add the biases, then beats 0..C go out on the
next ``C + 1`` cycles, and the next image's first beat is accepted on the cycle
after the last output beat: ``period = B + 2*(C+1)``,
``first output = t + B + C + 1``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["MockDesign", "write_mock_design"]

_VERILOG = r"""
module fracbnn_rom #(parameter WIDTH = 32, parameter DEPTH = 4, parameter AW = 2,
                     parameter INIT_FILE = "bias.mem") (
    input wire clk, input wire [AW-1:0] addr, output reg [WIDTH-1:0] data);
  reg [WIDTH-1:0] mem [0:DEPTH-1];
  initial $readmemh(INIT_FILE, mem);
  always @(posedge clk) data <= mem[addr];
endmodule

module fracbnn_top (
  input wire clk, input wire rst,
  input wire [8*@PPB@-1:0] s_axis_tdata, input wire s_axis_tvalid, output wire s_axis_tready,
  input wire s_axis_tlast,
  output reg [31:0] m_axis_tdata, output wire m_axis_tvalid, input wire m_axis_tready,
  output wire m_axis_tlast,
  input wire [7:0] s_axil_awaddr, input wire s_axil_awvalid, output wire s_axil_awready,
  input wire [31:0] s_axil_wdata, input wire [3:0] s_axil_wstrb, input wire s_axil_wvalid,
  output wire s_axil_wready, output wire [1:0] s_axil_bresp, output reg s_axil_bvalid,
  input wire s_axil_bready, input wire [7:0] s_axil_araddr, input wire s_axil_arvalid,
  output wire s_axil_arready, output reg [31:0] s_axil_rdata, output wire [1:0] s_axil_rresp,
  output reg s_axil_rvalid, input wire s_axil_rready);
  localparam PPB = @PPB@, B = @B@, C = @C@;
  localparam [1:0] IN = 0, BIAS = 1, OUT = 2;
  reg [1:0] state;
  reg [15:0] beat, k;
  reg signed [31:0] acc [0:C-1];
  reg [31:0] cls;
  reg err;
  reg [31:0] images_done;
  reg [63:0] cycles;
  wire [31:0] bias;
  fracbnn_rom #(.WIDTH(32), .DEPTH(@DEPTH@), .AW(@AW@), .INIT_FILE("bias.mem"))
    rom (.clk(clk), .addr(k[@AW@-1:0]), .data(bias));
  assign s_axis_tready = state == IN;
  assign m_axis_tvalid = state == OUT;
  assign m_axis_tlast = state == OUT && k == C;
  integer j, c;
  // accumulators after adding this beat's pixels
  reg signed [31:0] acc_next [0:C-1];
  always @* begin
    for (c = 0; c < C; c = c + 1) acc_next[c] = acc[c];
    for (j = 0; j < PPB; j = j + 1)
      acc_next[(beat * PPB + j) % C] = acc_next[(beat * PPB + j) % C] + s_axis_tdata[8*j +: 8];
  end
  // argmax, smallest index wins ties
  always @* begin
    cls = 0;
    for (c = 1; c < C; c = c + 1) if (acc[c] > acc[cls]) cls = c;
    m_axis_tdata = k == 0 ? cls : acc[k - 1];
  end
  wire clear = s_axil_awvalid && s_axil_wvalid && !s_axil_bvalid && s_axil_awaddr == 8'h1C
               && s_axil_wdata[0];
  always @(posedge clk) begin
    if (rst) begin
      state <= IN; beat <= 0; k <= 0; err <= 0; images_done <= 0; cycles <= 0;
      for (c = 0; c < C; c = c + 1) acc[c] <= 0;
    end else begin
      cycles <= clear ? 0 : cycles + 1;
      if (clear) begin err <= 0; images_done <= 0; end
      case (state)
        IN: if (s_axis_tvalid) begin
          for (c = 0; c < C; c = c + 1) acc[c] <= acc_next[c];
          if (s_axis_tlast != (beat == B - 1)) err <= 1;
          if (beat == B - 1) begin beat <= 0; state <= BIAS; k <= 0; end
          else beat <= beat + 1;
        end
        BIAS: begin
          // the ROM word for address k arrives one cycle after k is presented
          if (k != 0) acc[k - 1] <= acc[k - 1] + bias;
          if (k == C) begin k <= 0; state <= OUT; end else k <= k + 1;
        end
        OUT: if (m_axis_tready) begin
          if (k == C) begin
            k <= 0; state <= IN; images_done <= images_done + 1;
            for (c = 0; c < C; c = c + 1) acc[c] <= 0;
          end else k <= k + 1;
        end
        default: state <= IN;
      endcase
    end
  end
  // AXI4-Lite: one outstanding transaction per direction
  assign s_axil_awready = s_axil_awvalid && s_axil_wvalid && !s_axil_bvalid;
  assign s_axil_wready = s_axil_awready;
  assign s_axil_bresp = 0;
  assign s_axil_arready = !s_axil_rvalid;
  assign s_axil_rresp = 0;
  always @(posedge clk) begin
    if (rst) begin s_axil_bvalid <= 0; s_axil_rvalid <= 0; s_axil_rdata <= 0; end
    else begin
      if (s_axil_awready) s_axil_bvalid <= 1;
      else if (s_axil_bready) s_axil_bvalid <= 0;
      if (s_axil_arvalid && s_axil_arready) begin
        s_axil_rvalid <= 1;
        case (s_axil_araddr)
          8'h00: s_axil_rdata <= 32'h464E4231;
          8'h04: s_axil_rdata <= 32'd1;
          8'h08: s_axil_rdata <= {8'd1, 8'd@PPB@, 8'd@C@, 8'd1};
          8'h0C: s_axil_rdata <= {30'd0, err, state != IN || beat != 0};
          8'h10: s_axil_rdata <= images_done;
          8'h14: s_axil_rdata <= cycles[31:0];
          8'h18: s_axil_rdata <= cycles[63:32];
          8'h20: s_axil_rdata <= {16'd1, 16'd@PPB@};
          8'h24: s_axil_rdata <= {16'd@P@, 16'd@C@};
          default: s_axil_rdata <= 0;
        endcase
      end else if (s_axil_rready) s_axil_rvalid <= 0;
    end
  end
endmodule
"""

_WAIVER = """`verilator_config
lint_off -rule WIDTHEXPAND
lint_off -rule WIDTHTRUNC
"""


class MockDesign:
    """The mock's parameters and its reference model.

    Parameters
    ----------
    pixels, pixels_per_beat, classes
        Image size P, pixels per input beat, number of classes C.
    biases
        C signed 32-bit class biases (the ROM contents).
    """

    def __init__(self, pixels: int, pixels_per_beat: int, classes: int, biases):
        assert pixels % pixels_per_beat == 0
        self.pixels, self.pixels_per_beat, self.classes = pixels, pixels_per_beat, classes
        self.biases = np.asarray(biases, dtype=np.int64)
        assert self.biases.shape == (classes,)

    @property
    def beats(self) -> int:
        """Input beats per image."""
        return self.pixels // self.pixels_per_beat

    @property
    def period(self) -> int:
        """Cycles between first input beats of consecutive images."""
        return self.beats + 2 * (self.classes + 1)

    @property
    def latency(self) -> int:
        """Cycles from an image's first accepted beat to its first output beat."""
        return self.beats + self.classes + 1

    def registers(self) -> dict[int, int]:
        """Expected read-only register values."""
        ppb, c, p = self.pixels_per_beat, self.classes, self.pixels
        return {0x00: 0x464E4231, 0x04: 1, 0x08: (1 << 24) | (ppb << 16) | (c << 8) | 1,
                0x20: (1 << 16) | ppb, 0x24: (p << 16) | c}

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reference classes (N,) and scores (N, C) for uint8 images (N, P)."""
        images = np.asarray(images, dtype=np.int64)
        scores = np.stack([images[:, c::self.classes].sum(axis=1) for c in range(self.classes)],
                          axis=1) + self.biases
        return scores.argmax(axis=1), scores

    def timing(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Predicted (accept, output) cycles of n back-to-back images, first accept = 0."""
        accept = np.arange(n, dtype=np.int64) * self.period
        return accept, accept + self.latency


def write_mock_design(out_dir: Path, mock: MockDesign) -> Path:
    """Write the mock as a generated design directory; return it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    depth = mock.classes + 1  # the BIAS state presents address C once
    aw = max(1, (depth - 1).bit_length())
    text = _VERILOG
    for key, value in {"PPB": mock.pixels_per_beat, "B": mock.beats, "C": mock.classes,
                       "P": mock.pixels, "DEPTH": depth, "AW": aw}.items():
        text = text.replace(f"@{key}@", str(value))
    (out_dir / "fracbnn_top.v").write_text(text)
    words = [int(b) & 0xFFFFFFFF for b in mock.biases] + [0]
    (out_dir / "bias.mem").write_text("".join(f"{w:08x}\n" for w in words))
    (out_dir / "verilator_waiver.vlt").write_text(_WAIVER)
    (out_dir / "design.json").write_text(json.dumps(
        {"mock": True, "pixels_per_beat": mock.pixels_per_beat, "classes": mock.classes}))
    return out_dir
