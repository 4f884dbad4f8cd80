// Neural-net ops against f64 plain loops: matmul (2-D, batched, broadcast batch, transposed and
// strided operands), softmax/log_softmax on every axis, rms_norm (HF rounding order), rope in
// both pairings with broadcast cos/sin.
#include <doctest/doctest.h>

#include <cmath>

#include "engine/ops.h"
#include "tests/engine/test_util.h"

using namespace arq;
using namespace arq::test;

namespace {

double round_to(double v, DType t) {
  switch (t) {
    case DType::f32: return static_cast<float>(v);
    case DType::f16: return decode_f16(f64_to_f16_bits(v));
    case DType::bf16: return decode_bf16(f64_to_bf16_bits(v));
    default: return v;
  }
}

// C[..., i, j] = Σ_p A[..., i, p] B[..., p, j] with NumPy batch broadcasting; also Σ|A||B|.
void matmul_ref(const std::vector<double>& a, const Shape& sa, const std::vector<double>& b, const Shape& sb,
                Shape& out, std::vector<double>& c, std::vector<double>& cabs) {
  const int64_t m = sa[sa.size() - 2], k = sa.back(), n = sb.back();
  const Shape ba(sa.begin(), sa.end() - 2), bb(sb.begin(), sb.end() - 2);
  const Shape batch = broadcast_shapes(ba, bb, "ref");
  out = batch;
  out.push_back(m);
  out.push_back(n);
  c.clear();
  cabs.clear();
  for_each_index(out, [&](const std::vector<int64_t>& idx) {
    const std::vector<int64_t> bi(idx.begin(), idx.end() - 2);
    const int64_t i = idx[idx.size() - 2], j = idx.back();
    // Offsets of the matrices of a and b for this batch index.
    const int64_t oa = (batch.empty() ? 0 : broadcast_linear(ba, batch, bi)) * m * k;
    const int64_t ob = (batch.empty() ? 0 : broadcast_linear(bb, batch, bi)) * k * n;
    double s = 0, sabs = 0;
    for (int64_t p = 0; p < k; ++p) {
      const double t = a[oa + i * k + p] * b[ob + p * n + j];
      s += t;
      sabs += std::fabs(t);
    }
    c.push_back(s);
    cabs.push_back(sabs);
  });
}

void check_matmul(const Input& a, const Input& b, DType dt, const std::string& what) {
  Shape out;
  std::vector<double> want, wabs;
  matmul_ref(a.values, a.t.shape(), b.values, b.t.shape(), out, want, wabs);
  Tensor y;
  try {
    y = matmul(a.t, b.t);
  } catch (const std::exception& e) {
    FAIL_CHECK(what << " threw: " << e.what());
    return;
  }
  REQUIRE_MESSAGE(y.shape() == out, what);
  CHECK_MESSAGE(y.dtype() == dt, what);
  CHECK_MESSAGE(y.is_contiguous(), what);
  // A k-term dot product in any order with accumulator roundoff u_acc (f32 for f32/f16/bf16,
  // f64 for f64) errs by at most k·u_acc·Σ|a_ip b_pj| (first order; +2 for the products and
  // second-order terms); the result is then rounded once to the output dtype (u_out·|ref|).
  const double k = static_cast<double>(a.t.size(-1));
  const double uacc = compute_roundoff(dt), uo = unit_roundoff(dt), fl = abs_floor(dt);
  expect_close(read(y), want, [&](size_t i) { return (k + 2) * uacc * wabs[i] + uo * std::fabs(want[i]) + fl; }, what);
}

}  // namespace

