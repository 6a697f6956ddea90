// Batch simulation harness for a Verilated fracbnn_top (built by sim/batch.py).
//
// Usage: batch_sim IMAGES.bin RESULTS.bin [--stall PERCENT] [--idle PERCENT]
//                  [--seed N] [--trace FILE] [--max-stall-cycles N] [--axil-writes FILE]
//                  [--taps FILE]
//
// IMAGES.bin (little-endian): "FBNNIMG1", u32 count, u32 pixels, then count*pixels
// bytes (row-major images).  The harness resets the design for 4 cycles, then drives
// s_axis with PPB pixels per beat (pixel j at bits [8j, 8j+8), TLAST on the last beat
// of each image), tvalid high on every cycle that has a beat (unless --idle makes a
// cycle idle), and m_axis_tready high (unless --stall drops it).  Both random modes use
// a fixed-seed xorshift generator, so a run is reproducible.
//
// Cycle k is the k-th rising clock edge after reset is released (k >= 1); a transfer
// "at cycle k" is one whose tvalid && tready are high just before edge k.
//
// RESULTS.bin: "FBNNRES1", u32 count, u32 classes, then per image
//   i32 class, i32 scores[classes], u64 first_in, u64 last_in, u64 first_out, u64 last_out
// (cycles of the image's first/last input beat and first/last output beat), then a
// trailer: u64 total_cycles, u32 framing_errors (output frames whose TLAST was not on
// beat 1+classes), u32 reg_status, u32 reg_images_done, u32 reg_id, u64 reg_cycles,
// u32 reg_exits (EXITS, at most 8 counted), u32 reg_exit_taken[reg_exits] (EXITj_TAKEN)
// (AXI-Lite reads after the last result).  Exit status 0 when every image produced
// a result, 3 when the design stalled (no transfer for --max-stall-cycles cycles),
// 2 on bad arguments or files.  While running it prints "done N" lines (every 64
// finished images) to stdout for progress display.
//
// --taps FILE (a build with FRACBNN_TAPS and the tapped wires public, see sim/batch.py):
// one tab-separated line per tapped stream: VALID PAYLOAD READY MAX_BEATS OUT, three
// flattened wire names (e.g. "mvtu0.o__valid"), the beats to record and the file to write.
// Every cycle whose VALID and READY are high just before the edge appends PAYLOAD's
// Verilator storage (entSize bytes, little endian: 32-bit words for wide wires) to OUT,
// up to MAX_BEATS beats.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "Vfracbnn_top.h"
#include "verilated.h"
#if FRACBNN_TAPS
#include "verilated_syms.h"
#endif
#if VM_TRACE
#if VM_TRACE_FST
#include "verilated_fst_c.h"
using TraceFile = VerilatedFstC;
#else
#include "verilated_vcd_c.h"
using TraceFile = VerilatedVcdC;
#endif
#endif

#ifndef FRACBNN_PPB
#error "define FRACBNN_PPB (pixels per input beat)"
#endif
#ifndef FRACBNN_CLASSES
#error "define FRACBNN_CLASSES (number of classes)"
#endif

