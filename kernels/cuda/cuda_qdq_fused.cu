// CUDA kernels of the fused qdq (engine/qdq_fused.h). The per-row and per-element math is
// kernels/cpu/qdq_math.h, compiled __host__ __device__ with _rn intrinsics (no FMA contraction),
// so the forward and the codes are bit-identical to the CPU kernel (and so to the composition);
// the backward differs from the CPU only in the order of its f64 row sums.
//
//   qdq_forward:   ŵ of the common layout (groups of G % 4 == 0 tiling each row): a warp per row,
//                  the row's scale once per lane, 16-byte loads; otherwise, and for the u8 codes, one thread per
//                  element of the grouped weight [n_rows, G] (grid-stride), the row's scale
//                  recomputed from its wmin/wmax/α/β; writes ŵ [out, in] in the weight dtype,
//                  or u8 codes (+ scales/zeros per row);
//   qdq_backward:  TPR threads per row (a warp for G ≤ 1024, else a 256-thread block): dV per
//                  element, the four f64 sums reduced across the row, then dα, dβ (the common
//                  layout: a warp per row, 4 elements per lane and step, 16-byte loads);
//   dequantize:    one thread per element of [out, in].
#include <algorithm>

#include "engine/qdq_fused.h"
#include "kernels/cpu/qdq_consts.h"
#include "kernels/cpu/qdq_math.h"
#include "kernels/cuda/cuda_device.cuh"

