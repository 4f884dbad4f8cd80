// Multi-head attention with grouped-query heads (spec/formats.md §2.4), the variants of the
// Llama family as flags: q/k/v/o biases (Qwen2, Llama attention_bias), per-head q/k RMSNorm
// before RoPE (Qwen3), sliding windows and padding/packing masks (through `attention_mask`),
// partial rotary dims, and an optional KV cache for generation.
//
// GQA without copying K/V: query head h uses kv head h / g (g = nh / nkv), and the heads of one
// group are consecutive, so Q [b, nh, s, hd] is viewed as [b, nkv, g·s, hd] and multiplied by
// Kᵀ [b, nkv, hd, s_kv] in one batched GEMM. This is the same arithmetic as repeating each kv
// head g times (transformers' repeat_kv), at 1/g of the K/V memory.
//
// Without a KV cache (calibration, tuning, evaluation, training), once the f32 scores
// [b, nh, s, s_kv] would take 32 MiB or more, the scores go through ag::attention_core
// (autograd/attention.h): chunks of queries, only the key tiles the mask leaves visible, a
// backward that recomputes them — never the whole score matrix. Generation steps (with a cache)
// and smaller problems use the composition ag::attention_composed; the environment variable
// ARQ_ATTENTION=composed or =chunked selects one path everywhere (A/B comparisons of whole runs).
// When the mask is only the causal / window structure (AttentionInputs::structural_mask) and the
// flash kernels run the inputs (CUDA, bf16/f16, head_dim 64 or 128), attention_core's flash path
// is taken whatever the size: causality goes in as a flag and the mask is not read.
//
//   Var y = attention(x, w, AttentionParams{.n_head = 8, .n_head_kv = 4, .head_dim = 8,
//                                           .rotary_dim = 8, .scaling = 1 / sqrt(8.0)},
//                     AttentionInputs{.cos = t.cos, .sin = t.sin, .mask = mask});
#pragma once

#include <cstdint>

#include "autograd/ops.h"
#include "models/blocks/layers.h"

namespace arq::models {

struct AttentionWeights {
  ag::Var q{};        // [nh·hd, H]
  ag::Var k{};        // [nkv·hd, H]
  ag::Var v{};        // [nkv·hd, H]
  ag::Var o{};        // [H, nh·hd]
  ag::Var q_bias{};   // [nh·hd] or undefined
  ag::Var k_bias{};   // [nkv·hd]
  ag::Var v_bias{};   // [nkv·hd]
  ag::Var o_bias{};   // [H]
  ag::Var q_norm{};   // [hd] per-head RMSNorm weight (Qwen3) or undefined
  ag::Var k_norm{};   // [hd]
};

struct AttentionParams {
  int64_t n_head = 0;       // nh
  int64_t n_head_kv = 0;    // nkv (divides nh)
  int64_t head_dim = 0;     // hd
  int64_t rotary_dim = 0;   // RoPE applies to the first rotary_dim of each head (≤ hd, even)
  RopeStyle rope_style = RopeStyle::rotate_half;
  double scaling = 0;       // multiplies q·k (hd^-0.5)
  double norm_eps = 1e-6;   // q_norm / k_norm eps
};

struct AttentionInputs {
  Tensor cos{};    // [b, s, 1, rotary_dim/2] activation dtype
  Tensor sin{};    // [b, s, 1, rotary_dim/2]
  Tensor mask{};   // additive f32 [b or 1, 1, s, s_kv] (0 or very negative); undefined: no mask
  // The mask is exactly attention_mask({.q_len = s, .kv_len = s_kv, .window = window}): causal
  // structure only, no padding or segments (lets the flash kernels take causality as a flag).
  bool structural_mask = false;
  int64_t window = 0;
};

// K/V of earlier positions for one layer (generation only, no gradients).
struct KvCacheLayer {
  Tensor k{};            // [b, nkv, capacity, hd]
  Tensor v{};            // [b, nkv, capacity, hd]
  int64_t length = 0;  // positions filled
};

// x [b, s, H] -> [b, s, H]. With a cache, the s new positions are appended after cache->length
// and attend to all cached ones (the mask must then be [., 1, s, length + s]). `observe` (may be
// null) sees the inputs of "q_proj", "k_proj", "v_proj" (all x) and "o_proj" ([b, s, nh·hd]).
ag::Var attention(const ag::Var& x, const AttentionWeights& w, const AttentionParams& p, const AttentionInputs& in,
                  KvCacheLayer* cache = nullptr, const LinearObserver* observe = nullptr);

// ---- masks -----------------------------------------------------------------------------------

struct MaskSpec {
  int64_t q_len = 0;    // queries are the last q_len of the kv_len positions
  int64_t kv_len = 0;
  int64_t window = 0;   // sliding window W (key j visible to query i iff i − W < j ≤ i); 0 = none
  Tensor key_padding{};   // [b, kv_len], nonzero = real token; undefined = no padding
  Tensor segment_ids{};   // [b, kv_len] integers: packed samples attend only within their segment
};

// The value written for a masked (query, key) pair: the lowest finite f32, so a row with every
// key masked (a padding query) stays finite instead of turning into NaN.
inline constexpr float kMaskedScore = -3.4028234663852886e38f;

// Causal mask combined with the window, padding and segments: f32 [b or 1, 1, q_len, kv_len]
// on the CPU, 0 where attention is allowed and kMaskedScore elsewhere.
Tensor attention_mask(const MaskSpec& spec);

}  // namespace arq::models
