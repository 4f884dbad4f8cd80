// HF-style export (auto_round / auto_gptq / auto_awq): which tensors, which packing, which
// quantization_config keys (spec/autoround.md §4.0–4c), written atomically.
#include "quant/export.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <set>
#include <sstream>

#include "arq_config.h"
#include "engine/error.h"
#include "io/mmap_file.h"
#include "io/safetensors.h"
#include "quant/export_gguf.h"
#include "quant/export_hf.h"
#include "quant/qdq.h"

namespace arq::quant {

namespace fs = std::filesystem;

namespace {

const char* kKnownFormats =
    "auto_round, auto_round:auto_gptq, auto_round:auto_awq, auto_round:gptqmodel, auto_gptq, auto_awq, gguf:<preset>";

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t"), b = s.find_last_not_of(" \t");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }
bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}


std::string regex_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (std::string(".^$|()[]{}*+?\\").find(c) != std::string::npos) o += '\\';
    o += c;
  }
  return o;
}

std::string data_type_str(const QuantScheme& s) { return s.data_type == "int_sym_gptq" ? "int_sym_gptq" : "int"; }

bool in_block(const std::string& module, const std::string& block_prefix) { return starts_with(module, block_prefix + "."); }

// In-block linear weights the quantizer left in 16 bits: 2-D ".weight" tensors under the block
// prefix whose module is not in `quantized` (norms are 1-D and never listed).
std::vector<std::string> unquantized_block_linears(const ExportSource& src, const FrozenLayers& layers) {
  std::vector<std::string> out;
  for (const std::string& n : src.tensors->names()) {
    if (!ends_with(n, ".weight") || !in_block(n, src.block_name_to_quantize)) continue;
    const std::string mod = n.substr(0, n.size() - 7);
    if (layers.has(mod)) continue;
    auto shape = src.tensors->shape(n);
    if (shape && shape->size() == 2) out.push_back(mod);
  }
  return out;
}

const char* kCopiedFiles[] = {"tokenizer.json",        "tokenizer.model",       "tokenizer_config.json",
                              "special_tokens_map.json", "added_tokens.json",   "vocab.json",
                              "merges.txt",            "generation_config.json", "chat_template.jinja",
                              "chat_template.json",    "preprocessor_config.json", "processor_config.json"};

void copy_side_files(const std::string& from, const std::string& to) {
  if (from.empty() || !fs::is_directory(from)) return;
  for (const char* f : kCopiedFiles) {
    const fs::path p = fs::path(from) / f;
    if (fs::exists(p)) fs::copy_file(p, fs::path(to) / f, fs::copy_options::overwrite_existing);
  }
  for (const auto& e : fs::directory_iterator(from))   // remote-code modules
    if (e.is_regular_file() && e.path().extension() == ".py")
      fs::copy_file(e.path(), fs::path(to) / e.path().filename(), fs::copy_options::overwrite_existing);
}

}  // namespace

std::string ExportFormat::subfolder() const {
  std::string s = spec;
  for (char& c : s)
    if (c == ':' || c == '_') c = '-';
  return s;
}

std::vector<ExportFormat> parse_export_formats(const std::string& spec) {
  std::vector<ExportFormat> out;
  std::set<std::string> seen;
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const std::string s = lower(trim(item));
    ARQ_CHECK(!s.empty(), UsageError, "--format '", spec, "': empty format name");
    ExportFormat f;
    f.spec = s;
    if (s == "auto_round") {
      f.kind = ExportKind::auto_round;
    } else if (s == "auto_round:auto_gptq" || s == "auto_round:auto_awq" || s == "auto_round:gptqmodel") {
      f.kind = ExportKind::auto_round;
      f.packing_format = s;
    } else if (s == "auto_gptq" || s == "gptq") {
      f.kind = ExportKind::auto_gptq;
    } else if (s == "auto_awq" || s == "awq") {
      f.kind = ExportKind::auto_awq;
    } else if (starts_with(s, "gguf:")) {
      f.kind = ExportKind::gguf;
      f.gguf_preset = s.substr(5);
      gguf_preset_base_type(f.gguf_preset);   // UsageError for an unknown preset
    } else {
      throw UsageError(cat("--format: unknown format '", trim(item), "' (known: ", kKnownFormats, ")"));
    }
    ARQ_CHECK(seen.insert(s).second, UsageError, "--format '", spec, "': '", s, "' is listed twice");
    out.push_back(f);
  }
  ARQ_CHECK(!out.empty(), UsageError, "--format: no format given (known: ", kKnownFormats, ")");
  return out;
}

