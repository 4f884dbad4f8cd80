// The Llama shapes the benchmarks share, all from tiny_spec("llama") with the real widths:
//  - "1B": TinyLlama-1.1B's block (hidden 2048, intermediate 5632, 16 heads, 8 kv heads,
//    head_dim 128), with as many blocks and as large a vocabulary as a benchmark needs;
//  - the Llama-3-8B block of the issue-8 benchmarks (hidden 4096, intermediate 14336, 32 heads,
//    8 kv heads, head_dim 128, RoPE θ 500000): one block, a vocabulary only as large as the block
//    needs (the embedding is not part of the timed work).
#pragma once

#include <cstdint>

#include "models/family.h"

namespace arq::bench {

struct LlamaShape {
  int64_t hidden, intermediate, heads, kv_heads;
  int64_t layers, vocab;
  double rope_theta;
  int64_t max_positions;
};

inline models::DecoderSpec llama_spec(const LlamaShape& sh) {
  models::DecoderSpec s = models::tiny_spec("llama");
  s.vocab_size = sh.vocab;
  s.hidden_size = sh.hidden;
  s.intermediate_size = sh.intermediate;
  s.num_hidden_layers = sh.layers;
  s.num_attention_heads = sh.heads;
  s.num_key_value_heads = sh.kv_heads;
  s.head_dim = 128;
  s.rms_norm_eps = 1e-5;
  s.rope.theta = sh.rope_theta;
  s.rope.dim = 128;
  s.rope.max_position_embeddings = sh.max_positions;
  s.sliding_window.assign(static_cast<size_t>(sh.layers), 0);
  s.tie_word_embeddings = false;
  s.validate();
  return s;
}

inline models::DecoderSpec llama_1b_spec(int64_t layers, int64_t vocab) {
  return llama_spec({2048, 5632, 16, 8, layers, vocab, models::tiny_spec("llama").rope.theta, 4096});
}

inline models::DecoderSpec llama_8b_block_spec() { return llama_spec({4096, 14336, 32, 8, 1, 256, 500000, 8192}); }

}  // namespace arq::bench
