// CUDA binary elementwise ops and where, mirroring kernels/cpu/elementwise.cpp binary_typed:
// operands are already expanded to out's shape (stride-0 broadcast views allowed).
#include "kernels/cuda/cuda_device.cuh"

namespace arq::cuda {

namespace {

template <class C> __device__ __forceinline__ C b_pow(C a, C b) {
  if constexpr (std::is_same_v<C, float>) return powf(a, b);
  else return pow(a, b);
}

// Arithmetic: `+ - * /` in a single IEEE operation each, so no contraction can occur.
template <class C> struct Add { __device__ C operator()(C x, C y) const { return C(x + y); } };
template <class C> struct Sub { __device__ C operator()(C x, C y) const { return C(x - y); } };
template <class C> struct Mul { __device__ C operator()(C x, C y) const { return C(x * y); } };
template <class C> struct Div {
  __device__ C operator()(C x, C y) const {
    if constexpr (std::is_floating_point_v<C>) return x / y;
    else return y == 0 ? C(0) : C(x / y);  // integer division by zero gives 0, as on the CPU
  }
};
// NaN-propagating: x + y is NaN whenever either is.
template <class C> struct Minimum {
  __device__ C operator()(C x, C y) const { return (is_nan(x) || is_nan(y)) ? C(x + y) : (y < x ? y : x); }
};
template <class C> struct Maximum {
  __device__ C operator()(C x, C y) const { return (is_nan(x) || is_nan(y)) ? C(x + y) : (y > x ? y : x); }
};
template <class C> struct PowB { __device__ C operator()(C x, C y) const { return b_pow(x, y); } };
template <class C> struct Eq { __device__ bool operator()(C x, C y) const { return x == y; } };
template <class C> struct Ne { __device__ bool operator()(C x, C y) const { return x != y; } };
template <class C> struct Lt { __device__ bool operator()(C x, C y) const { return x < y; } };
template <class C> struct Le { __device__ bool operator()(C x, C y) const { return x <= y; } };
template <class C> struct Gt { __device__ bool operator()(C x, C y) const { return x > y; } };
template <class C> struct Ge { __device__ bool operator()(C x, C y) const { return x >= y; } };

template <class T, class F>
__global__ void binary_kernel(const T* a, const T* b, T* out, Descs<3> L, int64_t n, F f) {
  ARQ_GRID_STRIDE(i, n) {
    int64_t off[3];
    offsets_of(L, i, off);
    out[off[0]] = store<T>(f(load(a[off[1]]), load(b[off[2]])));
  }
}

template <class T, class F>
__global__ void compare_kernel(const T* a, const T* b, uint8_t* out, Descs<3> L, int64_t n, F f) {
  ARQ_GRID_STRIDE(i, n) {
    int64_t off[3];
    offsets_of(L, i, off);
    out[off[0]] = f(load(a[off[1]]), load(b[off[2]])) ? 1 : 0;
  }
}

// Contiguous operands: V elements per step through aligned vector loads (O is T, or u8 for
// comparisons); the tail elementwise.
template <class T, class O, int V, class F>
__device__ __forceinline__ O binary_result(F f, T a, T b) {
  if constexpr (std::is_same_v<decltype(f(load(a), load(b))), bool>) return f(load(a), load(b)) ? 1 : 0;
  else return store<T>(f(load(a), load(b)));
}

template <class T, class O, int V, class F>
__global__ void binary_vec_kernel(const T* a, const T* b, O* out, int64_t n, F f) {
  const int64_t nv = n / V;
  ARQ_GRID_STRIDE(i, nv) {
    const Vec<T, V> x = reinterpret_cast<const Vec<T, V>*>(a)[i];
    const Vec<T, V> y = reinterpret_cast<const Vec<T, V>*>(b)[i];
    Vec<O, V> r;
#pragma unroll
    for (int k = 0; k < V; ++k) r.v[k] = binary_result<T, O, V>(f, x.v[k], y.v[k]);
    reinterpret_cast<Vec<O, V>*>(out)[i] = r;
  }
  ARQ_GRID_STRIDE(i, n - nv * V) out[nv * V + i] = binary_result<T, O, V>(f, a[nv * V + i], b[nv * V + i]);
}

// Broadcast operands whose innermost dim is contiguous (stride 1) or broadcast (stride 0), with
// every row start aligned: V elements of one row per step, one coordinate computation per step.
template <class T, class O, int V, class F>
__global__ void binary_rowvec_kernel(const T* a, const T* b, O* out, Descs<3> L, int64_t n, F f) {
  const int last = L.nd - 1;
  const bool a_rep = L.strides[1][last] == 0, b_rep = L.strides[2][last] == 0;
  ARQ_GRID_STRIDE(i, n / V) {
    int64_t off[3];
    offsets_of(L, i * V, off);
    Vec<T, V> x, y;
    if (a_rep) {
#pragma unroll
      for (int k = 0; k < V; ++k) x.v[k] = a[off[1]];
    } else {
      x = *reinterpret_cast<const Vec<T, V>*>(a + off[1]);
    }
    if (b_rep) {
#pragma unroll
      for (int k = 0; k < V; ++k) y.v[k] = b[off[2]];
    } else {
      y = *reinterpret_cast<const Vec<T, V>*>(b + off[2]);
    }
    Vec<O, V> r;
#pragma unroll
    for (int k = 0; k < V; ++k) r.v[k] = binary_result<T, O, V>(f, x.v[k], y.v[k]);
    *reinterpret_cast<Vec<O, V>*>(out + off[0]) = r;
  }
}

// Whether binary_rowvec_kernel applies: inner dim a multiple of V, out dense along it, a and b
// dense or broadcast along it, and every vector-read row start V-aligned.
template <class T, class O, int V>
bool rowvec_ok(const Descs<3>& L, const void* pa, const void* pb, const void* po) {
  const int last = L.nd - 1;
  if (L.shape[last] % V != 0 || L.strides[0][last] != 1) return false;
  for (int k = 1; k < 3; ++k)
    if (L.strides[k][last] != 0 && L.strides[k][last] != 1) return false;
  // Operands read as vectors (inner stride 1) need V-aligned row starts; broadcast ones are read
  // one element per step and need nothing.
  for (int k = 0; k < 3; ++k)
    for (int d = 0; d < last && L.strides[k][last] == 1; ++d)
      if (L.strides[k][d] % V != 0) return false;
  return (L.strides[1][last] == 0 || aligned_to(pa, V * sizeof(T))) &&
         (L.strides[2][last] == 0 || aligned_to(pb, V * sizeof(T))) && aligned_to(po, V * sizeof(O));
}

template <class T>
__global__ void where_kernel(const uint8_t* c, const T* a, const T* b, T* out, Descs<4> L, int64_t n) {
  ARQ_GRID_STRIDE(i, n) {
    int64_t off[4];
    offsets_of(L, i, off);
    out[off[0]] = c[off[1]] ? a[off[2]] : b[off[3]];
  }
}

template <class Host>
void binary_typed(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) {
  using T = dev_t<Host>;
  using C = acc_of<T>;
  const int64_t n = out.numel();
  if (n == 0) return;
  const Descs<3> L = make_descs<3>(out.shape(), {&out, &a, &b});
  cudaStream_t s = stream_for(out.device());
  const T* pa = static_cast<const T*>(a.data_ptr());
  const T* pb = static_cast<const T*>(b.data_ptr());
  const int grid = blocks_for(n, kThreads);
  constexpr int V = 16 / sizeof(T);
  const bool vec = L.contiguous && aligned_to(pa, 16) && aligned_to(pb, 16) && aligned_to(out.data_ptr(), 16);
  const int vgrid = blocks_for(n / V + 1, kThreads);
  auto run = [&](auto f) {
    T* po = static_cast<T*>(out.data_ptr());
    if (vec) binary_vec_kernel<T, T, V><<<vgrid, kThreads, 0, s>>>(pa, pb, po, n, f);
    else if (rowvec_ok<T, T, V>(L, pa, pb, po)) binary_rowvec_kernel<T, T, V><<<vgrid, kThreads, 0, s>>>(pa, pb, po, L, n, f);
    else binary_kernel<T><<<grid, kThreads, 0, s>>>(pa, pb, po, L, n, f);
    CUDA_CHECK_LAUNCH();
  };
  auto cmp = [&](auto f) {
    uint8_t* po = static_cast<uint8_t*>(out.data_ptr());
    if (vec) binary_vec_kernel<T, uint8_t, V><<<vgrid, kThreads, 0, s>>>(pa, pb, po, n, f);
    else if (rowvec_ok<T, uint8_t, V>(L, pa, pb, po))
      binary_rowvec_kernel<T, uint8_t, V><<<vgrid, kThreads, 0, s>>>(pa, pb, po, L, n, f);
    else compare_kernel<T><<<grid, kThreads, 0, s>>>(pa, pb, po, L, n, f);
    CUDA_CHECK_LAUNCH();
  };
  switch (op) {
    case BinaryOp::add: run(Add<C>{}); return;
    case BinaryOp::sub: run(Sub<C>{}); return;
    case BinaryOp::mul: run(Mul<C>{}); return;
    case BinaryOp::div: run(Div<C>{}); return;
    case BinaryOp::minimum: run(Minimum<C>{}); return;
    case BinaryOp::maximum: run(Maximum<C>{}); return;
    case BinaryOp::pow:
      if constexpr (std::is_floating_point_v<C>) {
        run(PowB<C>{});
        return;
      }
      break;
    case BinaryOp::eq: cmp(Eq<C>{}); return;
    case BinaryOp::ne: cmp(Ne<C>{}); return;
    case BinaryOp::lt: cmp(Lt<C>{}); return;
    case BinaryOp::le: cmp(Le<C>{}); return;
    case BinaryOp::gt: cmp(Gt<C>{}); return;
    case BinaryOp::ge: cmp(Ge<C>{}); return;
  }
  throw UnsupportedError(cat("[", binary_name(op), "] not implemented on cuda for ", a.str()));
}

}  // namespace

void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) {
  dispatch_dtype(a.dtype(), [&](auto tag) { binary_typed<decltype(tag)>(op, a, b, out); });
}

void where(const Tensor& cond, const Tensor& a, const Tensor& b, Tensor& out) {
  const int64_t n = out.numel();
  if (n == 0) return;
  const Descs<4> L = make_descs<4>(out.shape(), {&out, &cond, &a, &b});
  cudaStream_t s = stream_for(out.device());
  dispatch_dtype(a.dtype(), [&](auto tag) {
    using T = dev_t<decltype(tag)>;
    where_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, s>>>(
        static_cast<const uint8_t*>(cond.data_ptr()), static_cast<const T*>(a.data_ptr()),
        static_cast<const T*>(b.data_ptr()), static_cast<T*>(out.data_ptr()), L, n);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace arq::cuda
