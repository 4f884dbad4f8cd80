// GGUF parsing: bounds-checked cursor over the bytes, metadata, tensor infos. Pure functions of
// the bytes (no engine calls), so the fuzz target can build them alone.
#include "io/gguf.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <set>

#include "engine/error.h"

namespace arq::io {

namespace {

constexpr GgmlTypeInfo kGgmlTypes[] = {
    {0, "F32", 1, 4},        {1, "F16", 1, 2},         {2, "Q4_0", 32, 18},     {3, "Q4_1", 32, 20},
    {6, "Q5_0", 32, 22},     {7, "Q5_1", 32, 24},      {8, "Q8_0", 32, 34},     {9, "Q8_1", 32, 36},
    {10, "Q2_K", 256, 84},   {11, "Q3_K", 256, 110},   {12, "Q4_K", 256, 144},  {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210},  {15, "Q8_K", 256, 292},   {16, "IQ2_XXS", 256, 66}, {17, "IQ2_XS", 256, 74},
    {18, "IQ3_XXS", 256, 98}, {19, "IQ1_S", 256, 50},  {20, "IQ4_NL", 32, 18},  {21, "IQ3_S", 256, 110},
    {22, "IQ2_S", 256, 82},  {23, "IQ4_XS", 256, 136}, {24, "I8", 1, 1},        {25, "I16", 1, 2},
    {26, "I32", 1, 4},       {27, "I64", 1, 8},        {28, "F64", 1, 8},       {29, "IQ1_M", 256, 56},
    {30, "BF16", 1, 2},      {34, "TQ1_0", 256, 54},   {35, "TQ2_0", 256, 66},  {39, "MXFP4", 32, 17},
};

constexpr uint32_t kMaxDims = 4;          // GGML_MAX_DIMS
constexpr int kMaxNesting = 2;            // arrays of arrays are allowed one level deep

// Little-endian cursor; every read checks the remaining length and names what it was reading.
class Cursor {
 public:
  Cursor(const uint8_t* d, size_t n, const std::string& origin) : d_(d), n_(n), origin_(origin) {}
  size_t pos() const { return pos_; }
  size_t remaining() const { return n_ - pos_; }
  std::string where;   // "metadata key #3 'general.name'" etc.

  void need(uint64_t bytes) const {
    if (bytes > remaining())
      throw IoError(cat(origin_, ": truncated GGUF file in ", where, " (offset ", pos_, ": need ", bytes,
                        " bytes, ", remaining(), " left)"));
  }
  template <class T>
  T read() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, d_ + pos_, sizeof v);
    pos_ += sizeof v;
    return v;
  }
  std::string read_string() {
    const uint64_t len = read<uint64_t>();
    need(len);
    std::string s(reinterpret_cast<const char*>(d_ + pos_), static_cast<size_t>(len));
    pos_ += static_cast<size_t>(len);
    return s;
  }
  const std::string& origin() const { return origin_; }

 private:
  const uint8_t* d_;
  size_t n_;
  size_t pos_ = 0;
  const std::string& origin_;
};

size_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::u8: case GgufType::i8: case GgufType::boolean: return 1;
    case GgufType::u16: case GgufType::i16: return 2;
    case GgufType::u32: case GgufType::i32: case GgufType::f32: return 4;
    case GgufType::u64: case GgufType::i64: case GgufType::f64: return 8;
    case GgufType::string: return 8;   // at least its length field
    case GgufType::array: return 12;   // at least type + count
  }
  return 1;
}

GgufType read_type(Cursor& c) {
  const uint32_t t = c.read<uint32_t>();
  if (t > static_cast<uint32_t>(GgufType::f64))
    throw IoError(cat(c.origin(), ": unknown GGUF value type ", t, " in ", c.where));
  return static_cast<GgufType>(t);
}

// Read one scalar into (u, i, f); bool must be 0 or 1.
void read_scalar(Cursor& c, GgufType t, uint64_t& u, int64_t& i, double& f) {
  switch (t) {
    case GgufType::u8: u = c.read<uint8_t>(); break;
    case GgufType::i8: i = c.read<int8_t>(); break;
    case GgufType::u16: u = c.read<uint16_t>(); break;
    case GgufType::i16: i = c.read<int16_t>(); break;
    case GgufType::u32: u = c.read<uint32_t>(); break;
    case GgufType::i32: i = c.read<int32_t>(); break;
    case GgufType::u64: u = c.read<uint64_t>(); break;
    case GgufType::i64: i = c.read<int64_t>(); break;
    case GgufType::f32: f = c.read<float>(); break;
    case GgufType::f64: f = c.read<double>(); break;
    case GgufType::boolean: {
      const uint8_t b = c.read<uint8_t>();
      if (b > 1) throw IoError(cat(c.origin(), ": bool value ", int(b), " (not 0/1) in ", c.where));
      u = b;
      break;
    }
    default: ARQ_ASSERT(false, "read_scalar on a non-scalar type");
  }
}

