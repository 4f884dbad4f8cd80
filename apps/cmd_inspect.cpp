// ar-quant inspect: what a checkpoint holds, without loading it — architecture (config.json or
// GGUF metadata), parameter count, dtypes, and every tensor (name, dtype, shape) file by file.
// Accepts a Hugging Face folder (one or more safetensors, with or without an index), a single
// .safetensors file, or a .gguf file. Every file is validated by the io readers first, so a
// damaged file is reported (the reader's error names the file) with exit status 1.
//
//   ar-quant inspect models/stories260k
//   ar-quant inspect stories260k.gguf --summary
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "apps/commands.h"
#include "apps/flags.h"
#include "engine/error.h"
#include "io/gguf.h"
#include "io/json_util.h"
#include "io/safetensors.h"
#include "io/weight_store.h"

namespace arq::app {

namespace {

namespace fs = std::filesystem;

// "1,234,567"
std::string grouped(int64_t v) {
  const std::string d = std::to_string(v);
  const size_t sign = v < 0 ? 1 : 0;
  std::string s = d.substr(0, sign);
  for (size_t i = sign; i < d.size(); ++i) {
    if (i > sign && (d.size() - i) % 3 == 0) s += ',';
    s += d[i];
  }
  return s;
}

// "1.23 M" style, for parameter counts and byte sizes.
std::string human(double v, const char* unit) {
  const char* prefixes[] = {"", "K", "M", "G", "T"};
  int p = 0;
  while (v >= 1000 && p < 4) {
    v /= 1000;
    ++p;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, p == 0 ? "%.0f %s%s" : "%.2f %s%s", v, prefixes[p], unit);
  return buf;
}

// Names with their numbers compared as numbers, so layers.10 comes after layers.9.
bool natural_less(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (std::isdigit(static_cast<unsigned char>(a[i])) && std::isdigit(static_cast<unsigned char>(b[j]))) {
      size_t ie = i, je = j;
      while (ie < a.size() && std::isdigit(static_cast<unsigned char>(a[ie]))) ++ie;
      while (je < b.size() && std::isdigit(static_cast<unsigned char>(b[je]))) ++je;
      const std::string na = a.substr(i, ie - i), nb = b.substr(j, je - j);
      const size_t za = na.find_first_not_of('0'), zb = nb.find_first_not_of('0');
      const std::string ta = za == std::string::npos ? "" : na.substr(za), tb = zb == std::string::npos ? "" : nb.substr(zb);
      if (ta.size() != tb.size()) return ta.size() < tb.size();
      if (ta != tb) return ta < tb;
      i = ie;
      j = je;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i;
      ++j;
    }
  }
  return a.size() - i < b.size() - j;
}

struct Row {
  std::string name, dtype;
  Shape shape;
  uint64_t nbytes = 0;
};

// Per-dtype totals and the parameter count of a list of tensors.
struct Totals {
  std::map<std::string, std::pair<int64_t, int64_t>> by_dtype;   // dtype -> (tensors, elements)
  int64_t elements = 0;
  int64_t parameters = 0;   // packed int weights counted as the weights they hold
  uint64_t bytes = 0;
};

// What config.json says, read as plain JSON so that inspect works for any model_type (and for
// a quantized folder) — only malformed JSON is an error.
struct ConfigFacts {
  bool present = false;
  std::string model_type, architectures, torch_dtype;
  std::vector<std::pair<std::string, std::string>> sizes;   // field -> value, as written
  std::string quantization;                                 // "auto_round, bits 4, group_size 128, sym true"
  int64_t bits = 0;                                         // 0: not a packed checkpoint
};

std::string scalar_text(const io::JsonValue& v) {
  using K = io::JsonValue::Kind;
  switch (v.kind()) {
    case K::string: return v.as_string();
    case K::boolean: return v.as_bool() ? "true" : "false";
    case K::null: return "null";
    case K::array: case K::object: return v.dump();
    default: return v.dump();
  }
}

ConfigFacts read_config_facts(const fs::path& file) {
  ConfigFacts c;
  if (!fs::is_regular_file(file)) return c;
  std::ifstream in(file, std::ios::binary);
  ARQ_CHECK(in.good(), IoError, "cannot open '", file.string(), "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  const io::JsonValue j = io::parse_json(ss.str(), file.string());
  ARQ_CHECK(j.is_object(), IoError, file.string(), ": top level is not a JSON object");
  c.present = true;
  if (const auto* v = j.find("model_type")) c.model_type = scalar_text(*v);
  if (const auto* v = j.find("architectures"); v && v->is_array()) {
    for (const auto& a : v->elements()) c.architectures += (c.architectures.empty() ? "" : ", ") + scalar_text(a);
  }
  if (const auto* v = j.find("torch_dtype")) c.torch_dtype = scalar_text(*v);
  else if (const auto* d = j.find("dtype")) c.torch_dtype = scalar_text(*d);
  for (const char* k : {"hidden_size", "intermediate_size", "moe_intermediate_size", "num_hidden_layers",
                        "num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size", "num_experts",
                        "n_routed_experts", "num_local_experts", "num_experts_per_tok", "max_position_embeddings",
                        "sliding_window", "tie_word_embeddings", "rope_theta", "rope_scaling"}) {
    const auto* v = j.find(k);
    if (v && !v->is_null()) c.sizes.emplace_back(k, scalar_text(*v));
  }
  if (const auto* q = j.find("quantization_config"); q && q->is_object()) {
    for (const char* k : {"quant_method", "bits", "group_size", "sym", "packing_format", "data_type"}) {
      const auto* v = q->find(k);
      if (!v || v->is_null()) continue;
      c.quantization += c.quantization.empty() ? "" : ", ";
      c.quantization += std::string(k) == "quant_method" ? scalar_text(*v) : cat(k, " ", scalar_text(*v));
      if (std::string(k) == "bits" && v->kind() != io::JsonValue::Kind::string) c.bits = v->as_int();
    }
  }
  return c;
}

void add(Totals& t, const Row& r, int64_t bits) {
  const int64_t n = shape_numel(r.shape);
  auto& d = t.by_dtype[r.dtype];
  d.first += 1;
  d.second += n;
  t.elements += n;
  t.bytes += r.nbytes;
  const auto ends = [&](const char* s) {
    const std::string suf(s);
    return r.name.size() >= suf.size() && r.name.compare(r.name.size() - suf.size(), suf.size(), suf) == 0;
  };
  if (bits > 0 && bits <= 32 && (ends(".qweight") || ends(".weight_packed"))) {
    t.parameters += n * (32 / bits);   // an int32 word holds 32/bits codes
  } else if (bits > 0 && (ends(".qzeros") || ends(".scales") || ends(".g_idx") || ends(".weight_scale") ||
                          ends(".weight_zero_point"))) {
    // quantization side data: not parameters of the model
  } else {
    t.parameters += n;
  }
}

void print_totals(const Totals& t) {
  std::printf("parameters: %s (%s)\n", grouped(t.parameters).c_str(), human(static_cast<double>(t.parameters), "").c_str());
  if (t.elements != t.parameters) std::printf("stored elements: %s\n", grouped(t.elements).c_str());
  std::printf("tensor data: %s (%s bytes)\n", human(static_cast<double>(t.bytes), "B").c_str(), grouped(static_cast<int64_t>(t.bytes)).c_str());
  std::printf("dtypes:");
  for (const auto& [name, d] : t.by_dtype)
    std::printf(" %s (%lld tensors, %s elements)", name.c_str(), static_cast<long long>(d.first), grouped(d.second).c_str());
  std::printf("\n");
}

void print_rows(std::vector<Row> rows) {
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return natural_less(a.name, b.name); });
  size_t w = 0;
  for (const Row& r : rows) w = std::max(w, r.name.size());
  for (const Row& r : rows)
    std::printf("  %-*s  %-7s %s\n", static_cast<int>(w), r.name.c_str(), r.dtype.c_str(), shape_str(r.shape).c_str());
}

