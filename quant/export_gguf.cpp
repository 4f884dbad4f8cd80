// GGUF export: metadata, names, Q/K permutation, per-tensor types, streamed tensor data.
#include "io/json_util.h"
#include "quant/export_gguf.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "engine/error.h"
#include "io/ggml_encode_params.h"
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
    // A non-identity normalizer (sentencepiece's default nmt_nfkc: '\n' and '\t' become spaces,
    // full-width forms ASCII) is a compiled rule table; without it a reader would keep '\n' and
    // get <unk> or bytes where sentencepiece has "▁". llama.cpp reads this key only for "t5"
    // vocabularies and ignores it here.
    if (!nf.precompiled_charsmap.empty()) {
      std::vector<int64_t> bytes(nf.precompiled_charsmap.size());
      for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(nf.precompiled_charsmap[i]);
      md.set("tokenizer.ggml.precompiled_charsmap", io::gguf_int_array(io::GgufType::u8, std::move(bytes)));
    }
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

// The frozen layer of module `mod`, if the quantizer produced one. The one place that knows how
// an ExportSource holds frozen layers.
std::optional<QuantizedLinear> frozen_layer(const ExportSource& src, const std::string& mod) {
  if (src.frozen) return src.frozen->has(mod) ? std::optional<QuantizedLinear>(src.frozen->load(mod)) : std::nullopt;
  if (src.quantized) {
    auto it = src.quantized->find(mod);
    if (it != src.quantized->end()) return it->second;
  }
  return std::nullopt;
}

// Whether frozen layer q was quantized with exactly the scheme of ggml type t (then its levels
// and scales are what the block stores).
bool frozen_matches(const QuantizedLinear& q, GgmlType t, const Shape& shape) {
  const QuantScheme s = gguf_type_scheme(t);
  if (s.keep_fp() || shape.size() != 2 || q.layout.out != shape[0] || q.layout.in != shape[1]) return false;
  if (q.bits != s.bits || q.data_type != s.qtype() || q.layout.per_tensor || q.layout.group_len != s.group_size ||
      q.layout.in % s.group_size != 0 || !q.codes.defined() || !q.scales.defined())
    return false;
  if (is_double_quant(s.qtype()))
    return q.super_bits == s.super_bits && q.super_group_size == s.super_group_size && q.d_scales.defined() &&
           (s.qtype() == QDataType::int_sym_dq || (q.mins.defined() && q.d_mins.defined()));
  if (s.qtype() == QDataType::int_asym_float_zp) return q.mins.defined() && q.scales.dtype() == DType::f16;
  return q.scales.dtype() == DType::f16;  // q4_0 / q5_0 / q8_0: the block's fp16 d is the scale
}

// Row r of a Q/K weight in llama.cpp's interleaved order comes from this row of the HF weight
// (the inverse view of permute_qk_rows).
int64_t qk_source_row(int64_t r, int64_t rows, int64_t n_head) {
  const int64_t hd = rows / n_head, h = r / hd, k = r % hd;
  return h * hd + (k % 2 == 0 ? k / 2 : k / 2 + hd / 2);
}

// The ggml bytes of a frozen layer of matching scheme, rows in GGUF order.
std::vector<uint8_t> pack_frozen(const QuantizedLinear& q, GgmlType t, int64_t permute_heads) {
  const GroupLayout& g = q.layout;
  const QuantScheme s = gguf_type_scheme(t);
  const bool dq = is_double_quant(s.qtype());
  const int64_t n_g = g.groups_per_row, sg = dq ? s.super_group_size : 1, n_sup = n_g / sg;
  const Tensor codes = q.codes.to(Device::cpu()).contiguous();
  auto f32 = [](const Tensor& x) { return x.defined() ? x.to(Device::cpu()).to(DType::f32).contiguous() : Tensor(); };
  const Tensor sc = f32(q.scales), mn = f32(q.mins), ds = f32(q.d_scales), dm = f32(q.d_mins);
  const size_t row_bytes = io::ggml_row_bytes(t, g.in);
  std::vector<uint8_t> out(row_bytes * static_cast<size_t>(g.out));
  std::vector<float> d(static_cast<size_t>(dq ? n_sup : n_g)), m(d.size());
  std::vector<int32_t> ls(static_cast<size_t>(n_g)), lm(static_cast<size_t>(n_g));
  if (permute_heads > 0)
    ARQ_CHECK(g.out % permute_heads == 0 && (g.out / permute_heads) % 2 == 0, ShapeError, "[gguf] ", q.name, ": ", g.out,
              " rows do not split into ", permute_heads, " heads of even size");
  for (int64_t r = 0; r < g.out; ++r) {
    const int64_t o = permute_heads > 0 ? qk_source_row(r, g.out, permute_heads) : r;
    const float* srow = sc.data<float>() + o * n_g;
    const float* mrow = mn.defined() ? mn.data<float>() + o * n_g : nullptr;
    io::GgmlBlockParams p;
    p.levels = codes.data<uint8_t>() + o * g.in;
    if (dq) {
      // s' = level·d exactly (an fp16 d times a small int is exact in f32), so s'/d is the level.
      for (int64_t b = 0; b < n_sup; ++b) {
        d[static_cast<size_t>(b)] = ds.data<float>()[o * n_sup + b];
        m[static_cast<size_t>(b)] = dm.defined() ? dm.data<float>()[o * n_sup + b] : 0.f;
        for (int64_t j = b * sg; j < (b + 1) * sg; ++j) {
          const float db = d[static_cast<size_t>(b)], mb = m[static_cast<size_t>(b)];
          ls[static_cast<size_t>(j)] = db != 0.f ? static_cast<int32_t>(std::nearbyint(srow[j] / db)) : 0;
          lm[static_cast<size_t>(j)] = mrow && mb != 0.f ? static_cast<int32_t>(std::nearbyint(mrow[j] / mb)) : 0;
        }
      }
      p.sub_scales = ls.data();
      p.sub_mins = lm.data();
    } else {
      for (int64_t b = 0; b < n_g; ++b) {
        d[static_cast<size_t>(b)] = srow[b];
        m[static_cast<size_t>(b)] = mrow ? -mrow[b] : 0.f;   // q4_1/q5_1: ŵ = d·u + m, stored min = −m
      }
    }
    p.d = d.data();
    p.m = m.data();
    io::ggml_pack_row(t, p, out.data() + static_cast<size_t>(r) * row_bytes, g.in);
  }
  return out;
}

}  // namespace

