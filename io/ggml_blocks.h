// ggml tensor block layouts (spec/formats.md §4.3–4.5): one packed struct per quantized type,
// a traits table, and the scalar reference encoders/decoders.
//
// The encoders reproduce llama.cpp's `quantize_row_*_ref` (what `llama-quantize` runs without an
// importance matrix) byte for byte, and the decoders reproduce ggml's `dequantize_row_*` bit for
// bit; tests/export checks both against ../shared/golden/ggml. Bit-exactness depends on doing the
// float operations in ggml's order, one rounding at a time (no FMA contraction): the .cpp files
// switch contraction off.
//
//   std::vector<uint8_t> q(ggml_row_bytes(GgmlType::q4_K, 512));
//   ggml_quantize_row(GgmlType::q4_K, x, q.data(), 512);      // x: 512 floats
//   ggml_dequantize_row(GgmlType::q4_K, q.data(), y, 512);    // y: 512 floats
//
// Every layout comment gives bits per weight (bpw) = 8 · bytes / elements.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/tensor.h"

namespace arq::io {

// ggml type ids as written in GGUF tensor infos (§4.3). Only the types ar-quant writes.
enum class GgmlType : uint32_t {
  f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8,
  q2_K = 10, q3_K = 11, q4_K = 12, q5_K = 13, q6_K = 14, q8_K = 15, bf16 = 30,
};

inline constexpr int64_t kQK = 32;    // elements per legacy block (q4_0 … q8_0)
inline constexpr int64_t kQK_K = 256; // elements per k-quant super-block

#pragma pack(push, 1)
// All fp16 fields are raw IEEE half bit patterns ("ggml_half").

// 4.5 bpw: y = d·(q − 8). qs[j] low nibble → element j, high nibble → element j+16.
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[kQK / 2];
};
// 5.0 bpw: y = d·q + m.
struct BlockQ4_1 {
  uint16_t d, m;
  uint8_t qs[kQK / 2];
};
// 5.5 bpw: y = d·(q − 16); bit 4 of element j is bit j of qh (little-endian u32).
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
// 6.0 bpw: y = d·q + m.
struct BlockQ5_1 {
  uint16_t d, m;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
// 8.5 bpw: y = d·q.
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQK];
};
// 2.625 bpw: 16 sub-blocks of 16; scales[s] = 4-bit scale | 4-bit min << 4;
// y = d·sc·q − dmin·mn, q ∈ 0..3.
struct BlockQ2_K {
  uint8_t scales[kQK_K / 16];
  uint8_t qs[kQK_K / 4];
  uint16_t d, dmin;
};
// 3.4375 bpw: 16 sub-blocks of 16, 6-bit signed scales (offset 32) packed in 12 bytes;
// y = d·sc·q, q ∈ −4..3 (low 2 bits in qs, high bit in hmask, set = no −4).
struct BlockQ3_K {
  uint8_t hmask[kQK_K / 8];
  uint8_t qs[kQK_K / 4];
  uint8_t scales[12];
  uint16_t d;
};
// 4.5 bpw: 8 sub-blocks of 32, 6-bit scale/min pairs packed in 12 bytes; y = d·sc·q − dmin·mn.
struct BlockQ4_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qs[kQK_K / 2];
};
// 5.5 bpw: as q4_K plus a fifth bit per element in qh.
struct BlockQ5_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qh[kQK_K / 8];
  uint8_t qs[kQK_K / 2];
};
// 6.5625 bpw: 16 sub-blocks of 16, int8 scales; y = d·sc·(q − 32), q ∈ 0..63.
struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];
  uint8_t qh[kQK_K / 4];
  int8_t scales[kQK_K / 16];
  uint16_t d;
};
// 9.125 bpw, activation-only intermediate (never written to files): d is f32.
struct BlockQ8_K {
  float d;
  int8_t qs[kQK_K];
  int16_t bsums[kQK_K / 16];
};
#pragma pack(pop)

static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ2_K) == 84);
static_assert(sizeof(BlockQ3_K) == 110);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);
static_assert(sizeof(BlockQ8_K) == 292);

// Encoder: n floats (n % block_size == 0) → n / block_size blocks. Decoder: the inverse.
using GgmlEncodeFn = void (*)(const float* x, void* blocks, int64_t n);
using GgmlDecodeFn = void (*)(const void* blocks, float* y, int64_t n);

struct GgmlTypeTraits {
  GgmlType type;
  const char* name;        // ggml's name: "q4_K", "f16", ...
  int64_t block_size;      // elements per block
  size_t type_size;        // bytes per block
  bool quantized;
  GgmlEncodeFn encode;     // the reference encoder (llama.cpp `quantize_row_*_ref`)
  GgmlDecodeFn decode;     // ggml's `dequantize_row_*`
};

// Traits of a type; UnsupportedError naming the id for a type this table lacks.
const GgmlTypeTraits& ggml_traits(GgmlType t);
const GgmlTypeTraits* ggml_traits_or_null(uint32_t id);
// All rows of the table (for tests and name lookup).
const std::vector<GgmlTypeTraits>& ggml_all_traits();
// "q4_K" / "Q4_K" / "q4_k" → type; UsageError listing the known names when unknown.
GgmlType ggml_type_from_name(std::string_view name);
const char* ggml_type_name(GgmlType t);

// Bytes of a row of n elements; ShapeError when n is not a multiple of the block size.
size_t ggml_row_bytes(GgmlType t, int64_t n);

// One row (or many rows laid end to end: the encoders work block by block).
void ggml_quantize_row(GgmlType t, const float* x, void* dst, int64_t n);
void ggml_dequantize_row(GgmlType t, const void* src, float* y, int64_t n);

// A 2-D (or 1-D) floating tensor [rows, cols] → bytes of `t` (rows · row_bytes). The tensor is
// first converted to f32 (as llama.cpp's converter hands f32 rows to the quantizers).
std::vector<uint8_t> ggml_quantize(const Tensor& w, GgmlType t);
// Bytes of `t` holding shape.back()-long rows → f32 tensor of `shape`. IoError when the byte
// count does not match.
Tensor ggml_dequantize(const uint8_t* data, size_t nbytes, GgmlType t, const Shape& shape);

// The nearest-integer helper of ggml-quants.c: round half to even via the 1.5·2²³ trick, valid
// for |x| ≤ 2²² (ggml asserts that bound; the quantizers never exceed it).
inline int ggml_nearest_int(float x) {
  float v = x + 12582912.f;
  uint32_t i;
  static_assert(sizeof(v) == sizeof(i));
  __builtin_memcpy(&i, &v, sizeof(i));
  return static_cast<int>(i & 0x007fffffu) - 0x00400000;
}

}  // namespace arq::io
