// Int32 packing of HF-style quantized checkpoints (spec autoround.md §4a–4c, formats.md §6):
// GPTQ (auto_gptq, auto_round:auto_gptq, auto_round, auto_round:gptqmodel) and AWQ (auto_awq,
// auto_round:auto_awq) `qweight` / `qzeros` / `scales` / `g_idx`, and their inverses.
//
// Orientation: a Linear has W [N = out, K = in]; codes I[n, k] are unsigned levels in
// [0, 2^b − 1] and the weight is w = scale[g, n] · (I[n, k] − Z[g, n]) with g = k / G.
//
//   GPTQ  qweight int32 [K·b/32, N]   I packed along the input dim (k), LSB first
//         qzeros  int32 [n_g, N·b/32] Z (or Z − 1, "v1") packed along the output dim (n)
//         scales  fp16  [n_g, N]      g_idx int32 [K] = k / G
//   AWQ   qweight int32 [K, N/8]      4-bit, nibble slot [0,4,1,5,2,6,3,7][j] holds column 8c + j
//         qzeros  int32 [n_g, N/8]    raw Z, same interleave;  scales fp16 [n_g, N]
//
// Bits are a continuous LSB-first stream along the packed dimension, so 2/4/8-bit values never
// straddle a word and 3-bit packs 32 values into 3 words (value 10 and 21 straddle).
//
//   PackedLinear p = pack_linear(parts, HfPacking::gptq_v1, /*with_g_idx=*/true);
//   Tensor w = dequantize_packed(p, HfPacking::gptq_v1, 4, 128, in_features);   // f32 [N, K]
#pragma once

#include <cstdint>
#include <string>

#include "engine/tensor.h"

namespace arq::io {

// Unsigned b-bit values (i32 or u8 [R, C]) packed as an LSB-first bit stream along dim 0
// → int32 [R·b/32, C]. ShapeError when R·b is not a multiple of 32; values outside [0, 2^b − 1]
// are an invariant violation (ARQ_ASSERT).
Tensor pack_rows(const Tensor& values, int bits);
Tensor unpack_rows(const Tensor& packed, int bits, int64_t rows);   // → i32 [rows, C]
// The same along dim 1: [R, C] → int32 [R, C·b/32].
Tensor pack_cols(const Tensor& values, int bits);
Tensor unpack_cols(const Tensor& packed, int bits, int64_t cols);   // → i32 [R, cols]
// AWQ's interleaved 4-bit packing along dim 1: [R, C] → int32 [R, C/8] (C % 8 == 0).
Tensor pack_cols_awq(const Tensor& values);
Tensor unpack_cols_awq(const Tensor& packed, int64_t cols);         // → i32 [R, cols]

enum class HfPacking : uint8_t {
  gptq_v1,   // GPTQ layout, qzeros store Z − 1 (auto_gptq, auto_round:auto_gptq)
  gptq_raw,  // GPTQ layout, qzeros store Z (auto_round asym, auto_round:gptqmodel, gptq_v2)
  awq,       // AWQ GEMM layout, raw Z, 4-bit only (auto_awq, auto_round:auto_awq)
};
const char* hf_packing_name(HfPacking p);

// Integer parts of one quantized Linear in checkpoint orientation.
struct IntLinearParts {
  Tensor codes;            // [N, K] u8 (or i32): unsigned levels
  Tensor zeros;            // [N, n_g] i32: zero point per group, in [0, 2^b − 1]
  Tensor scales;           // [N, n_g] floating (written as fp16)
  int bits = 4;
  int64_t group_size = 128;  // G > 0 (a per-channel layer has G = K)
};

struct PackedLinear {
  Tensor qweight;   // i32, see the table above
  Tensor qzeros;    // i32
  Tensor scales;    // f16 [n_g, N]
  Tensor g_idx;     // i32 [K]; undefined when the format has none
};

// Which (bits, K, N, G) a packing can hold; "" when fine, else the reason (for UsageError).
std::string packing_unsupported_reason(HfPacking p, int bits, int64_t in, int64_t out, int64_t group_size);

// ShapeError/UsageError naming the packing and every dimension when unsupported.
// Zero points of 0 cannot be stored by gptq_v1 (Z − 1 = −1): they are written as the field's
// all-ones value (masked, no borrow into the neighbours), which GPTQ kernels read back as 2^b —
// `*n_unrepresentable` (when given) counts them so the caller can warn as AutoRound does.
PackedLinear pack_linear(const IntLinearParts& parts, HfPacking p, bool with_g_idx, int64_t* n_unrepresentable = nullptr);

// The inverse: codes [N, K] u8, zeros [N, n_g] i32 (true zero points: v1 adds the 1 back),
// scales [N, n_g] f16.
IntLinearParts unpack_linear(const PackedLinear& packed, HfPacking p, int bits, int64_t group_size, int64_t in_features);

// w[n, k] = f32(scale[g, n]) · f32(I[n, k] − Z[g, n]) (one f32 product, as the quantizer's own
// dequantize), cast to `dtype`. Uses g_idx when defined, else k / G.
Tensor dequantize_packed(const PackedLinear& packed, HfPacking p, int bits, int64_t group_size, int64_t in_features,
                         DType dtype = DType::f32);

}  // namespace arq::io