std::shared_ptr<const FrozenLayers> frozen_layers(const ExportSource& src) {
  if (src.frozen) return std::shared_ptr<const FrozenLayers>(std::shared_ptr<const FrozenLayers>(), src.frozen);   // not owned
  ARQ_CHECK(src.quantized, UsageError, "export: no quantized layers");
  return std::make_shared<MapFrozenLayers>(*src.quantized);
}

std::string auto_round_packing_format(const ExportFormat& f, const FrozenLayers& quantized, const QuantScheme& scheme) {
  if (!f.packing_format.empty()) return f.packing_format;
  if (scheme.sym) return "auto_round:auto_gptq";
  bool all4 = scheme.bits == 4;
  for (const std::string& n : quantized.names()) {
    const QuantizedLinear& q = *quantized.info(n);
    all4 = all4 && q.bits == 4 && !q.sym;
  }
  return all4 ? "auto_round:auto_awq" : "auto_round";
}

io::HfPacking hf_packing_for(const ExportFormat& f, const std::string& pf, bool sym) {
  switch (f.kind) {
    case ExportKind::auto_gptq: return io::HfPacking::gptq_v1;
    case ExportKind::auto_awq: return io::HfPacking::awq;
    default: break;
  }
  if (pf == "auto_round:auto_awq") return io::HfPacking::awq;
  // Every layer of an "auto_round:auto_gptq" folder is zero − 1, asym ones included: AutoRound
  // packs them all with qlinear_torch_zp and its loaders (and ours, io/pack_load) add 1 back
  // whatever the layer's sym; raw zeros here made asym layers read back one step off.
  (void)sym;
  if (pf == "auto_round:auto_gptq") return io::HfPacking::gptq_v1;
  return io::HfPacking::gptq_raw;
}

void validate_export(const ExportSource& src, const std::vector<ExportFormat>& formats) {
  ARQ_CHECK(src.tensors, UsageError, "export: no source tensors");
  const std::shared_ptr<const FrozenLayers> layers = frozen_layers(src);
  std::set<int> bits{src.scheme.bits};
  for (const ExportFormat& f : formats)
    ARQ_CHECK(f.kind == ExportKind::gguf || src.scheme.group_size != 0, UsageError, "--format ", f.spec,
              ": group_size 0 (one scale per tensor) is not held by packed formats; use a positive group size or -1");
  for (const std::string& n : layers->names()) {
    const QuantizedLinear& q = *layers->info(n);
    bits.insert(q.bits);
    ARQ_CHECK(!q.layout.per_tensor, UsageError, "export: layer '", n,
              "' has one scale per tensor (group_size 0), which no packed format holds");
  }
  for (const ExportFormat& f : formats) {
    if (f.kind == ExportKind::gguf) continue;
    // GGUF data types (double-quantized scales, float minimums) exist only in ggml blocks.
    std::vector<QDataType> types{resolve_data_type(src.scheme.data_type, src.scheme.sym)};
    for (const std::string& n : layers->names()) types.push_back(layers->info(n)->data_type);
    for (QDataType t : types)
      ARQ_CHECK(t != QDataType::int_asym_dq && t != QDataType::int_sym_dq && t != QDataType::int_asym_float_zp, UsageError,
                "--format ", f.spec, " cannot hold the GGUF data type ", qdata_type_name(t), "; use --format gguf:<preset>");
    for (int b : bits) {
      if (b >= 16) continue;
      if (f.kind == ExportKind::auto_awq || f.packing_format == "auto_round:auto_awq")
        ARQ_CHECK(b == 4, UsageError, "--format ", f.spec, " holds 4-bit weights only, but ", b,
                  "-bit layers were requested; use auto_round or auto_gptq");
      else
        ARQ_CHECK(b == 2 || b == 3 || b == 4 || b == 8, UsageError, "--format ", f.spec, " packs 2, 3, 4 or 8 bits, not ", b);
    }
  }
}

