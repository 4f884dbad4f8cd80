// Memory-efficient scaled-dot-product attention with recomputation (the flash-attention
// algorithm), built from engine ops so that it runs, and is tested, on every device.
//
// attention_core computes the same function as attention_composed (the plain composition:
// scores = q·kᵀ, + mask, softmax, ·v) without ever holding the whole [b, nh, s, s_kv] score
// matrix: the queries are processed in chunks of rows whose f32 scores fit a byte budget; each
// chunk only touches the key range that its mask / causality / window leaves visible (a causal
// model computes about half of the score tiles); the forward saves only q, k, v and the output
// O, and the backward recomputes each chunk's scores and probabilities P (a chunk holds whole
// rows, so its softmax needs no saved per-row statistics and equals the forward's bit for bit):
// dV = Pᵀ·dO, dS = P ⊙ (dO·Vᵀ − rowsum(dO ⊙ O)), dQ = dS·K, dK = dSᵀ·Q.
//
// GQA without copying K/V: query head h uses kv head h / g (g = nh / nkv); the heads of one
// group are consecutive, so a chunk's queries of a group form one [cq·g, hd] matrix per kv head.
//
// Masked pairs: `mask` is additive (0 or kAttentionMaskedScore, the lowest finite f32; other
// values are added as they are, and only kAttentionMaskedScore entries let tiles be skipped);
// causal / window pairs are masked as if the mask held kAttentionMaskedScore there. A query row
// with EVERY key masked (a left-padding query) gets the composition's answer — softmax of equal
// scores, uniform over all s_kv keys, output mean(V) — and the composition's gradient there (the
// softmax Jacobian of those equal scores; finite differences see 0 for q and k, as −FLT_MAX + q·k
// rounds to −FLT_MAX), added in closed form so that no skipped tile has to be recomputed.
//
//   Var o = attention_core(q, k, v, {.scaling = 1 / std::sqrt(128.0), .causal = true});
//   // q [b, nh, s, hd], k/v [b, nkv, s_kv, hd] -> o [b, nh, s, hd]
#pragma once

#include <cfloat>
#include <cstddef>
#include <cstdint>

#include "autograd/var.h"

namespace arq::ag {

// The additive mask value of a masked (query, key) pair (models::kMaskedScore is the same).
inline constexpr float kAttentionMaskedScore = -FLT_MAX;

struct AttentionOptions {
  double scaling = 1.0;   // multiplies q·k (applied to q in q's dtype, as the composition does)
  bool causal = false;    // queries are the last s of the s_kv positions; key j > query i masked
  int64_t window = 0;     // with causal: key j visible to query i iff i − W < j ≤ i; 0 = none
  Tensor mask{};          // additive f32 [b or 1, 1, s, s_kv] on q's device, or undefined
  // Query rows per chunk; 0: from `score_budget_bytes` (and, with causal or a mask, at most
  // max(128, s/8) rows so that masked tiles can be skipped), or from the environment variable
  // ARQ_ATTENTION_CHUNK_ROWS when it is set (tests force tiny chunks through whole models).
  int64_t chunk_rows = 0;
  // Bytes of one chunk's f32 scores [b, nh, rows, s_kv] (several such temporaries live at once).
  size_t score_budget_bytes = size_t{256} << 20;
  // The per-row steps of each chunk (mask, structure, softmax, cast; the softmax VJP) as one fused
  // kernel each (engine/attention_rows.h, bit-identical on the CPU), or — false, or the
  // environment variable ARQ_ATTENTION_ROWS=chain — as the engine-op chain they replace (the
  // reference the fused kernels are tested against).
  bool fused_rows = true;
  // On CUDA, without a mask, for 16-bit q/k/v and head_dim 64 or 128: the flash attention kernels
  // (engine/flash_attention.h: no score tiles in memory, tensor cores) instead of the chunks.
  // false, or the environment variable ARQ_ATTENTION=chunked, keeps the chunked path.
  bool flash = true;
};

// q [b, nh, s, hd], k and v [b, nkv, s_kv, hd] (nkv divides nh), one floating dtype, one device
// -> [b, nh, s, hd] in q's dtype (a view of [b, s, nh, hd] memory: permuting it back to
// [b, s, nh·hd] is free). Scores and softmax are in f32 (f64 for f64 inputs).
Var attention_core(const Var& q, const Var& k, const Var& v, const AttentionOptions& opt);

// The environment's attention switches for A/B runs of whole models, read once per process:
//   ARQ_ATTENTION=composed / =chunked   one path everywhere (either one also keeps the flash
//                                       kernels off; models/blocks/attention.cpp obeys it);
//   ARQ_ATTENTION_CHUNK_ROWS=N          attention_core's chunk rows (set at all: the models take
//                                       the chunked path, as with =chunked);
//   ARQ_ATTENTION_ROWS=chain            the engine-op chain instead of the fused row kernels.
struct AttentionEnv {
  bool composed = false, chunked = false;
  bool chunk_rows_set = false;
  int64_t chunk_rows = 0;   // 0: unset or not a positive number
  bool rows_chain = false;
};
const AttentionEnv& attention_env();

// Whether attention_core takes the flash path for these inputs (see AttentionOptions::flash).
bool attention_flash_applies(const Var& q, const Var& k, const Var& v, const AttentionOptions& opt);

// The flash kernels of q's device (engine/flash_attention.h) as an autograd op, on any device
// that has them (the CPU's are the f64 plain-loop reference, for tests). No mask: causal and
// window only; `chunk_rows`, the budget and `fused_rows` are ignored. Same result layout as
// attention_core.
Var attention_flash(const Var& q, const Var& k, const Var& v, const AttentionOptions& opt);

// The reference composition of ag ops (materializes the scores; the VJPs of matmul, cast, add,
// softmax). Same arguments and result; `chunk_rows` and the budget are ignored.
Var attention_composed(const Var& q, const Var& k, const Var& v, const AttentionOptions& opt);

// Score elements attention_core computes for these inputs (b·nh·Σ_chunks rows·visible keys; the
// composition computes b·nh·s·s_kv): what the causal / window / mask tile skipping leaves, for
// benchmarks' FLOP counts and tests. q [b, nh, s, hd], k [b, nkv, s_kv, hd]; reads opt.mask once.
int64_t attention_score_elements(const Tensor& q, const Tensor& k, const AttentionOptions& opt);

// Rows per chunk attention_core uses for these sizes (tests and benchmarks report it).
int64_t attention_chunk_rows(const AttentionOptions& opt, int64_t batch, int64_t n_head, int64_t q_len,
                             int64_t kv_len, DType dtype);

}  // namespace arq::ag
