// bench_autograd: forward + backward of a Llama-shaped decoder block built from ag ops, the
// workload SignRound repeats `iters` times per block.
//
// Block (f32, CPU): RMSNorm → q/k/v projections → RoPE → causal softmax attention → o_proj →
// residual → RMSNorm → SwiGLU MLP → residual, masked-MSE loss against a fixed reference; every
// weight and the input require grad. Default shape: hidden 1024, intermediate 2816, 16 heads,
// seqlen 512, batch 4 (issue 3); a small one (seqlen 128, batch 1) is reported too.
//
// Counters:
//   GFLOP/s          matmul FLOPs of one step (forward 1×, backward 2×) / step time; the
//                    elementwise work is not counted (it is <2% of the FLOPs).
//   matmul_GFLOP/s   the same FLOPs / the time of exactly the step's GEMMs (same shapes and
//                    transposes) called back to back through arq::matmul in this run.
//   pct_of_matmul    GFLOP/s ÷ matmul_GFLOP/s (issue target ≥ 60%).
// Validation before timing: the loss and every gradient are finite, and the directional
// derivative of the loss along a random input direction matches a central difference in f64
// of the same f32 block to 2% (a missing or wrong VJP term is off by far more).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>

#include "autograd/autograd.h"

namespace arq::bench {
namespace {

using namespace arq::ag;

struct Cfg {
  int64_t batch, seq, hidden = 1024, inter = 2816, heads = 16;
  int64_t head_dim() const { return hidden / heads; }
  int64_t tokens() const { return batch * seq; }
  // Matmul FLOPs of forward + backward: each GEMM runs once forward and twice backward.
  double flops() const {
    const double t = static_cast<double>(tokens()), h = static_cast<double>(hidden), i = static_cast<double>(inter);
    const double lin = 2 * t * (4 * h * h + 3 * h * i);
    const double att = 2 * 2 * static_cast<double>(batch * heads) * static_cast<double>(seq * seq) *
                       static_cast<double>(head_dim());
    return 3 * (lin + att);
  }
};

struct Block {
  Cfg c;
  Var n1, n2, wq, wk, wv, wo, wg, wu, wd;  // weights [out, in], norms [h]
  Tensor x, ref, cos, sin, causal;         // x/ref [b, s, h]; cos/sin [s, 1, hd/2]; causal [s, s]

  explicit Block(Cfg cfg, DType dt = DType::f32) : c(cfg) {
    const int64_t h = c.hidden, im = c.inter, hd = c.head_dim();
    auto w = [&](int64_t o, int64_t i, uint64_t seed) {
      return Var(rand_normal({o, i}, seed, 0, 1 / std::sqrt(double(i)), dt), true);
    };
    n1 = Var(rand_uniform({h}, 1, 0.8, 1.2, dt), true);
    n2 = Var(rand_uniform({h}, 2, 0.8, 1.2, dt), true);
    wq = w(h, h, 3), wk = w(h, h, 4), wv = w(h, h, 5), wo = w(h, h, 6);
    wg = w(im, h, 7), wu = w(im, h, 8), wd = w(h, im, 9);
    x = rand_normal({c.batch, c.seq, h}, 10, 0, 1, dt);
    ref = rand_normal({c.batch, c.seq, h}, 11, 0, 1, dt);
    std::vector<double> cv, sv, mv;
    for (int64_t p = 0; p < c.seq; ++p)
      for (int64_t j = 0; j < hd / 2; ++j) {
        const double a = double(p) * std::pow(10000.0, -2.0 * double(j) / double(hd));
        cv.push_back(std::cos(a));
        sv.push_back(std::sin(a));
      }
    for (int64_t i = 0; i < c.seq; ++i)
      for (int64_t j = 0; j < c.seq; ++j) mv.push_back(j > i ? -1e9 : 0.0);
    cos = from_vector(cv, {c.seq, 1, hd / 2}, dt);
    sin = from_vector(sv, {c.seq, 1, hd / 2}, dt);
    causal = from_vector(mv, {c.seq, c.seq}, dt);
  }
  std::vector<Var> params() const { return {n1, n2, wq, wk, wv, wo, wg, wu, wd}; }

  static Var linear(const Var& x, const Var& w) { return matmul(x, transpose(w, 0, 1)); }  // x·Wᵀ

