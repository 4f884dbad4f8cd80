// The fused SignRound qdq as one differentiable op (engine/qdq_fused.h): one kernel forward,
// one kernel backward, where quant/qdq.cpp's composition records ~15 nodes per linear.
//
//   Var w_hat = qdq_fused(wg, wmin, wmax, v, alpha, beta, spec, DType::bf16);  // [out, in]
#pragma once

#include "autograd/var.h"
#include "engine/qdq_fused.h"

namespace arq::ag {

// ŵ [out, in] in `weight_dtype` from the constant grouped weight wg [n_rows, G] and its range
// wmin/wmax [n_rows, 1] (f32), and the parameters v [n_rows, G], alpha/beta [n_rows, 1] (f32;
// each may be undefined: V = 0, α = β = 1). The forward is bit-identical to the composition;
// the gradients of v, alpha and beta are the composed VJPs' (bit-identical on the CPU).
// Saves wg, the range and the parameter values (no per-element intermediates).
Var qdq_fused(const Tensor& wg, const Tensor& wmin, const Tensor& wmax, const Var& v, const Var& alpha, const Var& beta,
              const QdqSpec& spec, DType weight_dtype);

}  // namespace arq::ag
