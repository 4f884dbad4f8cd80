// GGUF data types (int_asym_dq, int_sym_dq, int_asym_float_zp; quant/qdq_gguf.h):
//  - the qdq forward and the frozen layer against a plain-loop reference written from
//    spec/autoround.md §4d "Tuned path" (plus the three documented differences of qdq_gguf.h),
//    in f64 with every intermediate rounded to f32 where the implementation holds an f32 (a
//    single IEEE op on f32 operands done in f64 and rounded once is the f32 result), so the
//    comparison is exact;
//  - gradients w.r.t. V, α, β against central differences of the straight-through surrogate
//    (as tests/quant/test_qdq_grad.cpp: every rounding frozen at its base-point offset, every
//    clamp and every argmax at its base-point side).
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "autograd/ops.h"
#include "engine/ops.h"
#include "quant/qdq.h"
#include "quant/qdq_gguf.h"

using namespace arq;
using namespace arq::quant;

namespace {

double f32(double x) { return static_cast<double>(static_cast<float>(x)); }
double f16(double x) { return static_cast<double>(f16_bits_to_f32(f32_to_f16_bits(static_cast<float>(x)))); }

QuantScheme asym_dq(int bits, int64_t G, int sb, int64_t sg) {
  return {.bits = bits, .group_size = G, .sym = false, .data_type = "int_asym_dq", .scale_dtype = DType::f32,
          .super_bits = sb, .super_group_size = sg};
}
QuantScheme sym_dq(int bits, int64_t G, int sb, int64_t sg) {
  return {.bits = bits, .group_size = G, .sym = true, .data_type = "int_sym_dq", .scale_dtype = DType::f32,
          .super_bits = sb, .super_group_size = sg};
}
QuantScheme float_zp(int bits) {
  return {.bits = bits, .group_size = 32, .sym = false, .data_type = "int_asym_float_zp", .scale_dtype = DType::f16};
}
// The §4d table's k-quant rows and the q4_1/q5_1 row.
std::vector<QuantScheme> gguf_schemes() {
  return {asym_dq(2, 16, 4, 16), sym_dq(3, 16, 6, 16), asym_dq(4, 32, 6, 8), asym_dq(5, 32, 6, 8), sym_dq(6, 16, 8, 16),
          float_zp(4), float_zp(5)};
}

struct Ref {
  std::vector<double> w_hat, u, scale, min, d, dmin;  // per element / group / super-group
};

// x: grouped [rows, G]; v [rows·G] (or empty), a/b [rows] (or empty).
Ref reference(const std::vector<double>& x, int64_t rows, int64_t G, const QuantScheme& s, const std::vector<double>& v,
              const std::vector<double>& a, const std::vector<double>& b) {
  const QDataType t = s.qtype();
  const double thr = f32(s.scale_dtype == DType::f32 ? 1e-8 : 1e-5);  // q_scale_thresh as the f32 clamp holds it
  const double maxq = std::ldexp(1.0, s.bits) - 1, Q = std::ldexp(1.0, s.bits - 1);
  Ref r;
  r.scale.resize(rows);
  r.min.resize(rows);
  std::vector<double> sc(rows), mn(rows);
  for (int64_t g = 0; g < rows; ++g) {
    double lo = 0, hi = 0;
    for (int64_t j = 0; j < G; ++j) lo = std::min(lo, x[g * G + j]), hi = std::max(hi, x[g * G + j]);
    const double wmin = a.empty() ? lo : f32(lo * a[g]), wmax = b.empty() ? hi : f32(hi * b[g]);
    if (t == QDataType::int_sym_dq) {
      sc[g] = f32((wmax < -wmin ? -wmin : -wmax) / Q);  // s = M/Q, signed (§1.8)
    } else if (t == QDataType::int_asym_dq) {
      sc[g] = std::max(f32(f32(wmax - wmin) / maxq), thr);
      mn[g] = -wmin;
    } else {
      sc[g] = std::max(f16(f32(wmax - wmin) / maxq), f16(thr));
      mn[g] = f16(wmin);  // m ≤ 0
    }
  }
  if (t == QDataType::int_asym_float_zp) {
    r.scale = sc;
    for (int64_t g = 0; g < rows; ++g) r.min[g] = -mn[g];
  } else {
    const int64_t sg = s.super_group_size, n_sup = rows / sg;
    auto dq_pos = [&](const std::vector<double>& val, std::vector<double>& out, std::vector<double>& dd) {
      const double lmax = std::ldexp(1.0, s.super_bits) - 1;
      dd.resize(n_sup);
      for (int64_t k = 0; k < n_sup; ++k) {
        double m = 0;
        for (int64_t j = 0; j < sg; ++j) m = std::max(m, val[k * sg + j]);
        // d = max/(2^sb − 1), stored as fp16, at least the smallest fp16 2^-24
        const double d = f16(std::max(f32(m / lmax), std::ldexp(1.0, -24)));
        dd[k] = d;
        for (int64_t j = 0; j < sg; ++j) out[k * sg + j] = f32(std::min(std::nearbyint(f32(val[k * sg + j] / d)), lmax) * d);
      }
    };
    if (t == QDataType::int_asym_dq) {
      dq_pos(sc, r.scale, r.d);
      dq_pos(mn, r.min, r.dmin);
    } else {
      const double qs = std::ldexp(1.0, s.super_bits - 1);
      r.d.resize(n_sup);
      for (int64_t k = 0; k < n_sup; ++k) {
        double g = 0;  // signed absolute maximum (first on ties)
        for (int64_t j = 0; j < sg; ++j)
          if (std::fabs(sc[k * sg + j]) > std::fabs(g)) g = sc[k * sg + j];
        const double d = f16(f32(g / -qs));
        r.d[k] = d;
        for (int64_t j = 0; j < sg; ++j) {
          const double l = d == 0 ? 0 : std::min(std::max(std::nearbyint(f32(sc[k * sg + j] / d)), -qs), qs - 1);
          r.scale[k * sg + j] = f32(l * d);
        }
      }
    }
  }
  r.w_hat.resize(rows * G);
  r.u.resize(rows * G);
  for (int64_t g = 0; g < rows; ++g)
    for (int64_t j = 0; j < G; ++j) {
      const int64_t k = g * G + j;
      const double vv = v.empty() ? 0 : v[k];
      if (t == QDataType::int_sym_dq) {
        const double sp = r.scale[g];
        const double z = f32(f32(x[k] / (sp == 0 ? 1.0 : sp)) + vv);
        const double q = std::min(std::max(std::nearbyint(z), -Q), Q - 1);
        r.u[k] = q + Q;
        r.w_hat[k] = f32(sp * q);
      } else if (t == QDataType::int_asym_dq) {
        const double sp = r.scale[g], mp = r.min[g];
        const double z = f32(f32(f32(x[k] + mp) / std::max(sp, thr)) + vv);
        const double u = std::min(std::max(std::nearbyint(z), 0.0), maxq);
        r.u[k] = u;
        r.w_hat[k] = f32(f32(sp * u) - mp);
      } else {
        const double m = -r.min[g];
        const double z = f32(f32(f32(x[k] - m) / r.scale[g]) + vv);
        const double u = std::min(std::max(std::nearbyint(z), 0.0), maxq);
        r.u[k] = u;
        r.w_hat[k] = f32(f32(r.scale[g] * u) + m);
      }
    }
  return r;
}

std::vector<double> vec(const Tensor& t) { return t.defined() ? to_vector(t) : std::vector<double>{}; }

int count_diff(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return -1;
  int n = 0;
  for (size_t i = 0; i < a.size(); ++i) n += a[i] != b[i];
  return n;
}

}  // namespace

