// GGUF v3 writer (spec/formats.md §4.1–4.2): header, typed metadata (arrays included), tensor
// infos, alignment padding, and tensor data in ggml layouts, streamed tensor by tensor.
//
// GGUF puts every tensor's offset in the header, before any data; the offsets depend only on
// the byte sizes, which follow from (shape, ggml type). So a writer declares all tensors first,
// then streams their bytes in the same order — a whole model never has to sit in memory.
// The file is written as "<path>.tmp" and renamed when complete; a writer destroyed before
// finish() (an exception anywhere) removes the temporary file, so no half-written GGUF remains.
//
//   GgufMetadata md;
//   md.set("general.architecture", GgufValue::make_string("llama"));
//   GgufStreamWriter w("model.gguf", md, {{"token_embd.weight", {vocab, hidden}, GgmlType::q8_0}});
//   w.write_tensor("token_embd.weight", bytes.data(), bytes.size());
//   w.finish();
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "engine/tensor.h"
#include "io/ggml_blocks.h"
#include "io/gguf.h"

namespace arq::io {

// Value builders for the types GgufValue has no make_* for.
GgufValue gguf_u8(uint8_t v);
GgufValue gguf_i8(int8_t v);
GgufValue gguf_u16(uint16_t v);
GgufValue gguf_i16(int16_t v);
GgufValue gguf_i64(int64_t v);
GgufValue gguf_f64(double v);
GgufValue gguf_string_array(std::vector<std::string> v);
GgufValue gguf_f32_array(const std::vector<float>& v);
GgufValue gguf_i32_array(const std::vector<int32_t>& v);
GgufValue gguf_u32_array(const std::vector<uint32_t>& v);
// Any integer/bool element type: values are stored in `ints` as the reader does.
GgufValue gguf_int_array(GgufType element_type, std::vector<int64_t> v);

struct GgufTensorDecl {
  std::string name;      // ≤ 63 bytes
  Shape shape;           // row-major, outermost first: a Linear [out, in] is written ne = [in, out]
  GgmlType type = GgmlType::f32;

  size_t nbytes() const;  // rows · ggml_row_bytes(type, shape.back())
};

// ne as stored: reversed shape with trailing 1s dropped (ggml_n_dims), at least one dim.
std::vector<int64_t> gguf_ne(const Shape& shape);

class GgufStreamWriter {
 public:
  // Validates the declarations (names unique and ≤ 63 bytes, ≤ 4 dims, ne[0] a multiple of the
  // block size), opens "<path>.tmp" and writes the header. `alignment` other than 32 is written as
  // general.alignment (u32). Throws IoError / ShapeError naming the tensor or file.
  GgufStreamWriter(std::string path, const GgufMetadata& metadata, std::vector<GgufTensorDecl> tensors,
                   uint32_t alignment = 32);
  ~GgufStreamWriter();
  GgufStreamWriter(const GgufStreamWriter&) = delete;
  GgufStreamWriter& operator=(const GgufStreamWriter&) = delete;

  // The next declared tensor's bytes (IoError when out of order or the size is wrong).
  void write_tensor(const std::string& name, const void* data, size_t nbytes);
  // Encode an f32/f16/bf16 tensor of the declared shape into the declared ggml type and write it.
  void write_tensor(const std::string& name, const Tensor& values);
  // Checks every tensor was written, flushes, closes and renames "<path>.tmp" → path.
  void finish();

  const std::vector<GgufTensorDecl>& tensors() const { return tensors_; }
  size_t next_index() const { return next_; }

 private:
  void put(const void* p, size_t n);
  void pad_to_alignment();
  void abort_file() noexcept;

  std::string path_, tmp_path_;
  std::vector<GgufTensorDecl> tensors_;
  uint32_t alignment_ = 32;
  std::FILE* file_ = nullptr;
  uint64_t pos_ = 0;
  size_t next_ = 0;
  bool finished_ = false;
};

// One-shot: declarations plus their bytes, in order.
struct GgufWriteTensor {
  GgufTensorDecl decl;
  std::vector<uint8_t> bytes;
};
void write_gguf(const std::string& path, const GgufMetadata& metadata, const std::vector<GgufWriteTensor>& tensors,
                uint32_t alignment = 32);

}  // namespace arq::io