namespace {

constexpr int kPPB = FRACBNN_PPB;
constexpr int kClasses = FRACBNN_CLASSES;
constexpr int kResetCycles = 4;

// Pack n bytes little-endian into a Verilated signal of <= 64 bits ...
template <typename T>
void set_bytes(T& sig, const uint8_t* p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= uint64_t(p[i]) << (8 * i);
    sig = static_cast<T>(v);
}
// ... or of more than 64 bits (32-bit words, word 0 least significant).
template <std::size_t W>
void set_bytes(VlWide<W>& sig, const uint8_t* p, int n) {
    for (std::size_t w = 0; w < W; ++w) {
        uint32_t v = 0;
        for (int b = 0; b < 4; ++b) {
            std::size_t i = 4 * w + b;
            if (i < std::size_t(n)) v |= uint32_t(p[i]) << (8 * b);
        }
        sig.at(w) = v;
    }
}

// xorshift64*: fixed-seed random source for idle cycles and backpressure.
struct Rng {
    uint64_t s;
    explicit Rng(uint64_t seed) : s(seed * 2654435761u + 0x9E3779B97F4A7C15ull) {}
    uint32_t next() {
        s ^= s >> 12; s ^= s << 25; s ^= s >> 27;
        return uint32_t((s * 0x2545F4914F6CDD1Dull) >> 32);
    }
    bool percent(uint32_t pct) { return pct && (next() % 100u) < pct; }
};

struct ImageResult {
    int32_t cls = 0;
    int32_t scores[kClasses] = {};
    uint64_t first_in = 0, last_in = 0, first_out = 0, last_out = 0;
};

#if FRACBNN_TAPS
// One tapped stream: pointers into the model's storage of its public wires.
struct Tap {
    const uint8_t* valid;
    const uint8_t* ready;
    const uint8_t* payload;
    uint32_t nbytes;
    uint64_t max_beats, beats = 0;
    FILE* out;
    void sample() {
        if (beats < max_beats && (*valid & 1) && (*ready & 1)) {
            std::fwrite(payload, 1, nbytes, out);
            ++beats;
        }
    }
};

// A public wire of the flattened top by its Amaranth name (Yosys escapes it: "\\a.b ").
const VerilatedVar* find_wire(VerilatedContext& ctx, const std::string& name) {
    const VerilatedScopeNameMap* scopes = ctx.scopeNameMap();
    for (const auto& kv : *scopes) {
        const VerilatedScope* scope = kv.second;
        if (!scope->varsp()) continue;
        for (const std::string& key : {"\\" + name + " ", name}) {
            if (const VerilatedVar* v = scope->varFind(key.c_str())) return v;
        }
    }
    std::fprintf(stderr, "error: no public wire %s in the model (rebuild the batch simulator "
                 "with these taps)\n", name.c_str());
    std::exit(2);
}

std::vector<Tap> open_taps(VerilatedContext& ctx, const char* path) {
    std::vector<Tap> taps;
    FILE* f = std::fopen(path, "r");
    if (!f) { std::fprintf(stderr, "error: cannot open the taps file %s\n", path); std::exit(2); }
    char v[512], p[512], r[512], o[4096];
    unsigned long long max_beats = 0;
    while (std::fscanf(f, "%511[^\t]\t%511[^\t]\t%511[^\t]\t%llu\t%4095[^\n]\n",
                       v, p, r, &max_beats, o) == 5) {
        Tap t;
        t.valid = static_cast<const uint8_t*>(find_wire(ctx, v)->datap());
        const VerilatedVar* pv = find_wire(ctx, p);
        t.payload = static_cast<const uint8_t*>(pv->datap());
        t.nbytes = pv->entSize();
        t.ready = static_cast<const uint8_t*>(find_wire(ctx, r)->datap());
        t.max_beats = max_beats;
        t.out = std::fopen(o, "wb");
        if (!t.out) { std::fprintf(stderr, "error: cannot write %s\n", o); std::exit(2); }
        taps.push_back(t);
    }
    std::fclose(f);
    return taps;
}
#endif

class Harness {
public:
    Harness(const char* trace_path) : top_(std::make_unique<Vfracbnn_top>(&ctx_)) {
#if VM_TRACE
        if (trace_path) {
            ctx_.traceEverOn(true);
            trace_ = std::make_unique<TraceFile>();
            top_->trace(trace_.get(), 99);
            trace_->open(trace_path);
        }
#else
        if (trace_path) {
            std::fprintf(stderr, "error: this harness was built without tracing; rebuild with waves\n");
            std::exit(2);
        }
#endif
        top_->clk = 0;
        top_->rst = 1;
        top_->s_axis_tvalid = 0;
        top_->m_axis_tready = 0;
        top_->s_axil_awvalid = 0;
        top_->s_axil_wvalid = 0;
        top_->s_axil_bready = 0;
        top_->s_axil_arvalid = 0;
        top_->s_axil_rready = 0;
        top_->eval();
        for (int i = 0; i < kResetCycles; ++i) tick();
        top_->rst = 0;
        cycle_ = 0;
    }
    ~Harness() {
        top_->final();
#if VM_TRACE
        if (trace_) trace_->close();
#endif
    }

