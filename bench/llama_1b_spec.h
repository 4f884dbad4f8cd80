// The "1B" Llama shapes the CPU benchmarks share (TinyLlama-1.1B's block: hidden 2048,
// intermediate 5632, 16 heads, 8 kv heads, head_dim 128), with as many blocks and as large a
// vocabulary as a benchmark needs.
#pragma once

#include <cstdint>

#include "models/family.h"

namespace arq::bench {

inline models::DecoderSpec llama_1b_spec(int64_t layers, int64_t vocab) {
  models::DecoderSpec s = models::tiny_spec("llama");
  s.vocab_size = vocab;
  s.hidden_size = 2048;
  s.intermediate_size = 5632;
  s.num_hidden_layers = layers;
  s.num_attention_heads = 16;
  s.num_key_value_heads = 8;
  s.head_dim = 128;
  s.rms_norm_eps = 1e-5;
  s.rope.dim = 128;
  s.rope.max_position_embeddings = 4096;
  s.sliding_window.assign(static_cast<size_t>(layers), 0);
  s.tie_word_embeddings = false;
  s.validate();
  return s;
}

}  // namespace arq::bench
