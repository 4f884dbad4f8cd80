#include "models/family.h"

#include "engine/error.h"
#include "models/blocks/rope.h"

namespace arq::models {

namespace {

RopeScaling rope_scaling_from(const io::RopeScaling& r, const std::string& origin) {
  RopeScaling s;
  s.rope_type = r.rope_type;
  ARQ_CHECK(rope_type_supported(r.rope_type), ConfigError, origin, ": rope_scaling.rope_type '", r.rope_type,
            "' is not supported (supported: default, linear, dynamic, llama3, yarn)");
  const bool needs_factor = r.rope_type == "linear" || r.rope_type == "dynamic" || r.rope_type == "llama3" ||
                            r.rope_type == "yarn";
  ARQ_CHECK(!needs_factor || r.factor.has_value(), ConfigError, origin, ": rope_scaling.factor is required for rope_type '",
            r.rope_type, "'");
  s.factor = r.factor.value_or(1.0);
  s.low_freq_factor = r.low_freq_factor;
  s.high_freq_factor = r.high_freq_factor;
  s.original_max_position_embeddings = r.original_max_position_embeddings.value_or(0);
  s.beta_fast = r.beta_fast;
  s.beta_slow = r.beta_slow;
  s.mscale = r.mscale.value_or(0.0);
  s.mscale_all_dim = r.mscale_all_dim.value_or(0.0);
  s.attention_factor = r.attention_factor;
  s.truncate = r.truncate;
  return s;
}

io::RopeScaling rope_scaling_to(const RopeScaling& s) {
  io::RopeScaling r;
  r.rope_type = s.rope_type;
  if (s.rope_type != "default") r.factor = s.factor;
  r.low_freq_factor = s.low_freq_factor;
  r.high_freq_factor = s.high_freq_factor;
  if (s.original_max_position_embeddings > 0) r.original_max_position_embeddings = s.original_max_position_embeddings;
  r.beta_fast = s.beta_fast;
  r.beta_slow = s.beta_slow;
  if (s.mscale != 0) r.mscale = s.mscale;
  if (s.mscale_all_dim != 0) r.mscale_all_dim = s.mscale_all_dim;
  r.attention_factor = s.attention_factor;
  r.truncate = s.truncate;
  return r;
}

}  // namespace

const std::vector<Family>& families() {
  static const std::vector<Family> f = {
      {"llama", "LlamaForCausalLM", llama_read, llama_write},
      {"mistral", "MistralForCausalLM", mistral_read, mistral_write},
      {"qwen2", "Qwen2ForCausalLM", qwen2_read, qwen2_write},
      {"qwen3", "Qwen3ForCausalLM", qwen3_read, qwen3_write},
  };
  return f;
}

const Family& family_for(const std::string& model_type) {
  std::string known;
  for (const Family& f : families()) {
    if (model_type == f.model_type) return f;
    known += known.empty() ? f.model_type : cat(", ", f.model_type);
  }
  throw ConfigError(cat("model_type '", model_type, "' is not supported by the model graphs (supported: ", known, ")"));
}

DecoderSpec decoder_spec(const io::ModelConfig& cfg, const std::string& origin) {
  const io::DecoderConfig& c = io::decoder_config(cfg);
  const Family& fam = family_for(c.model_type);
  ARQ_CHECK(c.hidden_act == "silu", ConfigError, origin, ": hidden_act '", c.hidden_act,
            "' is not supported (only silu)");
  DecoderSpec s;
  s.model_type = c.model_type;
  s.vocab_size = c.vocab_size;
  s.hidden_size = c.hidden_size;
  s.intermediate_size = c.intermediate_size;
  s.num_hidden_layers = c.num_hidden_layers;
  s.num_attention_heads = c.num_attention_heads;
  s.num_key_value_heads = c.num_key_value_heads > 0 ? c.num_key_value_heads : c.num_attention_heads;
  s.head_dim = c.head_dim > 0 ? c.head_dim : (c.num_attention_heads > 0 ? c.hidden_size / c.num_attention_heads : 0);
  s.rms_norm_eps = c.rms_norm_eps;
  s.rope.theta = c.rope_theta;
  s.rope.dim = s.head_dim;
  s.rope.max_position_embeddings = c.max_position_embeddings;
  if (c.rope_scaling) s.rope.scaling = rope_scaling_from(*c.rope_scaling, origin);
  s.tie_word_embeddings = c.tie_word_embeddings;
  s.bos_token_id = c.bos_token_id.value_or(-1);
  s.eos_token_ids = c.eos_token_id;
  s.initializer_range = c.initializer_range;
  s.torch_dtype = c.torch_dtype.empty() ? "float32" : c.torch_dtype;
  s.sliding_window.assign(static_cast<size_t>(std::max<int64_t>(s.num_hidden_layers, 0)), 0);
  fam.read(cfg, s, origin);
  try {
    s.validate();
  } catch (const ConfigError& e) {
    throw ConfigError(cat(origin, ": ", e.what()));
  }
  return s;
}

io::ModelConfig model_config(const DecoderSpec& s) {
  const Family& fam = family_for(s.model_type);
  io::ModelConfig cfg = io::default_config(s.model_type);
  io::DecoderConfig& c = io::decoder_config(cfg);
  c.model_type = s.model_type;
  c.architectures = {fam.architecture};
  c.vocab_size = s.vocab_size;
  c.hidden_size = s.hidden_size;
  c.intermediate_size = s.intermediate_size;
  c.num_hidden_layers = s.num_hidden_layers;
  c.num_attention_heads = s.num_attention_heads;
  c.num_key_value_heads = s.num_key_value_heads;
  c.head_dim = s.head_dim;
  c.hidden_act = "silu";
  c.max_position_embeddings = s.rope.max_position_embeddings;
  c.rms_norm_eps = s.rms_norm_eps;
  c.rope_theta = s.rope.theta;
  if (s.rope.scaling.rope_type != "default") c.rope_scaling = rope_scaling_to(s.rope.scaling);
  else c.rope_scaling.reset();
  c.attention_bias = false;
  c.mlp_bias = s.mlp_bias;
  c.tie_word_embeddings = s.tie_word_embeddings;
  c.torch_dtype = s.torch_dtype;
  if (s.bos_token_id >= 0) c.bos_token_id = s.bos_token_id;
  else c.bos_token_id.reset();
  c.eos_token_id = s.eos_token_ids;
  c.initializer_range = s.initializer_range;
  fam.write(s, cfg);
  io::resolve_config(cfg, "generated config");
  return cfg;
}

void DecoderSpec::validate() const {
  auto positive = [](int64_t v, const char* field) {
    ARQ_CHECK(v > 0, ConfigError, field, " must be positive, got ", v);
  };
  family_for(model_type);
  positive(vocab_size, "vocab_size");
  positive(hidden_size, "hidden_size");
  positive(intermediate_size, "intermediate_size");
  positive(num_hidden_layers, "num_hidden_layers");
  positive(num_attention_heads, "num_attention_heads");
  positive(num_key_value_heads, "num_key_value_heads");
  positive(head_dim, "head_dim");
  ARQ_CHECK(num_attention_heads % num_key_value_heads == 0, ConfigError, "num_attention_heads (", num_attention_heads,
            ") must be a multiple of num_key_value_heads (", num_key_value_heads, ")");
  ARQ_CHECK(head_dim % 2 == 0, ConfigError, "head_dim must be even for RoPE, got ", head_dim);
  ARQ_CHECK(rope.dim > 0 && rope.dim <= head_dim && rope.dim % 2 == 0, ConfigError,
            "rotary dim must be even and at most head_dim ", head_dim, ", got ", rope.dim);
  ARQ_CHECK(rms_norm_eps > 0, ConfigError, "rms_norm_eps must be positive, got ", rms_norm_eps);
  ARQ_CHECK(rope.theta > 0, ConfigError, "rope_theta must be positive, got ", rope.theta);
  ARQ_CHECK(rope_type_supported(rope.scaling.rope_type), ConfigError, "rope_scaling.rope_type '", rope.scaling.rope_type,
            "' is not supported (supported: default, linear, dynamic, llama3, yarn)");
  ARQ_CHECK(sliding_window.empty() || static_cast<int64_t>(sliding_window.size()) == num_hidden_layers, ConfigError,
            "sliding windows given for ", sliding_window.size(), " layers, num_hidden_layers is ", num_hidden_layers);
  for (int64_t w : sliding_window) ARQ_CHECK(w >= 0, ConfigError, "sliding_window must be >= 0, got ", w);
  ARQ_CHECK(bos_token_id < vocab_size, ConfigError, "bos_token_id ", bos_token_id, " >= vocab_size ", vocab_size);
}

DecoderSpec tiny_spec(const std::string& model_type) {
  family_for(model_type);
  DecoderSpec s;
  s.model_type = model_type;
  s.vocab_size = 96;
  s.hidden_size = 32;
  s.intermediate_size = 56;
  s.num_hidden_layers = 2;
  s.num_attention_heads = 4;
  s.num_key_value_heads = 2;
  s.head_dim = 8;
  s.rms_norm_eps = 1e-5;
  s.rope.theta = 10000;
  s.rope.dim = 8;
  s.rope.max_position_embeddings = 128;
  s.bos_token_id = 1;
  s.eos_token_ids = {2};
  s.sliding_window.assign(2, 0);
  if (model_type == "mistral") s.sliding_window.assign(2, 5);
  if (model_type == "qwen2") {
    s.qkv_bias = true;
    s.tie_word_embeddings = true;
    s.rope.theta = 1e6;
    s.rms_norm_eps = 1e-6;
  }
  if (model_type == "qwen3") {
    s.qk_norm = true;
    s.head_dim = 12;   // explicit head_dim != hidden / heads, as Qwen3 releases
    s.rope.dim = 12;
    s.rope.theta = 1e6;
    s.rms_norm_eps = 1e-6;
  }
  return s;
}

}  // namespace arq::models
