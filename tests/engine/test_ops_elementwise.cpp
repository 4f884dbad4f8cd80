// Elementwise ops against f64 plain-loop references: every unary op, binary ops with NumPy
// broadcasting, comparisons (u8), where; odd shapes, zero-sized and 0-d shapes, and
// non-contiguous inputs (transposed, stepped, narrowed, broadcast, permuted) in every dtype the
// op accepts.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>

#include "engine/ops.h"
#include "tests/engine/test_util.h"

using namespace arq;
using namespace arq::test;

namespace {

// f64 value rounded into dtype `t` (for the references of ops that produce dtype values exactly).
double in_dtype(double v, DType t) {
  switch (t) {
    case DType::f32: return static_cast<float>(v);
    case DType::f16: return decode_f16(f64_to_f16_bits(v));
    case DType::bf16: return decode_bf16(f64_to_bf16_bits(v));
    default: return v;
  }
}

struct UnaryCase {
  const char* name;
  std::function<Tensor(const Tensor&)> op;
  std::function<double(double)> ref;
  double lo, hi;   // input range
  double ulps;     // error of the f32/f64 computation in units of u_compute, relative to |ref|
  double abs_ulps; // extra absolute error in units of u_compute (for results near zero)
  double exponent = 0;  // pow's exponent: it is rounded to the compute type too (see below)
};

// Error model: the kernel computes in C = f32 (f64 for f64) from an exact input and rounds once
// to the output dtype. libm's exp/log/tanh/pow are within 1-2 ulp; sigmoid = 1/(1+e^-x) and
// silu = x/(1+e^-x) add one rounding per operation (3-4 ulp in all); so
//   |out - ref| <= ulps·u_C·|ref| + abs_ulps·u_C + u_out·|ref| + (half smallest subnormal).
// abs_ulps covers functions whose result passes near 0 while the intermediate does not
// (1 - e^-x style cancellations do not occur here, tanh near 0 is relative).
// pow(x, e) computes with e rounded to C (e' = e(1 + δ), |δ| ≤ u_C), and x^e' = x^e · x^(eδ), so
// the result moves by a further |e·ln x|·u_C relative.
std::vector<UnaryCase> unary_cases() {
  return {
      {"neg", [](const Tensor& x) { return neg(x); }, [](double v) { return -v; }, -10, 10, 0, 0},
      {"abs", [](const Tensor& x) { return abs(x); }, [](double v) { return std::fabs(v); }, -10, 10, 0, 0},
      {"exp", [](const Tensor& x) { return exp(x); }, [](double v) { return std::exp(v); }, -8, 8, 2, 0},
      {"log", [](const Tensor& x) { return log(x); }, [](double v) { return std::log(v); }, 0.01, 50, 2, 0},
      {"sqrt", [](const Tensor& x) { return sqrt(x); }, [](double v) { return std::sqrt(v); }, 0, 50, 1, 0},
      {"rsqrt", [](const Tensor& x) { return rsqrt(x); }, [](double v) { return 1 / std::sqrt(v); }, 0.01, 50, 3, 0},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }, [](double v) { return 1 / (1 + std::exp(-v)); }, -12, 12, 4, 0},
      {"silu", [](const Tensor& x) { return silu(x); }, [](double v) { return v / (1 + std::exp(-v)); }, -12, 12, 5, 0},
      {"tanh", [](const Tensor& x) { return tanh(x); }, [](double v) { return std::tanh(v); }, -5, 5, 2, 0},
      {"sign", [](const Tensor& x) { return sign(x); }, [](double v) { return double((v > 0) - (v < 0)); }, -3, 3, 0, 0},
      {"floor", [](const Tensor& x) { return floor(x); }, [](double v) { return std::floor(v); }, -20, 20, 0, 0},
      {"round", [](const Tensor& x) { return round(x); }, [](double v) { return std::nearbyint(v); }, -20, 20, 0, 0},
      {"pow2", [](const Tensor& x) { return pow(x, 2.0); }, [](double v) { return v * v; }, -10, 10, 1, 0, 2},
      {"pow3", [](const Tensor& x) { return pow(x, 3.0); }, [](double v) { return v * v * v; }, -5, 5, 2, 0, 3},
      {"pow-0.5", [](const Tensor& x) { return pow(x, -0.5); }, [](double v) { return std::pow(v, -0.5); }, 0.1, 30, 2, 0, -0.5},
      {"pow1.7", [](const Tensor& x) { return pow(x, 1.7); }, [](double v) { return std::pow(v, 1.7); }, 0, 9, 2, 0, 1.7},
      {"clamp", [](const Tensor& x) { return clamp(x, -1.25, 2.5); }, [](double v) { return std::min(std::max(v, -1.25), 2.5); }, -5, 5, 0, 0},
      // affine: s·x + t rounds twice in C (product, sum), so ≤ 2 u_C·(|s x| + |t|); with
      // |s x| ≤ 2.5·10 and |t| = 0.75 that is ≤ 52 u_C absolute.
      {"affine", [](const Tensor& x) { return affine(x, 2.5, -0.75); }, [](double v) { return 2.5 * v - 0.75; }, -10, 10, 0, 52},
  };
}