    Vfracbnn_top& top() { return *top_; }
    VerilatedContext& context() { return ctx_; }
    uint64_t cycle() const { return cycle_; }

    // Settle the inputs set for this cycle (falling-edge half).
    void settle() {
        top_->clk = 0;
        top_->eval();
        dump();
    }
    // Rising edge: registers take the values settled before.
    void rise() {
        ++cycle_;
        top_->clk = 1;
        top_->eval();
        dump();
    }
    void tick() { settle(); rise(); }

    // One AXI4-Lite write (address and data together); other inputs keep their values.
    void axil_write(uint8_t addr, uint32_t data) {
        top_->s_axil_awaddr = addr;
        top_->s_axil_wdata = data;
        top_->s_axil_wstrb = 0xF;
        top_->s_axil_awvalid = 1;
        top_->s_axil_wvalid = 1;
        top_->s_axil_bready = 1;
        for (int guard = 0; guard < 1000; ++guard) {
            settle();
            bool aw = top_->s_axil_awvalid && top_->s_axil_awready;
            bool w = top_->s_axil_wvalid && top_->s_axil_wready;
            bool b = top_->s_axil_bvalid;
            rise();
            if (aw) top_->s_axil_awvalid = 0;
            if (w) top_->s_axil_wvalid = 0;
            if (b && !top_->s_axil_awvalid && !top_->s_axil_wvalid) {
                top_->s_axil_bready = 0;
                return;
            }
        }
        std::fprintf(stderr, "error: AXI-Lite write of 0x%02X got no response\n", addr);
        std::exit(3);
    }

    // One AXI4-Lite read; other inputs keep their values.
    uint32_t axil_read(uint8_t addr) {
        top_->s_axil_araddr = addr;
        top_->s_axil_arvalid = 1;
        top_->s_axil_rready = 1;
        for (int guard = 0; guard < 1000; ++guard) {
            settle();
            bool ar = top_->s_axil_arvalid && top_->s_axil_arready;
            bool r = top_->s_axil_rvalid;
            uint32_t data = top_->s_axil_rdata;
            rise();
            if (ar) top_->s_axil_arvalid = 0;
            if (r && !top_->s_axil_arvalid) {
                top_->s_axil_rready = 0;
                return data;
            }
        }
        std::fprintf(stderr, "error: AXI-Lite read of 0x%02X got no response\n", addr);
        std::exit(3);
    }

private:
    void dump() {
#if VM_TRACE
        if (trace_) trace_->dump(ctx_.time());
#endif
        ctx_.timeInc(5);
    }
    VerilatedContext ctx_;
    std::unique_ptr<Vfracbnn_top> top_;
#if VM_TRACE
    std::unique_ptr<TraceFile> trace_;
#endif
    uint64_t cycle_ = 0;
};

[[noreturn]] void usage(const char* msg) {
    std::fprintf(stderr, "error: %s\nusage: batch_sim IMAGES.bin RESULTS.bin [--stall PCT] "
                 "[--idle PCT] [--seed N] [--trace FILE] [--max-stall-cycles N] "
                 "[--axil-writes FILE] [--taps FILE]\n", msg);
    std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) usage("need IMAGES.bin and RESULTS.bin");
    const char* images_path = argv[1];
    const char* results_path = argv[2];
    uint32_t stall_pct = 0, idle_pct = 0;
    uint64_t seed = 1, max_stall = 1000000;
    const char* trace_path = nullptr;
    const char* writes_path = nullptr;   // AXI4-Lite writes made after reset, before images
    const char* taps_path = nullptr;     // layer taps to record (FRACBNN_TAPS builds)
    for (int i = 3; i < argc; ++i) {
        std::string a = argv[i];
        if (i + 1 >= argc) usage(("missing value for " + a).c_str());
        const char* v = argv[++i];
        if (a == "--stall") stall_pct = std::strtoul(v, nullptr, 10);
        else if (a == "--idle") idle_pct = std::strtoul(v, nullptr, 10);
        else if (a == "--seed") seed = std::strtoull(v, nullptr, 10);
        else if (a == "--trace") trace_path = v;
        else if (a == "--max-stall-cycles") max_stall = std::strtoull(v, nullptr, 10);
        else if (a == "--axil-writes") writes_path = v;
        else if (a == "--taps") taps_path = v;
        else usage(("unknown option " + a).c_str());
    }
    if (stall_pct > 99 || idle_pct > 99) usage("--stall/--idle must be 0..99 percent");