namespace arq::cuda {

namespace {

// The layout as the kernels read it.
struct Layout {
  int64_t rows, G, in, n_g;
  bool per_tensor;
};
Layout layout_of(const QdqSpec& s) { return {s.n_rows(), s.group_len, s.in, s.groups_per_row, s.per_tensor}; }

// Row r: first output element and number of valid (unpadded) elements.
__device__ __forceinline__ void span_of(const Layout& L, int64_t r, int64_t& base, int64_t& n) {
  if (L.per_tensor) {
    base = 0;
    n = L.G;
    return;
  }
  const int64_t o = r / L.n_g, k = r - o * L.n_g;
  base = o * L.in + k * L.G;
  const int64_t end = (k + 1) * L.G < L.in ? (k + 1) * L.G : L.in;
  n = end - k * L.G;
}

using Params = QdqPtrs;

__device__ __forceinline__ qdq::Row row_at(const qdq::Consts& k, const Params& p, int64_t r) {
  return qdq::row_of(k, __ldg(p.wmin + r), __ldg(p.wmax + r), p.a ? p.a + r : nullptr, p.b ? p.b + r : nullptr);
}

// ŵ (when w_hat) or codes (when codes) for every element of the grouped weight.
template <class T>
__global__ void qdq_forward_kernel(qdq::Consts k, Layout L, Params p, T* w_hat, uint8_t* codes) {
  ARQ_GRID_STRIDE(i, L.rows * L.G) {
    const int64_t r = i / L.G, c = i - r * L.G;
    int64_t base, n;
    span_of(L, r, base, n);
    if (c >= n) continue;  // padding
    const qdq::Row row = row_at(k, p, r);
    const qdq::Elem e = qdq::elem_of(k, row, p.wg[i], p.v ? p.v[i] : 0.0f, p.v != nullptr);
    if (codes) codes[base + c] = qdq::code_of(k, e);
    else w_hat[base + c] = dconvert<T>(qdq::q_mul(row.sc, e.t));
  }
}

// ŵ for the common layout (groups of G % 4 == 0 elements tiling each output row: no padding, so
// row r's outputs are [r·G, (r + 1)·G)): a warp per row computes the row's scale once per lane
// instead of once per element, with no index divisions, 16-byte loads of wg and V and 4 outputs
// per store. The per-element math is the same qdq_math.h code, so the bits are the same.
template <class T>
__global__ void qdq_forward_rows_kernel(qdq::Consts k, Layout L, Params p, T* w_hat) {
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
  const int lane = threadIdx.x & 31;
  const int64_t quads = L.G / 4;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; r < L.rows; r += warps) {
    const qdq::Row row = row_at(k, p, r);
    const float4* wr = reinterpret_cast<const float4*>(p.wg + r * L.G);
    const float4* vr = p.v ? reinterpret_cast<const float4*>(p.v + r * L.G) : nullptr;
    Vec<T, 4>* out = reinterpret_cast<Vec<T, 4>*>(w_hat + r * L.G);
    for (int64_t c = lane; c < quads; c += 32) {
      const float4 w = wr[c];
      const float4 v = vr ? vr[c] : make_float4(0.f, 0.f, 0.f, 0.f);
      const bool hv = vr != nullptr;
      Vec<T, 4> o;
      o.v[0] = dconvert<T>(qdq::q_mul(row.sc, qdq::elem_of(k, row, w.x, v.x, hv).t));
      o.v[1] = dconvert<T>(qdq::q_mul(row.sc, qdq::elem_of(k, row, w.y, v.y, hv).t));
      o.v[2] = dconvert<T>(qdq::q_mul(row.sc, qdq::elem_of(k, row, w.z, v.z, hv).t));
      o.v[3] = dconvert<T>(qdq::q_mul(row.sc, qdq::elem_of(k, row, w.w, v.w, hv).t));
      out[c] = o;
    }
  }
}

// Whether qdq_forward_rows_kernel applies: grouped (not per-tensor), G a multiple of 4 that
// divides `in`, 16-byte aligned wg / V and an ŵ aligned to 4 elements.
bool rows_layout(const Layout& L, const Params& p, const void* w_hat, size_t elem) {
  return !L.per_tensor && L.G % 4 == 0 && L.in == L.n_g * L.G && aligned_to(p.wg, 16) &&
         (p.v == nullptr || aligned_to(p.v, 16)) && aligned_to(w_hat, 4 * elem);
}

__global__ void qdq_row_params_kernel(qdq::Consts k, Layout L, Params p, float* scales, int32_t* zeros) {
  ARQ_GRID_STRIDE(r, L.rows) {
    const qdq::Row row = row_at(k, p, r);
    scales[r] = row.sc;
    zeros[r] = qdq::zero_of(k, row);
  }
}

template <int TPR>
__device__ __forceinline__ double row_sum(double v, double* scratch) {
  if constexpr (TPR == 32) return warp_sum(v);
  else return block_sum(v, scratch);
}

// TPR threads per row; g [out, in] f32/f16/bf16; dv [rows, G] or null; da/db [rows] or null.
template <int TPR, class GT>
__global__ void qdq_backward_kernel(qdq::Consts k, Layout L, Params p, const GT* g, float* dv, float* da,
                                    float* db) {
  __shared__ double scratch[32];
  const int64_t r = static_cast<int64_t>(blockIdx.x) * (blockDim.x / TPR) + threadIdx.x / TPR;
  const int t = threadIdx.x % TPR;
  if (TPR == 32 && r >= L.rows) return;  // a whole warp leaves together (never for TPR = block)
  int64_t base, n;
  span_of(L, r, base, n);
  const qdq::Row row = row_at(k, p, r);
  const float* xr = p.wg + r * L.G;
  const float* vr = p.v ? p.v + r * L.G : nullptr;
  float* dvr = dv ? dv + r * L.G : nullptr;
  qdq::RowSums s;
  for (int64_t j = t; j < n; j += TPR) {
    const qdq::Elem e = qdq::elem_of(k, row, xr[j], vr ? vr[j] : 0.0f, vr != nullptr);
    const qdq::Terms tm = qdq::elem_terms(k, row, e, narrow_f32(g[base + j]));
    s.add(tm, k.kind == qdq::kAsym);
    if (dvr) dvr[j] = tm.dv;
  }
  if (dvr)
    for (int64_t j = n + t; j < L.G; j += TPR) dvr[j] = 0.0f;
  if (!da && !db) return;  // uniform across the row's threads
  s.a = row_sum<TPR>(s.a, scratch);
  s.b = row_sum<TPR>(s.b, scratch);
  if (k.kind == qdq::kAsym) {
    s.z1 = row_sum<TPR>(s.z1, scratch);
    s.z2 = row_sum<TPR>(s.z2, scratch);
  }
  if (t != 0) return;
  const qdq::RowGrad rg = qdq::row_backward(k, row, p.wmin[r], p.wmax[r], s);
  if (da) da[r] = rg.dalpha;
  if (db) db[r] = rg.dbeta;
}

// The backward for the rows_layout case (see qdq_forward_rows_kernel), G ≤ 1024: a warp per row,
// 4 consecutive elements per lane and step (16-byte loads of wg, V and dV stores; 4 gradients per
// load), so every lane's loads are issued together. Only the order of the f64 row sums differs
// from qdq_backward_kernel.
template <class GT>
__global__ void qdq_backward_rows_kernel(qdq::Consts k, Layout L, Params p, const GT* g, float* dv, float* da,
                                         float* db) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x & 31;
  if (r >= L.rows) return;  // a whole warp leaves together
  const qdq::Row row = row_at(k, p, r);
  const float4* xr = reinterpret_cast<const float4*>(p.wg + r * L.G);
  const float4* vr = p.v ? reinterpret_cast<const float4*>(p.v + r * L.G) : nullptr;
  const Vec<GT, 4>* gr = reinterpret_cast<const Vec<GT, 4>*>(g + r * L.G);
  float4* dvr = dv ? reinterpret_cast<float4*>(dv + r * L.G) : nullptr;
  const bool hv = vr != nullptr, asym = k.kind == qdq::kAsym;
  qdq::RowSums s;
  for (int64_t c = lane; c < L.G / 4; c += 32) {
    const float4 x = xr[c];
    const float4 v = hv ? vr[c] : make_float4(0.f, 0.f, 0.f, 0.f);
    const Vec<GT, 4> gg = gr[c];
    const float xs[4] = {x.x, x.y, x.z, x.w}, vs[4] = {v.x, v.y, v.z, v.w};
    float d[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const qdq::Terms tm = qdq::elem_terms(k, row, qdq::elem_of(k, row, xs[e], vs[e], hv), narrow_f32(gg.v[e]));
      s.add(tm, asym);
      d[e] = tm.dv;
    }
    if (dvr) dvr[c] = make_float4(d[0], d[1], d[2], d[3]);
  }
  if (!da && !db) return;
  s.a = warp_sum(s.a);
  s.b = warp_sum(s.b);
  if (asym) {
    s.z1 = warp_sum(s.z1);
    s.z2 = warp_sum(s.z2);
  }
  if (lane != 0) return;
  const qdq::RowGrad rg = qdq::row_backward(k, row, p.wmin[r], p.wmax[r], s);
  if (da) da[r] = rg.dalpha;
  if (db) db[r] = rg.dbeta;
}

