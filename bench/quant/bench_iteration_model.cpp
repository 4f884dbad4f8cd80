// A memory-traffic and FLOP model of one SignRound iteration on a Llama-3-8B-shaped block
// (hidden 4096, intermediate 14336, 32 heads, 8 kv heads, head_dim 128; bf16, W4G128 sym on all 7
// linears), measured by tracing what the engine executes on the CPU and projected to the issue-8
// shape (batch 8 × seqlen 2048) on an H100/H200 — no GPU needed.
//
// Method:
//   - A TracingBackend (and tracing FusedKernels / QdqKernels / AttentionRowsKernels) is installed
//     with the engine's test-only override hooks; it forwards every call to the real CPU kernel and
//     records per call: op, bytes read (each input by its real extent: stride-0 broadcast dims
//     count once), bytes written, and for matmul 2·B·m·n·k FLOPs. One call ≈ one GPU kernel launch
//     (the CUDA backend implements each method with one kernel or one cuBLAS call).
//   - tune_block runs 2 iterations; the trace is on from on_iter(0) to on_iter(1): the optimizer
//     step after iteration 0 and all of iteration 1 (sampling, clamp, qdq, forward, loss, backward,
//     the best-parameter snapshot when the loss improved) — the steady-state iteration, no
//     wrap/freeze. The block function is wrapped to tag the phase (step / forward / loss+backward).
//   - Traced at five batch × seqlen points with attention_core's chunk forced to the target's 128
//     rows; per op key a least-squares (here exact) fit of
//         cost(B, s) = c0 + c1·s + c2·s² + c3·B·s + c4·B·s²
//     (c0 weights/qdq/optimizer; c1, c2 per position / position pair shared by the batch: RoPE
//     tables, the [s, s] mask tiles; c3 per token; c4 per score element — attention is per
//     sequence: B·nh·(s²/2 + 64·s) executed score elements for 128-row causal chunks, not T²),
//     evaluated at 8 × 2048. Two more points, not fitted, check the prediction.
//   - The projection: GEMM classes at max(FLOPs / 780 TFLOP/s, bytes / bandwidth), the rest at the
//     bandwidth (H200 4030 GB/s measured, H100 3350 GB/s nominal; a derated column uses the
//     session-1 per-kernel rates), launches × 5 µs; the issue's metric = useful GEMM FLOPs / rate
//     over the projected time. bench/README.md has the table and the reading of it.
//
//   build-x/bench/quant/bench_iteration_model [--points 1x640,1x1280,1x2048,2x640,2x1280] [--check 4x640]
//                                             [--batch 8] [--seq 2048] [--dump]
//   (--dump: every call of one traced iteration at the first point, in order, and exit)
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "bench/llama_specs.h"
#include "autograd/attention.h"
#include "engine/attention_rows.h"
#include "engine/backend.h"
#include "engine/fused.h"
#include "engine/ops.h"
#include "engine/qdq_fused.h"
#include "models/random_model.h"
#include "quant/signround.h"

using namespace arq;

namespace {

using Clock = std::chrono::steady_clock;

// ---- the trace ---------------------------------------------------------------------------------

// Bytes of the memory a view really spans: broadcast (stride-0) dims count once.
double extent_bytes(const Tensor& t) {
  if (!t.defined()) return 0;
  double n = 1;
  for (int64_t d = 0; d < t.dim(); ++d)
    if (t.stride(d) != 0) n *= static_cast<double>(t.size(d));
  if (t.numel() == 0) n = 0;
  return n * static_cast<double>(t.itemsize());
}

struct Cost {
  double calls = 0, rd = 0, wr = 0, flops = 0;
  void add(const Cost& c) {
    calls += c.calls;
    rd += c.rd;
    wr += c.wr;
    flops += c.flops;
  }
  double bytes() const { return rd + wr; }
};

struct Trace {
  bool on = false;
  bool dump = false;  // --dump: print every traced call in order
  std::string phase = "step";
  int64_t tokens = 0;  // T = batch·seq of the run (matmul classification)
  int64_t seq_len = 0;
  int64_t head_dim = 128;
  // fine key (category | detail) -> cost
  std::map<std::string, Cost> fine;
  // the ordered list of (category, detail) of this trace, for the snapshot tail
  std::vector<std::pair<std::string, std::string>> seq;

