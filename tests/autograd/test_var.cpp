// Var semantics (suite unit): grad mode, leaves, accumulation, detach, graph freeing, and the
// kinks finite differences cannot see (clamp bounds, min/max ties, round_ste).
#include <cmath>

#include <doctest/doctest.h>

#include "autograd/autograd.h"
#include "autograd/graph.h"  // record(): to build a deliberately wrong op for the checker test

namespace arq::ag {
namespace {

Tensor vec(std::vector<double> v) { return from_vector(v, {static_cast<int64_t>(v.size())}, DType::f64); }
void check_vec(const Tensor& t, const std::vector<double>& want) {
  REQUIRE(t.defined());
  std::vector<double> got = to_vector(t);
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-12));
}

TEST_CASE("var: leaves, requires_grad, detach, NoGrad") {
  Var c(vec({1, 2}));
  CHECK(c.defined());
  CHECK_FALSE(c.requires_grad());
  CHECK(c.is_leaf());
  Var x(vec({1, 2}), true);
  CHECK(x.requires_grad());
  CHECK_FALSE(x.grad().defined());
  Var y = x * c;
  CHECK(y.requires_grad());
  CHECK_FALSE(y.is_leaf());
  CHECK_THROWS_AS(y.set_requires_grad(false), UsageError);
  Var d = y.detach();
  CHECK_FALSE(d.requires_grad());
  CHECK(d.value().storage() == y.value().storage());  // detach shares the value
  {
    NoGrad ng;
    CHECK_FALSE(grad_enabled());
    CHECK_FALSE((x * x).requires_grad());
  }
  CHECK(grad_enabled());
  CHECK_FALSE(Var().defined());
  CHECK_THROWS_AS(Var(from_vector({1}, {1}, DType::i64), true), DTypeError);
  CHECK_THROWS_AS(backward(c * c), UsageError);  // nothing requires grad
}

TEST_CASE("var: accumulation across backward calls, zero_grad, reused leaf") {
  Var x(vec({1, -2, 3}), true);
  backward(sum_all(x * x));  // d Σx² = 2x
  check_vec(x.grad(), {2, -4, 6});
  backward(sum_all(x * 3.0));  // accumulates + 3
  check_vec(x.grad(), {5, -1, 9});
  x.zero_grad();
  CHECK_FALSE(x.grad().defined());
  backward(sum_all(x * x * x));  // 3x² (x used three times in one graph)
  check_vec(x.grad(), {3, 12, 27});
}

TEST_CASE("var: seed cotangent and non-scalar outputs") {
  Var x(vec({1, 2, 3}), true);
  backward(x * x, vec({1, 0, -1}));
  check_vec(x.grad(), {2, 0, -6});
  CHECK_THROWS_AS(backward(x * x, vec({1, 2})), ShapeError);
}

TEST_CASE("var: the graph is freed by backward unless retained") {
  Var x(vec({1, 2}), true);
  Var loss = sum_all(exp(x));
  backward(loss);
  CHECK_THROWS_AS(backward(loss), UsageError);
  Var loss2 = sum_all(exp(x));
  x.zero_grad();
  backward(loss2, {}, /*retain_graph=*/true);
  backward(loss2);
  check_vec(x.grad(), {2 * std::exp(1.0), 2 * std::exp(2.0)});
}

TEST_CASE("var: leaf gradients do not alias each other") {
  Var a(vec({1, 2}), true), b(vec({3, 4}), true);
  backward(sum_all(a + b));  // add passes the same cotangent to both
  REQUIRE(a.grad().defined());
  CHECK(a.grad().storage() != b.grad().storage());
  CHECK(a.grad().is_contiguous());
  Var w(from_vector({1, 2, 3, 4, 5, 6}, {2, 3}, DType::f64), true);
  backward(sum_all(transpose(w, 0, 1)));  // the cotangent arrives as a transposed, broadcast view
  CHECK(w.grad().is_contiguous());
  check_vec(w.grad().reshape({6}), {1, 1, 1, 1, 1, 1});
}

