// The arguments of the one cuBLAS call behind matmul (cuda_gemm.cu), computed in plain C++ so
// that a CPU unit test (tests/cuda/test_cuda_gemm_args.cpp, suite unit) can run them through a
// column-major reference GEMM with cuBLAS's semantics and its argument checks.
//
// cuBLAS is column-major. A row-major C[m,n] is the column-major Cᵀ[n,m] = Bᵀ[n,k] · Aᵀ[k,m],
// so the call passes B first and A second. A row-major operand ('N') read column-major is
// already the transpose we need (op N); a column-major one ('T') needs op T.
//
//   const GemmArgs g = gemm_args(a, b, out);  // a [B, m, k], b [B, k, n], out [B, m, n]
//   cublasGemmStridedBatchedEx(h, g.op1, g.op2, g.m, g.n, g.k, α, b, .., g.ld1, g.stride1,
//                              a, .., g.ld2, g.stride2, β, out, .., g.ldc, g.stride_c, g.batch, ..)
#pragma once

#include <cstdint>

#include "engine/tensor.h"
#include "kernels/mat_layout.h"

namespace arq::cuda {

struct GemmArgs {
  bool trans1 = false, trans2 = false;  // op of the first operand (b) and of the second (a)
  int64_t m = 0, n = 0, k = 0;          // cuBLAS's m, n, k: out's columns, out's rows, the inner dim
  int64_t ld1 = 0, stride1 = 0;         // b: leading dimension, batch stride (elements)
  int64_t ld2 = 0, stride2 = 0;         // a
  int64_t ldc = 0, stride_c = 0;        // out (contiguous)
  int64_t batch = 0;
};

// a, b must have a BLAS layout (mat_layout(..).ok; the caller makes them contiguous otherwise);
// out is contiguous [B, m, n] with m, n, k ≥ 1.
inline GemmArgs gemm_args(const Tensor& a, const Tensor& b, const Tensor& out) {
  const MatLayout la = mat_layout(a), lb = mat_layout(b);
  GemmArgs g;
  g.trans1 = lb.trans == 'T';
  g.trans2 = la.trans == 'T';
  g.m = out.size(2);
  g.n = out.size(1);
  g.k = a.size(2);
  g.ld1 = lb.ld;
  g.stride1 = b.stride(0);
  g.ld2 = la.ld;
  g.stride2 = a.stride(0);
  g.ldc = out.size(2);
  g.stride_c = out.size(1) * out.size(2);
  g.batch = out.size(0);
  return g;
}

}  // namespace arq::cuda
