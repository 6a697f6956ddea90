// fracbnn_ram: fracbnn_rom with a write port, for accelerators built with writable
// parameters (hw.generate --writable-params): the same $readmemh initial contents and
// read port, plus `we`/`waddr`/`wdata` (FILE_WIDTH bits: a whole word of the .mem file;
// in slice mode the RAM keeps bits [LSB, LSB+WIDTH) of it).  A write in cycle t is seen by
// reads from cycle t+1.  The host writes only while the accelerator is idle
// (docs/hardware.md, "Writable parameters").
`default_nettype none

module fracbnn_ram #(
    parameter integer WIDTH = 8,
    parameter integer DEPTH = 16,
    parameter integer ADDR_WIDTH = 4,
    parameter INIT_FILE = "rom.mem",
    parameter integer BLOCK_MIN_BITS = 4096,
    parameter integer SHALLOW_MAX_DEPTH = 32,
    parameter integer STYLE = 0,
    parameter integer FILE_WIDTH = WIDTH,
    parameter integer LSB = 0
) (
    input  wire                  clk,
    input  wire                  en,
    input  wire [ADDR_WIDTH-1:0] addr,
    output reg  [WIDTH-1:0]      data,
    input  wire                  we,
    input  wire [ADDR_WIDTH-1:0] waddr,
    input  wire [FILE_WIDTH-1:0] wdata
);
    localparam USE_BLOCK = (STYLE == 1) ||
        (STYLE == 0 && WIDTH * DEPTH >= BLOCK_MIN_BITS && DEPTH > SHALLOW_MAX_DEPTH);
    // As in fracbnn_rom's slice mode the memory holds whole file words (so $readmemh loads
    // the wide file and a write stores a whole word); only bits [LSB, LSB+WIDTH) are read,
    // and synthesis removes the others.
    generate
        if (USE_BLOCK) begin : g_block
            (* ram_style = "block" *)
            reg [FILE_WIDTH-1:0] mem [0:DEPTH-1];
            initial $readmemh(INIT_FILE, mem);
            always @(posedge clk) begin
                if (we) mem[waddr] <= wdata;
                if (en) data <= mem[addr][LSB +: WIDTH];
            end
        end else begin : g_lutram     // not g_distributed: the estimate turns those (ROMs) into logic, a RAM maps to LUTRAM
            (* ram_style = "distributed" *)
            reg [FILE_WIDTH-1:0] mem [0:DEPTH-1];
            initial $readmemh(INIT_FILE, mem);
            always @(posedge clk) begin
                if (we) mem[waddr] <= wdata;
                if (en) data <= mem[addr][LSB +: WIDTH];
            end
        end
    endgenerate
endmodule

`default_nettype wire
