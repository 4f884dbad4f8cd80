#include "quant/qdq.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "autograd/ops.h"
#include "autograd/qdq_fused.h"
#include "engine/ops.h"
#include "quant/qdq_gguf.h"

namespace arq::quant {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Q = 2^(b−1) for int_sym; maxq = 2^b − 1 for the others.
int64_t sym_q(int bits) { return int64_t{1} << (bits - 1); }

ag::Var constant(const Tensor& t) { return ag::Var(t); }

// wmin·α, wmax·β (constants when the factors are undefined, as AutoRound multiplies only
// when min_scale/max_scale are tensors).
ag::Var scaled(const Tensor& c, const ag::Var& f) { return f.defined() ? constant(c) * f : constant(c); }

// s (f32) → scale dtype; the threshold is applied in that dtype (a clamp on the fp16 tensor
// in PyTorch), then s is widened to f32 for x/s (fp16 with f32 promotes to f32).
ag::Var to_scale_dtype(const ag::Var& s, DType scale_dtype) {
  return scale_dtype == DType::f32 ? s : ag::cast(s, scale_dtype);
}
ag::Var widen(const ag::Var& s) { return s.dtype() == DType::f32 ? s : ag::cast(s, DType::f32); }

}  // namespace

QdqImpl default_qdq_impl() {
  static const QdqImpl impl = [] {
    const char* e = std::getenv("ARQ_QDQ_COMPOSED");
    return e != nullptr && std::strcmp(e, "1") == 0 ? QdqImpl::composed : QdqImpl::fused;
  }();
  return impl;
}

bool has_fused_qdq(QDataType t) {
  return t == QDataType::int_sym || t == QDataType::int_asym || t == QDataType::int_sym_gptq;
}

QdqSpec qdq_spec(const QuantScheme& s, const GroupLayout& g) {
  const QDataType t = s.qtype();
  ARQ_CHECK(has_fused_qdq(t), UsageError, "[qdq] no fused kernel for data type ", qdata_type_name(t));
  return {.kind = t == QDataType::int_sym ? QdqKind::int_sym
                                          : (t == QDataType::int_asym ? QdqKind::int_asym : QdqKind::int_sym_gptq),
          .bits = s.bits,
          .scale_dtype = s.scale_dtype,
          .scale_thresh = q_scale_thresh(s.scale_dtype),
          .out = g.out,
          .in = g.in,
          .group_len = g.group_len,
          .groups_per_row = g.groups_per_row,
          .per_tensor = g.per_tensor};
}

float round_to_dtype(float x, DType dtype) {
  switch (dtype) {
    case DType::f16: return f16_bits_to_f32(f32_to_f16_bits(x));
    case DType::bf16: return bf16_bits_to_f32(f32_to_bf16_bits(x));
    default: return x;
  }
}

GroupRange group_range(const Tensor& wg) {
  ARQ_ASSERT(wg.dim() == 2 && wg.dtype() == DType::f32, "group_range expects f32 [rows, G], got ", wg.str());
  return {clamp(min(wg, 1, true), -kInf, 0.0), clamp(max(wg, 1, true), 0.0, kInf)};
}

QdqParams make_qdq_params(const GroupLayout& g, bool minmax_tuning, Device device) {
  QdqParams p;
  p.v = ag::Var(zeros({g.n_rows(), g.group_len}, DType::f32, device), true);
  if (minmax_tuning) {
    p.alpha = ag::Var(ones({g.n_rows(), 1}, DType::f32, device), true);
    p.beta = ag::Var(ones({g.n_rows(), 1}, DType::f32, device), true);
  }
  return p;
}

void clamp_minmax_(QdqParams& p) {
  ag::NoGrad ng;
  for (ag::Var* f : {&p.alpha, &p.beta}) {
    if (!f->defined()) continue;
    Tensor v = f->value();
    copy_(v, clamp(v, 0.0, 1.0));
  }
}

