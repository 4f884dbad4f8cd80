// qdq forward: the frozen fast path and the differentiable path against a plain-loop reference
// written from spec/autoround.md §1.7–1.8 (per element, groups found from the column index).
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "autograd/ops.h"
#include "engine/ops.h"
#include "quant/qdq.h"

using namespace arq;
using namespace arq::quant;

namespace {

float to_scale(float x, DType d) {
  if (d == DType::f16) return f16_bits_to_f32(f32_to_f16_bits(x));
  if (d == DType::bf16) return bf16_bits_to_f32(f32_to_bf16_bits(x));
  return x;
}

struct Ref {
  std::vector<int> codes;      // [out·in] unsigned levels
  std::vector<float> scales;   // per group id
  std::vector<int> zeros;
  std::vector<float> w_hat;    // [out·in]
};

// Group id and position of element (i, j) for a requested group size.
struct Pos {
  int64_t group, col;
};
Pos pos_of(int64_t i, int64_t j, int64_t out, int64_t in, int64_t gs) {
  if (gs == 0) return {0, i * in + j};
  if (gs == -1 || in < gs) return {i, j};
  const int64_t ng = (in + gs - 1) / gs;
  return {i * ng + j / gs, j % gs};
}

// v: grouped [n_groups, G] values or empty; a, b: per group or empty.
Ref reference(const std::vector<float>& w, int64_t out, int64_t in, const QuantScheme& s, int64_t n_groups, int64_t G,
              const std::vector<float>& v, const std::vector<float>& a, const std::vector<float>& b) {
  const QDataType t = s.qtype();
  const float thr = to_scale(static_cast<float>(s.scale_dtype == DType::f32 ? 1e-8 : 1e-5), s.scale_dtype);
  std::vector<float> lo(n_groups, 0.f), hi(n_groups, 0.f);
  for (int64_t i = 0; i < out; ++i)
    for (int64_t j = 0; j < in; ++j) {
      const int64_t g = pos_of(i, j, out, in, s.group_size).group;
      lo[g] = std::min(lo[g], w[i * in + j]);
      hi[g] = std::max(hi[g], w[i * in + j]);
    }
  Ref r;
  r.scales.resize(n_groups);
  r.zeros.resize(n_groups);
  const float Q = static_cast<float>(1 << (s.bits - 1)), maxq = static_cast<float>((1 << s.bits) - 1);
  for (int64_t g = 0; g < n_groups; ++g) {
    const float wmin = a.empty() ? lo[g] : lo[g] * a[g];
    const float wmax = b.empty() ? hi[g] : hi[g] * b[g];
    float sc;
    int zp;
    if (t == QDataType::int_sym) {
      // signed extreme: +|min| when the negative side is strictly larger, else −max
      const float M = (wmax < -wmin) ? -wmin : -wmax;
      sc = to_scale(M / Q, s.scale_dtype);
      sc = sc < 0 ? std::min(sc, -thr) : std::max(sc, thr);
      zp = static_cast<int>(Q);
    } else if (t == QDataType::int_asym) {
      sc = std::max(to_scale((wmax - wmin) / maxq, s.scale_dtype), thr);
      zp = static_cast<int>(std::nearbyint(-wmin / sc));
    } else {
      const float m = std::max(std::fabs(wmin), wmax);
      sc = std::max(to_scale(2.0f * m / maxq, s.scale_dtype), thr);
      zp = static_cast<int>(Q);
    }
    r.scales[g] = sc;
    r.zeros[g] = zp;
  }
  r.codes.resize(w.size());
  r.w_hat.resize(w.size());
  for (int64_t i = 0; i < out; ++i)
    for (int64_t j = 0; j < in; ++j) {
      const Pos p = pos_of(i, j, out, in, s.group_size);
      const float sc = r.scales[p.group];
      float z = w[i * in + j] / sc;
      if (!v.empty()) z += v[p.group * G + p.col];
      int u;
      float level;
      if (t == QDataType::int_sym) {
        level = std::min(std::max(std::nearbyint(z), -Q), Q - 1);
        u = static_cast<int>(level + Q);
      } else {
        const float q = std::min(std::max(std::nearbyint(z) + static_cast<float>(r.zeros[p.group]), 0.f), maxq);
        u = static_cast<int>(q);
        level = q - static_cast<float>(r.zeros[p.group]);
      }
      r.codes[i * in + j] = u;
      r.w_hat[i * in + j] = sc * level;
    }
  return r;
}

std::vector<float> as_floats(const Tensor& t) {
  std::vector<float> out;
  for (double d : to_vector(t)) out.push_back(static_cast<float>(d));
  return out;
}

void check_against_reference(const Tensor& w, const QuantScheme& s, bool with_params, uint64_t seed) {
  const int64_t out = w.size(0), in = w.size(1);
  const GroupLayout g = make_group_layout(out, in, s.group_size);
  Tensor v, a, b;
  if (with_params) {
    v = rand_uniform({g.n_rows(), g.group_len}, seed + 1, -0.45, 0.45);
    a = rand_uniform({g.n_rows(), 1}, seed + 2, 0.5, 1.0);
    b = rand_uniform({g.n_rows(), 1}, seed + 3, 0.5, 1.0);
  }
  const Ref ref = reference(as_floats(w), out, in, s, g.n_rows(), g.group_len, v.defined() ? as_floats(v) : std::vector<float>{},
                            a.defined() ? as_floats(a) : std::vector<float>{}, b.defined() ? as_floats(b) : std::vector<float>{});
  const QuantizedLinear q = quantize_with_params(w, s, v, a, b);
  CHECK(q.scales.dtype() == s.scale_dtype);
  CHECK(q.scales.shape() == g.param_shape());
  const std::vector<double> codes = to_vector(q.codes), scales = to_vector(q.scales), zeros = to_vector(q.zeros);
  int bad = 0;
  for (size_t k = 0; k < codes.size(); ++k) bad += codes[k] != ref.codes[k];
  CHECK_MESSAGE(bad == 0, bad, " codes differ");
  bad = 0;
  for (size_t k = 0; k < scales.size(); ++k) bad += static_cast<float>(scales[k]) != ref.scales[k] || zeros[k] != ref.zeros[k];
  CHECK_MESSAGE(bad == 0, bad, " scales/zeros differ");
  // dequantize = the reference ŵ exactly (one f32 product of the same operands)
  const std::vector<double> wh = to_vector(dequantize(q, DType::f32));
  bad = 0;
  for (size_t k = 0; k < wh.size(); ++k) bad += static_cast<float>(wh[k]) != ref.w_hat[k];
  CHECK_MESSAGE(bad == 0, bad, " dequantized weights differ");
  // the differentiable path gives the same ŵ bit for bit
  QdqParams p;
  if (with_params) {
    p.v = ag::Var(v, true);
    p.alpha = ag::Var(a, true);
    p.beta = ag::Var(b, true);
  }
  const Tensor wg = to_groups(w, g);
  const ag::Var wq = qdq_weight(wg, group_range(wg), p, s, g, DType::f32);
  CHECK(wq.shape() == Shape({out, in}));
  const std::vector<double> wa = to_vector(wq.value());
  bad = 0;
  for (size_t k = 0; k < wa.size(); ++k) bad += static_cast<float>(wa[k]) != ref.w_hat[k];
  CHECK_MESSAGE(bad == 0, bad, " qdq_weight elements differ from the reference");
}

}  // namespace