const std::vector<Shape>& odd_shapes() {
  static const std::vector<Shape> s = {{5, 7}, {13}, {3, 5, 7}, {7, 1, 5}, {1, 13}, {0, 7}, {}};
  return s;
}

}  // namespace

TEST_CASE("unary: every op, every float dtype, odd shapes, strided views") {
  for (const UnaryCase& c : unary_cases()) {
    for (DType dt : float_dtypes()) {
      for (const Shape& shape : odd_shapes()) {
        for (Layout l : all_layouts()) {
          Input in = make_input(shape, dt, l, [&](int64_t n) { return uniform(n, c.lo, c.hi, 17); });
          if (!in.t.defined()) continue;
          const std::string what = std::string(c.name) + " " + dtype_name(dt) + shape_str(shape) + " " + in.layout;
          Tensor y = c.op(in.t);
          REQUIRE_MESSAGE(y.shape() == shape, what);
          CHECK_MESSAGE(y.dtype() == dt, what);
          CHECK_MESSAGE(y.is_contiguous(), what);
          std::vector<double> want(in.values.size());
          for (size_t i = 0; i < want.size(); ++i) want[i] = c.ref(in.values[i]);
          const double uc = compute_roundoff(dt), uo = unit_roundoff(dt), fl = abs_floor(dt);
          expect_close(read(y), want, [&](size_t i) {
            const double xv = std::fabs(in.values[i]);
            const double e_sens = c.exponent != 0 && xv > 0 ? std::fabs(c.exponent * std::log(xv)) : 0;
            return (c.ulps + e_sens) * uc * std::fabs(want[i]) + c.abs_ulps * uc + uo * std::fabs(want[i]) + fl;
          }, what);
        }
      }
    }
  }
}

