// CUDA unary elementwise ops, mirroring kernels/cpu/elementwise.cpp unary_typed: compute in
// acc_of<T> (f32 for 16-bit floats), round once to T on store.
#include "kernels/cuda/cuda_device.cuh"

namespace arq::cuda {

namespace {

// libm by compute type (CUDA's float functions are ≤ 2 ulp, powf ≤ 4 ulp; sqrt and division are
// IEEE-exact because the build does not use --use_fast_math).
__device__ __forceinline__ float m_exp(float v) { return expf(v); }
__device__ __forceinline__ double m_exp(double v) { return exp(v); }
__device__ __forceinline__ float m_log(float v) { return logf(v); }
__device__ __forceinline__ double m_log(double v) { return log(v); }
__device__ __forceinline__ float m_sqrt(float v) { return __fsqrt_rn(v); }
__device__ __forceinline__ double m_sqrt(double v) { return __dsqrt_rn(v); }
__device__ __forceinline__ float m_tanh(float v) { return tanhf(v); }
__device__ __forceinline__ double m_tanh(double v) { return tanh(v); }
__device__ __forceinline__ float m_rint(float v) { return rintf(v); }  // ties to even
__device__ __forceinline__ double m_rint(double v) { return rint(v); }
__device__ __forceinline__ float m_floor(float v) { return floorf(v); }
__device__ __forceinline__ double m_floor(double v) { return floor(v); }
__device__ __forceinline__ float m_pow(float a, float b) { return powf(a, b); }
__device__ __forceinline__ double m_pow(double a, double b) { return pow(a, b); }
template <class C> __device__ __forceinline__ C m_div(C a, C b) { return a / b; }
__device__ __forceinline__ float m_div(float a, float b) { return __fdiv_rn(a, b); }
__device__ __forceinline__ double m_div(double a, double b) { return __ddiv_rn(a, b); }

// One functor per op; C is the compute type.
template <class C> struct Neg { __device__ C operator()(C v) const { return C(-v); } };
template <class C> struct Abs { __device__ C operator()(C v) const { return v < C(0) ? C(-v) : v; } };
template <class C> struct Sign {
  __device__ C operator()(C v) const {
    if (is_nan(v)) return v;
    return static_cast<C>((v > C(0)) - (v < C(0)));
  }
};
template <class C> struct ClampF {
  C lo, hi;
  __device__ C operator()(C v) const { return v != v ? v : (v < lo ? lo : (v > hi ? hi : v)); }
};
struct ClampI {
  double lo, hi;  // ceil(p0), floor(p1)
  __device__ int64_t operator()(int64_t v) const {
    return static_cast<int64_t>(fmin(fmax(static_cast<double>(v), lo), hi));
  }
};
template <class C> struct AffineF {
  C s, t;
  __device__ C operator()(C v) const { return add_rn(mul_rn(s, v), t); }
};
struct AffineI {
  double s, t;
  __device__ int64_t operator()(int64_t v) const {
    return static_cast<int64_t>(rint(__dadd_rn(__dmul_rn(s, static_cast<double>(v)), t)));
  }
};
template <class C> struct Exp { __device__ C operator()(C v) const { return m_exp(v); } };
template <class C> struct Log { __device__ C operator()(C v) const { return m_log(v); } };
template <class C> struct Sqrt { __device__ C operator()(C v) const { return m_sqrt(v); } };
template <class C> struct Rsqrt { __device__ C operator()(C v) const { return m_div(C(1), m_sqrt(v)); } };
template <class C> struct Sigmoid {
  __device__ C operator()(C v) const { return m_div(C(1), add_rn(C(1), m_exp(C(-v)))); }
};
template <class C> struct Silu {
  __device__ C operator()(C v) const { return m_div(v, add_rn(C(1), m_exp(C(-v)))); }
};
template <class C> struct Tanh { __device__ C operator()(C v) const { return m_tanh(v); } };
template <class C> struct Round { __device__ C operator()(C v) const { return m_rint(v); } };
template <class C> struct Floor { __device__ C operator()(C v) const { return m_floor(v); } };
template <class C> struct Square { __device__ C operator()(C v) const { return mul_rn(v, v); } };
template <class C> struct Pow {
  C e;
  __device__ C operator()(C v) const { return m_pow(v, e); }
};

template <class T, class F>
__global__ void unary_kernel(const T* x, T* out, Descs<2> L, int64_t n, F f) {
  ARQ_GRID_STRIDE(i, n) {
    int64_t off[2];
    offsets_of(L, i, off);
    out[off[0]] = store<T>(f(load(x[off[1]])));
  }
}

// Contiguous operands: V elements per step through aligned vector loads; the tail elementwise.
template <class T, int V, class F>
__global__ void unary_vec_kernel(const T* x, T* out, int64_t n, F f) {
  const int64_t nv = n / V;
  ARQ_GRID_STRIDE(i, nv) {
    const Vec<T, V> a = reinterpret_cast<const Vec<T, V>*>(x)[i];
    Vec<T, V> r;
#pragma unroll
    for (int k = 0; k < V; ++k) r.v[k] = store<T>(f(load(a.v[k])));
    reinterpret_cast<Vec<T, V>*>(out)[i] = r;
  }
  ARQ_GRID_STRIDE(i, n - nv * V) out[nv * V + i] = store<T>(f(load(x[nv * V + i])));
}

template <class Host>
void unary_typed(UnaryOp op, const Tensor& x, Tensor& out, double p0, double p1) {
  using T = dev_t<Host>;
  using C = acc_of<T>;
  const int64_t n = out.numel();
  if (n == 0) return;
  const Descs<2> L = make_descs<2>(out.shape(), {&out, &x});
  cudaStream_t s = stream_for(out.device());
  auto run = [&](auto f) {
    const T* px = static_cast<const T*>(x.data_ptr());
    T* po = static_cast<T*>(out.data_ptr());
    constexpr int V = 16 / sizeof(T);
    if (L.contiguous && aligned_to(px, 16) && aligned_to(po, 16))
      unary_vec_kernel<T, V><<<blocks_for(n / V + 1, kThreads), kThreads, 0, s>>>(px, po, n, f);
    else
      unary_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, s>>>(px, po, L, n, f);
    CUDA_CHECK_LAUNCH();
  };
  switch (op) {
    case UnaryOp::neg: run(Neg<C>{}); return;
    case UnaryOp::abs: run(Abs<C>{}); return;
    case UnaryOp::sign: run(Sign<C>{}); return;
    case UnaryOp::clamp:
      if constexpr (std::is_floating_point_v<C>) run(ClampF<C>{static_cast<C>(p0), static_cast<C>(p1)});
      else run(ClampI{std::ceil(p0), std::floor(p1)});
      return;
    case UnaryOp::affine:
      if constexpr (std::is_floating_point_v<C>) run(AffineF<C>{static_cast<C>(p0), static_cast<C>(p1)});
      else run(AffineI{p0, p1});
      return;
    default: break;
  }
  if constexpr (std::is_floating_point_v<C>) {
    switch (op) {
      case UnaryOp::exp: run(Exp<C>{}); return;
      case UnaryOp::log: run(Log<C>{}); return;
      case UnaryOp::sqrt: run(Sqrt<C>{}); return;
      case UnaryOp::rsqrt: run(Rsqrt<C>{}); return;
      case UnaryOp::sigmoid: run(Sigmoid<C>{}); return;
      case UnaryOp::silu: run(Silu<C>{}); return;
      case UnaryOp::tanh: run(Tanh<C>{}); return;
      case UnaryOp::round: run(Round<C>{}); return;
      case UnaryOp::floor: run(Floor<C>{}); return;
      case UnaryOp::pow:
        if (p0 == 2.0) run(Square<C>{});
        else run(Pow<C>{static_cast<C>(p0)});
        return;
      default: break;
    }
  }
  throw UnsupportedError(cat("[", unary_name(op), "] not implemented on cuda for ", x.str()));
}

}  // namespace

void unary(UnaryOp op, const Tensor& x, Tensor& out, double p0, double p1) {
  dispatch_dtype(x.dtype(), [&](auto tag) { unary_typed<decltype(tag)>(op, x, out, p0, p1); });
}

}  // namespace arq::cuda
