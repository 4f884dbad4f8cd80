// The small layers every decoder block is built from, written with autograd ops so one code
// path serves evaluation (under ag::NoGrad) and SignRound tuning (gradients into substituted
// weights).
//
//   Var y = linear(x, w);                       // x [..., in], w [out, in] -> [..., out]
//   Var h = swiglu_mlp(x, MlpWeights{.gate = g, .up = u, .down = d});
#pragma once

#include <functional>
#include <string>

#include "autograd/ops.h"

namespace arq::models {

// Sees the input of each linear layer during a forward, by name, before the layer runs:
// activation statistics (AutoRound's importance matrix, spec/autoround.md §3) are built from
// these. `input` is [..., in] exactly as the linear receives it; layers that share an input
// (q/k/v, gate/up) each get a call with the same tensor. Blocks call it with their local
// names ("q_proj", "gate_proj", ...); CausalLM::block_forward hands out full module names.
using LinearObserver = std::function<void(const std::string& linear_name, const Tensor& input)>;

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

// down(silu(gate x) ⊙ up x); x [..., H] -> [..., H]. `observe` (may be null) sees the inputs
// of "gate_proj", "up_proj" (both x) and "down_proj" (silu(gate x) ⊙ up x).
ag::Var swiglu_mlp(const ag::Var& x, const MlpWeights& w, const LinearObserver* observe = nullptr);

}  // namespace arq::models