io::JsonValue hf_quantization_config(const ExportSource& src, const ExportFormat& f, const std::string& packing_format,
                                     const std::vector<std::string>& fp_layers) {
  using io::JsonValue;
  const QuantScheme& s = src.scheme;
  JsonValue qc = JsonValue::object();
  qc.set("bits", s.bits);
  qc.set("data_type", data_type_str(s));
  qc.set("group_size", s.group_size);
  qc.set("sym", s.sym);
  // Non-default tuning keys (AutoRound's filter_quantization_config drops the defaults).
  const ExportTuning& t = src.tuning;
  if (t.iters != 200) qc.set("iters", t.iters);
  if (t.nsamples != 128) qc.set("nsamples", t.nsamples);
  if (t.seqlen != 2048) qc.set("seqlen", t.seqlen);
  if (t.batch_size != 8) qc.set("batch_size", t.batch_size);
  const double default_lr = t.iters > 0 ? 1.0 / static_cast<double>(t.iters) : 5e-3;
  if (t.lr != 0 && std::fabs(t.lr - default_lr) > 1e-12) qc.set("lr", t.lr);
  if (t.low_gpu_mem_usage) qc.set("low_gpu_mem_usage", true);
  qc.set("autoround_version", std::string("ar-quant ") + ARQ_VERSION);

  // Layers whose scheme differs from the global one.
  bool lm_head_quantized = false;
  const std::shared_ptr<const FrozenLayers> layers = frozen_layers(src);
  std::vector<std::pair<std::string, const QuantizedLinear*>> differing;
  for (const std::string& name : layers->names()) {
    const QuantizedLinear& q = *layers->info(name);
    if (!in_block(name, src.block_name_to_quantize)) lm_head_quantized = lm_head_quantized || ends_with(name, "lm_head");
    const int64_t g = q.layout.group_size;
    if (q.bits != s.bits || g != s.group_size || q.sym != s.sym || !in_block(name, src.block_name_to_quantize))
      differing.emplace_back(name, &q);
  }

  if (f.kind == ExportKind::auto_round) {
    qc.set("block_name_to_quantize", src.block_name_to_quantize);
    qc.set("quant_method", "auto-round");
    qc.set("packing_format", packing_format);
    JsonValue extra = JsonValue::object();
    for (const auto& [name, q] : differing) {
      JsonValue e = JsonValue::object();
      const bool outside = !in_block(name, src.block_name_to_quantize);
      if (outside || q->bits != s.bits) e.set("bits", q->bits);
      if (outside) e.set("data_type", "int");
      if (outside || q->layout.group_size != s.group_size) e.set("group_size", q->layout.group_size);
      if (outside || q->sym != s.sym) e.set("sym", q->sym);
      extra.set(name, std::move(e));
    }
    for (const std::string& m : fp_layers) extra.set(m, JsonValue::object().set("bits", 16).set("data_type", "fp"));
    if (!extra.items().empty()) qc.set("extra_config", std::move(extra));
  } else if (f.kind == ExportKind::auto_gptq) {
    qc.set("lm_head", lm_head_quantized);
    qc.set("provider", "auto-round");
    qc.set("quant_method", "gptq");
    qc.set("desc_act", false);
    qc.set("true_sequential", false);
    qc.set("damp_percent", 0.01);
    JsonValue dynamic = JsonValue::object();
    for (const auto& [name, q] : differing)
      dynamic.set("+:" + regex_escape(name),
                  JsonValue::object().set("bits", q->bits).set("group_size", q->layout.group_size).set("sym", q->sym));
    for (const std::string& m : fp_layers) dynamic.set("-:" + regex_escape(m), JsonValue::object());
    if (!dynamic.items().empty()) qc.set("dynamic", std::move(dynamic));
    if (!fp_layers.empty()) {
      // Relative names of the layers quantized in blocks (GPTQModel's list of lists).
      std::set<std::string> rel;
      for (const std::string& name : layers->names()) {
        if (!in_block(name, src.block_name_to_quantize)) continue;
        const std::string tail = name.substr(src.block_name_to_quantize.size() + 1);
        const size_t dot = tail.find('.');
        if (dot != std::string::npos) rel.insert(tail.substr(dot + 1));
      }
      JsonValue inner = JsonValue::array();
      for (const std::string& r : rel) inner.push(r);
      qc.set("modules_in_block_to_quantize", JsonValue::array({inner}));
    }
  } else {  // auto_awq
    qc.set("provider", "auto-round");
    qc.set("quant_method", "awq");
    qc.set("zero_point", !s.sym);
    qc.set("version", "gemm");
    if (fp_layers.empty()) {
      qc.set("modules_to_not_convert", nullptr);
    } else {
      JsonValue l = JsonValue::array();
      for (const std::string& m : fp_layers) l.push(m);
      qc.set("modules_to_not_convert", std::move(l));
    }
  }
  return qc;
}