  // detail: "<op and dtypes> <shapes>": the part before '@' keys the fit (size-independent), the
  // shapes after it are kept as examples for the listing.
  std::map<std::string, std::map<std::string, double>> shapes;
  void rec(const std::string& cat, const std::string& detail, double rd, double wr, double flops = 0) {
    if (!on) return;
    const size_t at = detail.find('@');
    const std::string key = cat + "|" + phase + "|" + detail.substr(0, at);
    if (at != std::string::npos) shapes[key][detail.substr(at + 1)] += rd + wr;
    if (dump)
      std::printf("  %-14s %-48s %-40s %10.3f MB\n", phase.c_str(), cat.c_str(), detail.c_str(), (rd + wr) / 1e6);
    Cost& c = fine[key];
    c.calls += 1;
    c.rd += rd;
    c.wr += wr;
    c.flops += flops;
    seq.push_back({key, cat});
  }
};
Trace g_trace;

std::string shp(const Tensor& t) { return t.defined() ? t.str() : "-"; }

class TracingBackend final : public Backend {
 public:
  explicit TracingBackend(Backend& real) : r_(real) {}
  const char* name() const override { return "trace"; }
  void copy(const Tensor& src, Tensor& dst) override {
    r_.copy(src, dst);
    const bool cast = src.dtype() != dst.dtype();
    std::string cat = cast ? "cast"
                           : (src.is_contiguous() && dst.is_contiguous() ? "copy (contiguous)"
                                                                         : "copy (strided: contiguous()/narrow write)");
    std::string d = std::string(dtype_name(src.dtype())) + "->" + dtype_name(dst.dtype()) +
                    (src.is_contiguous() ? "" : " src strided") + (dst.is_contiguous() ? "" : " dst strided") + " @" +
                    shp(src);
    g_trace.rec(cat, d, extent_bytes(src), extent_bytes(dst));
  }
  void fill(Tensor& dst, double value) override {
    r_.fill(dst, value);
    g_trace.rec("fill", std::string(dtype_name(dst.dtype())) + " @" + shp(dst), 0, extent_bytes(dst));
  }
  void unary(UnaryOp op, const Tensor& x, Tensor& out, double p0, double p1) override {
    r_.unary(op, x, out, p0, p1);
    g_trace.rec("elementwise unary", std::string(unary_name(op)) + " " + dtype_name(x.dtype()) + " @" + shp(out),
                extent_bytes(x), extent_bytes(out));
  }
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) override {
    r_.binary(op, a, b, out);
    const std::string n = binary_name(op);
    const std::string cat = (op == BinaryOp::add || op == BinaryOp::sub)   ? "elementwise add/sub"
                            : (op == BinaryOp::mul || op == BinaryOp::div) ? "elementwise mul/div"
                                                                           : "elementwise other binary";
    g_trace.rec(cat,
                n + " " + dtype_name(a.dtype()) + " @" + shp(out) +
                    (extent_bytes(a) < extent_bytes(out) || extent_bytes(b) < extent_bytes(out) ? " (bcast)" : ""),
                extent_bytes(a) + extent_bytes(b), extent_bytes(out));
  }
  void where(const Tensor& c, const Tensor& a, const Tensor& b, Tensor& out) override {
    r_.where(c, a, b, out);
    g_trace.rec("elementwise other binary", std::string("where ") + dtype_name(out.dtype()) + " @" + shp(out),
                extent_bytes(c) + extent_bytes(a) + extent_bytes(b), extent_bytes(out));
  }
  void reduce(ReduceOp op, const Tensor& x, int64_t axis, Tensor& out) override {
    r_.reduce(op, x, axis, out);
    g_trace.rec(
        "reductions",
        std::string(reduce_name(op)) + " " + dtype_name(x.dtype()) + " @" + shp(x) + " axis " + std::to_string(axis),
        extent_bytes(x), extent_bytes(out));
  }
  void matmul(const Tensor& a, const Tensor& bm, Tensor& out) override {
    r_.matmul(a, bm, out);
    const int64_t B = a.size(0), m = a.size(1), k = a.size(2), n = bm.size(2);
    const double f = 2.0 * double(B) * double(m) * double(n) * double(k);
    std::string cat;
    const std::string mnk =
        "[" + std::to_string(m) + "," + std::to_string(k) + "]x[" + std::to_string(k) + "," + std::to_string(n) + "]";
    // The sizes are chosen so that T and s are none of the linears' widths nor head_dim.
    // (S = QKᵀ and O = P·V of the first chunk have one shape: the attention GEMMs are one class.)
    if (k == g_trace.head_dim || n == g_trace.head_dim)
      cat = "matmul attention (QK^T, PV, dP, dQ, dK, dV per chunk)";
    else if (B * m == g_trace.tokens)
      cat = "matmul linear fwd/dX [T,k]x[k,n]";
    else if (k == g_trace.tokens || k == g_trace.seq_len)
      cat = "matmul linear dW [m,T]x[T,n]";
    else
      cat = "matmul other";
    g_trace.rec(cat, std::string(dtype_name(a.dtype())) + " @B=" + std::to_string(B) + " " + mnk,
                extent_bytes(a) + extent_bytes(bm), extent_bytes(out), f);
  }
  void softmax(const Tensor& x, Tensor& out, bool log) override {
    r_.softmax(x, out, log);
    g_trace.rec("softmax", std::string(log ? "log_softmax @" : "softmax @") + shp(x), extent_bytes(x),
                extent_bytes(out));
  }
  void rms_norm(const Tensor& x, const Tensor& w, double eps, Tensor& out) override {
    r_.rms_norm(x, w, eps, out);
    g_trace.rec("rms_norm (fwd + fused bwd)", "fwd @" + shp(x), extent_bytes(x) + extent_bytes(w), extent_bytes(out));
  }
  void rope(const Tensor& x, const Tensor& c, const Tensor& s, RopeStyle st, Tensor& out) override {
    r_.rope(x, c, s, st, out);
    g_trace.rec("rope", "rope @" + shp(x), extent_bytes(x) + extent_bytes(c) + extent_bytes(s), extent_bytes(out));
  }
  void index_select(const Tensor& x, int64_t dim, const Tensor& index, Tensor& out) override {
    r_.index_select(x, dim, index, out);
    g_trace.rec("index ops", "index_select @" + shp(x), extent_bytes(out) + extent_bytes(index), extent_bytes(out));
  }
  void index_add(Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) override {
    r_.index_add(out, dim, index, src);
    g_trace.rec("index ops", "index_add @" + shp(src), 2 * extent_bytes(src) + extent_bytes(index), extent_bytes(src));
  }
  void topk(const Tensor& x, int64_t k, Tensor& v, Tensor& i) override {
    r_.topk(x, k, v, i);
    g_trace.rec("index ops", "topk @" + shp(x), extent_bytes(x), extent_bytes(v) + extent_bytes(i));
  }
  void arange(double start, double step, Tensor& out) override {
    r_.arange(start, step, out);
    g_trace.rec("fill", "arange @" + shp(out), 0, extent_bytes(out));
  }
  void random(RandomKind kind, uint64_t seed, double a, double b, Tensor& out) override {
    r_.random(kind, seed, a, b, out);
    g_trace.rec("fill", "random @" + shp(out), 0, extent_bytes(out));
  }
  void synchronize() override { r_.synchronize(); }

