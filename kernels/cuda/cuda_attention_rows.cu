// CUDA kernels of the attention row steps (engine/attention_rows.h), mirroring
// kernels/cpu/attention_rows.cpp and the row softmax of cuda_softmax_norm.cu.
//
// TPR threads per row (32, 128 or 512 by row length; several short rows share a 256-thread
// block). Each thread keeps its ≤ 16 masked scores in registers when the row fits (n ≤ 16·TPR),
// so the scores are read from memory once; longer rows are re-read per pass. Per row:
//   x_j = C(s_j) + mask_j, kMaskedScore on causal / window-masked keys;
//   m = max (NaN ignored; all -inf → 0), s = Σ exp(f64(x − m)) in f64, p_j = exp(x_j − m)·(1/s),
//   0 on dead rows; P = round_T(p), dS = round_T(p·(C(dP_j) − D)).
// Results are within the libm tolerance of the CPU kernel (expf ≤ 2 ulp vs the CPU's f64 exp
// rounded to f32), not bit-identical.
#include <cfloat>

#include "engine/attention_rows.h"
#include "kernels/cuda/cuda_device.cuh"

namespace arq::cuda {

namespace {

template <class T>
struct RowsArgs {
  using C = acc_of<T>;
  const T* scores;        // [rows, n] = [b, h, r, g, n]
  const C* mask;          // [mb, r, n] (batch stride msb, 0 when broadcast; row stride msr) or null
  const uint8_t* dead;    // [mb, r] (strides dsb, dsr) or null
  const T* dp;            // [rows, n] or null (forward)
  const C* d_row;         // [rows] or null
  T* p;                   // [rows, n]
  T* ds;                  // [rows, n] or null
  int64_t rows, n, h, r, g;
  int64_t msb, msr, dsb, dsr;
  int64_t q_first, k_first, window;
  bool causal;
};

template <class T, int TPR, int VPT>
__global__ void __launch_bounds__(TPR > kThreads ? TPR : kThreads) attention_rows_kernel(RowsArgs<T> a) {
  using C = acc_of<T>;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (blockDim.x / TPR) + threadIdx.x / TPR;
  const int t = threadIdx.x % TPR;
  const bool live = row < a.rows;
  const int64_t n = live ? a.n : 0;
  const int64_t bi = live ? row / (a.g * a.r * a.h) : 0, qi = live ? row / a.g % a.r : 0;
  const T* s = a.scores + (live ? row * a.n : 0);
  const C* m_row = a.mask ? a.mask + bi * a.msb + qi * a.msr : nullptr;
  // Visible keys of this row: [lo, hi) (the structure masks the rest).
  int64_t lo = 0, hi = n;
  if (a.causal) {
    const int64_t qpos = a.q_first + qi;
    hi = max(int64_t{0}, min(n, qpos - a.k_first + 1));
    if (a.window > 0) lo = max(int64_t{0}, min(n, qpos - a.window + 1 - a.k_first));
  }
  const C masked = static_cast<C>(-FLT_MAX);
  auto x_at = [&](int64_t j) -> C {
    if (j < lo || j >= hi) return masked;
    const C v = load(s[j]);
    return m_row ? add_rn(v, m_row[j]) : v;
  };
  const bool cached = n <= static_cast<int64_t>(TPR) * VPT;
  C v[VPT];
  if (cached) {
#pragma unroll
    for (int k = 0; k < VPT; ++k) {
      const int64_t j = t + static_cast<int64_t>(k) * TPR;
      v[k] = j < n ? x_at(j) : C(0);
    }
  }
  auto each = [&](auto&& f) {
    if (cached) {
#pragma unroll
      for (int k = 0; k < VPT; ++k) {
        const int64_t j = t + static_cast<int64_t>(k) * TPR;
        if (j < n) f(j, v[k]);
      }
    } else {
      for (int64_t j = t; j < n; j += TPR) f(j, x_at(j));
    }
  };
  C m = -INFINITY;
  each([&](int64_t, C x) { m = x > m ? x : m; });
  m = row_reduce<TPR>(m, MaxOp{});
  if (m == -INFINITY) m = 0;  // all -inf: avoid inf - inf
  double sum = 0;
  each([&](int64_t, C x) { sum += acc_exp(static_cast<double>(sub_rn(x, m))); });
  sum = row_reduce<TPR>(sum, SumOp{});
  if (!live) return;
  const C inv = static_cast<C>(__ddiv_rn(1.0, sum));
  const bool is_dead = a.dead && a.dead[bi * a.dsb + qi * a.dsr] != 0;
  T* p = a.p + row * a.n;
  if (a.ds) {
    const T* dp = a.dp + row * a.n;
    T* ds = a.ds + row * a.n;
    const C d = a.d_row[row];
    each([&](int64_t j, C x) {
      const C pj = is_dead ? C(0) : mul_rn(acc_exp(sub_rn(x, m)), inv);
      p[j] = store<T>(pj);
      ds[j] = store<T>(mul_rn(pj, sub_rn(load(dp[j]), d)));
    });
  } else {
    each([&](int64_t j, C x) { p[j] = store<T>(is_dead ? C(0) : mul_rn(acc_exp(sub_rn(x, m)), inv)); });
  }
}

template <class Host>
void launch_rows(const Tensor& scores, const Tensor& mask, const Tensor& dead, const Tensor& dp, const Tensor& d_row,
                 const AttentionRowsParams& prm, Tensor& p, Tensor& ds) {
  using T = dev_t<Host>;
  using C = acc_of<T>;
  RowsArgs<T> a{};
  a.n = scores.size(4);
  a.h = scores.size(1);
  a.r = scores.size(2);
  a.g = scores.size(3);
  a.rows = a.n > 0 ? scores.numel() / a.n : 0;
  if (a.rows == 0 || a.n == 0) return;
  a.scores = static_cast<const T*>(scores.data_ptr());
  if (mask.defined()) {
    a.mask = static_cast<const C*>(mask.data_ptr());
    a.msb = mask.size(0) > 1 ? mask.stride(0) : 0;
    a.msr = mask.stride(1);
  }
  if (dead.defined()) {
    a.dead = static_cast<const uint8_t*>(dead.data_ptr());
    a.dsb = dead.size(0) > 1 ? dead.stride(0) : 0;
    a.dsr = dead.stride(1);
  }
  if (ds.defined()) {
    a.dp = static_cast<const T*>(dp.data_ptr());
    a.d_row = static_cast<const C*>(d_row.data_ptr());
    a.ds = static_cast<T*>(ds.data_ptr());
  }
  a.p = static_cast<T*>(p.data_ptr());
  a.q_first = prm.q_first;
  a.k_first = prm.k_first;
  a.window = prm.window;
  a.causal = prm.causal;
  cudaStream_t st = stream_for(p.device());
  auto launch = [&](auto tpr_tag) {
    constexpr int TPR = decltype(tpr_tag)::value;
    constexpr int kBlock = TPR > kThreads ? TPR : kThreads;
    constexpr int kRowsPerBlock = kBlock / TPR;
    const int64_t grid = (a.rows + kRowsPerBlock - 1) / kRowsPerBlock;
    ARQ_CHECK(grid <= 0x7fffffff, ShapeError, "[attention_probs] ", a.rows, " rows exceed one launch on ", p.str());
    attention_rows_kernel<T, TPR, 16><<<static_cast<unsigned>(grid), kBlock, 0, st>>>(a);
  };
  if (a.n <= 512) launch(std::integral_constant<int, 32>{});
  else if (a.n <= 2048) launch(std::integral_constant<int, 128>{});
  else launch(std::integral_constant<int, 512>{});
  CUDA_CHECK_LAUNCH();
}

class CudaAttentionRows final : public AttentionRowsKernels {
 public:
  void probs(const Tensor& scores, const Tensor& mask, const Tensor& dead, const Tensor& dp, const Tensor& d_row,
             const AttentionRowsParams& prm, Tensor& p, Tensor& ds) override {
    dispatch_dtype(scores.dtype(), [&](auto tag) {
      using T = dev_t<decltype(tag)>;
      if constexpr (is_float_acc<T>) launch_rows<decltype(tag)>(scores, mask, dead, dp, d_row, prm, p, ds);
      else throw UnsupportedError(cat("[attention_probs] not implemented on cuda for ", scores.str()));
    });
  }
};

}  // namespace

}  // namespace arq::cuda

namespace arq {

AttentionRowsKernels& cuda_attention_rows_kernels() {
  static cuda::CudaAttentionRows k;
  return k;
}

}  // namespace arq
