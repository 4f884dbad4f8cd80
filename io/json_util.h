// A small JSON value tree for *writing* (config.json, index.json) and for keeping fields we do
// not model (unknown config keys survive a read → write round trip). Parsing is simdjson's job;
// `from_simdjson` converts a parsed element into this tree.
//
//   JsonValue o = JsonValue::object();
//   o.set("hidden_size", 64).set("rms_norm_eps", 1e-5).set("architectures", JsonValue::array({"LlamaForCausalLM"}));
//   std::string text = o.dump(2);   // Python json.dumps(indent=2) style, keys in insertion order
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace simdjson::dom { class element; }

namespace arq::io {

class JsonValue {
 public:
  enum class Kind : uint8_t { null, boolean, integer, uinteger, number, string, array, object };

  JsonValue() = default;  // null
  JsonValue(std::nullptr_t) {}
  JsonValue(bool b) : kind_(Kind::boolean), b_(b) {}
  JsonValue(int v) : kind_(Kind::integer), i_(v) {}
  JsonValue(int64_t v) : kind_(Kind::integer), i_(v) {}
  JsonValue(uint64_t v) : kind_(Kind::uinteger), u_(v) {}
  JsonValue(double v) : kind_(Kind::number), d_(v) {}
  JsonValue(const char* s) : kind_(Kind::string), s_(s) {}
  JsonValue(std::string s) : kind_(Kind::string), s_(std::move(s)) {}

  static JsonValue array(std::vector<JsonValue> items = {});
  static JsonValue object();

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::null; }
  bool is_object() const { return kind_ == Kind::object; }
  bool is_array() const { return kind_ == Kind::array; }

  // Objects keep insertion order; set() replaces an existing key in place.
  JsonValue& set(const std::string& key, JsonValue v);
  const JsonValue* find(const std::string& key) const;
  bool erase(const std::string& key);
  const std::vector<std::pair<std::string, JsonValue>>& items() const { return obj_; }
  // Arrays.
  JsonValue& push(JsonValue v);
  const std::vector<JsonValue>& elements() const { return arr_; }

  bool as_bool() const { return b_; }
  int64_t as_int() const { return kind_ == Kind::uinteger ? static_cast<int64_t>(u_) : i_; }
  double as_double() const;
  const std::string& as_string() const { return s_; }

  // Serialise. indent < 0: compact, no spaces (serde_json style); indent >= 0: one item a line,
  // ", "-free separators and ": " after keys (Python json.dumps(indent=N)).
  std::string dump(int indent = -1) const;
  // Sort object keys recursively (json.dumps(sort_keys=True)).
  void sort_keys();

 private:
  void dump_to(std::string& out, int indent, int depth) const;
  Kind kind_ = Kind::null;
  bool b_ = false;
  int64_t i_ = 0;
  uint64_t u_ = 0;
  double d_ = 0;
  std::string s_;
  std::vector<JsonValue> arr_;
  std::vector<std::pair<std::string, JsonValue>> obj_;
};

// JSON string literal with quotes and escapes ("\n", "\u0001", ...); UTF-8 passes through.
std::string json_quote(std::string_view s);
// Shortest text that reads back to the same double; integral values keep a ".0" so they stay
// floats for a reader that distinguishes; NaN/Inf are not JSON and throw IoError.
std::string json_number(double v);

// Convert a simdjson DOM element (any kind) into a JsonValue tree.
JsonValue from_simdjson(const simdjson::dom::element& e);

// Parse a whole JSON text into a tree; `origin` names the file in errors (IoError).
JsonValue parse_json(std::string_view text, const std::string& origin);

// The whole file as bytes. IoError "cannot open '<path>'" / "error reading '<path>'".
std::string read_text_file(const std::string& path);

// Write `text` to `path` atomically: to "<path>.tmp", then rename. Throws IoError.
void write_text_file_atomic(const std::string& path, std::string_view text);

}  // namespace arq::io
