// Creation ops (full/zeros/ones/arange, random) and in-place writes (copy_, fill_) into strided
// views.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "engine/ops.h"
#include "tests/engine/test_util.h"

using namespace arq;
using test::read;

TEST_CASE("create: full, zeros, ones, scalar_tensor, *_like in every dtype") {
  for (DType dt : {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i8, DType::u8, DType::i32, DType::i64}) {
    INFO("dtype ", std::string(dtype_name(dt)));
    Tensor f = full({5, 7}, 3.0, dt);
    CHECK(f.dtype() == dt);
    CHECK(f.shape() == Shape{5, 7});
    CHECK(read(f) == std::vector<double>(35, 3.0));
    CHECK(read(zeros({13}, dt)) == std::vector<double>(13, 0.0));
    CHECK(read(ones({1, 13}, dt)) == std::vector<double>(13, 1.0));
    CHECK(read(zeros_like(f)) == std::vector<double>(35, 0.0));
    CHECK(ones_like(f).dtype() == dt);
    CHECK(scalar_tensor(2, dt).dim() == 0);
    CHECK(scalar_tensor(2, dt).item() == 2);
    CHECK(zeros({0, 7}, dt).numel() == 0);
  }
  // The fill value goes through the dtype's conversion: rounding and saturation.
  CHECK(full({1}, 300, DType::i8).item() == 127);
  CHECK(full({1}, -2.7, DType::i32).item() == -2);
  CHECK(full({1}, 65520, DType::f16).item() == INFINITY);
  CHECK(full({1}, 1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -40), DType::bf16).item() == 1.0078125);
  CHECK(std::isnan(full({1}, NAN, DType::bf16).item()));
}

TEST_CASE("create: arange") {
  CHECK(read(arange(0, 5)) == std::vector<double>{0, 1, 2, 3, 4});
  CHECK(arange(0, 5).dtype() == DType::i64);
  CHECK(read(arange(5, 0, -1)) == std::vector<double>{5, 4, 3, 2, 1});
  CHECK(read(arange(0.5, 3, 1, DType::f32)) == std::vector<double>{0.5, 1.5, 2.5});
  CHECK(arange(0, 0).numel() == 0);
  CHECK(arange(3, 1).numel() == 0);  // empty, not negative
  // Length is ceil((end - start) / step); value i is start + i * step computed in f64, rounded once.
  Tensor a = arange(0, 1, 0.1, DType::f64);
  CHECK(a.numel() == 10);
  const std::vector<double> av = read(a);
  for (int i = 0; i < 10; ++i) CHECK(av[i] == 0.0 + i * 0.1);
  CHECK(arange(-3, 10, 4, DType::i32).numel() == 4);  // -3 1 5 9
  CHECK(read(arange(-3, 10, 4, DType::i32)) == std::vector<double>{-3, 1, 5, 9});
  CHECK(read(arange(0, 4, 1, DType::bf16)) == std::vector<double>{0, 1, 2, 3});
  Tensor big = arange(0, 100003, 1, DType::f32);  // long enough to be split over threads
  const std::vector<double> bv = read(big);
  bool ok = true;
  for (size_t i = 0; i < bv.size(); ++i) ok = ok && bv[i] == static_cast<double>(i);
  CHECK(ok);
  test::expect_error<ShapeError>([] { arange(0, 5, 0); }, {"[arange]", "step"});
}

namespace {

// Runs f() with the pool at `threads` threads and restores the previous count.
template <class F>
auto with_threads(int threads, F f) {
  const int before = num_threads();
  set_num_threads(threads);
  auto r = f();
  set_num_threads(before);
  return r;
}

}  // namespace

