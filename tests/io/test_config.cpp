// config.json: every family with its transformers defaults, rope_scaling variants, clear errors,
// and the writer (read → write → read is a fixed point).
#include <doctest/doctest.h>

#include "files_test_util.h"
#include "engine/error.h"
#include "io/config.h"

using namespace arq;
using namespace arq::io;

namespace {

const char* kStories = R"({
  "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
  "intermediate_size": 172, "num_hidden_layers": 5, "num_attention_heads": 8, "num_key_value_heads": 4,
  "vocab_size": 512, "max_position_embeddings": 512, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
  "hidden_act": "silu", "tie_word_embeddings": true, "torch_dtype": "float32", "bos_token_id": 1,
  "eos_token_id": 2, "attention_bias": false, "mlp_bias": false})";

// Llama-3.1-8B style.
const char* kLlama31 = R"({"model_type": "llama", "hidden_size": 4096, "num_attention_heads": 32,
  "num_key_value_heads": 8, "num_hidden_layers": 32, "intermediate_size": 14336, "vocab_size": 128256,
  "rope_theta": 500000.0, "eos_token_id": [128001, 128008, 128009], "bos_token_id": 128000,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "max_position_embeddings": 131072, "torch_dtype": "bfloat16",
  "quantization_config": {"bits": 4, "group_size": 128, "quant_method": "auto-round"}})";

// DeepSeek-V2-Lite style.
const char* kDsV2Lite = R"({"model_type": "deepseek_v2", "hidden_size": 2048, "num_attention_heads": 16,
  "num_key_value_heads": 16, "num_hidden_layers": 27, "intermediate_size": 10944, "moe_intermediate_size": 1408,
  "q_lora_rank": null, "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
  "n_routed_experts": 64, "n_shared_experts": 2, "num_experts_per_tok": 6, "n_group": 1, "topk_group": 1,
  "topk_method": "greedy", "scoring_func": "softmax", "first_k_dense_replace": 1, "routed_scaling_factor": 1.0,
  "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 0.707, "mscale_all_dim": 0.707,
                   "original_max_position_embeddings": 4096, "type": "yarn"},
  "max_position_embeddings": 163840, "vocab_size": 102400, "rope_theta": 10000})";

const char* kQwen2VL = R"({"model_type": "qwen2_vl", "hidden_size": 1536, "intermediate_size": 8960,
  "num_attention_heads": 12, "num_key_value_heads": 2, "num_hidden_layers": 28, "vocab_size": 151936,
  "rope_theta": 1000000.0, "rms_norm_eps": 1e-06, "tie_word_embeddings": true, "max_window_layers": 28,
  "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
  "vision_config": {"depth": 32, "embed_dim": 1280, "mlp_ratio": 4, "num_heads": 16, "in_chans": 3,
                    "hidden_size": 1536, "patch_size": 14, "spatial_merge_size": 2, "spatial_patch_size": 14,
                    "temporal_patch_size": 2},
  "image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652,
  "vision_end_token_id": 151653})";

}  // namespace

TEST_CASE("config: stories260k (Llama) fields") {
  const ModelConfig c = parse_config(kStories, "stories/config.json");
  REQUIRE(std::holds_alternative<LlamaConfig>(c));
  const DecoderConfig& d = decoder_config(c);
  CHECK(d.model_type == "llama");
  CHECK(d.hidden_size == 64);
  CHECK(d.intermediate_size == 172);
  CHECK(d.num_hidden_layers == 5);
  CHECK(d.num_attention_heads == 8);
  CHECK(d.num_key_value_heads == 4);
  CHECK(d.head_dim == 8);   // 64 / 8, derived
  CHECK(d.vocab_size == 512);
  CHECK(d.rms_norm_eps == 1e-5);
  CHECK(d.rope_theta == 10000.0);
  CHECK(d.tie_word_embeddings);
  CHECK(d.torch_dtype == "float32");
  CHECK(d.bos_token_id == 1);
  CHECK(d.eos_token_id == std::vector<int64_t>{2});
  CHECK_FALSE(d.rope_scaling.has_value());
}

