// GGUF v3 writer. Layout (formats.md §4.1): magic, version, tensor count, kv count, the
// key/values, the tensor infos, zero padding to the alignment, then each tensor's bytes padded
// to the alignment, in info order (ggml's reader demands offset_i = Σ_{j<i} pad(nbytes_j)).
#include "io/gguf_write.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include "engine/error.h"

namespace arq::io {

GgufValue gguf_u8(uint8_t v) { GgufValue x; x.type = GgufType::u8; x.u = v; return x; }
GgufValue gguf_i8(int8_t v) { GgufValue x; x.type = GgufType::i8; x.i = v; return x; }
GgufValue gguf_u16(uint16_t v) { GgufValue x; x.type = GgufType::u16; x.u = v; return x; }
GgufValue gguf_i16(int16_t v) { GgufValue x; x.type = GgufType::i16; x.i = v; return x; }
GgufValue gguf_i64(int64_t v) { GgufValue x; x.type = GgufType::i64; x.i = v; return x; }
GgufValue gguf_f64(double v) { GgufValue x; x.type = GgufType::f64; x.f = v; return x; }

GgufValue gguf_string_array(std::vector<std::string> v) {
  GgufValue x;
  x.type = GgufType::array;
  x.array_type = GgufType::string;
  x.strings = std::move(v);
  return x;
}
GgufValue gguf_f32_array(const std::vector<float>& v) {
  GgufValue x;
  x.type = GgufType::array;
  x.array_type = GgufType::f32;
  x.floats.assign(v.begin(), v.end());
  return x;
}
GgufValue gguf_int_array(GgufType element_type, std::vector<int64_t> v) {
  GgufValue x;
  x.type = GgufType::array;
  x.array_type = element_type;
  x.ints = std::move(v);
  return x;
}
GgufValue gguf_i32_array(const std::vector<int32_t>& v) {
  return gguf_int_array(GgufType::i32, std::vector<int64_t>(v.begin(), v.end()));
}
GgufValue gguf_u32_array(const std::vector<uint32_t>& v) {
  return gguf_int_array(GgufType::u32, std::vector<int64_t>(v.begin(), v.end()));
}

std::vector<int64_t> gguf_ne(const Shape& shape) {
  std::vector<int64_t> ne(shape.rbegin(), shape.rend());
  while (ne.size() > 1 && ne.back() == 1) ne.pop_back();
  if (ne.empty()) ne.push_back(1);
  return ne;
}

size_t GgufTensorDecl::nbytes() const {
  const int64_t cols = shape.empty() ? 1 : shape.back();
  const int64_t rows = cols > 0 ? shape_numel(shape) / cols : 0;
  return ggml_row_bytes(type, cols) * static_cast<size_t>(rows);
}

namespace {

// Serialized bytes of the header, built in memory (it is small next to the tensor data).
class HeaderBuf {
 public:
  template <class T>
  void pod(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    bytes.insert(bytes.end(), p, p + sizeof(T));
  }
  void str(const std::string& s) {
    pod<uint64_t>(s.size());
    bytes.insert(bytes.end(), s.begin(), s.end());
  }
  std::vector<uint8_t> bytes;
};

bool is_int_type(GgufType t) {
  return t == GgufType::u8 || t == GgufType::i8 || t == GgufType::u16 || t == GgufType::i16 || t == GgufType::u32 ||
         t == GgufType::i32 || t == GgufType::u64 || t == GgufType::i64 || t == GgufType::boolean;
}

// One scalar of an integer type from its 64-bit carrier, range-checked (a value that does not fit
// its declared type is a caller error that would silently corrupt the file).
void put_int(HeaderBuf& b, GgufType t, int64_t v, const std::string& key) {
  auto check = [&](int64_t lo, int64_t hi) {
    ARQ_CHECK(v >= lo && v <= hi, IoError, "GGUF key '", key, "': value ", v, " does not fit ", gguf_type_name(t));
  };
  switch (t) {
    case GgufType::u8: check(0, 255); b.pod<uint8_t>(static_cast<uint8_t>(v)); break;
    case GgufType::i8: check(-128, 127); b.pod<int8_t>(static_cast<int8_t>(v)); break;
    case GgufType::u16: check(0, 65535); b.pod<uint16_t>(static_cast<uint16_t>(v)); break;
    case GgufType::i16: check(-32768, 32767); b.pod<int16_t>(static_cast<int16_t>(v)); break;
    case GgufType::u32: check(0, 0xFFFFFFFFLL); b.pod<uint32_t>(static_cast<uint32_t>(v)); break;
    case GgufType::i32: check(INT32_MIN, INT32_MAX); b.pod<int32_t>(static_cast<int32_t>(v)); break;
    case GgufType::u64: b.pod<uint64_t>(static_cast<uint64_t>(v)); break;   // bit-cast, as the reader stores it
    case GgufType::i64: b.pod<int64_t>(v); break;
    case GgufType::boolean: check(0, 1); b.pod<uint8_t>(static_cast<uint8_t>(v)); break;
    default: ARQ_ASSERT(false, "put_int on ", gguf_type_name(t));
  }
}

void put_value(HeaderBuf& b, const GgufValue& v, const std::string& key, int depth) {
  switch (v.type) {
    case GgufType::string: b.str(v.s); return;
    case GgufType::f32: b.pod<float>(static_cast<float>(v.f)); return;
    case GgufType::f64: b.pod<double>(v.f); return;
    case GgufType::array: {
      ARQ_CHECK(depth < 2, IoError, "GGUF key '", key, "': arrays nested more than one level deep");
      b.pod<uint32_t>(static_cast<uint32_t>(v.array_type));
      switch (v.array_type) {
        case GgufType::string:
          b.pod<uint64_t>(v.strings.size());
          for (const auto& s : v.strings) b.str(s);
          return;
        case GgufType::f32:
          b.pod<uint64_t>(v.floats.size());
          for (double x : v.floats) b.pod<float>(static_cast<float>(x));
          return;
        case GgufType::f64:
          b.pod<uint64_t>(v.floats.size());
          for (double x : v.floats) b.pod<double>(x);
          return;
        case GgufType::array:
          b.pod<uint64_t>(v.nested.size());
          for (const auto& n : v.nested) {
            ARQ_CHECK(n.type == GgufType::array, IoError, "GGUF key '", key, "': nested element is not an array");
            put_value(b, n, key, depth + 1);
          }
          return;
        default:
          ARQ_CHECK(is_int_type(v.array_type), IoError, "GGUF key '", key, "': bad array element type");
          b.pod<uint64_t>(v.ints.size());
          for (int64_t x : v.ints) put_int(b, v.array_type, x, key);
          return;
      }
    }
    default: {
      ARQ_CHECK(is_int_type(v.type), IoError, "GGUF key '", key, "': unknown value type ", static_cast<uint32_t>(v.type));
      const bool uns = v.type == GgufType::u8 || v.type == GgufType::u16 || v.type == GgufType::u32 ||
                       v.type == GgufType::u64 || v.type == GgufType::boolean;
      put_int(b, v.type, uns ? static_cast<int64_t>(v.u) : v.i, key);
    }
  }
}

uint64_t pad(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

}  // namespace

GgufStreamWriter::GgufStreamWriter(std::string path, const GgufMetadata& metadata, std::vector<GgufTensorDecl> tensors,
                                   uint32_t alignment)
    : path_(std::move(path)), tmp_path_(path_ + ".tmp"), tensors_(std::move(tensors)), alignment_(alignment) {
  ARQ_CHECK(alignment_ >= 8 && (alignment_ & (alignment_ - 1)) == 0, IoError, path_, ": GGUF alignment ", alignment_,
            " must be a power of two ≥ 8");
  // Keys: the caller's, with general.alignment forced to the value actually used.
  std::vector<std::pair<std::string, GgufValue>> kv;
  std::set<std::string> seen;
  for (const auto& [k, v] : metadata.items()) {
    if (k == "general.alignment") continue;
    ARQ_CHECK(!k.empty() && k.size() <= 65535, IoError, path_, ": GGUF key '", k, "' is empty or too long");
    ARQ_CHECK(seen.insert(k).second, IoError, path_, ": duplicate GGUF key '", k, "'");
    kv.emplace_back(k, v);
  }
  if (alignment_ != 32) kv.emplace_back("general.alignment", GgufValue::make_u32(alignment_));

  HeaderBuf b;
  b.pod<uint32_t>(0x46554747u);  // "GGUF"
  b.pod<uint32_t>(3);
  b.pod<uint64_t>(tensors_.size());
  b.pod<uint64_t>(kv.size());
  for (const auto& [k, v] : kv) {
    b.str(k);
    b.pod<uint32_t>(static_cast<uint32_t>(v.type));
    put_value(b, v, k, 0);
  }
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const GgufTensorDecl& t : tensors_) {
    ARQ_CHECK(!t.name.empty() && t.name.size() <= 63, IoError, path_, ": GGUF tensor name '", t.name,
              "' must be 1..63 bytes");
    ARQ_CHECK(names.insert(t.name).second, IoError, path_, ": duplicate GGUF tensor '", t.name, "'");
    const std::vector<int64_t> ne = gguf_ne(t.shape);
    ARQ_CHECK(ne.size() <= 4, ShapeError, path_, ": GGUF tensor '", t.name, "' ", shape_str(t.shape), " has more than 4 dims");
    for (int64_t d : ne) ARQ_CHECK(d >= 0, ShapeError, path_, ": GGUF tensor '", t.name, "' has a negative dim");
    const GgmlTypeTraits& tr = ggml_traits(t.type);
    ARQ_CHECK(ne[0] % tr.block_size == 0, ShapeError, path_, ": GGUF tensor '", t.name, "' ", shape_str(t.shape), " of type ",
              tr.name, ": the last dim is not a multiple of the block size ", tr.block_size);
    b.str(t.name);
    b.pod<uint32_t>(static_cast<uint32_t>(ne.size()));
    for (int64_t d : ne) b.pod<uint64_t>(static_cast<uint64_t>(d));
    b.pod<uint32_t>(static_cast<uint32_t>(t.type));
    b.pod<uint64_t>(offset);
    offset += pad(t.nbytes(), alignment_);
  }

