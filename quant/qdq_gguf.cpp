#include "quant/qdq_gguf.h"

#include <cmath>
#include <limits>
#include <vector>

#include "autograd/ops.h"
#include "engine/ops.h"

namespace arq::quant {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
// The smallest positive fp16 (a subnormal): the floor of a stored asym super-scale.
constexpr double kMinF16 = 5.9604644775390625e-08;  // 2^-24

ag::Var constant(const Tensor& t) { return ag::Var(t); }
ag::Var scaled(const Tensor& c, const ag::Var& f) { return f.defined() ? constant(c) * f : constant(c); }
// x rounded to the nearest fp16 value, kept in f32 with an f32 gradient: x + (f16(x) − x). The
// offset is exact (Sterbenz: f16(x) is within a factor 2 of x, or 0 for |x| < 2^-25), so the
// sum is exactly f16(x).
ag::Var to_f16_value(const ag::Var& x) {
  const Tensor v = x.value();
  return x + constant(v.to(DType::f16).to(DType::f32) - v);
}
ag::Var in_scale_dtype(const ag::Var& s, DType dt) {
  return dt == DType::f32 ? s : ag::cast(ag::cast(s, dt), DType::f32);
}

// One-hot [n, k] (u8 → f32 0/1) marking the first maximum of each row of v (of |v| when
// by_abs): the element torch.max / argmax picks, so the gradient of the picked extreme goes
// to it alone, as PyTorch's max backward does.
Tensor first_max_onehot(const Tensor& v, bool by_abs) {
  const Tensor h = v.to(Device::cpu()).to(DType::f32).contiguous();
  const int64_t n = h.size(0), k = h.size(1);
  const float* p = h.data<float>();
  std::vector<double> oh(static_cast<size_t>(n * k), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    int64_t best = 0;
    for (int64_t j = 1; j < k; ++j) {
      const float a = by_abs ? std::fabs(p[i * k + j]) : p[i * k + j];
      const float b = by_abs ? std::fabs(p[i * k + best]) : p[i * k + best];
      if (a > b) best = j;
    }
    oh[static_cast<size_t>(i * k + best)] = 1.0;
  }
  return from_vector(oh, {n, k}, DType::f32).to(v.device());
}

// Super-group double quantization of non-negative values v [rows, 1] (scales or mins):
// d = max/(2^sb − 1) rounded to fp16 (≥ 2^-24), v' = min(round(v/d), 2^sb − 1)·d.
// Returns {v' [rows, 1], d [rows/sg, 1]}.
std::pair<ag::Var, ag::Var> double_quant_pos(const ag::Var& v, int64_t sg, int super_bits) {
  const int64_t rows = v.size(0), n_sup = rows / sg;
  const double smax = std::ldexp(1.0, super_bits) - 1;
  const ag::Var v2 = ag::reshape(v, {n_sup, sg});
  const ag::Var vmax = ag::sum(v2 * constant(first_max_onehot(v2.value(), false)), 1, true);  // [n_sup, 1]
  const ag::Var d = to_f16_value(ag::clamp(vmax / smax, kMinF16, kInf));
  const ag::Var lv = ag::clamp(ag::round_ste(v2 / d), -kInf, smax);
  return {ag::reshape(lv * d, {rows, 1}), d};
}

// Signed super-group double quantization of s [rows, 1]: d = g/−2^(sb−1) rounded to fp16 with
// g the signed absolute maximum; s' = clip(round(s/d), −2^(sb−1), 2^(sb−1) − 1)·d (0 when d = 0).
std::pair<ag::Var, ag::Var> double_quant_sym(const ag::Var& s, int64_t sg, int super_bits) {
  const int64_t rows = s.size(0), n_sup = rows / sg;
  const double qs = std::ldexp(1.0, super_bits - 1);
  const ag::Var s2 = ag::reshape(s, {n_sup, sg});
  const ag::Var g = ag::sum(s2 * constant(first_max_onehot(s2.value(), true)), 1, true);  // [n_sup, 1]
  const ag::Var d = to_f16_value(g / -qs);
  // divide by 1 where d = 0: the product with d = 0 below gives s' = 0 (get_reciprocal's 1/0 = 0)
  const Tensor d_zero = binary(BinaryOp::eq, d.value(), 0.0);
  const ag::Var d_div = ag::where(d_zero, constant(ones_like(d.value())), d);
  const ag::Var ls = ag::clamp(ag::round_ste(s2 / d_div), -qs, qs - 1);
  return {ag::reshape(ls * d, {rows, 1}), d};
}

}  // namespace

