// attention_core (autograd/attention.h) on CUDA: forward and the q/k/v gradients against the same
// op on the CPU (which tests/autograd/test_attention.cpp checks against the composition, a plain
// f64 loop and finite differences), and against the composition on the device itself. f32 and
// bf16; GQA groups 1 and 4; causal flag, sliding window, a left-padding mask with fully masked
// rows; chunks of 3 rows and the budget's default.
#include <doctest/doctest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "autograd/attention.h"
#include "autograd/autograd.h"
#include "engine/attention_rows.h"
#include "tests/cuda/cuda_test_util.h"

using namespace arq;
using namespace arq::cudatest;

namespace {

Device test_device() { return on_cpu_selfcheck() ? Device::cpu() : Device::cuda(0); }

enum class Mk { causal, window, padding };

struct Grads {
  Tensor out, dq, dk, dv;   // f64 on the CPU
};

Grads run(bool core, const Tensor& q0, const Tensor& k0, const Tensor& v0, const Tensor& w0, ag::AttentionOptions o,
          Device dev) {
  ag::Var q(q0.to(dev), true), k(k0.to(dev), true), v(v0.to(dev), true);
  if (o.mask.defined()) o.mask = o.mask.to(dev);
  ag::Var out = core ? ag::attention_core(q, k, v, o) : ag::attention_composed(q, k, v, o);
  ag::backward(ag::sum_all(out * ag::Var(w0.to(dev))));
  auto f = [](const Tensor& t) { return t.to(Device::cpu()).to(DType::f64).contiguous(); };
  return {f(out.value()), f(q.grad()), f(k.grad()), f(v.grad())};
}

// Normwise: max |a − b| ≤ tol · max(max |b|, 1) (the terms of every sum are O(1) here).
bool close(const char* what, const Tensor& a, const Tensor& b, double tol, const std::string& ctx) {
  const std::vector<double> x = to_vector(a), y = to_vector(b);
  double err = 0, scale = 1;
  bool finite = true;
  for (size_t i = 0; i < x.size(); ++i) {
    finite = finite && std::isfinite(x[i]);
    err = std::max(err, std::fabs(x[i] - y[i]));
    scale = std::max(scale, std::fabs(y[i]));
  }
  const bool ok = finite && err <= tol * scale;
  if (!ok)
    MESSAGE(ctx, " ", std::string(what), ": max err ", err, " > ", tol, " · ", scale, finite ? "" : " (not finite)");
  return ok;
}

// Tolerances: both devices run the same engine ops; they differ in GEMM accumulation order
// (cuBLAS vs oneDNN, f32 accumulation both), expf/logf (≤ 2 ulp vs ≤ 1) and softmax internals.
// f32: hd + s_kv ≤ 230 accumulated terms, three chained GEMMs in a gradient: 2^-23·230·8 ≈ 2e-4
// → 5e-4. bf16: P, dS and every GEMM output are rounded to bf16 (2^-8 relative) at points where
// the f32 values differ by the above, so a value may round either way: a few bf16 ulps of the
// largest term, and the dK/dV chunk partials are summed over ≤ 34 chunks (√34·2^-8 ≈ 0.023) → 2^-4.
double tol_of(DType t) { return t == DType::bf16 ? 0x1p-4 : 5e-4; }

ag::AttentionOptions options(Mk mk, int64_t b, int64_t s, int64_t hd, int64_t chunk) {
  ag::AttentionOptions o{.scaling = 1 / std::sqrt(double(hd)), .causal = true, .chunk_rows = chunk};
  o.flash = false;   // this table checks the chunked path (test_cuda_flash.cpp checks the flash kernels)
  if (mk == Mk::window) o.window = 5;
  if (mk == Mk::padding) {   // element n: first 2n + 1 keys padded (its first queries see nothing)
    std::vector<double> m;
    for (int64_t n = 0; n < b; ++n)
      for (int64_t i = 0; i < s; ++i)
        for (int64_t j = 0; j < s; ++j) m.push_back(j > 2 * n ? 0.0 : double(ag::kAttentionMaskedScore));
    o.mask = from_vector(m, {b, 1, s, s});
  }
  return o;
}

const char* mk_name(Mk m) { return m == Mk::causal ? "causal" : m == Mk::window ? "window5" : "padding"; }

}  // namespace

