// Flash attention: causal / windowed / full scaled-dot-product attention with GQA in one kernel
// per direction, never writing the [s, s_kv] scores to memory (Dao et al., FlashAttention-2:
// online softmax over key tiles; the backward recomputes P = exp(S − LSE) from the saved per-row
// log-sum-exp). ag::attention_core (autograd/attention.h) takes this path on CUDA for 16-bit
// activations and head_dim 64 or 128 without an explicit mask; the CPU kernel is the plain-loop
// reference (f64 arithmetic) that the CUDA kernels are tested against.
//
// Per (batch, query head h, query row i; kv head h / g), with x_ij = scaling·q_i·k_j over the
// visible keys j (all; causal: j ≤ past + i; window W: also j > past + i − W):
//   forward:  lse_i = log Σ_j exp(x_ij) (f32),  O_i = Σ_j exp(x_ij − lse_i)·v_j  (activation dtype)
//   backward: D_i = dO_i·O_i,  P_ij = exp(x_ij − lse_i),  dS_ij = P_ij·(dO_i·v_j − D_i),
//             dQ_i = scaling·Σ_j dS_ij k_j,  dK_j = scaling·Σ_i dS_ij q_i,  dV_j = Σ_i P_ij dO_i
//             (dK, dV summed over the g query heads of the kv head).
//
//   auto [o, lse] = flash_attention_forward(q, k, v, {.scaling = 0.088, .causal = true});
//   auto g = flash_attention_backward(q, k, v, o, lse, dout, {.scaling = 0.088, .causal = true});
#pragma once

#include <cstdint>

#include "engine/tensor.h"

namespace arq {

struct FlashAttentionParams {
  double scaling = 1.0;  // multiplies q·k (in f32, not rounded to the activation dtype)
  bool causal = false;   // queries are the last s of the s_kv positions; key j > query i masked
  int64_t window = 0;    // with causal: key j visible to query i iff i − W < j ≤ i; 0 = none
};

struct FlashForward {
  Tensor o;     // [b, nh, s, hd] in q's dtype: a view of [b, s, nh, hd] memory
  Tensor lse;   // [b, nh, s] f32 (f64 for f64 inputs): log-sum-exp of each row's scaled scores
};

struct FlashGrads {
  Tensor dq;    // [b, nh, s, hd]: a view of [b, s, nh, hd] memory
  Tensor dk;    // [b, nkv, s_kv, hd]: a view of [b, s_kv, nkv, hd] memory
  Tensor dv;    // likewise
};

// The rules every attention op checks (flash builders, ag::attention_core, ag::attention_composed):
// q [b, nh, s, hd], k and v [b, nkv, s_kv, hd] with nkv dividing nh, one floating dtype, one
// device; causal needs s ≤ s_kv; a window needs causal. Throws ShapeError / DTypeError /
// DeviceError / UsageError naming `op` and the shapes.
void check_attention_inputs(const char* op, const Tensor& q, const Tensor& k, const Tensor& v, bool causal,
                            int64_t window);

// True when the kernels of q's device run these inputs: the CPU reference runs every floating
// dtype and head_dim; CUDA runs bf16 and f16 with head_dim 64 or 128 (sm_80 and later).
bool flash_attention_supported(const Tensor& q, const Tensor& k, const Tensor& v);

// q [b, nh, s, hd], k and v [b, nkv, s_kv, hd] (nkv divides nh; causal needs s ≤ s_kv), any
// strides (inputs without a unit last stride are copied).
FlashForward flash_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const FlashAttentionParams& p);

// o and lse from flash_attention_forward of the same inputs; dout [b, nh, s, hd] of q's dtype.
FlashGrads flash_attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                                    const Tensor& lse, const Tensor& dout, const FlashAttentionParams& p);

// ---- the kernels' interface ---------------------------------------------------------------------
// The builders check shapes, dtypes and devices and allocate the outputs. Every tensor handed to
// a kernel is a 4-d view [b, heads, rows, hd] with a unit last stride and 8-element aligned other
// strides (lse: contiguous [b, nh, s]).
class FlashAttentionKernels {
 public:
  virtual ~FlashAttentionKernels() = default;
  virtual bool supports(DType dt, int64_t head_dim) const = 0;
  virtual void forward(const Tensor& q, const Tensor& k, const Tensor& v, const FlashAttentionParams& p, Tensor& o,
                       Tensor& lse) = 0;
  virtual void backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o, const Tensor& lse,
                        const Tensor& dout, const FlashAttentionParams& p, Tensor& dq, Tensor& dk, Tensor& dv) = 0;
};

FlashAttentionKernels& flash_attention_kernels_for(const Device& d);
// Test/benchmark only (as set_backend_override): flash_attention_kernels_for returns `k` for devices of type `t`.
void set_flash_attention_kernels_override(DeviceType t, FlashAttentionKernels* k);
FlashAttentionKernels& cpu_flash_attention_kernels();    // kernels/cpu/flash_attention.cpp
FlashAttentionKernels& cuda_flash_attention_kernels();   // kernels/cuda/cuda_flash_attention.cu, or its stub

}  // namespace arq