bool is_unsigned(GgufType t) {
  return t == GgufType::u8 || t == GgufType::u16 || t == GgufType::u32 || t == GgufType::u64 || t == GgufType::boolean;
}

GgufValue read_value(Cursor& c, GgufType t, int depth) {
  GgufValue v;
  v.type = t;
  if (t == GgufType::string) {
    v.s = c.read_string();
  } else if (t == GgufType::array) {
    v.array_type = read_type(c);
    const uint64_t n = c.read<uint64_t>();
    // Each element takes at least scalar_size bytes: a count beyond that is a lie, reject it
    // before reserving memory.
    if (n > c.remaining() / scalar_size(v.array_type))
      throw IoError(cat(c.origin(), ": truncated GGUF file in ", c.where, " (array of ", n, " ",
                        gguf_type_name(v.array_type), " does not fit in the ", c.remaining(), " bytes left)"));
    const auto count = static_cast<size_t>(n);
    switch (v.array_type) {
      case GgufType::string:
        v.strings.reserve(count);
        for (size_t k = 0; k < count; ++k) v.strings.push_back(c.read_string());
        break;
      case GgufType::f32: case GgufType::f64:
        v.floats.resize(count);
        for (size_t k = 0; k < count; ++k) {
          uint64_t u = 0; int64_t i = 0;
          read_scalar(c, v.array_type, u, i, v.floats[k]);
        }
        break;
      case GgufType::array:
        if (depth >= kMaxNesting) throw IoError(cat(c.origin(), ": arrays nested too deeply in ", c.where));
        v.nested.reserve(count);
        for (size_t k = 0; k < count; ++k) v.nested.push_back(read_value(c, GgufType::array, depth + 1));
        break;
      default: {
        v.ints.resize(count);
        const bool uns = is_unsigned(v.array_type);
        for (size_t k = 0; k < count; ++k) {
          uint64_t u = 0; int64_t i = 0; double f = 0;
          read_scalar(c, v.array_type, u, i, f);
          v.ints[k] = uns ? static_cast<int64_t>(u) : i;
        }
      }
    }
  } else {
    read_scalar(c, t, v.u, v.i, v.f);
  }
  return v;
}

}  // namespace

const char* gguf_type_name(GgufType t) {
  static const char* names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};
  const auto i = static_cast<uint32_t>(t);
  return i < 13 ? names[i] : "?";
}

const GgmlTypeInfo* ggml_type_info(uint32_t id) {
  for (const auto& t : kGgmlTypes)
    if (t.id == id) return &t;
  return nullptr;
}

bool GgufValue::is_integer() const {
  return type != GgufType::f32 && type != GgufType::f64 && type != GgufType::boolean && type != GgufType::string &&
         type != GgufType::array;
}

size_t GgufValue::array_size() const {
  if (type != GgufType::array) return 0;
  return strings.size() + ints.size() + floats.size() + nested.size();
}

// ---- metadata lookups -----------------------------------------------------------------------

const GgufValue* GgufMetadata::find(const std::string& key) const {
  for (const auto& kv : items_)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

void GgufMetadata::set(const std::string& key, GgufValue v) {
  for (auto& kv : items_)
    if (kv.first == key) { kv.second = std::move(v); return; }
  items_.emplace_back(key, std::move(v));
}

const GgufValue& GgufMetadata::need(const std::string& key) const {
  const GgufValue* v = find(key);
  ARQ_CHECK(v, IoError, origin, ": GGUF metadata key '", key, "' is missing");
  return *v;
}

namespace {
[[noreturn]] void wrong_type(const std::string& origin, const std::string& key, const GgufValue& v, const char* want) {
  throw IoError(cat(origin, ": GGUF metadata key '", key, "' is ", gguf_type_name(v.type),
                    v.type == GgufType::array ? cat(" of ", gguf_type_name(v.array_type)) : std::string(),
                    ", expected ", want));
}
}  // namespace

uint64_t GgufMetadata::get_u64(const std::string& key) const {
  const GgufValue& v = need(key);
  if (!v.is_integer()) wrong_type(origin, key, v, "an unsigned integer");
  if (is_unsigned(v.type)) return v.u;
  ARQ_CHECK(v.i >= 0, IoError, origin, ": GGUF metadata key '", key, "' is negative (", v.i, ")");
  return static_cast<uint64_t>(v.i);
}

int64_t GgufMetadata::get_i64(const std::string& key) const {
  const GgufValue& v = need(key);
  if (!v.is_integer()) wrong_type(origin, key, v, "an integer");
  if (!is_unsigned(v.type)) return v.i;
  ARQ_CHECK(v.u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), IoError, origin,
            ": GGUF metadata key '", key, "' value ", v.u, " does not fit int64");
  return static_cast<int64_t>(v.u);
}

