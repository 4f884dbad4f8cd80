// Reading HF-style quantized folders: quantization_config parsing and dequantize-on-load.
#include "io/pack_load.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "engine/error.h"

namespace arq::io {

namespace {

const std::string kSuffixes[] = {".qweight", ".qzeros", ".scales", ".g_idx"};

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}


// Python re.match semantics (anchored at the start, not the end), or an exact name.
bool name_matches(const std::string& pattern, const std::string& name) {
  if (pattern == name) return true;
  try {
    return std::regex_search(name, std::regex(pattern), std::regex_constants::match_continuous);
  } catch (const std::regex_error&) {
    return false;   // a plain layer name with regex metacharacters that is not this layer
  }
}

int64_t n_groups(int64_t in, int64_t g) { return (in + g - 1) / g; }

}  // namespace

HfQuantConfig parse_hf_quant_config(const JsonValue& qc, const std::string& origin) {
  ARQ_CHECK(qc.is_object(), IoError, origin, ": quantization_config is not an object");
  HfQuantConfig c;
  c.raw = qc;
  auto str = [&](const char* k) -> std::string {
    const JsonValue* v = qc.find(k);
    return v && v->kind() == JsonValue::Kind::string ? v->as_string() : std::string();
  };
  c.quant_method = str("quant_method");
  if (c.quant_method == "intel/auto-round") c.quant_method = "auto-round";
  c.packing_format = str("packing_format");
  c.checkpoint_format = str("checkpoint_format");
  if (const JsonValue* v = qc.find("bits")) c.bits = static_cast<int>(v->as_int());
  if (const JsonValue* v = qc.find("group_size")) c.group_size = v->as_int();
  if (const JsonValue* v = qc.find("sym"); v && v->kind() == JsonValue::Kind::boolean) c.sym = v->as_bool();
  if (c.quant_method == "awq") {
    if (const JsonValue* v = qc.find("zero_point"); v && v->kind() == JsonValue::Kind::boolean) c.sym = !v->as_bool();
    const std::string version = str("version");
    ARQ_CHECK(version.empty() || version == "gemm" || version == "GEMM", UnsupportedError, origin, ": AWQ version '", version,
              "' is not supported (only gemm)");
  }
  ARQ_CHECK(c.bits >= 2 && c.bits <= 8, IoError, origin, ": quantization_config bits ", c.bits, " outside 2..8");
  return c;
}

std::optional<HfQuantConfig> read_hf_quant_config(const std::string& folder) {
  const std::string path = (std::filesystem::path(folder) / "config.json").string();
  if (!std::filesystem::exists(path)) return std::nullopt;
  const JsonValue cfg = parse_json(io::read_text_file(path), path);
  const JsonValue* qc = cfg.find("quantization_config");
  if (!qc || !qc->is_object()) return std::nullopt;
  HfQuantConfig c = parse_hf_quant_config(*qc, path);
  if (c.quant_method != "gptq" && c.quant_method != "awq" && c.quant_method != "auto-round") return std::nullopt;
  return c;
}

std::optional<HfQuantConfig::LayerScheme> HfQuantConfig::scheme_of(const std::string& module) const {
  LayerScheme s{bits, group_size, sym};
  if (quant_method == "auto-round") {
    if (const JsonValue* extra = raw.find("extra_config"); extra && extra->is_object()) {
      for (const auto& [pattern, ov] : extra->items()) {
        if (!ov.is_object() || !name_matches(pattern, module)) continue;
        if (const JsonValue* v = ov.find("bits")) s.bits = static_cast<int>(v->as_int());
        if (const JsonValue* v = ov.find("group_size")) s.group_size = v->as_int();
        if (const JsonValue* v = ov.find("sym"); v && v->kind() == JsonValue::Kind::boolean) s.sym = v->as_bool();
        break;
      }
    }
  } else if (quant_method == "gptq") {
    if (const JsonValue* dyn = raw.find("dynamic"); dyn && dyn->is_object()) {
      for (const auto& [key, ov] : dyn->items()) {
        const bool negative = key.rfind("-:", 0) == 0;
        const std::string pattern = key.rfind("+:", 0) == 0 || negative ? key.substr(2) : key;
        if (!name_matches(pattern, module)) continue;
        if (negative) return std::nullopt;
        if (const JsonValue* v = ov.find("bits")) s.bits = static_cast<int>(v->as_int());
        if (const JsonValue* v = ov.find("group_size")) s.group_size = v->as_int();
        if (const JsonValue* v = ov.find("sym"); v && v->kind() == JsonValue::Kind::boolean) s.sym = v->as_bool();
        break;
      }
    }
  }
  if (s.bits >= 16) return std::nullopt;
  return s;
}

HfPacking HfQuantConfig::packing(bool layer_sym) const {
  (void)layer_sym;
  if (quant_method == "awq") return HfPacking::awq;
  if (quant_method == "gptq") return checkpoint_format == "gptq_v2" ? HfPacking::gptq_raw : HfPacking::gptq_v1;
  // auto-round: the packing format says which layout and zero convention.
  if (packing_format == "auto_round:auto_awq") return HfPacking::awq;
  if (packing_format == "auto_round:auto_gptq" || packing_format == "auto_round:gptq") return HfPacking::gptq_v1;
  return HfPacking::gptq_raw;   // "auto_round", "auto_round:gptqmodel"
}

