// Reductions over one axis (sum, mean, max, min, argmax, sum_squares) with keepdim and negative
// axes, sum_all, mean_all, sum_to: against f64 plain loops on odd shapes and strided views.
#include <doctest/doctest.h>

#include <cmath>

#include "engine/ops.h"
#include "tests/engine/test_util.h"

using namespace arq;
using namespace arq::test;

namespace {

struct Ref {
  std::vector<double> value;  // reduced values, row-major over the keepdim shape
  std::vector<double> abs_sum;  // Σ|term| per output (for the error bound)
};

// Reference reduction of `v` (row-major over `shape`) along `axis` (non-negative).
Ref reduce_ref(ReduceOp op, const std::vector<double>& v, const Shape& shape, int64_t axis) {
  Shape ks = shape;
  ks[axis] = 1;
  const int64_t n = shape[axis];
  Ref r;
  for_each_index(ks, [&](const std::vector<int64_t>& o) {
    std::vector<int64_t> i = o;
    double acc = 0, abs_acc = 0, best = 0;
    int64_t bi = 0;
    for (int64_t j = 0; j < n; ++j) {
      i[axis] = j;
      const double x = v[linear(shape, i)];
      switch (op) {
        case ReduceOp::sum:
        case ReduceOp::mean: acc += x; abs_acc += std::fabs(x); break;
        case ReduceOp::sum_squares: acc += x * x; abs_acc += x * x; break;
        case ReduceOp::max:
        case ReduceOp::argmax:
          if (j == 0 || x > best) { best = x; bi = j; }  // strict: the first of equal maxima wins
          break;
        case ReduceOp::min:
          if (j == 0 || x < best) { best = x; bi = j; }
          break;
      }
    }
    if (op == ReduceOp::mean) { acc /= static_cast<double>(n); abs_acc /= static_cast<double>(n); }
    if (op == ReduceOp::max || op == ReduceOp::min) acc = best;
    if (op == ReduceOp::argmax) acc = static_cast<double>(bi);
    r.value.push_back(acc);
    r.abs_sum.push_back(abs_acc);
  });
  return r;
}

Tensor call(ReduceOp op, const Tensor& x, int64_t axis, bool keepdim) {
  switch (op) {
    case ReduceOp::sum: return sum(x, axis, keepdim);
    case ReduceOp::mean: return mean(x, axis, keepdim);
    case ReduceOp::max: return max(x, axis, keepdim);
    case ReduceOp::min: return min(x, axis, keepdim);
    case ReduceOp::argmax: return argmax(x, axis, keepdim);
    case ReduceOp::sum_squares: return sum_squares(x, axis, keepdim);
  }
  return {};
}

}  // namespace

TEST_CASE("reduce: every op, axis, keepdim, dtype and layout") {
  const ReduceOp ops[] = {ReduceOp::sum, ReduceOp::mean, ReduceOp::max, ReduceOp::min, ReduceOp::argmax,
                          ReduceOp::sum_squares};
  const std::vector<Shape> shapes = {{5, 7, 13}, {13}, {7, 1, 5}, {1, 13}, {3, 0, 5}};
  const std::vector<DType> dtypes = {DType::f32, DType::f64, DType::f16, DType::bf16,
                                     DType::i8,  DType::u8,  DType::i32, DType::i64};
  for (ReduceOp op : ops) {
    const bool float_only = op == ReduceOp::mean || op == ReduceOp::sum_squares;
    const bool extremum = op == ReduceOp::max || op == ReduceOp::min || op == ReduceOp::argmax;
    for (DType dt : dtypes) {
      if (float_only && !is_floating(dt)) continue;
      for (const Shape& shape : shapes) {
        for (Layout l : all_layouts()) {
          // Integer-valued data makes ties (argmax must pick the first); reals elsewhere.
          Input in = make_input(shape, dt, l, [&](int64_t n) {
            if (is_integral(dt) || extremum) return uniform_int(n, dt == DType::u8 ? 0 : -9, 9, 21);
            return uniform(n, -4, 4, 21);
          });
          if (!in.t.defined()) continue;
          const int64_t nd = static_cast<int64_t>(shape.size());
          for (int64_t axis = -nd; axis < nd; ++axis) {
            const int64_t ax = axis < 0 ? axis + nd : axis;
            if (extremum && shape[ax] == 0) continue;  // checked for an error below
            for (bool keepdim : {false, true}) {
              const std::string what = std::string(reduce_name(op)) + " " + dtype_name(dt) + shape_str(shape) + " " +
                                       in.layout + " axis " + std::to_string(axis) + (keepdim ? " keepdim" : "");
              Tensor y = call(op, in.t, axis, keepdim);
              Shape want_shape = shape;
              if (keepdim) want_shape[ax] = 1;
              else want_shape.erase(want_shape.begin() + ax);
              REQUIRE_MESSAGE(y.shape() == want_shape, what);
              CHECK_MESSAGE(y.dtype() == (op == ReduceOp::argmax ? DType::i64 : dt), what);
              const Ref r = reduce_ref(op, in.values, shape, ax);
              // Sum of n terms in any order with unit roundoff u_C: |err| <= n·u_C·Σ|x| (first
              // order; covers f32 accumulation as well as wider); the squares of sum_squares add
              // one rounding each ((n+1)·u_C); mean's division one more; the result is then
              // rounded to the output dtype (u_out·|ref|). Extrema and integers are exact.
              const double n = static_cast<double>(shape[ax]);
              const double uc = extremum || is_integral(dt) ? 0 : compute_roundoff(dt);
              const double uo = extremum ? 0 : unit_roundoff(dt), fl = extremum ? 0 : abs_floor(dt);
              expect_close(read(y), r.value, [&](size_t i) {
                return (n + 2) * uc * r.abs_sum[i] + uo * std::fabs(r.value[i]) + fl;
              }, what);
            }
          }
        }
      }
    }
  }
}

