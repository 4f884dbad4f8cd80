// ggml blocks from given quantization parameters (spec/autoround.md §4d "Packing with stored
// parameters"): where io/ggml_blocks.h's encoders search the scales themselves (llama.cpp's
// reference quantizers), these take the scales a quantizer already chose — SignRound's tuned
// d, dmin, sub-block scales and levels — and only lay the bits out, so the block decodes
// (ggml_dequantize_row) to d·sc·q − dmin·m computed from exactly those values.
//
//   GgmlBlockParams p{.levels = L, .sub_scales = sc, .sub_mins = mn, .d = d, .m = dmin};
//   ggml_pack_row(GgmlType::q4_K, p, dst, 512);    // 512 elements = 2 super-blocks
//
// Levels are unsigned, in each type's stored range:
//   q4_0 0..15 (q + 8)   q5_0 0..31 (q + 16)   q8_0 0..255 (q + 128)   q4_1 0..15   q5_1 0..31
//   q2_K 0..3   q3_K 0..7 (q + 4)   q4_K 0..15   q5_K 0..31   q6_K 0..63 (q + 32)
// Sub-block scales (k-quants, one per 16 or 32 elements): q2_K 0..15 (mins 0..15), q3_K −32..31,
// q4_K / q5_K 0..63 (mins 0..63), q6_K −128..127. d and m must be fp16-representable (they are
// stored as fp16; ShapeError otherwise, so a caller never loses precision silently).
#pragma once

#include <cstdint>

#include "io/ggml_blocks.h"

namespace arq::io {

struct GgmlBlockParams {
  const uint8_t* levels = nullptr;     // [n]
  const int32_t* sub_scales = nullptr; // [n / sub_block] (k-quants)
  const int32_t* sub_mins = nullptr;   // [n / sub_block] (q2_K, q4_K, q5_K)
  const float* d = nullptr;            // [n / block_size]: k-quant super-scale, or legacy block scale
  const float* m = nullptr;            // [n / block_size]: k-quant dmin, or q4_1/q5_1 minimum m
};

// Elements per sub-block scale of a k-quant type (16 or 32); 0 for the legacy types.
int64_t ggml_sub_block(GgmlType t);

// n elements (n % block_size == 0) → n / block_size blocks of `t`. ShapeError for a type this
// cannot pack (f32/f16/bf16/q8_K), n not a multiple of the block, a missing array, a level or
// sub-scale out of range, or a d/m that fp16 does not hold exactly.
void ggml_pack_row(GgmlType t, const GgmlBlockParams& p, void* dst, int64_t n);

// The table's re-quantization rule: the levels of values x given the stored parameters p
// (p.levels unused), e.g. q4_K L = clamp(round((x + dmin·m_j)/(d·sc_j)), 0, 15), q4_0
// L = clamp(trunc(x/d + 8.5), 0, 15). A sub-block whose scale d·sc is 0 gets level "0"
// (q3_K 4, q6_K 32, the others 0). Writes n levels to `levels`.
void ggml_levels_from_params(GgmlType t, const float* x, const GgmlBlockParams& p, uint8_t* levels, int64_t n);

}  // namespace arq::io
