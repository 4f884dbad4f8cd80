// The row steps of chunked attention (autograd/attention.cpp) as one pass each: the per-row
// softmax of a score tile with its additive mask and causal / window structure, and the softmax
// VJP of that tile. Both replace a chain of engine ops (cast, add, where, softmax, cast; cast,
// sub, mul, cast), each a full pass over the tile, and compute the same float operations in the
// same order, so the CPU kernels equal the chain bit for bit (tests/autograd/test_attention.cpp).
//
// A tile is [b, h, r, g, k]: b batch, h kv heads, r query rows, g query heads per kv head, k keys
// (attention_core's chunk layout). Per row (query position i = q_first + row, key j = k_first +
// column), in C = f32 (f64 for f64 scores):
//   x_j = C(s_j) (+ mask[row, j]);  x_j = kMaskedScore where causal and (j > i or, with a window
//   W > 0, j <= i − W);  p = softmax(x) as arq::softmax computes it;  p = 0 on `dead` rows.
//   forward: P = round_act(p).   backward: P as forward, dS = round_act(p ⊙ (C(dP) − D_row)).
//
//   Tensor p = attention_probs(s, mask, {}, {.q_first = 7, .causal = true});   // s [b, h, r, g, k]
//   auto [pa, ds] = attention_probs_backward(s, mask, dead, dp, d_row, prm);
#pragma once

#include <cstdint>
#include <utility>

#include "engine/tensor.h"

namespace arq {

struct AttentionRowsParams {
  int64_t q_first = 0;   // absolute position of the tile's query row 0
  int64_t k_first = 0;   // absolute position of the tile's key column 0
  bool causal = false;   // key j > query i masked
  int64_t window = 0;    // with causal: key j <= i − window masked too; 0 = none
};

// ---- builders -------------------------------------------------------------------------------
// scores [b, h, r, g, k] floating (the activation dtype); mask [mb, r, k] (mb = b or 1, broadcast
// over h and g) of the compute dtype (f32; f64 for f64 scores) or undefined; dead [mb, r] u8 (1:
// the row's probabilities are set to 0) or undefined -> P [b, h, r, g, k] in scores' dtype.
Tensor attention_probs(const Tensor& scores, const Tensor& mask, const Tensor& dead, const AttentionRowsParams& prm);

// The same P, and dS = P ⊙ (dP − D) of the softmax VJP (D = rowsum(dO ⊙ O) as the caller computes
// it): dp [b, h, r, g, k] of scores' dtype, d_row [b, h, r, g] of the compute dtype. Returns
// {P, dS}, both in scores' dtype.
std::pair<Tensor, Tensor> attention_probs_backward(const Tensor& scores, const Tensor& mask, const Tensor& dead,
                                                   const Tensor& dp, const Tensor& d_row,
                                                   const AttentionRowsParams& prm);

// ---- the kernels' interface ---------------------------------------------------------------------
// The builders check shapes, dtypes and devices; scores, dp, d_row and the outputs are contiguous;
// mask and dead have last stride 1 (their first strides are passed through; a batch of 1 is
// broadcast). ds undefined: forward only.
class AttentionRowsKernels {
 public:
  virtual ~AttentionRowsKernels() = default;
  virtual void probs(const Tensor& scores, const Tensor& mask, const Tensor& dead, const Tensor& dp, const Tensor& d_row,
                     const AttentionRowsParams& prm, Tensor& p, Tensor& ds) = 0;
};

AttentionRowsKernels& attention_rows_kernels_for(const Device& d);
// Test/benchmark only (as set_backend_override): attention_rows_kernels_for returns `k` for devices of type `t`.
void set_attention_rows_kernels_override(DeviceType t, AttentionRowsKernels* k);
AttentionRowsKernels& cpu_attention_rows_kernels();    // kernels/cpu/attention_rows.cpp
AttentionRowsKernels& cuda_attention_rows_kernels();   // kernels/cuda/cuda_attention_rows.cu, or its stub

}  // namespace arq