GgufQdq qdq_gguf(const Tensor& wg, const GroupRange& r, const QdqParams& p, const QuantScheme& s) {
  const QDataType t = s.qtype();
  ARQ_CHECK(is_gguf_qtype(t), UsageError, "[qdq_gguf] ", qdata_type_name(t), " is not a GGUF data type");
  const double thr = q_scale_thresh(s.scale_dtype);
  const int64_t rows = wg.size(0);
  const ag::Var x = constant(wg);                // [rows, G]
  const ag::Var wmin = scaled(r.wmin, p.alpha);  // [rows, 1] ≤ 0
  const ag::Var wmax = scaled(r.wmax, p.beta);   // [rows, 1] ≥ 0
  auto shifted = [&](const ag::Var& z) { return p.v.defined() ? z + p.v : z; };
  if (is_double_quant(t))
    ARQ_CHECK(s.super_group_size >= 1 && rows % s.super_group_size == 0, ShapeError, "[qdq_gguf] ", rows,
              " group rows do not split into super-groups of ", s.super_group_size);
  GgufQdq f;

  if (t == QDataType::int_asym_dq) {
    const double maxq = std::ldexp(1.0, s.bits) - 1;
    const ag::Var sc = ag::clamp(in_scale_dtype((wmax - wmin) / maxq, s.scale_dtype), thr, kInf);
    const ag::Var m = -wmin;  // ≥ 0
    auto [s_q, d] = double_quant_pos(sc, s.super_group_size, s.super_bits);
    auto [m_q, dmin] = double_quant_pos(m, s.super_group_size, s.super_bits);
    const ag::Var s_div = ag::clamp(s_q, thr, kInf);  // the threshold guards the divisor only
    f.u = ag::clamp(ag::round_ste(shifted((x + m_q) / s_div)), 0.0, maxq);
    f.w_hat = s_q * f.u - m_q;
    f.scale = s_q;
    f.min = m_q;
    f.d = d;
    f.dmin = dmin;
    return f;
  }

  if (t == QDataType::int_sym_dq) {
    const double Q = std::ldexp(1.0, s.bits - 1);
    const ag::Var m_neg = -wmin;
    const Tensor neg_dominates = lt(wmax.value(), m_neg.value());
    const ag::Var M = ag::where(neg_dominates, m_neg, -wmax);
    const ag::Var sc = in_scale_dtype(M / Q, s.scale_dtype);
    auto [s_q, d] = double_quant_sym(sc, s.super_group_size, s.super_bits);
    const Tensor s_zero = binary(BinaryOp::eq, s_q.value(), 0.0);
    const ag::Var s_div = ag::where(s_zero, constant(ones_like(s_q.value())), s_q);
    const ag::Var q = ag::clamp(ag::round_ste(shifted(x / s_div)), -Q, Q - 1);
    f.w_hat = s_q * q;
    f.u = q + Q;
    f.scale = s_q;
    f.d = d;
    return f;
  }

  // int_asym_float_zp: ŵ = s·u + m on the q4_1 / q5_1 grid; the threshold is taken in the scale
  // dtype so that a clamped s is still an fp16 value.
  const double maxq = std::ldexp(1.0, s.bits) - 1;
  const double thr_s = round_to_dtype(static_cast<float>(thr), s.scale_dtype);
  const ag::Var sc = ag::clamp(in_scale_dtype((wmax - wmin) / maxq, s.scale_dtype), thr_s, kInf);
  const ag::Var m = in_scale_dtype(wmin, s.scale_dtype);  // ≤ 0
  f.u = ag::clamp(ag::round_ste(shifted((x - m) / sc)), 0.0, maxq);
  f.w_hat = sc * f.u + m;
  f.scale = sc;
  f.min = -m;
  return f;
}