template <class T>
__global__ void dequantize_kernel(const uint8_t* codes, const float* sc, const int32_t* zp, const float* mn, Layout L,
                                  int64_t out, T* o) {
  ARQ_GRID_STRIDE(i, out * L.in) {
    const int64_t row = i / L.in, j = i - row * L.in;
    const int64_t r = L.per_tensor ? 0 : row * L.n_g + j / L.G;
    const float w = mn ? qdq::q_sub(qdq::q_mul(sc[r], static_cast<float>(codes[i])), mn[r])
                       : qdq::q_mul(sc[r], static_cast<float>(static_cast<int32_t>(codes[i]) - zp[r]));
    o[i] = dconvert<T>(w);
  }
}

float* out_ptr(const Tensor& t) { return t.defined() ? static_cast<float*>(t.data_ptr()) : nullptr; }

class CudaQdq final : public QdqKernels {
 public:
  void forward(const QdqInputs& x, const QdqSpec& s, Tensor& w_hat, QdqCodes& codes) override {
    const qdq::Consts k = qdq_consts_of(s);
    const Layout L = layout_of(s);
    const Params p = qdq_ptrs_of(x);
    cudaStream_t st = stream_for(x.wg.device());
    const int64_t n = L.rows * L.G;
    const int grid = blocks_for(n, kThreads);
    if (!w_hat.defined()) {
      qdq_forward_kernel<float><<<grid, kThreads, 0, st>>>(k, L, p, nullptr, static_cast<uint8_t*>(codes.codes.data_ptr()));
      CUDA_CHECK_LAUNCH();
      qdq_row_params_kernel<<<blocks_for(L.rows, kThreads), kThreads, 0, st>>>(
          k, L, p, static_cast<float*>(codes.scales.data_ptr()), static_cast<int32_t*>(codes.zeros.data_ptr()));
      CUDA_CHECK_LAUNCH();
      return;
    }
    if (rows_layout(L, p, w_hat.data_ptr(), w_hat.itemsize())) {
      constexpr int kWarps = kThreads / 32;
      const int64_t blocks = std::min<int64_t>((L.rows + kWarps - 1) / kWarps, int64_t{1} << 20);
      const unsigned gr = static_cast<unsigned>(blocks);
      switch (w_hat.dtype()) {
        case DType::f32:
          qdq_forward_rows_kernel<float><<<gr, kThreads, 0, st>>>(k, L, p, static_cast<float*>(w_hat.data_ptr()));
          break;
        case DType::f16:
          qdq_forward_rows_kernel<__half><<<gr, kThreads, 0, st>>>(k, L, p, static_cast<__half*>(w_hat.data_ptr()));
          break;
        case DType::bf16:
          qdq_forward_rows_kernel<__nv_bfloat16>
              <<<gr, kThreads, 0, st>>>(k, L, p, static_cast<__nv_bfloat16*>(w_hat.data_ptr()));
          break;
        default: throw UnsupportedError(cat("[qdq_fused] weight dtype ", dtype_name(w_hat.dtype()), " on cuda"));
      }
      CUDA_CHECK_LAUNCH();
      return;
    }
    switch (w_hat.dtype()) {
      case DType::f32:
        qdq_forward_kernel<float><<<grid, kThreads, 0, st>>>(k, L, p, static_cast<float*>(w_hat.data_ptr()), nullptr);
        break;
      case DType::f16:
        qdq_forward_kernel<__half><<<grid, kThreads, 0, st>>>(k, L, p, static_cast<__half*>(w_hat.data_ptr()), nullptr);
        break;
      case DType::bf16:
        qdq_forward_kernel<__nv_bfloat16>
            <<<grid, kThreads, 0, st>>>(k, L, p, static_cast<__nv_bfloat16*>(w_hat.data_ptr()), nullptr);
        break;
      default: throw UnsupportedError(cat("[qdq_fused] weight dtype ", dtype_name(w_hat.dtype()), " on cuda"));
    }
    CUDA_CHECK_LAUNCH();
  }

