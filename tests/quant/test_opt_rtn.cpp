// Optimized RTN: the scale search against an independent f64 brute force over the same
// candidate grid (spec/autoround.md §3), and its effect on the weighted error.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "engine/ops.h"
#include "quant/opt_rtn.h"
#include "quant/qdq.h"

using namespace arq;
using namespace arq::quant;

namespace {

// Σ w·(s·clamp(round(x/s)) − x)² in f64 for one group, levels from the scale itself.
double group_loss(const std::vector<double>& x, const std::vector<double>& w, double s, int bits) {
  const double Q = std::ldexp(1.0, bits - 1);
  double l = 0;
  for (size_t j = 0; j < x.size(); ++j) {
    const double q = std::min(std::max(std::nearbyint(x[j] / s), -Q), Q - 1);
    l += w[j] * (s * q - x[j]) * (s * q - x[j]);
  }
  return l;
}

// Best loss over s' = −g/Q' for Q' in the spec's grid (plus Q itself).
double brute_best(const std::vector<double>& x, const std::vector<double>& w, int bits) {
  const double Q = std::ldexp(1.0, bits - 1);
  double g = 0;
  for (double v : x)
    if (std::fabs(v) > std::fabs(g)) g = v;
  double best = group_loss(x, w, -g / Q, bits);
  const int K = bits == 2 ? 90 : 100;
  const double step = bits == 2 ? 0.01 : 0.0075 * Q;
  for (int k = -K; k <= K; ++k) best = std::min(best, group_loss(x, w, -g / (Q - step * k), bits));
  return best;
}

}  // namespace

TEST_CASE("opt-RTN scales reach the brute-force optimum of the candidate grid") {
  const int64_t out = 6, in = 40, gs = 16;  // ragged: 40 = 2·16 + 8
  const Tensor w = rand_normal({out, in}, 31, 0, 0.2);
  const Tensor imat = rand_uniform({in}, 32, 0.1, 3.0);
  for (int bits : {2, 3, 4, 6}) {
    CAPTURE(bits);
    QuantScheme s{.bits = bits, .group_size = gs};
    const Tensor sc = opt_rtn_scales(w, s, imat);
    const GroupLayout g = make_group_layout(out, in, gs);
    const std::vector<double> wv = to_vector(w), iv = to_vector(imat), sv = to_vector(sc);
    for (int64_t r = 0; r < g.n_rows(); ++r) {
      const int64_t row = r / g.groups_per_row, k = r % g.groups_per_row;
      std::vector<double> x, ww;
      for (int64_t j = k * gs; j < std::min(in, (k + 1) * gs); ++j) {
        x.push_back(static_cast<float>(wv[row * in + j]));
        ww.push_back(static_cast<float>(iv[j]));
      }
      const double best = brute_best(x, ww, bits);
      // The search accumulates in f32 (as AutoRound): candidates within ~n·2^-24 relative of
      // each other may swap, so allow 1e-5 relative.
      CHECK(group_loss(x, ww, sv[r], bits) <= best * (1 + 1e-5) + 1e-12);
    }
  }
}

TEST_CASE("opt-RTN lowers the importance-weighted error of RTN; no imatrix = all ones") {
  const Tensor w = rand_normal({32, 64}, 41, 0, 0.1);
  const Tensor imat = rand_uniform({64}, 42, 0.0, 4.0);
  for (int bits : {2, 3, 4}) {
    QuantScheme s{.bits = bits, .group_size = 32};
    auto werr = [&](const QuantizedLinear& q) {
      const std::vector<double> a = to_vector(dequantize(q, DType::f32)), b = to_vector(w), im = to_vector(imat);
      double e = 0;
      for (size_t k = 0; k < a.size(); ++k) e += im[k % 64] * (a[k] - b[k]) * (a[k] - b[k]);
      return e;
    };
    const double e_rtn = werr(quantize_rtn(w, s)), e_opt = werr(quantize_opt_rtn(w, s, imat));
    CAPTURE(bits);
    CHECK(e_opt < e_rtn);
    const QuantizedLinear a = quantize_opt_rtn(w, s, Tensor()), b = quantize_opt_rtn(w, s, ones({64}));
    CHECK(to_vector(a.codes) == to_vector(b.codes));
    CHECK(to_vector(a.scales) == to_vector(b.scales));
  }
}

TEST_CASE("opt-RTN levels come from the f32 scale, stored scales are rounded to fp16") {
  const Tensor w = rand_normal({4, 32}, 51, 0, 0.3);
  QuantScheme s{.bits = 4, .group_size = 32};
  const Tensor sc = opt_rtn_scales(w, s, Tensor());
  const QuantizedLinear q = quantize_opt_rtn(w, s, Tensor());
  const std::vector<double> wv = to_vector(w), sv = to_vector(sc), cv = to_vector(q.codes), qs = to_vector(q.scales);
  for (int64_t i = 0; i < 4; ++i) {
    CHECK(qs[i] == f16_bits_to_f32(f32_to_f16_bits(static_cast<float>(sv[i]))));
    for (int64_t j = 0; j < 32; ++j) {
      const float z = static_cast<float>(wv[i * 32 + j]) / static_cast<float>(sv[i]);
      CHECK(cv[i * 32 + j] - 8 == std::min(std::max(std::nearbyint(z), -8.0f), 7.0f));
    }
  }
}

TEST_CASE("opt-RTN zero imatrix entries: mostly zero falls back to |x| weighting, else the mean") {
  // one row, one group of 8: 5 of 8 entries zero -> weights |x| + sqrt(Σx²/32) (4 bits)
  const Tensor w = rand_normal({1, 8}, 61, 0, 0.5);
  QuantScheme s{.bits = 4, .group_size = 8};
  const Tensor im = from_vector({0, 0, 0, 0, 0, 1, 2, 3}, {8});
  const std::vector<double> wv = to_vector(w);
  double sx2 = 0;
  for (double x : wv) sx2 += static_cast<float>(x) * static_cast<float>(x);
  std::vector<double> fb;
  for (double x : wv) fb.push_back(std::fabs(static_cast<float>(x)) + std::sqrt(sx2 / 32));
  CHECK(to_vector(opt_rtn_scales(w, s, im)) == to_vector(opt_rtn_scales(w, s, from_vector(fb, {8}))));
  // 2 of 8 zero -> zeros take the mean of the non-zero entries
  const Tensor im2 = from_vector({0, 4, 0, 1, 1, 1, 2, 3}, {8});
  const Tensor im2f = from_vector({2, 4, 2, 1, 1, 1, 2, 3}, {8});
  CHECK(to_vector(opt_rtn_scales(w, s, im2)) == to_vector(opt_rtn_scales(w, s, im2f)));
}

TEST_CASE("opt-RTN applies to int_sym below 8 bits only") {
  CHECK(opt_rtn_applies({.bits = 4}));
  CHECK_FALSE(opt_rtn_applies({.bits = 8}));
  CHECK_FALSE(opt_rtn_applies({.bits = 4, .sym = false}));
  CHECK_FALSE(opt_rtn_applies({.bits = 4, .data_type = "int_sym_gptq"}));
  CHECK_THROWS_AS(quantize_opt_rtn(rand_normal({2, 8}, 1), {.bits = 4, .sym = false}, Tensor()), UsageError);
}
