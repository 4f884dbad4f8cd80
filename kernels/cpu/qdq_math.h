// Scalar math of the fused qdq (engine/qdq_fused.h), shared by the CPU kernel and the CUDA one
// (compiled __host__ __device__ there), so the algorithm tested on the CPU is the one the GPU
// runs. Every step mirrors one engine op of quant/qdq.cpp's composition and of the VJPs in
// autograd/ops_elementwise.cpp, in f32, with the roundings the composition stores:
//
//   forward (int_sym):  wmin·α, wmax·β → M = (wmax < −wmin) ? −wmin : −wmax → M/Q → scale dtype
//                       → clamp(·, −∞, −thr) or clamp(·, thr, ∞) by sign → f32 = sc;
//                       ŵ = sc · clamp(round(x/sc + V), −Q, Q−1)
//   forward (asym):     sc = clamp(sdt((wmax − wmin)/maxq), thr, ∞); zp = round(−wmin/sc);
//                       ŵ = sc · (clamp(round(x/sc + V) + zp, 0, maxq) − zp)
//   forward (gptq):     sc = clamp(sdt((2·max(|wmin|, wmax))/maxq), thr, ∞); zp = 2^(b−1), as asym
//
// Arithmetic goes through q_* helpers: on the device they are the _rn intrinsics (nvcc would
// otherwise contract a·b + c into an FMA); on the host plain f32 operators: the project builds
// without -ffast-math, and the CPU kernel's AVX2/AVX-512 loops (vec_math.h's for_isa) are
// compiled with fp-contract=off under GCC. The only a·b + c shapes in the element loops add 0 to
// a product by 1 or 2, which an FMA would not change either.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

#include "engine/dtype.h"

#ifdef __CUDACC__
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#define ARQ_QHD __host__ __device__ __forceinline__
#else
#define ARQ_QHD inline __attribute__((always_inline))
#endif