    // Read the images.
    FILE* f = std::fopen(images_path, "rb");
    if (!f) usage("cannot open the images file");
    char magic[8];
    uint32_t count = 0, pixels = 0;
    if (std::fread(magic, 1, 8, f) != 8 || std::memcmp(magic, "FBNNIMG1", 8) != 0 ||
        std::fread(&count, 4, 1, f) != 1 || std::fread(&pixels, 4, 1, f) != 1)
        usage("the images file has no FBNNIMG1 header");
    if (pixels == 0 || pixels % kPPB) usage("pixels per image is not a multiple of pixels per beat");
    std::vector<uint8_t> pix(size_t(count) * pixels);
    if (std::fread(pix.data(), 1, pix.size(), f) != pix.size()) usage("the images file is truncated");
    std::fclose(f);
    const uint32_t beats = pixels / kPPB;
    const uint64_t total_beats = uint64_t(count) * beats;

    // Register writes: "FBNNAXW1", uint32 count, then count (uint32 address, uint32 value).
    std::vector<uint32_t> writes;
    if (writes_path) {
        FILE* wf = std::fopen(writes_path, "rb");
        if (!wf) usage("cannot open the AXI-Lite writes file");
        uint32_t n = 0;
        if (std::fread(magic, 1, 8, wf) != 8 || std::memcmp(magic, "FBNNAXW1", 8) != 0 ||
            std::fread(&n, 4, 1, wf) != 1)
            usage("the AXI-Lite writes file has no FBNNAXW1 header");
        writes.resize(size_t(n) * 2);
        if (std::fread(writes.data(), 4, writes.size(), wf) != writes.size())
            usage("the AXI-Lite writes file is truncated");
        std::fclose(wf);
    }

    Verilated::commandArgs(argc, argv);
    Harness h(trace_path);
    for (size_t k = 0; k < writes.size(); k += 2) h.axil_write(uint8_t(writes[k]), writes[k + 1]);
    Vfracbnn_top& top = h.top();
#if FRACBNN_TAPS
    std::vector<Tap> taps;
    if (taps_path) taps = open_taps(h.context(), taps_path);
#else
    if (taps_path) usage("--taps needs a batch simulator built with taps");
#endif
    Rng rng(seed);
    std::vector<ImageResult> res(count);

    uint64_t in_beat = 0;        // next input beat to send (global index)
    uint64_t out_beat = 0;       // output beats received so far
    const uint64_t out_per_image = 1 + kClasses;
    const uint64_t total_out = uint64_t(count) * out_per_image;
    uint32_t framing_errors = 0;
    uint64_t last_progress = 0;
    int status = 0;