 private:
  Backend& r_;
};

class TracingFused final : public FusedKernels {
 public:
  explicit TracingFused(FusedKernels& real) : r_(real) {}
  void swiglu(const Tensor& gate, const Tensor& up, Tensor& h) override {
    r_.swiglu(gate, up, h);
    g_trace.rec("swiglu (fwd + bwd)", "fwd @" + shp(gate), extent_bytes(gate) + extent_bytes(up), extent_bytes(h));
  }
  void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& g, Tensor& dgate, Tensor& dup) override {
    r_.swiglu_backward(gate, up, g, dgate, dup);
    g_trace.rec("swiglu (fwd + bwd)", "bwd @" + shp(gate), extent_bytes(gate) + extent_bytes(up) + extent_bytes(g),
                extent_bytes(dgate) + extent_bytes(dup));
  }
  void rms_norm_backward(const Tensor& x, const Tensor& w, const Tensor& g, double eps, Tensor& dx,
                         Tensor& dw) override {
    r_.rms_norm_backward(x, w, g, eps, dx, dw);
    g_trace.rec("rms_norm (fwd + fused bwd)", "bwd @" + shp(x), extent_bytes(x) + extent_bytes(w) + extent_bytes(g),
                extent_bytes(dx) + extent_bytes(dw));
  }
  void sign_step(Tensor& p, const Tensor& d, double lr) override {
    r_.sign_step(p, d, lr);
    g_trace.rec("sign_sgd_step (fused)", std::string(dtype_name(p.dtype())) + " @" + shp(p),
                extent_bytes(p) + extent_bytes(d), extent_bytes(p));
  }

 private:
  FusedKernels& r_;
};

double qdq_in_bytes(const QdqInputs& x) {
  return extent_bytes(x.wg) + extent_bytes(x.wmin) + extent_bytes(x.wmax) + extent_bytes(x.v) + extent_bytes(x.alpha) +
         extent_bytes(x.beta);
}

class TracingQdq final : public QdqKernels {
 public:
  explicit TracingQdq(QdqKernels& real) : r_(real) {}
  void forward(const QdqInputs& x, const QdqSpec& s, Tensor& w_hat, QdqCodes& codes) override {
    r_.forward(x, s, w_hat, codes);
    g_trace.rec(
        "qdq fused fwd", "bf16 out @[" + std::to_string(s.out) + "," + std::to_string(s.in) + "]", qdq_in_bytes(x),
        extent_bytes(w_hat) + extent_bytes(codes.codes) + extent_bytes(codes.scales) + extent_bytes(codes.zeros));
  }
  void backward(const QdqInputs& x, const QdqSpec& s, const Tensor& g, QdqGrads& gr) override {
    r_.backward(x, s, g, gr);
    g_trace.rec(
        "qdq fused bwd",
        std::string("g ") + dtype_name(g.dtype()) + " @[" + std::to_string(s.out) + "," + std::to_string(s.in) + "]",
        qdq_in_bytes(x) + extent_bytes(g), extent_bytes(gr.dv) + extent_bytes(gr.dalpha) + extent_bytes(gr.dbeta));
  }
  void dequantize(const Tensor& codes, const Tensor& scales, const Tensor& zeros, const Tensor& mins, const QdqSpec& s,
                  Tensor& out) override {
    r_.dequantize(codes, scales, zeros, mins, s, out);
    g_trace.rec("qdq dequantize", "@" + shp(codes),
                extent_bytes(codes) + extent_bytes(scales) + extent_bytes(zeros) + extent_bytes(mins),
                extent_bytes(out));
  }

