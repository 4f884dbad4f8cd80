// Llama (LlamaForCausalLM; spec/formats.md §3.1): the reference layout. `attention_bias` puts a
// bias on q/k/v/o, `mlp_bias` on gate/up/down; RoPE scaling variants come from rope_scaling.
#include "io/config.h"
#include "models/family.h"

namespace arq::models {

void llama_read(const io::ModelConfig& cfg, DecoderSpec& s, const std::string&) {
  const io::DecoderConfig& c = io::decoder_config(cfg);
  s.qkv_bias = c.attention_bias;
  s.o_bias = c.attention_bias;
  s.mlp_bias = c.mlp_bias;
}

void llama_write(const DecoderSpec& s, io::ModelConfig& cfg) {
  ARQ_CHECK(s.qkv_bias == s.o_bias, ConfigError,
            "llama: attention_bias covers q/k/v and o together; a spec with qkv_bias ", s.qkv_bias, " and o_bias ",
            s.o_bias, " has no config.json form");
  ARQ_CHECK(!s.qk_norm, ConfigError, "llama has no q_norm/k_norm (that is qwen3)");
  for (int64_t w : s.sliding_window)
    ARQ_CHECK(w == 0, ConfigError, "llama has no sliding window (use mistral or qwen2)");
  io::decoder_config(cfg).attention_bias = s.qkv_bias;
}

}  // namespace arq::models
