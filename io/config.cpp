// config.json reader: simdjson parse → JsonValue tree → typed family struct.
#include "io/config.h"

#include <simdjson.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "engine/error.h"
#include "io/config_fields.h"

namespace arq::io {

namespace {

const char* kind_name(const JsonValue& v) {
  switch (v.kind()) {
    case JsonValue::Kind::null: return "null";
    case JsonValue::Kind::boolean: return "a bool";
    case JsonValue::Kind::integer:
    case JsonValue::Kind::uinteger: return "an integer";
    case JsonValue::Kind::number: return "a float";
    case JsonValue::Kind::string: return "a string";
    case JsonValue::Kind::array: return "an array";
    case JsonValue::Kind::object: return "an object";
  }
  return "?";
}

bool is_int(const JsonValue& v) {
  return v.kind() == JsonValue::Kind::integer || v.kind() == JsonValue::Kind::uinteger;
}
bool is_num(const JsonValue& v) { return is_int(v) || v.kind() == JsonValue::Kind::number; }

// Binds keys of one JSON object to struct fields; remembers which keys it consumed.
class FieldReader {
 public:
  FieldReader(const JsonValue& obj, const std::string& origin, std::string prefix = "")
      : obj_(obj), origin_(origin), prefix_(std::move(prefix)) {}

  [[noreturn]] void bad(const std::string& key, const JsonValue& v, const char* want) const {
    throw ConfigError(cat(origin_, ": field '", prefix_, key, "' must be ", want, ", got ", kind_name(v),
                          v.kind() == JsonValue::Kind::string ? cat(" \"", v.as_string(), "\"") : std::string()));
  }
  const JsonValue* get(const std::string& key) {
    used_.insert(key);
    return obj_.find(key);
  }
  int64_t to_i64(const std::string& key, const JsonValue& v) const {
    if (is_int(v)) {
      if (v.kind() == JsonValue::Kind::uinteger && v.as_int() < 0) bad(key, v, "an integer below 2^63");
      return v.as_int();
    }
    // 4096.0 is accepted for an integer field (Python configs sometimes carry floats).
    if (v.kind() == JsonValue::Kind::number && std::floor(v.as_double()) == v.as_double() &&
        std::fabs(v.as_double()) < 9.0e15)
      return static_cast<int64_t>(v.as_double());
    bad(key, v, "an integer");
  }

  void i64(const std::string& key, int64_t& x) {
    if (const JsonValue* v = get(key)) {
      if (v->is_null()) bad(key, *v, "an integer");
      x = to_i64(key, *v);
    }
  }
  void nullable_i64(const std::string& key, int64_t& x) {
    if (const JsonValue* v = get(key)) x = v->is_null() ? 0 : to_i64(key, *v);
  }
  void opt_i64(const std::string& key, std::optional<int64_t>& x) {
    if (const JsonValue* v = get(key)) {
      if (v->is_null()) x.reset();
      else x = to_i64(key, *v);
    }
  }
  void f64(const std::string& key, double& x) {
    if (const JsonValue* v = get(key)) {
      if (!is_num(*v)) bad(key, *v, "a number");
      x = v->as_double();
    }
  }
  void opt_f64(const std::string& key, std::optional<double>& x) {
    if (const JsonValue* v = get(key)) {
      if (v->is_null()) x.reset();
      else if (!is_num(*v)) bad(key, *v, "a number");
      else x = v->as_double();
    }
  }
  void boolean(const std::string& key, bool& x) {
    if (const JsonValue* v = get(key)) {
      if (v->kind() != JsonValue::Kind::boolean) bad(key, *v, "true or false");
      x = v->as_bool();
    }
  }
  void str(const std::string& key, std::string& x) {
    if (const JsonValue* v = get(key)) {
      if (v->kind() != JsonValue::Kind::string) bad(key, *v, "a string");
      x = v->as_string();
    }
  }
  void i64_list(const std::string& key, std::vector<int64_t>& x) {
    if (const JsonValue* v = get(key)) {
      if (v->is_null()) { x.clear(); return; }
      if (!v->is_array()) bad(key, *v, "an array of integers");
      x.clear();
      for (const auto& e : v->elements()) x.push_back(to_i64(key + "[]", e));
    }
  }
  void f64_list(const std::string& key, std::vector<double>& x) {
    if (const JsonValue* v = get(key)) {
      if (!v->is_array()) bad(key, *v, "an array of numbers");
      x.clear();
      for (const auto& e : v->elements()) {
        if (!is_num(e)) bad(key + "[]", e, "a number");
        x.push_back(e.as_double());
      }
    }
  }
  void str_list(const std::string& key, std::vector<std::string>& x) {
    if (const JsonValue* v = get(key)) {
      if (v->is_null()) { x.clear(); return; }
      if (!v->is_array()) bad(key, *v, "an array of strings");
      x.clear();
      for (const auto& e : v->elements()) {
        if (e.kind() != JsonValue::Kind::string) bad(key + "[]", e, "a string");
        x.push_back(e.as_string());
      }
    }
  }