TEST_CASE("unary: special values") {
  for (DType dt : float_dtypes()) {
    INFO("dtype ", std::string(dtype_name(dt)));
    auto t = [&](std::vector<double> v) { return from_vector(v, {static_cast<int64_t>(v.size())}, dt); };
    // round: half to even, both signs; exact integers stay.
    CHECK(read(round(t({0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5, 0.49, 7, -7})))
          == std::vector<double>{0, 2, 2, -0, -2, -2, 4, 0, 7, -7});
    CHECK(std::signbit(read(round(t({-0.5})))[0]));  // -0.5 rounds to -0
    CHECK(read(floor(t({-0.5, -1, 1.75, -2.25}))) == std::vector<double>{-1, -1, 1, -3});
    // sign: 0 for ±0, NaN stays NaN.
    std::vector<double> s = read(sign(t({-0.0, 0.0, -3, 4, NAN, -INFINITY})));
    CHECK(s[0] == 0);
    CHECK(s[1] == 0);
    CHECK(s[2] == -1);
    CHECK(s[3] == 1);
    CHECK(std::isnan(s[4]));
    CHECK(s[5] == -1);
    // exp/log/sqrt at the edges of their domains.
    std::vector<double> e = read(exp(t({-INFINITY, INFINITY, 0})));
    CHECK(e == std::vector<double>{0, INFINITY, 1});
    std::vector<double> lg = read(log(t({0, -1, 1, INFINITY})));
    CHECK(lg[0] == -INFINITY);
    CHECK(std::isnan(lg[1]));
    CHECK(lg[2] == 0);
    CHECK(lg[3] == INFINITY);
    CHECK(std::isnan(read(sqrt(t({-1})))[0]));
    CHECK(read(rsqrt(t({0})))[0] == INFINITY);
    // sigmoid/silu/tanh saturate without NaN at large |x|.
    std::vector<double> sg = read(sigmoid(t({-200, 200})));  // e^-200 ~ 1e-87: 0 below f64
    CHECK(sg[0] >= 0);
    CHECK(sg[0] < 1e-80);
    CHECK(sg[1] == 1);
    std::vector<double> sl = read(silu(t({-200, 200})));
    CHECK(sl[0] == doctest::Approx(0.0));
    CHECK(sl[1] == 200);
    CHECK(read(tanh(t({-50, 50}))) == std::vector<double>{-1, 1});
    // NaN passes through every op.
    for (const UnaryCase& c : unary_cases()) {
      if (std::string(c.name) == "sign") continue;
      CHECK_MESSAGE(std::isnan(read(c.op(t({NAN})))[0]), std::string(c.name));
    }
    // clamp at the bounds, and a clamp whose bounds are not representable rounds them.
    CHECK(read(clamp(t({-1.25, 2.5, -10, 10}), -1.25, 2.5)) == std::vector<double>{-1.25, 2.5, -1.25, 2.5});
    CHECK(read(clamp(t({-INFINITY, INFINITY}), -1, 1)) == std::vector<double>{-1, 1});
    CHECK(read(pow(t({0, 4}), 0.5)) == std::vector<double>{0, 2});
    CHECK(read(pow(t({-2}), 2.0)) == std::vector<double>{4});
  }
}

TEST_CASE("unary: integer dtypes (neg, abs, sign, clamp, affine)") {
  for (DType dt : {DType::i8, DType::i32, DType::i64}) {
    for (Layout l : all_layouts()) {
      Input in = make_input({5, 7, 3}, dt, l, [](int64_t n) { return uniform_int(n, -40, 40, 3); });
      if (!in.t.defined()) continue;
      const std::string what = std::string(dtype_name(dt)) + " " + in.layout;
      const auto& v = in.values;
      auto ref = [&](auto f) {
        std::vector<double> r;
        for (double x : v) r.push_back(f(x));
        return r;
      };
      expect_equal(read(neg(in.t)), ref([](double x) { return -x; }), "neg " + what);
      expect_equal(read(abs(in.t)), ref([](double x) { return std::fabs(x); }), "abs " + what);
      expect_equal(read(sign(in.t)), ref([](double x) { return double((x > 0) - (x < 0)); }), "sign " + what);
      // Integer clamp with fractional bounds: lo rounds up, hi down (the representable range).
      expect_equal(read(clamp(in.t, -7.5, 12.2)), ref([](double x) { return std::min(std::max(x, -7.0), 12.0); }),
                   "clamp " + what);
      // Integer affine rounds s·x + t half to even.
      expect_equal(read(affine(in.t, 0.5, 0.25)), ref([](double x) { return std::nearbyint(0.5 * x + 0.25); }),
                   "affine " + what);
      CHECK(neg(in.t).dtype() == dt);
    }
  }
  // Integer affine ties round to even: 0.5·{1, 3, 5, -1, -3} = {0.5, 1.5, 2.5, -0.5, -1.5}.
  CHECK(read(affine(from_vector({1, 3, 5, -1, -3}, {5}, DType::i32), 0.5, 0)) == std::vector<double>{0, 2, 2, 0, -2});
  // u8: abs, sign, clamp.
  Tensor u = from_vector({0, 1, 200, 255}, {4}, DType::u8);
  CHECK(read(abs(u)) == std::vector<double>{0, 1, 200, 255});
  CHECK(read(sign(u)) == std::vector<double>{0, 1, 1, 1});
  CHECK(read(clamp(u, 2, 100)) == std::vector<double>{2, 2, 100, 100});
  // Ops that need a floating dtype say so.
  test::expect_error<DTypeError>([] { exp(from_vector({1}, {1}, DType::i32)); }, {"[exp]", "i32[1]"});
  test::expect_error<DTypeError>([] { round(from_vector({1}, {1}, DType::i64)); }, {"[round]"});
  test::expect_error<ShapeError>([] { clamp(from_vector({1}, {1}), 2, 1); }, {"[clamp]"});
}

