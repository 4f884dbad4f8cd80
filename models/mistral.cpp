// Mistral (MistralForCausalLM; spec/formats.md §3.2): Llama tensors without biases, and a
// `sliding_window` that, when non-null, applies to every layer.
#include <variant>

#include "io/config.h"
#include "models/family.h"

namespace arq::models {

void mistral_read(const io::ModelConfig& cfg, DecoderSpec& s, const std::string& origin) {
  const auto* m = std::get_if<io::MistralConfig>(&cfg);
  ARQ_CHECK(m != nullptr, ConfigError, origin, ": model_type mistral with a non-Mistral config");
  ARQ_CHECK(!m->attention_bias && !m->mlp_bias, ConfigError, origin,
            ": mistral has no attention_bias/mlp_bias (got attention_bias ", m->attention_bias, ", mlp_bias ",
            m->mlp_bias, ")");
  const int64_t w = m->sliding_window.value_or(0);
  ARQ_CHECK(w >= 0, ConfigError, origin, ": sliding_window must be positive or null, got ", w);
  s.sliding_window.assign(static_cast<size_t>(s.num_hidden_layers), w);
}

void mistral_write(const DecoderSpec& s, io::ModelConfig& cfg) {
  ARQ_CHECK(!s.qkv_bias && !s.o_bias && !s.mlp_bias && !s.qk_norm, ConfigError,
            "mistral has no biases and no q/k norms");
  const int64_t w = s.sliding_window.empty() ? 0 : s.sliding_window.front();
  for (int64_t x : s.sliding_window)
    ARQ_CHECK(x == w, ConfigError, "mistral applies one sliding_window to every layer; per-layer windows differ");
  auto& m = std::get<io::MistralConfig>(cfg);
  if (w > 0) m.sliding_window = w;
  else m.sliding_window.reset();
}

}  // namespace arq::models
