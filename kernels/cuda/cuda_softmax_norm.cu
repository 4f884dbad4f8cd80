// CUDA softmax / log-softmax and RMSNorm over the last axis, mirroring kernels/cpu/reduce.cpp.
//
// TPR threads per row (32, 128 or 512 by row length; several short rows share a 256-thread
// block). Each thread keeps its ≤ 16 elements in registers when the row fits (n ≤ 16·TPR), so
// the row is read from memory once (in 16-byte vectors when contiguous and aligned); longer rows
// are re-read per pass.
//   softmax:  m = max (NaN ignored; all -inf → 0), s = Σ exp(f64(x - m)) in f64,
//             out = exp(x - m) · (1/s)   or, for log-softmax, (x - m) - log(s);
//   rms_norm: inv = 1 / sqrt(Σx²/n + eps) in f64; out = w · round_T(x · inv)  (HF order).
#include "kernels/cuda/cuda_device.cuh"

namespace arq::cuda {

namespace {

// The elements of one row that thread t (of TPR) owns, held in registers when the row fits
// (n ≤ TPR·VPT). A contiguous, 16-byte-aligned row is read and written in 16-byte vectors: thread
// t owns chunks t, t + TPR, ... of VW elements; otherwise elements t, t + TPR, ...
template <class T, int TPR, int VPT>
struct RowCache {
  using C = acc_of<T>;
  static constexpr int VW = 16 / sizeof(T);  // elements per vector
  static_assert(VPT % VW == 0, "VPT must hold whole vectors");
  C v[VPT];
  const T* row;
  int64_t n, sx;
  int t;
  bool cached, vec;
  __device__ RowCache(const T* r, const T* out, int64_t n_, int64_t sx_, int t_) : row(r), n(n_), sx(sx_), t(t_) {
    cached = n <= static_cast<int64_t>(TPR) * VPT;
    vec = cached && sx == 1 && n % VW == 0 && aligned(row) && aligned(out);
    if (vec) {
#pragma unroll
      for (int c = 0; c < VPT / VW; ++c) {
        const int64_t j = (t + static_cast<int64_t>(c) * TPR) * VW;
        Vec<T, VW> a;
        if (j < n) a = *reinterpret_cast<const Vec<T, VW>*>(row + j);
#pragma unroll
        for (int k = 0; k < VW; ++k) v[c * VW + k] = j < n ? load(a.v[k]) : C(0);
      }
    } else if (cached) {
#pragma unroll
      for (int k = 0; k < VPT; ++k) {
        const int64_t j = t + static_cast<int64_t>(k) * TPR;
        v[k] = j < n ? load(row[j * sx]) : C(0);
      }
    }
  }
  __device__ static bool aligned(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }
  // Visit every element of this thread: f(j, value).
  template <class F>
  __device__ void each(F&& f) const {
    if (vec) {
#pragma unroll
      for (int c = 0; c < VPT / VW; ++c) {
        const int64_t j = (t + static_cast<int64_t>(c) * TPR) * VW;
        if (j < n) {
#pragma unroll
          for (int k = 0; k < VW; ++k) f(j + k, v[c * VW + k]);
        }
      }
    } else if (cached) {
#pragma unroll
      for (int k = 0; k < VPT; ++k) {
        const int64_t j = t + static_cast<int64_t>(k) * TPR;
        if (j < n) f(j, v[k]);
      }
    } else {
      for (int64_t j = t; j < n; j += TPR) f(j, load(row[j * sx]));
    }
  }
  // out[j] = f(j, value) for every element of this thread (vector stores on the vector path).
  template <class F>
  __device__ void write(T* out, F&& f) const {
    if (vec) {
#pragma unroll
      for (int c = 0; c < VPT / VW; ++c) {
        const int64_t j = (t + static_cast<int64_t>(c) * TPR) * VW;
        if (j < n) {
          Vec<T, VW> r;
#pragma unroll
          for (int k = 0; k < VW; ++k) r.v[k] = f(j + k, v[c * VW + k]);
          *reinterpret_cast<Vec<T, VW>*>(out + j) = r;
        }
      }
    } else {
      each([&](int64_t j, C x) { out[j] = f(j, x); });
    }
  }
};

template <class T, int TPR, int VPT>
__global__ void softmax_kernel(const T* x, T* out, Descs<2> L, int64_t rows, int64_t n, int64_t sx, bool log_out) {
  using C = acc_of<T>;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * (blockDim.x / TPR) + threadIdx.x / TPR;
  const int t = threadIdx.x % TPR;
  // Rows past the end still take part in the block-wide reductions (TPR > 32) with no elements.
  const bool live = r < rows;
  int64_t off[2] = {0, 0};
  if (live) offsets_of(L, r, off);
  RowCache<T, TPR, VPT> rc(x + off[1], out + off[0], live ? n : 0, sx, t);
  C m = -INFINITY;
  rc.each([&](int64_t, C v) { m = v > m ? v : m; });
  m = row_reduce<TPR>(m, MaxOp{});
  if (m == -INFINITY) m = 0;  // all -inf: avoid inf - inf
  double s = 0;
  rc.each([&](int64_t, C v) { s += acc_exp(static_cast<double>(v - m)); });
  s = row_reduce<TPR>(s, SumOp{});
  if (!live) return;
  T* o = out + off[0];
  if (log_out) {
    const C ls = static_cast<C>(log(s));
    rc.write(o, [&](int64_t, C v) { return store<T>(C(C(v - m) - ls)); });
  } else {
    const C inv = static_cast<C>(__ddiv_rn(1.0, s));
    rc.write(o, [&](int64_t, C v) { return store<T>(mul_rn(acc_exp(C(v - m)), inv)); });
  }
}

template <class T, int TPR, int VPT>
__global__ void rms_norm_kernel(const T* x, const T* w, int64_t sw, T* out, Descs<2> L, int64_t rows, int64_t n,
                                int64_t sx, double eps) {
  using C = acc_of<T>;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * (blockDim.x / TPR) + threadIdx.x / TPR;
  const int t = threadIdx.x % TPR;
  const bool live = r < rows;
  int64_t off[2] = {0, 0};
  if (live) offsets_of(L, r, off);
  RowCache<T, TPR, VPT> rc(x + off[1], out + off[0], live ? n : 0, sx, t);
  double ss = 0;
  rc.each([&](int64_t, C v) {
    const double d = static_cast<double>(v);
    ss = __dadd_rn(ss, __dmul_rn(d, d));
  });
  ss = row_reduce<TPR>(ss, SumOp{});
  if (!live) return;
  const C inv = static_cast<C>(__ddiv_rn(1.0, __dsqrt_rn(__dadd_rn(ss / static_cast<double>(n), eps))));
  rc.write(out + off[0], [&](int64_t j, C v) {
    const C normed = load(store<T>(mul_rn(v, inv)));
    return store<T>(mul_rn(load(w[j * sw]), normed));
  });
}

// Launch one of the two row kernels with the warp or block shape that fits n.
template <class Host, bool kNorm>
void launch_rows(const Tensor& x, Tensor& out, const Tensor* weight, double eps, bool log_out) {
  using T = dev_t<Host>;
  const int64_t n = x.size(-1), sx = x.stride(-1);
  Tensor xv = x.narrow(-1, 0, 1), ov = out.narrow(-1, 0, 1);
  const int64_t rows = ov.numel();
  if (rows == 0 || n == 0) return;
  const Descs<2> L = make_descs<2>(ov.shape(), {&ov, &xv});
  cudaStream_t s = stream_for(out.device());
  const T* px = static_cast<const T*>(x.data_ptr());
  T* po = static_cast<T*>(out.data_ptr());
  const T* pw = weight ? static_cast<const T*>(weight->data_ptr()) : nullptr;
  const int64_t sw = weight ? weight->stride(0) : 0;
  // Threads per row by row length, so that each thread holds ≤ 16 elements in registers and a
  // 256-thread block carries several short rows: ≤ 512 → a warp, ≤ 2048 → 128 threads, ≤ 8192 →
  // 512 threads; longer rows: 512 threads re-reading the row per pass.
  auto launch = [&](auto tpr_tag) {
    constexpr int TPR = decltype(tpr_tag)::value;
    constexpr int kBlock = TPR > kThreads ? TPR : kThreads;
    constexpr int kRowsPerBlock = kBlock / TPR;
    const unsigned grid = static_cast<unsigned>((rows + kRowsPerBlock - 1) / kRowsPerBlock);
    if constexpr (kNorm) rms_norm_kernel<T, TPR, 16><<<grid, kBlock, 0, s>>>(px, pw, sw, po, L, rows, n, sx, eps);
    else softmax_kernel<T, TPR, 16><<<grid, kBlock, 0, s>>>(px, po, L, rows, n, sx, log_out);
  };
  if (n <= 512) launch(std::integral_constant<int, 32>{});
  else if (n <= 2048) launch(std::integral_constant<int, 128>{});
  else launch(std::integral_constant<int, 512>{});
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void softmax(const Tensor& x, Tensor& out, bool log) {
  dispatch_dtype(x.dtype(), [&](auto tag) {
    using T = dev_t<decltype(tag)>;
    if constexpr (is_float_acc<T>) launch_rows<decltype(tag), false>(x, out, nullptr, 0.0, log);
    else throw UnsupportedError(cat("[", log ? "log_softmax" : "softmax", "] not implemented on cuda for ", x.str()));
  });
}

void rms_norm(const Tensor& x, const Tensor& weight, double eps, Tensor& out) {
  dispatch_dtype(x.dtype(), [&](auto tag) {
    using T = dev_t<decltype(tag)>;
    if constexpr (is_float_acc<T>) launch_rows<decltype(tag), true>(x, out, &weight, eps, false);
    else throw UnsupportedError(cat("[rms_norm] not implemented on cuda for ", x.str()));
  });
}

}  // namespace arq::cuda