TEST_CASE("config: transformers defaults per family") {
  SUBCASE("llama: kv heads default to heads, head_dim to hidden/heads") {
    const ModelConfig c = parse_config(R"({"model_type": "llama"})");
    const DecoderConfig& d = decoder_config(c);
    CHECK(d.num_key_value_heads == 32);
    CHECK(d.head_dim == 128);
    CHECK(d.rms_norm_eps == 1e-6);
    CHECK(d.max_position_embeddings == 2048);
    CHECK(std::get<LlamaConfig>(c).pretraining_tp == 1);
    CHECK(d.architectures == std::vector<std::string>{"LlamaForCausalLM"});
  }
  SUBCASE("mistral") {
    const auto c = std::get<MistralConfig>(parse_config(R"({"model_type": "mistral"})"));
    CHECK(c.num_key_value_heads == 8);
    CHECK(c.intermediate_size == 14336);
    CHECK(c.sliding_window == 4096);
    CHECK(c.max_position_embeddings == 131072);
    const auto n = std::get<MistralConfig>(parse_config(R"({"model_type": "mistral", "sliding_window": null})"));
    CHECK_FALSE(n.sliding_window.has_value());
  }
  SUBCASE("mixtral") {
    const auto c = std::get<MixtralConfig>(parse_config(R"({"model_type": "mixtral"})"));
    CHECK(c.rms_norm_eps == 1e-5);
    CHECK(c.rope_theta == 1e6);
    CHECK_FALSE(c.sliding_window.has_value());
    CHECK(c.num_local_experts == 8);
    CHECK(c.num_experts_per_tok == 2);
  }
  SUBCASE("qwen2: no sliding window unless use_sliding_window") {
    const auto c = std::get<Qwen2Config>(parse_config(R"({"model_type": "qwen2", "num_hidden_layers": 4})"));
    CHECK(c.vocab_size == 151936);
    CHECK(c.num_key_value_heads == 32);
    CHECK_FALSE(c.sliding_window.has_value());
    CHECK(c.layer_types == std::vector<std::string>(4, "full_attention"));
    CHECK_FALSE(c.bos_token_id.has_value());
    const auto s = std::get<Qwen2Config>(parse_config(
        R"({"model_type": "qwen2", "num_hidden_layers": 4, "use_sliding_window": true, "sliding_window": 128, "max_window_layers": 2})"));
    CHECK(s.sliding_window == 128);
    CHECK(s.layer_types == std::vector<std::string>{"full_attention", "full_attention", "sliding_attention", "sliding_attention"});
    // An explicit layer_types list wins.
    const auto e = std::get<Qwen2Config>(parse_config(
        R"({"model_type": "qwen2", "num_hidden_layers": 2, "layer_types": ["sliding_attention", "full_attention"]})"));
    CHECK(e.layer_types[0] == "sliding_attention");
  }
  SUBCASE("qwen3: head_dim 128 even when hidden/heads differs") {
    const auto c = std::get<Qwen3Config>(parse_config(R"({"model_type": "qwen3", "hidden_size": 1024, "num_attention_heads": 16, "num_key_value_heads": 8})"));
    CHECK(c.head_dim == 128);
    CHECK_FALSE(c.attention_bias);
  }
  SUBCASE("qwen2_moe / qwen3_moe") {
    const auto a = std::get<Qwen2MoeConfig>(parse_config(R"({"model_type": "qwen2_moe"})"));
    CHECK(a.num_experts == 60);
    CHECK(a.num_experts_per_tok == 4);
    CHECK(a.moe_intermediate_size == 1408);
    CHECK(a.shared_expert_intermediate_size == 5632);
    CHECK_FALSE(a.norm_topk_prob);
    CHECK(a.qkv_bias);
    const auto b = std::get<Qwen3MoeConfig>(parse_config(
        R"({"model_type": "qwen3_moe", "num_experts": 128, "norm_topk_prob": true, "mlp_only_layers": [0, 3], "head_dim": 128})"));
    CHECK(b.num_experts_per_tok == 8);
    CHECK(b.moe_intermediate_size == 768);
    CHECK(b.norm_topk_prob);
    CHECK(b.mlp_only_layers == std::vector<int64_t>{0, 3});
    CHECK(b.num_key_value_heads == 4);
  }
  SUBCASE("deepseek_v3") {
    const auto c = std::get<DeepseekV3Config>(parse_config(R"({"model_type": "deepseek_v3"})"));
    CHECK(c.topk_method == "noaux_tc");
    CHECK(c.scoring_func == "sigmoid");
    CHECK(c.n_routed_experts == 256);
    CHECK(c.n_group == 8);
    CHECK(c.topk_group == 4);
    CHECK(c.first_k_dense_replace == 3);
    CHECK(c.routed_scaling_factor == 2.5);
    CHECK(c.q_lora_rank == 1536);
    CHECK(c.head_dim == 64);   // = qk_rope_head_dim
    CHECK(c.num_nextn_predict_layers == 1);
  }
}

