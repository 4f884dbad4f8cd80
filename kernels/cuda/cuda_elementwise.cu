// CUDA copy/cast and fill over arbitrary strided views.
#include <cstring>

#include "kernels/cuda/cuda_device.cuh"

namespace arq::cuda {

namespace {

template <class S, class D>
__global__ void copy_kernel(const S* src, D* dst, Descs<2> L, int64_t n) {
  ARQ_GRID_STRIDE(i, n) {
    int64_t off[2];
    offsets_of(L, i, off);
    dst[off[0]] = dconvert<D>(src[off[1]]);
  }
}

// Contiguous cast: V elements per step (16-byte loads or stores of the wider type).
template <class S, class D, int V>
__global__ void copy_vec_kernel(const S* src, D* dst, int64_t n) {
  const int64_t nv = n / V;
  ARQ_GRID_STRIDE(i, nv) {
    const Vec<S, V> a = reinterpret_cast<const Vec<S, V>*>(src)[i];
    Vec<D, V> r;
#pragma unroll
    for (int k = 0; k < V; ++k) r.v[k] = dconvert<D>(a.v[k]);
    reinterpret_cast<Vec<D, V>*>(dst)[i] = r;
  }
  ARQ_GRID_STRIDE(i, n - nv * V) dst[nv * V + i] = dconvert<D>(src[nv * V + i]);
}

template <class D>
__global__ void fill_kernel(D* dst, Descs<1> L, D v, int64_t n) {
  ARQ_GRID_STRIDE(i, n) {
    int64_t off[1];
    offsets_of(L, i, off);
    dst[off[0]] = v;
  }
}

}  // namespace

void copy(const Tensor& src, Tensor& dst) {
  const Device dev = dst.device().is_cuda() ? dst.device() : src.device();
  const bool same_layout = src.dtype() == dst.dtype() && src.is_contiguous() && dst.is_contiguous();
  if (src.device() != dst.device()) {
    // Host <-> device (or device <-> device): bytes move as they are; the caller made both
    // contiguous and of one dtype.
    ARQ_CHECK(same_layout, DeviceError, "[copy] cross-device copy needs contiguous tensors of one dtype: ", src.str(),
              " -> ", dst.str());
    if (dst.numel() == 0) return;
    // cuda:A -> cuda:B runs on B's stream, which does not wait for the kernels on A's stream that
    // may still be writing src: finish A's work first.
    if (src.device().is_cuda() && dst.device().is_cuda()) CUDA_CHECK(cudaStreamSynchronize(stream_for(src.device())));
    cudaStream_t s = stream_for(dev);
    CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), dst.nbytes(), cudaMemcpyDefault, s));
    CUDA_CHECK(cudaStreamSynchronize(s));
    return;
  }
  if (dst.numel() == 0) return;
  cudaStream_t s = stream_for(dev);
  if (same_layout) {
    CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), dst.nbytes(), cudaMemcpyDeviceToDevice, s));
    return;
  }
  const Descs<2> L = make_descs<2>(dst.shape(), {&dst, &src});
  const int64_t n = dst.numel();
  dispatch_dtype(src.dtype(), [&](auto st) {
    using S = dev_t<decltype(st)>;
    dispatch_dtype(dst.dtype(), [&](auto dt) {
      using D = dev_t<decltype(dt)>;
      const S* ps = static_cast<const S*>(src.data_ptr());
      D* pd = static_cast<D*>(dst.data_ptr());
      constexpr int V = 16 / (sizeof(S) > sizeof(D) ? sizeof(S) : sizeof(D));
      if (L.contiguous && aligned_to(ps, V * sizeof(S)) && aligned_to(pd, V * sizeof(D)))
        copy_vec_kernel<S, D, V><<<blocks_for(n / V + 1, kThreads), kThreads, 0, s>>>(ps, pd, n);
      else
        copy_kernel<S, D><<<blocks_for(n, kThreads), kThreads, 0, s>>>(ps, pd, L, n);
      CUDA_CHECK_LAUNCH();
    });
  });
}

void fill(Tensor& dst, double value) {
  if (dst.numel() == 0) return;
  cudaStream_t s = stream_for(dst.device());
  const Descs<1> L = make_descs<1>(dst.shape(), {&dst});
  const int64_t n = dst.numel();
  dispatch_dtype(dst.dtype(), [&](auto dt) {
    using T = decltype(dt);
    using D = dev_t<T>;
    const T hv = convert<T>(value);  // host-side exact rounding, then reinterpret
    D v;
    static_assert(sizeof(T) == sizeof(D));
    std::memcpy(static_cast<void*>(&v), &hv, sizeof(T));
    fill_kernel<D><<<blocks_for(n, kThreads), kThreads, 0, s>>>(static_cast<D*>(dst.data_ptr()), L, v, n);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace arq::cuda
