// CUDA kernels of the fused ops (engine/fused.h), mirroring kernels/cpu/fused.cpp step by step:
// the same compute type (f32; f64 for f64), the same roundings to the storage type, explicit
// _rn arithmetic so nvcc fuses nothing into an FMA. SwiGLU therefore matches the CUDA
// composition bit for bit; RMSNorm backward differs from the CPU only in the order of its f64
// sums (one f32 rounding of Σx², of the mean and of each dw, rarely off by one ulp).
//
//   swiglu:             one thread per element (grid-stride), reads gate/up, writes h;
//   swiglu_backward:    reads gate/up/g, writes dgate/dup (the composition: ~9 tensors);
//   rms_norm_backward:  TPR threads per row (a warp for d ≤ 1024, else a 256-thread block): two
//                       passes over the row (Σx², then Σ g·w·x), one writing pass for dx; dw by
//                       column partial sums over 256-row chunks in f64, then the chunks in order.
#include "engine/fused.h"
#include "kernels/cuda/cuda_device.cuh"
#include "kernels/dispatch_float.h"

namespace arq::cuda {

namespace {

__device__ __forceinline__ float f_exp(float v) { return expf(v); }
__device__ __forceinline__ double f_exp(double v) { return exp(v); }
__device__ __forceinline__ float div_rn(float a, float b) { return __fdiv_rn(a, b); }
__device__ __forceinline__ double div_rn(double a, double b) { return __ddiv_rn(a, b); }
__device__ __forceinline__ float sqrt_rn(float v) { return __fsqrt_rn(v); }
__device__ __forceinline__ double sqrt_rn(double v) { return __dsqrt_rn(v); }

// Round to the storage type and back, as the composition stores each intermediate tensor.
template <class T, class C>
__device__ __forceinline__ C rt(C v) {
  if constexpr (std::is_same_v<acc_of<T>, T>) return v;
  else return load(store<T>(v));
}

template <class T>
__global__ void swiglu_kernel(const T* gate, const T* up, T* h, int64_t n) {
  using C = acc_of<T>;
  ARQ_GRID_STRIDE(i, n) {
    const C x = load(gate[i]);
    // silu as cuda_unary.cu's Silu: x / (1 + exp(−x)), stored in T; then Mul: x · y
    const C s = rt<T>(div_rn(x, add_rn(C(1), f_exp(C(-x)))));
    h[i] = store<T>(mul_rn(s, load(up[i])));
  }
}

template <class T>
__global__ void swiglu_backward_kernel(const T* gate, const T* up, const T* g, T* dgate, T* dup, int64_t n) {
  using C = acc_of<T>;
  ARQ_GRID_STRIDE(i, n) {
    const C x = load(gate[i]), u = load(up[i]), gi = load(g[i]);
    const C ex = f_exp(C(-x));
    const C silu = rt<T>(div_rn(x, add_rn(C(1), ex)));
    dup[i] = store<T>(mul_rn(gi, silu));
    const C dsilu = rt<T>(mul_rn(gi, u));
    const C s = rt<T>(div_rn(C(1), add_rn(C(1), ex)));   // Sigmoid
    const C a1 = rt<T>(add_rn(mul_rn(C(-1), s), C(1)));  // affine(s, −1, 1)
    const C a2 = rt<T>(mul_rn(x, a1));
    const C a3 = rt<T>(add_rn(mul_rn(C(1), a2), C(1)));  // affine(·, 1, 1)
    const C a4 = rt<T>(mul_rn(s, a3));
    dgate[i] = store<T>(mul_rn(dsilu, a4));
  }
}

// Sum over the TPR threads of a row: a warp, or the whole block (one row per block).
template <int TPR>
__device__ __forceinline__ double row_sum(double v, double* scratch) {
  if constexpr (TPR == 32) return warp_sum(v);
  else return block_sum(v, scratch);
}

template <class T, int TPR>
__global__ void rms_norm_backward_rows(const T* x, const T* w, const T* g, T* dx, acc_of<T>* r_out, int64_t rows,
                                       int64_t d, acc_of<T> inv_d, acc_of<T> eps) {
  using C = acc_of<T>;
  __shared__ double scratch[32];
  const int64_t r = static_cast<int64_t>(blockIdx.x) * (blockDim.x / TPR) + threadIdx.x / TPR;
  const int t = threadIdx.x % TPR;
  if (TPR == 32 && r >= rows) return;  // a whole warp leaves together
  const T* xr = x + r * d;
  const T* gr = g + r * d;
  double ss = 0;
  for (int64_t j = t; j < d; j += TPR) {
    const double v = static_cast<double>(load(xr[j]));
    ss = __dadd_rn(ss, __dmul_rn(v, v));
  }
  ss = row_sum<TPR>(ss, scratch);
  const C rr = div_rn(C(1), sqrt_rn(add_rn(mul_rn(inv_d, static_cast<C>(ss)), eps)));
  if (r_out && t == 0) r_out[r] = rr;
  if (!dx) return;
  double macc = 0;
  for (int64_t j = t; j < d; j += TPR) {
    const C gw = mul_rn(load(gr[j]), load(w[j]));
    macc = __dadd_rn(macc, static_cast<double>(mul_rn(gw, load(xr[j]))));
  }
  macc = row_sum<TPR>(macc, scratch);
  const C m = static_cast<C>(__ddiv_rn(macc, static_cast<double>(d)));
  const C r3m = mul_rn(mul_rn(mul_rn(rr, rr), rr), m);
  T* o = dx + r * d;
  for (int64_t j = t; j < d; j += TPR) {
    const C gw = mul_rn(load(gr[j]), load(w[j]));
    o[j] = store<T>(sub_rn(mul_rn(gw, rr), mul_rn(load(xr[j]), r3m)));
  }
}

constexpr int64_t kDwChunk = 256;  // rows per partial sum of dw

// partial[c, j] = Σ_{rows of chunk c} g·(x·r) in f64; grid (⌈d/256⌉, chunks).
template <class T>
__global__ void rms_norm_dw_partial(const T* x, const T* g, const acc_of<T>* r_of, double* partial, int64_t rows,
                                    int64_t d) {
  using C = acc_of<T>;
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= d) return;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * kDwChunk;
  const int64_t r1 = r0 + kDwChunk < rows ? r0 + kDwChunk : rows;
  double acc = 0;
  for (int64_t r = r0; r < r1; ++r)
    acc = __dadd_rn(acc, static_cast<double>(mul_rn(load(g[r * d + j]), mul_rn(load(x[r * d + j]), r_of[r]))));
  partial[static_cast<int64_t>(blockIdx.y) * d + j] = acc;
}

template <class T>
__global__ void rms_norm_dw_final(const double* partial, T* dw, int64_t chunks, int64_t d) {
  using C = acc_of<T>;
  ARQ_GRID_STRIDE(j, d) {
    double acc = 0;
    for (int64_t c = 0; c < chunks; ++c) acc = __dadd_rn(acc, partial[c * d + j]);
    dw[j] = store<T>(static_cast<C>(acc));
  }
}

// p − lr·sign(d) as cuda_unary.cu's Sign and AffineF (lr·s + 0, rounded to T) and Sub compute it.
template <class T>
__global__ void sign_step_kernel(T* p, const T* d, acc_of<T> s, int64_t n) {
  using C = acc_of<T>;
  ARQ_GRID_STRIDE(i, n) {
    const C v = load(d[i]);
    const C sg = is_nan(v) ? v : static_cast<C>((v > C(0)) - (v < C(0)));
    const C step = rt<T>(add_rn(mul_rn(s, sg), C(0)));
    p[i] = store<T>(sub_rn(load(p[i]), step));
  }
}

class CudaFused final : public FusedKernels {
 public:
  void swiglu(const Tensor& gate, const Tensor& up, Tensor& h) override {
    dispatch_float(gate.dtype(), "swiglu", "cuda", [&](auto tag) {
      using T = dev_t<decltype(tag)>;
      const int64_t n = h.numel();
      swiglu_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, stream_for(h.device())>>>(
          static_cast<const T*>(gate.data_ptr()), static_cast<const T*>(up.data_ptr()), static_cast<T*>(h.data_ptr()), n);
      CUDA_CHECK_LAUNCH();
    });
  }
  void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& g, Tensor& dgate, Tensor& dup) override {
    dispatch_float(gate.dtype(), "swiglu_backward", "cuda", [&](auto tag) {
      using T = dev_t<decltype(tag)>;
      const int64_t n = gate.numel();
      swiglu_backward_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, stream_for(gate.device())>>>(
          static_cast<const T*>(gate.data_ptr()), static_cast<const T*>(up.data_ptr()),
          static_cast<const T*>(g.data_ptr()), static_cast<T*>(dgate.data_ptr()), static_cast<T*>(dup.data_ptr()), n);
      CUDA_CHECK_LAUNCH();
    });
  }
  void rms_norm_backward(const Tensor& x, const Tensor& w, const Tensor& g, double eps, Tensor& dx, Tensor& dw) override {
    dispatch_float(x.dtype(), "rms_norm_backward", "cuda", [&](auto tag) {
      using T = dev_t<decltype(tag)>;
      using C = acc_of<T>;
      const int64_t rows = x.size(0), d = x.size(1);
      cudaStream_t s = stream_for(x.device());
      const T* px = static_cast<const T*>(x.data_ptr());
      const T* pw = static_cast<const T*>(w.data_ptr());
      const T* pg = static_cast<const T*>(g.data_ptr());
      T* pdx = dx.defined() ? static_cast<T*>(dx.data_ptr()) : nullptr;
      Tensor r_of;  // [rows] r per row, only for dw
      if (dw.defined()) r_of = Tensor::empty({rows}, x.dtype() == DType::f64 ? DType::f64 : DType::f32, x.device());
      C* pr = dw.defined() ? static_cast<C*>(r_of.data_ptr()) : nullptr;
      const C inv_d = static_cast<C>(1 / static_cast<double>(d)), eps_c = static_cast<C>(eps);
      if (d <= 1024) {
        constexpr int TPR = 32, kRows = kThreads / TPR;
        const unsigned grid = static_cast<unsigned>((rows + kRows - 1) / kRows);
        rms_norm_backward_rows<T, TPR><<<grid, kThreads, 0, s>>>(px, pw, pg, pdx, pr, rows, d, inv_d, eps_c);
      } else {
        rms_norm_backward_rows<T, kThreads><<<static_cast<unsigned>(rows), kThreads, 0, s>>>(px, pw, pg, pdx, pr, rows, d,
                                                                                             inv_d, eps_c);
      }
      CUDA_CHECK_LAUNCH();
      if (!dw.defined()) return;
      const int64_t chunks = (rows + kDwChunk - 1) / kDwChunk;
      ARQ_CHECK(chunks <= 65535, UnsupportedError, "[rms_norm_backward] dw over ", rows, " rows (more than ",
                65535 * kDwChunk, ") is not implemented on cuda; x ", x.str());
      Tensor partial = Tensor::empty({chunks, d}, DType::f64, x.device());  // [chunks, d]
      double* pp = static_cast<double*>(partial.data_ptr());
      const dim3 grid(static_cast<unsigned>((d + kThreads - 1) / kThreads), static_cast<unsigned>(chunks));
      rms_norm_dw_partial<T><<<grid, kThreads, 0, s>>>(px, pg, pr, pp, rows, d);
      CUDA_CHECK_LAUNCH();
      rms_norm_dw_final<T><<<blocks_for(d, kThreads), kThreads, 0, s>>>(pp, static_cast<T*>(dw.data_ptr()), chunks, d);
      CUDA_CHECK_LAUNCH();
    });
  }
  void sign_step(Tensor& p, const Tensor& d, double lr) override {
    dispatch_float(p.dtype(), "sign_sgd_step_", "cuda", [&](auto tag) {
      using T = dev_t<decltype(tag)>;
      const int64_t n = p.numel();
      sign_step_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, stream_for(p.device())>>>(
          static_cast<T*>(p.data_ptr()), static_cast<const T*>(d.data_ptr()), static_cast<acc_of<T>>(lr), n);
      CUDA_CHECK_LAUNCH();
    });
  }
};

}  // namespace

}  // namespace arq::cuda

namespace arq {
FusedKernels& cuda_fused_kernels() {
  static cuda::CudaFused k;
  cuda::init_allocator();
  return k;
}
}  // namespace arq
