#include "models/loader.h"

#include <filesystem>

#include "io/config.h"
#include "io/ggml_blocks.h"
#include "io/tokenizer_gguf.h"
#include "models/family.h"

namespace arq::models {

StoreSource::StoreSource(io::WeightStore store)
    : StoreSource(std::make_shared<const io::WeightStore>(std::move(store))) {}

StoreSource::StoreSource(std::shared_ptr<const io::WeightStore> store)
    : store_(std::move(store)), packed_(io::PackedCheckpoint::open(store_)) {}

std::optional<Shape> StoreSource::shape(const std::string& name) const {
  if (packed_ && packed_->is_packed(name)) return packed_->shape(name);
  if (!store_->has(name)) return std::nullopt;
  return store_->info(name).shape;
}

Tensor StoreSource::get(const std::string& name) const {
  if (packed_ && packed_->is_packed(name)) return packed_->get(name);
  return store_->view(name);
}

std::vector<std::string> StoreSource::names() const { return packed_ ? packed_->names() : store_->names(); }

// ---- GGUF -------------------------------------------------------------------------------------

std::string GgufSource::gguf_name(const std::string& hf) {
  static const std::pair<const char*, const char*> kGlobal[] = {
      {"model.embed_tokens.weight", "token_embd.weight"},
      {"model.norm.weight", "output_norm.weight"},
      {"lm_head.weight", "output.weight"},
  };
  for (const auto& [a, b] : kGlobal)
    if (hf == a) return b;
  const std::string pre = "model.layers.";
  if (hf.rfind(pre, 0) != 0) return "";
  const size_t dot = hf.find('.', pre.size());
  if (dot == std::string::npos) return "";
  const std::string layer = hf.substr(pre.size(), dot - pre.size());
  const std::string rest = hf.substr(dot + 1);
  static const std::pair<const char*, const char*> kBlock[] = {
      {"input_layernorm", "attn_norm"},        {"post_attention_layernorm", "ffn_norm"},
      {"self_attn.q_proj", "attn_q"},          {"self_attn.k_proj", "attn_k"},
      {"self_attn.v_proj", "attn_v"},          {"self_attn.o_proj", "attn_output"},
      {"self_attn.q_norm", "attn_q_norm"},     {"self_attn.k_norm", "attn_k_norm"},
      {"mlp.gate_proj", "ffn_gate"},           {"mlp.up_proj", "ffn_up"},
      {"mlp.down_proj", "ffn_down"},
  };
  for (const auto& [a, b] : kBlock) {
    const std::string s = a;
    if (rest.rfind(s + ".", 0) == 0) return cat("blk.", layer, ".", b, rest.substr(s.size()));
  }
  return "";
}

GgufSource::GgufSource(std::shared_ptr<const io::GgufFile> file, int64_t n_head, int64_t n_head_kv, bool unpermute_qk)
    : file_(std::move(file)), n_head_(n_head), n_head_kv_(n_head_kv), unpermute_qk_(unpermute_qk) {}

std::optional<Shape> GgufSource::shape(const std::string& name) const {
  const std::string g = gguf_name(name);
  if (g.empty()) return std::nullopt;
  const io::GgufTensorInfo* info = file_->find(g);
  if (!info) return std::nullopt;
  return info->shape;
}

std::vector<std::string> GgufSource::names() const {
  // The HF names of the tensors we map (inverse lookup through gguf_name would need the config;
  // callers use shape()/get() with HF names, so list the GGUF names as they are).
  std::vector<std::string> out;
  for (const auto& t : file_->tensors()) out.push_back(t.name);
  return out;
}

Tensor GgufSource::get(const std::string& name) const {
  const std::string g = gguf_name(name);
  ARQ_CHECK(!g.empty() && file_->find(g), IoError, "tensor '", name, "' (GGUF '", g, "') not found in ", file_->path());
  const io::GgufTensorInfo& info = file_->info(g);
  Tensor t;
  if (info.ggml_type == io::kGgmlF32 || info.ggml_type == io::kGgmlF16 || info.ggml_type == io::kGgmlBF16) {
    t = file_->view(g);
  } else {
    const io::GgmlTypeTraits* traits = io::ggml_traits_or_null(info.ggml_type);
    ARQ_CHECK(traits && traits->quantized, UnsupportedError, "GGUF tensor '", g, "' ", shape_str(info.shape), " in ",
              file_->path(), " has ggml type ", info.ggml_type, " (",
              io::ggml_type_info(info.ggml_type) ? io::ggml_type_info(info.ggml_type)->name : "unknown",
              "), which ar-quant cannot dequantize");
    const io::GgufRawTensor raw = file_->raw(g);
    try {
      t = io::ggml_dequantize(raw.data, raw.nbytes, traits->type, info.shape);
    } catch (const Error& e) {
      throw IoError(cat("GGUF tensor '", g, "' in ", file_->path(), ": ", e.what()));
    }
  }
  const bool is_q = name.find("self_attn.q_proj.") != std::string::npos;
  const bool is_k = name.find("self_attn.k_proj.") != std::string::npos;
  if (unpermute_qk_ && (is_q || is_k)) {
    // Inside each head, GGUF row 2i is HF row i and row 2i+1 is HF row i + hd/2 (§4.8):
    // view rows as [n, hd/2, 2] and swap the last two axes.
    const int64_t n = is_q ? n_head_ : n_head_kv_;
    const int64_t rows = t.size(0), hd = rows / n;
    ARQ_CHECK(rows % n == 0 && hd % 2 == 0, ShapeError, "GGUF tensor '", g, "' ", t.str(), " does not split into ", n,
              " heads of even size");
    Shape inner(t.shape().begin() + 1, t.shape().end());   // [in] or []
    Shape s4 = {n, hd / 2, 2};
    s4.insert(s4.end(), inner.begin(), inner.end());
    Tensor v = t.contiguous().view(s4).transpose(1, 2).contiguous();
    t = v.reshape(t.shape());
  }
  return t;
}

namespace {

int64_t meta_int(const io::GgufMetadata& m, const std::string& key, int64_t fallback) {
  return m.has(key) ? m.get_i64(key) : fallback;
}
double meta_f(const io::GgufMetadata& m, const std::string& key, double fallback) {
  return m.has(key) ? m.get_f64(key) : fallback;
}

}  // namespace

DecoderSpec gguf_decoder_spec(const io::GgufFile& f) {
  const io::GgufMetadata& m = f.metadata();
  const std::string arch = m.get_string("general.architecture");
  ARQ_CHECK(arch == "llama" || arch == "qwen2" || arch == "qwen3", ConfigError, f.path(),
            ": general.architecture '", arch, "' is not supported for evaluation (supported: llama, qwen2, qwen3)");
  const std::string a = arch + ".";
  DecoderSpec s;
  s.model_type = arch;
  const io::GgufTensorInfo& emb = f.info("token_embd.weight");
  s.vocab_size = emb.shape.at(0);
  s.hidden_size = m.get_i64(a + "embedding_length");
  s.intermediate_size = m.get_i64(a + "feed_forward_length");
  s.num_hidden_layers = m.get_i64(a + "block_count");
  s.num_attention_heads = m.get_i64(a + "attention.head_count");
  s.num_key_value_heads = meta_int(m, a + "attention.head_count_kv", s.num_attention_heads);
  s.head_dim = meta_int(m, a + "attention.key_length", s.num_attention_heads > 0 ? s.hidden_size / s.num_attention_heads : 0);
  s.rms_norm_eps = meta_f(m, a + "attention.layer_norm_rms_epsilon", 1e-5);
  s.rope.theta = meta_f(m, a + "rope.freq_base", 10000.0);
  s.rope.dim = meta_int(m, a + "rope.dimension_count", s.head_dim);
  s.rope.max_position_embeddings = meta_int(m, a + "context_length", 2048);
  if (m.has(a + "rope.scaling.type")) {
    const std::string t = m.get_string(a + "rope.scaling.type");
    if (t != "none") {
      s.rope.scaling.rope_type = t;
      s.rope.scaling.factor = meta_f(m, a + "rope.scaling.factor", 1.0);
      s.rope.scaling.original_max_position_embeddings = meta_int(m, a + "rope.scaling.original_context_length", 0);
    }
  }
  ARQ_CHECK(!f.find("rope_freqs.weight"), UnsupportedError, f.path(),
            ": rope_freqs.weight (llama3 RoPE scaling in GGUF form) is not supported yet");
  s.tie_word_embeddings = f.find("output.weight") == nullptr;
  s.qkv_bias = f.find("blk.0.attn_q.bias") != nullptr;
  s.o_bias = f.find("blk.0.attn_output.bias") != nullptr;
  s.mlp_bias = f.find("blk.0.ffn_up.bias") != nullptr;
  s.qk_norm = f.find("blk.0.attn_q_norm.weight") != nullptr;
  s.sliding_window.assign(static_cast<size_t>(std::max<int64_t>(s.num_hidden_layers, 0)),
                          meta_int(m, a + "attention.sliding_window", 0));
  s.bos_token_id = meta_int(m, "tokenizer.ggml.bos_token_id", -1);
  const int64_t eos = meta_int(m, "tokenizer.ggml.eos_token_id", -1);
  if (eos >= 0) s.eos_token_ids = {eos};
  // A llama-arch GGUF with q/k norms or biases is not something the converter writes; the family
  // flags above come from the tensors present, so qwen2/qwen3 files get theirs.
  try {
    s.validate();
  } catch (const ConfigError& e) {
    throw ConfigError(cat(f.path(), ": ", e.what()));
  }
  return s;
}

bool is_gguf_path(const std::string& path) {
  return path.size() > 5 && path.substr(path.size() - 5) == ".gguf" && std::filesystem::is_regular_file(path);
}

CausalLM load_causal_lm(const std::string& path, const LoadOptions& options) {
  namespace fs = std::filesystem;
  ARQ_CHECK(fs::exists(path), IoError, "model path '", path, "' does not exist");
  if (is_gguf_path(path)) {
    auto file = std::make_shared<const io::GgufFile>(io::GgufFile::open(path));
    DecoderSpec spec = gguf_decoder_spec(*file);
    auto src = std::make_shared<GgufSource>(file, spec.num_attention_heads, spec.num_key_value_heads,
                                            spec.model_type == "llama");
    return CausalLM(std::move(spec), std::move(src), options);
  }
  ARQ_CHECK(fs::is_directory(path), IoError, "model path '", path, "' is neither a folder nor a .gguf file");
  const std::string cfg_path = (fs::path(path) / "config.json").string();
  ARQ_CHECK(fs::exists(cfg_path), IoError, "no config.json in model folder '", path, "'");
  io::ModelConfig cfg = io::load_config(path);
  DecoderSpec spec = decoder_spec(cfg, cfg_path);
  auto src = std::make_shared<StoreSource>(io::WeightStore::open(path));
  return CausalLM(std::move(spec), std::move(src), options);
}

std::unique_ptr<io::Tokenizer> load_model_tokenizer(const std::string& path) {
  if (is_gguf_path(path)) {
    io::GgufFile f = io::GgufFile::open(path);
    ARQ_CHECK(f.metadata().has("tokenizer.ggml.model"), IoError, path, ": no tokenizer in the GGUF metadata");
    return io::tokenizer_from_gguf_vocab(io::gguf_vocab_from_metadata(f.metadata()));
  }
  return io::load_tokenizer(path);
}

}  // namespace arq::models