TEST_CASE("matmul: 2-D, batched, broadcast batch, strided operands, every float dtype") {
  const std::vector<std::pair<Shape, Shape>> shapes = {
      {{5, 7}, {7, 13}},       {{3, 5, 7}, {3, 7, 13}}, {{2, 1, 5, 7}, {3, 7, 13}}, {{5, 7}, {4, 7, 13}},
      {{4, 5, 7}, {7, 13}},    {{1, 7}, {7, 1}},        {{5, 1}, {1, 13}},          {{13, 13}, {13, 13}},
      {{2, 3, 5, 7}, {2, 3, 7, 5}},
  };
  for (DType dt : float_dtypes()) {
    for (const auto& [sa, sb] : shapes) {
      for (Layout la : all_layouts()) {
        for (Layout lb : {Layout::contiguous, Layout::transposed, Layout::stepped, Layout::narrowed, Layout::broadcast}) {
          Input a = make_input(sa, dt, la, [](int64_t n) { return uniform(n, -2, 2, 61); });
          Input b = make_input(sb, dt, lb, [](int64_t n) { return uniform(n, -2, 2, 62); });
          if (!a.t.defined() || !b.t.defined()) continue;
          check_matmul(a, b, dt,
                       std::string("matmul ") + dtype_name(dt) + shape_str(sa) + a.layout + " · " + shape_str(sb) + b.layout);
        }
      }
    }
  }
}

TEST_CASE("matmul: larger odd shapes and batch layouts the kernel must handle") {
  for (DType dt : float_dtypes()) {
    const std::string d = dtype_name(dt);
    auto gen = [](uint32_t seed) { return [seed](int64_t n) { return uniform(n, -1, 1, seed); }; };
    // Big enough for oneDNN's blocked paths and the threaded f64 loop.
    check_matmul(make_input({67, 131}, dt, Layout::contiguous, gen(1)), make_input({131, 45}, dt, Layout::transposed, gen(2)),
                 dt, "matmul " + d + " [67,131]·[131,45]^T-view");
    check_matmul(make_input({67, 131}, dt, Layout::transposed, gen(3)), make_input({131, 45}, dt, Layout::contiguous, gen(4)),
                 dt, "matmul " + d + " [67,131]^T-view·[131,45]");
    // A linear layer: x [n, in] · W[out, in]ᵀ.
    Tensor x = from_vector(uniform(9 * 33, -1, 1, 5), {9, 33}, dt), w = from_vector(uniform(17 * 33, -1, 1, 6), {17, 33}, dt);
    check_matmul(Input{"x", x, read(x)}, Input{"Wt", w.t(), read(w.t())}, dt, "linear " + d);
    // Batch dims permuted in memory ([5, 3, 7] stored, [3, 5, 7] viewed: batch stride 7, row stride 21).
    Tensor ab = from_vector(uniform(5 * 3 * 7, -1, 1, 7), {5, 3, 7}, dt);
    Tensor ap = ab.permute({1, 0, 2});
    Tensor bb = from_vector(uniform(3 * 7 * 4, -1, 1, 8), {3, 4, 7}, dt);
    Tensor bt = bb.transpose(1, 2);  // [3, 7, 4], each matrix column-major
    check_matmul(Input{"perm", ap, read(ap)}, Input{"bt", bt, read(bt)}, dt, "matmul " + d + " permuted batch");
    // Explicitly expanded batch (stride 0) on the left, and a 4-D batch that cannot be merged
    // into one stride ([2, 3] batch of a permuted base).
    Tensor a1 = from_vector(uniform(5 * 7, -1, 1, 9), {1, 5, 7}, dt).expand({4, 5, 7});
    Tensor b4 = from_vector(uniform(4 * 7 * 6, -1, 1, 10), {4, 7, 6}, dt);
    check_matmul(Input{"exp", a1, read(a1)}, Input{"b", b4, read(b4)}, dt, "matmul " + d + " expanded batch");
    Tensor a4 = from_vector(uniform(3 * 2 * 5 * 7, -1, 1, 11), {3, 2, 5, 7}, dt).transpose(0, 1);  // [2, 3, 5, 7]
    Tensor b2 = from_vector(uniform(7 * 6, -1, 1, 12), {7, 6}, dt);
    check_matmul(Input{"a4", a4, read(a4)}, Input{"b2", b2, read(b2)}, dt, "matmul " + d + " unmergeable batch");
  }
}

