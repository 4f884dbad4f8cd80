// safetensors: read (memory-mapped, validated, zero-copy views) and write (sharded, HF names).
//
// Layout (spec/formats.md §1): u64 LE header length N, N bytes of JSON
// {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then the
// data buffer the offsets point into. Nothing in a file is trusted until
// `parse_safetensors_header` has checked it: N within the file, JSON well formed, dtypes known,
// offsets in range and tiling the buffer exactly, byte sizes equal to numel × element size.
//
//   auto f = SafetensorsFile::open("model.safetensors");
//   Tensor w = f.view("model.embed_tokens.weight");   // zero-copy, read-only CPU view
//   save_safetensors_sharded("out/", {{"w", w}});      // model.safetensors (+ index when sharded)
//
// Views into a mapping are read-only (the file is mapped PROT_READ): clone() or
// `WeightStore::load` before modifying a tensor in place.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace arq::io {

class MappedFile;

// safetensors element types, in the reference library's enum order (the writer sorts by it).
// Sub-byte types (F4, F6_*) are not supported and are rejected with a clear error.
enum class StDType : uint8_t {
  BOOL, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ,
  I16, U16, F16, BF16, I32, U32, F32, C64, F64, I64, U64
};

const char* st_dtype_name(StDType t);                          // "F32", "BF16", ...
std::optional<StDType> st_dtype_from_name(std::string_view s);  // nullopt when unknown
size_t st_dtype_size(StDType t);                               // bytes per element
std::optional<DType> st_to_engine(StDType t);                  // nullopt: no engine dtype
StDType st_from_engine(DType t);

// FP8 decoders (exact: every FP8 value is an f32). E4M3 is the "FN" variant (no inf, max 448,
// S.1111.111 = NaN); E5M2 is IEEE-like; E8M0 is a pure exponent 2^(e-127), 0xFF = NaN.
float f8_e4m3_to_f32(uint8_t b);
float f8_e5m2_to_f32(uint8_t b);
float f8_e8m0_to_f32(uint8_t b);
float f8_e4m3fnuz_to_f32(uint8_t b);   // FNUZ: bias +1, no -0 (0x80 = NaN), no inf
float f8_e5m2fnuz_to_f32(uint8_t b);

struct StTensorInfo {
  std::string name;
  StDType dtype = StDType::F32;
  Shape shape;              // row-major, outermost first; [] is a scalar
  uint64_t begin = 0;       // byte offsets relative to the data buffer
  uint64_t end = 0;
  size_t nbytes() const { return static_cast<size_t>(end - begin); }
};

struct StHeader {
  uint64_t header_len = 0;   // N, as stored
  uint64_t data_start = 0;   // 8 + N: file offset of the data buffer
  std::vector<StTensorInfo> tensors;                            // in header order
  std::vector<std::pair<std::string, std::string>> metadata;   // "__metadata__", in header order
};

// Validate and parse the header of a whole safetensors file held in memory (`size` = file size).
// Throws IoError naming `origin` and the offending tensor for every violation of §1.3.
// Pure function of its input: the fuzz target calls it directly.
StHeader parse_safetensors_header(const uint8_t* data, size_t size, const std::string& origin);

// Bytes of one tensor as stored, for dtypes the engine lacks (or for a raw copy).
struct RawTensor {
  std::string name;
  StDType dtype = StDType::F32;
  Shape shape;
  const uint8_t* data = nullptr;   // row-major, possibly unaligned; valid while keep_alive lives
  size_t nbytes = 0;
  std::shared_ptr<const void> keep_alive;
};

// Convert raw safetensors bytes into an engine tensor on the CPU (fresh storage):
// engine dtypes as-is, BOOL → u8, I16/U16 → i32, U32 → i64, U64 → i64 (IoError above 2^63−1),
// F8_* → f32. C64 throws DTypeError.
Tensor decode_raw(const RawTensor& raw);