    while (out_beat < total_out) {
        // Drive this cycle's inputs.
        bool have = in_beat < total_beats;
        bool valid = have && !rng.percent(idle_pct);
        top.s_axis_tvalid = valid;
        if (have) {
            uint64_t img = in_beat / beats, b = in_beat % beats;
            set_bytes(top.s_axis_tdata, &pix[img * pixels + b * kPPB], kPPB);
            top.s_axis_tlast = (b == beats - 1);
        }
        top.m_axis_tready = !rng.percent(stall_pct);
        h.settle();
        bool in_fire = top.s_axis_tvalid && top.s_axis_tready;
        bool out_fire = top.m_axis_tvalid && top.m_axis_tready;
        uint32_t out_data = top.m_axis_tdata;
        bool out_last = top.m_axis_tlast;
#if FRACBNN_TAPS
        for (Tap& t : taps) t.sample();
#endif
        h.rise();
        const uint64_t cyc = h.cycle();
        if (in_fire) {
            uint64_t img = in_beat / beats, b = in_beat % beats;
            if (b == 0) res[img].first_in = cyc;
            if (b == beats - 1) res[img].last_in = cyc;
            ++in_beat;
        }
        if (out_fire) {
            uint64_t img = out_beat / out_per_image, k = out_beat % out_per_image;
            if (k == 0) { res[img].cls = int32_t(out_data); res[img].first_out = cyc; }
            else res[img].scores[k - 1] = int32_t(out_data);
            if (k == out_per_image - 1) {
                res[img].last_out = cyc;
                // Progress for the Python side: one line per 64 finished images.
                if ((img + 1) % 64 == 0 || img + 1 == count) {
                    std::printf("done %llu\n", (unsigned long long)(img + 1));
                    std::fflush(stdout);
                }
            }
            if (out_last != (k == out_per_image - 1)) ++framing_errors;
            ++out_beat;
        }
        if (in_fire || out_fire) last_progress = cyc;
        else if (cyc - last_progress > max_stall) {
            std::fprintf(stderr, "error: no transfer for %llu cycles after %llu input beats and "
                         "%llu output beats; the design is stuck\n",
                         (unsigned long long)max_stall, (unsigned long long)in_beat,
                         (unsigned long long)out_beat);
            status = 3;
            break;
        }
    }
    top.s_axis_tvalid = 0;
    top.m_axis_tready = 1;
    const uint64_t total_cycles = h.cycle();
    // Read back the counters (a few idle cycles later).
    uint32_t reg_status = h.axil_read(0x0C);
    uint32_t reg_done = h.axil_read(0x10);
    uint32_t reg_id = h.axil_read(0x00);
    uint32_t lo = h.axil_read(0x14);
    uint32_t hi = h.axil_read(0x18);
    uint64_t reg_cycles = (uint64_t(hi) << 32) | lo;
    // Early exits: EXITS, then each EXITj_TAKEN (register map 1.1; 8 exits at most).
    uint32_t reg_exits = h.axil_read(0xD0);
    if (reg_exits > 8) reg_exits = 8;
    std::vector<uint32_t> reg_taken(reg_exits);
    for (uint32_t j = 0; j < reg_exits; ++j) reg_taken[j] = h.axil_read(uint8_t(0xD4 + 4 * j));

#if FRACBNN_TAPS
    for (Tap& t : taps)
        if (std::fclose(t.out) != 0) usage("cannot write a tap file");
#endif
    FILE* o = std::fopen(results_path, "wb");
    if (!o) usage("cannot write the results file");
    std::fwrite("FBNNRES1", 1, 8, o);
    uint32_t classes = kClasses;
    std::fwrite(&count, 4, 1, o);
    std::fwrite(&classes, 4, 1, o);
    for (const ImageResult& r : res) {
        std::fwrite(&r.cls, 4, 1, o);
        std::fwrite(r.scores, 4, kClasses, o);
        std::fwrite(&r.first_in, 8, 1, o);
        std::fwrite(&r.last_in, 8, 1, o);
        std::fwrite(&r.first_out, 8, 1, o);
        std::fwrite(&r.last_out, 8, 1, o);
    }
    std::fwrite(&total_cycles, 8, 1, o);
    std::fwrite(&framing_errors, 4, 1, o);
    std::fwrite(&reg_status, 4, 1, o);
    std::fwrite(&reg_done, 4, 1, o);
    std::fwrite(&reg_id, 4, 1, o);
    std::fwrite(&reg_cycles, 8, 1, o);
    std::fwrite(&reg_exits, 4, 1, o);
    if (reg_exits) std::fwrite(reg_taken.data(), 4, reg_exits, o);
    if (std::fclose(o) != 0) usage("cannot write the results file");
    return status;
}