int inspect_safetensors(const std::string& path, bool summary) {
  // WeightStore validates every file (and the index) before anything is printed.
  const io::WeightStore store = io::WeightStore::open(path);
  const bool folder = fs::is_directory(path);
  const fs::path dir = folder ? fs::path(path) : fs::path(path).parent_path();
  const ConfigFacts cfg = read_config_facts((dir.empty() ? fs::path(".") : dir) / "config.json");
  const std::vector<std::string> files = store.files();

  std::printf("%s: safetensors, %zu file%s, %zu tensors\n", path.c_str(), files.size(), files.size() == 1 ? "" : "s",
              store.size());
  if (cfg.present) {
    std::printf("architecture: %s", cfg.model_type.empty() ? "(no model_type)" : cfg.model_type.c_str());
    if (!cfg.architectures.empty()) std::printf(" (%s)", cfg.architectures.c_str());
    if (!cfg.torch_dtype.empty()) std::printf(", torch_dtype %s", cfg.torch_dtype.c_str());
    std::printf("\n");
    if (!cfg.sizes.empty()) {
      std::printf("config:");
      for (size_t i = 0; i < cfg.sizes.size(); ++i)
        std::printf("%s %s %s", i ? "," : "", cfg.sizes[i].first.c_str(), cfg.sizes[i].second.c_str());
      std::printf("\n");
    }
    if (!cfg.quantization.empty()) std::printf("quantization: %s\n", cfg.quantization.c_str());
  } else {
    std::printf("architecture: unknown (no config.json)\n");
  }

  Totals all;
  std::vector<std::pair<std::string, std::vector<Row>>> per_file;
  for (const std::string& fp : files) {
    const io::SafetensorsFile f = io::SafetensorsFile::open(fp);
    std::vector<Row> rows;
    for (const io::StTensorInfo& t : f.tensors()) {
      rows.push_back({t.name, io::st_dtype_name(t.dtype), t.shape, t.nbytes()});
      add(all, rows.back(), cfg.bits);
    }
    per_file.emplace_back(fp, std::move(rows));
  }
  print_totals(all);
  if (folder) {
    std::vector<std::string> tok;
    for (const char* n : {"tokenizer.json", "tokenizer.model", "tokenizer_config.json", "generation_config.json"})
      if (fs::is_regular_file(dir / n)) tok.emplace_back(n);
    std::printf("tokenizer files:");
    if (tok.empty()) std::printf(" none");
    for (const std::string& n : tok) std::printf(" %s", n.c_str());
    std::printf("\n");
  }
  for (const auto& [fp, rows] : per_file) {
    uint64_t bytes = 0;
    for (const Row& r : rows) bytes += r.nbytes;
    std::printf("\n%s: %zu tensors, %s\n", fs::path(fp).filename().c_str(), rows.size(),
                human(static_cast<double>(bytes), "B").c_str());
    if (!summary) print_rows(rows);
  }
  return 0;
}

