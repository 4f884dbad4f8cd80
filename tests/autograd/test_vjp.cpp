// Every VJP against central finite differences in f64 (suite grad): at least two shapes per
// op, including broadcast operands and non-contiguous (transposed-in-memory) leaves.
#include <cmath>

#include "grad_helpers.h"

namespace arq::ag {
namespace {
using test::expect_grad;
using test::randn;
using test::randu;

// cos/sin of an f64 tensor (the engine has no trig ops; tables are host-computed in models too).
Tensor map_host(const Tensor& x, double (*f)(double)) {
  std::vector<double> v = to_vector(x);
  for (double& e : v) e = f(e);
  return from_vector(v, x.shape(), x.dtype());
}

TEST_CASE("vjp: broadcasting binary ops") {
  struct Case {
    const char* name;
    test::Fn fn;
  };
  const Case cases[] = {
      {"add", [](const std::vector<Var>& v) { return v[0] + v[1]; }},
      {"sub", [](const std::vector<Var>& v) { return v[0] - v[1]; }},
      {"mul", [](const std::vector<Var>& v) { return v[0] * v[1]; }},
      {"div", [](const std::vector<Var>& v) { return v[0] / v[1]; }},
      {"minimum", [](const std::vector<Var>& v) { return minimum(v[0], v[1]); }},
      {"maximum", [](const std::vector<Var>& v) { return maximum(v[0], v[1]); }},
  };
  for (const Case& c : cases) {
    // Divisors kept in [0.5, 2] (away from the pole); random normals never tie for min/max.
    expect_grad(c.name, c.fn, {randn({5, 7}, 1), randu({5, 7}, 2, 0.5, 2)});
    expect_grad(c.name, c.fn, {randn({5, 7}, 3), randu({5, 7}, 4, 0.5, 2)}, true);
    expect_grad(c.name, c.fn, {randn({3, 1, 7}, 5), randu({5, 1}, 6, 0.5, 2)});    // both sides broadcast
    expect_grad(c.name, c.fn, {randn({2, 3, 4}, 7), randu({4}, 8, 0.5, 2)}, true);  // rhs over leading dims
  }
}

TEST_CASE("vjp: scalar operators") {
  expect_grad("a*2.5+1", [](const std::vector<Var>& v) { return v[0] * 2.5 + 1.0; }, {randn({5, 3}, 11)});
  expect_grad("3-a/7", [](const std::vector<Var>& v) { return 3.0 - v[0] / 7.0; }, {randn({4, 6}, 12)}, true);
  expect_grad("-a*a", [](const std::vector<Var>& v) { return -(v[0] * v[0]); }, {randn({13}, 13)});
  expect_grad("affine", [](const std::vector<Var>& v) { return affine(v[0], -0.75, 2); }, {randn({3, 5}, 14)}, true);
}

TEST_CASE("vjp: where") {
  Tensor cond = gt(rand_uniform({5, 7}, 21), scalar_tensor(0.5));        // [5, 7] u8
  Tensor cond_b = gt(rand_uniform({5, 1}, 22), scalar_tensor(0.5));      // [5, 1] broadcast
  test::Fn f1 = [cond](const std::vector<Var>& v) { return where(cond, v[0], v[1]); };
  test::Fn f2 = [cond_b](const std::vector<Var>& v) { return where(cond_b, v[0], v[1]); };
  expect_grad("where", f1, {randn({5, 7}, 23), randn({7}, 24)});
  expect_grad("where", f1, {randn({5, 7}, 25), randn({5, 7}, 26)}, true);
  expect_grad("where bcast cond", f2, {randn({5, 7}, 27), randn({1, 7}, 28)});
}

TEST_CASE("vjp: unary ops") {
  struct Case {
    const char* name;
    test::Fn fn;
    bool positive;  // domain x > 0
  };
  const Case cases[] = {
      {"neg", [](const std::vector<Var>& v) { return neg(v[0]); }, false},
      {"exp", [](const std::vector<Var>& v) { return exp(v[0]); }, false},
      {"log", [](const std::vector<Var>& v) { return log(v[0]); }, true},
      {"sqrt", [](const std::vector<Var>& v) { return sqrt(v[0]); }, true},
      {"rsqrt", [](const std::vector<Var>& v) { return rsqrt(v[0]); }, true},
      {"sigmoid", [](const std::vector<Var>& v) { return sigmoid(v[0]); }, false},
      {"silu", [](const std::vector<Var>& v) { return silu(v[0]); }, false},
      {"tanh", [](const std::vector<Var>& v) { return tanh(v[0]); }, false},
      {"abs", [](const std::vector<Var>& v) { return abs(v[0]); }, false},
      {"pow 3", [](const std::vector<Var>& v) { return pow(v[0], 3.0); }, false},
      {"pow 2.5", [](const std::vector<Var>& v) { return pow(v[0], 2.5); }, true},
      {"pow -1.5", [](const std::vector<Var>& v) { return pow(v[0], -1.5); }, true},
  };
  for (const Case& c : cases) {
    auto input = [&](const Shape& s, uint64_t seed) { return c.positive ? randu(s, seed, 0.3, 3) : randn(s, seed); };
    expect_grad(c.name, c.fn, {input({5, 7}, 31)});
    expect_grad(c.name, c.fn, {input({2, 3, 5}, 32)}, true);
  }
}

TEST_CASE("vjp: clamp away from the bounds") {
  // Inputs on a grid that avoids the bounds by more than ε (the kink itself is tested in unit).
  Tensor x = affine(floor(affine(rand_uniform({6, 5}, 41, 0, 1, DType::f64), 20, 0)), 0.1, -0.95);  // k/10 − 0.95
  test::Fn fn = [](const std::vector<Var>& v) { return clamp(v[0], -0.5, 0.5); };
  expect_grad("clamp", fn, {x});
  expect_grad("clamp", fn, {x}, true);
}

TEST_CASE("vjp: reductions") {
  for (bool keep : {false, true}) {
    for (int64_t ax : {0, 1, -1}) {
      expect_grad("sum", [=](const std::vector<Var>& v) { return sum(v[0], ax, keep); }, {randn({5, 7}, 51)});
      expect_grad("mean", [=](const std::vector<Var>& v) { return mean(v[0], ax, keep); }, {randn({3, 4, 5}, 52)},
                  true);
    }
  }
  expect_grad("sum_all", [](const std::vector<Var>& v) { return sum_all(v[0] * v[0]); }, {randn({5, 7}, 53)}, true);
  expect_grad("mean_all", [](const std::vector<Var>& v) { return mean_all(v[0] * v[0]); }, {randn({2, 3, 5}, 54)});
  expect_grad("sum_to", [](const std::vector<Var>& v) { return sum_to(v[0], {3, 1}); }, {randn({2, 3, 5}, 55)}, true);
  expect_grad("sum_to", [](const std::vector<Var>& v) { return sum_to(v[0] * v[0], {7}); }, {randn({5, 7}, 56)});
}

TEST_CASE("vjp: softmax and log_softmax") {
  for (int64_t ax : {-1, 0}) {
    expect_grad("softmax", [=](const std::vector<Var>& v) { return softmax(v[0], ax); }, {randn({5, 7}, 61, 2)});
    expect_grad("softmax", [=](const std::vector<Var>& v) { return softmax(v[0], ax); }, {randn({2, 3, 5}, 62, 2)}, true);
    expect_grad("log_softmax", [=](const std::vector<Var>& v) { return log_softmax(v[0], ax); }, {randn({5, 7}, 63, 2)});
    expect_grad("log_softmax", [=](const std::vector<Var>& v) { return log_softmax(v[0], ax); },
                {randn({3, 4, 5}, 64, 2)}, true);
  }
}

TEST_CASE("vjp: rms_norm") {
  test::Fn fn = [](const std::vector<Var>& v) { return rms_norm(v[0], v[1], 1e-5); };
  expect_grad("rms_norm", fn, {randn({5, 8}, 71), randn({8}, 72)});
  expect_grad("rms_norm", fn, {randn({2, 3, 7}, 73), randn({7}, 74)}, true);
  // Large eps makes the ε term matter in the derivative.
  expect_grad("rms_norm eps=0.5", [](const std::vector<Var>& v) { return rms_norm(v[0], v[1], 0.5); },
              {randn({4, 6}, 75, 0.5), randn({6}, 76)}, true);
}

TEST_CASE("vjp: rope") {
  for (RopeStyle st : {RopeStyle::rotate_half, RopeStyle::interleaved}) {
    // [s, d/2] angles: any values work, the op is a rotation per pair.
    Tensor ang = randn({5, 3}, 81, 2.0);
    Tensor c = map_host(ang, [](double a) { return std::cos(a); }), s = map_host(ang, [](double a) { return std::sin(a); });
    test::Fn f2 = [=](const std::vector<Var>& v) { return rope(v[0], c, s, st); };
    expect_grad("rope [5, 6]", f2, {randn({5, 6}, 82)});
    // x [b, s, h, d] with cos/sin [s, 1, d/2] broadcast over heads.
    Tensor c3 = c.reshape({5, 1, 3}), s3 = s.reshape({5, 1, 3});
    test::Fn f4 = [=](const std::vector<Var>& v) { return rope(v[0], c3, s3, st); };
    expect_grad("rope [2, 5, 2, 6]", f4, {randn({2, 5, 2, 6}, 83)}, true);
  }
}

TEST_CASE("vjp: matmul") {
  test::Fn fn = [](const std::vector<Var>& v) { return matmul(v[0], v[1]); };
  expect_grad("matmul 2d", fn, {randn({5, 7}, 91), randn({7, 3}, 92)});
  expect_grad("matmul 2d", fn, {randn({5, 7}, 93), randn({7, 3}, 94)}, true);
  expect_grad("matmul batch x 2d", fn, {randn({2, 5, 7}, 95), randn({7, 3}, 96)}, true);
  expect_grad("matmul broadcast batch", fn, {randn({2, 1, 5, 7}, 97), randn({3, 7, 4}, 98)});
  expect_grad("linear x·Wᵀ", [](const std::vector<Var>& v) { return matmul(v[0], transpose(v[1], 0, 1)); },
              {randn({2, 3, 5}, 99), randn({4, 5}, 100)});
}

TEST_CASE("vjp: gathers and scatters") {
  Tensor ids = from_vector({1, 4, 1, 0, 6, 4}, {2, 3}, DType::i64);  // repeats accumulate
  expect_grad("embedding", [=](const std::vector<Var>& v) { return embedding(v[0], ids); }, {randn({7, 5}, 111)});
  expect_grad("embedding", [=](const std::vector<Var>& v) { return embedding(v[0], ids) * 2.0; }, {randn({7, 3}, 112)},
              true);
  Tensor idx = from_vector({2, 0, 2, 3}, {4}, DType::i64);
  Tensor idx32 = from_vector({4, 1, 1}, {3}, DType::i32);
  expect_grad("index_select d0", [=](const std::vector<Var>& v) { return index_select(v[0], 0, idx); },
              {randn({5, 3}, 113)}, true);
  expect_grad("index_select d1", [=](const std::vector<Var>& v) { return index_select(v[0], 1, idx32); },
              {randn({3, 5}, 114)});
  expect_grad("scatter_add d0", [=](const std::vector<Var>& v) { return scatter_add(v[0], 0, idx, v[1]); },
              {randn({5, 3}, 115), randn({4, 3}, 116)});
  expect_grad("scatter_add d1", [=](const std::vector<Var>& v) { return scatter_add(v[0], -1, idx32, v[1] * v[1]); },
              {randn({2, 5}, 117), randn({2, 3}, 118)}, true);
}

TEST_CASE("vjp: joins and views") {
  auto sq = [](const Var& x) { return x * x; };  // makes the cotangent depend on the value
  expect_grad("concat d0", [=](const std::vector<Var>& v) { return concat({v[0], sq(v[1]), v[0]}, 0); },
              {randn({2, 3}, 121), randn({4, 3}, 122)}, true);
  expect_grad("concat d-1", [=](const std::vector<Var>& v) { return concat({v[0], sq(v[1])}, -1); },
              {randn({3, 2, 2}, 123), randn({3, 2, 5}, 124)});
  expect_grad("stack", [=](const std::vector<Var>& v) { return stack({v[0], sq(v[1])}, 1); },
              {randn({3, 4}, 125), randn({3, 4}, 126)}, true);
  expect_grad("reshape", [=](const std::vector<Var>& v) { return sq(reshape(v[0], {5, 3, 2})); }, {randn({3, 10}, 127)},
              true);
  expect_grad("reshape", [=](const std::vector<Var>& v) { return reshape(sq(v[0]), {-1}); }, {randn({3, 5}, 128)});
  expect_grad("permute", [=](const std::vector<Var>& v) { return matmul(permute(v[0], {2, 0, 1}), v[1]); },
              {randn({3, 4, 5}, 129), randn({4, 2}, 130)}, true);
  expect_grad("transpose", [=](const std::vector<Var>& v) { return sq(transpose(v[0], 0, 2)); },
              {randn({2, 3, 4}, 131)});
  expect_grad("narrow", [=](const std::vector<Var>& v) { return sq(narrow(v[0], 1, 1, 3)); }, {randn({4, 5}, 132)},
              true);
  expect_grad("narrow", [=](const std::vector<Var>& v) { return sq(narrow(v[0], 0, 2, 2)); }, {randn({5, 2, 3}, 133)});
  expect_grad("select", [=](const std::vector<Var>& v) { return sq(select(v[0], 1, -1)); }, {randn({4, 5}, 134)}, true);
  expect_grad("unsqueeze/squeeze", [=](const std::vector<Var>& v) { return squeeze(sq(unsqueeze(v[0], 1)), 1); },
              {randn({4, 3}, 135)}, true);
  expect_grad("expand", [=](const std::vector<Var>& v) { return sq(expand(v[0], {2, 4, 3})); }, {randn({4, 1}, 136)});
  expect_grad("expand", [=](const std::vector<Var>& v) { return expand(v[0], {5, 3}) * v[1]; },
              {randn({3}, 137), randn({5, 3}, 138)});
  expect_grad("contiguous", [=](const std::vector<Var>& v) { return sq(contiguous(transpose(v[0], 0, 1))); },
              {randn({3, 5}, 139)}, true);
  // f64 -> f32 -> f64 rounds to 2^-24 relative: with ε = 1e-2 the difference quotient of the
  // linear function is off by at most ~2·2^-24·|x|/ε ≈ 1e-5.
  expect_grad("cast", [=](const std::vector<Var>& v) { return cast(cast(v[0], DType::f32) * 2.0, DType::f64); },
              {randn({3, 5}, 140)}, true, 1e-4, 1e-2);
}

TEST_CASE("vjp: losses") {
  Tensor target = randn({2, 3, 4}, 151);
  Tensor mask = from_vector({1, 0, 1, 1, 1, 0}, {2, 3, 1}, DType::f64);
  for (MseReduction r : {MseReduction::mean_valid, MseReduction::mean_all, MseReduction::sum}) {
    expect_grad("masked_mse", [=](const std::vector<Var>& v) { return masked_mse(v[0], target, mask, r); },
                {randn({2, 3, 4}, 152)});
  }
  expect_grad("mse no mask", [=](const std::vector<Var>& v) { return masked_mse(v[0], target); },
              {randn({2, 3, 4}, 153)}, true);
  Tensor t = from_vector({3, -100, 0, 4, 4, -100}, {6}, DType::i64);
  expect_grad("cross_entropy", [=](const std::vector<Var>& v) { return cross_entropy(v[0], t); },
              {randn({6, 5}, 154, 2)});
  expect_grad("cross_entropy", [=](const std::vector<Var>& v) { return cross_entropy(v[0], t); },
              {randn({6, 5}, 155, 2)}, true);
}

}  // namespace
}  // namespace arq::ag
