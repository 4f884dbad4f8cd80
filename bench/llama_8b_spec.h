// The Llama-3-8B decoder block the issue-8 benchmarks use (hidden 4096, intermediate 14336,
// 32 heads, 8 kv heads, head_dim 128, RoPE θ 500000): one block, a token vocabulary only as
// large as the block needs (the embedding is not part of the timed work).
#pragma once

#include "models/decoder_spec.h"

namespace arq::bench {

inline models::DecoderSpec llama_8b_block_spec() {
  models::DecoderSpec s;
  s.model_type = "llama";
  s.vocab_size = 256;
  s.hidden_size = 4096;
  s.intermediate_size = 14336;
  s.num_hidden_layers = 1;
  s.num_attention_heads = 32;
  s.num_key_value_heads = 8;
  s.head_dim = 128;
  s.rms_norm_eps = 1e-5;
  s.rope.theta = 500000;
  s.rope.dim = 128;
  s.rope.max_position_embeddings = 8192;
  s.sliding_window.assign(1, 0);
  s.validate();
  return s;
}

}  // namespace arq::bench
