// The cuBLAS call behind CUDA matmul, checked on the CPU (suite unit, runs in CI without a GPU):
// gemm_args (kernels/cuda/cuda_gemm_args.h, the very arguments cuda_gemm.cu passes) go through a
// column-major reference GEMM with cublasGemmStridedBatchedEx's semantics and its argument
// checks (ld ≥ max(1, rows of the stored matrix), ldc ≥ max(1, m)); the result must equal the
// CPU matmul exactly (f64 with small integer entries: every sum is exact) for row- and
// column-major views, stride-0 batch broadcasts and m, n or k of 1.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "engine/ops.h"
#include "kernels/cuda/cuda_gemm_args.h"

using namespace arq;

namespace {

// C = op1(A1) · op2(A2), column-major, batched: cublasGemmStridedBatchedEx with α = 1, β = 0.
// Returns "" or the argument check that cuBLAS would fail with CUBLAS_STATUS_INVALID_VALUE.
std::string reference_gemm(const cuda::GemmArgs& g, const double* a1, const double* a2, double* c) {
  const int64_t rows1 = g.trans1 ? g.k : g.m;  // the stored first operand is rows1 × ·
  const int64_t rows2 = g.trans2 ? g.n : g.k;
  if (g.m < 0 || g.n < 0 || g.k < 0 || g.batch < 0) return "negative dimension";
  if (g.ld1 < std::max<int64_t>(1, rows1)) return cat("ld1 ", g.ld1, " < ", rows1);
  if (g.ld2 < std::max<int64_t>(1, rows2)) return cat("ld2 ", g.ld2, " < ", rows2);
  if (g.ldc < std::max<int64_t>(1, g.m)) return cat("ldc ", g.ldc, " < ", g.m);
  for (int64_t bi = 0; bi < g.batch; ++bi) {
    const double* A = a1 + bi * g.stride1;
    const double* B = a2 + bi * g.stride2;
    double* C = c + bi * g.stride_c;
    for (int64_t i = 0; i < g.m; ++i)
      for (int64_t j = 0; j < g.n; ++j) {
        double s = 0;
        for (int64_t p = 0; p < g.k; ++p) {
          const double x = g.trans1 ? A[p + i * g.ld1] : A[i + p * g.ld1];  // op1(A1)[i, p]
          const double y = g.trans2 ? B[j + p * g.ld2] : B[p + j * g.ld2];  // op2(A2)[p, j]
          s += x * y;
        }
        C[i + j * g.ldc] = s;
      }
  }
  return "";
}

// Integers in [-4, 4] (exact products and sums in f64).
Tensor small_ints(const Shape& shape, uint64_t seed) {
  return arq::floor(rand_uniform(shape, seed, -4, 5, DType::f64));
}

enum class Form { row_major, col_major, sliced, batch_broadcast };

// A [B, r, c] operand in the given form, with the values of `v` (a contiguous [B, r, c]).
Tensor present(const Tensor& v, Form f) {
  const int64_t B = v.size(0), r = v.size(1), c = v.size(2);
  switch (f) {
    case Form::row_major: return v;
    case Form::col_major: return v.transpose(1, 2).contiguous().transpose(1, 2);  // strides [r·c, 1, r]
    case Form::sliced: {  // every second column of a wider block: not a BLAS layout
      Tensor wide = zeros({B, r, 2 * c + 1}, DType::f64);
      Tensor view = wide.slice(2, 1, 2 * c + 1, 2);
      copy_(view, v);
      return view;
    }
    case Form::batch_broadcast: return v.narrow(0, 0, 1).expand({B, r, c});  // batch stride 0
  }
  return v;
}

const char* form_name(Form f) {
  switch (f) {
    case Form::row_major: return "row-major";
    case Form::col_major: return "column-major";
    case Form::sliced: return "sliced";
    case Form::batch_broadcast: return "batch-broadcast";
  }
  return "?";
}

}  // namespace

TEST_CASE("cuda matmul: the cuBLAS arguments compute row-major a · b for every layout") {
  const Form forms[] = {Form::row_major, Form::col_major, Form::sliced, Form::batch_broadcast};
  const struct {
    int64_t B, m, k, n;
  } dims[] = {{1, 5, 7, 13}, {3, 5, 7, 13}, {2, 1, 7, 13}, {2, 5, 1, 13}, {2, 5, 7, 1},
              {1, 1, 1, 1},  {3, 1, 9, 1},  {2, 13, 1, 1}, {2, 6, 6, 6}};
  int checked = 0;
  uint64_t seed = 1;
  for (const auto& d : dims) {
    for (Form fa : forms) {
      for (Form fb : forms) {
        CAPTURE(cat("B ", d.B, " m ", d.m, " k ", d.k, " n ", d.n, ", a ", form_name(fa), ", b ", form_name(fb)));
        Tensor a = present(small_ints({d.B, d.m, d.k}, seed++), fa);
        Tensor b = present(small_ints({d.B, d.k, d.n}, seed++), fb);
        const Tensor want = matmul(a, b).contiguous();  // the CPU kernel
        // cuda_gemm.cu: operands without a BLAS layout are made contiguous first
        const Tensor a2 = mat_layout(a).ok ? a : a.contiguous();
        const Tensor b2 = mat_layout(b).ok ? b : b.contiguous();
        REQUIRE(mat_layout(a2).ok);
        REQUIRE(mat_layout(b2).ok);
        Tensor got = zeros({d.B, d.m, d.n}, DType::f64);
        const cuda::GemmArgs g = cuda::gemm_args(a2, b2, got);
        const std::string err = reference_gemm(g, b2.data<double>(), a2.data<double>(), got.data<double>());
        CHECK_MESSAGE(err.empty(), "cuBLAS would reject the arguments: ", err);
        CHECK(to_vector(got) == to_vector(want));
        ++checked;
      }
    }
  }
  CHECK(checked == 9 * 16);
}