ag::Var qdq_grouped(const Tensor& wg, const GroupRange& r, const QdqParams& p, const QuantScheme& s) {
  ARQ_CHECK(!s.keep_fp(), UsageError, "qdq: scheme keeps the layer in 16 bits");
  const double thr = q_scale_thresh(s.scale_dtype);
  if (is_gguf_qtype(s.qtype())) return qdq_gguf(wg, r, p, s).w_hat;
  const ag::Var x = constant(wg);  // [rows, G]
  const ag::Var wmin = scaled(r.wmin, p.alpha);  // [rows, 1] ≤ 0
  const ag::Var wmax = scaled(r.wmax, p.beta);   // [rows, 1] ≥ 0
  const QDataType t = s.qtype();

  auto shifted = [&](const ag::Var& z) { return p.v.defined() ? z + p.v : z; };

  if (t == QDataType::int_sym) {
    const double Q = static_cast<double>(sym_q(s.bits));
    // Signed extreme: M = m⁻ when the negative side dominates, else −m⁺ (the positive side
    // wins ties, so the dominant extreme always maps to −Q).
    const ag::Var m_neg = -wmin;
    const Tensor neg_dominates = lt(wmax.value(), m_neg.value());
    const ag::Var M = ag::where(neg_dominates, m_neg, -wmax);
    ag::Var sc = to_scale_dtype(M / Q, s.scale_dtype);
    const Tensor negative = binary(BinaryOp::lt, sc.value(), 0.0);
    sc = widen(ag::where(negative, ag::clamp(sc, -kInf, -thr), ag::clamp(sc, thr, kInf)));
    const ag::Var q = ag::clamp(ag::round_ste(shifted(x / sc)), -Q, Q - 1);
    return sc * q;
  }

  const double maxq = static_cast<double>(max_code(s.bits));
  if (t == QDataType::int_asym) {
    ag::Var sc = to_scale_dtype((wmax - wmin) / maxq, s.scale_dtype);
    sc = widen(ag::clamp(sc, thr, kInf));
    const ag::Var zp = ag::round_ste(-wmin / sc);
    const ag::Var q = ag::clamp(ag::round_ste(shifted(x / sc)) + zp, 0.0, maxq);
    return sc * (q - zp);
  }

  // int_sym_gptq: symmetric range [−m, m] with m = max(|wmin|, wmax), zero point 2^(b−1).
  const double zp = static_cast<double>(sym_q(s.bits));
  const ag::Var m = ag::maximum(ag::abs(wmin), wmax);
  ag::Var sc = to_scale_dtype((2.0 * m) / maxq, s.scale_dtype);
  sc = widen(ag::clamp(sc, thr, kInf));
  const ag::Var q = ag::clamp(ag::round_ste(shifted(x / sc)) + zp, 0.0, maxq);
  return sc * (q - zp);
}

ag::Var qdq_weight(const Tensor& wg, const GroupRange& r, const QdqParams& p, const QuantScheme& s,
                   const GroupLayout& g, DType weight_dtype) {
  return qdq_weight(wg, r, p, s, g, weight_dtype, default_qdq_impl());
}

ag::Var qdq_weight(const Tensor& wg, const GroupRange& r, const QdqParams& p, const QuantScheme& s,
                   const GroupLayout& g, DType weight_dtype, QdqImpl impl) {
  check_gguf_layout(g, s, "[qdq]");
  const bool fused_dtype = weight_dtype == DType::f32 || weight_dtype == DType::bf16 || weight_dtype == DType::f16;
  if (impl == QdqImpl::fused && fused_dtype && !s.keep_fp() && has_fused_qdq(s.qtype()))
    return ag::qdq_fused(wg, r.wmin, r.wmax, p.v, p.alpha, p.beta, qdq_spec(s, g), weight_dtype);
  ag::Var w = qdq_grouped(wg, r, p, s);
  if (g.per_tensor) {
    w = ag::reshape(w, {g.out, g.in});
  } else {
    w = ag::reshape(w, {g.out, g.padded_in()});
    if (g.padded_in() != g.in) w = ag::narrow(w, 1, 0, g.in);
  }
  return weight_dtype == DType::f32 ? w : ag::cast(w, weight_dtype);
}

