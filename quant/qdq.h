// Quantize-dequantize (qdq) of a weight, in two forms that agree bit for bit
// (spec/autoround.md §1.7, §1.8, §1.10):
//
//  - `qdq_grouped` / `qdq_weight`: written with arq::ag ops, so the SignRound loss has exact
//    gradients with respect to the rounding offset V and the range factors α (min_scale) and
//    β (max_scale). round_ste passes gradients straight through; clamp passes them where
//    lo <= z <= hi; the scale is rounded to the scale dtype and its threshold applied in that
//    dtype, as PyTorch's type promotion does.
//  - `quantize_with_params` / `quantize_rtn`: the no-grad form that produces the frozen
//    QuantizedLinear (integer codes, scales, zero points) for given parameter values.
//
// With V = 0 and α = β = 1 both are plain RTN, which is why SignRound's iteration 0 is RTN.
// The GGUF data types (int_asym_dq, int_sym_dq, int_asym_float_zp) dispatch to quant/qdq_gguf.h.
//
// For int_sym, int_asym and int_sym_gptq, `qdq_weight` and `quantize_with_params` run the fused
// kernels of engine/qdq_fused.h (one forward, one backward, on the weight's device) by default:
// the same ŵ and codes bit for bit, the same gradients. QdqImpl::composed (or the environment
// variable ARQ_QDQ_COMPOSED=1) selects the composition and the host loop, kept as the reference.
//
//   GroupLayout g = make_group_layout(out, in, 32);
//   Tensor wg = to_groups(w, g);                                // [n_rows, G] f32
//   GroupRange r = group_range(wg);
//   QdqParams p = make_qdq_params(g, /*minmax_tuning=*/true);  // V = 0, α = β = 1
//   ag::Var w_hat = qdq_weight(wg, r, p, scheme, g, w.dtype()); // [out, in], differentiable
#pragma once

#include "autograd/var.h"
#include "engine/qdq_fused.h"
#include "quant/quantized_linear.h"
#include "quant/scheme.h"

namespace arq::quant {

// Per-group constants from the original weights (computed once): wmin = min(group, 0) and
// wmax = max(group, 0), each [n_rows, 1] f32.
struct GroupRange {
  Tensor wmin;  // [n_rows, 1]
  Tensor wmax;  // [n_rows, 1]
};
GroupRange group_range(const Tensor& wg);

// The learnable parameters of one wrapped linear, all f32 leaves.
struct QdqParams {
  ag::Var v;      // [n_rows, G] rounding offset, init 0, no clamp
  ag::Var alpha;  // [n_rows, 1] min_scale, init 1, clamped to [0, 1] before use; undefined = 1
  ag::Var beta;   // [n_rows, 1] max_scale, likewise
};
// Created on `device` (the device the tuned block runs on).
QdqParams make_qdq_params(const GroupLayout& g, bool minmax_tuning, Device device = Device::cpu());
// In place: α, β ← clamp(·, 0, 1) (AutoRound clamps the parameter data before every use).
void clamp_minmax_(QdqParams& p);

// Which implementation qdq_weight / quantize_with_params use for the three integer types.
enum class QdqImpl { fused, composed };
// fused, unless the environment sets ARQ_QDQ_COMPOSED=1 (read once).
QdqImpl default_qdq_impl();
// True for the data types the fused kernels implement (int_sym, int_asym, int_sym_gptq).
bool has_fused_qdq(QDataType t);
// The fused kernels' view of a scheme and a layout.
QdqSpec qdq_spec(const QuantScheme& s, const GroupLayout& g);

// Differentiable qdq of a grouped weight wg [n_rows, G] (f32 constant): ŵ [n_rows, G] f32.
ag::Var qdq_grouped(const Tensor& wg, const GroupRange& r, const QdqParams& p, const QuantScheme& s);
// The same, reshaped to [out, in] (padding dropped) and cast to `weight_dtype`.
ag::Var qdq_weight(const Tensor& wg, const GroupRange& r, const QdqParams& p, const QuantScheme& s,
                   const GroupLayout& g, DType weight_dtype);
ag::Var qdq_weight(const Tensor& wg, const GroupRange& r, const QdqParams& p, const QuantScheme& s,
                   const GroupLayout& g, DType weight_dtype, QdqImpl impl);

// Fast path: freeze `w` [out, in] with parameter values v [n_rows, G], alpha/beta [n_rows, 1]
// (each may be undefined: V = 0, α = β = 1). Throws UsageError for a keep_fp scheme.
// The grouping, range and codes run on w's device (the fused kernel); the result is on the host.
QuantizedLinear quantize_with_params(const Tensor& w, const QuantScheme& s, const Tensor& v = {},
                                     const Tensor& alpha = {}, const Tensor& beta = {});
QuantizedLinear quantize_with_params(const Tensor& w, const QuantScheme& s, const Tensor& v, const Tensor& alpha,
                                     const Tensor& beta, QdqImpl impl);
// Plain round-to-nearest (iters = 0 without the importance search).
QuantizedLinear quantize_rtn(const Tensor& w, const QuantScheme& s);
// int_sym with given per-row scales (f32 [n_rows]), thresholded: u = clamp(round(x/s), −Q, Q−1) + Q.
// round_scale_first: round s to the scale dtype before computing the levels (the qdq rule);
// false: levels from the f32 scale, stored scale rounded afterwards (AutoRound's opt-RTN, §1.10).
QuantizedLinear quantize_sym_with_scales(const Tensor& w, const QuantScheme& s, const Tensor& scales,
                                         bool round_scale_first = true);

// Round a float to the nearest value of `dtype` (f16/bf16 ties to even; f32 unchanged).
float round_to_dtype(float x, DType dtype);

}  // namespace arq::quant
