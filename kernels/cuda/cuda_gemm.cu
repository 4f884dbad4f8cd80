// GEMM through cuBLAS: out[b] = a[b] · bm[b], row-major, as one strided-batched call whose
// arguments (the row-major → column-major mapping) come from cuda_gemm_args.h, unit-tested on
// the CPU against a column-major reference GEMM.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_gemm_args.h"

namespace arq::cuda {

namespace {
bool g_allow_tf32 = false;

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::f32: return CUDA_R_32F;
    case DType::f64: return CUDA_R_64F;
    case DType::f16: return CUDA_R_16F;
    case DType::bf16: return CUDA_R_16BF;
    default: throw UnsupportedError(cat("[matmul] cuBLAS has no path for ", dtype_name(t)));
  }
}
}  // namespace

void set_allow_tf32(bool allow) { g_allow_tf32 = allow; }

void matmul(const Tensor& a_in, const Tensor& b_in, Tensor& out) {
  const int64_t k = a_in.size(2);
  // The builder (engine/ops_nn.cpp) already answers these two; kept for direct callers:
  // cuBLAS rejects ldc = n = 0, and a [m, 0] operand has no layout mat_layout accepts.
  if (out.numel() == 0) return;
  if (k == 0) {
    cuda::fill(out, 0.0);
    return;
  }
  Tensor a = mat_layout(a_in).ok ? a_in : a_in.contiguous();
  Tensor b = mat_layout(b_in).ok ? b_in : b_in.contiguous();
  const MatLayout la = mat_layout(a), lb = mat_layout(b);
  ARQ_ASSERT(la.ok && lb.ok, "[matmul] no BLAS layout for ", a.str(), " · ", b.str());
  const GemmArgs g = gemm_args(a, b, out);
  // cuBLAS takes int dimensions and leading dimensions (the batch strides are 64-bit).
  constexpr int64_t kIntMax = 2147483647;
  ARQ_CHECK(g.m <= kIntMax && g.n <= kIntMax && g.k <= kIntMax && g.batch <= kIntMax && g.ld1 <= kIntMax &&
                g.ld2 <= kIntMax && g.ldc <= kIntMax,
            UnsupportedError, "[matmul] dimensions beyond 2^31 - 1 are not supported by cuBLAS: ", a.str(), " · ",
            b.str(), " -> ", out.str());
  const DType t = out.dtype();
  cublasHandle_t h = cublas_for(out.device());
  const cudaDataType_t ct = cuda_type(t);
  cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
  if (t == DType::f64) compute = CUBLAS_COMPUTE_64F;
  else if (t == DType::f32 && g_allow_tf32) compute = CUBLAS_COMPUTE_32F_FAST_TF32;
  const double one64 = 1.0, zero64 = 0.0;
  const float one32 = 1.0f, zero32 = 0.0f;
  const void* alpha = t == DType::f64 ? static_cast<const void*>(&one64) : static_cast<const void*>(&one32);
  const void* beta = t == DType::f64 ? static_cast<const void*>(&zero64) : static_cast<const void*>(&zero32);
  const cublasStatus_t st = cublasGemmStridedBatchedEx(
      h, g.trans1 ? CUBLAS_OP_T : CUBLAS_OP_N, g.trans2 ? CUBLAS_OP_T : CUBLAS_OP_N, static_cast<int>(g.m),
      static_cast<int>(g.n), static_cast<int>(g.k), alpha, b.data_ptr(), ct, static_cast<int>(g.ld1), g.stride1,
      a.data_ptr(), ct, static_cast<int>(g.ld2), g.stride2, beta, out.data_ptr(), ct, static_cast<int>(g.ldc),
      g.stride_c, static_cast<int>(g.batch), compute, CUBLAS_GEMM_DEFAULT);
  // The message names the shapes and the layouts chosen, so a failing case can be reproduced.
  ARQ_CHECK(st == CUBLAS_STATUS_SUCCESS, DeviceError, "[matmul] cuBLAS error ", cublasGetStatusName(st),
            " in cublasGemmStridedBatchedEx for ", a.str(), " (strides ", shape_str(a.strides()), ", op ", la.trans,
            ", ld ", la.ld, ") · ", b.str(), " (strides ", shape_str(b.strides()), ", op ", lb.trans, ", ld ", lb.ld,
            ") -> ", out.str());
}

}  // namespace arq::cuda
