// The frozen result of quantizing one linear layer, and how its weight is grouped.
//
// Grouping (spec/autoround.md §1.7): W [out, in] is viewed as [out·n_g, G] rows of G elements,
// the last group of each row zero-padded when in % G != 0. group_size −1 (or in < group_size)
// means one group per row (G = in); 0 means one group for the whole tensor.
//
// Codes are stored unsigned for every flavour: u = q + zp ∈ [0, 2^bits − 1], and the weight is
// ŵ = scale · (u − zp). For int_sym zp is the constant 2^(bits−1), so u − zp is AutoRound's
// signed level q ∈ [−Q, Q−1] and scale may be negative (§1.8).
//
//   QuantizedLinear q = quantize_rtn(w, {.bits = 4, .group_size = 32});
//   Tensor w_hat = dequantize(q);     // [out, in] in w's dtype, equal to the qdq forward
#pragma once

#include <cstdint>
#include <string>

#include "engine/tensor.h"
#include "quant/scheme.h"

namespace arq::quant {

struct GroupLayout {
  int64_t out = 0, in = 0;
  int64_t group_size = 0;      // as requested (−1, 0, or > 0)
  int64_t group_len = 0;       // G: elements per group row after padding
  int64_t groups_per_row = 0;  // n_g (1 for per-channel; 1 for per-tensor, which has 1 row)
  bool per_tensor = false;

  int64_t n_rows() const { return per_tensor ? 1 : out * groups_per_row; }  // rows of the grouped view
  int64_t padded_in() const { return groups_per_row * group_len; }
  // Scales/zeros shape: [out, n_g], or [1, 1] per tensor.
  Shape param_shape() const { return per_tensor ? Shape{1, 1} : Shape{out, groups_per_row}; }
};

// Throws ShapeError for a non-positive dimension.
GroupLayout make_group_layout(int64_t out, int64_t in, int64_t group_size);

// w [out, in] (any floating dtype, any layout, any device) → f32 [n_rows, G] on the host,
// zero-padded.
Tensor to_groups(const Tensor& w, const GroupLayout& g);
// The same on `device` (engine ops there: w moves in its own dtype, then widens).
Tensor to_groups(const Tensor& w, const GroupLayout& g, Device device);
// [n_rows, G] → [out, in] (drops the padding; a copy, contiguous).
Tensor from_groups(const Tensor& wg, const GroupLayout& g);

struct QuantizedLinear {
  std::string name;            // checkpoint name of the layer ("model.layers.0.self_attn.q_proj")
  GroupLayout layout;
  int bits = 4;
  QDataType data_type = QDataType::int_sym;
  bool sym = true;
  DType weight_dtype = DType::f32;  // dtype of the original (and dequantized) weight
  Tensor codes;   // [out, in] u8, unsigned levels u ∈ [0, 2^bits − 1]
  Tensor scales;  // param_shape(), in the scale dtype (f16 by default); negative allowed (int_sym)
  Tensor zeros;   // param_shape() i32: zp per group (int_sym: 2^(bits−1) everywhere)
  // GGUF data types (quant/qdq_gguf.h). When `mins` is defined the weight is ŵ = scale·u − min
  // (int_asym_dq: min = m'; int_asym_float_zp: min = −m) and `zeros` is unused.
  Tensor mins;      // param_shape() f32 or undefined
  // Double quantization (int_*_dq): scale = level·d, min = level·dmin, one d/dmin (fp16 values)
  // per super_group_size consecutive groups of a row.
  Tensor d_scales;  // [out, n_g / super_group_size] f32, or undefined
  Tensor d_mins;    // same shape (int_asym_dq), or undefined
  int super_bits = 0;
  int64_t super_group_size = 0;
};

// ŵ = scale · (u − zp), computed in f32 exactly as the qdq forward, cast to `dtype`
// (default: the original weight dtype), on the device of q.codes (engine/qdq_fused.h's
// dequantize_codes: rows in parallel on the CPU, one kernel on CUDA).
Tensor dequantize(const QuantizedLinear& q);
Tensor dequantize(const QuantizedLinear& q, DType dtype);
// The same computed on `device`: only the u8 codes and the per-group parameters move there.
Tensor dequantize(const QuantizedLinear& q, DType dtype, Device device);

}  // namespace arq::quant
