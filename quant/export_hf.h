// Frozen QuantizedLinear → HF-style packed tensors (auto_round / auto_gptq / auto_awq layouts,
// spec/autoround.md §4a–4c). The byte layouts live in io/pack.h; this file only knows how a
// QuantizedLinear maps onto them.
//
//   io::PackedLinear p = io::pack_linear(int_parts(q), io::HfPacking::gptq_v1, true);
#pragma once

#include "io/pack.h"
#include "quant/quantized_linear.h"

namespace arq::quant {

// codes [out, in] u8, zeros [out, n_g] i32, scales [out, n_g] as frozen, G resolved (−1 → in).
// UsageError for a per-tensor layer (group size 0), which no HF packing can hold.
io::IntLinearParts int_parts(const QuantizedLinear& q);

}  // namespace arq::quant