QuantScheme gguf_type_scheme(GgmlType t) {
  const DType f16 = DType::f16, f32 = DType::f32;
  switch (t) {
    case GgmlType::q4_0: return {.bits = 4, .group_size = 32, .sym = true, .data_type = "int_sym", .scale_dtype = f16};
    case GgmlType::q5_0: return {.bits = 5, .group_size = 32, .sym = true, .data_type = "int_sym", .scale_dtype = f16};
    case GgmlType::q8_0: return {.bits = 8, .group_size = 32, .sym = true, .data_type = "int_sym", .scale_dtype = f16};
    case GgmlType::q4_1:
      return {.bits = 4, .group_size = 32, .sym = false, .data_type = "int_asym_float_zp", .scale_dtype = f16};
    case GgmlType::q5_1:
      return {.bits = 5, .group_size = 32, .sym = false, .data_type = "int_asym_float_zp", .scale_dtype = f16};
    case GgmlType::q2_K:
      return {.bits = 2, .group_size = 16, .sym = false, .data_type = "int_asym_dq", .scale_dtype = f32, .super_bits = 4,
              .super_group_size = 16};
    case GgmlType::q3_K:
      return {.bits = 3, .group_size = 16, .sym = true, .data_type = "int_sym_dq", .scale_dtype = f32, .super_bits = 6,
              .super_group_size = 16};
    case GgmlType::q4_K:
      return {.bits = 4, .group_size = 32, .sym = false, .data_type = "int_asym_dq", .scale_dtype = f32, .super_bits = 6,
              .super_group_size = 8};
    case GgmlType::q5_K:
      return {.bits = 5, .group_size = 32, .sym = false, .data_type = "int_asym_dq", .scale_dtype = f32, .super_bits = 6,
              .super_group_size = 8};
    case GgmlType::q6_K:
      return {.bits = 6, .group_size = 16, .sym = true, .data_type = "int_sym_dq", .scale_dtype = f32, .super_bits = 8,
              .super_group_size = 16};
    default: return {.bits = 16};
  }
}

std::vector<uint8_t> gguf_pack_layer(const QuantizedLinear& q, GgmlType t, int64_t permute_heads) {
  ARQ_CHECK(frozen_matches(q, t, {q.layout.out, q.layout.in}), UsageError, "[gguf] ", q.name, ": a ", q.bits, "-bit ",
            qdata_type_name(q.data_type), " layer with group ", q.layout.group_size, " is not a frozen ", io::ggml_type_name(t),
            " layer (scheme ", gguf_type_scheme(t).str(), ")");
  return pack_frozen(q, t, permute_heads);
}

GgmlType gguf_checkpoint_type(const std::string& hf_name, const Shape& shape, GgufTypeContext ctx) {
  const std::string g = models::GgufSource::gguf_name(hf_name);
  if (g.empty()) return GgmlType::f32;
  if (g.rfind("blk.", 0) == 0) ctx.layer = std::stoll(g.substr(4, g.find('.', 4) - 4));
  return gguf_tensor_type(g, shape, ctx);
}

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

