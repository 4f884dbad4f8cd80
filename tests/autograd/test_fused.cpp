// Fused ops (engine/fused.h, autograd/fused.h) on the CPU:
//  - forward and gradients against plain loops in f64 (independent of every kernel);
//  - bit-identity with the compositions they replace (mul(silu(g), u), the composed rms_norm
//    VJP), which is what lets models/blocks/layers.cpp use them without changing any result;
//  - central finite differences in f64 (autograd/gradcheck.h);
//  - errors naming the op and the shapes.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "autograd/fused.h"
#include "engine/fused.h"
#include "tests/autograd/grad_helpers.h"

using namespace arq;
using namespace arq::ag;

namespace {

const DType kFloats[] = {DType::f32, DType::f64, DType::f16, DType::bf16};

// Exact equality of two tensors of one dtype (NaN meets NaN); returns the first difference.
std::string diff_bits(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return cat("shape/dtype ", a.str(), " vs ", b.str());
  const std::vector<double> x = to_vector(a), y = to_vector(b);
  for (size_t i = 0; i < x.size(); ++i)
    if (!(x[i] == y[i] || (std::isnan(x[i]) && std::isnan(y[i]))))
      return cat("element ", i, ": ", x[i], " vs ", y[i]);
  return "";
}

// Max over elements of |got − want| / (atol + |want|).
double worst_rel(const Tensor& got, const std::vector<double>& want, double atol) {
  const std::vector<double> g = to_vector(got);
  double w = 0;
  for (size_t i = 0; i < g.size(); ++i) w = std::max(w, std::fabs(g[i] - want[i]) / (atol + std::fabs(want[i])));
  return w;
}

double eps_of(DType t) {
  switch (t) {
    case DType::f64: return 0x1p-52;
    case DType::f16: return 0x1p-10;
    case DType::bf16: return 0x1p-7;
    default: return 0x1p-23;
  }
}

double sigm(double x) { return 1 / (1 + std::exp(-x)); }

// Inputs of `shape` in `dt`, presented contiguous or as a transposed view (non-contiguous).
Tensor input(const Shape& shape, DType dt, uint64_t seed, double lo, double hi, bool transposed) {
  if (!transposed) return rand_uniform(shape, seed, lo, hi, DType::f64).to(dt);
  Shape s = shape;
  std::swap(s[s.size() - 1], s[s.size() - 2]);
  return rand_uniform(s, seed, lo, hi, DType::f64).to(dt).transpose(-2, -1);
}

}  // namespace

TEST_CASE("fused swiglu: forward equals mul(silu(g), u) bit for bit and a plain f64 loop") {
  for (DType dt : kFloats)
    for (bool tr : {false, true}) {
      const Shape shape = {3, 13, 7};
      Tensor g = input(shape, dt, 11, -6, 6, tr), u = input(shape, dt, 12, -3, 3, tr);
      Tensor h = swiglu(g, u);
      INFO(dtype_name(dt), tr ? " transposed" : " contiguous");
      CHECK(h.dtype() == dt);
      CHECK(diff_bits(h, mul(silu(g), u)) == "");
      // f64 reference: silu rounds once to dt (≤ ½ eps_dt + the f32 exp's few ulp), the product
      // once more: |h − ref| ≤ (eps_dt + 4·eps32)·|ref| (+ the smallest normal as atol).
      std::vector<double> gv = to_vector(g), uv = to_vector(u), ref(gv.size());
      for (size_t i = 0; i < gv.size(); ++i) ref[i] = gv[i] * sigm(gv[i]) * uv[i];
      const double rtol = eps_of(dt) + (dt == DType::f64 ? 4 * 0x1p-52 : 4 * 0x1p-23);
      CHECK(worst_rel(h, ref, 1e-30) <= rtol);
    }
}

