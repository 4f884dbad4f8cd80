// A tiny Llama-style block (RMSNorm, GQA attention with RoPE and a causal mask, SwiGLU MLP) in
// f64 with random weights: backprop against finite differences w.r.t. input and every weight.
#include <cmath>

#include "grad_helpers.h"

namespace arq::ag {
namespace {

constexpr int64_t kB = 2, kS = 5, kH = 8, kHeads = 2, kKv = 1, kHd = 4, kI = 12;

// Host-computed rotary tables [s, 1, hd/2] (rotate_half), angle p·θ^(−2j/hd).
std::pair<Tensor, Tensor> rope_tables() {
  std::vector<double> c, s;
  for (int64_t p = 0; p < kS; ++p)
    for (int64_t j = 0; j < kHd / 2; ++j) {
      const double a = static_cast<double>(p) * std::pow(100.0, -2.0 * static_cast<double>(j) / kHd);
      c.push_back(std::cos(a));
      s.push_back(std::sin(a));
    }
  return {from_vector(c, {kS, 1, kHd / 2}, DType::f64), from_vector(s, {kS, 1, kHd / 2}, DType::f64)};
}

Var linear(const Var& x, const Var& w) { return matmul(x, transpose(w, 0, 1)); }  // x·Wᵀ

// v = {x, wq, wk, wv, wo, wg, wu, wd, n1, n2}
Var block(const std::vector<Var>& v, const Tensor& cos, const Tensor& sin, const Tensor& causal) {
  const Var& x = v[0];                                                          // [b, s, h]
  Var h = rms_norm(x, v[8], 1e-6);
  Var q = rope(reshape(linear(h, v[1]), {kB, kS, kHeads, kHd}), cos, sin, RopeStyle::rotate_half);
  Var k = rope(reshape(linear(h, v[2]), {kB, kS, kKv, kHd}), cos, sin, RopeStyle::rotate_half);
  Var val = reshape(linear(h, v[3]), {kB, kS, kKv, kHd});
  // GQA: each kv head serves kHeads/kKv query heads ([b, kv, 1, s, hd] -> [b, heads, s, hd]).
  auto spread = [](const Var& t) {
    Var p = unsqueeze(permute(t, {0, 2, 1, 3}), 2);
    return reshape(expand(p, {kB, kKv, kHeads / kKv, kS, kHd}), {kB, kHeads, kS, kHd});
  };
  Var qh = permute(q, {0, 2, 1, 3});                                            // [b, heads, s, hd]
  Var scores = matmul(qh, transpose(spread(k), -2, -1)) * (1.0 / std::sqrt(double(kHd)));
  Var p = softmax(scores + Var(causal), -1);                                    // [b, heads, s, s]
  Var o = reshape(permute(matmul(p, spread(val)), {0, 2, 1, 3}), {kB, kS, kH});
  Var x1 = x + linear(o, v[4]);
  Var h2 = rms_norm(x1, v[9], 1e-6);
  Var mlp = linear(silu(linear(h2, v[5])) * linear(h2, v[6]), v[7]);
  return x1 + mlp;
}

TEST_CASE("composite: attention + MLP block matches finite differences") {
  auto [cos, sin] = rope_tables();
  std::vector<double> m;
  for (int64_t i = 0; i < kS; ++i)
    for (int64_t j = 0; j < kS; ++j) m.push_back(j > i ? -1e30 : 0.0);
  Tensor causal = from_vector(m, {kS, kS}, DType::f64);  // [s, s] additive mask
  const double ws = 0.4;  // weight scale keeping activations O(1)
  std::vector<Tensor> inputs = {
      test::randn({kB, kS, kH}, 201),    test::randn({kHeads * kHd, kH}, 202, ws), test::randn({kKv * kHd, kH}, 203, ws),
      test::randn({kKv * kHd, kH}, 204, ws), test::randn({kH, kHeads * kHd}, 205, ws), test::randn({kI, kH}, 206, ws),
      test::randn({kI, kH}, 207, ws),    test::randn({kH, kI}, 208, ws),
      test::randu({kH}, 209, 0.5, 1.5),  test::randu({kH}, 210, 0.5, 1.5)};
  test::Fn fn = [=](const std::vector<Var>& v) { return block(v, cos, sin, causal); };
  // Composition of ~30 ops: cancellation error grows to ~1e-9 relative at ε = 1e-6; 1e-6 holds.
  test::expect_grad("llama block", fn, inputs);
  test::expect_grad("llama block", fn, inputs, /*non_contiguous=*/true);
  // Through a scalar loss (the tuning path): masked MSE against a reference output.
  Tensor ref = test::randn({kB, kS, kH}, 211);
  Tensor mask = from_vector({1, 1, 1, 1, 0, 1, 1, 1, 0, 0}, {kB, kS, 1}, DType::f64);
  test::expect_grad("block + masked mse",
                    [=](const std::vector<Var>& v) { return masked_mse(block(v, cos, sin, causal), ref, mask); }, inputs);
}

}  // namespace
}  // namespace arq::ag