  // ---- special fields ----
  void architectures(std::vector<std::string>& x) { str_list("architectures", x); }
  void dtype(std::string& x) {
    if (obj_.find("torch_dtype")) str("torch_dtype", x);
    else if (obj_.find("dtype")) str("dtype", x);   // transformers v5 spelling
    used_.insert("torch_dtype");
    used_.insert("dtype");
  }
  void eos(std::vector<int64_t>& x) {
    const JsonValue* v = get("eos_token_id");
    if (!v) return;
    if (v->is_null()) x.clear();
    else if (v->is_array()) i64_list("eos_token_id", x);
    else x = {to_i64("eos_token_id", *v)};
  }
  void in_chans(int64_t& x) {
    if (obj_.find("in_chans")) i64("in_chans", x);
    else i64("in_channels", x);
    used_.insert("in_channels");
  }
  void rope(double& theta, std::optional<RopeScaling>& scaling);
  void vision(Qwen2VLVisionConfig& vc);

  // Keys of the object nobody consumed.
  JsonValue leftovers(const std::set<std::string>& skip) const {
    JsonValue out = JsonValue::object();
    for (const auto& [k, v] : obj_.items())
      if (!used_.count(k) && !skip.count(k)) out.set(k, v);
    return out;
  }

 private:
  RopeScaling read_rope(const std::string& key, const JsonValue& v);
  const JsonValue& obj_;
  const std::string& origin_;
  std::string prefix_;
  std::set<std::string> used_;
};

RopeScaling FieldReader::read_rope(const std::string& key, const JsonValue& v) {
  if (!v.is_object()) bad(key, v, "an object");
  FieldReader r(v, origin_, prefix_ + key + ".");
  RopeScaling s;
  if (v.find("rope_type")) {
    r.str("rope_type", s.rope_type);
  } else if (v.find("type")) {
    r.str("type", s.rope_type);
    s.legacy_type_key = true;
  }
  if (s.rope_type == "su") s.rope_type = "longrope";   // legacy Phi-3 spelling
  static const std::set<std::string> known = {"default", "linear", "dynamic", "llama3", "yarn", "longrope", "mrope"};
  if (!known.count(s.rope_type))
    throw ConfigError(cat(origin_, ": ", prefix_, key, ".rope_type '", s.rope_type,
                          "' is not supported (supported: default, linear, dynamic, llama3, yarn, longrope, mrope)"));
  r.opt_f64("factor", s.factor);
  r.opt_i64("original_max_position_embeddings", s.original_max_position_embeddings);
  r.f64("low_freq_factor", s.low_freq_factor);
  r.f64("high_freq_factor", s.high_freq_factor);
  r.f64("beta_fast", s.beta_fast);
  r.f64("beta_slow", s.beta_slow);
  r.opt_f64("mscale", s.mscale);
  r.opt_f64("mscale_all_dim", s.mscale_all_dim);
  r.opt_f64("attention_factor", s.attention_factor);
  r.boolean("truncate", s.truncate);
  r.f64_list("short_factor", s.short_factor);
  r.f64_list("long_factor", s.long_factor);
  r.i64_list("mrope_section", s.mrope_section);
  auto require = [&](bool ok, const char* field) {
    if (!ok)
      throw ConfigError(cat(origin_, ": ", prefix_, key, " of type '", s.rope_type, "' needs field '", field, "'"));
  };
  const std::string& t = s.rope_type;
  if (t == "linear" || t == "dynamic" || t == "llama3" || t == "yarn") {
    require(s.factor.has_value(), "factor");
    if (*s.factor < 1.0)
      throw ConfigError(cat(origin_, ": ", prefix_, key, ".factor = ", *s.factor, " must be >= 1"));
  }
  if (t == "llama3") {
    require(v.find("low_freq_factor") != nullptr, "low_freq_factor");
    require(v.find("high_freq_factor") != nullptr, "high_freq_factor");
    require(s.original_max_position_embeddings.has_value(), "original_max_position_embeddings");
  }
  if (t == "longrope") {
    require(!s.short_factor.empty(), "short_factor");
    require(!s.long_factor.empty(), "long_factor");
  }
  if (t == "mrope") require(!s.mrope_section.empty(), "mrope_section");
  return s;
}

void FieldReader::rope(double& theta, std::optional<RopeScaling>& scaling) {
  f64("rope_theta", theta);
  if (const JsonValue* v = get("rope_scaling")) {
    if (v->is_null()) scaling.reset();
    else scaling = read_rope("rope_scaling", *v);
  }
  // transformers v5: rope_parameters = {rope_type, rope_theta, ...} replaces both.
  if (const JsonValue* p = get("rope_parameters"); p && !p->is_null()) {
    if (!p->is_object()) bad("rope_parameters", *p, "an object");
    if (const JsonValue* t = p->find("rope_theta")) {
      if (!is_num(*t)) bad("rope_parameters.rope_theta", *t, "a number");
      theta = t->as_double();
    }
    if (!scaling) {
      RopeScaling s = read_rope("rope_parameters", *p);
      if (s.rope_type != "default" || !s.mrope_section.empty()) scaling = s;
    }
  }
}

void FieldReader::vision(Qwen2VLVisionConfig& vc) {
  const JsonValue* v = get("vision_config");
  if (!v || v->is_null()) return;
  if (!v->is_object()) bad("vision_config", *v, "an object");
  FieldReader r(*v, origin_, prefix_ + "vision_config.");
  detail::visit_vision(r, vc);
  vc.extra = r.leftovers({});
}

const std::vector<std::string> kModelTypes = {"llama", "mistral", "mixtral", "qwen2", "qwen3",
                                              "qwen2_moe", "qwen3_moe", "deepseek_v2", "deepseek_v3", "qwen2_vl"};

std::string supported_list() {
  std::string s;
  for (const auto& t : kModelTypes) s += (s.empty() ? "" : ", ") + t;
  return s;
}

}  // namespace

const std::vector<std::string>& supported_model_types() { return kModelTypes; }

namespace detail {
const char* default_architecture(const std::string& t) {
  if (t == "llama") return "LlamaForCausalLM";
  if (t == "mistral") return "MistralForCausalLM";
  if (t == "mixtral") return "MixtralForCausalLM";
  if (t == "qwen2") return "Qwen2ForCausalLM";
  if (t == "qwen3") return "Qwen3ForCausalLM";
  if (t == "qwen2_moe") return "Qwen2MoeForCausalLM";
  if (t == "qwen3_moe") return "Qwen3MoeForCausalLM";
  if (t == "deepseek_v2") return "DeepseekV2ForCausalLM";
  if (t == "deepseek_v3") return "DeepseekV3ForCausalLM";
  if (t == "qwen2_vl") return "Qwen2VLForConditionalGeneration";
  return "";
}
}  // namespace detail

ModelConfig default_config(const std::string& t) {
  ModelConfig c;
  if (t == "llama") c = LlamaConfig{};
  else if (t == "mistral") c = MistralConfig{};
  else if (t == "mixtral") c = MixtralConfig{};
  else if (t == "qwen2") c = Qwen2Config{};
  else if (t == "qwen3") c = Qwen3Config{};
  else if (t == "qwen2_moe") c = Qwen2MoeConfig{};
  else if (t == "qwen3_moe") c = Qwen3MoeConfig{};
  else if (t == "deepseek_v2") c = DeepseekV2Config{};
  else if (t == "deepseek_v3") c = DeepseekV3Config{};
  else if (t == "qwen2_vl") c = Qwen2VLConfig{};
  else throw ConfigError(cat("unsupported model_type '", t, "' (supported: ", supported_list(), ")"));
  decoder_config(c).model_type = t;
  return c;
}

const DecoderConfig& decoder_config(const ModelConfig& c) {
  return std::visit([](const auto& x) -> const DecoderConfig& { return x; }, c);
}
DecoderConfig& decoder_config(ModelConfig& c) {
  return std::visit([](auto& x) -> DecoderConfig& { return x; }, c);
}

namespace {

void resolve_qwen_window(Qwen2Config& q, const std::string& origin) {
  if (!q.use_sliding_window) q.sliding_window.reset();   // as transformers' Qwen2Config
  if (q.layer_types.empty()) {
    for (int64_t l = 0; l < q.num_hidden_layers; ++l)
      q.layer_types.push_back(q.sliding_window && l >= q.max_window_layers ? "sliding_attention" : "full_attention");
  }
  ARQ_CHECK(static_cast<int64_t>(q.layer_types.size()) == q.num_hidden_layers, ConfigError, origin,
            ": layer_types has ", q.layer_types.size(), " entries but num_hidden_layers is ", q.num_hidden_layers);
  for (const auto& t : q.layer_types)
    ARQ_CHECK(t == "full_attention" || t == "sliding_attention", ConfigError, origin, ": layer_types entry '", t,
              "' is not full_attention or sliding_attention");
}

}  // namespace

void resolve_config(ModelConfig& c, const std::string& origin) {
  DecoderConfig& d = decoder_config(c);
  const std::string& mt = kModelTypes[c.index()];
  if (d.model_type.empty()) d.model_type = mt;
  if (d.architectures.empty()) d.architectures = {detail::default_architecture(mt)};
  auto positive = [&](int64_t v, const char* name) {
    ARQ_CHECK(v > 0, ConfigError, origin, ": ", name, " = ", v, " must be positive");
  };
  positive(d.vocab_size, "vocab_size");
  positive(d.hidden_size, "hidden_size");
  positive(d.intermediate_size, "intermediate_size");
  positive(d.num_hidden_layers, "num_hidden_layers");
  positive(d.num_attention_heads, "num_attention_heads");
  positive(d.max_position_embeddings, "max_position_embeddings");
  ARQ_CHECK(d.rms_norm_eps > 0, ConfigError, origin, ": rms_norm_eps = ", d.rms_norm_eps, " must be positive");
  ARQ_CHECK(d.rope_theta > 0, ConfigError, origin, ": rope_theta = ", d.rope_theta, " must be positive");
  if (d.num_key_value_heads == 0) d.num_key_value_heads = d.num_attention_heads;
  positive(d.num_key_value_heads, "num_key_value_heads");
  const bool mla = std::holds_alternative<DeepseekV2Config>(c) || std::holds_alternative<DeepseekV3Config>(c);
  if (mla) {
    auto& ds = std::holds_alternative<DeepseekV2Config>(c) ? std::get<DeepseekV2Config>(c)
                                                            : static_cast<DeepseekV2Config&>(std::get<DeepseekV3Config>(c));
    if (d.head_dim == 0) d.head_dim = ds.qk_rope_head_dim;
    positive(ds.kv_lora_rank, "kv_lora_rank");
    positive(ds.qk_rope_head_dim, "qk_rope_head_dim");
    positive(ds.v_head_dim, "v_head_dim");
    ARQ_CHECK(ds.qk_nope_head_dim >= 0, ConfigError, origin, ": qk_nope_head_dim must be >= 0");
  } else {
    ARQ_CHECK(d.num_attention_heads % d.num_key_value_heads == 0, ConfigError, origin, ": num_attention_heads ",
              d.num_attention_heads, " is not a multiple of num_key_value_heads ", d.num_key_value_heads);
    if (d.head_dim == 0) {
      ARQ_CHECK(d.hidden_size % d.num_attention_heads == 0, ConfigError, origin, ": hidden_size ", d.hidden_size,
                " is not divisible by num_attention_heads ", d.num_attention_heads, " and head_dim is not given");
      d.head_dim = d.hidden_size / d.num_attention_heads;
    }
  }
  positive(d.head_dim, "head_dim");
  std::visit([&](auto& x) {
    using T = std::decay_t<decltype(x)>;
    if constexpr (std::is_base_of_v<Qwen2Config, T>) resolve_qwen_window(x, origin);
    if constexpr (std::is_same_v<T, MixtralConfig>) {
      positive(x.num_local_experts, "num_local_experts");
      ARQ_CHECK(x.num_experts_per_tok > 0 && x.num_experts_per_tok <= x.num_local_experts, ConfigError, origin,
                ": num_experts_per_tok = ", x.num_experts_per_tok, " must be in [1, num_local_experts = ",
                x.num_local_experts, "]");
    }
    if constexpr (std::is_same_v<T, Qwen2MoeConfig> || std::is_same_v<T, Qwen3MoeConfig>) {
      ARQ_CHECK(x.num_experts >= 0 && x.num_experts_per_tok > 0 && x.num_experts_per_tok <= std::max<int64_t>(x.num_experts, 1),
                ConfigError, origin, ": num_experts_per_tok = ", x.num_experts_per_tok, " with num_experts = ",
                x.num_experts);
      positive(x.decoder_sparse_step, "decoder_sparse_step");
    }
  }, c);
}

ModelConfig parse_config(std::string_view json, const std::string& origin) {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (const auto err = parser.parse(json.data(), json.size()).get(root))
    throw ConfigError(cat(origin, ": not valid JSON (", simdjson::error_message(err), ")"));
  JsonValue top = from_simdjson(root);
  ARQ_CHECK(top.is_object(), ConfigError, origin, ": top level is not a JSON object");
  const JsonValue* mt = top.find("model_type");
  ARQ_CHECK(mt, ConfigError, origin, ": no 'model_type' field (supported: ", supported_list(), ")");
  ARQ_CHECK(mt->kind() == JsonValue::Kind::string, ConfigError, origin, ": field 'model_type' must be a string");
  const std::string model_type = mt->as_string();
  if (std::find(kModelTypes.begin(), kModelTypes.end(), model_type) == kModelTypes.end())
    throw ConfigError(cat(origin, ": unsupported model_type '", model_type, "' (supported: ", supported_list(), ")"));
  ModelConfig c = default_config(model_type);

  // Qwen2-VL configs from newer transformers nest the LLM fields under "text_config".
  JsonValue merged = top;
  bool nested = false;
  if (const JsonValue* tc = top.find("text_config"); tc && model_type == "qwen2_vl") {
    ARQ_CHECK(tc->is_object(), ConfigError, origin, ": field 'text_config' must be an object");
    for (const auto& [k, v] : tc->items())
      if (k != "model_type" && k != "architectures") merged.set(k, v);
    merged.erase("text_config");
    nested = true;
  }
  FieldReader r(merged, origin);
  std::visit([&](auto& x) { detail::visit_fields(r, x); }, c);
  DecoderConfig& d = decoder_config(c);
  d.model_type = model_type;
  d.extra = r.leftovers({"model_type", "rope_parameters"});
  if (auto* vl = std::get_if<Qwen2VLConfig>(&c)) vl->nested_text_config = nested;
  resolve_config(c, origin);
  return c;
}

ModelConfig load_config(const std::string& path) {
  namespace fs = std::filesystem;
  fs::path p(path);
  if (fs::is_directory(p)) p /= "config.json";
  std::ifstream in(p, std::ios::binary);
  ARQ_CHECK(in, IoError, "cannot open '", p.string(), "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse_config(ss.str(), p.string());
}

}  // namespace arq::io
