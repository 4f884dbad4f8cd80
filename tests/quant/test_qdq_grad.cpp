// qdq gradients with respect to V, α and β against central finite differences.
//
// qdq contains round (and a cast of the scale to its dtype), whose true derivative is 0 almost
// everywhere; SignRound differentiates the straight-through surrogate instead. The reference
// here is that surrogate written as a plain f64 loop: every rounding is replaced by the
// identity plus the offset it had at the base point (frozen), and each level clamp keeps the
// side it took at the base point (identity where lo <= round(z) <= hi, bounds included, as the
// spec's clamp backward; the bound otherwise). Its central differences are the exact STE
// gradients away from ties of the scale branch.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "autograd/ops.h"
#include "engine/ops.h"
#include "quant/qdq.h"

using namespace arq;
using namespace arq::quant;

namespace {

struct Setup {
  int64_t rows, G;
  std::vector<double> x;   // [rows, G] grouped weight (padding zeros included)
  std::vector<double> c;   // [rows, G] cotangent: f = Σ c·ŵ
  QuantScheme s;
};

struct Theta {
  std::vector<double> v, a, b;  // [rows·G], [rows], [rows]
};

// Frozen rounding offsets, filled on the first (base point) evaluation.
struct Frozen {
  bool set = false;
  std::vector<double> ds, dzp, dq;
  std::vector<int> side;  // per element: 0 inside, -1 clamped low, +1 clamped high
};
double frozen_clamp(double q, double lo, double hi, int& side, bool set) {
  if (!set) side = q < lo ? -1 : (q > hi ? 1 : 0);
  return side < 0 ? lo : (side > 0 ? hi : q);
}

double round_scale(double x, DType d) {
  if (d == DType::f16) return f16_bits_to_f32(f32_to_f16_bits(static_cast<float>(x)));
  return x;  // the test uses f16 or f32 scales
}

double surrogate(const Setup& st, const Theta& th, Frozen& fr) {
  const QDataType t = st.s.qtype();
  const double Q = std::ldexp(1.0, st.s.bits - 1), maxq = std::ldexp(1.0, st.s.bits) - 1;
  if (!fr.set) {
    fr.ds.assign(st.rows, 0);
    fr.dzp.assign(st.rows, 0);
    fr.dq.assign(st.rows * st.G, 0);
    fr.side.assign(st.rows * st.G, 0);
  }
  double f = 0;
  for (int64_t r = 0; r < st.rows; ++r) {
    double lo = 0, hi = 0;
    for (int64_t j = 0; j < st.G; ++j) {
      lo = std::min(lo, st.x[r * st.G + j]);
      hi = std::max(hi, st.x[r * st.G + j]);
    }
    const double wmin = lo * th.a[r], wmax = hi * th.b[r];
    double s_raw;
    if (t == QDataType::int_sym) s_raw = (wmax < -wmin ? -wmin : -wmax) / Q;
    else if (t == QDataType::int_asym) s_raw = (wmax - wmin) / maxq;
    else s_raw = 2 * std::max(std::fabs(wmin), wmax) / maxq;
    if (!fr.set) fr.ds[r] = round_scale(s_raw, st.s.scale_dtype) - s_raw;
    const double s = s_raw + fr.ds[r];
    double zp = t == QDataType::int_sym ? 0 : Q;
    if (t == QDataType::int_asym) {
      const double zr = -wmin / s;
      if (!fr.set) fr.dzp[r] = std::nearbyint(zr) - zr;
      zp = zr + fr.dzp[r];
    }
    for (int64_t j = 0; j < st.G; ++j) {
      const int64_t k = r * st.G + j;
      const double z = st.x[k] / s + th.v[k];
      if (!fr.set) fr.dq[k] = std::nearbyint(z) - z;
      double q = z + fr.dq[k];
      if (t == QDataType::int_sym) {
        q = frozen_clamp(q, -Q, Q - 1, fr.side[k], fr.set);
        f += st.c[k] * s * q;
      } else {
        q = frozen_clamp(q + zp, 0.0, maxq, fr.side[k], fr.set);
        f += st.c[k] * s * (q - zp);
      }
    }
  }
  fr.set = true;
  return f;
}

std::vector<double> vec(const Tensor& t) { return to_vector(t); }

void check_case(const QuantScheme& s, int64_t out, int64_t in, uint64_t seed, double tol_v, double tol_ab) {
  const GroupLayout g = make_group_layout(out, in, s.group_size);
  const Tensor w = rand_normal({out, in}, seed, 0, 0.3);
  const Tensor wg = to_groups(w, g);
  const Tensor v0 = rand_uniform({g.n_rows(), g.group_len}, seed + 1, -0.3, 0.3);
  const Tensor a0 = rand_uniform({g.n_rows(), 1}, seed + 2, 0.6, 0.95);
  const Tensor b0 = rand_uniform({g.n_rows(), 1}, seed + 3, 0.6, 0.95);
  const Tensor c = rand_normal({g.n_rows(), g.group_len}, seed + 4);

  // backprop through the real (f32) qdq
  QdqParams p{ag::Var(v0.clone(), true), ag::Var(a0.clone(), true), ag::Var(b0.clone(), true)};
  const ag::Var wq = qdq_grouped(wg, group_range(wg), p, s);
  ag::backward(ag::sum_all(wq * ag::Var(c)));
  const std::vector<double> gv = vec(p.v.grad()), ga = vec(p.alpha.grad()), gb = vec(p.beta.grad());

  Setup st{g.n_rows(), g.group_len, vec(wg), vec(c), s};
  Theta th{vec(v0), vec(a0), vec(b0)};
  for (double& x : th.v) x = static_cast<double>(static_cast<float>(x));
  Frozen fr;
  surrogate(st, th, fr);  // base point: freezes the offsets

  const double eps = 1e-6;
  auto fd = [&](std::vector<double>& param, size_t k) {
    const double keep = param[k];
    param[k] = keep + eps;
    const double fp = surrogate(st, th, fr);
    param[k] = keep - eps;
    const double fm = surrogate(st, th, fr);
    param[k] = keep;
    return (fp - fm) / (2 * eps);
  };
  int bad = 0;
  double worst = 0;
  for (size_t k = 0; k < th.v.size(); ++k) {
    const double num = fd(th.v, k), err = std::fabs(num - gv[k]) / std::max(1.0, std::fabs(num));
    worst = std::max(worst, err);
    bad += err > tol_v;
  }
  CHECK_MESSAGE(bad == 0, bad, " V gradients off, worst relative error ", worst);
  bad = 0;
  worst = 0;
  for (size_t r = 0; r < th.a.size(); ++r) {
    for (auto [param, grad] : {std::pair{&th.a, &ga}, std::pair{&th.b, &gb}}) {
      const double num = fd(*param, r), err = std::fabs(num - (*grad)[r]) / std::max(1.0, std::fabs(num));
      worst = std::max(worst, err);
      bad += err > tol_ab;
    }
  }
  CHECK_MESSAGE(bad == 0, bad, " alpha/beta gradients off, worst relative error ", worst);
  // α/β must actually receive gradient somewhere (the test would pass vacuously otherwise)
  double mag = 0;
  for (double x : ga) mag += std::fabs(x);
  for (double x : gb) mag += std::fabs(x);
  CHECK(mag > 0);
}

}  // namespace

