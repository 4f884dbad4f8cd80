#include "models/random_model.h"

#include <filesystem>

#include "engine/ops.h"
#include "io/config.h"
#include "io/safetensors.h"
#include "models/family.h"

namespace arq::models {

namespace {

uint64_t name_seed(uint64_t seed, const std::string& name) {
  uint64_t h = 1469598103934665603ULL ^ (seed * 0x9E3779B97F4A7C15ULL);   // FNV-1a over the name
  for (unsigned char c : name) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

bool is_norm(const std::string& name) { return name.find("norm.weight") != std::string::npos; }

const char* torch_dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "float32";
    case DType::bf16: return "bfloat16";
    case DType::f16: return "float16";
    case DType::f64: return "float64";
    default: return "float32";
  }
}

}  // namespace

std::vector<std::string> checkpoint_tensor_names(const DecoderSpec& s) {
  std::vector<std::string> names = {"model.embed_tokens.weight", "model.norm.weight"};
  if (!s.tie_word_embeddings) names.push_back("lm_head.weight");
  // A throwaway model over an empty source would fail validation, so list block names here.
  for (int64_t i = 0; i < s.num_hidden_layers; ++i) {
    const std::string p = cat("model.layers.", i, ".");
    names.push_back(p + "input_layernorm.weight");
    for (const char* x : {"q_proj", "k_proj", "v_proj", "o_proj"}) {
      names.push_back(p + "self_attn." + x + ".weight");
      const bool qkv = std::string(x) != "o_proj";
      if ((qkv && s.qkv_bias) || (!qkv && s.o_bias)) names.push_back(p + "self_attn." + x + ".bias");
    }
    if (s.qk_norm) {
      names.push_back(p + "self_attn.q_norm.weight");
      names.push_back(p + "self_attn.k_norm.weight");
    }
    names.push_back(p + "post_attention_layernorm.weight");
    for (const char* x : {"gate_proj", "up_proj", "down_proj"}) {
      names.push_back(p + "mlp." + x + ".weight");
      if (s.mlp_bias) names.push_back(p + "mlp." + x + ".bias");
    }
  }
  return names;
}

namespace {

Shape shape_of(const DecoderSpec& s, const std::string& name) {
  auto ends = [&](const char* suf) {
    const std::string x = suf;
    return name.size() >= x.size() && name.compare(name.size() - x.size(), x.size(), x) == 0;
  };
  const int64_t H = s.hidden_size, I = s.intermediate_size, Q = s.q_dim(), KV = s.kv_dim();
  if (name == "model.embed_tokens.weight" || name == "lm_head.weight") return {s.vocab_size, H};
  if (ends("layernorm.weight") || name == "model.norm.weight") return {H};
  if (ends("q_norm.weight") || ends("k_norm.weight")) return {s.head_dim};
  if (ends("q_proj.weight")) return {Q, H};
  if (ends("k_proj.weight") || ends("v_proj.weight")) return {KV, H};
  if (ends("o_proj.weight")) return {H, Q};
  if (ends("q_proj.bias")) return {Q};
  if (ends("k_proj.bias") || ends("v_proj.bias")) return {KV};
  if (ends("o_proj.bias")) return {H};
  if (ends("gate_proj.weight") || ends("up_proj.weight")) return {I, H};
  if (ends("down_proj.weight")) return {H, I};
  if (ends("gate_proj.bias") || ends("up_proj.bias")) return {I};
  if (ends("down_proj.bias")) return {H};
  ARQ_ASSERT(false, "no shape rule for ", name);
  return {};
}

}  // namespace

std::shared_ptr<MapSource> random_weights(const DecoderSpec& spec, const RandomInit& init) {
  spec.validate();
  const double std = init.stddev > 0 ? init.stddev : (spec.initializer_range > 0 ? spec.initializer_range : 0.02);
  auto src = std::make_shared<MapSource>();
  src->set_origin(cat("random ", spec.model_type, " model (seed ", init.seed, ")"));
  for (const std::string& n : checkpoint_tensor_names(spec)) {
    const Shape shape = shape_of(spec, n);
    const uint64_t seed = name_seed(init.seed, n);
    Tensor t;
    if (is_norm(n)) {
      t = init.norm_jitter > 0 ? rand_normal(shape, seed, 1.0, init.norm_jitter) : ones(shape);
    } else {
      t = rand_normal(shape, seed, 0.0, std);
    }
    src->put(n, t.to(init.dtype));
  }
  return src;
}

CausalLM random_causal_lm(const DecoderSpec& spec, const RandomInit& init, const LoadOptions& options) {
  DecoderSpec s = spec;
  s.torch_dtype = torch_dtype_name(init.dtype);
  return CausalLM(s, random_weights(s, init), options);
}

void save_pretrained(const CausalLM& model, const std::string& dir, const SaveOptions& options) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  ARQ_CHECK(!ec, IoError, "cannot create folder '", dir, "': ", ec.message());
  DecoderSpec spec = model.spec();
  // Lazy tensors: each is read from the source when written, so a source that computes its
  // tensors (a quantized overlay) is never resident as a whole.
  std::vector<io::StWriteTensor> tensors;
  DType stored = DType::f32;
  const TensorSource& src = model.source();
  for (const std::string& n : checkpoint_tensor_names(spec)) {
    const DType dt = options.dtype ? *options.dtype : src.dtype(n);
    const std::optional<Shape> shape = src.shape(n);
    ARQ_CHECK(shape.has_value(), IoError, "save_pretrained: tensor '", n, "' is missing from ", src.origin());
    if (tensors.empty()) stored = dt;
    tensors.push_back(io::StWriteTensor::lazy(n, io::st_from_engine(dt), *shape, [&src, n, dt] {
      Tensor t = src.get(n);
      return t.dtype() == dt ? t : t.to(dt);
    }));
  }
  spec.torch_dtype = torch_dtype_name(stored);
  spec.rope.style = RopeStyle::rotate_half;   // the tensors are in HF order whatever the source was
  io::save_config(dir, model_config(spec));
  io::ShardOptions so;
  so.max_shard_bytes = options.max_shard_bytes;
  io::save_safetensors_sharded(dir, tensors, so);
  if (!options.tokenizer_dir.empty()) {
    ARQ_CHECK(fs::is_directory(options.tokenizer_dir), IoError, "tokenizer folder '", options.tokenizer_dir,
              "' does not exist");
    int copied = 0;
    for (const char* f : {"tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                          "generation_config.json"}) {
      const fs::path from = fs::path(options.tokenizer_dir) / f;
      if (!fs::exists(from)) continue;
      fs::copy_file(from, fs::path(dir) / f, fs::copy_options::overwrite_existing, ec);
      ARQ_CHECK(!ec, IoError, "cannot copy '", from.string(), "' to '", dir, "': ", ec.message());
      if (std::string(f) == "tokenizer.model" || std::string(f) == "tokenizer.json") ++copied;
    }
    ARQ_CHECK(copied > 0, IoError, "no tokenizer.model or tokenizer.json in '", options.tokenizer_dir, "'");
  }
}

}  // namespace arq::models