  Var loss(const Var& xin) const {
    const int64_t b = c.batch, s = c.seq, nh = c.heads, hd = c.head_dim();
    Var h = rms_norm(xin, n1, 1e-6);
    auto heads = [&](const Var& t) { return permute(reshape(t, {b, s, nh, hd}), {0, 2, 1, 3}); };  // [b, nh, s, hd]
    // 1/√hd is applied to q ([b, nh, s, hd]) rather than to the [b, nh, s, s] scores: same math, s/hd× less traffic.
    Var q = heads(rope(reshape(linear(h, wq), {b, s, nh, hd}), cos, sin, RopeStyle::rotate_half)) *
            (1.0 / std::sqrt(double(hd)));
    Var k = heads(rope(reshape(linear(h, wk), {b, s, nh, hd}), cos, sin, RopeStyle::rotate_half));
    Var v = heads(linear(h, wv));
    Var scores = matmul(q, transpose(k, -2, -1)) + Var(causal);
    Var o = reshape(permute(matmul(softmax(scores, -1), v), {0, 2, 1, 3}), {b, s, c.hidden});
    Var x1 = xin + linear(o, wo);
    Var h2 = rms_norm(x1, n2, 1e-6);
    Var y = x1 + linear(silu(linear(h2, wg)) * linear(h2, wu), wd);
    return masked_mse(y, ref);
  }
};

// The step's GEMMs, each with the operand layouts the VJPs use, timed through arq::matmul.
double matmul_only_seconds(const Cfg& c) {
  const int64_t t = c.tokens(), h = c.hidden, im = c.inter, bh = c.batch * c.heads, s = c.seq, hd = c.head_dim();
  struct Lin { int64_t in, out; };
  const Lin lins[] = {{h, h}, {h, h}, {h, h}, {h, h}, {h, im}, {h, im}, {im, h}};
  std::vector<std::pair<Tensor, Tensor>> gemms;
  for (const Lin& l : lins) {
    Tensor xin = rand_normal({t, l.in}, 1), w = rand_normal({l.out, l.in}, 2), g = rand_normal({t, l.out}, 3);
    gemms.emplace_back(xin, w.t());   // forward x·Wᵀ
    gemms.emplace_back(g, w);         // dX = G·W
    gemms.emplace_back(xin.t(), g);   // d(Wᵀ) = Xᵀ·G
  }
  Tensor q = rand_normal({bh, s, hd}, 4), k = rand_normal({bh, s, hd}, 5), p = rand_normal({bh, s, s}, 6);
  gemms.emplace_back(q, k.transpose(-2, -1));  // S = Q·Kᵀ
  gemms.emplace_back(p, q);                    // O = P·V
  gemms.emplace_back(p, k);                    // dQ = dS·K
  gemms.emplace_back(p.transpose(-2, -1), q);  // dK = dSᵀ·Q (also dV = Pᵀ·dO)
  gemms.emplace_back(p.transpose(-2, -1), q);
  gemms.emplace_back(q, k.transpose(-2, -1));  // dP = dO·Vᵀ
  std::vector<double> times;
  for (int rep = 0; rep < 3; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    for (auto& [a, b] : gemms) benchmark::DoNotOptimize(matmul(a, b));
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  return times[1];
}

std::string validate(const Block& blk) {
  Var xv(blk.x, true);
  Var l = blk.loss(xv);
  backward(l);
  if (!std::isfinite(l.value().item())) return "loss is not finite";
  for (const Var& p : blk.params()) {
    if (!p.grad().defined()) return "a weight got no gradient";
    if (!std::isfinite(sum_all(cast(p.grad(), DType::f64)).item())) return "non-finite weight gradient";
  }
  // Directional derivative along d: ⟨∇x L, d⟩ vs (L(x + εd) − L(x − εd)) / 2ε. The block runs in
  // f32, so ε = 1e-2 balances truncation (~ε²) against f32 rounding of L (~1e-7·L/ε).
  Tensor d = rand_normal(blk.x.shape(), 99);
  const double bp = sum_all(cast(mul(xv.grad(), d), DType::f64)).item();
  NoGrad ng;
  const double eps = 1e-2;
  const double lp = blk.loss(Var(add(blk.x, affine(d, eps, 0)))).value().item();
  const double lm = blk.loss(Var(add(blk.x, affine(d, -eps, 0)))).value().item();
  const double num = (lp - lm) / (2 * eps);
  if (!(std::abs(bp - num) <= 0.02 * std::max(std::abs(num), 1e-3)))
    return "directional derivative mismatch: backprop " + std::to_string(bp) + " vs numeric " + std::to_string(num);
  for (Var p : blk.params()) p.zero_grad();
  return "";
}

void BM_block_fwd_bwd(benchmark::State& state) {
  const Cfg c{state.range(0), state.range(1)};
  Block blk(c);
  if (std::string err = validate(blk); !err.empty()) {
    state.SkipWithError(err.c_str());
    return;
  }
  const double mm_s = matmul_only_seconds(c);
  Var xv(blk.x, true);
  auto step = [&] {
    Var l = blk.loss(xv);
    backward(l);
    for (Var p : blk.params()) p.zero_grad();
    xv.zero_grad();
  };
  step();  // warm-up (oneDNN kernels, allocator)
  double total_s = 0;
  for (auto _ : state) {
    auto t0 = std::chrono::steady_clock::now();
    step();
    total_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  const double step_s = total_s / static_cast<double>(state.iterations());
  state.counters["GFLOP/s"] = c.flops() * 1e-9 / step_s;
  state.counters["matmul_GFLOP/s"] = c.flops() * 1e-9 / mm_s;
  state.counters["pct_of_matmul"] = 100 * mm_s / step_s;
  state.counters["step_GFLOP"] = c.flops() * 1e-9;
  std::printf("block b=%lld s=%lld: step %.3f s, %.1f GFLOP/s; the same GEMMs alone %.3f s, %.1f GFLOP/s -> %.1f%%\n",
              static_cast<long long>(c.batch), static_cast<long long>(c.seq), step_s, c.flops() * 1e-9 / step_s, mm_s,
              c.flops() * 1e-9 / mm_s, 100 * mm_s / step_s);
}

}  // namespace
}  // namespace arq::bench

int main(int argc, char** argv) {
  using namespace arq::bench;
  benchmark::RegisterBenchmark("block_fwd_bwd/f32", BM_block_fwd_bwd)
      ->Args({1, 128})
      ->Args({4, 512})
      ->ArgNames({"batch", "seq"})
      ->Iterations(3)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("arq_threads", std::to_string(arq::num_threads()));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