TEST_CASE("gguf qdq: forward and frozen layer equal the spec's tuned-path formulas (f64 reference)") {
  for (const QuantScheme& s : gguf_schemes()) {
    for (bool with_params : {false, true}) {
      CAPTURE(s.str());
      CAPTURE(with_params);
      const int64_t out = 3, in = 512;
      const Tensor w = rand_normal({out, in}, 77 + s.bits, 0, 0.05);
      const GroupLayout g = make_group_layout(out, in, s.group_size);
      Tensor v, a, b;  // V = 0, α = β = 1 when !with_params (the brief's case)
      if (with_params) {
        v = rand_uniform({g.n_rows(), g.group_len}, 5, -0.45, 0.45);
        a = rand_uniform({g.n_rows(), 1}, 6, 0.5, 1.0);
        b = rand_uniform({g.n_rows(), 1}, 7, 0.5, 1.0);
      }
      const Tensor wg = to_groups(w, g);
      const Ref ref = reference(vec(wg), g.n_rows(), g.group_len, s, vec(v), vec(a), vec(b));

      QdqParams p;
      if (with_params) p = {ag::Var(v), ag::Var(a), ag::Var(b)};
      const Tensor fwd = qdq_weight(wg, group_range(wg), p, s, g, DType::f32).value();
      CHECK(count_diff(vec(fwd), ref.w_hat) == 0);

      const QuantizedLinear q = quantize_with_params(w, s, v, a, b);
      CHECK(count_diff(vec(q.codes.to(DType::f32)), ref.u) == 0);
      CHECK(count_diff(vec(q.scales), ref.scale) == 0);
      if (s.qtype() != QDataType::int_sym_dq) CHECK(count_diff(vec(q.mins), ref.min) == 0);
      if (is_double_quant(s.qtype())) {
        CHECK(count_diff(vec(q.d_scales), ref.d) == 0);
        if (s.qtype() == QDataType::int_asym_dq) CHECK(count_diff(vec(q.d_mins), ref.dmin) == 0);
        CHECK(q.super_group_size == s.super_group_size);
      }
      // the frozen layer dequantizes to the qdq forward, bit for bit
      CHECK(count_diff(vec(dequantize(q, DType::f32)), vec(fwd)) == 0);
      // every level lies in range, and some use the extremes (the test would pass vacuously otherwise)
      const std::vector<double> u = vec(q.codes.to(DType::f32));
      double umax = 0;
      for (double x : u) umax = std::max(umax, x);
      CHECK(umax == std::ldexp(1.0, s.bits) - 1);
    }
  }
}

