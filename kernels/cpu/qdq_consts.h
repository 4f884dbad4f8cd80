// The fused qdq's per-call constants from its spec (engine/qdq_fused.h), host code shared by the
// CPU kernel (kernels/cpu/qdq_fused.cpp) and the CUDA one (kernels/cuda/cuda_qdq_fused.cu).
#pragma once

#include <cstdint>

#include "engine/qdq_fused.h"
#include "kernels/cpu/qdq_math.h"

namespace arq {

// The inputs' f32 data pointers, v / alpha / beta null when undefined (host code; the CUDA kernels
// take the struct by value).
struct QdqPtrs {
  const float* wg;    // [rows, G]
  const float* wmin;  // [rows]
  const float* wmax;  // [rows]
  const float* v;     // [rows, G] or null
  const float* a;     // [rows] or null
  const float* b;     // [rows] or null
};
inline QdqPtrs qdq_ptrs_of(const QdqInputs& x) {
  auto f = [](const Tensor& t) { return t.defined() ? static_cast<const float*>(t.data_ptr()) : nullptr; };
  return {f(x.wg), f(x.wmin), f(x.wmax), f(x.v), f(x.alpha), f(x.beta)};
}

inline qdq::Consts qdq_consts_of(const QdqSpec& s) {
  qdq::Consts k{};
  k.kind = s.kind == QdqKind::int_sym ? qdq::kSym : (s.kind == QdqKind::int_asym ? qdq::kAsym : qdq::kGptq);
  k.sdt = s.scale_dtype == DType::f16 ? qdq::kSdtF16 : (s.scale_dtype == DType::bf16 ? qdq::kSdtBF16 : qdq::kSdtF32);
  k.thr = static_cast<float>(s.scale_thresh);
  const int64_t half = int64_t{1} << (s.bits - 1);
  k.qmax = static_cast<float>(s.kind == QdqKind::int_sym ? half : (int64_t{1} << s.bits) - 1);
  k.zp_sym = static_cast<float>(half);
  return k;
}

}  // namespace arq
