// Fused ops: one kernel where the composition of engine ops would make several passes over
// memory (STYLE.md rule 3: the composition stays, as the reference the fused op is tested
// against and as the fallback). Each fused op has a builder here, a CPU kernel
// (kernels/cpu/fused.cpp), a CUDA kernel (kernels/cuda/cuda_fused.cu), a VJP in autograd
// (ag::swiglu, ag::rms_norm_fused) and cases in tests/engine + tests/cuda.
//
// The fused kernels live behind their own small interface rather than in Backend, so adding
// them did not change engine/backend.h (every file of the project includes it).
//
//   Tensor h = swiglu(gate, up);                          // silu(gate) ⊙ up, [..., I]
//   auto [dgate, dup] = swiglu_backward(gate, up, g);     // g: cotangent of h
//   auto [dx, dw] = rms_norm_backward(x, w, g, 1e-6);     // g: cotangent of rms_norm(x, w, eps)
#pragma once

#include <utility>

#include "engine/tensor.h"

namespace arq {

// ---- builders -------------------------------------------------------------------------------
// silu(gate) ⊙ up elementwise; gate and up have one shape and one floating dtype. The result is
// bit-identical to mul(silu(gate), up): silu is rounded to the dtype before the product, as the
// composition stores it.
Tensor swiglu(const Tensor& gate, const Tensor& up);

// Gradients of h = silu(gate) ⊙ up for the cotangent g (all three one shape and dtype):
//   dup = g ⊙ silu(gate),  dgate = (g ⊙ up) ⊙ σ(gate)·(1 + gate·(1 − σ(gate))).
// Every intermediate is rounded to the dtype in the order the composed VJPs (ag::mul, ag::silu)
// round it, so both are bit-identical to the composition on the same device.
std::pair<Tensor, Tensor> swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& g);

// Gradients of y = rms_norm(x, w, eps) over the last axis for the cotangent g (x's shape and
// dtype; w [d] of x's dtype). With r = (Σx²/d + eps)^(−½) per row (the sum in f64, r in f32 as
// the composed VJP computes it; f64 for f64 inputs):
//   dx = (g⊙w)·r − x·(r³·mean(g⊙w⊙x))   in x's dtype, computed in f32 (f64 for f64);
//   dw = Σ_rows g⊙(x·r)                   [d] in w's dtype, summed in f64 over every row.
// want_dx / want_dw skip the work for a gradient nobody needs (the tensor is then undefined).
std::pair<Tensor, Tensor> rms_norm_backward(const Tensor& x, const Tensor& w, const Tensor& g, double eps,
                                            bool want_dx = true, bool want_dw = true);

// The SignSGD update in place, one pass: p ← p − lr·sign(d) (p and d one shape, floating dtype
// and device). Bit-identical to copy_(p, sub(p, affine(sign(d), lr, 0))), the composition it
// replaces: lr·sign(d) + 0 is formed in the compute type and rounded to p's dtype, then the
// difference. A non-contiguous p takes the composition.
void sign_sgd_step_(Tensor& p, const Tensor& d, double lr);

// ---- the kernels' interface ---------------------------------------------------------------------
// The builders check shapes, dtypes and devices, make every operand contiguous, allocate the
// (contiguous) outputs and call one method; kernels may assume all of that.
class FusedKernels {
 public:
  virtual ~FusedKernels() = default;
  // h = silu(gate) ⊙ up; gate, up, h contiguous, one shape and dtype.
  virtual void swiglu(const Tensor& gate, const Tensor& up, Tensor& h) = 0;
  // dgate, dup from gate, up and the cotangent g; all contiguous, one shape and dtype.
  virtual void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& g, Tensor& dgate, Tensor& dup) = 0;
  // x, g [rows, d] contiguous; w [d] contiguous; dx [rows, d] or undefined; dw [d] or undefined.
  virtual void rms_norm_backward(const Tensor& x, const Tensor& w, const Tensor& g, double eps, Tensor& dx,
                                 Tensor& dw) = 0;
  // p ← p − lr·sign(d) in place; p and d contiguous, one shape and dtype.
  virtual void sign_step(Tensor& p, const Tensor& d, double lr) = 0;
};

FusedKernels& fused_kernels_for(const Device& d);
// Test/benchmark only (as set_backend_override): fused_kernels_for returns `k` for devices of type `t`.
void set_fused_kernels_override(DeviceType t, FusedKernels* k);
FusedKernels& cpu_fused_kernels();   // kernels/cpu/fused.cpp
FusedKernels& cuda_fused_kernels();  // kernels/cuda/cuda_fused.cu, or its stub without CUDA

}  // namespace arq