TEST_CASE("gguf qdq: zero super-blocks and zero levels decode to what ggml stores") {
  // A row that is zero in its first super-block and tiny next to a large group in the second:
  // d = 0 (sym) or the 2^-24 floor (asym), and level-0 groups give s' = 0.
  for (const QuantScheme& s : {asym_dq(4, 32, 6, 8), sym_dq(6, 16, 8, 16), asym_dq(2, 16, 4, 16)}) {
    CAPTURE(s.str());
    std::vector<double> w(512, 0.0);
    for (int j = 256; j < 512; ++j) w[j] = (j < 256 + s.group_size) ? 0.5 * std::sin(j) : 1e-6 * std::cos(j);
    const Tensor wt = from_vector(w, {1, 512});
    const QuantizedLinear q = quantize_with_params(wt, s, {}, {}, {});
    const std::vector<double> deq = vec(dequantize(q, DType::f32));
    for (int j = 0; j < 256; ++j) REQUIRE(deq[j] == 0.0);
    for (double x : deq) REQUIRE(std::isfinite(x));
    const std::vector<double> sc = vec(q.scales);
    bool zero_level = false;
    for (size_t j = sc.size() / 2; j < sc.size(); ++j) zero_level = zero_level || sc[j] == 0.0;
    CHECK(zero_level);
  }
}

TEST_CASE("gguf qdq: bad layouts and schemes are refused") {
  const Tensor w = rand_normal({2, 160}, 1);
  CHECK_THROWS_AS(quantize_with_params(w, asym_dq(4, 32, 6, 8), {}, {}, {}), UsageError);  // 160 is not whole 256-blocks
  QuantScheme bad = asym_dq(4, 32, 6, 8);
  bad.super_bits = 0;
  CHECK_THROWS_AS(validate_scheme(bad, "test"), UsageError);
  bad = sym_dq(3, 16, 6, 16);
  bad.group_size = -1;
  CHECK_THROWS_AS(validate_scheme(bad, "test"), UsageError);
  CHECK(resolve_data_type("int_asym_float_zp", false) == QDataType::int_asym_float_zp);
}

// ---- gradients -----------------------------------------------------------------------------