// ---- the no-grad fast path -----------------------------------------------------------------

namespace {

// Per-row scale and zero point exactly as qdq_grouped computes them (same float ops, same
// roundings), then the codes of the row.
struct RowQuant {
  float scale;   // f32 value of the scale (already representable in the scale dtype)
  int32_t zp;
};

RowQuant row_params(QDataType t, int bits, DType scale_dtype, float wmin, float wmax) {
  const float thr_f = round_to_dtype(static_cast<float>(q_scale_thresh(scale_dtype)), scale_dtype);
  if (t == QDataType::int_sym) {
    const float Q = static_cast<float>(sym_q(bits));
    const float m_neg = -wmin;
    const float M = (wmax < m_neg) ? m_neg : -wmax;
    float sc = round_to_dtype(M / Q, scale_dtype);
    if (sc < 0) sc = sc < -thr_f ? sc : -thr_f;
    else sc = sc > thr_f ? sc : thr_f;
    return {sc, static_cast<int32_t>(sym_q(bits))};
  }
  const float maxq = static_cast<float>(max_code(bits));
  if (t == QDataType::int_asym) {
    float sc = round_to_dtype((wmax - wmin) / maxq, scale_dtype);
    sc = sc < thr_f ? thr_f : sc;
    const float zp = std::nearbyint(-wmin / sc);
    return {sc, static_cast<int32_t>(zp)};
  }
  const float m = std::max(std::fabs(wmin), wmax);
  float sc = round_to_dtype((2.0f * m) / maxq, scale_dtype);
  sc = sc < thr_f ? thr_f : sc;
  return {sc, static_cast<int32_t>(sym_q(bits))};
}

// Codes of one group row: u = clamp(round(x/s + v), −Q, Q−1) + Q (sym), or
// clamp(round(x/s + v) + zp, 0, maxq) (asym, gptq). Returns codes for the first `n` (unpadded)
// elements.
void row_codes(QDataType t, int bits, const RowQuant& rq, const float* x, const float* v, int64_t n, uint8_t* out) {
  const float maxq = static_cast<float>(max_code(bits));
  if (t == QDataType::int_sym) {
    const float Q = static_cast<float>(sym_q(bits));
    for (int64_t j = 0; j < n; ++j) {
      float z = x[j] / rq.scale;
      if (v) z = z + v[j];
      float q = std::nearbyint(z);
      q = q < -Q ? -Q : (q > Q - 1 ? Q - 1 : q);
      out[j] = static_cast<uint8_t>(q + Q);
    }
    return;
  }
  const float zp = static_cast<float>(rq.zp);
  for (int64_t j = 0; j < n; ++j) {
    float z = x[j] / rq.scale;
    if (v) z = z + v[j];
    float q = std::nearbyint(z) + zp;
    q = q < 0 ? 0 : (q > maxq ? maxq : q);
    out[j] = static_cast<uint8_t>(q);
  }
}

// The frozen layer's description (no tensors yet).
QuantizedLinear frozen_header(const Tensor& w, const QuantScheme& s, const GroupLayout& g) {
  QuantizedLinear q;
  q.layout = g;
  q.bits = s.bits;
  q.data_type = s.qtype();
  q.sym = q.data_type != QDataType::int_asym;
  q.weight_dtype = w.dtype();
  return q;
}

QuantizedLinear make_frozen(const Tensor& w, const QuantScheme& s, const GroupLayout& g) {
  QuantizedLinear q = frozen_header(w, s, g);
  q.codes = Tensor::empty({g.out, g.in}, DType::u8);
  q.scales = Tensor::empty(g.param_shape(), DType::f32);
  q.zeros = Tensor::empty(g.param_shape(), DType::i32);
  return q;
}

void check_weight(const Tensor& w, const QuantScheme& s, const char* fn) {
  ARQ_CHECK(w.dim() == 2 && is_floating(w.dtype()), ShapeError, "[", fn, "] expects a floating [out, in] weight, got ", w.str());
  ARQ_CHECK(!s.keep_fp(), UsageError, "[", fn, "] scheme keeps the layer in 16 bits");
  validate_scheme(s, fn);
}

// Walk the grouped rows and write codes into q.codes [out, in]. `rowq(r)` gives row r's params.
template <class RowFn>
void fill_codes(QuantizedLinear& q, const Tensor& wg, const Tensor& v, RowFn rowq) {
  const GroupLayout& g = q.layout;
  const float* x = wg.data<float>();
  const float* vp = v.defined() ? v.data<float>() : nullptr;
  uint8_t* codes = q.codes.data<uint8_t>();
  float* sc = q.scales.data<float>();
  int32_t* zp = q.zeros.data<int32_t>();
  const int64_t G = g.group_len;
  for (int64_t r = 0; r < g.n_rows(); ++r) {
    const RowQuant rq = rowq(r);
    sc[r] = rq.scale;
    zp[r] = rq.zp;
    if (g.per_tensor) {
      row_codes(q.data_type, q.bits, rq, x, vp, G, codes);
    } else {
      // row r is output row r / n_g, group r % n_g: columns [k·G, min(in, (k+1)·G))
      const int64_t o = r / g.groups_per_row, k = r % g.groups_per_row;
      const int64_t n = std::min(g.in, (k + 1) * G) - k * G;
      row_codes(q.data_type, q.bits, rq, x + r * G, vp ? vp + r * G : nullptr, n, codes + o * g.in + k * G);
    }
  }
}

}  // namespace