namespace {

struct BinaryCase {
  const char* name;
  BinaryOp op;
  std::function<double(double, double)> ref;
  bool floating_only;
  bool positive_a;  // pow needs a > 0 for real results
};

std::vector<BinaryCase> binary_cases() {
  return {
      {"add", BinaryOp::add, [](double a, double b) { return a + b; }, false, false},
      {"sub", BinaryOp::sub, [](double a, double b) { return a - b; }, false, false},
      {"mul", BinaryOp::mul, [](double a, double b) { return a * b; }, false, false},
      {"div", BinaryOp::div, [](double a, double b) { return a / b; }, false, false},
      {"minimum", BinaryOp::minimum, [](double a, double b) { return std::min(a, b); }, false, false},
      {"maximum", BinaryOp::maximum, [](double a, double b) { return std::max(a, b); }, false, false},
      {"pow", BinaryOp::pow, [](double a, double b) { return std::pow(a, b); }, true, true},
      {"eq", BinaryOp::eq, [](double a, double b) { return double(a == b); }, false, false},
      {"ne", BinaryOp::ne, [](double a, double b) { return double(a != b); }, false, false},
      {"lt", BinaryOp::lt, [](double a, double b) { return double(a < b); }, false, false},
      {"le", BinaryOp::le, [](double a, double b) { return double(a <= b); }, false, false},
      {"gt", BinaryOp::gt, [](double a, double b) { return double(a > b); }, false, false},
      {"ge", BinaryOp::ge, [](double a, double b) { return double(a >= b); }, false, false},
  };
}

// Shape pairs covering NumPy broadcasting: equal, trailing vector, outer product, rank
// extension on both sides, a 0-d scalar, a size-1 vector, and a zero-sized dim.
const std::vector<std::pair<Shape, Shape>>& shape_pairs() {
  static const std::vector<std::pair<Shape, Shape>> p = {
      {{5, 7}, {5, 7}},  {{5, 7}, {7}},       {{5, 1}, {1, 7}},   {{13, 1, 5}, {7, 1}},
      {{}, {5, 7}},      {{5, 7}, {1}},       {{3, 5, 7}, {3, 1, 7}}, {{0, 7}, {7}}, {{5, 0}, {5, 1}},
  };
  return p;
}

}  // namespace