TEST_CASE("matmul: empty dimensions") {
  for (DType dt : float_dtypes()) {
    INFO("dtype ", std::string(dtype_name(dt)));
    Tensor z = matmul(ones({5, 0}, dt), ones({0, 13}, dt));  // k = 0: all zeros
    CHECK(z.shape() == Shape{5, 13});
    CHECK(read(z) == std::vector<double>(65, 0.0));
    CHECK(matmul(ones({0, 7}, dt), ones({7, 13}, dt)).shape() == Shape{0, 13});
    CHECK(matmul(ones({5, 7}, dt), ones({7, 0}, dt)).shape() == Shape{5, 0});
    CHECK(matmul(ones({0, 5, 7}, dt), ones({7, 3}, dt)).shape() == Shape{0, 5, 3});
    Tensor zb = matmul(ones({2, 5, 0}, dt), ones({1, 0, 3}, dt));
    CHECK(zb.shape() == Shape{2, 5, 3});
    CHECK(read(zb) == std::vector<double>(30, 0.0));
  }
}

TEST_CASE("matmul: errors name the op and the shapes") {
  test::expect_error<ShapeError>([] { matmul(zeros({5, 7}), zeros({6, 13})); },
                                 {"[matmul]", "f32[5, 7] cpu", "f32[6, 13] cpu", "7 != 6"});
  test::expect_error<DTypeError>([] { matmul(zeros({5, 7}), zeros({7, 13}, DType::f16)); }, {"[matmul]", "f16[7, 13]"});
  test::expect_error<DTypeError>([] { matmul(zeros({5, 7}, DType::i32), zeros({7, 13}, DType::i32)); }, {"[matmul]", "i32"});
  test::expect_error<ShapeError>([] { matmul(zeros({7}), zeros({7, 13})); }, {"[matmul]", "f32[7]"});
  test::expect_error<ShapeError>([] { matmul(zeros({2, 5, 7}), zeros({3, 7, 13})); },
                                 {"[matmul]", "f32[2, 5, 7]", "f32[3, 7, 13]"});
}

namespace {

// Softmax along `axis` of v (row-major over shape), in f64. Also max|x - m| and log Σ per row,
// spread over the elements for the tolerance.
void softmax_ref(const std::vector<double>& v, const Shape& shape, int64_t axis, bool log_sm, std::vector<double>& out,
                 std::vector<double>& spread, std::vector<double>& logsum) {
  out.assign(v.size(), 0);
  spread.assign(v.size(), 0);
  logsum.assign(v.size(), 0);
  Shape ks = shape;
  ks[axis] = 1;
  const int64_t n = shape[axis];
  for_each_index(ks, [&](const std::vector<int64_t>& o) {
    std::vector<int64_t> i = o;
    double m = -INFINITY;
    for (int64_t j = 0; j < n; ++j) { i[axis] = j; m = std::max(m, v[linear(shape, i)]); }
    double s = 0, sp = 0;
    for (int64_t j = 0; j < n; ++j) {
      i[axis] = j;
      const double x = v[linear(shape, i)];
      s += std::exp(x - m);
      if (std::isfinite(x)) sp = std::max(sp, m - x);
    }
    for (int64_t j = 0; j < n; ++j) {
      i[axis] = j;
      const int64_t p = linear(shape, i);
      out[p] = log_sm ? v[p] - m - std::log(s) : std::exp(v[p] - m) / s;
      spread[p] = sp;
      logsum[p] = std::log(s);
    }
  });
}

}  // namespace

TEST_CASE("softmax / log_softmax: every axis, layout and float dtype") {
  const std::vector<Shape> shapes = {{5, 7, 13}, {13}, {7, 1}, {1, 7}};
  for (bool log_sm : {false, true}) {
    for (DType dt : float_dtypes()) {
      for (const Shape& shape : shapes) {
        for (Layout l : all_layouts()) {
          Input in = make_input(shape, dt, l, [](int64_t n) { return uniform(n, -6, 6, 71); });
          if (!in.t.defined()) continue;
          const int64_t nd = static_cast<int64_t>(shape.size());
          for (int64_t axis = -nd; axis < nd; ++axis) {
            const int64_t ax = axis < 0 ? axis + nd : axis;
            const std::string what = std::string(log_sm ? "log_softmax " : "softmax ") + dtype_name(dt) + shape_str(shape) +
                                     " " + in.layout + " axis " + std::to_string(axis);
            Tensor y = log_sm ? log_softmax(in.t, axis) : softmax(in.t, axis);
            REQUIRE_MESSAGE(y.shape() == shape, what);
            CHECK_MESSAGE(y.dtype() == dt, what);
            CHECK_MESSAGE(y.is_contiguous(), what);
            std::vector<double> want, spread, ls;
            softmax_ref(in.values, shape, ax, log_sm, want, spread, ls);
            const double n = static_cast<double>(shape[ax]);
            const double uc = compute_roundoff(dt), uo = unit_roundoff(dt), fl = abs_floor(dt);
            // softmax: x_j − m rounds with error ≤ u_C|x_j − m|, which exp turns into the same
            // relative error; exp itself ≤ 2 u_C; the n-term sum ≤ n u_C; the division u_C; then
            // the output rounding u_out: rel ≤ (|x − m|max + n + 4)·u_C + u_out.
            // log_softmax: absolute ≤ u_C·(|x − m| + |log Σ| + |ref| + n + 4) + u_out·|ref|.
            expect_close(read(y), want, [&](size_t i) {
              if (log_sm) return uc * (spread[i] + std::fabs(ls[i]) + std::fabs(want[i]) + n + 4) + uo * std::fabs(want[i]) + fl;
              return ((spread[i] + n + 4) * uc + uo) * std::fabs(want[i]) + fl;
            }, what);
          }
        }
      }
    }
  }
}