QuantizedLinear quantize_with_params(const Tensor& w, const QuantScheme& s, const Tensor& v, const Tensor& alpha,
                                     const Tensor& beta) {
  return quantize_with_params(w, s, v, alpha, beta, default_qdq_impl());
}

namespace {

void check_params(const Tensor& wg, const GroupLayout& g, const Tensor& v, const Tensor& a, const Tensor& b) {
  if (v.defined())
    ARQ_CHECK(v.shape() == wg.shape(), ShapeError, "[quantize] V must be ", shape_str(wg.shape()), ", got ", shape_str(v.shape()));
  for (const Tensor* f : {&a, &b})
    if (f->defined())
      ARQ_CHECK(f->numel() == g.n_rows(), ShapeError, "[quantize] min/max scale must have ", g.n_rows(), " elements, got ",
                shape_str(f->shape()));
}

// The fused kernel's frozen form on w's device; only the u8 codes and the per-row scales and
// zero points come to the host.
QuantizedLinear quantize_fused(const Tensor& w, const QuantScheme& s, const Tensor& v, const Tensor& alpha,
                               const Tensor& beta) {
  const Device dev = w.device();
  const GroupLayout g = make_group_layout(w.size(0), w.size(1), s.group_size);
  const Tensor wg = to_groups(w, g, dev);  // [n_rows, G] f32
  const GroupRange r = group_range(wg);
  auto f32d = [&](const Tensor& t) { return t.defined() ? t.to(dev).to(DType::f32).contiguous() : Tensor(); };
  const Tensor vv = f32d(v), a = f32d(alpha), b = f32d(beta);
  check_params(wg, g, vv, a, b);
  const Shape col{g.n_rows(), 1};
  const QdqCodes c = qdq_fused_codes({.wg = wg,
                                      .wmin = r.wmin,
                                      .wmax = r.wmax,
                                      .v = vv,
                                      .alpha = a.defined() ? a.reshape(col) : a,
                                      .beta = b.defined() ? b.reshape(col) : b},
                                     qdq_spec(s, g));
  QuantizedLinear q = frozen_header(w, s, g);
  q.codes = c.codes.to(Device::cpu());
  q.scales = c.scales.to(s.scale_dtype).to(Device::cpu()).reshape(g.param_shape());  // exact in the scale dtype
  q.zeros = c.zeros.to(Device::cpu()).reshape(g.param_shape());
  return q;
}

}  // namespace