class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::string& path);   // throws IoError

  const std::string& path() const;
  const StHeader& header() const { return header_; }
  const std::vector<StTensorInfo>& tensors() const { return header_.tensors; }
  const std::vector<std::pair<std::string, std::string>>& metadata() const { return header_.metadata; }
  const StTensorInfo* find(const std::string& name) const;   // null when absent
  const StTensorInfo& info(const std::string& name) const;   // throws IoError when absent

  RawTensor raw(const std::string& name) const;
  // Zero-copy, read-only CPU view for engine dtypes (a copy only when the bytes are not
  // aligned to the element size). Other dtypes: DTypeError naming tensor, dtype and file.
  Tensor view(const std::string& name) const;
  // view() when possible, else decode_raw(): always an engine tensor.
  Tensor tensor(const std::string& name) const;

 private:
  std::shared_ptr<MappedFile> file_;
  StHeader header_;
  std::vector<std::pair<std::string, size_t>> index_;   // sorted by name -> position in tensors
};

// ---- writing --------------------------------------------------------------------------------

// One tensor to write: contiguous row-major bytes plus the safetensors dtype and shape.
struct StWriteTensor {
  std::string name;
  StDType dtype = StDType::F32;
  Shape shape;
  const void* data = nullptr;
  size_t nbytes = 0;
  Tensor keep;   // holds the bytes when made from a Tensor
  // Lazy tensor (data null): called once when its bytes are written and dropped right after,
  // so a writer holds one tensor at a time. Must return `shape` in `dtype` (IoError otherwise).
  std::function<Tensor()> produce;

  // From an engine tensor (any device/strides: copied to a contiguous CPU tensor when needed).
  static StWriteTensor from_tensor(std::string name, const Tensor& t);
  // Lazy: dtype and shape now (the header needs them), bytes from `produce` at write time.
  static StWriteTensor lazy(std::string name, StDType dtype, Shape shape, std::function<Tensor()> produce);
  // From bytes the caller keeps alive until the write returns (e.g. FP8 or I16 payloads).
  static StWriteTensor from_bytes(std::string name, StDType dtype, Shape shape, const void* data, size_t nbytes);
};

using StMetadata = std::vector<std::pair<std::string, std::string>>;

// Header JSON exactly as the reference writer lays it out (§1.4): `tensors` must already be in
// data order; offsets are assigned consecutively; padded with spaces to a multiple of 8.
std::string safetensors_header_json(const std::vector<StWriteTensor>& tensors, const StMetadata& metadata);

// Order used by the reference writer: dtype descending (enum order), then name ascending.
void sort_for_writing(std::vector<StWriteTensor>& tensors);

// Write one file (under "<path>.tmp", renamed when complete). Tensors are reordered as the
// reference writer does. Throws IoError (duplicate names, sizes that do not match shape × dtype,
// write failures).
void write_safetensors(const std::string& path, std::vector<StWriteTensor> tensors,
                       const StMetadata& metadata = {{"format", "pt"}});

struct ShardOptions {
  uint64_t max_shard_bytes = 5'000'000'000ULL;  // HF "5GB" (decimal)
  StMetadata metadata = {{"format", "pt"}};
  std::string prefix = "model";   // model.safetensors / model-00001-of-0000N.safetensors
};

struct ShardResult {
  std::vector<std::string> files;   // file names written (relative to the folder), in order
  uint64_t total_size = 0;          // sum of tensor byte sizes
  bool indexed = false;             // true when "<prefix>.safetensors.index.json" was written
};

// Write tensors into `folder` (created if needed), split as huggingface_hub does: in the given
// order, a new shard starts when adding a tensor would exceed max_shard_bytes; a tensor larger
// than the limit gets a shard of its own. One shard → "model.safetensors" without an index;
// several → "model-0000i-of-0000N.safetensors" + "model.safetensors.index.json"
// ({"metadata": {"total_size"}, "weight_map"}; 2-space indent, sorted keys, trailing newline).
ShardResult save_safetensors_sharded(const std::string& folder, const std::vector<StWriteTensor>& tensors,
                                     const ShardOptions& options = {});
ShardResult save_safetensors_sharded(const std::string& folder,
                                     const std::vector<std::pair<std::string, Tensor>>& tensors,
                                     const ShardOptions& options = {});

}  // namespace arq::io
