// The small layers every decoder block is built from, written with autograd ops so one code
// path serves evaluation (under ag::NoGrad) and SignRound tuning (gradients into substituted
// weights).
//
//   Var y = linear(x, w);                       // x [..., in], w [out, in] -> [..., out]
//   Var h = swiglu_mlp(x, MlpWeights{.gate = g, .up = u, .down = d});
#pragma once

#include "autograd/ops.h"

namespace arq::models {

// y = x · Wᵀ (+ bias). x [..., in], w [out, in], bias [out] or undefined -> [..., out].
// Leading dims are flattened into one GEMM of [rows, in] · [in, out].
ag::Var linear(const ag::Var& x, const ag::Var& w, const ag::Var& bias = {});

// HF RMSNorm over the last axis: x · rsqrt(mean(x²) + eps) · weight; x [..., d], weight [d].
ag::Var rms_norm(const ag::Var& x, const ag::Var& weight, double eps);

struct MlpWeights {
  ag::Var gate{};       // [I, H]
  ag::Var up{};         // [I, H]
  ag::Var down{};       // [H, I]
  ag::Var gate_bias{};  // [I] or undefined (mlp_bias)
  ag::Var up_bias{};    // [I]
  ag::Var down_bias{};  // [H]
};

// down(silu(gate x) ⊙ up x); x [..., H] -> [..., H].
ag::Var swiglu_mlp(const ag::Var& x, const MlpWeights& w);

}  // namespace arq::models
