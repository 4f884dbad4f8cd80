// GGUF v2/v3 reader (spec/formats.md §4.1–4.3): header, typed metadata (arrays included),
// tensor infos, alignment, and tensors as zero-copy views (F32/F16/BF16 and the other plain
// types) or raw ggml blocks (quantized types) with their ggml type id.
//
// GGUF lists dimensions innermost first (`ne[0]` is the fastest axis); `GgufTensorInfo::shape`
// is our row-major order (reversed), so a Linear weight with ne = [in, out] has shape [out, in].
//
//   auto g = GgufFile::open("stories260k.gguf");
//   std::string arch = g.metadata().get_string("general.architecture");
//   Tensor emb = g.view("token_embd.weight");     // f32 [vocab, hidden], zero-copy
//   GgufRawTensor q = g.raw("blk.0.attn_q.weight");  // bytes + ggml type, any type
//
// The value and info structs are plain data so a GGUF writer can build and reuse them.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace arq::io {

class MappedFile;

// Metadata value types as stored (u32 on disk).
enum class GgufType : uint32_t {
  u8 = 0, i8 = 1, u16 = 2, i16 = 3, u32 = 4, i32 = 5, f32 = 6, boolean = 7,
  string = 8, array = 9, u64 = 10, i64 = 11, f64 = 12
};
const char* gguf_type_name(GgufType t);

// One metadata value. Scalars use the field matching their type family; arrays keep their
// elements in the typed vector of their element type (strings / ints / floats / nested).
struct GgufValue {
  GgufType type = GgufType::u32;
  GgufType array_type = GgufType::u32;     // element type when type == array
  uint64_t u = 0;                          // u8/u16/u32/u64, and bool (0/1)
  int64_t i = 0;                           // i8/i16/i32/i64
  double f = 0;                            // f32/f64
  std::string s;                           // string
  std::vector<std::string> strings;        // array of string
  std::vector<int64_t> ints;               // array of any integer type or bool (u64 bit-cast)
  std::vector<double> floats;              // array of f32/f64
  std::vector<GgufValue> nested;           // array of arrays (rare)

  static GgufValue make_u32(uint32_t v) { GgufValue x; x.type = GgufType::u32; x.u = v; return x; }
  static GgufValue make_u64(uint64_t v) { GgufValue x; x.type = GgufType::u64; x.u = v; return x; }
  static GgufValue make_i32(int32_t v) { GgufValue x; x.type = GgufType::i32; x.i = v; return x; }
  static GgufValue make_f32(float v) { GgufValue x; x.type = GgufType::f32; x.f = v; return x; }
  static GgufValue make_bool(bool v) { GgufValue x; x.type = GgufType::boolean; x.u = v; return x; }
  static GgufValue make_string(std::string v) { GgufValue x; x.type = GgufType::string; x.s = std::move(v); return x; }

  bool is_integer() const;   // any of u8..u64, i8..i64
  bool is_float() const { return type == GgufType::f32 || type == GgufType::f64; }
  size_t array_size() const;
};

// Key → value, in file order, with lookups that check the type.
class GgufMetadata {
 public:
  const std::vector<std::pair<std::string, GgufValue>>& items() const { return items_; }
  const GgufValue* find(const std::string& key) const;
  bool has(const std::string& key) const { return find(key) != nullptr; }
  void set(const std::string& key, GgufValue v);   // replaces an existing key

  // Typed getters: IoError naming the key (and the file, via origin) when missing or mistyped.
  // get_u64/get_i64 accept any integer type (gguf-py writes u32 where llama.cpp reads u64).
  uint64_t get_u64(const std::string& key) const;
  int64_t get_i64(const std::string& key) const;
  double get_f64(const std::string& key) const;   // f32, f64 (and integers)
  bool get_bool(const std::string& key) const;
  const std::string& get_string(const std::string& key) const;
  const std::vector<std::string>& get_strings(const std::string& key) const;
  const std::vector<int64_t>& get_ints(const std::string& key) const;
  const std::vector<double>& get_floats(const std::string& key) const;

  std::string origin;   // file name for error messages

 private:
  const GgufValue& need(const std::string& key) const;
  std::vector<std::pair<std::string, GgufValue>> items_;
};

// ggml tensor types (§4.3): block size in elements and bytes per block.
struct GgmlTypeInfo {
  uint32_t id;
  const char* name;
  int64_t block_size;
  size_t type_size;
};
const GgmlTypeInfo* ggml_type_info(uint32_t id);   // null for unknown/retired ids
inline constexpr uint32_t kGgmlF32 = 0, kGgmlF16 = 1, kGgmlBF16 = 30;

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> ne;   // as stored: innermost first
  Shape shape;               // row-major (ne reversed)
  uint32_t ggml_type = 0;
  uint64_t offset = 0;       // relative to the data section
  uint64_t nbytes = 0;
};

struct GgufHeader {
  uint32_t version = 3;
  GgufMetadata metadata;
  std::vector<GgufTensorInfo> tensors;   // in file order
  uint64_t alignment = 32;               // general.alignment or 32
  uint64_t data_offset = 0;              // file offset of the data section
};

// Parse and validate a whole GGUF file held in memory. Throws IoError (bad magic, version,
// truncation anywhere, unknown value/tensor types, bad alignment, duplicate keys/names, tensor
// data out of range or overlapping). Pure function of its input: the fuzz target calls it.
GgufHeader parse_gguf(const uint8_t* data, size_t size, const std::string& origin);

struct GgufRawTensor {
  const GgufTensorInfo* info = nullptr;
  const uint8_t* data = nullptr;   // nbytes of ggml blocks; valid while keep_alive lives
  size_t nbytes = 0;
  std::shared_ptr<const void> keep_alive;
};

class GgufFile {
 public:
  static GgufFile open(const std::string& path);   // throws IoError

  const std::string& path() const;
  const GgufHeader& header() const { return header_; }
  const GgufMetadata& metadata() const { return header_.metadata; }
  const std::vector<GgufTensorInfo>& tensors() const { return header_.tensors; }
  const GgufTensorInfo* find(const std::string& name) const;
  const GgufTensorInfo& info(const std::string& name) const;   // IoError when absent

  GgufRawTensor raw(const std::string& name) const;
  // Zero-copy read-only CPU view for F32, F16, BF16 (and F64, I8, I32, I64); a quantized
  // tensor throws DTypeError naming its ggml type (use raw()).
  Tensor view(const std::string& name) const;

 private:
  std::shared_ptr<MappedFile> file_;
  GgufHeader header_;
};

}  // namespace arq::io