TEST_CASE("softmax: large logits, masked (-inf) entries, rows sum to one") {
  for (DType dt : {DType::f32, DType::f64}) {
    INFO("dtype ", std::string(dtype_name(dt)));
    // Large logits must not overflow: [1000, 999, 998] -> softmax of [2, 1, 0].
    std::vector<double> s = read(softmax(from_vector({1000, 999, 998}, {1, 3}, dt)));
    const double e1 = std::exp(-1.0), e2 = std::exp(-2.0), z = 1 + e1 + e2;
    const double tol = 16 * compute_roundoff(dt);
    CHECK(std::fabs(s[0] - 1 / z) <= tol);
    CHECK(std::fabs(s[1] - e1 / z) <= tol);
    CHECK(std::fabs(s[2] - e2 / z) <= tol);
    std::vector<double> ls = read(log_softmax(from_vector({-1000, -1001}, {2}, dt)));
    CHECK(std::fabs(ls[0] + std::log1p(std::exp(-1.0))) <= 2048 * compute_roundoff(dt));  // |x| ~ 1e3
    // -inf entries (attention masks) get probability 0 and log-probability -inf.
    // Masked entries are exactly 0 / -inf; the rest within the softmax bound (n + 4)·u_C.
    std::vector<double> m = read(softmax(from_vector({0, -INFINITY, 0, -INFINITY}, {4}, dt)));
    CHECK(std::fabs(m[0] - 0.5) <= 8 * compute_roundoff(dt) * 0.5);
    CHECK(m[1] == 0);
    CHECK(std::fabs(m[2] - 0.5) <= 8 * compute_roundoff(dt) * 0.5);
    CHECK(m[3] == 0);
    std::vector<double> lm = read(log_softmax(from_vector({0, -INFINITY}, {2}, dt)));
    CHECK(std::fabs(lm[0]) <= 6 * compute_roundoff(dt));
    CHECK(lm[1] == -INFINITY);
    // A row with +inf has no finite softmax; NaN comes out rather than a silent number.
    CHECK(std::isnan(read(softmax(from_vector({INFINITY, 0}, {2}, dt)))[0]));
  }
  // Rows along axis 0 of a transposed [300, 11] view sum to 1 within (n + 4)·u_C·1.
  Tensor x = from_vector(uniform(300 * 11, -10, 10, 81), {11, 300}).t();
  Tensor p = softmax(x, 0);
  std::vector<double> col = read(sum(p.to(DType::f64), 0));
  for (double c : col) CHECK(std::fabs(c - 1) <= 304 * std::ldexp(1.0, -24));
  test::expect_error<DTypeError>([] { softmax(zeros({3}, DType::i32)); }, {"[softmax]", "i32"});
  test::expect_error<ShapeError>([] { log_softmax(zeros({3, 4}), 2); }, {"2", "f32[3, 4]"});
  test::expect_error<ShapeError>([] { softmax(scalar_tensor(1)); }, {"[softmax]"});
}