TEST_CASE("reduce: long rows bound the accumulated error") {
  // 100003 f32 terms of mixed sign, split over threads. engine/backend.h promises f32 sums
  // with f64 partials, so beyond the final rounding to f32 (2^-24·|s|) only short f32 runs can
  // lose precision; we allow f32 runs of up to 64 terms: 64·2^-24·Σ|x|. (The generic n-term bound
  // n·2^-24·Σ|x| would be ~6% of Σ|x| here and could not catch a plain f32 accumulator.)
  const int64_t n = 100003;
  const std::vector<double> v = uniform(n, -1, 1.1, 31);
  Tensor x = from_vector(v, {1, n});
  const std::vector<double> xv = read(x);
  double s = 0, sa = 0, ss = 0;
  for (double e : xv) { s += e; sa += std::fabs(e); ss += e * e; }
  CHECK(std::fabs(sum(x, -1).item() - s) <= 64 * std::ldexp(1.0, -24) * sa + std::ldexp(1.0, -24) * std::fabs(s));
  CHECK(std::fabs(mean(x, 1).item() - s / n) <= (64 * std::ldexp(1.0, -24) * sa + std::ldexp(1.0, -24) * std::fabs(s)) / n);
  CHECK(std::fabs(sum_squares(x, 1).item() - ss) <= 65 * std::ldexp(1.0, -24) * ss);
  CHECK(std::fabs(sum_all(x).item() - s) <= 64 * std::ldexp(1.0, -24) * sa + std::ldexp(1.0, -24) * std::fabs(s));
  // The same along a strided axis (column of a row-major matrix).
  Tensor col = x.view({n, 1}).expand({n, 3}).contiguous();
  CHECK(std::fabs(sum(col, 0).at({1}) - s) <= 64 * std::ldexp(1.0, -24) * sa + std::ldexp(1.0, -24) * std::fabs(s));
}

