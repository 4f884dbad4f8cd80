// config.json → typed configs, one struct per supported family, field names as in the JSON.
//
// A default-constructed family struct holds the defaults of the transformers config class
// (so a key absent from config.json reads as transformers would read it); `parse_config`
// overwrites what the file gives, checks every type (ConfigError naming the field and file) and
// resolves derived values (head_dim = hidden_size / num_attention_heads when absent or null,
// num_key_value_heads = num_attention_heads when null, Qwen `layer_types`). Keys we do not model
// are kept in `extra` so that read → write keeps them.
//
//   ModelConfig cfg = load_config("models/stories260k");        // folder or config.json path
//   const DecoderConfig& d = decoder_config(cfg);               // fields every family has
//   if (auto* moe = std::get_if<Qwen3MoeConfig>(&cfg)) { ... moe->num_experts ... }
//   save_config("out/", cfg);                                   // config.json, HF style
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "io/json_util.h"

namespace arq::io {

// `rope_scaling` (or transformers v5 `rope_parameters`). rope_type: "default", "linear",
// "dynamic", "llama3", "yarn", "longrope", "mrope" (Qwen2-VL; default inv_freq + sections).
struct RopeScaling {
  std::string rope_type = "default";
  bool legacy_type_key = false;   // the file said "type" rather than "rope_type"
  std::optional<double> factor;   // required by linear, dynamic, llama3, yarn
  std::optional<int64_t> original_max_position_embeddings;
  double low_freq_factor = 1.0;   // llama3 (required there)
  double high_freq_factor = 4.0;  // llama3 (required there)
  double beta_fast = 32.0;        // yarn
  double beta_slow = 1.0;         // yarn
  std::optional<double> mscale;            // yarn (DeepSeek)
  std::optional<double> mscale_all_dim;    // yarn (DeepSeek)
  std::optional<double> attention_factor;  // yarn, longrope
  bool truncate = true;                    // yarn
  std::vector<double> short_factor;        // longrope
  std::vector<double> long_factor;         // longrope
  std::vector<int64_t> mrope_section;      // mrope
};

// Fields shared by every decoder family. Defaults are LlamaConfig's.
struct DecoderConfig {
  std::string model_type;
  std::vector<std::string> architectures;
  int64_t vocab_size = 32000;
  int64_t hidden_size = 4096;
  int64_t intermediate_size = 11008;
  int64_t num_hidden_layers = 32;
  int64_t num_attention_heads = 32;
  int64_t num_key_value_heads = 0;   // 0 while unresolved: becomes num_attention_heads
  int64_t head_dim = 0;              // 0 while unresolved: becomes hidden_size / num_attention_heads
  std::string hidden_act = "silu";
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  std::optional<RopeScaling> rope_scaling;
  bool attention_bias = false;
  bool mlp_bias = false;
  bool tie_word_embeddings = false;
  std::string torch_dtype;           // "float32", "bfloat16", ...; "" when absent ("dtype" also read)
  std::optional<int64_t> bos_token_id = 1;
  std::vector<int64_t> eos_token_id = {2};   // int or list in the file
  std::optional<int64_t> pad_token_id;
  double initializer_range = 0.02;
  JsonValue extra = JsonValue::object();   // keys not modelled here, kept for writing
};

struct LlamaConfig : DecoderConfig {
  int64_t pretraining_tp = 1;
};

struct MistralConfig : DecoderConfig {
  MistralConfig() {
    intermediate_size = 14336;
    num_key_value_heads = 8;
    max_position_embeddings = 4096 * 32;
  }
  std::optional<int64_t> sliding_window = 4096;   // null: full attention
};

struct MixtralConfig : MistralConfig {
  MixtralConfig() {
    rms_norm_eps = 1e-5;
    rope_theta = 1e6;
    sliding_window.reset();
  }
  int64_t num_local_experts = 8;
  int64_t num_experts_per_tok = 2;
  double router_aux_loss_coef = 0.001;
  double router_jitter_noise = 0.0;
};

struct Qwen2Config : DecoderConfig {
  Qwen2Config() {
    vocab_size = 151936;
    intermediate_size = 22016;
    num_key_value_heads = 32;
    max_position_embeddings = 32768;
    bos_token_id.reset();
    eos_token_id.clear();
  }
  bool use_sliding_window = false;
  std::optional<int64_t> sliding_window = 4096;   // set to null when !use_sliding_window (as transformers)
  int64_t max_window_layers = 28;
  std::vector<std::string> layer_types;   // "full_attention" / "sliding_attention", one per layer
};

struct Qwen3Config : Qwen2Config {
  Qwen3Config() { head_dim = 128; }
};

struct Qwen2MoeConfig : Qwen2Config {
  Qwen2MoeConfig() {
    hidden_size = 2048;
    intermediate_size = 5632;
    num_hidden_layers = 24;
    num_attention_heads = 16;
    num_key_value_heads = 16;
  }
  int64_t num_experts = 60;
  int64_t num_experts_per_tok = 4;
  int64_t moe_intermediate_size = 1408;
  int64_t shared_expert_intermediate_size = 5632;
  bool norm_topk_prob = false;
  int64_t decoder_sparse_step = 1;
  std::vector<int64_t> mlp_only_layers;
  double router_aux_loss_coef = 0.001;
  bool qkv_bias = true;
};

struct Qwen3MoeConfig : Qwen2Config {
  Qwen3MoeConfig() {
    hidden_size = 2048;
    intermediate_size = 6144;
    num_hidden_layers = 24;
    num_attention_heads = 32;
    num_key_value_heads = 4;
  }
  int64_t num_experts = 128;
  int64_t num_experts_per_tok = 8;
  int64_t moe_intermediate_size = 768;
  bool norm_topk_prob = false;
  int64_t decoder_sparse_step = 1;
  std::vector<int64_t> mlp_only_layers;
  double router_aux_loss_coef = 0.001;
};

// DeepSeek-V2 (MLA + DeepSeekMoE). head_dim resolves to qk_rope_head_dim.
struct DeepseekV2Config : DecoderConfig {
  DeepseekV2Config() {
    vocab_size = 102400;
    num_hidden_layers = 30;
    num_key_value_heads = 32;
    bos_token_id = 100000;
    eos_token_id = {100001};
  }
  std::optional<int64_t> q_lora_rank = 1536;   // null: plain q_proj (V2-Lite)
  int64_t kv_lora_rank = 512;
  int64_t qk_nope_head_dim = 128;
  int64_t qk_rope_head_dim = 64;
  int64_t v_head_dim = 128;
  int64_t moe_intermediate_size = 1407;
  std::optional<int64_t> n_routed_experts;
  std::optional<int64_t> n_shared_experts;
  std::optional<int64_t> num_experts_per_tok;
  std::optional<int64_t> n_group;
  std::optional<int64_t> topk_group;
  std::string topk_method = "greedy";      // greedy | group_limited_greedy | noaux_tc
  std::string scoring_func = "softmax";    // softmax | sigmoid
  bool norm_topk_prob = false;
  double routed_scaling_factor = 1.0;
  int64_t first_k_dense_replace = 0;
  int64_t moe_layer_freq = 1;
  int64_t num_nextn_predict_layers = 0;
  bool rope_interleave = true;
};

struct DeepseekV3Config : DeepseekV2Config {
  DeepseekV3Config() {
    vocab_size = 129280;
    hidden_size = 7168;
    intermediate_size = 18432;
    num_hidden_layers = 61;
    num_attention_heads = 128;
    num_key_value_heads = 128;
    max_position_embeddings = 4096;
    bos_token_id = 0;
    eos_token_id = {1};
    moe_intermediate_size = 2048;
    n_routed_experts = 256;
    n_shared_experts = 1;
    num_experts_per_tok = 8;
    n_group = 8;
    topk_group = 4;
    topk_method = "noaux_tc";
    scoring_func = "sigmoid";
    norm_topk_prob = true;
    routed_scaling_factor = 2.5;
    first_k_dense_replace = 3;
    num_nextn_predict_layers = 1;
  }
};

struct Qwen2VLVisionConfig {
  int64_t depth = 32;
  int64_t embed_dim = 1280;
  int64_t hidden_size = 3584;     // LLM hidden size (merger output)
  std::string hidden_act = "quick_gelu";
  int64_t mlp_ratio = 4;
  int64_t num_heads = 16;
  int64_t in_chans = 3;           // "in_channels" is accepted too
  int64_t patch_size = 14;
  int64_t spatial_merge_size = 2;
  int64_t temporal_patch_size = 2;
  JsonValue extra = JsonValue::object();
};

struct Qwen2VLConfig : Qwen2Config {
  Qwen2VLConfig() {
    vocab_size = 152064;
    hidden_size = 8192;
    intermediate_size = 29568;
    num_hidden_layers = 80;
    num_attention_heads = 64;
    num_key_value_heads = 8;
    rms_norm_eps = 1e-5;
    rope_theta = 1e6;
    max_window_layers = 80;
  }
  Qwen2VLVisionConfig vision_config;
  int64_t image_token_id = 151655;
  int64_t video_token_id = 151656;
  int64_t vision_start_token_id = 151652;
  int64_t vision_end_token_id = 151653;
  bool nested_text_config = false;   // the file nested the LLM fields under "text_config"
};

using ModelConfig = std::variant<LlamaConfig, MistralConfig, MixtralConfig, Qwen2Config, Qwen3Config,
                                 Qwen2MoeConfig, Qwen3MoeConfig, DeepseekV2Config, DeepseekV3Config,
                                 Qwen2VLConfig>;

// model_type strings we read, in variant order: llama, mistral, mixtral, qwen2, qwen3,
// qwen2_moe, qwen3_moe, deepseek_v2, deepseek_v3, qwen2_vl.
const std::vector<std::string>& supported_model_types();

// The family struct for `model_type` with transformers defaults (ConfigError when unknown).
ModelConfig default_config(const std::string& model_type);

// Parse config.json text; `origin` names the file in errors.
ModelConfig parse_config(std::string_view json, const std::string& origin = "config.json");
// Read `<folder>/config.json`, or the file itself when `path` is a file.
ModelConfig load_config(const std::string& path);

const DecoderConfig& decoder_config(const ModelConfig& c);
DecoderConfig& decoder_config(ModelConfig& c);

// Fill derived values (head_dim, num_key_value_heads, layer_types, model_type, architectures)
// and check ranges (ConfigError). parse_config calls it; call it after building a config by hand.
void resolve_config(ModelConfig& c, const std::string& origin = "config");

// HF-style JSON (2-space indent, sorted keys, trailing newline) of a resolved config.
std::string config_to_json(const ModelConfig& c);
// Write `<folder>/config.json` atomically.
void save_config(const std::string& folder, const ModelConfig& c);

}  // namespace arq::io
