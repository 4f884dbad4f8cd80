// GGUF export: metadata, names, Q/K permutation, per-tensor types, streamed tensor data.
#include "io/json_util.h"
#include "quant/export_gguf.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/error.h"
#include "io/gguf_write.h"
#include "io/tokenizer.h"
#include "io/tokenizer_spm.h"
#include "models/loader.h"

namespace arq::quant {

namespace fs = std::filesystem;
using io::GgmlType;
using io::GgufValue;

namespace {

struct Preset {
  const char* name;
  GgmlType base;
  uint32_t ftype;
};
const Preset kPresets[] = {
    {"f32", GgmlType::f32, 0},      {"f16", GgmlType::f16, 1},       {"fp16", GgmlType::f16, 1},
    {"bf16", GgmlType::bf16, 32},   {"q4_0", GgmlType::q4_0, 2},     {"q4_1", GgmlType::q4_1, 3},
    {"q8_0", GgmlType::q8_0, 7},    {"q5_0", GgmlType::q5_0, 8},     {"q5_1", GgmlType::q5_1, 9},
    {"q2_k_s", GgmlType::q2_K, 21}, {"q3_k_s", GgmlType::q3_K, 11},  {"q3_k_m", GgmlType::q3_K, 12},
    {"q3_k_l", GgmlType::q3_K, 13}, {"q4_k_s", GgmlType::q4_K, 14},  {"q4_k_m", GgmlType::q4_K, 15},
    {"q5_k_s", GgmlType::q5_K, 16}, {"q5_k_m", GgmlType::q5_K, 17},  {"q6_k", GgmlType::q6_K, 18},
    {"q6_k_s", GgmlType::q6_K, 18},
};

const Preset& preset_of(const std::string& p) {
  std::string known;
  for (const Preset& x : kPresets) {
    if (p == x.name) return x;
    known += known.empty() ? "" : ", ";
    known += x.name;
  }
  throw UsageError(cat("--format gguf:", p, ": unknown GGUF preset (known: ", known, ")"));
}

bool has(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

bool use_more_bits(int64_t i, int64_t n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }


int64_t jint(const io::JsonValue& cfg, const char* key, int64_t dflt) {
  const io::JsonValue* v = cfg.find(key);
  return v && !v->is_null() ? v->as_int() : dflt;
}
double jnum(const io::JsonValue& cfg, const char* key, double dflt) {
  const io::JsonValue* v = cfg.find(key);
  return v && !v->is_null() ? v->as_double() : dflt;
}

// tokenizer.ggml.* keys from the model folder's tokenizer (SPM: pieces, scores, types; BPE:
// tokens, types and the merges of tokenizer.json).
void add_tokenizer_metadata(io::GgufMetadata& md, const std::string& folder, const std::string& arch) {
  std::unique_ptr<io::Tokenizer> tok;
  try {
    tok = io::load_tokenizer(folder);
  } catch (const Error&) {
    return;   // no tokenizer files: a weights-only GGUF
  }
  const int64_t n = tok->vocab_size();
  std::vector<std::string> tokens(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) tokens[static_cast<size_t>(i)] = tok->id_to_piece(static_cast<int32_t>(i));
  if (const auto* spm = dynamic_cast<const io::SpmTokenizer*>(tok.get())) {
    std::vector<float> scores(static_cast<size_t>(n));
    std::vector<int32_t> types(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      scores[static_cast<size_t>(i)] = spm->score(static_cast<int32_t>(i));
      types[static_cast<size_t>(i)] = spm->token_type(static_cast<int32_t>(i));
    }
    md.set("tokenizer.ggml.model", GgufValue::make_string("llama"));
    md.set("tokenizer.ggml.tokens", io::gguf_string_array(std::move(tokens)));
    md.set("tokenizer.ggml.scores", io::gguf_f32_array(scores));
    md.set("tokenizer.ggml.token_type", io::gguf_i32_array(types));
    // llama.cpp's SPM path keeps every space unless told otherwise; record the model's own
    // normalizer so a reader tokenizes exactly as sentencepiece does.
    const io::SpmTokenizer::NormalizerFlags nf = spm->normalizer_flags();
    md.set("tokenizer.ggml.add_space_prefix", GgufValue::make_bool(nf.add_dummy_prefix));
    md.set("tokenizer.ggml.remove_extra_whitespaces", GgufValue::make_bool(nf.remove_extra_whitespaces));
  } else {
    md.set("tokenizer.ggml.model", GgufValue::make_string("gpt2"));
    md.set("tokenizer.ggml.pre", GgufValue::make_string(arch == "llama" ? "llama-bpe" : "qwen2"));
    md.set("tokenizer.ggml.tokens", io::gguf_string_array(std::move(tokens)));
    std::vector<int32_t> types(static_cast<size_t>(n), 1);
    md.set("tokenizer.ggml.token_type", io::gguf_i32_array(types));
    const std::string tj = (fs::path(folder) / "tokenizer.json").string();
    if (fs::exists(tj)) {
      const io::JsonValue j = io::parse_json(io::read_text_file(tj), tj);
      std::vector<std::string> merges;
      if (const io::JsonValue* m = j.find("model"); m && m->find("merges"))
        for (const io::JsonValue& e : m->find("merges")->elements())
          merges.push_back(e.is_array() && e.elements().size() == 2 ? e.elements()[0].as_string() + " " + e.elements()[1].as_string()
                                                                    : e.as_string());
      md.set("tokenizer.ggml.merges", io::gguf_string_array(std::move(merges)));
    }
  }
  auto put_id = [&](const char* key, int32_t id) {
    if (id >= 0) md.set(key, GgufValue::make_u32(static_cast<uint32_t>(id)));
  };
  put_id("tokenizer.ggml.bos_token_id", tok->bos_id());
  put_id("tokenizer.ggml.eos_token_id", tok->eos_id());
  put_id("tokenizer.ggml.unknown_token_id", tok->unk_id());
  put_id("tokenizer.ggml.padding_token_id", tok->pad_id());
  md.set("tokenizer.ggml.add_bos_token", GgufValue::make_bool(tok->add_bos_token()));
  md.set("tokenizer.ggml.add_eos_token", GgufValue::make_bool(tok->add_eos_token()));
}

}  // namespace

GgmlType gguf_preset_base_type(const std::string& preset) { return preset_of(preset).base; }
uint32_t gguf_preset_ftype(const std::string& preset) { return preset_of(preset).ftype; }

GgmlType gguf_tensor_type(const std::string& name, const Shape& shape, const GgufTypeContext& c) {
  const GgmlType base = gguf_preset_base_type(c.preset);
  const std::string& p = c.preset;
  const bool is_2d = shape.size() >= 2;
  if (!is_2d || has(name, "_norm") || !has(name, ".weight") || has(name, "ffn_gate_inp")) return GgmlType::f32;
  if (base == GgmlType::f32 || base == GgmlType::f16 || base == GgmlType::bf16) return base;
  GgmlType t = base;
  const int64_t i = c.layer, n = c.n_layer;
  const bool output_like = name == "output.weight" || (name == "token_embd.weight" && c.tied_embeddings);
  if (output_like) {
    t = base == GgmlType::q8_0 ? GgmlType::q8_0 : GgmlType::q6_K;
    if (shape.back() % 256 != 0) t = GgmlType::q8_0;
  } else if (name == "token_embd.weight") {
    t = base;
  } else if (has(name, "attn_v.weight")) {
    if (p == "q2_k_s" && c.n_gqa >= 4) t = GgmlType::q4_K;
    else if (p == "q3_k_m") t = i < 2 ? GgmlType::q5_K : GgmlType::q4_K;
    else if (p == "q3_k_l") t = GgmlType::q5_K;
    else if ((p == "q4_k_m" || p == "q5_k_m") && use_more_bits(i, n)) t = GgmlType::q6_K;
    else if (p == "q4_k_s" && i < 4) t = GgmlType::q5_K;
  } else if (has(name, "ffn_down")) {
    if (p == "q2_k_s" && i < n / 8) t = GgmlType::q4_K;
    else if (p == "q3_k_m") t = i < n / 16 ? GgmlType::q5_K : GgmlType::q4_K;
    else if (p == "q3_k_l") t = GgmlType::q5_K;
    else if ((p == "q4_k_m" || p == "q5_k_m") && use_more_bits(i, n)) t = GgmlType::q6_K;
    else if (p == "q4_k_s" && i < n / 8) t = GgmlType::q5_K;
  } else if (has(name, "attn_output.weight")) {
    if (p == "q3_k_m") t = GgmlType::q4_K;
    else if (p == "q3_k_l") t = GgmlType::q5_K;
  }
  // Shape fallback (llama.cpp): rows that do not fill whole super-blocks.
  const int64_t cols = shape.back();
  if (cols % io::ggml_traits(t).block_size != 0) {
    if (t == GgmlType::q2_K || t == GgmlType::q3_K || t == GgmlType::q4_K || t == GgmlType::q5_K) t = GgmlType::q5_0;
    else if (t == GgmlType::q6_K) t = GgmlType::q8_0;
    if (cols % io::ggml_traits(t).block_size != 0) t = GgmlType::bf16;
  }
  return t;
}

Tensor permute_qk_rows(const Tensor& w, int64_t n_head) {
  const Tensor x = w.to(Device::cpu()).to(DType::f32).contiguous();
  const int64_t rows = x.size(0);
  ARQ_CHECK(n_head > 0 && rows % n_head == 0 && (rows / n_head) % 2 == 0, ShapeError, "[permute_qk] ", x.str(),
            " does not split into ", n_head, " heads of even size");
  const int64_t hd = rows / n_head, cols = x.numel() / rows;
  Tensor out = Tensor::empty(x.shape(), DType::f32);
  const float* s = x.data<float>();
  float* d = out.data<float>();
  for (int64_t h = 0; h < n_head; ++h)
    for (int64_t i = 0; i < hd / 2; ++i) {
      std::copy_n(s + (h * hd + i) * cols, cols, d + (h * hd + 2 * i) * cols);
      std::copy_n(s + (h * hd + i + hd / 2) * cols, cols, d + (h * hd + 2 * i + 1) * cols);
    }
  return out;
}

void export_gguf(const ExportSource& src, const ExportFormat& f, const std::string& dir, const ExportOptions& o) {
  io::JsonValue cfg = src.config;
  if (cfg.is_null()) {
    const std::string p = (fs::path(src.model_folder) / "config.json").string();
    cfg = io::parse_json(io::read_text_file(p), p);
  }
  const io::JsonValue* mt = cfg.find("model_type");
  const std::string model_type = mt ? mt->as_string() : "";
  std::string arch;
  if (model_type == "llama" || model_type == "mistral") arch = "llama";
  else if (model_type == "qwen2" || model_type == "qwen3") arch = model_type;
  else throw UnsupportedError(cat("--format ", f.spec, ": GGUF export supports llama, mistral, qwen2 and qwen3, not '",
                                  model_type, "'"));
  const int64_t H = jint(cfg, "hidden_size", 0), L = jint(cfg, "num_hidden_layers", 0);
  const int64_t nh = jint(cfg, "num_attention_heads", 0), nkv = jint(cfg, "num_key_value_heads", nh);
  const int64_t hd = jint(cfg, "head_dim", nh > 0 ? H / nh : 0);
  const io::JsonValue* tie = cfg.find("tie_word_embeddings");
  const bool tied = tie ? tie->as_bool() : (arch == "llama" ? false : false);

  io::GgufMetadata md;
  const std::string name = src.model_folder.empty() ? "model" : fs::path(src.model_folder).filename().string();
  md.set("general.architecture", GgufValue::make_string(arch));
  md.set("general.name", GgufValue::make_string(name));
  md.set("general.file_type", GgufValue::make_u32(gguf_preset_ftype(f.gguf_preset)));
  const std::string a = arch + ".";
  md.set(a + "vocab_size", GgufValue::make_u32(static_cast<uint32_t>(jint(cfg, "vocab_size", 0))));
  md.set(a + "context_length", GgufValue::make_u32(static_cast<uint32_t>(jint(cfg, "max_position_embeddings", 2048))));
  md.set(a + "embedding_length", GgufValue::make_u32(static_cast<uint32_t>(H)));
  md.set(a + "block_count", GgufValue::make_u32(static_cast<uint32_t>(L)));
  md.set(a + "feed_forward_length", GgufValue::make_u32(static_cast<uint32_t>(jint(cfg, "intermediate_size", 0))));
  md.set(a + "attention.head_count", GgufValue::make_u32(static_cast<uint32_t>(nh)));
  md.set(a + "attention.head_count_kv", GgufValue::make_u32(static_cast<uint32_t>(nkv)));
  md.set(a + "attention.layer_norm_rms_epsilon", GgufValue::make_f32(static_cast<float>(jnum(cfg, "rms_norm_eps", 1e-6))));
  md.set(a + "rope.freq_base", GgufValue::make_f32(static_cast<float>(jnum(cfg, "rope_theta", 10000.0))));
  md.set(a + "rope.dimension_count", GgufValue::make_u32(static_cast<uint32_t>(hd)));
  if (nh > 0 && hd != H / nh) {
    md.set(a + "attention.key_length", GgufValue::make_u32(static_cast<uint32_t>(hd)));
    md.set(a + "attention.value_length", GgufValue::make_u32(static_cast<uint32_t>(hd)));
  }
  add_tokenizer_metadata(md, src.model_folder, arch);

  // Tensor plan: HF name → GGUF name, type, permutation.
  struct Item {
    std::string hf, gguf;
    Shape shape;
    GgmlType type;
    int64_t permute_heads = 0;
  };
  std::vector<Item> items;
  bool any_quantized = false;
  std::vector<std::string> names = src.tensors->names();
  for (const std::string& hf : names) {
    if (tied && hf == "lm_head.weight") continue;
    const std::string g = models::GgufSource::gguf_name(hf);
    if (g.empty()) {
      if (o.log) o.log(cat("warning: ", f.spec, ": tensor ", hf, " has no GGUF name; skipped"));
      continue;
    }
    Item it{hf, g, *src.tensors->shape(hf), GgmlType::f32, 0};
    GgufTypeContext ctx{f.gguf_preset, -1, L, nkv > 0 ? nh / nkv : 1, tied};
    if (g.rfind("blk.", 0) == 0) ctx.layer = std::stoll(g.substr(4, g.find('.', 4) - 4));
    it.type = gguf_tensor_type(g, it.shape, ctx);
    if (arch == "llama" && (g.find(".attn_q.") != std::string::npos || g.find(".attn_k.") != std::string::npos))
      it.permute_heads = g.find(".attn_q.") != std::string::npos ? nh : nkv;
    any_quantized = any_quantized || io::ggml_traits(it.type).quantized;
    items.push_back(std::move(it));
  }
  if (any_quantized) md.set("general.quantization_version", GgufValue::make_u32(2));
  std::stable_sort(items.begin(), items.end(), [](const Item& x, const Item& y) {
    auto rank = [](const std::string& g) { return g.rfind("blk.", 0) == 0 ? 1 : (g == "token_embd.weight" ? 0 : 2); };
    return rank(x.gguf) < rank(y.gguf);
  });

  std::vector<io::GgufTensorDecl> decls;
  for (const Item& it : items) decls.push_back({it.gguf, it.shape, it.type});
  std::string upper = f.gguf_preset;
  for (char& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  const std::string path = (fs::path(dir) / (name + "-" + upper + ".gguf")).string();
  io::GgufStreamWriter w(path, md, std::move(decls));
  for (const Item& it : items) {
    Tensor t = src.tensors->get(it.hf);
    if (it.permute_heads > 0) t = permute_qk_rows(t, it.permute_heads);
    w.write_tensor(it.gguf, t);
  }
  w.finish();
  if (o.log) o.log(cat(f.spec, ": ", items.size(), " tensors → ", path));
}

}  // namespace arq::quant