  void backward(const QdqInputs& x, const QdqSpec& s, const Tensor& g, QdqGrads& grads) override {
    const qdq::Consts k = qdq_consts_of(s);
    const Layout L = layout_of(s);
    const Params p = qdq_ptrs_of(x);
    cudaStream_t st = stream_for(x.wg.device());
    float *dv = out_ptr(grads.dv), *da = out_ptr(grads.dalpha), *db = out_ptr(grads.dbeta);
    auto launch = [&](auto tag) {
      using GT = decltype(tag);
      const GT* pg = static_cast<const GT*>(g.data_ptr());
      if (L.G <= 1024 && rows_layout(L, p, pg, sizeof(GT)) && (dv == nullptr || aligned_to(dv, 16))) {
        constexpr int kRows = kThreads / 32;
        const int64_t blocks = (L.rows + kRows - 1) / kRows;
        ARQ_CHECK(blocks <= 0x7fffffff, UnsupportedError, "[qdq_fused_backward] ", L.rows, " rows on cuda");
        qdq_backward_rows_kernel<GT><<<static_cast<unsigned>(blocks), kThreads, 0, st>>>(k, L, p, pg, dv, da, db);
      } else if (L.G <= 1024) {
        constexpr int TPR = 32, kRows = kThreads / TPR;
        const int64_t blocks = (L.rows + kRows - 1) / kRows;
        ARQ_CHECK(blocks <= 0x7fffffff, UnsupportedError, "[qdq_fused_backward] ", L.rows, " rows on cuda");
        qdq_backward_kernel<TPR, GT><<<static_cast<unsigned>(blocks), kThreads, 0, st>>>(k, L, p, pg, dv, da, db);
      } else {
        ARQ_CHECK(L.rows <= 0x7fffffff, UnsupportedError, "[qdq_fused_backward] ", L.rows, " rows on cuda");
        qdq_backward_kernel<kThreads, GT><<<static_cast<unsigned>(L.rows), kThreads, 0, st>>>(k, L, p, pg, dv, da, db);
      }
    };
    switch (g.dtype()) {
      case DType::f32: launch(float{}); break;
      case DType::f16: launch(__half{}); break;
      case DType::bf16: launch(__nv_bfloat16{}); break;
      default: throw UnsupportedError(cat("[qdq_fused_backward] gradient dtype ", dtype_name(g.dtype()), " on cuda"));
    }
    CUDA_CHECK_LAUNCH();
  }

  void dequantize(const Tensor& codes, const Tensor& scales, const Tensor& zeros, const Tensor& mins, const QdqSpec& s,
                  Tensor& out) override {
    const Layout L = layout_of(s);
    cudaStream_t st = stream_for(codes.device());
    const uint8_t* c = static_cast<const uint8_t*>(codes.data_ptr());
    const float* sc = static_cast<const float*>(scales.data_ptr());
    const int32_t* zp = zeros.defined() ? static_cast<const int32_t*>(zeros.data_ptr()) : nullptr;
    const float* mn = mins.defined() ? static_cast<const float*>(mins.data_ptr()) : nullptr;
    const int grid = blocks_for(s.out * s.in, kThreads);
    switch (out.dtype()) {
      case DType::f32:
        dequantize_kernel<float><<<grid, kThreads, 0, st>>>(c, sc, zp, mn, L, s.out, static_cast<float*>(out.data_ptr()));
        break;
      case DType::f64:
        dequantize_kernel<double><<<grid, kThreads, 0, st>>>(c, sc, zp, mn, L, s.out, static_cast<double*>(out.data_ptr()));
        break;
      case DType::f16:
        dequantize_kernel<__half><<<grid, kThreads, 0, st>>>(c, sc, zp, mn, L, s.out, static_cast<__half*>(out.data_ptr()));
        break;
      case DType::bf16:
        dequantize_kernel<__nv_bfloat16>
            <<<grid, kThreads, 0, st>>>(c, sc, zp, mn, L, s.out, static_cast<__nv_bfloat16*>(out.data_ptr()));
        break;
      default: throw UnsupportedError(cat("[dequantize] output dtype ", dtype_name(out.dtype()), " on cuda"));
    }
    CUDA_CHECK_LAUNCH();
  }
};

}  // namespace

}  // namespace arq::cuda

namespace arq {
QdqKernels& cuda_qdq_kernels() {
  static cuda::CudaQdq k;
  cuda::init_allocator();
  return k;
}
}  // namespace arq
