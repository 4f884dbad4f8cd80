// GGUF file: the memory mapping and tensor views.
#include <cstring>

#include "engine/error.h"
#include "io/gguf.h"
#include "io/mmap_file.h"

namespace arq::io {

// ---- file -----------------------------------------------------------------------------------

GgufFile GgufFile::open(const std::string& path) {
  GgufFile g;
  g.file_ = MappedFile::open(path);
  g.header_ = parse_gguf(g.file_->data(), g.file_->size(), path);
  return g;
}

const std::string& GgufFile::path() const { return file_->path(); }

const GgufTensorInfo* GgufFile::find(const std::string& name) const {
  for (const auto& t : header_.tensors)
    if (t.name == name) return &t;
  return nullptr;
}

const GgufTensorInfo& GgufFile::info(const std::string& name) const {
  const GgufTensorInfo* t = find(name);
  ARQ_CHECK(t, IoError, "tensor '", name, "' not found in ", path());
  return *t;
}

GgufRawTensor GgufFile::raw(const std::string& name) const {
  const GgufTensorInfo& t = info(name);
  GgufRawTensor r;
  r.info = &t;
  r.data = file_->data() + header_.data_offset + t.offset;
  r.nbytes = static_cast<size_t>(t.nbytes);
  r.keep_alive = file_;
  return r;
}

Tensor GgufFile::view(const std::string& name) const {
  const GgufTensorInfo& t = info(name);
  std::optional<DType> dt;
  switch (t.ggml_type) {
    case 0: dt = DType::f32; break;
    case 1: dt = DType::f16; break;
    case 30: dt = DType::bf16; break;
    case 24: dt = DType::i8; break;
    case 26: dt = DType::i32; break;
    case 27: dt = DType::i64; break;
    case 28: dt = DType::f64; break;
    default: break;
  }
  ARQ_CHECK(dt.has_value(), DTypeError, "GGUF tensor '", name, "' in ", path(), " has ggml type ",
            ggml_type_info(t.ggml_type)->name, shape_str(t.shape), ", which is not a plain dtype; use raw()");
  const uint8_t* p = file_->data() + header_.data_offset + t.offset;
  if (t.nbytes == 0 || reinterpret_cast<uintptr_t>(p) % dtype_size(*dt) != 0) {
    Tensor out = Tensor::empty(t.shape, *dt);
    if (t.nbytes) std::memcpy(out.data_ptr(), p, t.nbytes);
    return out;
  }
  auto storage = Storage::wrap(const_cast<uint8_t*>(p), t.nbytes, Device::cpu(), file_);
  return Tensor(storage, t.shape, contiguous_strides(t.shape), 0, *dt);
}

}  // namespace arq::io