TEST_CASE("config: rope_scaling variants") {
  const auto l = parse_config(kLlama31);
  const DecoderConfig& d = decoder_config(l);
  REQUIRE(d.rope_scaling.has_value());
  CHECK(d.rope_scaling->rope_type == "llama3");
  CHECK(d.rope_scaling->factor == 8.0);
  CHECK(d.rope_scaling->low_freq_factor == 1.0);
  CHECK(d.rope_scaling->high_freq_factor == 4.0);
  CHECK(d.rope_scaling->original_max_position_embeddings == 8192);
  CHECK(d.eos_token_id == std::vector<int64_t>{128001, 128008, 128009});
  CHECK(d.rope_theta == 500000.0);

  const auto ds = std::get<DeepseekV2Config>(parse_config(kDsV2Lite));
  REQUIRE(ds.rope_scaling.has_value());
  CHECK(ds.rope_scaling->rope_type == "yarn");
  CHECK(ds.rope_scaling->legacy_type_key);
  CHECK(ds.rope_scaling->factor == 40.0);
  CHECK(ds.rope_scaling->mscale == 0.707);
  CHECK(ds.rope_scaling->mscale_all_dim == 0.707);
  CHECK(ds.rope_scaling->beta_fast == 32.0);
  CHECK_FALSE(ds.q_lora_rank.has_value());
  CHECK(ds.n_routed_experts == 64);
  CHECK(ds.num_experts_per_tok == 6);

  const auto lin = parse_config(R"({"model_type": "llama", "rope_scaling": {"type": "linear", "factor": 2}})");
  CHECK(decoder_config(lin).rope_scaling->factor == 2.0);
  const auto dyn = parse_config(R"({"model_type": "llama", "rope_scaling": {"rope_type": "dynamic", "factor": 4.0}})");
  CHECK(decoder_config(dyn).rope_scaling->rope_type == "dynamic");
  // transformers v5 spelling: rope_parameters carries rope_theta too.
  const auto v5 = parse_config(
      R"({"model_type": "qwen3", "rope_parameters": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 1000000.0, "original_max_position_embeddings": 32768}})");
  CHECK(decoder_config(v5).rope_theta == 1e6);
  CHECK(decoder_config(v5).rope_scaling->rope_type == "yarn");
  CHECK(decoder_config(v5).rope_scaling->original_max_position_embeddings == 32768);
}

