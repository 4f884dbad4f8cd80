// Loss values against plain loops (suite unit); their gradients are in test_vjp.cpp.
#include <cmath>

#include <doctest/doctest.h>

#include "autograd/autograd.h"

namespace arq::ag {
namespace {

TEST_CASE("loss: masked_mse reductions against a loop") {
  const int64_t b = 2, s = 3, h = 4;
  Tensor p = rand_normal({b, s, h}, 1, 0, 1, DType::f64), t = rand_normal({b, s, h}, 2, 0, 1, DType::f64);
  std::vector<double> mv = {1, 0, 1, 1, 1, 0};
  Tensor m = from_vector(mv, {b, s, 1}, DType::f64);
  std::vector<double> pv = to_vector(p), tv = to_vector(t);
  double sum = 0, valid = 0;
  for (int64_t i = 0; i < b * s; ++i)
    for (int64_t j = 0; j < h; ++j) {
      const double d = pv[i * h + j] - tv[i * h + j];
      sum += mv[i] * d * d;
      valid += mv[i];
    }
  // f64 sums of 24 terms: relative error ≤ 24·2^-53; 1e-12 is ample.
  CHECK(masked_mse(Var(p), t, m).value().item() == doctest::Approx(sum / valid).epsilon(1e-12));
  CHECK(masked_mse(Var(p), t, m, MseReduction::mean_all).value().item() == doctest::Approx(sum / 24).epsilon(1e-12));
  CHECK(masked_mse(Var(p), t, m, MseReduction::sum).value().item() == doctest::Approx(sum).epsilon(1e-12));
  Tensor none = zeros({b, s, 1}, DType::f64);
  CHECK(masked_mse(Var(p), t, none).value().item() == 0.0);
  CHECK_THROWS_AS(masked_mse(Var(p), t, zeros({b, 2, 1}, DType::f64)), ShapeError);
  CHECK_THROWS_AS(masked_mse(Var(p), rand_normal({b, s}, 3, 0, 1, DType::f64)), ShapeError);
}

TEST_CASE("loss: cross_entropy with ignore_index against a loop") {
  const int64_t n = 5, v = 7;
  Tensor logits = rand_normal({n, v}, 4, 0, 3, DType::f64);
  std::vector<double> tv = {2, -100, 6, 0, 2};
  Tensor t = from_vector(tv, {n}, DType::i64);
  std::vector<double> lv = to_vector(logits);
  double loss = 0;
  int cnt = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (tv[i] == -100) continue;
    double mx = -1e300, z = 0;
    for (int64_t j = 0; j < v; ++j) mx = std::max(mx, lv[i * v + j]);
    for (int64_t j = 0; j < v; ++j) z += std::exp(lv[i * v + j] - mx);
    loss += -(lv[i * v + static_cast<int64_t>(tv[i])] - mx - std::log(z));
    ++cnt;
  }
  CHECK(cross_entropy(Var(logits), t).value().item() == doctest::Approx(loss / cnt).epsilon(1e-12));
  CHECK(cross_entropy(Var(logits), cast(t, DType::i32)).value().item() == doctest::Approx(loss / cnt).epsilon(1e-12));
  Tensor all_ignored = full({n}, -1, DType::i64);
  CHECK(cross_entropy(Var(logits), all_ignored, -1).value().item() == 0.0);
  CHECK_THROWS_AS(cross_entropy(Var(logits), from_vector({0, 1, 7, 0, 0}, {n}, DType::i64)), ShapeError);
  CHECK_THROWS_AS(cross_entropy(Var(logits), from_vector({0, 1}, {2}, DType::i64)), ShapeError);
}

}  // namespace
}  // namespace arq::ag