std::optional<PackedCheckpoint> PackedCheckpoint::open(std::shared_ptr<const WeightStore> store) {
  ARQ_CHECK(store, IoError, "PackedCheckpoint::open: no store");
  std::optional<HfQuantConfig> cfg = read_hf_quant_config(store->folder());
  if (!cfg) return std::nullopt;
  PackedCheckpoint pc;
  pc.store_ = store;
  pc.config_ = *cfg;
  for (const std::string& name : store->names()) {
    if (!ends_with(name, ".qweight")) continue;
    const std::string mod = name.substr(0, name.size() - 8);
    const std::string where = cat(store->folder(), ": packed layer '", mod, "'");
    ARQ_CHECK(store->has(mod + ".qzeros") && store->has(mod + ".scales"), IoError, where, " lacks qzeros or scales");
    const Shape qw = store->info(mod + ".qweight").shape;
    const Shape sc = store->info(mod + ".scales").shape;
    ARQ_CHECK(qw.size() == 2 && sc.size() == 2, IoError, where, ": qweight ", shape_str(qw), " / scales ", shape_str(sc),
              " must be 2-D");
    std::optional<HfQuantConfig::LayerScheme> ls = cfg->scheme_of(mod);
    HfQuantConfig::LayerScheme s = ls ? *ls : HfQuantConfig::LayerScheme{cfg->bits, cfg->group_size, cfg->sym};
    Module m{};
    m.packing = cfg->packing(s.sym);
    m.out = sc[1];
    if (m.packing == HfPacking::awq) {
      m.bits = 4;
      m.in = qw[0];
    } else if (store->has(mod + ".g_idx")) {
      m.in = shape_numel(store->info(mod + ".g_idx").shape);
      ARQ_CHECK(m.in > 0 && qw[0] * 32 % m.in == 0, IoError, where, ": qweight ", shape_str(qw), " does not fit g_idx of ", m.in);
      m.bits = static_cast<int>(qw[0] * 32 / m.in);
    } else {
      m.bits = s.bits;
      ARQ_CHECK(qw[0] * 32 % m.bits == 0, IoError, where, ": qweight ", shape_str(qw), " does not hold ", m.bits, "-bit values");
      m.in = qw[0] * 32 / m.bits;
    }
    m.group_size = s.group_size <= 0 ? m.in : s.group_size;
    if (sc[0] == 1) m.group_size = m.in;   // one group per row, whatever the config says
    ARQ_CHECK(sc[0] == n_groups(m.in, m.group_size), IoError, where, ": scales ", shape_str(sc), " hold ", sc[0],
              " groups; in_features ", m.in, " with group size ", m.group_size, " needs ", n_groups(m.in, m.group_size));
    pc.modules_[mod + ".weight"] = m;
  }
  return pc;
}

bool PackedCheckpoint::is_packed(const std::string& weight_name) const { return modules_.count(weight_name) != 0; }

const PackedCheckpoint::Module& PackedCheckpoint::module(const std::string& weight_name) const {
  auto it = modules_.find(weight_name);
  ARQ_CHECK(it != modules_.end(), IoError, store_->folder(), ": '", weight_name, "' is not a packed layer");
  return it->second;
}

Shape PackedCheckpoint::shape(const std::string& weight_name) const {
  const Module& m = module(weight_name);
  return {m.out, m.in};
}

Tensor PackedCheckpoint::get(const std::string& weight_name) const {
  const Module& m = module(weight_name);
  const std::string mod = weight_name.substr(0, weight_name.size() - 7);
  PackedLinear p;
  p.qweight = store_->load(mod + ".qweight");
  p.qzeros = store_->load(mod + ".qzeros");
  p.scales = store_->load(mod + ".scales");
  if (store_->has(mod + ".g_idx")) p.g_idx = store_->load(mod + ".g_idx");
  try {
    return dequantize_packed(p, m.packing, m.bits, m.group_size, m.in);
  } catch (const Error& e) {
    throw IoError(cat(store_->folder(), ": packed layer '", mod, "' (", hf_packing_name(m.packing), ", ", m.bits,
                      " bits, group ", m.group_size, "): ", e.what()));
  }
}

std::vector<std::string> PackedCheckpoint::names() const {
  std::vector<std::string> out;
  for (const std::string& n : store_->names()) {
    bool packed_part = false;
    for (const std::string& suf : kSuffixes)
      if (ends_with(n, suf) && modules_.count(n.substr(0, n.size() - suf.size()) + ".weight")) packed_part = true;
    if (!packed_part) out.push_back(n);
  }
  for (const auto& [w, m] : modules_) out.push_back(w);
  std::sort(out.begin(), out.end());
  return out;
}

std::map<std::string, Tensor> dequantize_folder_tensors(const std::string& folder) {
  auto store = std::make_shared<const WeightStore>(WeightStore::open(folder));
  std::optional<PackedCheckpoint> pc = PackedCheckpoint::open(store);
  std::map<std::string, Tensor> out;
  if (!pc) {
    for (const std::string& n : store->names()) out[n] = store->load(n);
    return out;
  }
  for (const std::string& n : pc->names()) out[n] = pc->is_packed(n) ? pc->get(n) : store->load(n);
  return out;
}

}  // namespace arq::io
