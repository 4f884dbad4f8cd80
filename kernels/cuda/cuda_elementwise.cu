// CUDA copy/cast and fill over arbitrary strided views.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/cuda_common.cuh"

namespace arq::cuda {

StridedDesc make_desc(const Tensor& t) {
  ARQ_CHECK(t.dim() <= 8, UnsupportedError, "cuda kernels support at most 8 dims, got ", t.str());
  StridedDesc d{};
  d.nd = static_cast<int>(t.dim());
  for (int i = 0; i < d.nd; ++i) {
    d.shape[i] = t.size(i);
    d.strides[i] = t.stride(i);
  }
  return d;
}

namespace {

// Device-side element types: bf16/f16 map to CUDA's own types, with f32 as the conversion hub.
template <class T> struct Dev { using type = T; };
template <> struct Dev<Half> { using type = __half; };
template <> struct Dev<BFloat16> { using type = __nv_bfloat16; };

template <class T> __device__ __forceinline__ double to_f64(T v) { return static_cast<double>(v); }
template <> __device__ __forceinline__ double to_f64(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ double to_f64(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class T> __device__ __forceinline__ T from_f64(double v) {
  if constexpr (std::is_integral_v<T>) {
    if (v != v) return T(0);
    const double lo = static_cast<double>(std::numeric_limits<T>::min());
    const double hi = static_cast<double>(std::numeric_limits<T>::max());
    return v <= lo ? std::numeric_limits<T>::min() : (v >= hi ? std::numeric_limits<T>::max() : static_cast<T>(v));
  } else {
    return static_cast<T>(v);
  }
}
template <> __device__ __forceinline__ __half from_f64(double v) { return __double2half(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f64(double v) { return __double2bfloat16(v); }

template <class S, class D>
__global__ void copy_kernel(const S* src, StridedDesc sd, D* dst, StridedDesc dd, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    dst[strided_offset(dd, i)] = from_f64<D>(to_f64(src[strided_offset(sd, i)]));
  }
}

template <class D>
__global__ void fill_kernel(D* dst, StridedDesc dd, D v, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[strided_offset(dd, i)] = v;
}

}  // namespace

void copy(const Tensor& src, Tensor& dst) {
  const Device dev = dst.device().is_cuda() ? dst.device() : src.device();
  cudaStream_t s = stream_for(dev);
  const bool same_layout = src.dtype() == dst.dtype() && src.is_contiguous() && dst.is_contiguous();
  if (src.device() != dst.device()) {
    // Host <-> device (or device <-> device): bytes move as they are; the caller made both
    // contiguous and of one dtype.
    ARQ_CHECK(same_layout, DeviceError, "[copy] cross-device copy needs contiguous tensors of one dtype: ", src.str(),
              " -> ", dst.str());
    CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), dst.nbytes(), cudaMemcpyDefault, s));
    CUDA_CHECK(cudaStreamSynchronize(s));
    return;
  }
  if (dst.numel() == 0) return;
  if (same_layout) {
    CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), dst.nbytes(), cudaMemcpyDeviceToDevice, s));
    return;
  }
  const StridedDesc sd = make_desc(src), dd = make_desc(dst);
  const int64_t n = dst.numel();
  dispatch_dtype(src.dtype(), [&](auto st) {
    using S = typename Dev<decltype(st)>::type;
    dispatch_dtype(dst.dtype(), [&](auto dt) {
      using D = typename Dev<decltype(dt)>::type;
      copy_kernel<S, D><<<blocks_for(n, 256), 256, 0, s>>>(static_cast<const S*>(src.data_ptr()), sd,
                                                          static_cast<D*>(dst.data_ptr()), dd, n);
      CUDA_CHECK_LAUNCH();
    });
  });
}

void fill(Tensor& dst, double value) {
  if (dst.numel() == 0) return;
  cudaStream_t s = stream_for(dst.device());
  const StridedDesc dd = make_desc(dst);
  const int64_t n = dst.numel();
  dispatch_dtype(dst.dtype(), [&](auto dt) {
    using T = decltype(dt);
    using D = typename Dev<T>::type;
    const T hv = convert<T>(value);  // host-side exact rounding, then reinterpret
    D v;
    static_assert(sizeof(T) == sizeof(D));
    std::memcpy(static_cast<void*>(&v), &hv, sizeof(T));
    fill_kernel<D><<<blocks_for(n, 256), 256, 0, s>>>(static_cast<D*>(dst.data_ptr()), dd, v, n);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace arq::cuda