 private:
  QdqKernels& r_;
};

class TracingRows final : public AttentionRowsKernels {
 public:
  explicit TracingRows(AttentionRowsKernels& real) : r_(real) {}
  void probs(const Tensor& scores, const Tensor& mask, const Tensor& dead, const Tensor& dp, const Tensor& d_row,
             const AttentionRowsParams& prm, Tensor& p, Tensor& ds) override {
    r_.probs(scores, mask, dead, dp, d_row, prm, p, ds);
    g_trace.rec("attention rows (probs fwd / probs+dS bwd)",
                std::string(ds.defined() ? "bwd @" : "fwd @") + shp(scores),
                extent_bytes(scores) + extent_bytes(mask) + extent_bytes(dead) + extent_bytes(dp) + extent_bytes(d_row),
                extent_bytes(p) + extent_bytes(ds));
  }

 private:
  AttentionRowsKernels& r_;
};

// ---- the model ---------------------------------------------------------------------------------

models::DecoderSpec spec_8b() { return bench::llama_8b_block_spec(); }

struct RunResult {
  int64_t batch = 1, seq = 0;
  std::map<std::string, Cost> fine;
  std::map<std::string, std::map<std::string, double>> shapes;
  double wall_s = 0;
  bool snapshot = false;  // the traced iteration improved the loss (best-parameter clone ran)
  int64_t snapshot_calls = 0;
};

RunResult trace_one(const models::CausalLM& lm, const models::BlockWeights& bw,
                    const std::vector<quant::TunableLinear>& linears, int64_t batch, int64_t seq) {
  const DType dt = DType::bf16;
  const models::BlockInputs in = lm.block_inputs({.batch = batch, .seq = seq});
  std::string* phase = &g_trace.phase;
  const quant::BlockFn fn = [&](const ag::Var& h, const quant::WeightMap& w) {
    *phase = "forward";
    ag::Var y = lm.block_forward(bw, h, in, w);
    *phase = "loss+backward";
    return y;
  };
  // Random targets: the traffic does not depend on their values (the reference forward would
  // cost one more block forward per size on this small machine).
  quant::TuneData data;
  data.inputs = rand_normal({batch, seq, 4096}, 2, 0, 1, dt);
  data.targets = rand_normal({batch, seq, 4096}, 3, 0, 1, dt);
  quant::SignRoundOptions o;
  o.iters = 2;
  o.batch_size = batch;
  o.compute_dtype = dt;
  const bool dump = g_trace.dump;
  g_trace = Trace{};
  g_trace.dump = dump;
  g_trace.tokens = batch * seq;
  g_trace.seq_len = seq;
  double first_loss = 0;
  RunResult r;
  r.batch = batch;
  r.seq = seq;
  o.on_iter = [&](int64_t i, int64_t, double loss) {
    if (i == 0) {
      first_loss = loss;
      g_trace.on = true;
      g_trace.phase = "step";
    } else if (i == 1) {
      g_trace.on = false;
      r.snapshot = loss < first_loss;
    }
  };
  quant::PyRandom rng(42);
  const auto t0 = Clock::now();
  (void)quant::tune_block(fn, linears, data, o, rng);
  r.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
  // The best-parameter snapshot is the trailing run of f32 contiguous copies in the backward phase.
  if (r.snapshot) {
    for (auto it = g_trace.seq.rbegin(); it != g_trace.seq.rend(); ++it) {
      if (it->second != "copy (contiguous)" || it->first.find("|loss+backward|f32->f32") == std::string::npos) break;
      ++r.snapshot_calls;
    }
    // re-tag those calls
    int64_t k = 0;
    for (auto it = g_trace.seq.rbegin(); k < r.snapshot_calls; ++it, ++k) {
      Cost& c = g_trace.fine[it->first];
      Cost one{1, c.rd / c.calls, c.wr / c.calls, 0};
      c.calls -= 1;
      c.rd -= one.rd;
      c.wr -= one.wr;
      const std::string nk =
          "best-params snapshot (clone V, alpha, beta)|snapshot|" + it->first.substr(it->first.rfind('|') + 1);
      g_trace.fine[nk].add(one);
    }
  }
  r.fine = g_trace.fine;
  r.shapes = g_trace.shapes;
  return r;
}