TEST_CASE("rms_norm: HF order (normalize in f32, round, multiply) on strided inputs") {
  const std::vector<Shape> shapes = {{5, 13}, {3, 5, 7}, {13}, {5, 1}, {0, 7}};
  const double eps = 1e-6;
  for (DType dt : float_dtypes()) {
    for (const Shape& shape : shapes) {
      for (Layout l : all_layouts()) {
        Input x = make_input(shape, dt, l, [](int64_t n) { return uniform(n, -3, 3, 91); });
        if (!x.t.defined()) continue;
        const int64_t d = shape.back();
        // The weight as a stepped view too (stride 3).
        Input w = make_input({d}, dt, Layout::stepped, [](int64_t n) { return uniform(n, 0.5, 2, 92); });
        const std::string what = std::string("rms_norm ") + dtype_name(dt) + shape_str(shape) + " " + x.layout;
        Tensor y = rms_norm(x.t, w.t, eps);
        REQUIRE_MESSAGE(y.shape() == shape, what);
        CHECK_MESSAGE(y.dtype() == dt, what);
        std::vector<double> want(x.values.size()), normed(x.values.size());
        for (size_t r = 0; r * d < x.values.size(); ++r) {
          double ss = 0;
          for (int64_t j = 0; j < d; ++j) ss += x.values[r * d + j] * x.values[r * d + j];
          const double inv = 1 / std::sqrt(ss / static_cast<double>(d) + eps);
          for (int64_t j = 0; j < d; ++j) {
            normed[r * d + j] = round_to(x.values[r * d + j] * inv, dt);
            want[r * d + j] = round_to(w.values[j] * normed[r * d + j], dt);
          }
        }
        // The f32 normalization (sum of squares, sqrt, product) errs by ≤ (d + 4)·u_C relative;
        // that can flip the rounding of `normed` to the dtype by one ulp (2·u_out relative), and
        // the final product rounds once more (u_out): |err| ≤ |w|·(2 u_out + (d + 4) u_C)·|normed|
        // + u_out·|ref|.
        const double uc = compute_roundoff(dt), uo = unit_roundoff(dt), fl = abs_floor(dt);
        expect_close(read(y), want, [&](size_t i) {
          const double wj = std::fabs(w.values[i % d]);
          return wj * (2 * uo + (d + 4) * uc) * std::fabs(normed[i]) + uo * std::fabs(want[i]) + fl;
        }, what);
      }
    }
  }
}

TEST_CASE("rms_norm: bf16 rounds the normalized value before the weight multiply") {
  // Rows of 8 bf16 values with Σx²/8 = ms exactly, and eps = 2.25 − ms, so rsqrt(ms + eps) = 2/3
  // exactly in the maths. Then normed = bf16(2x/3) is never near a bf16 tie (2x/3 is a multiple
  // of a third of x's last bit), so the engine's f32 arithmetic must reproduce it exactly, and
  // out = bf16(w · normed) exactly. Rounding once (bf16(w·x·2/3)) differs on some elements.
  std::vector<double> xs = uniform(8, -0.5, 0.5, 101);
  for (double& v : xs) v = round_to(v, DType::bf16);
  double ss = 0;
  for (double v : xs) ss += v * v;
  const double eps = 2.25 - ss / 8;  // exact: all terms have few bits
  REQUIRE(eps > 0);
  int differ = 0;
  for (uint32_t seed = 0; seed < 8; ++seed) {
    std::vector<double> ws = uniform(8, 0.5, 4, 200 + seed);
    for (double& v : ws) v = round_to(v, DType::bf16);
    Tensor y = rms_norm(from_vector(xs, {1, 8}, DType::bf16), from_vector(ws, {8}, DType::bf16), eps);
    const std::vector<double> got = read(y);
    for (int j = 0; j < 8; ++j) {
      const double hf = round_to(ws[j] * round_to(xs[j] * 2 / 3, DType::bf16), DType::bf16);
      const double once = round_to(ws[j] * xs[j] * 2 / 3, DType::bf16);
      CHECK_MESSAGE(got[j] == hf, "seed ", seed, " element ", j, ": got ", got[j], " HF order ", hf, " single rounding ", once);
      differ += hf != once;
    }
  }
  CHECK(differ > 0);  // the test can tell the two orders apart
}