TEST_CASE("config: Qwen2-VL vision_config, mrope and nested text_config") {
  const auto c = std::get<Qwen2VLConfig>(parse_config(kQwen2VL));
  CHECK(c.hidden_size == 1536);
  CHECK(c.head_dim == 128);
  CHECK(c.rope_scaling->rope_type == "mrope");
  CHECK(c.rope_scaling->mrope_section == std::vector<int64_t>{16, 24, 24});
  CHECK(c.vision_config.depth == 32);
  CHECK(c.vision_config.embed_dim == 1280);
  CHECK(c.vision_config.hidden_size == 1536);
  CHECK(c.vision_config.hidden_act == "quick_gelu");
  CHECK(c.vision_config.extra.find("spatial_patch_size"));   // kept for writing
  CHECK(c.image_token_id == 151655);

  const auto n = std::get<Qwen2VLConfig>(parse_config(R"({"model_type": "qwen2_vl",
      "text_config": {"model_type": "qwen2_vl_text", "hidden_size": 256, "num_attention_heads": 4, "num_key_value_heads": 2,
                      "num_hidden_layers": 2, "intermediate_size": 512, "vocab_size": 1000},
      "vision_config": {"depth": 2, "embed_dim": 64, "num_heads": 4, "hidden_size": 256, "in_channels": 3}})"));
  CHECK(n.nested_text_config);
  CHECK(n.hidden_size == 256);
  CHECK(n.num_hidden_layers == 2);
  CHECK(n.head_dim == 64);
  CHECK(n.vision_config.depth == 2);
  CHECK(n.vision_config.in_chans == 3);
}

TEST_CASE("config: errors name the field and the file") {
  using arq::test::error_of;
  std::string m = error_of<ConfigError>([] { parse_config(R"({"model_type": "gpt2"})", "m/config.json"); });
  CHECK(m.find("gpt2") != std::string::npos);
  CHECK(m.find("m/config.json") != std::string::npos);
  for (const auto& t : supported_model_types()) CHECK(m.find(t) != std::string::npos);

  m = error_of<ConfigError>([] { parse_config(R"({"model_type": "llama", "hidden_size": "64"})", "m/config.json"); });
  CHECK(m.find("hidden_size") != std::string::npos);
  CHECK(m.find("m/config.json") != std::string::npos);
  CHECK(m.find("integer") != std::string::npos);

  m = error_of<ConfigError>([] { parse_config(R"({"model_type": "llama", "tie_word_embeddings": 1})", "c.json"); });
  CHECK(m.find("tie_word_embeddings") != std::string::npos);
  m = error_of<ConfigError>([] { parse_config(R"({"model_type": "llama", "rope_scaling": {"rope_type": "llama3", "factor": 8}})", "c.json"); });
  CHECK(m.find("low_freq_factor") != std::string::npos);
  m = error_of<ConfigError>([] { parse_config(R"({"model_type": "llama", "rope_scaling": {"type": "ntk-by-parts", "factor": 2}})", "c.json"); });
  CHECK(m.find("ntk-by-parts") != std::string::npos);
  m = error_of<ConfigError>([] { parse_config(R"({"model_type": "qwen2_vl", "vision_config": {"depth": "x"}})", "c.json"); });
  CHECK(m.find("vision_config.depth") != std::string::npos);
  CHECK_THROWS_AS(parse_config(R"({"hidden_size": 64})"), ConfigError);              // no model_type
  CHECK_THROWS_AS(parse_config(R"({"model_type": "llama", )"), ConfigError);         // malformed JSON
  CHECK_THROWS_AS(parse_config(R"([1, 2])"), ConfigError);                           // not an object
  CHECK_THROWS_AS(parse_config(R"({"model_type": "llama", "num_attention_heads": 6, "num_key_value_heads": 4})"), ConfigError);
  CHECK_THROWS_AS(parse_config(R"({"model_type": "llama", "hidden_size": -4})"), ConfigError);
  CHECK_THROWS_AS(parse_config(R"({"model_type": "qwen2", "num_hidden_layers": 2, "layer_types": ["full_attention"]})"), ConfigError);
  CHECK_THROWS_AS(load_config("/nonexistent/arq/folder"), IoError);
}