TEST_CASE("group layouts: per channel, per tensor, ragged last group, rows shorter than a group") {
  GroupLayout g = make_group_layout(7, 13, 4);
  CHECK(g.group_len == 4);
  CHECK(g.groups_per_row == 4);
  CHECK(g.n_rows() == 28);
  CHECK(g.padded_in() == 16);
  g = make_group_layout(7, 13, -1);
  CHECK((g.group_len == 13 && g.groups_per_row == 1 && g.n_rows() == 7));
  g = make_group_layout(7, 13, 32);  // in < G: one unpadded group per row
  CHECK((g.group_len == 13 && g.groups_per_row == 1));
  g = make_group_layout(7, 13, 0);
  CHECK((g.per_tensor && g.n_rows() == 1 && g.group_len == 91));
  CHECK(g.param_shape() == Shape({1, 1}));
  CHECK_THROWS_AS(make_group_layout(0, 13, 4), ShapeError);

  // to_groups pads with zeros; from_groups drops the padding
  Tensor w = rand_normal({7, 13}, 5);
  g = make_group_layout(7, 13, 5);
  Tensor wg = to_groups(w, g);
  CHECK(wg.shape() == Shape({21, 5}));
  CHECK(wg.at({2, 3}) == 0.0);  // row 0, group 2 holds columns 10..12 then two zeros
  CHECK(wg.at({2, 2}) == w.at({0, 12}));
  CHECK(to_vector(from_groups(wg, g)) == to_vector(w));
}

TEST_CASE("RTN and qdq match the plain-loop reference: every flavour, bits 2..8, odd shapes") {
  const Tensor w = rand_normal({7, 13}, 11, 0, 0.5);
  for (QDataType t : {QDataType::int_sym, QDataType::int_asym, QDataType::int_sym_gptq}) {
    for (int bits = 2; bits <= 8; ++bits) {
      for (int64_t gs : {-1L, 0L, 4L, 5L, 32L}) {
        for (bool params : {false, true}) {
          QuantScheme s{.bits = bits, .group_size = gs, .sym = t != QDataType::int_asym, .data_type = qdata_type_name(t)};
          CAPTURE(qdata_type_name(t));
          CAPTURE(bits);
          CAPTURE(gs);
          CAPTURE(params);
          check_against_reference(w, s, params, 100 + bits);
        }
      }
    }
  }
}