namespace arq::qdq {

enum : int { kSym = 0, kAsym = 1, kGptq = 2 };         // QdqKind
enum : int { kSdtF32 = 0, kSdtF16 = 1, kSdtBF16 = 2 };  // scale dtype

ARQ_QHD float q_mul(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
ARQ_QHD float q_add(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
ARQ_QHD float q_sub(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
ARQ_QHD float q_div(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
// Round half to even, keeping the sign of zero: rint in the default rounding mode (the project
// never changes it) is std::nearbyint without the inexact flag. On the host GCC turns it into
// (v)roundps in the AVX2/AVX-512 loops of for_isa, so they vectorize (the baseline build calls
// libm's rintf).
ARQ_QHD float q_round(float v) {
#ifdef __CUDA_ARCH__
  return rintf(v);
#else
  return std::rint(v);
#endif
}
// Round to the scale dtype and back (f16/bf16 round to nearest even, as engine/dtype.h).
ARQ_QHD float to_sdt(float v, int sdt) {
#ifdef __CUDA_ARCH__
  if (sdt == kSdtF16) return __half2float(__float2half_rn(v));
  if (sdt == kSdtBF16) return __bfloat162float(__float2bfloat16_rn(v));
  return v;
#else
  if (sdt == kSdtF16) return f16_bits_to_f32(f32_to_f16_bits(v));
  if (sdt == kSdtBF16) return bf16_bits_to_f32(f32_to_bf16_bits(v));
  return v;
#endif
}
// A mask of all ones (true) or zeros; mask ? v : +0 (autograd's where(mask, g, 0)). On the host
// as a bit-and: a select of a product that GCC sinks into a branch cannot be if-converted under
// -ftrapping-math, and a bool member of the per-element struct also stops the vectorizer.
ARQ_QHD uint32_t q_mask(bool b) { return 0u - static_cast<uint32_t>(b); }
ARQ_QHD float q_keep(uint32_t mask, float v) {
#ifdef __CUDA_ARCH__
  return mask ? v : 0.0f;
#else
  return std::bit_cast<float>(std::bit_cast<uint32_t>(v) & mask);
#endif
}

// clamp as the CPU/CUDA unary kernels (v != v ? v : v < lo ? lo : v > hi ? hi : v): NaN fails
// both comparisons and stays. Both comparisons are made unconditionally, so that GCC can turn
// the selects into blends and vectorize the loops (a conditionally evaluated comparison may trap
// under -ftrapping-math and blocks if-conversion).
ARQ_QHD float q_clamp(float v, float lo, float hi) {
  const float t = v > hi ? hi : v;
  return v < lo ? lo : t;
}

// Constants of one qdq, fixed by the scheme.
struct Consts {
  int kind;
  int sdt;
  float thr;     // float(q_scale_thresh): the clamp bound before its rounding to the scale dtype
  float qmax;    // int_sym: Q = 2^(b−1); else maxq = 2^b − 1
  float zp_sym;  // gptq's constant zero point 2^(b−1)
};

// Per-row quantities of the forward, and what the backward needs of them.
struct Row {
  float wmin_s, wmax_s;  // wmin·α, wmax·β
  float sc;              // the widened scale (f32 value of the scale-dtype value)
  float zp;              // the level offset added before the clamp (asym, gptq); 0 for int_sym
  float y0;              // asym: −wmin_s/sc before its rounding
  bool neg_dom;          // int_sym: the negative side dominates
  bool inside;           // the threshold clamp passes the gradient (clamp(x) == x)
  float share;           // gptq: maximum's share of the gradient that goes to |wmin_s|
  float sign_wmin;       // gptq: sign(wmin_s) (abs' derivative)
};

ARQ_QHD float clamp_lo_sdt(float sc1, float lo, int sdt, bool& inside) {
  // clamp(sc1, lo, ∞) on a scale-dtype tensor: computed in f32, stored in the scale dtype;
  // its VJP masks with eq(clamp(x), x)
  const float c = sc1 < lo ? to_sdt(lo, sdt) : sc1;
  inside = c == sc1;
  return c;
}

ARQ_QHD Row row_of(const Consts& k, float wmin, float wmax, const float* alpha, const float* beta) {
  Row r{};
  r.wmin_s = alpha ? q_mul(wmin, *alpha) : wmin;
  r.wmax_s = beta ? q_mul(wmax, *beta) : wmax;
  if (k.kind == kSym) {
    const float m_neg = -r.wmin_s;
    r.neg_dom = r.wmax_s < m_neg;
    const float M = r.neg_dom ? m_neg : -r.wmax_s;
    const float sc1 = to_sdt(q_div(M, k.qmax), k.sdt);
    if (sc1 < 0.0f) {
      // clamp(sc1, −∞, −thr)
      const float hi = -k.thr;
      const float c = sc1 > hi ? to_sdt(hi, k.sdt) : sc1;
      r.inside = c == sc1;
      r.sc = c;
    } else {
      r.sc = clamp_lo_sdt(sc1, k.thr, k.sdt, r.inside);
    }
    r.zp = 0.0f;
    return r;
  }
  float d1;
  if (k.kind == kAsym) {
    d1 = q_div(q_sub(r.wmax_s, r.wmin_s), k.qmax);
  } else {
    const float aw = r.wmin_s < 0.0f ? -r.wmin_s : r.wmin_s;
    const float b = r.wmax_s;
    const float m = (aw != aw || b != b) ? q_add(aw, b) : (b > aw ? b : aw);
    r.share = aw > b ? 1.0f : (aw == b ? 0.5f : 0.0f);
    r.sign_wmin = r.wmin_s != r.wmin_s ? r.wmin_s : static_cast<float>((r.wmin_s > 0.0f) - (r.wmin_s < 0.0f));
    d1 = q_div(q_add(q_mul(2.0f, m), 0.0f), k.qmax);  // affine(m, 2, 0), then / maxq
  }
  r.sc = clamp_lo_sdt(to_sdt(d1, k.sdt), k.thr, k.sdt, r.inside);
  if (k.kind == kAsym) {
    r.y0 = q_div(-r.wmin_s, r.sc);
    r.zp = q_round(r.y0);
  } else {
    r.zp = k.zp_sym;
  }
  return r;
}

// One element's forward: z = x/sc, r = round(z + v), level t (ŵ = sc·t), and whether the
// level clamp passed.
struct Elem {
  float z;      // x/sc
  float t;      // int_sym: q; else q − zp
  float q;      // the clamped value (int_sym: level; else level + zp)
  uint32_t inside;  // q_mask: the level clamp passes the gradient (clamp(s) == s)
};

ARQ_QHD Elem elem_of(const Consts& k, const Row& r, float x, float v, bool has_v) {
  Elem e;
  e.z = q_div(x, r.sc);
  const float z2 = has_v ? q_add(e.z, v) : e.z;
  const float rd = q_round(z2);
  if (k.kind == kSym) {
    e.q = q_clamp(rd, -k.qmax, k.qmax - 1.0f);
    e.inside = q_mask(e.q == rd);
    e.t = e.q;
  } else {
    const float s1 = q_add(rd, r.zp);
    e.q = q_clamp(s1, 0.0f, k.qmax);
    e.inside = q_mask(e.q == s1);
    e.t = q_sub(e.q, r.zp);
  }
  return e;
}

ARQ_QHD uint8_t code_of(const Consts& k, const Elem& e) {
  return static_cast<uint8_t>(k.kind == kSym ? q_add(e.q, k.qmax) : e.q);
}
ARQ_QHD int32_t zero_of(const Consts& k, const Row& r) {
  return k.kind == kSym ? static_cast<int32_t>(k.qmax) : static_cast<int32_t>(r.zp);
}

// One element's share of the backward: dV (the masked level gradient g') and the f32 terms the
// composed VJPs sum per row (each is one element of a [rows, G] tensor that sum_to reduces).
struct Terms {
  float dv;  // g'
  float a;   // g·t            (mul's VJP to sc)
  float b;   // −((g'/sc)·z)   (div x/sc's VJP to sc)
  float z1;  // asym: −(g·sc)  (sub's VJP to zp)
  float z2;  // asym: g'       (add's VJP to zp)
};
ARQ_QHD Terms elem_terms(const Consts& k, const Row& r, const Elem& e, float g) {
  Terms t;
  t.a = q_mul(g, e.t);
  float dt = q_mul(g, r.sc);
  if (k.kind == kGptq) dt = q_add(q_mul(1.0f, dt), 0.0f);  // affine(·, 1, −zp)'s VJP
  t.z1 = -dt;
  t.dv = q_keep(e.inside, dt);
  t.z2 = t.dv;
  t.b = -q_mul(q_div(t.dv, r.sc), e.z);
  return t;
}

// Per-row sums of the terms in f64 (on the CPU one sequential sum per row in element order, as
// the CPU sum kernel adds; the CUDA kernel sums in another order).
struct RowSums {
  double a = 0, b = 0, z1 = 0, z2 = 0;
  ARQ_QHD void add(const Terms& t, bool asym) {
    a += static_cast<double>(t.a);
    b += static_cast<double>(t.b);
    if (asym) {
      z1 += static_cast<double>(t.z1);
      z2 += static_cast<double>(t.z2);
    }
  }
};

// The row's dα, dβ from its sums (each f64 sum rounded once to f32, as sum_to stores it).
struct RowGrad {
  float dalpha, dbeta;
};
ARQ_QHD RowGrad row_backward(const Consts& k, const Row& r, float wmin, float wmax, const RowSums& s) {
  const float A = static_cast<float>(s.a), B = static_cast<float>(s.b);
  float dsc;
  float ga0 = 0.0f;
  if (k.kind == kAsym) {
    // sc's three consumers accumulate in the graph walk's order: mul, then div(−wmin, sc), then
    // div(x, sc)
    const float Z = q_add(static_cast<float>(s.z1), static_cast<float>(s.z2));
    ga0 = q_div(Z, r.sc);
    const float C = -q_mul(ga0, r.y0);
    dsc = q_add(q_add(A, C), B);
  } else {
    dsc = q_add(A, B);
  }
  // widen's VJP rounds to the scale dtype; the threshold clamp masks; the cast back is exact
  const float g3 = r.inside ? to_sdt(dsc, k.sdt) : 0.0f;
  float dwmin_s, dwmax_s;
  if (k.kind == kSym) {
    const float dM = q_div(g3, k.qmax);
    const float d_mneg = r.neg_dom ? dM : 0.0f, d_negw = r.neg_dom ? 0.0f : dM;
    dwmin_s = -d_mneg;
    dwmax_s = -d_negw;
  } else if (k.kind == kAsym) {
    const float gd0 = q_div(g3, k.qmax);
    dwmax_s = gd0;
    dwmin_s = q_add(-ga0, -gd0);
  } else {
    const float gm = q_add(q_mul(2.0f, q_div(g3, k.qmax)), 0.0f);
    const float ga = q_mul(gm, r.share);
    dwmax_s = q_sub(gm, ga);
    dwmin_s = q_mul(ga, r.sign_wmin);
  }
  return {q_mul(dwmin_s, wmin), q_mul(dwmax_s, wmax)};
}

}  // namespace arq::qdq
