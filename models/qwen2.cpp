// Qwen2 / Qwen2.5 (Qwen2ForCausalLM; spec/formats.md §3.3): Llama layout with biases on
// q/k/v (not o); sliding windows per layer from `layer_types` (resolved by io::config from
// use_sliding_window / max_window_layers when absent).
#include <variant>

#include "io/config.h"
#include "models/family.h"

namespace arq::models {

namespace {

void read_windows(const io::Qwen2Config& q, DecoderSpec& s, const std::string& origin) {
  const int64_t w = q.sliding_window.value_or(0);
  for (size_t l = 0; l < q.layer_types.size() && l < s.sliding_window.size(); ++l) {
    if (q.layer_types[l] != "sliding_attention") continue;
    ARQ_CHECK(w > 0, ConfigError, origin, ": layer_types[", l, "] is sliding_attention but sliding_window is null");
    s.sliding_window[l] = w;
  }
}

}  // namespace

void qwen_write_windows(const DecoderSpec& s, io::Qwen2Config& q) {
  int64_t w = 0;
  q.layer_types.clear();
  for (int64_t x : s.sliding_window) {
    ARQ_CHECK(x == 0 || w == 0 || x == w, ConfigError, "qwen: all sliding layers share one sliding_window");
    if (x > 0) w = x;
    q.layer_types.push_back(x > 0 ? "sliding_attention" : "full_attention");
  }
  q.use_sliding_window = w > 0;
  if (w > 0) q.sliding_window = w;
  else q.sliding_window.reset();
  if (w > 0) {
    // max_window_layers: first sliding layer (transformers' rule), kept consistent with layer_types.
    int64_t first = 0;
    while (first < static_cast<int64_t>(s.sliding_window.size()) && s.sliding_window[static_cast<size_t>(first)] == 0) ++first;
    q.max_window_layers = first;
  }
}

void qwen2_read(const io::ModelConfig& cfg, DecoderSpec& s, const std::string& origin) {
  const auto* q = std::get_if<io::Qwen2Config>(&cfg);
  ARQ_CHECK(q != nullptr, ConfigError, origin, ": model_type qwen2 with a non-Qwen2 config");
  s.qkv_bias = true;   // Qwen2Attention always has q/k/v biases and never an o bias
  s.o_bias = false;
  s.mlp_bias = false;
  read_windows(*q, s, origin);
}

void qwen2_write(const DecoderSpec& s, io::ModelConfig& cfg) {
  ARQ_CHECK(s.qkv_bias && !s.o_bias && !s.mlp_bias && !s.qk_norm, ConfigError,
            "qwen2 has q/k/v biases, no o/mlp bias and no q/k norms");
  qwen_write_windows(s, std::get<io::Qwen2Config>(cfg));
}

// Shared with qwen3.cpp (Qwen3Config derives from Qwen2Config).
void qwen_read_windows(const io::Qwen2Config& q, DecoderSpec& s, const std::string& origin) { read_windows(q, s, origin); }

}  // namespace arq::models