TEST_CASE("reduce: NaN, infinities, ties and empty axes") {
  for (DType dt : float_dtypes()) {
    INFO("dtype ", std::string(dtype_name(dt)));
    Tensor x = from_vector({1, NAN, 3, 3, -INFINITY, 2}, {2, 3}, dt);  // rows [1 NaN 3], [3 -inf 2]
    std::vector<double> mx = read(max(x, 1)), mn = read(min(x, 1)), am = read(argmax(x, 1));
    CHECK(std::isnan(mx[0]));  // NaN propagates through max/min
    CHECK(mx[1] == 3);
    CHECK(std::isnan(mn[0]));
    CHECK(mn[1] == -INFINITY);
    CHECK(am == std::vector<double>{1, 0});  // argmax points at the NaN
    CHECK(std::isnan(read(sum(x, 1))[0]));
    CHECK(read(sum(x, 1))[1] == -INFINITY);
    CHECK(read(argmax(from_vector({5, 5, 5, 1}, {4}, dt), 0)) == std::vector<double>{0});
    CHECK(read(argmax(from_vector({1, 5, 2, 5}, {4}, dt), -1)) == std::vector<double>{1});
  }
  // Empty axis: sum is 0, mean is NaN (0/0), extrema are errors.
  Tensor e = zeros({3, 0});
  CHECK(read(sum(e, 1)) == std::vector<double>{0, 0, 0});
  CHECK(read(sum_squares(e, 1)) == std::vector<double>{0, 0, 0});
  CHECK(std::isnan(read(mean(e, 1))[0]));
  CHECK(sum(e, 0).shape() == Shape{0});
  CHECK(sum_all(e).item() == 0);
  CHECK(std::isnan(mean_all(e).item()));
  test::expect_error<ShapeError>([&] { max(e, 1); }, {"[max]", "empty", "[3, 0]"});
  test::expect_error<ShapeError>([&] { argmax(e, -1); }, {"[argmax]"});
  test::expect_error<ShapeError>([&] { sum(e, 2); }, {"2", "f32[3, 0]"});
  test::expect_error<ShapeError>([] { sum(scalar_tensor(1), 0); }, {"[sum]"});
  test::expect_error<DTypeError>([] { mean(zeros({3}, DType::i32), 0); }, {"[mean]", "i32[3]"});
  test::expect_error<DTypeError>([] { sum_squares(zeros({3}, DType::u8), 0); }, {"[sum_squares]"});
}

TEST_CASE("reduce: sum_all and mean_all on strided views") {
  for (DType dt : float_dtypes()) {
    for (Layout l : all_layouts()) {
      Input in = make_input({5, 7, 13}, dt, l, [](int64_t n) { return uniform(n, -2, 3, 41); });
      if (!in.t.defined()) continue;
      const std::string what = std::string(dtype_name(dt)) + " " + in.layout;
      double s = 0, sa = 0;
      for (double v : in.values) { s += v; sa += std::fabs(v); }
      const double n = static_cast<double>(in.values.size());
      // n-term sum bound (see the axis test) plus rounding the result to the dtype.
      const double tol = (n + 2) * compute_roundoff(dt) * sa + unit_roundoff(dt) * std::fabs(s);
      Tensor sa_t = sum_all(in.t), ma_t = mean_all(in.t);
      CHECK_MESSAGE(sa_t.dim() == 0, what);
      CHECK_MESSAGE(sa_t.dtype() == dt, what);
      CHECK_MESSAGE(std::fabs(sa_t.item() - s) <= tol, what, " got ", sa_t.item(), " want ", s);
      CHECK_MESSAGE(std::fabs(ma_t.item() - s / n) <= tol / n + unit_roundoff(dt) * std::fabs(s / n), what);
    }
  }
  CHECK(sum_all(from_vector({1, 2, 3, 4}, {2, 2}, DType::i32)).item() == 10);
  CHECK(sum_all(scalar_tensor(2.5)).item() == 2.5);
  CHECK(mean_all(scalar_tensor(2.5)).dim() == 0);
}

TEST_CASE("reduce: sum_to undoes broadcasting") {
  const Shape xs{5, 7, 13};
  Input in = make_input(xs, DType::f64, Layout::permuted, [](int64_t n) { return uniform(n, -1, 1, 51); });
  const std::vector<Shape> targets = {{7, 1}, {1, 1, 13}, {13}, {5, 1, 13}, {5, 7, 13}, {1}, {}, {7, 13}, {1, 7, 1}};
  for (const Shape& t : targets) {
    const std::string what = "sum_to " + shape_str(t);
    Tensor y = sum_to(in.t, t);
    REQUIRE_MESSAGE(y.shape() == t, what);
    // Reference: every x element adds into the target element it broadcasts from.
    std::vector<double> want(static_cast<size_t>(numel_of(t)), 0.0);
    for_each_index(xs, [&](const std::vector<int64_t>& i) { want[broadcast_linear(t, xs, i)] += in.values[linear(xs, i)]; });
    // f64 sums of at most 455 terms of |x| < 1: 457·2^-53·455 < 3e-11.
    expect_close(read(y), want, [](size_t) { return 457 * std::ldexp(1.0, -53) * 455; }, what);
  }
  test::expect_error<ShapeError>([&] { sum_to(in.t, {3}); }, {"[sum_to]", "[3]", "[5, 7, 13]"});
  test::expect_error<ShapeError>([&] { sum_to(in.t, {2, 5, 7, 13}); }, {"[sum_to]"});
  test::expect_error<ShapeError>([&] { sum_to(in.t, {5, 7, 2}); }, {"[sum_to]"});
}