TEST_CASE("binary: every op with broadcasting and strided operands in every dtype") {
  const std::vector<DType> dtypes = {DType::f32, DType::f64, DType::f16, DType::bf16,
                                     DType::i8,  DType::u8,  DType::i32, DType::i64};
  for (const BinaryCase& c : binary_cases()) {
    for (DType dt : dtypes) {
      if (c.floating_only && !is_floating(dt)) continue;
      const bool integral = is_integral(dt);
      for (const auto& [sa, sb] : shape_pairs()) {
        for (Layout la : {Layout::contiguous, Layout::transposed, Layout::stepped, Layout::permuted}) {
          for (Layout lb : {Layout::contiguous, Layout::narrowed, Layout::broadcast}) {
            // Values: small integers (so comparisons hit equal pairs and integer results stay in
            // range) for the comparisons and integer dtypes, reals elsewhere; no zero divisors.
            auto gen_a = [&](int64_t n) {
              if (c.positive_a) return uniform(n, 0.25, 4, 5);
              if (integral || is_comparison(c.op)) return uniform_int(n, dt == DType::u8 ? 0 : -9, 9, 5);
              return uniform(n, -8, 8, 5);
            };
            auto gen_b = [&](int64_t n) {
              std::vector<double> v;
              if (c.op == BinaryOp::pow) v = uniform(n, -2, 2, 6);
              else if (integral || is_comparison(c.op)) v = uniform_int(n, dt == DType::u8 ? 0 : -9, 9, 6);
              else v = uniform(n, -8, 8, 6);
              if (c.op == BinaryOp::div)
                for (double& x : v) x = x == 0 ? 3 : (std::fabs(x) < 0.5 ? 0.5 : x);
              if (dt == DType::u8 && c.op == BinaryOp::sub)
                for (double& x : v) x = 0;  // keep a - b >= 0 (u8 saturates below 0)
              return v;
            };
            Input a = make_input(sa, dt, la, gen_a), b = make_input(sb, dt, lb, gen_b);
            if (!a.t.defined() || !b.t.defined()) continue;
            const std::string what = std::string(c.name) + " " + dtype_name(dt) + shape_str(sa) + a.layout + " , " +
                                     shape_str(sb) + b.layout;
            Tensor y = binary(c.op, a.t, b.t);
            const Shape out = broadcast_shapes(sa, sb, "test");
            REQUIRE_MESSAGE(y.shape() == out, what);
            CHECK_MESSAGE(y.dtype() == (is_comparison(c.op) ? DType::u8 : dt), what);
            std::vector<double> want;
            for_each_index(out, [&](const std::vector<int64_t>& i) {
              const double x = a.values[broadcast_linear(sa, out, i)], z = b.values[broadcast_linear(sb, out, i)];
              double r = c.ref(x, z);
              if (integral && c.op == BinaryOp::div) r = std::trunc(r);  // integer division truncates
              if (dt == DType::i8 || dt == DType::u8)  // products of small ints may leave i8: saturate
                r = std::clamp(r, dt == DType::i8 ? -128.0 : 0.0, dt == DType::i8 ? 127.0 : 255.0);
              want.push_back(r);
            });
            // add/sub/mul/div/min/max are correctly rounded in C and rounded again to the output
            // dtype: |err| <= (u_C + u_out)·|ref|. pow: libm powf is within 2 ulp of C, so
            // (3 u_C + u_out)·|ref|. Comparisons and integers are exact.
            const double uc = is_floating(dt) && !is_comparison(c.op) ? compute_roundoff(dt) : 0;
            const double uo = is_comparison(c.op) ? 0 : unit_roundoff(dt), fl = is_comparison(c.op) ? 0 : abs_floor(dt);
            const double k = c.op == BinaryOp::pow ? 3 : 1;
            expect_close(read(y), want, [&](size_t i) { return (k * uc + uo) * std::fabs(want[i]) + fl; }, what);
          }
        }
      }
    }
  }
}

TEST_CASE("binary: comparisons on 16-bit floats compare the stored values") {
  // 1 + 2^-9 is not representable in bf16 and rounds to 1, so the two stored values are equal.
  Tensor a = from_vector({1.0, 1.0 + std::ldexp(1.0, -9), 2}, {3}, DType::bf16);
  Tensor b = from_vector({1.0, 1.0, 2.015625}, {3}, DType::bf16);  // 2 + 2^-6: the next bf16 after 2
  CHECK(read(eq(a, b)) == std::vector<double>{1, 1, 0});
  CHECK(read(lt(a, b)) == std::vector<double>{0, 0, 1});
  CHECK(read(ge(a, b)) == std::vector<double>{1, 1, 0});
  // NaN: every ordered comparison is false, ne is true.
  Tensor n = from_vector({NAN, 1}, {2}, DType::f16), m = from_vector({NAN, NAN}, {2}, DType::f16);
  CHECK(read(eq(n, m)) == std::vector<double>{0, 0});
  CHECK(read(ne(n, m)) == std::vector<double>{1, 1});
  CHECK(read(le(n, m)) == std::vector<double>{0, 0});
  CHECK(read(gt(n, m)) == std::vector<double>{0, 0});
  CHECK(eq(n, m).dtype() == DType::u8);
}