TEST_CASE("fused swiglu: gradients equal the composed VJPs bit for bit and the f64 derivative") {
  for (DType dt : kFloats)
    for (bool tr : {false, true}) {
      const Shape shape = {2, 7, 13};
      Tensor g0 = input(shape, dt, 21, -6, 6, tr), u0 = input(shape, dt, 22, -3, 3, tr);
      Tensor seed = rand_uniform(shape, 23, -2, 2, DType::f64).to(dt);
      Var g1(g0, true), u1(u0, true), g2(g0, true), u2(u0, true);
      backward(swiglu(g1, u1), seed);
      backward(mul(silu(g2), u2), seed);
      INFO(dtype_name(dt), tr ? " transposed" : " contiguous");
      CHECK(diff_bits(g1.grad(), g2.grad()) == "");
      CHECK(diff_bits(u1.grad(), u2.grad()) == "");
      // f64: d up = s·σ(g)·g, d gate = s·u·σ(g)(1 + g(1 − σ(g))); the 16-bit chain rounds ~7
      // intermediates to the dtype (each ≤ ½ eps relative, 1 + x(1 − σ) may cancel near
      // x ≈ −1.28: atol covers it at the scale of |s·u| ≤ 6).
      std::vector<double> gv = to_vector(g0), uv = to_vector(u0), sv = to_vector(seed);
      std::vector<double> rg(gv.size()), ru(gv.size());
      for (size_t i = 0; i < gv.size(); ++i) {
        const double s = sigm(gv[i]);
        ru[i] = sv[i] * gv[i] * s;
        rg[i] = sv[i] * uv[i] * s * (1 + gv[i] * (1 - s));
      }
      const double e = dt == DType::f64 ? 8 * 0x1p-52 : 8 * 0x1p-23;
      const double et = dt == DType::f16 || dt == DType::bf16 ? 8 * eps_of(dt) : 0.0;
      CHECK(worst_rel(u1.grad(), ru, 1e-30) <= e + et);
      const std::vector<double> gg = to_vector(g1.grad());
      for (size_t i = 0; i < gg.size(); ++i)
        REQUIRE_MESSAGE(std::fabs(gg[i] - rg[i]) <= (e + et) * (std::fabs(rg[i]) + 6 * 4), "element ", i, ": ", gg[i],
                        " vs ", rg[i]);
    }
}

TEST_CASE("fused swiglu: finite differences in f64") {
  test::Fn fn = [](const std::vector<Var>& v) { return swiglu(v[0], v[1]); };
  test::expect_grad("swiglu", fn, {test::randn({5, 7}, 31, 2.0), test::randn({5, 7}, 32)});
  test::expect_grad("swiglu", fn, {test::randn({3, 5, 7}, 33, 2.0), test::randn({3, 5, 7}, 34)}, true);
}

