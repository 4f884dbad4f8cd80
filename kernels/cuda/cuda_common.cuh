// Shared by the CUDA kernel files: checked calls, the per-device stream and cuBLAS handle.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "engine/backend.h"

#define CUDA_CHECK(stmt)                                                                          \
  do {                                                                                            \
    cudaError_t err__ = (stmt);                                                                   \
    if (err__ != cudaSuccess)                                                                     \
      throw ::arq::DeviceError(::arq::cat("CUDA error ", cudaGetErrorName(err__), " (",           \
                                          cudaGetErrorString(err__), ") in `", #stmt, "` at ",    \
                                          __FILE__, ":", __LINE__));                              \
  } while (0)

#define CUBLAS_CHECK(stmt)                                                                        \
  do {                                                                                            \
    cublasStatus_t st__ = (stmt);                                                                 \
    if (st__ != CUBLAS_STATUS_SUCCESS)                                                            \
      throw ::arq::DeviceError(::arq::cat("cuBLAS error ", cublasGetStatusName(st__), " in `",    \
                                          #stmt, "` at ", __FILE__, ":", __LINE__));              \
  } while (0)

#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

namespace arq::cuda {

// Make `d` current and return its stream (one non-blocking stream per device).
cudaStream_t stream_for(const Device& d);
cublasHandle_t cublas_for(const Device& d);
// Install the caching allocator (idempotent).
void init_allocator();

inline int blocks_for(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  return static_cast<int>(b < 1 ? 1 : (b > 65535 * 8 ? 65535 * 8 : b));
}

// Strided element addressing for kernels: up to 8 dims, passed by value.
struct StridedDesc {
  int nd;
  int64_t shape[8];
  int64_t strides[8];
};
StridedDesc make_desc(const Tensor& t);

__device__ __forceinline__ int64_t strided_offset(const StridedDesc& d, int64_t i) {
  int64_t off = 0;
  for (int k = d.nd - 1; k >= 0; --k) {
    const int64_t s = d.shape[k];
    off += (i % s) * d.strides[k];
    i /= s;
  }
  return off;
}

// cuda_elementwise.cu
void copy(const Tensor& src, Tensor& dst);
void fill(Tensor& dst, double value);
// cuda_gemm.cu
void matmul(const Tensor& a, const Tensor& b, Tensor& out);
void set_allow_tf32(bool allow);

}  // namespace arq::cuda
