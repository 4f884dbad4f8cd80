// Optimized RTN (spec/autoround.md §3, `opt_rtn_int_sym`): per group, a grid search over the
// scale that minimises the importance-weighted squared error Σ w·(s·L − x)², with w the
// importance matrix (per input channel, Σx² over calibration tokens / n_samples) or 1.
//
//   Tensor imatrix = ...;                                   // [in] f32, or undefined
//   QuantizedLinear q = quantize_opt_rtn(w, scheme, imatrix);
#pragma once

#include "quant/quantized_linear.h"
#include "quant/scheme.h"

namespace arq::quant {

// Opt-RTN is used for int_sym with bits < 8 (asym, gptq-sym and 8-bit fall back to plain RTN).
bool opt_rtn_applies(const QuantScheme& s);

// Search the scales and freeze. `imatrix` is [in] (any floating dtype) or undefined (w = 1).
// The integer levels use the searched f32 scale (thresholded); the stored scales are rounded
// to the scale dtype afterwards, as AutoRound packs them. Throws UsageError when
// !opt_rtn_applies(s).
QuantizedLinear quantize_opt_rtn(const Tensor& w, const QuantScheme& s, const Tensor& imatrix);

// The per-row scale search alone: f32 [n_rows] scales for w's grouped rows (tests).
Tensor opt_rtn_scales(const Tensor& w, const QuantScheme& s, const Tensor& imatrix);

}  // namespace arq::quant
