// GEMM through cuBLAS: out[b] = a[b] · bm[b], row-major, as one strided-batched call.
//
// cuBLAS is column-major. A row-major C[m,n] is the column-major Cᵀ[n,m] = Bᵀ[n,k] · Aᵀ[k,m],
// so the call passes B first and A second. A row-major operand ('N') read column-major is
// already the transpose we need (op N); a column-major one ('T') needs op T.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/mat_layout.h"

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
  Tensor a = mat_layout(a_in).ok ? a_in : a_in.contiguous();
  Tensor b = mat_layout(b_in).ok ? b_in : b_in.contiguous();
  const MatLayout la = mat_layout(a), lb = mat_layout(b);
  const int64_t B = out.size(0), m = out.size(1), n = out.size(2), k = a.size(2);
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
  const cublasOperation_t opa = la.trans == 'N' ? CUBLAS_OP_N : CUBLAS_OP_T;
  const cublasOperation_t opb = lb.trans == 'N' ? CUBLAS_OP_N : CUBLAS_OP_T;
  CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, opb, opa, static_cast<int>(n), static_cast<int>(m), static_cast<int>(k),
                                          alpha, b.data_ptr(), ct, static_cast<int>(lb.ld), b.stride(0),
                                          a.data_ptr(), ct, static_cast<int>(la.ld), a.stride(0), beta,
                                          out.data_ptr(), ct, static_cast<int>(n), m * n, static_cast<int>(B),
                                          compute, CUBLAS_GEMM_DEFAULT));
}

}  // namespace arq::cuda