TEST_CASE("rms_norm: errors") {
  test::expect_error<ShapeError>([] { rms_norm(zeros({5, 7}), zeros({6}), 1e-6); },
                                 {"[rms_norm]", "[7]", "f32[6] cpu", "f32[5, 7] cpu"});
  test::expect_error<ShapeError>([] { rms_norm(zeros({5, 7}), zeros({1, 7}), 1e-6); }, {"[rms_norm]"});
  test::expect_error<DTypeError>([] { rms_norm(zeros({5, 7}), zeros({7}, DType::bf16), 1e-6); },
                                 {"[rms_norm]", "bf16[7]"});
  test::expect_error<DTypeError>([] { rms_norm(zeros({5, 7}, DType::i32), zeros({7}, DType::i32), 1e-6); }, {"[rms_norm]"});
}

namespace {

// Rope reference over x [..., d] (row-major values) with cos/sin given per [..., d/2] position
// through `cs_index` (the broadcast map).
void rope_ref(const std::vector<double>& x, const Shape& xs, const std::vector<double>& c, const std::vector<double>& s,
              const Shape& cs_shape, RopeStyle style, std::vector<double>& out, std::vector<double>& mag) {
  const int64_t d = xs.back(), h = d / 2;
  Shape half = xs;
  half.back() = h;
  out.assign(x.size(), 0);
  mag.assign(x.size(), 0);
  for_each_index(half, [&](const std::vector<int64_t>& idx) {
    const int64_t row = linear(half, idx) / h, j = idx.back();
    const int64_t ia = row * d + (style == RopeStyle::rotate_half ? j : 2 * j);
    const int64_t ib = row * d + (style == RopeStyle::rotate_half ? j + h : 2 * j + 1);
    const int64_t ic = broadcast_linear(cs_shape, half, idx);
    const double a = x[ia], b = x[ib], cv = c[ic], sv = s[ic];
    out[ia] = a * cv - b * sv;
    out[ib] = b * cv + a * sv;
    mag[ia] = std::fabs(a * cv) + std::fabs(b * sv);
    mag[ib] = std::fabs(b * cv) + std::fabs(a * sv);
  });
}

}  // namespace

TEST_CASE("rope: both pairings, broadcast cos/sin, strided x, every float dtype") {
  // x [batch 2, heads 3, seq 5, d 8]; cos/sin for positions: [seq, d/2], [1, 1, seq, d/2],
  // [batch, 1, seq, d/2] (per-sample positions), [d/2] (one position).
  const Shape xs{2, 3, 5, 8};
  const std::vector<Shape> cs_shapes = {{5, 4}, {1, 1, 5, 4}, {2, 1, 5, 4}, {4}};
  for (RopeStyle style : {RopeStyle::rotate_half, RopeStyle::interleaved}) {
    for (DType dt : float_dtypes()) {
      for (const Shape& cs : cs_shapes) {
        for (Layout l : {Layout::contiguous, Layout::transposed, Layout::stepped, Layout::narrowed, Layout::permuted}) {
          Input x = make_input(xs, dt, l, [](int64_t n) { return uniform(n, -2, 2, 111); });
          // Angles θ = pos·f; cos/sin made from the same angles so c² + s² ≈ 1 as in a real table.
          const std::vector<double> th = uniform(numel_of(cs), -3, 3, 112);
          std::vector<double> cv(th.size()), sv(th.size());
          for (size_t i = 0; i < th.size(); ++i) { cv[i] = std::cos(th[i]); sv[i] = std::sin(th[i]); }
          Tensor ct = from_vector(cv, cs, dt), st = from_vector(sv, cs, dt);
          const std::string what = std::string("rope ") + (style == RopeStyle::rotate_half ? "rotate_half " : "interleaved ") +
                                   dtype_name(dt) + " cos" + shape_str(cs) + " x " + x.layout;
          Tensor y = rope(x.t, ct, st, style);
          REQUIRE_MESSAGE(y.shape() == xs, what);
          CHECK_MESSAGE(y.dtype() == dt, what);
          std::vector<double> want, mag;
          rope_ref(x.values, xs, read(ct), read(st), cs, style, want, mag);
          // a·c − b·s in C: two products and a difference, each rounded (≤ 2 u_C·(|ac| + |bs|)
          // with or without FMA), then rounded to the output dtype.
          const double uc = compute_roundoff(dt), uo = unit_roundoff(dt), fl = abs_floor(dt);
          expect_close(read(y), want, [&](size_t i) { return 2 * uc * mag[i] + uo * std::fabs(want[i]) + fl; }, what);
        }
      }
    }
  }
}

