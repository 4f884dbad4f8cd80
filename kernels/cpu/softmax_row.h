// The row core of the CPU softmax, shared by kernels/cpu/reduce.cpp (arq::softmax) and
// kernels/cpu/attention_rows.cpp (the fused attention rows), so the two stay bit-identical.
// Callers inline it into their own ISA-dispatched loops (ARQ_INLINE, vec_math.h's for_isa).
#pragma once

#include <cstdint>
#include <limits>

#include "kernels/cpu/vec_math.h"

namespace arq::cpu {

// Rows of f32/f16/bf16 softmax in f32 with an f64 sum; every row is one thread's work, so the
// result does not depend on the thread count. Per row of n:
//   m = max (NaN never wins the compare; an all -inf row uses m = 0),
//   e_j = exp(x_j - m) in f64 (vec_math.h), s = sum of e_j in f64,
//   softmax: out_j = f32(e_j) * f32(1 / s);  log_softmax: out_j = x_j - m - f32(log s).
// Max and sum keep kLanes partial results combined in a fixed order (no dependence on the
// vector width); the loops run at the widest ISA present.
inline constexpr int kLanes = 8;

// max over the row and the f64 sum of exp(x - max), writing f32(exp(x - max)) to e.
ARQ_INLINE void softmax_row_core(const float* x, float* e, int64_t n, float& m_out, double& s_out) {
  float mx[kLanes];
  for (int l = 0; l < kLanes; ++l) mx[l] = -std::numeric_limits<float>::infinity();
  const int64_t nb = n / kLanes * kLanes;
  for (int64_t j = 0; j < nb; j += kLanes)
    for (int l = 0; l < kLanes; ++l) mx[l] = x[j + l] > mx[l] ? x[j + l] : mx[l];
  for (int64_t j = nb; j < n; ++j) mx[j - nb] = x[j] > mx[j - nb] ? x[j] : mx[j - nb];
  float m = mx[0];
  for (int l = 1; l < kLanes; ++l) m = mx[l] > m ? mx[l] : m;
  if (m == -std::numeric_limits<float>::infinity()) m = 0;  // all -inf: avoid inf - inf
  double acc[kLanes] = {};
  for (int64_t j = 0; j < nb; j += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      const double ev = exp_f64_of_f32(x[j + l] - m);
      e[j + l] = static_cast<float>(ev);
      acc[l] += ev;
    }
  for (int64_t j = nb; j < n; ++j) {
    const double ev = exp_f64_of_f32(x[j] - m);
    e[j] = static_cast<float>(ev);
    acc[j - nb] += ev;
  }
  m_out = m;
  s_out = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

}  // namespace arq::cpu