TEST_CASE("var: kinks — clamp bounds inclusive, min/max ties split, round_ste identity") {
  Var x(vec({-1.5, -1, 0.25, 1, 1.5}), true);
  backward(sum_all(clamp(x, -1, 1)));
  check_vec(x.grad(), {0, 1, 1, 1, 0});  // gradient passes at lo and hi themselves

  Var a(vec({1, 2, 3}), true), b(vec({2, 2, 1}), true);
  backward(sum_all(minimum(a, b) * Var(vec({10, 20, 30}))));
  check_vec(a.grad(), {10, 10, 0});
  check_vec(b.grad(), {0, 10, 30});
  a.zero_grad();
  b.zero_grad();
  backward(sum_all(maximum(a, b)));
  check_vec(a.grad(), {0, 0.5, 1});
  check_vec(b.grad(), {1, 0.5, 0});

  Var r(vec({0.5, 1.5, 2.5, -0.5, 0.7}), true);
  Var y = round_ste(r);
  check_vec(y.value(), {0, 2, 2, -0, 1});  // half to even
  backward(sum_all(y * Var(vec({1, 2, 3, 4, 5}))));
  check_vec(r.grad(), {1, 2, 3, 4, 5});

  // where: gradient only to the chosen side; a broadcast operand gets the sum.
  Tensor cond = from_vector({1, 0, 1}, {3}, DType::u8);
  Var p(vec({1, 2, 3}), true), q(vec({7}), true);
  backward(sum_all(where(cond, p, q)));
  check_vec(p.grad(), {1, 0, 1});
  check_vec(q.grad(), {1});
}

TEST_CASE("var: f32 and bf16 paths run and keep dtypes") {
  Var x(rand_normal({4, 8}, 1), true);                          // f32
  Var w(ones({8}), true);
  backward(sum_all(rms_norm(x, w, 1e-6)));
  CHECK(x.grad().dtype() == DType::f32);
  CHECK(w.grad().dtype() == DType::f32);
  Var xb(cast(rand_normal({4, 8}, 2), DType::bf16), true);
  Var wb(ones({8}, DType::bf16), true);
  backward(sum_all(cast(rms_norm(xb, wb, 1e-6), DType::f32)));
  CHECK(xb.grad().dtype() == DType::bf16);
  CHECK(wb.grad().dtype() == DType::bf16);
}

TEST_CASE("var: errors name the op and shapes") {
  Var a(rand_normal({5, 7}, 1), true), b(rand_normal({3}, 2));
  CHECK_THROWS_AS(a + b, ShapeError);
  CHECK_THROWS_AS(matmul(a, Var(b.value().reshape({3, 1}))), ShapeError);
}

}  // namespace
}  // namespace arq::ag

namespace arq::ag {
namespace {

TEST_CASE("gradcheck: a wrong VJP is reported") {
  // y = 2x recorded with the VJP of y = x: the checker must flag every element.
  auto bad_double = [](const std::vector<Var>& v) {
    return record("bad_double", affine(v[0].value(), 2, 0), {&v[0]},
                  [](const Tensor& g, const std::vector<bool>&) { return std::vector<Tensor>{g}; });
  };
  GradCheckResult r = check_gradients(bad_double, {rand_normal({3, 2}, 5, 0, 1, DType::f64)});
  CHECK_FALSE(r.ok);
  CHECK(r.max_abs_err == doctest::Approx(1.0));
  CHECK(r.report.find("bad_double") == std::string::npos);  // names the input, not the op
  CHECK(r.report.find("input 0") != std::string::npos);
  // The same op with the right VJP passes.
  auto good_double = [](const std::vector<Var>& v) {
    return record("good_double", affine(v[0].value(), 2, 0), {&v[0]},
                  [](const Tensor& g, const std::vector<bool>&) { return std::vector<Tensor>{affine(g, 2, 0)}; });
  };
  CHECK(check_gradients(good_double, {rand_normal({3, 2}, 5, 0, 1, DType::f64)}).ok);
}

}  // namespace
}  // namespace arq::ag