TEST_CASE("rope: pairing layout, identity rotation, cos/sin views, errors") {
  // d = 4, x = [1, 2, 3, 4], a quarter turn (c = 0, s = 1): rotate_half pairs (1,3), (2,4)
  // -> a' = −b, b' = a -> [−3, −4, 1, 2]; interleaved pairs (1,2), (3,4) -> [−2, 1, −4, 3].
  Tensor x = from_vector({1, 2, 3, 4}, {1, 4});
  Tensor c = zeros({1, 2}), s = ones({1, 2});
  CHECK(read(rope(x, c, s, RopeStyle::rotate_half)) == std::vector<double>{-3, -4, 1, 2});
  CHECK(read(rope(x, c, s, RopeStyle::interleaved)) == std::vector<double>{-2, 1, -4, 3});
  // cos = 1, sin = 0 is the identity (exact), also with cos/sin as stride-0 expanded views.
  Tensor xr = from_vector(uniform(3 * 5 * 6, -1, 1, 121), {3, 5, 6}, DType::bf16);
  Tensor one = ones({1}).to(DType::bf16).expand({5, 3}), zero = zeros({5, 1}, DType::bf16).expand({5, 3});
  CHECK(read(rope(xr, one, zero, RopeStyle::interleaved)) == read(xr));
  CHECK(read(rope(xr, one, zero, RopeStyle::rotate_half)) == read(xr));
  // Errors.
  test::expect_error<ShapeError>([] { rope(zeros({2, 5}), zeros({2}), zeros({2}), RopeStyle::rotate_half); },
                                 {"[rope]", "even", "f32[2, 5]"});
  test::expect_error<ShapeError>([] { rope(zeros({2, 6}), zeros({2}), zeros({2}), RopeStyle::rotate_half); },
                                 {"[rope]", "3", "f32[2] cpu"});
  test::expect_error<ShapeError>([] { rope(zeros({2, 6}), zeros({3}), zeros({1, 3}), RopeStyle::interleaved); },
                                 {"[rope]"});
  test::expect_error<ShapeError>([] { rope(zeros({2, 5, 6}), zeros({4, 3}), zeros({4, 3}), RopeStyle::interleaved); },
                                 {"[rope]", "[4, 3]"});
  test::expect_error<ShapeError>([] { rope(zeros({5, 6}), zeros({2, 5, 3}), zeros({2, 5, 3}), RopeStyle::interleaved); },
                                 {"[rope]"});
  test::expect_error<DTypeError>([] { rope(zeros({2, 6}), zeros({3}, DType::bf16), zeros({3}), RopeStyle::rotate_half); },
                                 {"[rope]", "bf16[3]"});
}

TEST_CASE("nn ops on zero-sized tensors return empty results") {
  for (DType dt : float_dtypes()) {
    INFO("dtype ", std::string(dtype_name(dt)));
    CHECK(softmax(zeros({0, 7}, dt)).shape() == Shape{0, 7});
    CHECK(softmax(zeros({3, 0}, dt), -1).shape() == Shape{3, 0});
    CHECK(log_softmax(zeros({3, 0, 5}, dt), 1).shape() == Shape{3, 0, 5});
    CHECK(log_softmax(zeros({3, 0, 5}, dt), 0).shape() == Shape{3, 0, 5});
    CHECK(rope(zeros({0, 4}, dt), zeros({2}, dt), zeros({2}, dt), RopeStyle::rotate_half).shape() == Shape{0, 4});
    CHECK(rope(zeros({3, 0}, dt), zeros({0}, dt), zeros({0}, dt), RopeStyle::interleaved).shape() == Shape{3, 0});
    CHECK(rms_norm(zeros({0, 5}, dt), ones({5}, dt), 1e-6).shape() == Shape{0, 5});
    CHECK(rms_norm(zeros({3, 0}, dt), ones({0}, dt), 1e-6).shape() == Shape{3, 0});
  }
}
