#include "quant/layer_config.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <regex>
#include <sstream>

#include "engine/error.h"

namespace arq::quant {

void SchemeOverride::apply(QuantScheme& s) const {
  if (bits) s.bits = *bits;
  if (group_size) s.group_size = *group_size;
  if (sym) s.sym = *sym;
  if (data_type) s.data_type = *data_type;
  if (scale_dtype) s.scale_dtype = *scale_dtype;
}

std::optional<SchemeOverride> preset_scheme(const std::string& name) {
  std::string n = name;
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  if (n == "BF16" || n == "FP16" || n == "FLOAT16" || n == "FP" || n == "W16A16") return SchemeOverride{.bits = 16};
  // WbA16[Gg]
  std::smatch m;
  static const std::regex re("^W([2-8])A16(G([0-9]+))?$");
  if (!std::regex_match(n, m, re)) return std::nullopt;
  SchemeOverride o;
  o.bits = std::stoi(m[1].str());
  o.group_size = m[3].matched ? std::stoll(m[3].str()) : 128;
  o.sym = true;
  o.data_type = "int";
  return o;
}

namespace {

// A parsed JSON(-like) value.
struct Jv {
  enum Kind { str, num, boolean, null, object } kind = null;
  std::string s;
  double d = 0;
  bool b = false;
  std::vector<std::pair<std::string, Jv>> obj;
};

class Parser {
 public:
  Parser(const std::string& t, const std::string& flag) : t_(t), flag_(flag) {}
  Jv parse_all() {
    Jv v = value();
    ws();
    if (p_ != t_.size()) fail("unexpected text");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw UsageError(cat(flag_, ": ", what, " at offset ", p_, " in '", t_, "'"));
  }
  void ws() {
    while (p_ < t_.size() && std::isspace(static_cast<unsigned char>(t_[p_]))) ++p_;
  }
  bool eat(char c) {
    ws();
    if (p_ < t_.size() && t_[p_] == c) {
      ++p_;
      return true;
    }
    return false;
  }
  std::string quoted() {
    const char q = t_[p_++];
    std::string out;
    while (p_ < t_.size() && t_[p_] != q) {
      if (t_[p_] == '\\' && p_ + 1 < t_.size()) {
        // \" \' \\ \/ give the character, \n \t a newline/tab; any other escape (a regex's
        // "\.") is kept as written
        const char e = t_[p_ + 1];
        if (e == 'n') out += '\n';
        else if (e == 't') out += '\t';
        else if (e == '"' || e == '\'' || e == '\\' || e == '/') out += e;
        else out += {'\\', e};
        p_ += 2;
        continue;
      }
      out += t_[p_++];
    }
    if (p_ >= t_.size()) fail("unterminated string");
    ++p_;
    return out;
  }
  // A bare word: anything up to a structural character or space.
  std::string bare() {
    const size_t b = p_;
    while (p_ < t_.size() && !std::isspace(static_cast<unsigned char>(t_[p_])) && t_[p_] != ':' && t_[p_] != ',' &&
           t_[p_] != '{' && t_[p_] != '}')
      ++p_;
    if (p_ == b) fail("expected a value");
    return t_.substr(b, p_ - b);
  }
  std::string key() {
    ws();
    if (p_ < t_.size() && (t_[p_] == '"' || t_[p_] == '\'')) return quoted();
    return bare();
  }
  Jv value() {
    ws();
    if (p_ >= t_.size()) fail("unexpected end");
    Jv v;
    if (t_[p_] == '{') {
      ++p_;
      v.kind = Jv::object;
      if (eat('}')) return v;
      do {
        std::string k = key();
        if (!eat(':')) fail(cat("expected ':' after key '", k, "'"));
        v.obj.emplace_back(std::move(k), value());
      } while (eat(','));
      if (!eat('}')) fail("expected ',' or '}'");
      return v;
    }
    if (t_[p_] == '"' || t_[p_] == '\'') {
      v.kind = Jv::str;
      v.s = quoted();
      return v;
    }
    const std::string w = bare();
    std::string lw = w;
    std::transform(lw.begin(), lw.end(), lw.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (lw == "true" || lw == "false") {
      v.kind = Jv::boolean;
      v.b = lw == "true";
      return v;
    }
    if (lw == "null" || lw == "none") return v;
    char* end = nullptr;
    const double d = std::strtod(w.c_str(), &end);
    if (end && *end == '\0') {
      v.kind = Jv::num;
      v.d = d;
      return v;
    }
    v.kind = Jv::str;
    v.s = w;
    return v;
  }

  const std::string& t_;
  std::string flag_;
  size_t p_ = 0;
};

SchemeOverride override_from(const std::string& key, const Jv& v, const std::string& flag) {
  const std::string where = cat(flag, " '", key, "'");
  if (v.kind == Jv::str) {
    auto p = preset_scheme(v.s);
    ARQ_CHECK(p.has_value(), UsageError, where, ": unknown scheme '", v.s, "' (presets: W2A16, W2A16G32, W3A16, W4A16, W8A16, BF16, ...)");
    return *p;
  }
  ARQ_CHECK(v.kind == Jv::object, UsageError, where, ": value must be a dict like {bits: 8} or a preset name");
  SchemeOverride o;
  for (const auto& [k, x] : v.obj) {
    auto integer = [&]() {
      ARQ_CHECK(x.kind == Jv::num && x.d == static_cast<double>(static_cast<int64_t>(x.d)), UsageError, where, ": ", k,
                " must be an integer");
      return static_cast<int64_t>(x.d);
    };
    if (k == "bits") o.bits = static_cast<int>(integer());
    else if (k == "group_size") o.group_size = integer();
    else if (k == "sym") {
      ARQ_CHECK(x.kind == Jv::boolean, UsageError, where, ": sym must be true or false");
      o.sym = x.b;
    } else if (k == "data_type" || k == "dtype") {
      ARQ_CHECK(x.kind == Jv::str, UsageError, where, ": data_type must be a string");
      o.data_type = x.s;
    } else if (k == "scale_dtype") {
      ARQ_CHECK(x.kind == Jv::str, UsageError, where, ": scale_dtype must be a string");
      const std::string sd = x.s == "fp16" || x.s == "float16" ? "f16" : (x.s == "fp32" || x.s == "float32" ? "f32" : x.s == "bfloat16" ? "bf16" : x.s);
      try {
        o.scale_dtype = dtype_from_name(sd);
      } catch (const Error&) {
        throw UsageError(cat(where, ": unknown scale_dtype '", x.s, "'"));
      }
    } else if (k == "act_bits") {
      ARQ_CHECK(integer() >= 16, UsageError, where, ": activation quantization (act_bits < 16) is not supported");
    } else {
      throw UsageError(cat(where, ": unknown field '", k, "' (known: bits, group_size, sym, data_type, scale_dtype)"));
    }
  }
  return o;
}

bool is_regex_key(const std::string& k) { return k.find_first_of("*+?[]()|^$\\") != std::string::npos; }

}  // namespace

LayerConfig LayerConfig::parse(const std::string& text_or_path, const std::string& flag) {
  std::string text = text_or_path;
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return {};
  if (text[first] != '{') {
    std::ifstream f(text_or_path);
    ARQ_CHECK(f.good(), UsageError, flag, ": '", text_or_path, "' is neither a JSON dict nor a readable file");
    std::stringstream ss;
    ss << f.rdbuf();
    text = ss.str();
  }
  const Jv root = Parser(text, flag).parse_all();
  ARQ_CHECK(root.kind == Jv::object, UsageError, flag, ": expected a dict of layer name -> settings");
  LayerConfig lc;
  for (const auto& [k, v] : root.obj) {
    Entry e{k, override_from(k, v, flag)};
    QuantScheme probe;
    e.value.apply(probe);
    validate_scheme(probe, cat(flag, " '", k, "'"));
    if (is_regex_key(k)) {
      try {
        std::regex r(k);
      } catch (const std::regex_error& err) {
        throw UsageError(cat(flag, " '", k, "': invalid regular expression (", err.what(), ")"));
      }
    }
    lc.entries_.push_back(std::move(e));
  }
  return lc;
}

bool LayerConfig::apply(const std::string& layer, QuantScheme& s) const {
  bool any = false;
  const Entry* exact = nullptr;
  for (const Entry& e : entries_) {
    if (e.key == layer) {
      exact = &e;
      continue;
    }
    if (matches_layer_pattern(layer, e.key)) {
      e.value.apply(s);
      any = true;
    }
  }
  if (exact) {
    exact->value.apply(s);
    any = true;
  }
  return any;
}

std::vector<std::string> split_layer_list(const std::string& list) {
  std::vector<std::string> out;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const size_t b = item.find_first_not_of(" \t"), e = item.find_last_not_of(" \t");
    if (b != std::string::npos) out.push_back(item.substr(b, e - b + 1));
  }
  return out;
}

bool matches_layer_pattern(const std::string& layer, const std::string& pattern) {
  if (pattern.empty()) return false;
  if (layer == pattern || layer.find(pattern) != std::string::npos) return true;
  if (!is_regex_key(pattern)) return false;
  try {
    return std::regex_search(layer, std::regex(pattern));
  } catch (const std::regex_error&) {
    return false;
  }
}

LayerChoice choose_layer(const std::string& name, int64_t out_features, int64_t in_features, const QuantScheme& base,
                         const LayerConfig& config, const std::vector<std::string>& fp_layers) {
  LayerChoice c{base, ""};
  auto keep = [&](std::string why) {
    c.scheme.bits = 16;
    c.reason = std::move(why);
    return c;
  };
  for (const std::string& p : fp_layers)
    if (matches_layer_pattern(name, p)) return keep(cat("--fp_layers '", p, "'"));
  // MoE routers and vision towers stay FP (AutoRound's predefined ignore lists).
  if (name.size() >= 5 && name.compare(name.size() - 5, 5, ".gate") == 0) return keep("MoE router");
  for (const char* kw : {"vision", "visual", "image", "multi_modal_projector", "patch_merger", "audio"})
    if (name.find(kw) != std::string::npos) return keep("non-text module");
  config.apply(name, c.scheme);
  if (c.scheme.keep_fp()) {
    c.reason = "layer_config";
    return c;
  }
  if (out_features % 32 != 0 || in_features % 32 != 0)
    return keep(cat("shape [", out_features, ", ", in_features, "] not divisible by 32"));
  return c;
}

}  // namespace arq::quant