  std::error_code ec;
  const auto parent = std::filesystem::path(path_).parent_path();
  ARQ_CHECK(parent.empty() || std::filesystem::is_directory(parent, ec), IoError, path_,
            ": cannot write GGUF, the folder does not exist");
  file_ = std::fopen(tmp_path_.c_str(), "wb");
  ARQ_CHECK(file_, IoError, tmp_path_, ": cannot open for writing: ", std::strerror(errno));
  try {
    put(b.bytes.data(), b.bytes.size());
    pad_to_alignment();
  } catch (...) {
    abort_file();
    throw;
  }
}

GgufStreamWriter::~GgufStreamWriter() {
  if (!finished_) abort_file();
}

void GgufStreamWriter::abort_file() noexcept {
  if (file_) std::fclose(file_);
  file_ = nullptr;
  std::error_code ec;
  std::filesystem::remove(tmp_path_, ec);
}

void GgufStreamWriter::put(const void* p, size_t n) {
  ARQ_CHECK(file_, IoError, path_, ": GGUF writer is closed");
  if (n && std::fwrite(p, 1, n, file_) != n) {
    const int err = errno;
    abort_file();
    throw IoError(cat(tmp_path_, ": write failed after ", pos_, " bytes: ", std::strerror(err)));
  }
  pos_ += n;
}

void GgufStreamWriter::pad_to_alignment() {
  static const uint8_t zeros[64] = {};
  uint64_t n = pad(pos_, alignment_) - pos_;
  while (n > 0) {
    const size_t k = static_cast<size_t>(std::min<uint64_t>(n, sizeof(zeros)));
    put(zeros, k);
    n -= k;
  }
}

void GgufStreamWriter::write_tensor(const std::string& name, const void* data, size_t nbytes) {
  ARQ_CHECK(next_ < tensors_.size(), IoError, path_, ": tensor '", name, "' written but all ", tensors_.size(),
            " declared tensors are already written");
  const GgufTensorDecl& t = tensors_[next_];
  ARQ_CHECK(t.name == name, IoError, path_, ": tensor '", name, "' written out of order; expected '", t.name, "'");
  ARQ_CHECK(t.nbytes() == nbytes, IoError, path_, ": tensor '", name, "' ", shape_str(t.shape), " of type ",
            ggml_type_name(t.type), " needs ", t.nbytes(), " bytes, got ", nbytes);
  put(data, nbytes);
  pad_to_alignment();
  ++next_;
}

void GgufStreamWriter::write_tensor(const std::string& name, const Tensor& values) {
  ARQ_CHECK(next_ < tensors_.size() && tensors_[next_].name == name, IoError, path_, ": tensor '", name,
            "' written out of order");
  const GgufTensorDecl& t = tensors_[next_];
  ARQ_CHECK(values.shape() == t.shape, ShapeError, path_, ": tensor '", name, "' declared ", shape_str(t.shape), ", got ",
            values.str());
  Tensor v = values;
  if (t.shape.empty()) v = values.reshape({1});
  const std::vector<uint8_t> bytes = ggml_quantize(v, t.type);
  write_tensor(name, bytes.data(), bytes.size());
}

void GgufStreamWriter::finish() {
  ARQ_CHECK(!finished_, IoError, path_, ": GGUF writer finished twice");
  if (next_ != tensors_.size()) {
    const std::string missing = tensors_[next_].name;
    abort_file();
    throw IoError(cat(path_, ": only ", next_, " of ", tensors_.size(), " declared tensors were written (next: '", missing, "')"));
  }
  const bool flushed = std::fflush(file_) == 0;
  const int err = errno;
  const bool closed = std::fclose(file_) == 0;
  file_ = nullptr;
  if (!flushed || !closed) {
    abort_file();
    throw IoError(cat(tmp_path_, ": flushing the GGUF file failed: ", std::strerror(err)));
  }
  std::error_code ec;
  std::filesystem::rename(tmp_path_, path_, ec);
  if (ec) {
    abort_file();
    throw IoError(cat(path_, ": cannot rename ", tmp_path_, ": ", ec.message()));
  }
  finished_ = true;
}

void write_gguf(const std::string& path, const GgufMetadata& metadata, const std::vector<GgufWriteTensor>& tensors,
                uint32_t alignment) {
  std::vector<GgufTensorDecl> decls;
  decls.reserve(tensors.size());
  for (const auto& t : tensors) decls.push_back(t.decl);
  GgufStreamWriter w(path, metadata, std::move(decls), alignment);
  for (const auto& t : tensors) w.write_tensor(t.decl.name, t.bytes.data(), t.bytes.size());
  w.finish();
}

}  // namespace arq::io