double GgufMetadata::get_f64(const std::string& key) const {
  const GgufValue& v = need(key);
  if (v.is_float()) return v.f;
  if (v.is_integer()) return is_unsigned(v.type) ? static_cast<double>(v.u) : static_cast<double>(v.i);
  wrong_type(origin, key, v, "a number");
}

bool GgufMetadata::get_bool(const std::string& key) const {
  const GgufValue& v = need(key);
  if (v.type != GgufType::boolean) wrong_type(origin, key, v, "bool");
  return v.u != 0;
}

const std::string& GgufMetadata::get_string(const std::string& key) const {
  const GgufValue& v = need(key);
  if (v.type != GgufType::string) wrong_type(origin, key, v, "string");
  return v.s;
}

const std::vector<std::string>& GgufMetadata::get_strings(const std::string& key) const {
  const GgufValue& v = need(key);
  if (v.type != GgufType::array || v.array_type != GgufType::string) wrong_type(origin, key, v, "array of string");
  return v.strings;
}

const std::vector<int64_t>& GgufMetadata::get_ints(const std::string& key) const {
  const GgufValue& v = need(key);
  const bool ok = v.type == GgufType::array && v.array_type != GgufType::string && v.array_type != GgufType::array &&
                  v.array_type != GgufType::f32 && v.array_type != GgufType::f64;
  if (!ok) wrong_type(origin, key, v, "array of integers");
  return v.ints;
}

const std::vector<double>& GgufMetadata::get_floats(const std::string& key) const {
  const GgufValue& v = need(key);
  if (v.type != GgufType::array || (v.array_type != GgufType::f32 && v.array_type != GgufType::f64))
    wrong_type(origin, key, v, "array of floats");
  return v.floats;
}

// ---- parse ----------------------------------------------------------------------------------