// ---- atomic folder ------------------------------------------------------------------------

AtomicFolder::AtomicFolder(std::string target, bool overwrite) : target_(std::move(target)), overwrite_(overwrite) {
  ARQ_CHECK(!target_.empty(), UsageError, "--output_dir must not be empty");
  while (target_.size() > 1 && target_.back() == '/') target_.pop_back();
  std::error_code ec;
  ARQ_CHECK(overwrite_ || !fs::exists(target_, ec), UsageError, "output folder ", target_,
            " already exists; pass --overwrite to replace it");
  const fs::path parent = fs::absolute(target_).parent_path();
  fs::create_directories(parent, ec);
  ARQ_CHECK(!ec, IoError, "cannot create the folder ", parent.string(), " for ", target_, ": ", ec.message());
  tmp_ = target_ + ".arq-tmp-" + std::to_string(::getpid());
  fs::remove_all(tmp_, ec);
  fs::create_directory(tmp_, ec);
  ARQ_CHECK(!ec, IoError, "cannot write into ", parent.string(), " (creating ", tmp_, "): ", ec.message());
}

AtomicFolder::~AtomicFolder() {
  if (committed_) return;
  std::error_code ec;
  fs::remove_all(tmp_, ec);
}

void AtomicFolder::commit() {
  std::error_code ec;
  std::string old;
  if (fs::exists(target_, ec)) {
    ARQ_CHECK(overwrite_, UsageError, "output folder ", target_, " appeared while writing; not replacing it");
    old = target_ + ".arq-old-" + std::to_string(::getpid());
    fs::rename(target_, old, ec);
    ARQ_CHECK(!ec, IoError, "cannot move the existing ", target_, " aside: ", ec.message());
  }
  fs::rename(tmp_, target_, ec);
  if (ec) {
    if (!old.empty()) fs::rename(old, target_);   // put the previous folder back
    throw IoError(cat("cannot rename ", tmp_, " to ", target_, ": ", ec.message()));
  }
  committed_ = true;
  if (!old.empty()) fs::remove_all(old, ec);
}

// ---- one HF folder --------------------------------------------------------------------------

namespace {

// The packed tensors of one layer at a time, made when the writer asks for the first of them.
// The writer orders a shard by dtype, so a layer's i32 tensors and its fp16 scales are asked
// for far apart: the layer is then packed again rather than keeping every layer's scales.
class PackCache {
 public:
  PackCache(std::shared_ptr<const FrozenLayers> layers, std::function<void(const std::string&)> log, std::string spec)
      : layers_(std::move(layers)), log_(std::move(log)), spec_(std::move(spec)) {}