TEST_CASE("scale dtypes: f16 (default), bf16 and f32 scales are exact in their dtype") {
  const Tensor w = rand_normal({5, 64}, 3, 0, 0.02);
  for (DType sd : {DType::f16, DType::bf16, DType::f32}) {
    QuantScheme s{.bits = 4, .group_size = 32, .scale_dtype = sd};
    CAPTURE(dtype_name(sd));
    check_against_reference(w, s, true, 7);
    const QuantizedLinear q = quantize_rtn(w, s);
    CHECK(q.scales.dtype() == sd);
  }
}

TEST_CASE("int_sym: signed scale, full range, ties to the positive side, round half to even") {
  // one group of 8: the positive extreme 8 dominates -> M = -8, s = -1 (Q = 8 at 4 bits), so
  // 8 maps to level -8 and all 16 levels are reachable
  Tensor w = from_vector({8, -4, 2.5, 3.5, -0.5, 0.5, -7.0, 1.5}, {1, 8});
  QuantScheme s{.bits = 4, .group_size = 8};
  QuantizedLinear q = quantize_rtn(w, s);
  CHECK(q.scales.at({0, 0}) == -1.0);
  CHECK(q.zeros.at({0, 0}) == 8);
  // x/s = -8, 4, -2.5, -3.5, 0.5, -0.5, 7, -1.5 -> half to even: -8, 4, -2, -4, 0, -0, 7, -2
  const std::vector<double> levels = {-8, 4, -2, -4, 0, 0, 7, -2};
  for (int j = 0; j < 8; ++j) CHECK(q.codes.at({0, j}) - 8 == levels[j]);
  // a tie between the extremes: |min| == max -> the positive side wins (negative scale)
  q = quantize_rtn(from_vector({-2, 2, 1, 0}, {1, 4}), {.bits = 2, .group_size = 4});
  CHECK(q.scales.at({0, 0}) == -1.0);
  // negative side strictly larger: positive scale; the extreme maps to -Q
  q = quantize_rtn(from_vector({-4, 2, 1, 0}, {1, 4}), {.bits = 2, .group_size = 4});
  CHECK(q.scales.at({0, 0}) == 2.0);
  CHECK(q.codes.at({0, 0}) == 0);  // level -2 + Q
}

TEST_CASE("all-zero groups get the threshold scale and the zero point level") {
  Tensor w = zeros({2, 8});
  for (QDataType t : {QDataType::int_sym, QDataType::int_asym, QDataType::int_sym_gptq}) {
    QuantScheme s{.bits = 3, .group_size = 4, .sym = t != QDataType::int_asym, .data_type = qdata_type_name(t)};
    QuantizedLinear q = quantize_rtn(w, s);
    const float thr = f16_bits_to_f32(f32_to_f16_bits(1e-5f));
    for (double sc : to_vector(q.scales)) CHECK(sc == thr);  // −0 counts as non-negative
    for (double d : to_vector(dequantize(q))) CHECK(d == 0.0);
  }
}

TEST_CASE("bf16 weights: dequantized in bf16, codes from the f32-promoted arithmetic") {
  const Tensor w32 = rand_normal({6, 40}, 21, 0, 0.1);
  const Tensor w = w32.to(DType::bf16);
  QuantScheme s{.bits = 4, .group_size = 16};
  check_against_reference(w.to(DType::f32), s, true, 9);  // the reference sees the bf16 values
  const QuantizedLinear qa = quantize_rtn(w, s), qb = quantize_rtn(w.to(DType::f32), s);
  CHECK(to_vector(qa.codes) == to_vector(qb.codes));
  CHECK(dequantize(qa).dtype() == DType::bf16);
  CHECK(to_vector(dequantize(qa)) == to_vector(dequantize(qb).to(DType::bf16)));
}

TEST_CASE("invalid schemes are UsageErrors that name their source") {
  CHECK_THROWS_WITH_AS(validate_scheme({.bits = 1}, "--bits"), doctest::Contains("--bits"), UsageError);
  CHECK_THROWS_AS(validate_scheme({.bits = 9}, "--bits"), UsageError);
  CHECK_THROWS_WITH_AS(validate_scheme({.group_size = -2}, "--group_size"), doctest::Contains("--group_size"), UsageError);
  CHECK_THROWS_WITH_AS(validate_scheme({.data_type = "fp4"}, "--data_type"), doctest::Contains("fp4"), UsageError);
  CHECK_NOTHROW(validate_scheme({.bits = 16}, "--bits"));
  CHECK_THROWS_AS(quantize_rtn(rand_normal({4, 4}, 1), {.bits = 16}), UsageError);
}