namespace {

// STE surrogate of qdq_gguf in f64: the value of every rounding/clamp/argmax is frozen at the
// base point as an additive offset or a chosen side; the remaining function is smooth.
struct Frozen {
  bool set = false;
  std::vector<double> off;  // rounding offsets in evaluation order
  std::vector<int> side;    // clamp sides / argmax indices in evaluation order
  size_t io = 0, is = 0;
  double round(double z) {
    if (!set) off.push_back(std::nearbyint(z) - z);
    return z + off[io++];
  }
  double to_f16(double z) {
    if (!set) off.push_back(f16(z) - z);
    return z + off[io++];
  }
  double clamp(double z, double lo, double hi) {
    if (!set) side.push_back(z < lo ? -1 : (z > hi ? 1 : 0));
    const int sd = side[is++];
    return sd < 0 ? lo : (sd > 0 ? hi : z);
  }
  int pick(int idx) {
    if (!set) side.push_back(idx);
    return side[is++];
  }
};

double surrogate(const std::vector<double>& x, const std::vector<double>& c, int64_t rows, int64_t G, const QuantScheme& s,
                 const std::vector<double>& v, const std::vector<double>& a, const std::vector<double>& b, Frozen& fr) {
  fr.io = fr.is = 0;
  const QDataType t = s.qtype();
  const double thr = s.scale_dtype == DType::f32 ? 1e-8 : 1e-5, inf = INFINITY;
  const double maxq = std::ldexp(1.0, s.bits) - 1, Q = std::ldexp(1.0, s.bits - 1);
  std::vector<double> sc(rows), mn(rows), sp(rows), mp(rows);
  for (int64_t g = 0; g < rows; ++g) {
    double lo = 0, hi = 0;
    for (int64_t j = 0; j < G; ++j) lo = std::min(lo, x[g * G + j]), hi = std::max(hi, x[g * G + j]);
    const double wmin = lo * a[g], wmax = hi * b[g];
    if (t == QDataType::int_sym_dq) {
      sc[g] = (fr.pick(wmax < -wmin) ? -wmin : -wmax) / Q;
    } else if (t == QDataType::int_asym_dq) {
      sc[g] = fr.clamp((wmax - wmin) / maxq, thr, inf);
      mn[g] = -wmin;
    } else {
      sc[g] = fr.clamp(fr.to_f16((wmax - wmin) / maxq), thr, inf);
      mn[g] = fr.to_f16(wmin);
    }
  }
  const int64_t sg = s.super_group_size;
  auto dq_pos = [&](const std::vector<double>& val, std::vector<double>& out) {
    const double lmax = std::ldexp(1.0, s.super_bits) - 1;
    for (int64_t k = 0; k < rows / sg; ++k) {
      int64_t im = 0;
      for (int64_t j = 1; j < sg; ++j)
        if (val[k * sg + j] > val[k * sg + im]) im = j;
      const double m = val[k * sg + fr.pick(static_cast<int>(im))];
      const double d = fr.to_f16(fr.clamp(m / lmax, std::ldexp(1.0, -24), inf));
      for (int64_t j = 0; j < sg; ++j) out[k * sg + j] = fr.clamp(fr.round(val[k * sg + j] / d), -inf, lmax) * d;
    }
  };
  if (t == QDataType::int_asym_dq) {
    dq_pos(sc, sp);
    dq_pos(mn, mp);
  } else if (t == QDataType::int_sym_dq) {
    const double qs = std::ldexp(1.0, s.super_bits - 1);
    for (int64_t k = 0; k < rows / sg; ++k) {
      int64_t im = 0;
      for (int64_t j = 1; j < sg; ++j)
        if (std::fabs(sc[k * sg + j]) > std::fabs(sc[k * sg + im])) im = j;
      const double d = fr.to_f16(sc[k * sg + fr.pick(static_cast<int>(im))] / -qs);
      for (int64_t j = 0; j < sg; ++j) sp[k * sg + j] = fr.clamp(fr.round(sc[k * sg + j] / d), -qs, qs - 1) * d;
    }
  }
  double f = 0;
  for (int64_t g = 0; g < rows; ++g)
    for (int64_t j = 0; j < G; ++j) {
      const int64_t k = g * G + j;
      double w;
      if (t == QDataType::int_sym_dq) {
        w = sp[g] * fr.clamp(fr.round(x[k] / sp[g] + v[k]), -Q, Q - 1);
      } else if (t == QDataType::int_asym_dq) {
        const double div = fr.clamp(sp[g], thr, inf);
        w = sp[g] * fr.clamp(fr.round((x[k] + mp[g]) / div + v[k]), 0, maxq) - mp[g];
      } else {
        w = sc[g] * fr.clamp(fr.round((x[k] - mn[g]) / sc[g] + v[k]), 0, maxq) + mn[g];
      }
      f += c[k] * w;
    }
  fr.set = true;
  return f;
}

}  // namespace