TEST_CASE("create: random streams are deterministic across thread counts") {
  // 100003 elements: several 4096-element chunks, so two threads really split the work.
  const Shape shape{13, 7693};
  for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::f16}) {
    INFO("dtype ", std::string(dtype_name(dt)));
    auto u1 = with_threads(1, [&] { return read(rand_uniform(shape, 42, -1, 3, dt)); });
    auto u2 = with_threads(2, [&] { return read(rand_uniform(shape, 42, -1, 3, dt)); });
    CHECK(u1 == u2);
    auto n1 = with_threads(1, [&] { return read(rand_normal(shape, 42, 0.5, 2, dt)); });
    auto n2 = with_threads(2, [&] { return read(rand_normal(shape, 42, 0.5, 2, dt)); });
    CHECK(n1 == n2);
    // Element i depends only on (seed, i): a shorter tensor is a prefix of a longer one.
    const std::vector<double> pre = read(rand_uniform({1000}, 42, -1, 3, dt));
    CHECK(std::equal(pre.begin(), pre.end(), u1.begin()));
    // Another seed gives another stream.
    const std::vector<double> other = read(rand_uniform({1000}, 43, -1, 3, dt));
    int same = 0;
    for (size_t i = 0; i < 1000; ++i) same += other[i] == pre[i];
    CHECK(same < 20);  // bf16 has 2^8 values per binade, so a few coincide by chance
  }
  test::expect_error<DTypeError>([] { rand_uniform({3}, 1, 0, 1, DType::i32); }, {"[rand_uniform]", "i32"});
  test::expect_error<DTypeError>([] { rand_normal({3}, 1, 0, 1, DType::u8); }, {"[rand_normal]", "u8"});
}

TEST_CASE("create: random values have the right distribution") {
  // n = 200000 samples. For the mean of n i.i.d. draws with variance σ², the standard error is
  // σ/√n; for the sample variance it is √((μ4 − σ⁴)/n). We allow 6 standard errors (a false
  // failure has probability < 2e-9 per check). Quantiles: the fraction below q has standard
  // error √(p(1−p)/n).
  const int64_t n = 200000;
  const double sn = std::sqrt(static_cast<double>(n));
  {
    // uniform on [lo, hi): mean (lo+hi)/2, variance w²/12, μ4 = w⁴/80.
    const double lo = -2, hi = 5, w = hi - lo;
    const std::vector<double> v = read(rand_uniform({n}, 1234, lo, hi, DType::f64));
    double s = 0, s2 = 0;
    double vmin = INFINITY, vmax = -INFINITY;
    for (double x : v) { s += x; vmin = std::min(vmin, x); vmax = std::max(vmax, x); }
    const double m = s / n;
    for (double x : v) s2 += (x - m) * (x - m);
    const double var = s2 / (n - 1);
    CHECK(vmin >= lo);
    CHECK(vmax < hi);
    CHECK(std::fabs(m - (lo + hi) / 2) < 6 * std::sqrt(w * w / 12) / sn);
    const double var_se = std::sqrt(std::pow(w, 4) / 80 - std::pow(w * w / 12, 2)) / sn;
    CHECK(std::fabs(var - w * w / 12) < 6 * var_se);
    for (double p : {0.1, 0.5, 0.9}) {
      const double q = lo + p * w;
      const double frac = static_cast<double>(std::count_if(v.begin(), v.end(), [&](double x) { return x < q; })) / n;
      CHECK(std::fabs(frac - p) < 6 * std::sqrt(p * (1 - p)) / sn);
    }
  }
  {
    // normal(μ, σ): mean standard error σ/√n; variance: μ4 = 3σ⁴ so se = σ²√(2/n).
    const double mu = 1.5, sigma = 0.5;
    const std::vector<double> v = read(rand_normal({n}, 99, mu, sigma, DType::f32));
    double s = 0, s2 = 0;
    for (double x : v) s += x;
    const double m = s / n;
    for (double x : v) s2 += (x - m) * (x - m);
    const double var = s2 / (n - 1);
    CHECK(std::fabs(m - mu) < 6 * sigma / sn);
    CHECK(std::fabs(var - sigma * sigma) < 6 * sigma * sigma * std::sqrt(2.0) / sn);
    // Φ(−1) = 0.158655, Φ(0) = 0.5, Φ(2) = 0.977250.
    const std::pair<double, double> qs[] = {{-1, 0.15865525393145707}, {0, 0.5}, {2, 0.9772498680518208}};
    for (auto [z, p] : qs) {
      const double frac =
          static_cast<double>(std::count_if(v.begin(), v.end(), [&](double x) { return x < mu + z * sigma; })) / n;
      CHECK(std::fabs(frac - p) < 6 * std::sqrt(p * (1 - p)) / sn);
    }
    for (double x : v) {
      if (!std::isfinite(x)) {
        FAIL_CHECK("non-finite normal sample");
        break;
      }
    }
  }
}

