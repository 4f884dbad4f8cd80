// safetensors reader: decoding to engine tensors and the memory-mapped file.
#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "engine/error.h"
#include "io/mmap_file.h"

namespace arq::io {

namespace {
// A fresh CPU tensor of C type T with element i = fn(i).
template <class T, class Fn>
Tensor fill(const Shape& shape, Fn fn) {
  Tensor t = Tensor::empty(shape, dtype_of<T>());
  T* out = t.data<T>();
  const int64_t n = shape_numel(shape);
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<T>(fn(i));
  return t;
}

template <class T>
T load_le(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);   // little-endian host assumed (x86-64, aarch64)
  return v;
}
}  // namespace

Tensor decode_raw(const RawTensor& raw) {
  const int64_t n = shape_numel(raw.shape);
  ARQ_CHECK(raw.nbytes == static_cast<size_t>(n) * st_dtype_size(raw.dtype), IoError,
            "tensor '", raw.name, "': ", raw.nbytes, " bytes do not hold ", shape_str(raw.shape), " of ",
            st_dtype_name(raw.dtype));
  const uint8_t* p = raw.data;
  if (const auto dt = st_to_engine(raw.dtype)) {
    Tensor t = Tensor::empty(raw.shape, *dt);
    if (raw.nbytes) std::memcpy(t.data_ptr(), p, raw.nbytes);
    return t;
  }
  switch (raw.dtype) {
    case StDType::BOOL: return fill<uint8_t>(raw.shape, [&](int64_t i) { return static_cast<uint8_t>(p[i] != 0); });
    case StDType::I16: return fill<int32_t>(raw.shape, [&](int64_t i) { return static_cast<int32_t>(load_le<int16_t>(p + 2 * i)); });
    case StDType::U16: return fill<int32_t>(raw.shape, [&](int64_t i) { return static_cast<int32_t>(load_le<uint16_t>(p + 2 * i)); });
    case StDType::U32: return fill<int64_t>(raw.shape, [&](int64_t i) { return static_cast<int64_t>(load_le<uint32_t>(p + 4 * i)); });
    case StDType::U64:
      return fill<int64_t>(raw.shape, [&](int64_t i) {
        const uint64_t v = load_le<uint64_t>(p + 8 * i);
        ARQ_CHECK(v <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), IoError, "tensor '", raw.name,
                  "': U64 value ", v, " at element ", i, " does not fit the i64 dtype");
        return static_cast<int64_t>(v);
      });
    case StDType::F8_E4M3: return fill<float>(raw.shape, [&](int64_t i) { return f8_e4m3_to_f32(p[i]); });
    case StDType::F8_E5M2: return fill<float>(raw.shape, [&](int64_t i) { return f8_e5m2_to_f32(p[i]); });
    case StDType::F8_E8M0: return fill<float>(raw.shape, [&](int64_t i) { return f8_e8m0_to_f32(p[i]); });
    case StDType::F8_E4M3FNUZ: return fill<float>(raw.shape, [&](int64_t i) { return f8_e4m3fnuz_to_f32(p[i]); });
    case StDType::F8_E5M2FNUZ: return fill<float>(raw.shape, [&](int64_t i) { return f8_e5m2fnuz_to_f32(p[i]); });
    default: break;
  }
  throw DTypeError(cat("tensor '", raw.name, "': safetensors dtype ", st_dtype_name(raw.dtype),
                       " has no engine dtype to convert to"));
}

// ---- mapped file ----------------------------------------------------------------------------

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.file_ = MappedFile::open(path);
  f.header_ = parse_safetensors_header(f.file_->data(), f.file_->size(), path);
  for (size_t i = 0; i < f.header_.tensors.size(); ++i) f.index_.emplace_back(f.header_.tensors[i].name, i);
  std::sort(f.index_.begin(), f.index_.end());
  return f;
}

const std::string& SafetensorsFile::path() const { return file_->path(); }

const StTensorInfo* SafetensorsFile::find(const std::string& name) const {
  const auto it = std::lower_bound(index_.begin(), index_.end(), name,
                                   [](const auto& e, const std::string& n) { return e.first < n; });
  if (it == index_.end() || it->first != name) return nullptr;
  return &header_.tensors[it->second];
}

const StTensorInfo& SafetensorsFile::info(const std::string& name) const {
  const StTensorInfo* t = find(name);
  ARQ_CHECK(t, IoError, "tensor '", name, "' not found in ", path());
  return *t;
}

RawTensor SafetensorsFile::raw(const std::string& name) const {
  const StTensorInfo& t = info(name);
  RawTensor r;
  r.name = name;
  r.dtype = t.dtype;
  r.shape = t.shape;
  r.data = file_->data() + header_.data_start + t.begin;
  r.nbytes = t.nbytes();
  r.keep_alive = file_;
  return r;
}

Tensor SafetensorsFile::view(const std::string& name) const {
  const StTensorInfo& t = info(name);
  const auto dt = st_to_engine(t.dtype);
  ARQ_CHECK(dt.has_value(), DTypeError, "tensor '", name, "' in ", path(), " is ", st_dtype_name(t.dtype),
            shape_str(t.shape), ", which has no engine dtype; convert it with tensor()/decode_raw()");
  const uint8_t* p = file_->data() + header_.data_start + t.begin;
  if (t.nbytes() == 0 || reinterpret_cast<uintptr_t>(p) % dtype_size(*dt) != 0) return decode_raw(raw(name));
  auto storage = Storage::wrap(const_cast<uint8_t*>(p), t.nbytes(), Device::cpu(), file_);
  return Tensor(storage, t.shape, contiguous_strides(t.shape), 0, *dt);
}

Tensor SafetensorsFile::tensor(const std::string& name) const {
  const StTensorInfo& t = info(name);
  if (st_to_engine(t.dtype)) return view(name);
  return decode_raw(raw(name));
}

}  // namespace arq::io
