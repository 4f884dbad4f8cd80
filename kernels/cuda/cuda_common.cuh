// Shared by the CUDA kernel files: checked calls, the per-device stream and cuBLAS handle.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "engine/backend.h"

// On failure the runtime's last error is cleared before the throw: a caught, non-sticky error
// (a bad device index, an allocation) must not resurface in the next launch check
// (cudaGetLastError) as a failure of an unrelated kernel.
#define CUDA_CHECK(stmt)                                                                          \
  do {                                                                                            \
    cudaError_t err__ = (stmt);                                                                   \
    if (err__ != cudaSuccess) {                                                                   \
      (void)cudaGetLastError();                                                                   \
      throw ::arq::DeviceError(::arq::cat("CUDA error ", cudaGetErrorName(err__), " (",           \
                                          cudaGetErrorString(err__), ") in `", #stmt, "` at ",    \
                                          __FILE__, ":", __LINE__));                              \
    }                                                                                             \
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

// Strided addressing of kernel operands: Descs<N> / make_descs / offsets_of in cuda_device.cuh.

// One function per Backend method (engine/backend.h), one file per op family.
// cuda_elementwise.cu
void copy(const Tensor& src, Tensor& dst);
void fill(Tensor& dst, double value);
// cuda_unary.cu
void unary(UnaryOp op, const Tensor& x, Tensor& out, double p0, double p1);
// cuda_binary.cu
void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out);
void where(const Tensor& cond, const Tensor& a, const Tensor& b, Tensor& out);
// cuda_reduce.cu
void reduce(ReduceOp op, const Tensor& x, int64_t axis, Tensor& out);
// cuda_softmax_norm.cu
void softmax(const Tensor& x, Tensor& out, bool log);
void rms_norm(const Tensor& x, const Tensor& weight, double eps, Tensor& out);
// cuda_rope.cu
void rope(const Tensor& x, const Tensor& cos, const Tensor& sin, RopeStyle style, Tensor& out);
// cuda_index.cu
void index_select(const Tensor& x, int64_t dim, const Tensor& index, Tensor& out);
void index_add(Tensor& out, int64_t dim, const Tensor& index, const Tensor& src);
void topk(const Tensor& x, int64_t k, Tensor& values, Tensor& indices);
// cuda_random.cu
void arange(double start, double step, Tensor& out);
void random(RandomKind kind, uint64_t seed, double a, double b, Tensor& out);
// cuda_gemm.cu
void matmul(const Tensor& a, const Tensor& b, Tensor& out);
void set_allow_tf32(bool allow);

}  // namespace arq::cuda
