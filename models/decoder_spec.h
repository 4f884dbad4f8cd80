// The hyper-parameters of a Llama-family decoder, normalized across families.
//
// Each family file (llama.cpp, mistral.cpp, qwen2.cpp, qwen3.cpp) turns its typed config
// (io::ModelConfig, read from config.json) into a DecoderSpec; the shared blocks only ever see
// this struct, so families differ by flags (biases, q/k norm, sliding windows, RoPE variant),
// never by copied code. Field names follow config.json (spec/formats.md §3) where one exists.
//
//   DecoderSpec c = decoder_spec(io::load_config("models/stories260k"));   // models/family.h
//   c.validate();                                     // ConfigError naming the bad field
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/backend.h"

namespace arq::models {

// config.json "rope_scaling" (or transformers v5 "rope_parameters"); spec/formats.md §2.5.
struct RopeScaling {
  std::string rope_type = "default";  // default | linear | dynamic | llama3 | yarn
  double factor = 1.0;
  double low_freq_factor = 1.0;       // llama3
  double high_freq_factor = 4.0;      // llama3
  int64_t original_max_position_embeddings = 0;  // llama3 / yarn; 0 = max_position_embeddings
  double beta_fast = 32.0;            // yarn
  double beta_slow = 1.0;             // yarn
  double mscale = 0.0;                // yarn (0 = absent)
  double mscale_all_dim = 0.0;        // yarn (0 = absent)
  std::optional<double> attention_factor{};  // yarn
  bool truncate = true;               // yarn
};

struct RopeParams {
  double theta = 10000.0;             // rope_theta
  int64_t dim = 0;                    // rotary dim (head_dim · partial_rotary_factor)
  int64_t max_position_embeddings = 2048;
  RopeScaling scaling;
  // rotate_half for HF checkpoints; interleaved for GGUF files (their Q/K rows are not permuted).
  RopeStyle style = RopeStyle::rotate_half;
};

struct DecoderSpec {
  std::string model_type = "llama";   // llama | mistral | qwen2 | qwen3
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;            // H
  int64_t intermediate_size = 0;      // I
  int64_t num_hidden_layers = 0;      // L
  int64_t num_attention_heads = 0;    // nh
  int64_t num_key_value_heads = 0;    // nkv
  int64_t head_dim = 0;               // hd (config head_dim, else H / nh)
  double rms_norm_eps = 1e-6;
  RopeParams rope;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;              // q/k/v_proj.bias (Qwen2; Llama attention_bias)
  bool o_bias = false;                // o_proj.bias (Llama attention_bias)
  bool mlp_bias = false;              // gate/up/down_proj.bias (Llama mlp_bias)
  bool qk_norm = false;               // self_attn.q_norm / k_norm (Qwen3)
  // Per layer: attention window W (key j visible to query i iff i − W < j ≤ i); 0 = full causal.
  std::vector<int64_t> sliding_window{};
  int64_t bos_token_id = -1;
  std::vector<int64_t> eos_token_ids{};
  double initializer_range = 0.02;
  std::string torch_dtype = "float32";

  int64_t window(int64_t layer) const {
    return layer < static_cast<int64_t>(sliding_window.size()) ? sliding_window[layer] : 0;
  }
  int64_t q_dim() const { return num_attention_heads * head_dim; }    // nh·hd
  int64_t kv_dim() const { return num_key_value_heads * head_dim; }   // nkv·hd

  // Shapes and values consistent with each other; throws ConfigError naming the field.
  void validate() const;
};

}  // namespace arq::models