  enum Part { qweight, qzeros, scales, g_idx };
  Tensor take(const std::string& mod, Part part, io::HfPacking p, bool with_g_idx) {
    if (mod != mod_ || !parts_[part].defined()) {
      mod_ = mod;
      int64_t bad = 0;
      io::PackedLinear pk = io::pack_linear(int_parts(layers_->load(mod)), p, with_g_idx, &bad);
      if (bad > 0 && log_ && warned_.insert(mod).second)
        log_(cat("warning: ", spec_, ": layer ", mod, " has ", bad,
                 " zero points of 0, which the GPTQ (zero − 1) layout cannot store (asym kernel issue); prefer auto_round"));
      parts_[qweight] = std::move(pk.qweight);
      parts_[qzeros] = std::move(pk.qzeros);
      parts_[scales] = std::move(pk.scales);
      parts_[g_idx] = std::move(pk.g_idx);
    }
    Tensor t = std::move(parts_[part]);
    parts_[part] = Tensor();
    return t;
  }

 private:
  std::shared_ptr<const FrozenLayers> layers_;
  std::function<void(const std::string&)> log_;
  std::string spec_;
  std::string mod_;
  Tensor parts_[4];
  std::set<std::string> warned_;
};

// Shapes of pack_linear's outputs (io/pack.h table), announced in the header before packing.
struct PackedShapes {
  Shape qweight, qzeros, scales, g_idx;   // g_idx empty when the format has none
};
PackedShapes packed_shapes(const QuantizedLinear& q, io::HfPacking p, bool with_g_idx) {
  const int64_t k = q.layout.in, n = q.layout.out, ng = q.layout.groups_per_row;
  if (p == io::HfPacking::awq) return {{k, n / 8}, {ng, n / 8}, {ng, n}, {}};
  return {{k * q.bits / 32, n}, {ng, n * q.bits / 32}, {ng, n}, with_g_idx ? Shape{k} : Shape{}};
}

// A source tensor, read when written.
io::StWriteTensor lazy_source_tensor(const ExportSource& src, const std::string& name, std::optional<DType> as = {}) {
  const DType dt = as ? *as : src.tensors->dtype(name);
  std::shared_ptr<const models::TensorSource> tensors = src.tensors;
  return io::StWriteTensor::lazy(name, io::st_from_engine(dt), *tensors->shape(name), [tensors, name, dt] {
    // The tensors written before are on disk: their mapped pages need not stay resident.
    io::release_mapped_pages();
    const Tensor t = tensors->get(name);
    return t.dtype() == dt ? t : t.to(dt);
  });
}

void write_hf_folder(const ExportSource& src, const ExportFormat& f, const std::string& dir, const ExportOptions& o) {
  using io::JsonValue;
  const std::shared_ptr<const FrozenLayers> layers = frozen_layers(src);
  const std::string pf = f.kind == ExportKind::auto_round ? auto_round_packing_format(f, *layers, src.scheme) : "";
  std::vector<std::string> fp_layers = unquantized_block_linears(src, *layers);
  std::vector<io::StWriteTensor> out;
  std::set<std::string> packed_modules;
  auto cache = std::make_shared<PackCache>(layers, o.log, f.spec);
  const bool with_g_idx = f.kind == ExportKind::auto_gptq || pf == "auto_round:gptqmodel";
  for (const std::string& name : src.tensors->names()) {
    const std::string mod = ends_with(name, ".weight") ? name.substr(0, name.size() - 7)
                            : ends_with(name, ".bias") ? name.substr(0, name.size() - 5) : std::string();
    const QuantizedLinear* info = mod.empty() ? nullptr : layers->info(mod);
    if (!info) {
      out.push_back(lazy_source_tensor(src, name));
      continue;
    }
    const QuantizedLinear& q = *info;
    const io::HfPacking p = hf_packing_for(f, pf, q.sym);
    const std::string why = io::packing_unsupported_reason(p, q.bits, q.layout.in, q.layout.out, q.layout.group_len);
    if (ends_with(name, ".bias")) {
      // Packed layers carry an fp16 bias (§4a); a layer kept as a plain weight keeps its dtype.
      out.push_back(why.empty() ? lazy_source_tensor(src, name, DType::f16) : lazy_source_tensor(src, name));
      continue;
    }
    if (!why.empty()) {
      // The layer's shape does not fit the packing: store its dequantized weights (what the
      // quantized model computes with) as a plain weight and mark the layer unquantized.
      if (o.log) o.log(cat("warning: ", f.spec, ": layer ", mod, " [", q.layout.out, ", ", q.layout.in,
                           "] cannot be packed (", why, "); written as dequantized ", dtype_name(q.weight_dtype), " weights"));
      out.push_back(io::StWriteTensor::lazy(name, io::st_from_engine(q.weight_dtype), Shape{q.layout.out, q.layout.in},
                                            [layers, mod] { return dequantize(layers->load(mod)); }));
      fp_layers.push_back(mod);
      continue;
    }
    const PackedShapes ps = packed_shapes(q, p, with_g_idx);
    auto part = [&](const char* suffix, PackCache::Part which, io::StDType dt, const Shape& shape) {
      out.push_back(io::StWriteTensor::lazy(mod + suffix, dt, shape, [cache, mod, which, p, with_g_idx] {
        return cache->take(mod, which, p, with_g_idx);
      }));
    };
    part(".qweight", PackCache::qweight, io::StDType::I32, ps.qweight);
    part(".qzeros", PackCache::qzeros, io::StDType::I32, ps.qzeros);
    part(".scales", PackCache::scales, io::StDType::F16, ps.scales);
    if (with_g_idx) part(".g_idx", PackCache::g_idx, io::StDType::I32, ps.g_idx);
    packed_modules.insert(mod);
  }
  std::sort(fp_layers.begin(), fp_layers.end());
  io::ShardOptions so;
  so.max_shard_bytes = o.max_shard_bytes;
  io::save_safetensors_sharded(dir, out, so);

  JsonValue cfg = src.config;
  if (cfg.is_null()) {
    const std::string p = (fs::path(src.model_folder) / "config.json").string();
    cfg = io::parse_json(io::read_text_file(p), p);
  }
  const JsonValue qc = hf_quantization_config(src, f, pf, fp_layers);
  cfg.set("quantization_config", qc);
  if (f.kind != ExportKind::auto_round || pf == "auto_round:auto_awq") {
    cfg.set("torch_dtype", "float16");
    if (cfg.find("dtype")) cfg.set("dtype", "float16");
  }
  io::write_text_file_atomic((fs::path(dir) / "config.json").string(), cfg.dump(2) + "\n");
  io::write_text_file_atomic((fs::path(dir) / "quantization_config.json").string(), qc.dump(2) + "\n");
  copy_side_files(src.model_folder, dir);
  if (o.log) o.log(cat(f.spec, ": ", packed_modules.size(), " packed layers, ", out.size(), " tensors → ", dir));
}

}  // namespace

ExportResult export_model(const ExportSource& src, const std::string& format_spec, const ExportOptions& options) {
  const std::vector<ExportFormat> formats = parse_export_formats(format_spec);
  validate_export(src, formats);
  AtomicFolder folder(options.output_folder, options.overwrite);
  ExportResult r;
  for (const ExportFormat& f : formats) {
    const std::string dir = formats.size() == 1 ? folder.path() : (fs::path(folder.path()) / f.subfolder()).string();
    fs::create_directories(dir);
    if (f.kind == ExportKind::gguf) export_gguf(src, f, dir, options);
    else write_hf_folder(src, f, dir, options);
    std::string final_dir = options.output_folder;
    while (final_dir.size() > 1 && final_dir.back() == '/') final_dir.pop_back();
    r.folders.push_back(formats.size() == 1 ? final_dir : (fs::path(final_dir) / f.subfolder()).string());
  }
  folder.commit();
  return r;
}

}  // namespace arq::quant
