// CPU kernels of the fused qdq (engine/qdq_fused.h): rows of the grouped weight in parallel on
// the thread pool, each row computed exactly as quant/qdq.cpp's composition computes it (the
// scalar steps in qdq_math.h), its backward sums in f64 in element order as the CPU sum kernel
// adds them, so forward, codes and gradients are bit-identical to the composition. Every output
// element belongs to one row, so results do not depend on the split. The element loops are
// instantiated per data type and V presence and run at the widest ISA (vec_math.h's for_isa),
// where they vectorize; only the f64 row sums stay sequential.
#include <algorithm>
#include <type_traits>
#include <vector>

#include "engine/qdq_fused.h"
#include "kernels/cpu/qdq_consts.h"
#include "kernels/cpu/qdq_math.h"
#include "kernels/cpu/strided.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/cpu/vec_math.h"

namespace arq::cpu {

namespace {

// Row r covers output elements [base, base + n) of the flattened [out, in] weight.
struct RowSpan {
  int64_t base, n;
};
RowSpan span_of(const QdqSpec& s, int64_t r) {
  if (s.per_tensor) return {0, s.out * s.in};
  const int64_t o = r / s.groups_per_row, k = r % s.groups_per_row;
  return {o * s.in + k * s.group_len, std::min(s.in, (k + 1) * s.group_len) - k * s.group_len};
}

// Rows per task: ~kElementwiseGrain elements.
int64_t row_grain(const QdqSpec& s) { return std::max<int64_t>(1, kElementwiseGrain / s.group_len); }

// Calls f(std::integral_constant<int, kind>): the kernels copy the constants with that kind
// into a local, so the per-element branches on the kind fold away and the loops vectorize.
template <class F>
void with_kind(int kind, F&& f) {
  switch (kind) {
    case qdq::kSym: return f(std::integral_constant<int, qdq::kSym>{});
    case qdq::kAsym: return f(std::integral_constant<int, qdq::kAsym>{});
    default: return f(std::integral_constant<int, qdq::kGptq>{});
  }
}

template <int kKind>
ARQ_INLINE qdq::Consts with_kind_const(qdq::Consts k) {
  k.kind = kKind;
  return k;
}

// ŵ (T) or codes (u8) of one row's n elements; one instance per kind and V presence, every
// pointer restrict-qualified: no branch, no conditional load, no aliasing, so the loop vectorizes.
template <int kKind, bool kHasV, class T>
ARQ_INLINE void row_forward(const qdq::Consts k0, const qdq::Row row, const float* __restrict xr,
                            const float* __restrict vr, const int64_t n, T* __restrict out) {
  const qdq::Consts k = with_kind_const<kKind>(k0);
  for (int64_t j = 0; j < n; ++j) {
    float vj = 0.0f;
    if constexpr (kHasV) vj = vr[j];
    const qdq::Elem e = qdq::elem_of(k, row, xr[j], vj, kHasV);
    if constexpr (std::is_same_v<T, uint8_t>) out[j] = qdq::code_of(k, e);
    else out[j] = store<T>(qdq::q_mul(row.sc, e.t));
  }
}

// T: the weight type of ŵ, or uint8_t for the codes (then scales/zeros are written too).
template <class T>
void forward_typed(const QdqInputs& x, const QdqSpec& s, T* out, float* scales, int32_t* zeros) {
  const int64_t G = s.group_len;
  const auto [wg, wmin, wmax, v, a, b] = qdq_ptrs_of(x);
  const qdq::Consts k = qdq_consts_of(s);
  with_kind(k.kind, [&](auto kind) {
    constexpr int kKind = decltype(kind)::value;
    parallel_for(s.n_rows(), row_grain(s), [&](int64_t r0, int64_t r1) {
      for_isa([&](auto) ARQ_LAMBDA_INLINE {
        for (int64_t r = r0; r < r1; ++r) {
          const qdq::Row row = qdq::row_of(k, wmin[r], wmax[r], a ? a + r : nullptr, b ? b + r : nullptr);
          const RowSpan sp = span_of(s, r);
          if (scales) {
            scales[r] = row.sc;
            zeros[r] = qdq::zero_of(k, row);
          }
          if (v) row_forward<kKind, true>(k, row, wg + r * G, v + r * G, sp.n, out + sp.base);
          else row_forward<kKind, false>(k, row, wg + r * G, nullptr, sp.n, out + sp.base);
        }
      });
    });
  });
}

// The backward terms of one row's n elements (as row_forward: one vectorizable instance per
// kind, V presence and cotangent type).
template <int kKind, bool kHasV, class GT>
ARQ_INLINE void row_terms(const qdq::Consts k0, const qdq::Row row, const float* __restrict xr,
                          const float* __restrict vr, const GT* __restrict gr, const int64_t n, float* __restrict dv,
                          float* __restrict ta, float* __restrict tb, float* __restrict tz1, float* __restrict tz2) {
  const qdq::Consts k = with_kind_const<kKind>(k0);
  for (int64_t j = 0; j < n; ++j) {
    float vj = 0.0f;
    if constexpr (kHasV) vj = vr[j];
    const qdq::Elem e = qdq::elem_of(k, row, xr[j], vj, kHasV);
    const qdq::Terms t = qdq::elem_terms(k, row, e, load(gr[j]));
    dv[j] = t.dv;
    ta[j] = t.a;
    tb[j] = t.b;
    tz1[j] = t.z1;
    tz2[j] = t.z2;
  }
}

// Per row: the element terms in one vectorizable pass into a row buffer, then their f64 sums in
// element order (a sequential sum cannot vectorize without changing its rounding).
template <class GT>
void backward_rows(const QdqInputs& x, const QdqSpec& s, const Tensor& g, QdqGrads& out) {
  const int64_t G = s.group_len;
  const auto [wg, wmin, wmax, v, a, b] = qdq_ptrs_of(x);
  const GT* pg = static_cast<const GT*>(g.data_ptr());
  float* dv = out.dv.defined() ? out.dv.data<float>() : nullptr;
  float* da = out.dalpha.defined() ? out.dalpha.data<float>() : nullptr;
  float* db = out.dbeta.defined() ? out.dbeta.data<float>() : nullptr;
  const bool sums = da || db;
  const qdq::Consts k = qdq_consts_of(s);
  with_kind(k.kind, [&](auto kind) {
    constexpr int kKind = decltype(kind)::value;
    constexpr bool kAsymSums = kKind == qdq::kAsym;
    // Terms of at most kBlock elements at a time (a per-tensor row is the whole weight). Rows of
    // G ≤ kShort go kPar at a time: their f64 sums (one dependent chain per row) advance in
    // lockstep, so kPar chains overlap instead of waiting on one add's latency per element.
    constexpr int64_t kBlock = 4096, kShort = 512;
    constexpr int kPar = 4;
    const int64_t B = std::min(G, kBlock);
    const int par = G <= kShort ? kPar : 1;
    parallel_for(s.n_rows(), row_grain(s), [&](int64_t r0, int64_t r1) {
      // [par, 5, B]: per row in flight, dv (when not wanted), a, b, z1, z2
      std::vector<float> buf(static_cast<size_t>(par * 5 * B));
      auto term = [&](int i, int which) { return buf.data() + (static_cast<int64_t>(i) * 5 + which) * B; };
      // Terms of row r's elements [j0, j0 + m) into slot i.
      auto terms = [&](int i, const qdq::Row& row, int64_t r, const RowSpan& sp, int64_t j0, int64_t m) {
        const float* xr = wg + r * G + j0;
        const GT* gr = pg + sp.base + j0;
        float* dvr = dv ? dv + r * G + j0 : term(i, 0);
        float *ta = term(i, 1), *tb = term(i, 2), *tz1 = term(i, 3), *tz2 = term(i, 4);
        for_isa([&](auto) ARQ_LAMBDA_INLINE {
          if (v) row_terms<kKind, true>(k, row, xr, v + r * G + j0, gr, m, dvr, ta, tb, tz1, tz2);
          else row_terms<kKind, false>(k, row, xr, nullptr, gr, m, dvr, ta, tb, tz1, tz2);
        });
      };
      auto add = [&](qdq::RowSums& rs, int i, int64_t j) {
        rs.add({0.0f, term(i, 1)[j], term(i, 2)[j], term(i, 3)[j], term(i, 4)[j]}, kAsymSums);
      };
      auto finish = [&](int64_t r, const qdq::Row& row, const qdq::RowSums& rs) {
        if (dv)
          for (int64_t j = span_of(s, r).n; j < G; ++j) dv[r * G + j] = 0.0f;
        if (!sums) return;
        // the padding has a zero cotangent: its terms are ±0 and leave every sum unchanged
        const qdq::RowGrad rg = qdq::row_backward(k, row, wmin[r], wmax[r], rs);
        if (da) da[r] = rg.dalpha;
        if (db) db[r] = rg.dbeta;
      };
      int64_t r = r0;
      if (par == kPar) {
        for (; r + kPar <= r1; r += kPar) {
          qdq::Row rows[kPar];
          RowSpan spans[kPar];
          qdq::RowSums rs[kPar];
          int64_t n_min = G;
          for (int i = 0; i < kPar; ++i) {
            rows[i] = qdq::row_of(k, wmin[r + i], wmax[r + i], a ? a + r + i : nullptr, b ? b + r + i : nullptr);
            spans[i] = span_of(s, r + i);
            n_min = std::min(n_min, spans[i].n);
            terms(i, rows[i], r + i, spans[i], 0, spans[i].n);
          }
          if (sums) {
            // each row's sum still runs over its elements in order
            for (int64_t j = 0; j < n_min; ++j)
              for (int i = 0; i < kPar; ++i) add(rs[i], i, j);
            for (int i = 0; i < kPar; ++i)
              for (int64_t j = n_min; j < spans[i].n; ++j) add(rs[i], i, j);
          }
          for (int i = 0; i < kPar; ++i) finish(r + i, rows[i], rs[i]);
        }
      }
      for (; r < r1; ++r) {
        const qdq::Row row = qdq::row_of(k, wmin[r], wmax[r], a ? a + r : nullptr, b ? b + r : nullptr);
        const RowSpan sp = span_of(s, r);
        qdq::RowSums rs;
        for (int64_t j0 = 0; j0 < sp.n; j0 += B) {
          const int64_t m = std::min(B, sp.n - j0);
          terms(0, row, r, sp, j0, m);
          // in element order across the blocks: the same sequential sums as one pass
          if (sums)
            for (int64_t j = 0; j < m; ++j) add(rs, 0, j);
        }
        finish(r, row, rs);
      }
    });
  });
}

template <class T>
void dequantize_typed(const Tensor& codes, const Tensor& scales, const Tensor& zeros, const Tensor& mins,
                      const QdqSpec& s, Tensor& out) {
  const uint8_t* c = codes.data<uint8_t>();
  const float* sc = scales.data<float>();
  const int32_t* zp = zeros.defined() ? zeros.data<int32_t>() : nullptr;
  const float* mn = mins.defined() ? mins.data<float>() : nullptr;
  T* o = static_cast<T*>(out.data_ptr());
  const int64_t in = s.in;
  parallel_for(s.out, std::max<int64_t>(1, kElementwiseGrain / in), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      for (int64_t j = 0; j < in; ++j) {
        const int64_t r = s.per_tensor ? 0 : i * s.groups_per_row + j / s.group_len;
        const int64_t idx = i * in + j;
        // (u − zp) is the exact integer level: one f32 product, as in the qdq forward; the GGUF
        // asym types decode as scale·u − min (two f32 roundings, ggml's order)
        const float w = mn ? qdq::q_sub(qdq::q_mul(sc[r], static_cast<float>(c[idx])), mn[r])
                           : qdq::q_mul(sc[r], static_cast<float>(static_cast<int32_t>(c[idx]) - zp[r]));
        o[idx] = convert<T>(w);
      }
    }
  });
}