TEST_CASE("fused rms_norm backward: equals the composed VJP on the CPU and an f64 plain loop") {
  const struct {
    Shape shape;
    bool transposed;
  } cases[] = {{{13, 7}, false}, {{3, 5, 13}, true}, {{2, 1000}, false}, {{1, 4099}, false}};
  for (DType dt : kFloats)
    for (const auto& c : cases) {
      const int64_t d = c.shape.back();
      Tensor x0 = input(c.shape, dt, 41, -2, 2, c.transposed);
      Tensor w0 = rand_uniform({d}, 42, 0.5, 1.5, DType::f64).to(dt);
      Tensor seed = rand_uniform(c.shape, 43, -1, 1, DType::f64).to(dt);
      const double eps = 1e-5;
      Var x1(x0, true), w1(w0, true), x2(x0, true), w2(w0, true);
      backward(rms_norm_fused(x1, w1, eps), seed);
      backward(rms_norm(x2, w2, eps), seed);
      INFO(dtype_name(dt), " ", shape_str(c.shape), c.transposed ? " transposed" : "");
      CHECK(diff_bits(x1.grad(), x2.grad()) == "");
      // dw: 2-D inputs reduce one axis like the composition's sum_to (bit-identical); 3-D
      // inputs reduce all rows at once (the composition rounds after each axis).
      if (c.shape.size() == 2) CHECK(diff_bits(w1.grad(), w2.grad()) == "");
      // f64 plain loop: r = (Σx²/d + eps)^(−½), dx = r·g·w − x·r³·Σ(g·w·x)/d, dw = Σ g·x·r.
      const std::vector<double> xv = to_vector(x0), wv = to_vector(w0), sv = to_vector(seed);
      const int64_t rows = x0.numel() / d;
      std::vector<double> rdx(xv.size()), rdw(static_cast<size_t>(d), 0.0), dw_abs(static_cast<size_t>(d), 0.0);
      double scale_dx = 0;  // max over elements of |r·g·w|
      for (int64_t r = 0; r < rows; ++r) {
        double ss = 0, m = 0;
        for (int64_t j = 0; j < d; ++j) ss += xv[r * d + j] * xv[r * d + j];
        const double rr = 1 / std::sqrt(ss / static_cast<double>(d) + eps);
        for (int64_t j = 0; j < d; ++j) m += sv[r * d + j] * wv[j] * xv[r * d + j];
        m /= static_cast<double>(d);
        for (int64_t j = 0; j < d; ++j) {
          const size_t i = static_cast<size_t>(r * d + j), jj = static_cast<size_t>(j);
          rdx[i] = rr * sv[i] * wv[jj] - xv[i] * rr * rr * rr * m;
          scale_dx = std::max(scale_dx, std::fabs(rr * sv[i] * wv[jj]));
          rdw[jj] += sv[i] * xv[i] * rr;
          dw_abs[jj] += std::fabs(sv[i] * xv[i] * rr);
        }
      }
      // Error budget in the compute type C (eps_C = 2⁻²³; 2⁻⁵² for f64): r carries ≤ 4 roundings
      // (Σx² to C, ·1/d, +eps, sqrt, 1/·), r³·m ≤ 3·4 + 3 more plus m's own; with |x·r| ≤ √7 < 3
      // for these rows both terms of dx are ≤ 3·scale_dx: |Δdx| ≤ 3·24·eps_C·scale_dx ≤ 64·eps_C·
      // scale_dx + the output rounding to a 16-bit dtype (½ eps_T of |dx| ≤ 4·scale_dx).
      const double ec = dt == DType::f64 ? 0x1p-52 : 0x1p-23;
      const double et = dt == DType::f16 || dt == DType::bf16 ? eps_of(dt) : 0.0;
      const std::vector<double> gdx = to_vector(x1.grad());
      double worst = 0;
      for (size_t i = 0; i < gdx.size(); ++i) worst = std::max(worst, std::fabs(gdx[i] - rdx[i]));
      CHECK(worst <= (64 * ec + 2 * et) * scale_dx);
      // dw: each term carries r's 4 roundings + 2 products, the sum over rows is f64, then one
      // rounding to C and one to the dtype: |Δdw| ≤ 8·eps_C·Σ|terms| + eps_T·|dw|.
      const std::vector<double> gdw = to_vector(w1.grad());
      for (size_t j = 0; j < gdw.size(); ++j)
        REQUIRE_MESSAGE(std::fabs(gdw[j] - rdw[j]) <= 8 * ec * dw_abs[j] + et * std::fabs(rdw[j]) + 1e-300, "dw[", j,
                        "]: ", gdw[j], " vs ", rdw[j]);
    }
}

TEST_CASE("fused rms_norm backward: finite differences in f64, one-sided needs") {
  test::Fn fn = [](const std::vector<Var>& v) { return rms_norm_fused(v[0], v[1], 1e-5); };
  test::expect_grad("rms_norm_fused", fn, {test::randn({5, 8}, 51), test::randn({8}, 52)});
  test::expect_grad("rms_norm_fused", fn, {test::randn({2, 3, 7}, 53), test::randn({7}, 54)}, true);
  test::expect_grad("rms_norm_fused eps=0.5", [](const std::vector<Var>& v) { return rms_norm_fused(v[0], v[1], 0.5); },
                    {test::randn({4, 6}, 55, 0.5), test::randn({6}, 56)}, true);
  // Only x needs a gradient (SignRound: norm weights are constants), then only w.
  Tensor x = test::randn({3, 9}, 57), w = test::randn({9}, 58), g = test::randn({3, 9}, 59);
  auto [dx, none] = rms_norm_backward(x, w, g, 1e-6, true, false);
  CHECK(dx.defined());
  CHECK_FALSE(none.defined());
  auto [none2, dw] = rms_norm_backward(x, w, g, 1e-6, false, true);
  CHECK_FALSE(none2.defined());
  CHECK(diff_bits(dx, rms_norm_backward(x, w, g, 1e-6).first) == "");
  CHECK(diff_bits(dw, rms_norm_backward(x, w, g, 1e-6).second) == "");
}

