// Qwen3 (Qwen3ForCausalLM; spec/formats.md §3.4): Llama layout with per-head q/k RMSNorm
// (q_norm/k_norm, [head_dim]) applied before RoPE, an explicit head_dim, biases only with
// attention_bias, and Qwen2's per-layer sliding windows.
#include <variant>

#include "io/config.h"
#include "models/family.h"

namespace arq::models {

void qwen_read_windows(const io::Qwen2Config& q, DecoderSpec& s, const std::string& origin);   // qwen2.cpp
void qwen_write_windows(const DecoderSpec& s, io::Qwen2Config& q);                             // qwen2.cpp

void qwen3_read(const io::ModelConfig& cfg, DecoderSpec& s, const std::string& origin) {
  const auto* q = std::get_if<io::Qwen3Config>(&cfg);
  ARQ_CHECK(q != nullptr, ConfigError, origin, ": model_type qwen3 with a non-Qwen3 config");
  s.qk_norm = true;
  s.qkv_bias = q->attention_bias;
  s.o_bias = q->attention_bias;
  s.mlp_bias = false;
  qwen_read_windows(*q, s, origin);
}

void qwen3_write(const DecoderSpec& s, io::ModelConfig& cfg) {
  ARQ_CHECK(s.qk_norm && s.qkv_bias == s.o_bias && !s.mlp_bias, ConfigError,
            "qwen3 has q/k norms, attention_bias on q/k/v/o together and no mlp bias");
  auto& q = std::get<io::Qwen3Config>(cfg);
  q.attention_bias = s.qkv_bias;
  qwen_write_windows(s, q);
}

}  // namespace arq::models