// The cost model: y(B, s) = c0 + c1·s + c2·s² + c3·B·s + c4·B·s² (s in units of 1024 to keep the
// normal equations well conditioned). Terms: per iteration (weights, qdq, optimizer); per position
// shared by the batch (RoPE tables, chunk bookkeeping); per position and sequence pair shared by
// the batch (the [s, s] mask read per chunk); per token (activations); per score element (attention
// tiles, B·s² with the causal half).
constexpr int kTerms = 5;
std::array<double, kTerms> basis(double batch, double seq) {
  const double x = seq / 1024.0;
  return {1.0, x, x * x, batch * x, batch * x * x};
}

// Least squares over the runs (exact when there are as many runs as terms).
std::array<double, kTerms> fit(const std::vector<std::array<double, kTerms>>& rows, const std::vector<double>& y) {
  double m[kTerms][kTerms + 1] = {};
  for (size_t r = 0; r < rows.size(); ++r)
    for (int i = 0; i < kTerms; ++i) {
      for (int j = 0; j < kTerms; ++j) m[i][j] += rows[r][i] * rows[r][j];
      m[i][kTerms] += rows[r][i] * y[r];
    }
  for (int c = 0; c < kTerms; ++c) {  // Gauss–Jordan with partial pivoting
    int p = c;
    for (int r = c + 1; r < kTerms; ++r)
      if (std::fabs(m[r][c]) > std::fabs(m[p][c])) p = r;
    for (int j = 0; j <= kTerms; ++j) std::swap(m[c][j], m[p][j]);
    for (int r = 0; r < kTerms; ++r) {
      if (r == c || m[c][c] == 0) continue;
      const double f = m[r][c] / m[c][c];
      for (int j = 0; j <= kTerms; ++j) m[r][j] -= f * m[c][j];
    }
  }
  std::array<double, kTerms> out{};
  for (int i = 0; i < kTerms; ++i) out[i] = m[i][i] == 0 ? 0 : m[i][kTerms] / m[i][i];
  return out;
}

double eval(const std::array<double, kTerms>& c, double batch, double seq) {
  const auto b = basis(batch, seq);
  double y = 0;
  for (int i = 0; i < kTerms; ++i) y += c[i] * b[i];
  return y;
}

std::string category_of(const std::string& key) { return key.substr(0, key.find('|')); }

}  // namespace

// "BxS,BxS,..." -> pairs
std::vector<std::pair<int64_t, int64_t>> parse_points(const char* p) {
  std::vector<std::pair<int64_t, int64_t>> out;
  while (*p) {
    char* e = nullptr;
    const int64_t b = std::strtoll(p, &e, 10);
    if (*e != 'x') return {};
    const int64_t sq = std::strtoll(e + 1, &e, 10);
    out.push_back({b, sq});
    p = e;
    if (*p == ',') ++p;
  }
  return out;
}