GgufHeader parse_gguf(const uint8_t* data, size_t size, const std::string& origin) {
  Cursor c(data, size, origin);
  GgufHeader h;
  h.metadata.origin = origin;
  c.where = "the header";
  if (size < 4 || std::memcmp(data, "GGUF", 4) != 0) {
    std::string got;
    for (size_t k = 0; k < std::min<size_t>(size, 4); ++k) got += cat(k ? " " : "", int(data[k]));
    throw IoError(cat(origin, ": not a GGUF file (bad magic: bytes [", got, "], expected \"GGUF\")"));
  }
  c.read<uint32_t>();
  h.version = c.read<uint32_t>();
  if (h.version != 2 && h.version != 3) {
    if (h.version != 0 && (h.version & 0xFFFF) == 0)
      throw IoError(cat(origin, ": big-endian GGUF files are not supported"));
    throw IoError(cat(origin, ": unsupported GGUF version ", h.version, " (2 and 3 are supported)"));
  }
  const uint64_t n_tensors = c.read<uint64_t>();
  const uint64_t n_kv = c.read<uint64_t>();
  // A key/value takes at least 8 (key length) + 4 (type) + 1 bytes, a tensor info at least 8+4+4+8.
  ARQ_CHECK(n_kv <= c.remaining() / 13, IoError, origin, ": GGUF header claims ", n_kv,
            " metadata entries, more than the file can hold (truncated or corrupt)");
  ARQ_CHECK(n_tensors <= c.remaining() / 24, IoError, origin, ": GGUF header claims ", n_tensors,
            " tensors, more than the file can hold (truncated or corrupt)");

  std::set<std::string> keys;
  for (uint64_t k = 0; k < n_kv; ++k) {
    c.where = cat("metadata entry #", k, " key");
    std::string key = c.read_string();
    c.where = cat("metadata entry #", k, " '", key, "'");
    const GgufType t = read_type(c);
    GgufValue v = read_value(c, t, 0);
    ARQ_CHECK(keys.insert(key).second, IoError, origin, ": GGUF metadata key '", key, "' appears twice");
    h.metadata.set(key, std::move(v));
  }

  if (const GgufValue* a = h.metadata.find("general.alignment")) {
    ARQ_CHECK(a->type == GgufType::u32, IoError, origin, ": general.alignment must be u32, found ",
              gguf_type_name(a->type));
    ARQ_CHECK(a->u != 0 && (a->u & (a->u - 1)) == 0, IoError, origin, ": general.alignment ", a->u,
              " is not a power of two");
    h.alignment = a->u;
  }

  std::set<std::string> names;
  for (uint64_t k = 0; k < n_tensors; ++k) {
    c.where = cat("tensor info #", k);
    GgufTensorInfo ti;
    ti.name = c.read_string();
    c.where = cat("tensor info #", k, " '", ti.name, "'");
    ARQ_CHECK(names.insert(ti.name).second, IoError, origin, ": GGUF tensor '", ti.name, "' appears twice");
    const uint32_t n_dims = c.read<uint32_t>();
    ARQ_CHECK(n_dims >= 1 && n_dims <= kMaxDims, IoError, origin, ": GGUF tensor '", ti.name, "' has ", n_dims,
              " dimensions (1 to ", kMaxDims, " allowed)");
    uint64_t numel = 1;
    bool overflow = false;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t ne = c.read<uint64_t>();
      overflow = overflow || ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
                 __builtin_mul_overflow(numel, ne, &numel);
      ti.ne.push_back(static_cast<int64_t>(ne));
    }
    ti.ggml_type = c.read<uint32_t>();
    ti.offset = c.read<uint64_t>();
    const GgmlTypeInfo* tt = ggml_type_info(ti.ggml_type);
    ARQ_CHECK(tt, IoError, origin, ": GGUF tensor '", ti.name, "' has unknown ggml type ", ti.ggml_type);
    ARQ_CHECK(!overflow, IoError, origin, ": GGUF tensor '", ti.name, "' dimensions overflow");
    ARQ_CHECK(ti.ne[0] % tt->block_size == 0, IoError, origin, ": GGUF tensor '", ti.name, "' of type ", tt->name,
              " has ne[0] = ", ti.ne[0], ", not a multiple of the block size ", tt->block_size);
    uint64_t nb = 0;
    ARQ_CHECK(!__builtin_mul_overflow(numel / static_cast<uint64_t>(tt->block_size), tt->type_size, &nb), IoError,
              origin, ": GGUF tensor '", ti.name, "' byte size overflows");
    ti.nbytes = nb;
    ARQ_CHECK(ti.offset % h.alignment == 0, IoError, origin, ": GGUF tensor '", ti.name, "' offset ", ti.offset,
              " is not a multiple of the alignment ", h.alignment);
    ti.shape.assign(ti.ne.rbegin(), ti.ne.rend());
    h.tensors.push_back(std::move(ti));
  }

  // The data section starts at the next multiple of the alignment.
  const uint64_t pos = c.pos();
  h.data_offset = pos + (h.alignment - pos % h.alignment) % h.alignment;
  std::vector<const GgufTensorInfo*> order;
  for (const auto& t : h.tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](const auto* a, const auto* b) { return a->offset < b->offset; });
  uint64_t end_prev = 0;
  const GgufTensorInfo* prev = nullptr;
  for (const GgufTensorInfo* t : order) {
    if (prev && t->offset < end_prev)
      throw IoError(cat(origin, ": GGUF tensors '", prev->name, "' and '", t->name, "' overlap (offsets ",
                        prev->offset, " + ", prev->nbytes, " > ", t->offset, ")"));
    uint64_t end = 0;
    const bool ovf = __builtin_add_overflow(h.data_offset, t->offset, &end) || __builtin_add_overflow(end, t->nbytes, &end);
    if (ovf || end > size)
      throw IoError(cat(origin, ": GGUF tensor '", t->name, "' data [", t->offset, ", +", t->nbytes,
                        ") lies beyond the end of the file (", size, " bytes, data section at ", h.data_offset,
                        "): truncated?"));
    end_prev = t->offset + t->nbytes;
    prev = t;
  }
  return h;
}

}  // namespace arq::io