class CpuQdq final : public QdqKernels {
 public:
  void forward(const QdqInputs& x, const QdqSpec& s, Tensor& w_hat, QdqCodes& codes) override {
    if (!w_hat.defined())
      return forward_typed<uint8_t>(x, s, codes.codes.data<uint8_t>(), codes.scales.data<float>(),
                                    codes.zeros.data<int32_t>());
    switch (w_hat.dtype()) {
      case DType::f32: return forward_typed<float>(x, s, w_hat.data<float>(), nullptr, nullptr);
      case DType::f16: return forward_typed<Half>(x, s, static_cast<Half*>(w_hat.data_ptr()), nullptr, nullptr);
      case DType::bf16:
        return forward_typed<BFloat16>(x, s, static_cast<BFloat16*>(w_hat.data_ptr()), nullptr, nullptr);
      default: throw UnsupportedError(cat("[qdq_fused] weight dtype ", dtype_name(w_hat.dtype()), " on cpu"));
    }
  }
  void backward(const QdqInputs& x, const QdqSpec& s, const Tensor& g, QdqGrads& grads) override {
    switch (g.dtype()) {
      case DType::f32: return backward_rows<float>(x, s, g, grads);
      case DType::f16: return backward_rows<Half>(x, s, g, grads);
      case DType::bf16: return backward_rows<BFloat16>(x, s, g, grads);
      default: throw UnsupportedError(cat("[qdq_fused_backward] gradient dtype ", dtype_name(g.dtype()), " on cpu"));
    }
  }
  void dequantize(const Tensor& codes, const Tensor& scales, const Tensor& zeros, const Tensor& mins, const QdqSpec& s,
                  Tensor& out) override {
    switch (out.dtype()) {
      case DType::f32: return dequantize_typed<float>(codes, scales, zeros, mins, s, out);
      case DType::f64: return dequantize_typed<double>(codes, scales, zeros, mins, s, out);
      case DType::f16: return dequantize_typed<Half>(codes, scales, zeros, mins, s, out);
      case DType::bf16: return dequantize_typed<BFloat16>(codes, scales, zeros, mins, s, out);
      default: throw UnsupportedError(cat("[dequantize] output dtype ", dtype_name(out.dtype()), " on cpu"));
    }
  }
};

}  // namespace

}  // namespace arq::cpu

namespace arq {
QdqKernels& cpu_qdq_kernels() {
  static cpu::CpuQdq k;
  return k;
}
}  // namespace arq