TEST_CASE("binary: NaN and Inf semantics, integer division by zero, scalar operands") {
  for (DType dt : float_dtypes()) {
    INFO("dtype ", std::string(dtype_name(dt)));
    Tensor a = from_vector({NAN, 1, -INFINITY, 2}, {4}, dt), b = from_vector({1, NAN, 3, INFINITY}, {4}, dt);
    // minimum/maximum propagate NaN (like torch.minimum), and order ±Inf.
    std::vector<double> mn = read(minimum(a, b)), mx = read(maximum(a, b));
    CHECK(std::isnan(mn[0]));
    CHECK(std::isnan(mn[1]));
    CHECK(mn[2] == -INFINITY);
    CHECK(mn[3] == 2);
    CHECK(std::isnan(mx[0]));
    CHECK(std::isnan(mx[1]));
    CHECK(mx[2] == 3);
    CHECK(mx[3] == INFINITY);
    std::vector<double> q = read(div(from_vector({1, -1, 0}, {3}, dt), zeros({3}, dt)));
    CHECK(q[0] == INFINITY);
    CHECK(q[1] == -INFINITY);
    CHECK(std::isnan(q[2]));
    // Tensor ⊕ double operators: the scalar takes the tensor's dtype.
    Tensor x = from_vector({1, 2, 3}, {3}, dt);
    CHECK(read(x + 1.0) == std::vector<double>{2, 3, 4});
    CHECK(read(x - 0.5) == std::vector<double>{0.5, 1.5, 2.5});
    CHECK(read(x * 2.0) == std::vector<double>{2, 4, 6});
    CHECK(read(2.0 * x) == std::vector<double>{2, 4, 6});
    CHECK(read(x / 4.0) == std::vector<double>{0.25, 0.5, 0.75});
    CHECK(read(-x) == std::vector<double>{-1, -2, -3});
    CHECK(read(x + x) == std::vector<double>{2, 4, 6});
    CHECK(read(x - x) == std::vector<double>{0, 0, 0});
    CHECK(read(x * x) == std::vector<double>{1, 4, 9});
    CHECK(read(x / x) == std::vector<double>{1, 1, 1});
    CHECK(read(binary(BinaryOp::sub, x, 1.0)) == std::vector<double>{0, 1, 2});
    CHECK((x + 1.0).dtype() == dt);
  }
  // The scalar of `x / 3.0` rounds to the dtype first: bf16(3) is exact, bf16(0.1) is not.
  Tensor h = from_vector({1}, {1}, DType::bf16);
  CHECK((h / 0.1).item() == in_dtype(1.0 / in_dtype(0.1, DType::bf16), DType::bf16));
  // Integer division truncates toward zero and gives 0 for a zero divisor (defined, no trap).
  Tensor i = from_vector({7, -7, 7, -7, 5}, {5}, DType::i32), j = from_vector({2, 2, -2, -2, 0}, {5}, DType::i32);
  CHECK(read(div(i, j)) == std::vector<double>{3, -3, -3, 3, 0});
  CHECK(read(div(i.to(DType::i64), j.to(DType::i64))) == std::vector<double>{3, -3, -3, 3, 0});
}

