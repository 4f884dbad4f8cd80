// CPU kernels of the attention row steps (engine/attention_rows.h). Each row mirrors the engine
// op chain it replaces in autograd/attention.cpp operation by operation: cast to C, + mask (one C
// add), where(structure, kMaskedScore), arq::softmax exactly as kernels/cpu/reduce.cpp computes
// it (f32: 8-lane max, f64 exp sum over 8 lanes combined in a fixed order, out = f32(e)·f32(1/s);
// f64: sequential), where(dead, 0), the cast to the activation dtype; backward C(dP) − D, · p,
// cast. So the results are bit-identical to the chain; what is saved is ~6 passes over the tile.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <limits>
#include <vector>

#include "engine/attention_rows.h"
#include "kernels/cpu/softmax_row.h"
#include "kernels/cpu/strided.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/cpu/vec_math.h"

namespace arq::cpu {

namespace {

// arq::softmax's row core (kernels/cpu/softmax_row.h): the same function, so the same bits.
ARQ_INLINE void softmax_row_core_f32(const float* x, float* e, int64_t n, float& m_out, double& s_out) {
  softmax_row_core(x, e, n, m_out, s_out);
}

// Row → (batch, kv head, query row, group head) of a [b, h, r, g, k] tile.
struct RowIndex {
  int64_t h, r, g;
  int64_t batch(int64_t row) const { return row / (g * r * h); }
  int64_t qrow(int64_t row) const { return row / g % r; }
};

template <class T>
void probs_typed(const Tensor& scores, const Tensor& mask, const Tensor& dead, const Tensor& dp, const Tensor& d_row,
                 const AttentionRowsParams& prm, Tensor& p, Tensor& ds) {
  using C = acc_t<T>;   // the softmax's compute dtype: f32, f64 for f64
  const RowIndex ri{scores.size(1), scores.size(2), scores.size(3)};
  const int64_t n = scores.size(4), rows = scores.numel() / std::max<int64_t>(n, 1);
  const T* ps = static_cast<const T*>(scores.data_ptr());
  const C* pm = mask.defined() ? static_cast<const C*>(mask.data_ptr()) : nullptr;
  const int64_t msb = pm && mask.size(0) > 1 ? mask.stride(0) : 0, msr = pm ? mask.stride(1) : 0;
  const uint8_t* pdead = dead.defined() ? static_cast<const uint8_t*>(dead.data_ptr()) : nullptr;
  const int64_t dsb = pdead && dead.size(0) > 1 ? dead.stride(0) : 0, dsr = pdead ? dead.stride(1) : 0;
  const T* pdp = dp.defined() ? static_cast<const T*>(dp.data_ptr()) : nullptr;
  const C* pd = d_row.defined() ? static_cast<const C*>(d_row.data_ptr()) : nullptr;
  T* pp = static_cast<T*>(p.data_ptr());
  T* pds = ds.defined() ? static_cast<T*>(ds.data_ptr()) : nullptr;
  const C masked = static_cast<C>(-FLT_MAX);   // the chain's scalar_tensor(kAttentionMaskedScore, C)
  parallel_for(rows, std::max<int64_t>(1, 4096 / std::max<int64_t>(n, 1)), [&](int64_t r_begin, int64_t r_end) {
    std::vector<C> x(static_cast<size_t>(n)), e(static_cast<size_t>(n));
    for (int64_t row = r_begin; row < r_end; ++row) {
      const int64_t bi = ri.batch(row), qi = ri.qrow(row);
      const T* s = ps + row * n;
      // scores as the chain's scores(): C(s) + mask, then kMaskedScore on structure-masked keys
      if (pm) {
        const C* m = pm + bi * msb + qi * msr;
        for (int64_t j = 0; j < n; ++j) x[j] = C(load(s[j]) + m[j]);
      } else {
        for (int64_t j = 0; j < n; ++j) x[j] = load(s[j]);
      }
      if (prm.causal) {
        const int64_t qpos = prm.q_first + qi;
        // visible keys: qpos − W < k_first + j <= qpos
        const int64_t hi = std::clamp<int64_t>(qpos - prm.k_first + 1, 0, n);
        const int64_t lo = prm.window > 0 ? std::clamp<int64_t>(qpos - prm.window + 1 - prm.k_first, 0, n) : 0;
        for (int64_t j = 0; j < std::min(lo, n); ++j) x[j] = masked;
        for (int64_t j = hi; j < n; ++j) x[j] = masked;
      }
      T* o = pp + row * n;
      const bool is_dead = pdead && pdead[bi * dsb + qi * dsr] != 0;
      // p_j (in e) as arq::softmax, then where(dead, 0, p)
      if constexpr (std::is_same_v<C, float>) {
        float m = 0;
        double sum = 0;
        for_isa([&](auto) ARQ_LAMBDA_INLINE { softmax_row_core_f32(x.data(), e.data(), n, m, sum); });
        const float inv = static_cast<float>(1.0 / sum);
        for (int64_t j = 0; j < n; ++j) e[j] = e[j] * inv;
      } else {
        C m = -std::numeric_limits<C>::infinity();
        for (int64_t j = 0; j < n; ++j) m = x[j] > m ? x[j] : m;
        if (m == -std::numeric_limits<C>::infinity()) m = 0;  // all -inf: avoid inf - inf
        double sum = 0;
        for (int64_t j = 0; j < n; ++j) sum += std::exp(static_cast<double>(x[j] - m));
        const C inv = static_cast<C>(1.0 / sum);
        for (int64_t j = 0; j < n; ++j) e[j] = C(std::exp(x[j] - m) * inv);
      }
      if (is_dead)
        for (int64_t j = 0; j < n; ++j) e[j] = C(0);
      for (int64_t j = 0; j < n; ++j) o[j] = store<T>(e[j]);
      if (pds) {   // dS = p ⊙ (C(dP) − D), rounded to T
        const T* g = pdp + row * n;
        const C d = pd[row];
        T* dso = pds + row * n;
        for (int64_t j = 0; j < n; ++j) dso[j] = store<T>(C(e[j] * C(load(g[j]) - d)));
      }
    }
  });
}

class CpuAttentionRows final : public AttentionRowsKernels {
 public:
  void probs(const Tensor& scores, const Tensor& mask, const Tensor& dead, const Tensor& dp, const Tensor& d_row,
             const AttentionRowsParams& prm, Tensor& p, Tensor& ds) override {
    dispatch_dtype(scores.dtype(), [&](auto tag) {
      using T = decltype(tag);
      if constexpr (std::is_floating_point_v<acc_t<T>>) probs_typed<T>(scores, mask, dead, dp, d_row, prm, p, ds);
      else throw UnsupportedError(cat("[attention_probs] not implemented for ", scores.str()));
    });
  }
};

}  // namespace

}  // namespace arq::cpu

namespace arq {

AttentionRowsKernels& cpu_attention_rows_kernels() {
  static cpu::CpuAttentionRows k;
  return k;
}

}  // namespace arq