std::function<LayerChoice(const std::string&, int64_t, int64_t)> gguf_layer_chooser(const std::string& preset,
                                                                                    const models::DecoderSpec& spec,
                                                                                    std::vector<std::string> fp_layers) {
  gguf_preset_base_type(preset);  // UsageError for an unknown preset
  const GgufTypeContext ctx{preset, -1, spec.num_hidden_layers,
                            spec.num_key_value_heads > 0 ? spec.num_attention_heads / spec.num_key_value_heads : 1,
                            spec.tie_word_embeddings};
  return [ctx, fp_layers = std::move(fp_layers)](const std::string& layer, int64_t out, int64_t in) {
    LayerChoice c;
    for (const std::string& p : fp_layers)
      if (matches_layer_pattern(layer, p)) {
        c.scheme.bits = 16;
        c.reason = cat("--fp_layers '", p, "'");
        return c;
      }
    const GgmlType t = gguf_checkpoint_type(layer + ".weight", {out, in}, ctx);
    c.scheme = gguf_type_scheme(t);
    if (c.scheme.keep_fp()) c.reason = cat("GGUF ", io::ggml_type_name(t), " for [", out, ", ", in, "]");
    return c;
  };
}

void apply_gguf_schemes(const std::string& format_spec, const models::DecoderSpec& spec, PipelineOptions& o) {
  if (format_spec == "fake") return;
  const std::vector<ExportFormat> formats = parse_export_formats(format_spec);
  if (o.iters <= 0) {
    // --iters 0 with only GGUF outputs: the export encodes every tensor from the original weights
    // with llama.cpp's searches, so RTN/opt-RTN results of the blocks would be computed and
    // dropped (for a large model, minutes of opt-RTN). Keep every layer as it is instead.
    for (const ExportFormat& f : formats)
      if (f.kind != ExportKind::gguf) return;
    const std::string line = cat(format_spec, " --iters 0: every tensor is encoded from the original weights by ",
                                 "llama.cpp's searches at export; nothing to quantize before it");
    if (o.log) o.log(line);
    else std::fprintf(stderr, "%s\n", line.c_str());
    o.disable_opt_rtn = true;  // no importance-matrix pass either
    o.choose_layer_fn = [](const std::string&, int64_t, int64_t) {
      LayerChoice c;
      c.scheme.bits = 16;
      c.reason = "gguf --iters 0: encoded at export";
      return c;
    };
    return;
  }
  const ExportFormat* g = nullptr;
  for (const ExportFormat& f : formats)
    if (f.kind == ExportKind::gguf) g = &f;
  if (!g) return;
  ARQ_CHECK(formats.size() == 1, UsageError, "--format ", format_spec, ": ", g->spec,
            " cannot be combined with other formats when tuning (--iters > 0): each layer is tuned on the data type of its "
            "GGUF type; run one export per format, or use --iters 0");
  ARQ_CHECK(o.layer_config.empty(), UsageError, "--layer_config is not supported with --format ", g->spec,
            " yet: the GGUF type mix decides each layer's scheme");
  const QuantScheme dflt;
  const QuantScheme& s = o.scheme;
  if (s.bits != dflt.bits || s.group_size != dflt.group_size || s.sym != dflt.sym || s.data_type != dflt.data_type) {
    const std::string line = cat(g->spec, ": each layer's scheme follows its GGUF type; the preset wins over --bits/--group_size/",
                                 "--sym/--data_type (", s.str(), " is not used)");
    if (o.log) o.log(line);
    else std::fprintf(stderr, "%s\n", line.c_str());
  }
  o.choose_layer_fn = gguf_layer_chooser(g->gguf_preset, spec, o.fp_layers);
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

  // Tuned layers (iters > 0) whose frozen scheme is exactly their GGUF type's are packed from
  // their own parameters; everything else takes llama.cpp's searches on the source weights.
  const bool tuned = src.tuning.iters > 0;
  int64_t n_packed = 0;
  auto tuned_bytes = [&](const Item& it) -> std::optional<std::vector<uint8_t>> {
    const std::string suffix = ".weight";
    if (!tuned || !io::ggml_traits(it.type).quantized || it.hf == "lm_head.weight" || it.hf.size() <= suffix.size() ||
        it.hf.compare(it.hf.size() - suffix.size(), suffix.size(), suffix) != 0)
      return std::nullopt;
    const std::optional<QuantizedLinear> q = frozen_layer(src, it.hf.substr(0, it.hf.size() - suffix.size()));
    if (!q || !frozen_matches(*q, it.type, it.shape)) return std::nullopt;
    return pack_frozen(*q, it.type, it.permute_heads);
  };

  std::vector<io::GgufTensorDecl> decls;
  for (const Item& it : items) decls.push_back({it.gguf, it.shape, it.type});
  std::string upper = f.gguf_preset;
  for (char& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  const std::string path = (fs::path(dir) / (name + "-" + upper + ".gguf")).string();
  io::GgufStreamWriter w(path, md, std::move(decls));
  for (const Item& it : items) {
    if (std::optional<std::vector<uint8_t>> bytes = tuned_bytes(it)) {
      w.write_tensor(it.gguf, bytes->data(), bytes->size());
      ++n_packed;
      continue;
    }
    Tensor t = src.tensors->get(it.hf);
    if (it.permute_heads > 0) t = permute_qk_rows(t, it.permute_heads);
    w.write_tensor(it.gguf, t);
  }
  w.finish();
  if (o.log)
    o.log(cat(f.spec, ": ", items.size(), " tensors → ", path, tuned ? cat(" (", n_packed, " from the tuned layers)") : ""));
}

}  // namespace arq::quant