int main(int argc, char** argv) {
  // Fit points (batch x seq) and one validation point predicted from the fit. T = B·s must not be
  // 1024, 4096 or 14336 (a linear's width) nor 128 (head_dim): the matmul classes go by shape.
  auto points = parse_points("1x640,1x1280,1x2048,2x640,2x1280");
  auto check = parse_points("4x640,1x2560");
  int64_t tb = 8, ts = 2048;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--points") == 0 && i + 1 < argc)
      points = parse_points(argv[++i]);
    else if (std::strcmp(argv[i], "--check") == 0 && i + 1 < argc)
      check = parse_points(argv[++i]);
    else if (std::strcmp(argv[i], "--dump") == 0)
      g_trace.dump = true;
    else if (std::strcmp(argv[i], "--batch") == 0 && i + 1 < argc)
      tb = std::atoll(argv[++i]);
    else if (std::strcmp(argv[i], "--seq") == 0 && i + 1 < argc)
      ts = std::atoll(argv[++i]);
    else {
      std::printf("usage: bench_iteration_model [--points 1x640,...] [--check 4x640] [--batch B] [--seq S] [--dump]\n");
      return 2;
    }
  }
  if (points.size() < static_cast<size_t>(kTerms)) {
    std::printf("--points needs at least %d BxS points (two batch sizes, three lengths)\n", kTerms);
    return 2;
  }
  // attention_core's chunk: 128 query rows at the target (8 x 2048: the 256 MiB score budget over
  // 2 MiB f32 score rows); forced for the traced sizes too, so every run chunks like the target.
  {
    ag::AttentionOptions ao;
    ao.mask = Tensor::empty({1, 1, ts, ts}, DType::f32);  // the block's causal mask, as the model passes it
    const int64_t rows = ag::attention_chunk_rows(ao, tb, 32, ts, ts, DType::bf16);
    std::printf("target batch %lld x seq %lld: attention chunk rows %lld (forced for the traced runs)\n",
                static_cast<long long>(tb), static_cast<long long>(ts), static_cast<long long>(rows));
    setenv("ARQ_ATTENTION_CHUNK_ROWS", std::to_string(rows).c_str(), 1);
  }
  const models::DecoderSpec spec = spec_8b();
  const auto t_setup = Clock::now();
  const models::CausalLM lm = models::random_causal_lm(spec, {.seed = 1, .dtype = DType::bf16});
  const models::BlockWeights bw = lm.load_block(0);
  std::vector<quant::TunableLinear> linears;
  double params = 0;
  for (const auto& li : lm.block_linears(0)) {
    linears.push_back({li.name, bw.at(li.weight_name()), {.bits = 4, .group_size = 128}});
    params += static_cast<double>(li.in_features * li.out_features);
  }
  std::printf("Llama-3-8B block, bf16, W4G128 sym on 7 linears (%.1f M weights); setup %.1f s\n", params / 1e6,
              std::chrono::duration<double>(Clock::now() - t_setup).count());

  TracingBackend tb_cpu(cpu_backend());
  TracingFused tf(cpu_fused_kernels());
  TracingQdq tq(cpu_qdq_kernels());
  TracingRows tr(cpu_attention_rows_kernels());
  set_backend_override(DeviceType::cpu, &tb_cpu);
  set_fused_kernels_override(DeviceType::cpu, &tf);
  set_qdq_kernels_override(DeviceType::cpu, &tq);
  set_attention_rows_kernels_override(DeviceType::cpu, &tr);
  std::vector<RunResult> runs;
  auto all_points = points;
  all_points.insert(all_points.end(), check.begin(), check.end());
  if (g_trace.dump) {  // one traced iteration at the first point, call by call
    (void)trace_one(lm, bw, linears, points[0].first, points[0].second);
    return 0;
  }
  for (const auto& [b, sq] : all_points) {
    runs.push_back(trace_one(lm, bw, linears, b, sq));
    const RunResult& r = runs.back();
    Cost tot;
    for (const auto& [k, c] : r.fine) tot.add(c);
    std::printf(
        "  traced %lld x %lld: %.0f calls, %.3f GB, %.1f GFLOP; tune (2 iters + wrap/freeze) %.1f s; snapshot in "
        "the traced iteration: %s (%lld calls)\n",
        static_cast<long long>(r.batch), static_cast<long long>(r.seq), tot.calls, tot.bytes() / 1e9, tot.flops / 1e9,
        r.wall_s, r.snapshot ? "yes" : "no", static_cast<long long>(r.snapshot_calls));
    std::fflush(stdout);
  }
  set_backend_override(DeviceType::cpu, nullptr);
  set_fused_kernels_override(DeviceType::cpu, nullptr);
  set_qdq_kernels_override(DeviceType::cpu, nullptr);
  set_attention_rows_kernels_override(DeviceType::cpu, nullptr);

  // ---- fit and project -------------------------------------------------------------------------
  // The snapshot (a clone of V, α, β when the loss improved) is not fitted: it is weight-sized
  // and happens in some iterations only; it is listed as its own row at its traced size.
  const size_t nfit = points.size();
  std::vector<std::array<double, kTerms>> rows;
  for (size_t i = 0; i < nfit; ++i) rows.push_back(basis(double(runs[i].batch), double(runs[i].seq)));
  const double B = double(tb), S = double(ts);
  std::map<std::string, bool> keys;
  for (const RunResult& r : runs)
    for (const auto& [k, c] : r.fine) keys[k] = true;
  std::map<std::string, Cost> cat_proj, fine_proj;
  std::vector<Cost> check_pred(check.size()), check_meas(check.size());  // snapshots left out of both
  for (const auto& [k, unused] : keys) {
    std::vector<double> calls(nfit), rd(nfit), wr(nfit), fl(nfit);
    Cost snap;
    for (size_t i = 0; i < runs.size(); ++i) {
      auto it = runs[i].fine.find(k);
      const Cost c = it == runs[i].fine.end() ? Cost{} : it->second;
      if (k.find("snapshot") != std::string::npos && c.bytes() > snap.bytes()) snap = c;
      if (i < nfit) {
        calls[i] = c.calls;
        rd[i] = c.rd;
        wr[i] = c.wr;
        fl[i] = c.flops;
      } else if (k.find("snapshot") == std::string::npos) {
        check_meas[i - nfit].add(c);
      }
    }
    Cost p;
    if (k.find("snapshot") != std::string::npos) {
      p = snap;
    } else {
      const auto cc = fit(rows, calls), cr = fit(rows, rd), cw = fit(rows, wr), cf = fit(rows, fl);
      p = {std::max(0.0, eval(cc, B, S)), std::max(0.0, eval(cr, B, S)), std::max(0.0, eval(cw, B, S)),
           std::max(0.0, eval(cf, B, S))};
      for (size_t j = 0; j < check.size(); ++j) {
        const double cb = double(check[j].first), cs = double(check[j].second);
        check_pred[j].add({eval(cc, cb, cs), eval(cr, cb, cs), eval(cw, cb, cs), eval(cf, cb, cs)});
      }
    }
    fine_proj[k] = p;
    cat_proj[category_of(k)].add(p);
  }
  for (size_t j = 0; j < check.size(); ++j) {
    const Cost& pr = check_pred[j];
    const Cost& me = check_meas[j];
    std::printf(
        "validation %lld x %lld (not fitted): predicted %.0f calls, %.3f GB, %.1f GFLOP; traced %.0f calls, %.3f GB, "
        "%.1f GFLOP (bytes %+.2f%%)\n",
        static_cast<long long>(check[j].first), static_cast<long long>(check[j].second), pr.calls, pr.bytes() / 1e9,
        pr.flops / 1e9, me.calls, me.bytes() / 1e9, me.flops / 1e9, 100 * (pr.bytes() / me.bytes() - 1));
  }
  // The snapshot when no traced iteration improved the loss: a clone of V [n_rows, G], α and β
  // [n_rows] (f32) per linear, read once and written once (21 copy calls).
  if (!cat_proj.count("best-params snapshot (clone V, alpha, beta)")) {
    double elems = 0;
    for (const auto& l : linears) elems += double(l.weight.size(0)) * double(l.weight.size(1)) * (1.0 + 2.0 / 128);
    const Cost snap{3.0 * double(linears.size()), 4 * elems, 4 * elems, 0};
    cat_proj["best-params snapshot (clone V, alpha, beta)"] = snap;
    fine_proj
        ["best-params snapshot (clone V, alpha, beta)|snapshot|f32->f32 (computed: no traced iteration improved)"] =
            snap;
  }

  const double gemm_rate = 780e12, h100_peak = 989e12, bw_h200 = 4030e9, bw_h100 = 3350e9, launch_s = 5e-6;
  const std::string snap_cat = "best-params snapshot (clone V, alpha, beta)";
  // Fraction of the device copy rate each kind of kernel reached on the H200 (README "GPU (CUDA)",
  // session 1): add / cast 98–99%, SiLU 83%, row-broadcast multiply 74%, sum 66%, RMSNorm and
  // softmax 34–36%. The row kernels (attention rows, RoPE) are taken as RMSNorm/softmax; the fused
  // qdq has not run on a GPU yet: 50% is an assumption.
  auto efficiency = [](const std::string& cat) {
    if (cat.rfind("elementwise unary", 0) == 0 || cat.rfind("swiglu", 0) == 0) return 0.83;
    if (cat.rfind("elementwise mul", 0) == 0 || cat.rfind("elementwise other", 0) == 0) return 0.74;
    if (cat.rfind("reductions", 0) == 0) return 0.66;
    if (cat.rfind("rms_norm", 0) == 0 || cat.rfind("softmax", 0) == 0 || cat.rfind("attention rows", 0) == 0 ||
        cat.rfind("rope", 0) == 0)
      return 0.35;
    if (cat.rfind("qdq", 0) == 0) return 0.5;
    return 0.98;  // copies, casts, add/sub, fills, index ops
  };
  std::printf("\n== One SignRound iteration projected to batch %lld x seqlen %lld (T = %lld), bf16 W4G128 ==\n",
              static_cast<long long>(tb), static_cast<long long>(ts), static_cast<long long>(tb * ts));
  std::printf("%-56s %7s %9s %9s %9s %9s %9s %9s\n", "category", "calls", "GB read", "GB write", "GB total", "GFLOP",
              "ms H100", "ms derate");
  std::vector<std::pair<std::string, Cost>> cats(cat_proj.begin(), cat_proj.end());
  std::sort(cats.begin(), cats.end(), [](const auto& a, const auto& b) { return a.second.bytes() > b.second.bytes(); });
  Cost tot, mm, nonmm;
  // time per category: GEMMs max(FLOP time, byte time) (roofline), the rest bytes / bandwidth
  double t200 = 0, t100 = 0, t100d = 0;
  for (const auto& [cat, c] : cats) {
    const bool gemm = c.flops > 0;
    const double a200 = gemm ? std::max(c.flops / gemm_rate, c.bytes() / bw_h200) : c.bytes() / bw_h200;
    const double a100 = gemm ? std::max(c.flops / gemm_rate, c.bytes() / bw_h100) : c.bytes() / bw_h100;
    const double a100d = gemm ? a100 : c.bytes() / (bw_h100 * efficiency(cat));
    std::printf("%-56s %7.0f %9.3f %9.3f %9.3f %9.1f %9.2f %9.2f%s\n", cat.c_str(), c.calls, c.rd / 1e9, c.wr / 1e9,
                c.bytes() / 1e9, c.flops / 1e9, a100 * 1e3, a100d * 1e3, cat == snap_cat ? "  (not in the total)" : "");
    if (cat == snap_cat) continue;
    tot.add(c);
    (gemm ? mm : nonmm).add(c);
    t200 += a200;
    t100 += a100;
    t100d += a100d;
  }
  std::printf("%-56s %7.0f %9.3f %9.3f %9.3f %9.1f %9.2f %9.2f\n", "TOTAL (without the snapshot)", tot.calls,
              tot.rd / 1e9, tot.wr / 1e9, tot.bytes() / 1e9, tot.flops / 1e9, t100 * 1e3, t100d * 1e3);

  // Useful FLOPs as bench_signround_cuda counts them: 6·T·P + 1.5 × the causal half of attention.
  const double T = B * S;
  const double att = 4.0 * B * spec.num_attention_heads * S * S * spec.head_dim;
  const double useful = 6.0 * T * params + 3.0 * att / 2;
  const double t_gemm_only = useful / gemm_rate;
  const double launches = tot.calls * launch_s;
  std::printf(
      "\nGEMM FLOPs executed %.1f TFLOP; useful as bench_signround_cuda counts them (6·T·P + 1.5·causal attention): "
      "%.1f TFLOP\n",
      mm.flops / 1e12, useful / 1e12);
  std::printf(
      "GEMM rate %.0f TFLOP/s (bf16, measured on an H200 in session 1 at these shapes; H100 SXM dense bf16 peak "
      "%.0f)\n",
      gemm_rate / 1e12, h100_peak / 1e12);
  std::printf("GEMM-only time (the issue's yardstick) = useful / rate = %.2f ms; GEMMs with the roofline: %.2f ms\n",
              t_gemm_only * 1e3, (mm.flops > 0 ? t100 - nonmm.bytes() / bw_h100 : 0) * 1e3);
  std::printf(
      "non-GEMM bytes %.2f GB: %.2f ms at %.0f GB/s (H200 measured copy), %.2f ms at %.0f GB/s (H100 SXM nominal)\n",
      nonmm.bytes() / 1e9, nonmm.bytes() / bw_h200 * 1e3, bw_h200 / 1e9, nonmm.bytes() / bw_h100 * 1e3, bw_h100 / 1e9);
  std::printf("kernel launches %.0f x %.0f us = %.2f ms (an upper bound: launches overlap kernels that run longer)\n",
              tot.calls, launch_s * 1e6, launches * 1e3);
  std::printf("\n%-44s %12s %12s %22s\n", "projected ms / iteration", "no launches", "+ launches",
              "fraction of GEMM-only");
  auto line = [&](const char* name, double t) {
    std::printf("%-44s %12.2f %12.2f %14.0f%% / %.0f%%\n", name, t * 1e3, (t + launches) * 1e3, 100 * t_gemm_only / t,
                100 * t_gemm_only / (t + launches));
  };
  line("H200 copy BW 4030 GB/s, 780 TFLOP/s", t200);
  line("H100 BW 3350 GB/s, 780 TFLOP/s", t100);
  line("H100 BW, kernels derated (session-1 rates)", t100d);
  if (cat_proj.count(snap_cat))
    std::printf("+ %.2f ms (H100 BW) in an iteration that improves the loss (the best-parameter snapshot)\n",
                cat_proj[snap_cat].bytes() / bw_h100 * 1e3);
  std::printf("32 blocks x 200 iterations (H100 BW, derated, + launches, no wrap/freeze): %.1f min\n",
              32 * 200 * (t100d + launches) / 60);

  // per phase
  std::map<std::string, Cost> phases;
  for (const auto& [k, c] : fine_proj) {
    const size_t a1 = k.find('|'), a2 = k.find('|', a1 + 1);
    phases[k.substr(a1 + 1, a2 - a1 - 1)].add(c);
  }
  std::printf("\nby phase (step = optimizer step, clamp, batch sampling, qdq forward of the 7 linears):\n");
  for (const auto& [ph, c] : phases)
    std::printf("  %-14s %7.0f calls %9.3f GB %9.1f GFLOP\n", ph.c_str(), c.calls, c.bytes() / 1e9, c.flops / 1e9);

  const RunResult& big = runs[nfit - 1 < 2 ? 0 : 2];  // examples from the largest batch-1 run
  std::printf(
      "\n== top 25 byte movers (category | phase | op), projected; e.g. = shapes at the traced %lld x %lld ==\n",
      static_cast<long long>(big.batch), static_cast<long long>(big.seq));
  std::vector<std::pair<std::string, Cost>> fines(fine_proj.begin(), fine_proj.end());
  std::sort(fines.begin(), fines.end(),
            [](const auto& a, const auto& b) { return a.second.bytes() > b.second.bytes(); });
  for (size_t i = 0; i < fines.size() && i < 25; ++i) {
    std::printf("%6.2f GB %6.0f calls  %s\n", fines[i].second.bytes() / 1e9, fines[i].second.calls,
                fines[i].first.c_str());
    auto it = big.shapes.find(fines[i].first);
    if (it == big.shapes.end()) continue;
    std::vector<std::pair<std::string, double>> ex(it->second.begin(), it->second.end());
    std::sort(ex.begin(), ex.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    for (size_t j = 0; j < ex.size() && j < 3; ++j)
      std::printf("%24s e.g. %s (%.3f GB traced)\n", "", ex[j].first.c_str(), ex[j].second / 1e9);
  }
  return 0;
}