TEST_CASE("cuda op attention_core: forward and q/k/v gradients on CUDA match the CPU and the device composition") {
  const Device dev = test_device();
  int cases = 0, passed = 0;
  for (DType dt : {DType::f32, DType::bf16})
    for (int64_t g : {1, 4})
      for (int64_t s : {7, 33, 100, 300})   // 300 with chunk 0: three chunks of 128 rows
        for (Mk mk : {Mk::causal, Mk::window, Mk::padding})
          for (int64_t chunk : {int64_t{3}, int64_t{0}}) {
            if (s == 300 && chunk != 0) continue;   // keeps the CPU self-check short
            const int64_t b = 2, nkv = 2, nh = nkv * g, hd = s == 33 ? 64 : 16;
            const Tensor q = make_values({b, nh, s, hd}, dt, Fill::wide, 1 + uint64_t(s));
            const Tensor k = make_values({b, nkv, s, hd}, dt, Fill::signed_unit, 2 + uint64_t(s));
            const Tensor v = make_values({b, nkv, s, hd}, dt, Fill::wide, 3 + uint64_t(s));
            const Tensor w = make_values({b, nh, s, hd}, dt, Fill::signed_unit, 4 + uint64_t(s));
            const ag::AttentionOptions o = options(mk, b, s, hd, chunk);
            const std::string ctx = cat(dtype_name(dt), " g", g, " s", s, " hd", hd, " ", mk_name(mk), " chunk", chunk);
            const Grads cpu = run(true, q, k, v, w, o, Device::cpu());
            const Grads got = run(true, q, k, v, w, o, dev);
            const Grads comp = run(false, q, k, v, w, o, dev);
            const double tol = tol_of(dt);
            bool ok = true;
            for (const auto& [name, a, ref] : {std::tuple{"out", got.out, cpu.out}, std::tuple{"dq", got.dq, cpu.dq},
                                               std::tuple{"dk", got.dk, cpu.dk}, std::tuple{"dv", got.dv, cpu.dv}})
              ok = close(name, a, ref, tol, ctx + " vs cpu") && ok;
            for (const auto& [name, a, ref] : {std::tuple{"out", got.out, comp.out}, std::tuple{"dq", got.dq, comp.dq},
                                               std::tuple{"dk", got.dk, comp.dk}, std::tuple{"dv", got.dv, comp.dv}})
              ok = close(name, a, ref, tol, ctx + " vs device composition") && ok;
            ++cases;
            passed += ok;
          }
  MESSAGE(passed, " of ", cases, " attention_core cases on ", dev.str());
  CHECK(passed == cases);
}

