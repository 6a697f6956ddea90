// fracbnn_rom: synchronous-read ROM initialised from a $readmemh file.
//
// One read port: `addr` sampled on the rising edge of `clk` while `en` is high;
// `data` holds mem[addr] from the next cycle on (1-cycle read latency) and keeps
// its value while `en` is low.  The contents come only from INIT_FILE (one hex
// word per line, exactly DEPTH lines, see docs/compiled-network.md), so a
// retrained network with the same shapes needs new .mem files, not new HDL.
// Instantiated by hw/rom.py (InitFileROM in rom_mode="verilog").
//
// Placement (STYLE): 1 = block (rom_style/ram_style "block"), 2 = distributed
// ("distributed"), or 0 = auto: block RAM for memories of at least BLOCK_MIN_BITS bits
// that are deeper than SHALLOW_MAX_DEPTH words, LUTs otherwise.  Block RAM's shallowest
// shape is 512 words (RAMB18 512x36, RAMB36 512x72), so a memory of D <= 32 words fills at
// most 1/16 of every tile, while a LUT6 (a 64x1 ROM) holds a 32-word bit column with an
// input to spare.  The generator (hw/memory_style.py, where the rule is explained) always
// passes STYLE 1 or 2, the result of this rule or of the user's --ram-style; 0 is for
// hand instantiation.
//
// Slice mode (FILE_WIDTH != WIDTH or LSB != 0): INIT_FILE holds FILE_WIDTH-bit
// words and the ROM keeps bits [LSB, LSB+WIDTH) of each (one PE lane of a wide
// weight file, for engines whose lanes read independent addresses).  The memory
// is declared FILE_WIDTH wide so that $readmemh loads the wide file directly (the
// same .mem file stays the single source of truth); only the kept bits are ever
// read, and synthesis removes the others.
`default_nettype none

module fracbnn_rom #(
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
    output reg  [WIDTH-1:0]      data
);
    // The size rule counts only the bits kept (slice mode); synthesis drops the others.
    localparam USE_BLOCK = (STYLE == 1) ||
        (STYLE == 0 && WIDTH * DEPTH >= BLOCK_MIN_BITS && DEPTH > SHALLOW_MAX_DEPTH);
    generate
        if (FILE_WIDTH != WIDTH || LSB != 0) begin : g_slice
            if (USE_BLOCK) begin : g_block
                (* rom_style = "block", ram_style = "block" *)
                reg [FILE_WIDTH-1:0] mem [0:DEPTH-1];
                initial $readmemh(INIT_FILE, mem);
                always @(posedge clk) begin
                    if (en) data <= mem[addr][LSB +: WIDTH];
                end
            end else begin : g_distributed
                (* rom_style = "distributed", ram_style = "distributed" *)
                reg [FILE_WIDTH-1:0] mem [0:DEPTH-1];
                initial $readmemh(INIT_FILE, mem);
                always @(posedge clk) begin
                    if (en) data <= mem[addr][LSB +: WIDTH];
                end
            end
        end else if (USE_BLOCK) begin : g_block
            (* rom_style = "block", ram_style = "block" *)
            reg [WIDTH-1:0] mem [0:DEPTH-1];
            initial $readmemh(INIT_FILE, mem);
            always @(posedge clk) begin
                if (en) data <= mem[addr];
            end
        end else begin : g_distributed
            (* rom_style = "distributed", ram_style = "distributed" *)
            reg [WIDTH-1:0] mem [0:DEPTH-1];
            initial $readmemh(INIT_FILE, mem);
            always @(posedge clk) begin
                if (en) data <= mem[addr];
            end
        end
    endgenerate
endmodule

`default_nettype wire

