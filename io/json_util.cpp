#include "io/json_util.h"

#include <fstream>
#include <iterator>

#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <system_error>

#include "engine/error.h"

namespace arq::io {

JsonValue JsonValue::array(std::vector<JsonValue> items) {
  JsonValue v;
  v.kind_ = Kind::array;
  v.arr_ = std::move(items);
  return v;
}

JsonValue JsonValue::object() {
  JsonValue v;
  v.kind_ = Kind::object;
  return v;
}

JsonValue& JsonValue::set(const std::string& key, JsonValue v) {
  ARQ_ASSERT(kind_ == Kind::object, "JsonValue::set on a non-object");
  for (auto& kv : obj_) {
    if (kv.first == key) {
      kv.second = std::move(v);
      return *this;
    }
  }
  obj_.emplace_back(key, std::move(v));
  return *this;
}

const JsonValue* JsonValue::find(const std::string& key) const {
  if (kind_ != Kind::object) return nullptr;
  for (const auto& kv : obj_)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

bool JsonValue::erase(const std::string& key) {
  const auto it = std::find_if(obj_.begin(), obj_.end(), [&](const auto& kv) { return kv.first == key; });
  if (it == obj_.end()) return false;
  obj_.erase(it);
  return true;
}

JsonValue& JsonValue::push(JsonValue v) {
  ARQ_ASSERT(kind_ == Kind::array, "JsonValue::push on a non-array");
  arr_.push_back(std::move(v));
  return *this;
}

double JsonValue::as_double() const {
  switch (kind_) {
    case Kind::integer: return static_cast<double>(i_);
    case Kind::uinteger: return static_cast<double>(u_);
    default: return d_;
  }
}

void JsonValue::sort_keys() {
  for (auto& e : arr_) e.sort_keys();
  for (auto& kv : obj_) kv.second.sort_keys();
  std::stable_sort(obj_.begin(), obj_.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
}

std::string json_quote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (u < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", u);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}

std::string json_number(double v) {
  if (!std::isfinite(v)) throw IoError(cat("cannot write ", v, " as a JSON number"));
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  std::string s(buf, r.ptr);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

void JsonValue::dump_to(std::string& out, int indent, int depth) const {
  auto newline = [&](int d) {
    if (indent < 0) return;
    out += '\n';
    out.append(static_cast<size_t>(indent * d), ' ');
  };
  switch (kind_) {
    case Kind::null: out += "null"; break;
    case Kind::boolean: out += b_ ? "true" : "false"; break;
    case Kind::integer: out += std::to_string(i_); break;
    case Kind::uinteger: out += std::to_string(u_); break;
    case Kind::number: out += json_number(d_); break;
    case Kind::string: out += json_quote(s_); break;
    case Kind::array:
      if (arr_.empty()) { out += "[]"; break; }
      out += '[';
      for (size_t i = 0; i < arr_.size(); ++i) {
        if (i) out += ',';
        newline(depth + 1);
        arr_[i].dump_to(out, indent, depth + 1);
      }
      newline(depth);
      out += ']';
      break;
    case Kind::object:
      if (obj_.empty()) { out += "{}"; break; }
      out += '{';
      for (size_t i = 0; i < obj_.size(); ++i) {
        if (i) out += ',';
        newline(depth + 1);
        out += json_quote(obj_[i].first);
        out += indent < 0 ? ":" : ": ";
        obj_[i].second.dump_to(out, indent, depth + 1);
      }
      newline(depth);
      out += '}';
      break;
  }
}

std::string JsonValue::dump(int indent) const {
  std::string out;
  dump_to(out, indent, 0);
  return out;
}

JsonValue from_simdjson(const simdjson::dom::element& e) {
  using simdjson::dom::element_type;
  switch (e.type()) {
    case element_type::NULL_VALUE: return JsonValue();
    case element_type::BOOL: return JsonValue(bool(e.get_bool().value_unsafe()));
    case element_type::INT64: return JsonValue(int64_t(e.get_int64().value_unsafe()));
    case element_type::UINT64: return JsonValue(uint64_t(e.get_uint64().value_unsafe()));
    case element_type::DOUBLE: return JsonValue(double(e.get_double().value_unsafe()));
    case element_type::STRING: return JsonValue(std::string(e.get_string().value_unsafe()));
    case element_type::ARRAY: {
      JsonValue a = JsonValue::array();
      const simdjson::dom::array arr = e.get_array().value_unsafe();   // a named copy: no dangling temporary
      for (simdjson::dom::element x : arr) a.push(from_simdjson(x));
      return a;
    }
    case element_type::OBJECT: {
      JsonValue o = JsonValue::object();
      const simdjson::dom::object obj = e.get_object().value_unsafe();
      for (simdjson::dom::key_value_pair kv : obj)
        o.set(std::string(kv.key), from_simdjson(kv.value));
      return o;
    }
  }
  return JsonValue();
}

JsonValue parse_json(std::string_view text, const std::string& origin) {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  const auto err = parser.parse(text.data(), text.size()).get(root);
  if (err) throw IoError(cat(origin, ": malformed JSON (", simdjson::error_message(err), ")"));
  return from_simdjson(root);
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(cat("cannot open '", path, "'"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw IoError(cat("error reading '", path, "'"));
  return text;
}

void write_text_file_atomic(const std::string& path, std::string_view text) {
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw IoError(cat("cannot create '", tmp, "'"));
  const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  const bool closed = std::fclose(f) == 0;
  if (!ok || !closed) {
    std::remove(tmp.c_str());
    throw IoError(cat("cannot write '", tmp, "' (", text.size(), " bytes; disk full?)"));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    throw IoError(cat("cannot rename '", tmp, "' to '", path, "': ", ec.message()));
  }
}

}  // namespace arq::io