// Tolerances: the implementation runs in f32; each gradient is a sum of at most G (or out·in
// for per-tensor) products of O(1) terms, so its relative error is about n·2^-24 ≤ 1e-5; the
// f64 difference quotient adds ~1e-9. With f16 scales the cotangent of the scale passes
// through an f16 cast (as in PyTorch), a relative error up to 2^-11 ≈ 4.9e-4 on α/β.
TEST_CASE("qdq gradients w.r.t. V, alpha, beta match finite differences of the STE surrogate") {
  for (QDataType t : {QDataType::int_sym, QDataType::int_asym, QDataType::int_sym_gptq}) {
    for (int bits : {2, 3, 4, 8}) {
      for (int64_t gs : {4L, -1L, 0L}) {
        for (DType sd : {DType::f32, DType::f16}) {
          QuantScheme s{.bits = bits, .group_size = gs, .sym = t != QDataType::int_asym, .data_type = qdata_type_name(t),
                        .scale_dtype = sd};
          CAPTURE(qdata_type_name(t));
          CAPTURE(bits);
          CAPTURE(gs);
          CAPTURE(dtype_name(sd));
          check_case(s, 5, 13, 1000 + bits * 10 + static_cast<uint64_t>(gs + 1), 1e-4, sd == DType::f16 ? 2e-3 : 1e-4);
        }
      }
    }
  }
}
