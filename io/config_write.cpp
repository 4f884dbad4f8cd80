// config → HF-style config.json (sorted keys, 2-space indent, like PretrainedConfig.to_json_string).
#include "engine/error.h"
#include "io/config.h"
#include "io/config_fields.h"

namespace arq::io {

namespace {

JsonValue opt(const std::optional<int64_t>& v) { return v ? JsonValue(*v) : JsonValue(); }

JsonValue int_list(const std::vector<int64_t>& v) {
  JsonValue a = JsonValue::array();
  for (const int64_t x : v) a.push(x);
  return a;
}

class FieldWriter {
 public:
  JsonValue obj = JsonValue::object();

  void i64(const std::string& k, int64_t& x) { obj.set(k, x); }
  void nullable_i64(const std::string& k, int64_t& x) { obj.set(k, x); }
  void opt_i64(const std::string& k, std::optional<int64_t>& x) { obj.set(k, opt(x)); }
  void f64(const std::string& k, double& x) { obj.set(k, x); }
  void boolean(const std::string& k, bool& x) { obj.set(k, x); }
  void str(const std::string& k, std::string& x) { obj.set(k, x); }
  void i64_list(const std::string& k, std::vector<int64_t>& x) { obj.set(k, int_list(x)); }
  void str_list(const std::string& k, std::vector<std::string>& x) {
    JsonValue a = JsonValue::array();
    for (const auto& s : x) a.push(s);
    obj.set(k, std::move(a));
  }
  void architectures(std::vector<std::string>& x) { str_list("architectures", x); }
  void dtype(std::string& x) {
    if (!x.empty()) obj.set("torch_dtype", x);
  }
  void eos(std::vector<int64_t>& x) {
    if (x.empty()) obj.set("eos_token_id", JsonValue());
    else if (x.size() == 1) obj.set("eos_token_id", x[0]);
    else obj.set("eos_token_id", int_list(x));
  }
  void in_chans(int64_t& x) { obj.set("in_chans", x); }
  void rope(double& theta, std::optional<RopeScaling>& s) {
    obj.set("rope_theta", theta);
    if (!s) {
      obj.set("rope_scaling", JsonValue());
      return;
    }
    JsonValue r = JsonValue::object();
    r.set(s->legacy_type_key ? "type" : "rope_type", s->rope_type);
    const std::string& t = s->rope_type;
    if (s->factor) r.set("factor", *s->factor);
    if (s->original_max_position_embeddings) r.set("original_max_position_embeddings", *s->original_max_position_embeddings);
    if (t == "llama3") {
      r.set("low_freq_factor", s->low_freq_factor);
      r.set("high_freq_factor", s->high_freq_factor);
    }
    if (t == "yarn") {
      r.set("beta_fast", s->beta_fast);
      r.set("beta_slow", s->beta_slow);
      if (s->mscale) r.set("mscale", *s->mscale);
      if (s->mscale_all_dim) r.set("mscale_all_dim", *s->mscale_all_dim);
      if (!s->truncate) r.set("truncate", false);
    }
    if (s->attention_factor) r.set("attention_factor", *s->attention_factor);
    if (t == "longrope") {
      JsonValue sf = JsonValue::array(), lf = JsonValue::array();
      for (const double x : s->short_factor) sf.push(x);
      for (const double x : s->long_factor) lf.push(x);
      r.set("short_factor", std::move(sf));
      r.set("long_factor", std::move(lf));
    }
    if (!s->mrope_section.empty()) r.set("mrope_section", int_list(s->mrope_section));
    obj.set("rope_scaling", std::move(r));
  }
  void vision(Qwen2VLVisionConfig& vc) {
    FieldWriter w;
    for (const auto& [k, v] : vc.extra.items()) w.obj.set(k, v);
    detail::visit_vision(w, vc);
    obj.set("vision_config", std::move(w.obj));
  }
};

}  // namespace

std::string config_to_json(const ModelConfig& c) {
  ModelConfig copy = c;   // visitors take non-const refs (shared with the reader)
  FieldWriter w;
  for (const auto& [k, v] : decoder_config(copy).extra.items()) w.obj.set(k, v);
  std::visit([&](auto& x) { detail::visit_fields(w, x); }, copy);
  const DecoderConfig& d = decoder_config(copy);
  ARQ_CHECK(!d.model_type.empty(), ConfigError, "config_to_json: model_type is empty (call resolve_config first)");
  w.obj.set("model_type", d.model_type);
  w.obj.sort_keys();
  return w.obj.dump(2) + "\n";
}

void save_config(const std::string& folder, const ModelConfig& c) {
  write_text_file_atomic(folder + "/config.json", config_to_json(c));
}

}  // namespace arq::io
