// Differentiable fused ops (engine/fused.h): the same values as their compositions in
// autograd/ops.h, with one kernel forward and one backward instead of several engine ops each.
//
//   Var h = swiglu(linear(x, w_gate), linear(x, w_up));   // = mul(silu(gate), up), bit for bit
//   Var y = rms_norm_fused(x, w, 1e-6);                    // = rms_norm(x, w, eps)
#pragma once

#include "autograd/var.h"

namespace arq::ag {

// silu(gate) ⊙ up for gate, up of one shape and dtype. Forward and gradients are bit-identical
// to mul(silu(gate), up) on the same device (engine/fused.h); saves gate and up only.
Var swiglu(const Var& gate, const Var& up);

// rms_norm(x, w, eps) with the fused backward kernel: the gradient of x equals the composed
// VJP's (rms_norm in autograd/ops.h) up to the order of its f64 sums (bit-identical on the
// CPU); the gradient of w is one f64 sum over all rows, rounded once to f32 then to w's dtype.
Var rms_norm_fused(const Var& x, const Var& w, double eps);

}  // namespace arq::ag
