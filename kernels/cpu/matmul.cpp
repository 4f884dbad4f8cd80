// CPU matmul: out[b] = a[b] · bm[b] for a [B, m, k], bm [B, k, n], out [B, m, n] contiguous.
//
// f32 goes to dnnl_sgemm (row-major, transposes expressed through transa/transb and leading
// dimensions, so a transposed weight view costs no copy); bf16 goes to the oneDNN matmul
// primitive (f32 accumulation); f16 is widened to f32; f64 uses a plain blocked loop (it serves
// the gradient checks, not speed). Built without oneDNN, f32/bf16 use Eigen.
#include <vector>

#include <Eigen/Core>

#include "arq_config.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/strided.h"
#include "kernels/mat_layout.h"

#if ARQ_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace arq::cpu {

namespace {

// Row-major GEMM on one matrix: C[m,n] = op(A)[m,k] · op(B)[k,n].
template <class T>
void gemm_f64_like(char ta, char tb, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b, int64_t ldb,
                   T* c, int64_t ldc) {
  auto A = [&](int64_t i, int64_t p) { return ta == 'N' ? a[i * lda + p] : a[p * lda + i]; };
  auto B = [&](int64_t p, int64_t j) { return tb == 'N' ? b[p * ldb + j] : b[j * ldb + p]; };
  parallel_for(m, std::max<int64_t>(1, 4096 / std::max<int64_t>(n * k / 64, 1)), [&](int64_t i0, int64_t i1) {
    std::vector<T> row(n);
    for (int64_t i = i0; i < i1; ++i) {
      std::fill(row.begin(), row.end(), T(0));
      for (int64_t p = 0; p < k; ++p) {
        const T av = A(i, p);
        for (int64_t j = 0; j < n; ++j) row[j] += av * B(p, j);
      }
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = row[j];
    }
  });
}

void sgemm(char ta, char tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
           float* c, int64_t ldc) {
#if ARQ_HAVE_ONEDNN
  const dnnl_status_t st = dnnl_sgemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
  ARQ_ASSERT(st == dnnl_success, "dnnl_sgemm failed with status ", static_cast<int>(st), " for m=", m, " n=", n, " k=", k);
#else
  using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Strd = Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>;
  Eigen::Map<const RowMat, 0, Strd> A(a, m, k, ta == 'N' ? Strd(lda, 1) : Strd(1, lda));
  Eigen::Map<const RowMat, 0, Strd> B(b, k, n, tb == 'N' ? Strd(ldb, 1) : Strd(1, ldb));
  Eigen::Map<RowMat, 0, Eigen::OuterStride<>> C(c, m, n, Eigen::OuterStride<>(ldc));
  C.noalias() = A * B;
#endif
}

template <class T>
const T* matrix_ptr(const Tensor& t, int64_t batch) {
  return static_cast<const T*>(t.data_ptr()) + batch * t.stride(0);
}

void matmul_f32(const Tensor& a, const Tensor& b, Tensor& out) {
  const int64_t B = out.size(0), m = out.size(1), n = out.size(2), k = a.size(2);
  const MatLayout la = mat_layout(a), lb = mat_layout(b);
  float* po = out.data<float>();
  for (int64_t i = 0; i < B; ++i)
    sgemm(la.trans, lb.trans, m, n, k, matrix_ptr<float>(a, i), la.ld, matrix_ptr<float>(b, i), lb.ld, po + i * m * n, n);
}

void matmul_f64(const Tensor& a, const Tensor& b, Tensor& out) {
  const int64_t B = out.size(0), m = out.size(1), n = out.size(2), k = a.size(2);
  const MatLayout la = mat_layout(a), lb = mat_layout(b);
  double* po = out.data<double>();
  for (int64_t i = 0; i < B; ++i)
    gemm_f64_like<double>(la.trans, lb.trans, m, n, k, matrix_ptr<double>(a, i), la.ld, matrix_ptr<double>(b, i), lb.ld,
                          po + i * m * n, n);
}

#if ARQ_HAVE_ONEDNN
dnnl::engine& cpu_engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

// bf16 x bf16 -> bf16 through the oneDNN matmul primitive (f32 accumulation inside).
// oneDNN keeps its own primitive cache, so repeated shapes do not recompile.
void matmul_bf16_dnnl(const Tensor& a, const Tensor& b, Tensor& out) {
  using dt = dnnl::memory::data_type;
  const int64_t B = out.size(0), m = out.size(1), n = out.size(2), k = a.size(2);
  if (B > 1 && a.stride(0) == 0 && b.stride(0) == 0) {
    // oneDNN cannot broadcast both operands' batch; every batch is the same product: do it once.
    Tensor o1 = out.narrow(0, 0, 1);
    matmul_bf16_dnnl(a.narrow(0, 0, 1), b.narrow(0, 0, 1), o1);
    Tensor rest = out.narrow(0, 1, B - 1);
    copy(o1.expand(rest.shape()), rest);
    return;
  }
  auto desc3 = [&](const Tensor& t, int64_t r, int64_t c) {
    // A stride-0 batch becomes a batch of 1 that oneDNN broadcasts.
    const int64_t bt = t.stride(0) == 0 ? 1 : B;
    return dnnl::memory::desc({bt, r, c}, dt::bf16, {t.stride(0) == 0 ? r * c : t.stride(0), t.stride(1), t.stride(2)});
  };
  dnnl::memory::desc ad = desc3(a, m, k), bd = desc3(b, k, n);
  dnnl::memory::desc od({B, m, n}, dt::bf16, {m * n, n, 1});
  auto pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(ad, bd, od), cpu_engine());
  dnnl::stream s(cpu_engine());
  dnnl::memory am(ad, cpu_engine(), a.data_ptr()), bm(bd, cpu_engine(), b.data_ptr()), om(od, cpu_engine(), out.data_ptr());
  dnnl::matmul(pd).execute(s, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, om}});
  s.wait();
}
#endif

}  // namespace

void matmul(const Tensor& a_in, const Tensor& b_in, Tensor& out) {
  Tensor a = a_in, b = b_in;
  if (!mat_layout(a).ok) a = a.contiguous();
  if (!mat_layout(b).ok) b = b.contiguous();
  switch (out.dtype()) {
    case DType::f32: matmul_f32(a, b, out); return;
    case DType::f64: matmul_f64(a, b, out); return;
    case DType::bf16:
#if ARQ_HAVE_ONEDNN
      matmul_bf16_dnnl(a, b, out);
      return;
#endif
      [[fallthrough]];
    case DType::f16: {
      // Widen to f32 (exact), multiply with f32 accumulation, round once to the output dtype.
      Tensor o32 = Tensor::empty(out.shape(), DType::f32);
      matmul_f32(a.to(DType::f32), b.to(DType::f32), o32);
      copy(o32, out);
      return;
    }
    default:
      throw UnsupportedError(cat("[matmul] not implemented on cpu for ", out.str()));
  }
}

}  // namespace arq::cpu