TEST_CASE("config: writer round trip for every family") {
  const std::vector<std::string> texts = {
      kStories, kLlama31, kDsV2Lite, kQwen2VL,
      R"({"model_type": "mistral", "sliding_window": null})",
      R"({"model_type": "mixtral", "num_local_experts": 4})",
      R"({"model_type": "qwen2", "use_sliding_window": true, "num_hidden_layers": 3, "max_window_layers": 1, "sliding_window": 64})",
      R"({"model_type": "qwen3", "head_dim": 64, "rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768, "truncate": false}})",
      R"({"model_type": "qwen2_moe", "mlp_only_layers": [1]})",
      R"({"model_type": "qwen3_moe"})",
      R"({"model_type": "deepseek_v3", "rope_scaling": {"rope_type": "yarn", "factor": 40, "mscale": 1.0, "mscale_all_dim": 1.0, "original_max_position_embeddings": 4096}})",
  };
  for (const auto& t : texts) {
    CAPTURE(t);
    const ModelConfig a = parse_config(t);
    const std::string ja = config_to_json(a);
    const ModelConfig b = parse_config(ja, "written");
    const std::string jb = config_to_json(b);
    CHECK(ja == jb);
    CHECK(a.index() == b.index());
    const DecoderConfig& da = decoder_config(a);
    const DecoderConfig& db = decoder_config(b);
    CHECK(da.hidden_size == db.hidden_size);
    CHECK(da.head_dim == db.head_dim);
    CHECK(da.num_key_value_heads == db.num_key_value_heads);
    CHECK(da.rms_norm_eps == db.rms_norm_eps);   // shortest round-trip doubles
    CHECK(da.rope_scaling.has_value() == db.rope_scaling.has_value());
    CHECK(da.eos_token_id == db.eos_token_id);
    CHECK(ja.back() == '\n');
    CHECK(ja.find("\"model_type\": \"" + da.model_type + "\"") != std::string::npos);
  }
  // Unknown keys survive (quantization_config of an already-quantized checkpoint).
  const std::string j = config_to_json(parse_config(kLlama31));
  CHECK(j.find("\"quant_method\": \"auto-round\"") != std::string::npos);
  CHECK(j.find("\"eos_token_id\": [\n    128001,") != std::string::npos);
  // Sorted keys: "architectures" comes before "attention_bias".
  CHECK(j.find("\"architectures\"") < j.find("\"attention_bias\""));
}

TEST_CASE("config: save_config writes a folder's config.json that load_config reads") {
  arq::test::TempDir dir;
  ModelConfig c = default_config("qwen3");
  auto& q = std::get<Qwen3Config>(c);
  q.hidden_size = 96;
  q.num_attention_heads = 4;
  q.num_key_value_heads = 2;
  q.head_dim = 24;
  q.num_hidden_layers = 2;
  q.intermediate_size = 192;
  q.vocab_size = 300;
  q.tie_word_embeddings = true;
  q.torch_dtype = "float32";
  resolve_config(c);
  save_config(dir.str(), c);
  const ModelConfig r = load_config(dir.str());
  REQUIRE(std::holds_alternative<Qwen3Config>(r));
  CHECK(std::get<Qwen3Config>(r).head_dim == 24);
  CHECK(std::get<Qwen3Config>(r).layer_types.size() == 2);
  CHECK(decoder_config(r).architectures == std::vector<std::string>{"Qwen3ForCausalLM"});
}

TEST_CASE("config: the real stories260k config.json") {
  const std::string p = arq::test::shared_file("models/stories260k/config.json");
  if (p.empty()) return;
  const ModelConfig c = load_config(p.substr(0, p.rfind('/')));
  const DecoderConfig& d = decoder_config(c);
  CHECK(d.head_dim == 8);
  CHECK(d.num_key_value_heads == 4);
  CHECK(d.tie_word_embeddings);
}
