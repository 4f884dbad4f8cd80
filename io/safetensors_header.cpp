// safetensors header parsing and the dtype table: pure functions of bytes (no engine calls), so
// the fuzz target can build them alone.
#include "io/safetensors.h"

#include <simdjson.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "engine/error.h"


namespace arq::io {

namespace {

struct StDTypeInfo {
  StDType dtype;
  const char* name;
  size_t size;
};

// Reference enum order; sizes in bytes (§1.2).
constexpr StDTypeInfo kStTypes[] = {
    {StDType::BOOL, "BOOL", 1},         {StDType::U8, "U8", 1},
    {StDType::I8, "I8", 1},             {StDType::F8_E5M2, "F8_E5M2", 1},
    {StDType::F8_E4M3, "F8_E4M3", 1},   {StDType::F8_E8M0, "F8_E8M0", 1},
    {StDType::F8_E4M3FNUZ, "F8_E4M3FNUZ", 1}, {StDType::F8_E5M2FNUZ, "F8_E5M2FNUZ", 1},
    {StDType::I16, "I16", 2},           {StDType::U16, "U16", 2},
    {StDType::F16, "F16", 2},           {StDType::BF16, "BF16", 2},
    {StDType::I32, "I32", 4},           {StDType::U32, "U32", 4},
    {StDType::F32, "F32", 4},           {StDType::C64, "C64", 8},
    {StDType::F64, "F64", 8},           {StDType::I64, "I64", 8},
    {StDType::U64, "U64", 8},
};

const StDTypeInfo& st_info(StDType t) { return kStTypes[static_cast<size_t>(t)]; }

constexpr uint64_t kMaxHeaderLen = 100'000'000;  // the reference reader's limit (§1.3)

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

std::string shape_of(const std::vector<uint64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  return out + "]";
}

}  // namespace

const char* st_dtype_name(StDType t) { return st_info(t).name; }
size_t st_dtype_size(StDType t) { return st_info(t).size; }

std::optional<StDType> st_dtype_from_name(std::string_view s) {
  for (const auto& i : kStTypes)
    if (s == i.name) return i.dtype;
  return std::nullopt;
}

std::optional<DType> st_to_engine(StDType t) {
  switch (t) {
    case StDType::F32: return DType::f32;
    case StDType::F64: return DType::f64;
    case StDType::F16: return DType::f16;
    case StDType::BF16: return DType::bf16;
    case StDType::I8: return DType::i8;
    case StDType::U8: return DType::u8;
    case StDType::I32: return DType::i32;
    case StDType::I64: return DType::i64;
    default: return std::nullopt;
  }
}

StDType st_from_engine(DType t) {
  switch (t) {
    case DType::f32: return StDType::F32;
    case DType::f64: return StDType::F64;
    case DType::f16: return StDType::F16;
    case DType::bf16: return StDType::BF16;
    case DType::i8: return StDType::I8;
    case DType::u8: return StDType::U8;
    case DType::i32: return StDType::I32;
    case DType::i64: return StDType::I64;
  }
  return StDType::F32;
}

// ---- FP8 ------------------------------------------------------------------------------------

float f8_e4m3_to_f32(uint8_t b) {
  const bool neg = b & 0x80;
  const int e = (b >> 3) & 0xF, m = b & 0x7;
  float v;
  if (e == 0xF && m == 0x7) v = std::numeric_limits<float>::quiet_NaN();
  else if (e == 0) v = std::ldexp(static_cast<float>(m), -9);           // m/8 · 2^-6
  else v = std::ldexp(static_cast<float>(8 + m), e - 7 - 3);          // (1 + m/8) · 2^(e-7)
  return neg ? -v : v;
}

float f8_e5m2_to_f32(uint8_t b) {
  const bool neg = b & 0x80;
  const int e = (b >> 2) & 0x1F, m = b & 0x3;
  float v;
  if (e == 0x1F) v = m == 0 ? std::numeric_limits<float>::infinity() : std::numeric_limits<float>::quiet_NaN();
  else if (e == 0) v = std::ldexp(static_cast<float>(m), -16);          // m/4 · 2^-14
  else v = std::ldexp(static_cast<float>(4 + m), e - 15 - 2);
  return neg ? -v : v;
}

float f8_e8m0_to_f32(uint8_t b) {
  if (b == 0xFF) return std::numeric_limits<float>::quiet_NaN();
  return std::ldexp(1.0f, static_cast<int>(b) - 127);
}

// FNUZ variants: no negative zero (0x80 is the only NaN), no infinity, bias one larger.
float f8_e4m3fnuz_to_f32(uint8_t b) {
  if (b == 0x80) return std::numeric_limits<float>::quiet_NaN();
  const bool neg = b & 0x80;
  const int e = (b >> 3) & 0xF, m = b & 0x7;
  const float v = e == 0 ? std::ldexp(static_cast<float>(m), -10) : std::ldexp(static_cast<float>(8 + m), e - 8 - 3);
  return neg ? -v : v;
}
float f8_e5m2fnuz_to_f32(uint8_t b) {
  if (b == 0x80) return std::numeric_limits<float>::quiet_NaN();
  const bool neg = b & 0x80;
  const int e = (b >> 2) & 0x1F, m = b & 0x3;
  const float v = e == 0 ? std::ldexp(static_cast<float>(m), -17) : std::ldexp(static_cast<float>(4 + m), e - 16 - 2);
  return neg ? -v : v;
}

// ---- header validation ----------------------------------------------------------------------

StHeader parse_safetensors_header(const uint8_t* data, size_t size, const std::string& origin) {
  ARQ_CHECK(size >= 8, IoError, origin, ": truncated safetensors file (", size,
            " bytes; at least 8 needed for the header length)");
  StHeader h;
  h.header_len = read_u64_le(data);
  ARQ_CHECK(h.header_len <= kMaxHeaderLen, IoError, origin, ": header length ", h.header_len,
            " exceeds the limit of ", kMaxHeaderLen, " bytes (not a safetensors file?)");
  ARQ_CHECK(h.header_len <= size - 8, IoError, origin, ": header length ", h.header_len,
            " is larger than the file (", size, " bytes): truncated or not a safetensors file");
  ARQ_CHECK(h.header_len >= 2 && data[8] == '{', IoError, origin,
            ": header does not start with '{' (not a safetensors file?)");
  h.data_start = 8 + h.header_len;
  const uint64_t buffer_len = size - h.data_start;

  simdjson::dom::parser parser;
  simdjson::dom::element root;
  // simdjson needs padding after the text: let it copy the (small) header.
  if (const auto err = parser.parse(reinterpret_cast<const char*>(data + 8), h.header_len, true).get(root))
    throw IoError(cat(origin, ": header is not valid JSON (", simdjson::error_message(err), ")"));
  simdjson::dom::object obj;
  ARQ_CHECK(!root.get_object().get(obj), IoError, origin, ": header JSON is not an object");

  std::vector<std::string> keys;
  for (simdjson::dom::key_value_pair kv : obj) {
    std::string name(kv.key);
    keys.push_back(name);
    if (name == "__metadata__") {
      simdjson::dom::object md;
      ARQ_CHECK(!kv.value.get_object().get(md), IoError, origin, ": __metadata__ is not an object");
      for (simdjson::dom::key_value_pair m : md) {
        std::string_view v;
        ARQ_CHECK(!m.value.get_string().get(v), IoError, origin, ": __metadata__ value of '", m.key,
                  "' is not a string");
        h.metadata.emplace_back(std::string(m.key), std::string(v));
      }
      continue;
    }
    simdjson::dom::object e;
    ARQ_CHECK(!kv.value.get_object().get(e), IoError, origin, ": entry of tensor '", name, "' is not an object");
    StTensorInfo ti;
    ti.name = name;
    std::string_view dtype_s;
    ARQ_CHECK(!e["dtype"].get_string().get(dtype_s), IoError, origin, ": tensor '", name,
              "' has no string field \"dtype\"");
    const auto dt = st_dtype_from_name(dtype_s);
    ARQ_CHECK(dt.has_value(), IoError, origin, ": tensor '", name, "' has unknown or unsupported dtype '",
              dtype_s, "'");
    ti.dtype = *dt;

    simdjson::dom::array shape_a;
    ARQ_CHECK(!e["shape"].get_array().get(shape_a), IoError, origin, ": tensor '", name,
              "' has no array field \"shape\"");
    std::vector<uint64_t> dims;
    for (simdjson::dom::element d : shape_a) {
      uint64_t v;
      ARQ_CHECK(!d.get_uint64().get(v), IoError, origin, ": tensor '", name,
                "' has a shape entry that is not a non-negative integer");
      dims.push_back(v);
    }
    ARQ_CHECK(dims.size() <= 16, IoError, origin, ": tensor '", name, "' has ", dims.size(), " dimensions");
    uint64_t numel = 1;
    bool overflow = false;
    for (const uint64_t d : dims) {
      overflow = overflow || d > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
                 __builtin_mul_overflow(numel, d, &numel);
    }
    uint64_t expect = 0;
    overflow = overflow || __builtin_mul_overflow(numel, static_cast<uint64_t>(st_dtype_size(ti.dtype)), &expect);
    ARQ_CHECK(!overflow, IoError, origin, ": tensor '", name, "' shape ", shape_of(dims), " overflows");
    for (const uint64_t d : dims) ti.shape.push_back(static_cast<int64_t>(d));

    simdjson::dom::array off_a;
    ARQ_CHECK(!e["data_offsets"].get_array().get(off_a), IoError, origin, ": tensor '", name,
              "' has no array field \"data_offsets\"");
    std::vector<uint64_t> off;
    for (simdjson::dom::element d : off_a) {
      uint64_t v;
      ARQ_CHECK(!d.get_uint64().get(v), IoError, origin, ": tensor '", name,
                "' has a data_offsets entry that is not a non-negative integer");
      off.push_back(v);
    }
    ARQ_CHECK(off.size() == 2, IoError, origin, ": tensor '", name, "' data_offsets has ", off.size(),
              " entries, expected [begin, end]");
    ti.begin = off[0];
    ti.end = off[1];
    ARQ_CHECK(ti.begin <= ti.end, IoError, origin, ": tensor '", name, "' data_offsets [", ti.begin, ", ",
              ti.end, "] end before begin");
    ARQ_CHECK(ti.end <= buffer_len, IoError, origin, ": tensor '", name, "' data_offsets [", ti.begin, ", ",
              ti.end, "] out of range: the data buffer has ", buffer_len, " bytes (file truncated?)");
    ARQ_CHECK(ti.end - ti.begin == expect, IoError, origin, ": tensor '", name, "' ", dtype_s, shape_of(dims),
              " needs ", expect, " bytes but data_offsets [", ti.begin, ", ", ti.end, "] span ",
              ti.end - ti.begin);
    h.tensors.push_back(std::move(ti));
  }

  std::sort(keys.begin(), keys.end());
  const auto dup = std::adjacent_find(keys.begin(), keys.end());
  ARQ_CHECK(dup == keys.end(), IoError, origin, ": header lists '", *dup, "' twice");

  // The entries must tile the data buffer: no overlap, no hole, no trailing bytes.
  std::vector<const StTensorInfo*> order;
  for (const auto& t : h.tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](const StTensorInfo* a, const StTensorInfo* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t pos = 0;
  const StTensorInfo* prev = nullptr;
  for (const StTensorInfo* t : order) {
    if (t->begin < pos)
      throw IoError(cat(origin, ": tensors '", prev->name, "' [", prev->begin, ", ", prev->end, "] and '", t->name,
                        "' [", t->begin, ", ", t->end, "] overlap"));
    if (t->begin > pos)
      throw IoError(cat(origin, ": bytes [", pos, ", ", t->begin, ") of the data buffer belong to no tensor (before '",
                        t->name, "')"));
    pos = t->end;
    prev = t;
  }
  ARQ_CHECK(pos == buffer_len, IoError, origin, ": data buffer has ", buffer_len, " bytes but the tensors cover ",
            pos, " (trailing bytes or truncated file)");
  return h;
}

}  // namespace arq::io