// Tolerances: the implementation runs in f32; each gradient sums at most G products (V) or,
// through d, up to super_group·G products (α/β) of O(1) terms: relative error ≲ 4096·2^-24 ≈
// 2.4e-4 at worst, typically far less; the f64 difference quotient adds ~1e-9. The fp16
// roundings of d (and of s, m for float_zp) are exact offsets in f32, so no 2^-11 term; but
// float_zp's scale itself is an fp16 cast whose cotangent is rounded to fp16 (as in PyTorch): 2e-3.
TEST_CASE("gguf qdq: gradients w.r.t. V, alpha, beta match finite differences of the STE surrogate") {
  for (const QuantScheme& s : gguf_schemes()) {
    CAPTURE(s.str());
    const int64_t out = 2, in = 256;
    const GroupLayout g = make_group_layout(out, in, s.group_size);
    const uint64_t seed = 500 + static_cast<uint64_t>(s.bits) * 7 + static_cast<uint64_t>(s.super_bits);
    const Tensor w = rand_normal({out, in}, seed, 0, 0.3);
    const Tensor wg = to_groups(w, g);
    const Tensor v0 = rand_uniform({g.n_rows(), g.group_len}, seed + 1, -0.3, 0.3);
    const Tensor a0 = rand_uniform({g.n_rows(), 1}, seed + 2, 0.6, 0.95);
    const Tensor b0 = rand_uniform({g.n_rows(), 1}, seed + 3, 0.6, 0.95);
    const Tensor c = rand_normal({g.n_rows(), g.group_len}, seed + 4);
    QdqParams p{ag::Var(v0.clone(), true), ag::Var(a0.clone(), true), ag::Var(b0.clone(), true)};
    ag::backward(ag::sum_all(qdq_grouped(wg, group_range(wg), p, s) * ag::Var(c)));
    const std::vector<double> gv = vec(p.v.grad()), ga = vec(p.alpha.grad()), gb = vec(p.beta.grad());

    const std::vector<double> x = vec(wg), cc = vec(c);
    std::vector<double> v = vec(v0), a = vec(a0), b = vec(b0);
    Frozen fr;
    surrogate(x, cc, g.n_rows(), g.group_len, s, v, a, b, fr);
    const double eps = 1e-6;
    auto fd = [&](std::vector<double>& prm, size_t k) {
      const double keep = prm[k];
      prm[k] = keep + eps;
      const double fp = surrogate(x, cc, g.n_rows(), g.group_len, s, v, a, b, fr);
      prm[k] = keep - eps;
      const double fm = surrogate(x, cc, g.n_rows(), g.group_len, s, v, a, b, fr);
      prm[k] = keep;
      return (fp - fm) / (2 * eps);
    };
    const double tol_v = 1e-4, tol_ab = s.qtype() == QDataType::int_asym_float_zp ? 2e-3 : 3e-4;
    int bad = 0;
    double worst = 0;
    for (size_t k = 0; k < v.size(); ++k) {
      const double num = fd(v, k), err = std::fabs(num - gv[k]) / std::max(1.0, std::fabs(num));
      worst = std::max(worst, err);
      bad += err > tol_v;
    }
    CHECK_MESSAGE(bad == 0, bad, " V gradients off, worst relative error ", worst);
    bad = 0;
    worst = 0;
    double mag = 0;
    for (size_t r = 0; r < a.size(); ++r) {
      for (auto [prm, grad] : {std::pair{&a, &ga}, std::pair{&b, &gb}}) {
        const double num = fd(*prm, r), err = std::fabs(num - (*grad)[r]) / std::max(1.0, std::fabs(num));
        worst = std::max(worst, err);
        bad += err > tol_ab;
        mag += std::fabs(num);
      }
    }
    CHECK_MESSAGE(bad == 0, bad, " alpha/beta gradients off, worst relative error ", worst);
    CHECK(mag > 0);  // α/β really receive gradient
  }
}