TEST_CASE("binary: output of an op on a broadcast operand is a fresh contiguous tensor") {
  // The broadcast operand must not be written, and the output must not alias it.
  Tensor row = from_vector({1, 2, 3}, {1, 3});
  Tensor y = add(row.expand({4, 3}), from_vector(uniform(12, 0, 1, 8), {4, 3}));
  CHECK(y.is_contiguous());
  CHECK(!y.may_overlap(row));
  CHECK(read(row) == std::vector<double>{1, 2, 3});
  // A large operand exercises the threaded path; broadcast over a large leading dim.
  Tensor big = from_vector(uniform(301 * 513, -1, 1, 9), {301, 513}), col = from_vector(uniform(301, -1, 1, 10), {301, 1});
  const std::vector<double> bv = read(big), cv = read(col), got = read(mul(big.t().contiguous().t(), col));
  std::vector<double> want(bv.size());
  for (int64_t r = 0; r < 301; ++r)
    for (int64_t c = 0; c < 513; ++c) want[r * 513 + c] = static_cast<float>(bv[r * 513 + c] * cv[r]);
  expect_equal(got, want, "mul [301, 513] (column-major) * [301, 1]");  // one f32 rounding: exact match
}

TEST_CASE("where: broadcasting condition and operands, strided views, every dtype") {
  for (DType dt : {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i8, DType::u8, DType::i32, DType::i64}) {
    const std::vector<std::array<Shape, 3>> shapes = {
        {Shape{5, 7}, Shape{5, 7}, Shape{5, 7}}, {Shape{5, 1}, Shape{7}, Shape{}}, {Shape{13, 1, 5}, Shape{7, 1}, Shape{1, 5}},
        {Shape{0, 7}, Shape{7}, Shape{7}}};
    for (const auto& s : shapes) {
      for (Layout l : {Layout::contiguous, Layout::transposed, Layout::stepped}) {
        Input c = make_input(s[0], DType::u8, l, [](int64_t n) { return uniform_int(n, 0, 1, 1); });
        Input a = make_input(s[1], dt, Layout::stepped, [](int64_t n) { return uniform_int(n, 0, 100, 2); });
        Input b = make_input(s[2], dt, l == Layout::transposed ? Layout::contiguous : l,
                             [](int64_t n) { return uniform_int(n, 0, 100, 3); });
        if (!c.t.defined()) c = make_input(s[0], DType::u8, Layout::contiguous, [](int64_t n) { return uniform_int(n, 0, 1, 1); });
        if (!a.t.defined()) a = make_input(s[1], dt, Layout::contiguous, [](int64_t n) { return uniform_int(n, 0, 100, 2); });
        if (!b.t.defined()) b = make_input(s[2], dt, Layout::contiguous, [](int64_t n) { return uniform_int(n, 0, 100, 3); });
        const std::string what = std::string("where ") + dtype_name(dt) + shape_str(s[0]) + c.layout;
        Tensor y = where(c.t, a.t, b.t);
        const Shape out = broadcast_shapes(broadcast_shapes(s[0], s[1], "t"), s[2], "t");
        REQUIRE_MESSAGE(y.shape() == out, what);
        CHECK(y.dtype() == dt);
        std::vector<double> want;
        for_each_index(out, [&](const std::vector<int64_t>& i) {
          want.push_back(c.values[broadcast_linear(s[0], out, i)] != 0 ? a.values[broadcast_linear(s[1], out, i)]
                                                                      : b.values[broadcast_linear(s[2], out, i)]);
        });
        expect_equal(read(y), want, what);
      }
    }
  }
  // A comparison result feeds where directly; any nonzero u8 counts as true.
  Tensor x = from_vector({-2, 3, -1, 4}, {4});
  CHECK(read(where(gt(x, zeros({1})), x, zeros({1}))) == std::vector<double>{0, 3, 0, 4});
  CHECK(read(where(from_vector({0, 7, 255}, {3}, DType::u8), ones({3}), zeros({3}))) == std::vector<double>{0, 1, 1});
  test::expect_error<DTypeError>([&] { where(x, x, x); }, {"[where]", "u8"});
  test::expect_error<DTypeError>([&] { where(gt(x, x), x, x.to(DType::f64)); }, {"[where]", "f32[4]", "f64[4]"});
  test::expect_error<ShapeError>([&] { where(gt(x, x), x, zeros({3})); }, {"[where]", "[3]"});
}
