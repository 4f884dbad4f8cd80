// ag::attention_flash with the CPU flash kernels (engine/flash_attention.h, the f64 plain-loop
// reference that the CUDA kernels are tested against) against ag::attention_composed, the
// composition of independently tested ops (suite grad): forward and the gradients of q, k, v
// for GQA groups 1/2/4, full / causal / sliding-window attention, queries after cached keys
// (s < s_kv), odd sizes and strided (sequence-major) inputs; the builders' errors; and when the
// model's block inputs say their masks are causal structure only.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "autograd/attention.h"
#include "autograd/autograd.h"
#include "engine/flash_attention.h"
#include "tests/attention_test_util.h"
#include "models/causal_lm.h"
#include "models/family.h"
#include "models/random_model.h"
#include "tests/autograd/grad_helpers.h"

namespace arq::ag {
namespace {

enum class Kind { full, causal, window };

const char* kind_name(Kind k) { return k == Kind::full ? "full" : k == Kind::causal ? "causal" : "window3"; }

AttentionOptions options_of(Kind kind, int64_t hd) {
  AttentionOptions o;
  o.scaling = 1.0 / std::sqrt(double(hd));
  o.causal = kind != Kind::full;
  o.window = kind == Kind::window ? 3 : 0;
  return o;
}

struct Result {
  Tensor out, dq, dk, dv;   // f64 copies
};

Result run(bool flash, const Tensor& q0, const Tensor& k0, const Tensor& v0, const AttentionOptions& o, uint64_t wseed) {
  Var q(q0, true), k(k0, true), v(v0, true);
  Var out = flash ? attention_flash(q, k, v, o) : attention_composed(q, k, v, o);
  const Tensor w = rand_normal(out.shape(), wseed, 0, 1, out.dtype());
  backward(sum_all(out * Var(w)));
  auto f = [](const Tensor& t) { return t.to(DType::f64).contiguous(); };
  return {f(out.value()), f(q.grad()), f(k.grad()), f(v.grad())};
}

TEST_CASE("attention_flash (CPU reference kernels) equals the composition: values and gradients") {
  int cases = 0;
  for (DType dt : {DType::f64, DType::f32, DType::bf16})
    for (int64_t g : {1, 2, 4})
      for (Kind kind : {Kind::full, Kind::causal, Kind::window})
        for (auto [s, past] : {std::pair<int64_t, int64_t>{1, 0}, {5, 0}, {37, 0}, {6, 3}}) {
          if (dt == DType::bf16 && s == 1) continue;
          const int64_t b = 2, nkv = 2, nh = nkv * g, hd = g == 2 ? 64 : 8, skv = s + past;
          const Tensor q = arq::test::seq_major_normal(b, nh, s, hd, 1 + uint64_t(s * g), dt);
          const Tensor k = arq::test::seq_major_normal(b, nkv, skv, hd, 2 + uint64_t(s * g), dt);
          const Tensor v = rand_normal({b, nkv, skv, hd}, 3 + uint64_t(s * g), 0, 1, dt);   // contiguous
          const AttentionOptions o = options_of(kind, hd);
          const Result fl = run(true, q, k, v, o, 7), ref = run(false, q, k, v, o, 7);
          // f64: both sides are f64 arithmetic (the reference sums exactly, the composition by
          // GEMMs); f32 / bf16: the composition rounds scores, P and every GEMM result to its
          // dtype, the reference only its outputs (bf16: P to bf16 gives ~2^-9 per term).
          const double tol = dt == DType::f64 ? 1e-12 : dt == DType::f32 ? 2e-5 : 2e-2;
          const std::string ctx = cat(dtype_name(dt), " g", g, " s", s, " past", past, " hd", hd, " ", kind_name(kind));
          INFO(ctx);
          CHECK(arq::test::normwise_rel_err(fl.out, ref.out) <= tol);
          CHECK(arq::test::normwise_rel_err(fl.dq, ref.dq) <= tol);
          CHECK(arq::test::normwise_rel_err(fl.dk, ref.dk) <= tol);
          CHECK(arq::test::normwise_rel_err(fl.dv, ref.dv) <= tol);
          ++cases;
        }
  CHECK(cases > 80);
}

TEST_CASE("attention_flash: the output and dq are views of sequence-major memory; lse is log-sum-exp") {
  const int64_t b = 1, nh = 2, s = 4, hd = 8;
  const Tensor q = rand_normal({b, nh, s, hd}, 11, 0, 1, DType::f64);
  const Tensor k = rand_normal({b, nh, s, hd}, 12, 0, 1, DType::f64);
  const Tensor v = rand_normal({b, nh, s, hd}, 13, 0, 1, DType::f64);
  const FlashForward f = flash_attention_forward(q, k, v, {.scaling = 0.5, .causal = true});
  CHECK(f.o.permute({0, 2, 1, 3}).is_contiguous());
  CHECK(f.lse.shape() == Shape({b, nh, s}));
  // Row (0, 1, 2): keys 0..2 visible; lse = log Σ exp(0.5·q·k_j), by hand.
  const std::vector<double> qv = to_vector(q), kv = to_vector(k), lse = to_vector(f.lse);
  double sum = 0;
  for (int64_t j = 0; j <= 2; ++j) {
    double d = 0;
    for (int64_t c = 0; c < hd; ++c) d += qv[size_t((1 * s + 2) * hd + c)] * kv[size_t((1 * s + j) * hd + c)];
    sum += std::exp(0.5 * d);
  }
  CHECK(lse[size_t(1 * s + 2)] == doctest::Approx(std::log(sum)).epsilon(1e-12));
}

TEST_CASE("flash attention builders reject what the kernels cannot run, naming the op") {
  const Tensor q = rand_normal({1, 4, 5, 8}, 1, 0, 1, DType::f32);
  const Tensor k = rand_normal({1, 2, 5, 8}, 2, 0, 1, DType::f32);
  const Tensor k3 = rand_normal({1, 3, 5, 8}, 2, 0, 1, DType::f32);
  const Tensor k_short = rand_normal({1, 2, 3, 8}, 2, 0, 1, DType::f32);
  CHECK_THROWS_AS(flash_attention_forward(q, k3, k3, {}), ShapeError);                          // 3 ∤ 4 heads
  CHECK_THROWS_AS(flash_attention_forward(q, k.to(DType::f64), k, {}), DTypeError);
  CHECK_THROWS_AS(flash_attention_forward(q, k_short, k_short, {.causal = true}), ShapeError);  // s > s_kv
  CHECK_THROWS_AS(flash_attention_forward(q, k, k, {.window = 2}), UsageError);                // window needs causal
  const FlashForward f = flash_attention_forward(q, k, k, {.causal = true});
  CHECK_THROWS_AS(flash_attention_backward(q, k, k, f.o, f.lse.narrow(2, 0, 4), f.o, {.causal = true}), ShapeError);
  CHECK_THROWS_AS(flash_attention_backward(q, k, k, f.o.to(DType::bf16), f.lse, f.o, {.causal = true}), ShapeError);
  AttentionOptions o;
  o.mask = zeros({1, 1, 5, 5});
  CHECK_THROWS_AS(attention_flash(Var(q), Var(k), Var(k), o), UsageError);
  try {
    (void)flash_attention_forward(q, k3, k3, {});
    FAIL("no error");
  } catch (const ShapeError& e) {
    CHECK(std::string(e.what()).find("flash_attention_forward") != std::string::npos);
  }
  // The CPU never takes the flash path on its own: attention_core stays the chunked reference.
  CHECK_FALSE(attention_flash_applies(Var(q), Var(k), Var(k), AttentionOptions{.causal = true}));
  // No CUDA kernel for f32 or head_dim 8 (and none at all without a GPU build).
  CHECK_FALSE(cuda_flash_attention_kernels().supports(DType::f32, 128));
  CHECK_FALSE(cuda_flash_attention_kernels().supports(DType::bf16, 8));
}

TEST_CASE("block inputs: masks are structural without padding or segments, not with a padded position") {
  const models::DecoderSpec spec = models::tiny_spec("llama");
  const models::CausalLM lm = models::random_causal_lm(spec, {.seed = 1});
  CHECK(lm.block_inputs({.batch = 2, .seq = 4}).masks_structural);
  CHECK(lm.block_inputs({.batch = 2, .seq = 4, .padding_mask = ones({2, 4})}).masks_structural);
  const Tensor pad = from_vector({1, 1, 1, 1, 0, 1, 1, 1}, {2, 4});
  CHECK_FALSE(lm.block_inputs({.batch = 2, .seq = 4, .padding_mask = pad}).masks_structural);
  CHECK_FALSE(lm.block_inputs({.batch = 2, .seq = 4, .segment_ids = from_vector({0, 0, 1, 1, 0, 0, 0, 0}, {2, 4})})
                  .masks_structural);
}

}  // namespace
}  // namespace arq::ag