TEST_CASE("fused SignSGD step: equals copy_(p, sub(p, affine(sign(d), lr, 0))) bit for bit, signed zeros and NaN too") {
  for (DType dt : kFloats)
    for (double lr : {1.0 / 200, 1.0 / 3}) {
      INFO(dtype_name(dt), " lr ", lr);
      std::vector<double> pv, dv;
      for (int i = 0; i < 997; ++i) {
        pv.push_back(i % 17 == 0 ? (i % 2 ? -0.0 : 0.0) : std::sin(0.7 * i) * (i % 5 + 1) * 0.3);
        dv.push_back(i % 13 == 0 ? (i % 2 ? -0.0 : 0.0) : i % 101 == 0 ? NAN : std::cos(1.3 * i) * 1e-3);
      }
      const Tensor p0 = from_vector(pv, {997}, dt), d = from_vector(dv, {997}, dt);
      Tensor want = p0.clone(), got = p0.clone();
      copy_(want, sub(want, affine(sign(d), lr, 0.0)));
      sign_sgd_step_(got, d, lr);
      CHECK(diff_bits(got, want) == "");
      const std::vector<double> a = to_vector(got), b = to_vector(want);
      int sign_mismatch = 0;
      for (size_t i = 0; i < a.size(); ++i) sign_mismatch += std::signbit(a[i]) != std::signbit(b[i]);
      CHECK(sign_mismatch == 0);
      // a non-contiguous parameter takes the composition: same bits
      Tensor wide = from_vector(std::vector<double>(2 * 997, 0.5), {997, 2}, dt);
      Tensor col = wide.narrow(1, 0, 1).squeeze(1);
      copy_(col, p0);
      sign_sgd_step_(col, d, lr);
      CHECK(diff_bits(col.contiguous(), want) == "");
    }
  Tensor p = zeros({3});
  CHECK_THROWS_AS(sign_sgd_step_(p, zeros({4}), 0.1), ShapeError);
  CHECK_THROWS_AS(sign_sgd_step_(p, zeros({3}, DType::f64), 0.1), DTypeError);
}

TEST_CASE("fused ops: errors name the op and the shapes") {
  Tensor a = zeros({5, 7}), b = zeros({5, 6});
  CHECK_THROWS_AS(swiglu(a, b), ShapeError);
  CHECK_THROWS_AS(swiglu(a, zeros({5, 7}, DType::f64)), DTypeError);
  CHECK_THROWS_AS(swiglu(zeros({5, 7}, DType::i32), zeros({5, 7}, DType::i32)), DTypeError);
  CHECK_THROWS_AS(swiglu_backward(a, a, b), ShapeError);
  CHECK_THROWS_AS(rms_norm_backward(a, zeros({6}), a, 1e-6), ShapeError);
  CHECK_THROWS_AS(rms_norm_backward(a, zeros({7}, DType::f64), a, 1e-6), DTypeError);
  try {
    swiglu(a, b);
  } catch (const ShapeError& e) {
    const std::string m = e.what();
    CHECK(m.find("[swiglu]") != std::string::npos);
    CHECK(m.find("[5, 6]") != std::string::npos);
  }
  // Empty tensors: no kernel call, dw of no rows is 0.
  CHECK(swiglu(zeros({0, 7}), zeros({0, 7})).numel() == 0);
  auto [dx, dw] = rms_norm_backward(zeros({0, 7}), ones({7}), zeros({0, 7}), 1e-6);
  CHECK(dx.numel() == 0);
  CHECK(to_vector(dw) == std::vector<double>(7, 0.0));
}