QuantizedLinear quantize_with_params(const Tensor& w, const QuantScheme& s, const Tensor& v, const Tensor& alpha,
                                     const Tensor& beta, QdqImpl impl) {
  check_weight(w, s, "quantize");
  if (is_gguf_qtype(s.qtype())) return quantize_gguf_with_params(w, s, v, alpha, beta);
  if (impl == QdqImpl::fused) return quantize_fused(w, s, v, alpha, beta);
  // the host loop (the reference of the fused kernel's codes)
  const GroupLayout g = make_group_layout(w.size(0), w.size(1), s.group_size);
  const Tensor wg = to_groups(w, g);
  const GroupRange r = group_range(wg);
  auto f32c = [](const Tensor& t) { return t.defined() ? t.to(Device::cpu()).to(DType::f32).contiguous() : Tensor(); };
  const Tensor vv = f32c(v), a = f32c(alpha), b = f32c(beta);
  check_params(wg, g, vv, a, b);
  QuantizedLinear q = make_frozen(w, s, g);
  const float* wmin = r.wmin.data<float>();
  const float* wmax = r.wmax.data<float>();
  const float* ap = a.defined() ? a.data<float>() : nullptr;
  const float* bp = b.defined() ? b.data<float>() : nullptr;
  fill_codes(q, wg, vv, [&](int64_t row) {
    const float lo = ap ? wmin[row] * ap[row] : wmin[row];
    const float hi = bp ? wmax[row] * bp[row] : wmax[row];
    return row_params(q.data_type, s.bits, s.scale_dtype, lo, hi);
  });
  q.scales = q.scales.to(s.scale_dtype);
  return q;
}

QuantizedLinear quantize_rtn(const Tensor& w, const QuantScheme& s) { return quantize_with_params(w, s); }

QuantizedLinear quantize_sym_with_scales(const Tensor& w, const QuantScheme& s, const Tensor& scales,
                                         bool round_scale_first) {
  check_weight(w, s, "quantize_sym_with_scales");
  ARQ_CHECK(s.qtype() == QDataType::int_sym, UsageError, "[quantize_sym_with_scales] needs int_sym, got ",
            qdata_type_name(s.qtype()));
  const GroupLayout g = make_group_layout(w.size(0), w.size(1), s.group_size);
  ARQ_CHECK(scales.numel() == g.n_rows(), ShapeError, "[quantize_sym_with_scales] expects ", g.n_rows(), " scales, got ",
            shape_str(scales.shape()));
  const Tensor wg = to_groups(w, g);  // on the host, for the loop below
  const Tensor sv = scales.to(Device::cpu()).to(DType::f32).contiguous();
  const float* sp = sv.data<float>();
  const DType level_dtype = round_scale_first ? s.scale_dtype : DType::f32;
  const float thr_f = round_to_dtype(static_cast<float>(q_scale_thresh(s.scale_dtype)), level_dtype);
  QuantizedLinear q = make_frozen(w, s, g);
  fill_codes(q, wg, Tensor(), [&](int64_t row) {
    float sc = round_to_dtype(sp[row], level_dtype);
    if (sc < 0) sc = sc < -thr_f ? sc : -thr_f;
    else sc = sc > thr_f ? sc : thr_f;
    return RowQuant{sc, static_cast<int32_t>(sym_q(s.bits))};
  });
  q.scales = q.scales.to(s.scale_dtype);
  return q;
}

}  // namespace arq::quant