TEST_CASE("create: from_vector / to_vector") {
  std::vector<double> v = {1, 2, 3, 4, 5, 6};
  Tensor t = from_vector(v, {2, 3}, DType::f64);
  v[0] = 100;  // from_vector copies
  CHECK(t.at({0, 0}) == 1);
  CHECK(to_vector(t.t()) == std::vector<double>{1, 4, 2, 5, 3, 6});
  CHECK(to_vector(from_vector({1.5, -2}, {2}, DType::i32)) == std::vector<double>{1, -2});
  test::expect_error<ShapeError>([] { from_vector({1, 2, 3}, {2, 2}); }, {"[from_vector]", "[2, 2]"});
}

TEST_CASE("create: fill_ and copy_ into strided views") {
  for (DType dt : {DType::f32, DType::bf16, DType::i32, DType::f64}) {
    INFO("dtype ", std::string(dtype_name(dt)));
    // fill_ of every other column of a transposed view touches exactly those elements.
    Tensor base = from_vector(test::uniform_int(7 * 13, -50, 50, 1), {7, 13}, dt);
    const std::vector<double> before = read(base);
    Tensor v = base.t().slice(0, 1, 13, 2);  // [6, 7]: base[:, 1::2] transposed
    fill_(v, 9);
    std::vector<double> want = before;
    for (int64_t i = 0; i < 7; ++i)
      for (int64_t j = 1; j < 13; j += 2) want[i * 13 + j] = 9;
    CHECK(read(base) == want);

    // copy_ from a contiguous source into a stepped, narrowed view.
    Tensor src = from_vector(test::uniform_int(3 * 4, -9, 9, 2), {3, 4}, dt);
    Tensor dst = base.narrow(0, 2, 3).slice(1, 0, 13, 4);  // [3, 4]: rows 2..4, columns 0, 4, 8, 12
    copy_(dst, src);
    const std::vector<double> sv = read(src);
    for (int64_t i = 0; i < 3; ++i)
      for (int64_t j = 0; j < 4; ++j) want[(i + 2) * 13 + 4 * j] = sv[i * 4 + j];
    CHECK(read(base) == want);

    // copy_ broadcasts the source ([4] -> [3, 4]) and casts (f64 source).
    Tensor row = from_vector({1, 2, 3, 4}, {4}, DType::f64);
    copy_(dst, row);
    for (int64_t i = 0; i < 3; ++i)
      for (int64_t j = 0; j < 4; ++j) want[(i + 2) * 13 + 4 * j] = j + 1;
    CHECK(read(base) == want);
    test::expect_error<ShapeError>([&] { copy_(dst, from_vector({1, 2, 3}, {3}, dt)); }, {"[copy_]"});
  }
  // Overlapping source and destination: copy_ behaves as if the source were read first.
  Tensor x = from_vector({0, 1, 2, 3, 4, 5, 6, 7}, {8});
  Tensor d = x.narrow(0, 1, 7), s = x.narrow(0, 0, 7);
  copy_(d, s);
  CHECK(read(x) == std::vector<double>{0, 0, 1, 2, 3, 4, 5, 6});
  Tensor y = from_vector({0, 1, 2, 3, 4, 5}, {2, 3});
  Tensor yt = y.view({3, 2}).t();  // writes into y from a permuted view of itself
  Tensor yv = y.view({2, 3});
  copy_(yv, yt);
  CHECK(read(y) == std::vector<double>{0, 2, 4, 1, 3, 5});
  // Casting copy into a stride-0 destination is not meaningful; into a 0-d tensor it is.
  Tensor sc = scalar_tensor(0, DType::f16);
  copy_(sc, scalar_tensor(1.0 / 3, DType::f64));
  CHECK(sc.item() == test::decode_f16(f64_to_f16_bits(1.0 / 3)));
}