void check_gguf_layout(const GroupLayout& g, const QuantScheme& s, const std::string& where) {
  if (!is_double_quant(s.qtype())) return;
  const int64_t span = s.group_size * s.super_group_size;
  ARQ_CHECK(!g.per_tensor && g.group_len == s.group_size && g.in % span == 0, UsageError, where, ": ", s.str(),
            " needs rows of whole super-blocks (in % ", span, " == 0), got [", g.out, ", ", g.in, "]");
}

QuantizedLinear quantize_gguf_with_params(const Tensor& w, const QuantScheme& s, const Tensor& v, const Tensor& alpha,
                                          const Tensor& beta) {
  ARQ_CHECK(w.dim() == 2 && is_floating(w.dtype()), ShapeError, "[quantize] expects a floating [out, in] weight, got ", w.str());
  validate_scheme(s, "quantize");
  const QDataType t = s.qtype();
  const GroupLayout g = make_group_layout(w.size(0), w.size(1), s.group_size);
  check_gguf_layout(g, s, "[quantize]");
  const Tensor wg = to_groups(w, g);
  auto f32c = [](const Tensor& x) { return x.defined() ? x.to(Device::cpu()).to(DType::f32).contiguous() : Tensor(); };
  ag::NoGrad ng;
  QdqParams p;
  if (v.defined()) {
    ARQ_CHECK(v.shape() == wg.shape(), ShapeError, "[quantize] V must be ", shape_str(wg.shape()), ", got ", shape_str(v.shape()));
    p.v = ag::Var(f32c(v));
  }
  for (auto [src, dst] : {std::pair{&alpha, &p.alpha}, std::pair{&beta, &p.beta}}) {
    if (!src->defined()) continue;
    ARQ_CHECK(src->numel() == g.n_rows(), ShapeError, "[quantize] min/max scale must have ", g.n_rows(), " elements, got ",
              shape_str(src->shape()));
    *dst = ag::Var(f32c(*src).reshape({g.n_rows(), 1}));
  }
  const GgufQdq f = qdq_gguf(wg, group_range(wg), p, s);

  QuantizedLinear q;
  q.layout = g;
  q.bits = s.bits;
  q.data_type = t;
  q.sym = t == QDataType::int_sym_dq;
  q.weight_dtype = w.dtype();
  const Tensor u = from_groups(f.u.value(), g);  // [out, in] integer-valued f32
  q.codes = Tensor::empty({g.out, g.in}, DType::u8);
  {
    const float* src = u.data<float>();
    uint8_t* dst = q.codes.data<uint8_t>();
    for (int64_t i = 0; i < g.out * g.in; ++i) dst[i] = static_cast<uint8_t>(src[i]);
  }
  const Shape ps = g.param_shape();
  q.scales = f.scale.value().contiguous().reshape(ps).to(s.scale_dtype);  // values already in the scale dtype
  q.zeros = full(ps, t == QDataType::int_sym_dq ? std::ldexp(1.0, s.bits - 1) : 0.0, DType::i32);
  if (f.min.defined()) q.mins = f.min.value().contiguous().reshape(ps);
  if (is_double_quant(t)) {
    q.super_bits = s.super_bits;
    q.super_group_size = s.super_group_size;
    const Shape ss{g.out, g.groups_per_row / s.super_group_size};
    q.d_scales = f.d.value().contiguous().reshape(ss);
    if (f.dmin.defined()) q.d_mins = f.dmin.value().contiguous().reshape(ss);
  }
  return q;
}

}  // namespace arq::quant
