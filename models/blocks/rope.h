// Rotary position embedding tables (spec/formats.md §2.5).
//
// `rope_frequencies` turns RopeParams (theta, rotary dim, scaling variant) into the inverse
// frequencies and the attention scaling that multiplies cos and sin; `rope_tables` evaluates
// cos/sin for position ids. Arithmetic follows transformers step by step in f32 (inv_freq from
// the integer exponent 2i cast to f32, angle = p · inv_freq rounded to f32) so logits match a
// PyTorch reference to f32 rounding. The engine's `rope` op applies the tables with either
// pairing (rotate_half for HF checkpoints, interleaved for GGUF).
//
//   RopeTables t = rope_tables(cfg.rope, position_ids, DType::f32, Device::cpu());
//   Var q = ag::rope(q_heads, t.cos, t.sin, cfg.rope.style);   // q_heads [b, s, nh, hd]
#pragma once

#include <cstdint>
#include <vector>

#include "engine/tensor.h"
#include "models/decoder_spec.h"

namespace arq::models {

struct RopeFrequencies {
  std::vector<float> inv_freq;   // [dim / 2]
  float attention_scaling = 1;   // multiplies cos and sin (YaRN); 1 otherwise
};

// `seq_len` = largest position id + 1 of the current input; only the `dynamic` variant uses it.
// Throws ConfigError naming `rope_scaling.rope_type` (or the offending parameter).
RopeFrequencies rope_frequencies(const RopeParams& p, int64_t seq_len);

struct RopeTables {
  Tensor cos;   // [b, s, 1, dim/2] in the activation dtype (broadcasts over heads)
  Tensor sin;   // [b, s, 1, dim/2]
};

// position_ids: [b, s] (or [s]) integer tensor on any device; tables land on `device`.
RopeTables rope_tables(const RopeParams& p, const Tensor& position_ids, DType dtype, Device device);

// Names accepted for rope_scaling.rope_type; anything else is a ConfigError.
bool rope_type_supported(const std::string& rope_type);

}  // namespace arq::models