std::string gguf_value_text(const io::GgufValue& v) {
  using T = io::GgufType;
  switch (v.type) {
    case T::string: {
      std::string s = v.s;
      for (char& c : s)
        if (c == '\n' || c == '\r' || c == '\t') c = ' ';
      return s.size() > 72 ? s.substr(0, 69) + "..." : s;
    }
    case T::boolean: return v.u ? "true" : "false";
    case T::f32: case T::f64: {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%g", v.f);
      return buf;
    }
    case T::i8: case T::i16: case T::i32: case T::i64: return std::to_string(v.i);
    case T::array: return cat("[", v.array_size(), " x ", io::gguf_type_name(v.array_type), "]");
    default: return std::to_string(v.u);
  }
}

int inspect_gguf(const std::string& path, bool summary) {
  const io::GgufFile g = io::GgufFile::open(path);
  const io::GgufMetadata& md = g.metadata();
  std::printf("%s: GGUF v%u, %zu metadata keys, %zu tensors, alignment %llu\n", path.c_str(), g.header().version,
              md.items().size(), g.tensors().size(), static_cast<unsigned long long>(g.header().alignment));
  const io::GgufValue* arch = md.find("general.architecture");
  std::printf("architecture: %s\n", arch && arch->type == io::GgufType::string ? arch->s.c_str() : "unknown");
  std::printf("metadata:\n");
  size_t w = 0;
  for (const auto& [k, v] : md.items()) w = std::max(w, k.size());
  for (const auto& [k, v] : md.items())
    std::printf("  %-*s  %s\n", static_cast<int>(w), k.c_str(), gguf_value_text(v).c_str());

  Totals all;
  std::vector<Row> rows;
  for (const io::GgufTensorInfo& t : g.tensors()) {
    const io::GgmlTypeInfo* ti = io::ggml_type_info(t.ggml_type);
    std::string type = ti ? ti->name : cat("type ", t.ggml_type);
    for (char& c : type) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    rows.push_back({t.name, type, t.shape, t.nbytes});
    add(all, rows.back(), 0);
  }
  print_totals(all);
  std::printf("\n%s: %zu tensors, %s\n", fs::path(path).filename().c_str(), rows.size(),
              human(static_cast<double>(all.bytes), "B").c_str());
  if (!summary) print_rows(rows);
  return 0;
}

}  // namespace

int cmd_inspect(const Args& args) {
  Flags f("inspect", {
                         {"summary", false, "leave out the per-tensor listing", ""},
                         {"help", false, "print this help", ""},
                     });
  f.parse(args);
  if (f.on("help")) {
    const std::string h = f.help();   // its first line is a generic usage line: ours names the input
    std::printf("usage: ar-quant inspect DIR|FILE.safetensors|FILE.gguf [--summary]\n%s", h.substr(h.find('\n') + 1).c_str());
    return 0;
  }
  ARQ_CHECK(f.positional().size() == 1, UsageError, "inspect: give one model folder or file (got ",
            f.positional().size(), " arguments); see ar-quant inspect --help");
  const std::string path = f.positional().front();
  ARQ_CHECK(fs::exists(path), IoError, "inspect: '", path, "' does not exist");
  if (!fs::is_directory(path)) {
    // Decide by the magic rather than the extension, so a misnamed file still gets the right reader.
    std::ifstream in(path, std::ios::binary);
    char magic[4] = {};
    in.read(magic, 4);
    if (in.gcount() == 4 && std::string(magic, 4) == "GGUF") return inspect_gguf(path, f.on("summary"));
    const std::string ext = fs::path(path).extension().string();
    if (ext == ".gguf") return inspect_gguf(path, f.on("summary"));   // the reader reports the bad magic
  }
  return inspect_safetensors(path, f.on("summary"));
}

}  // namespace arq::app