// ---- the fused row kernels (engine/attention_rows.h) -----------------------------------------
// attention_probs / attention_probs_backward on CUDA against the CPU kernel (which
// tests/autograd/test_attention_rows.cpp checks bit for bit against the engine-op chain): score
// tiles [b, h, r, g, k] with k = 1, 7, 33 (one warp per row), 600 (128 threads), 3000 (512
// threads, registers) and 9000 (512 threads re-reading the row); an additive mask with fully
// masked rows (batch 2, and batch 1 broadcast), dead rows, causal / window structure at offsets.
// Tolerance: both sides compute the masked scores, the max and dP − D by the same rounded f32
// (f64) steps; they differ in exp (CUDA expf ≤ 2 ulp for p_j vs f32 of an f64 exp; the f64 sums
// agree to ~k·2^-53) and in the sum's order: p is within ~4 ulp → libm's 8·eps of the compute
// type (+ 1 eps of a 16-bit output), and dS = p·(dP − D) adds one rounding → 10·eps. Results
// below 2^-126 lose relative precision in expf: atol = 64 subnormal ulps of the compute type (the
// ×(dP − D) ≤ ~8 of dS included), or one ulp of a 16-bit output near 0.
TEST_CASE("cuda op attention_probs: fused attention rows on CUDA match the CPU kernel") {
  std::vector<OpCase> cases;
  for (DType dt : {DType::f32, DType::bf16, DType::f16, DType::f64})
    for (int64_t k : {1, 7, 33, 600, 3000, 9000})
      for (int variant = 0; variant < 4; ++variant) {   // none, mask b2 + dead, mask b1 + causal, window + mask
        if (k == 9000 && dt != DType::f32 && dt != DType::bf16) continue;   // keeps the CPU self-check short
        const int64_t b = 2, h = 2, r = 3, g = 2;
        const DType soft = dt == DType::f64 ? DType::f64 : DType::f32;
        const int64_t mb = variant == 2 ? 1 : 2;
        std::vector<double> m, dead;
        for (int64_t n = 0; n < mb; ++n)
          for (int64_t i = 0; i < r; ++i) {
            const bool row_dead = n == mb - 1 && i == 1;
            for (int64_t j = 0; j < k; ++j)
              m.push_back(row_dead || (j < n && j < k - 1) ? double(-FLT_MAX) : -0.25 * double(j % 4));
            dead.push_back(row_dead ? 1.0 : 0.0);
          }
        AttentionRowsParams prm;
        if (variant == 2) prm = {.q_first = k - 2, .k_first = 1, .causal = true, .window = 0};
        if (variant == 3) prm = {.q_first = k / 2, .k_first = 0, .causal = true, .window = 5};
        const bool with_mask = variant != 0;
        auto same = [](const Tensor& t) { return t; };
        std::vector<Input> in{make_input({b, h, r, g, k}, dt, Fill::wide, View::contiguous, 31 + uint64_t(k)),
                              make_input({b, h, r, g, k}, dt, Fill::signed_unit, View::contiguous, 32 + uint64_t(k)),
                              make_input({b, h, r, g}, soft, Fill::signed_unit, View::contiguous, 33)};
        if (with_mask) {
          in.push_back({from_vector(m, {mb, r, k}, soft), same});
          in.push_back({from_vector(dead, {mb, r}, DType::u8), same});
        }
        const OpFn op = [prm, with_mask, variant](const std::vector<Tensor>& x) -> Outputs {
          const Tensor mask = with_mask ? x[3] : Tensor();
          const Tensor dd = with_mask && variant == 1 ? x[4] : Tensor();
          auto [p, ds] = attention_probs_backward(x[0], mask, dd, x[1], x[2], prm);
          return {attention_probs(x[0], mask, dd, prm), p, ds};
        };
        const double atol = std::max(is16(dt) ? tiny_of(dt) : 0.0, 64 * tiny_of(soft));
        // f64: the row sums' order (sequential on the CPU, a tree on CUDA) shows, at ~k·eps (seen
        // on an H100: 113 eps at k = 600); in f32 the sums are f64 and the order is invisible.
        const double order = dt == DType::f64 ? 2.0 * double(k) * eps_compute(dt) : 0.0;
        const Tol tp{(is16(dt) ? eps_of(dt) : 0) + 8 * eps_compute(dt) + order, atol};
        const Tol tds{(is16(dt) ? eps_of(dt) : 0) + 10 * eps_compute(dt) + order, atol};
        cases.push_back({cat("attention_probs ", dtype_name(dt), " k", k, " variant", variant), in, op, {tp, tp, tds}});
      }
  run_op_table(cases, "attention row cases");
}

TEST_CASE("cuda op attention_core: fused rows and the op chain agree on the device") {
  // Same device, two row implementations: the values differ only by the CUDA softmax's and the
  // fused kernel's own roundings (both expf-based), far inside the composition tolerance above.
  const Device dev = test_device();
  for (DType dt : {DType::f32, DType::bf16})
    for (Mk mk : {Mk::causal, Mk::window, Mk::padding}) {
      const int64_t b = 2, nkv = 2, nh = 4, s = 33, hd = 16;
      const Tensor q = make_values({b, nh, s, hd}, dt, Fill::wide, 41);
      const Tensor k = make_values({b, nkv, s, hd}, dt, Fill::signed_unit, 42);
      const Tensor v = make_values({b, nkv, s, hd}, dt, Fill::wide, 43);
      const Tensor w = make_values({b, nh, s, hd}, dt, Fill::signed_unit, 44);
      ag::AttentionOptions o = options(mk, b, s, hd, 5);
      const Grads fused = run(true, q, k, v, w, o, dev);
      o.fused_rows = false;
      const Grads chain = run(true, q, k, v, w, o, dev);
      const std::string ctx = cat(dtype_name(dt), " ", mk_name(mk), " fused vs chain on ", dev.str());
      for (const auto& [name, a, ref] : {std::tuple{"out", fused.out, chain.out}, std::tuple{"dq", fused.dq, chain.dq},
                                         std::tuple{"dk", fused.dk, chain.dk}, std::tuple{"dv", fused.dv, chain.dv}})
        CHECK(close(name, a, ref, tol_of(dt), ctx));
    }
}
