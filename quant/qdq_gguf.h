// qdq of the GGUF data types tuned by SignRound (spec/autoround.md §4d "Tuned path"):
//
//  - int_asym_dq (q2_K, q4_K, q5_K): per group s = max((wmax·β − wmin·α)/(2^b − 1), thr) and
//    m = −wmin·α ≥ 0; over each super-group, d = max(s)/(2^sb − 1), s' = min(round(s/d), 2^sb − 1)·d
//    (round with STE), the same for m with dmin; u = clamp(round((x + m')/s' + V), 0, 2^b − 1);
//    ŵ = s'·u − m'.
//  - int_sym_dq (q3_K, q6_K): s = M/Q as int_sym (§1.8); d = g/−2^(sb−1) with g the signed
//    absolute maximum of the super-group's s; s' = clip(round(s/d), −2^(sb−1), 2^(sb−1) − 1)·d;
//    q = clamp(round(x/s' + V), −Q, Q − 1); ŵ = s'·q (codes u = q + Q).
//  - int_asym_float_zp (q4_1, q5_1): s = (wmax·β − wmin·α)/(2^b − 1) in the scale dtype,
//    m = wmin·α; u = clamp(round((x − m)/s + V), 0, 2^b − 1); ŵ = s·u + m.
//
// Three deliberate differences from AutoRound, each so that the GGUF file decodes to exactly the
// tuned weights (ggml's decoders compute d·sc·q − dmin·sm from fp16 d/dmin):
//  1. d and dmin are rounded to fp16 — their storage type — inside the qdq (AutoRound keeps them
//     f32 while tuning and rounds when packing: a relative change ≤ 2^-11 of every s'), and the
//     group levels are round(s/d16). d16 is clamped to ≥ 2^-24 (the smallest fp16 > 0) for the
//     asym type, where AutoRound clamps d ≥ thr = 1e-8, which fp16 cannot hold.
//  2. When a group's level round(s/d) is 0, s' = 0: ŵ = −m' (asym) or 0 (sym), what ggml decodes;
//     the threshold thr is applied to the divisor only (AutoRound's s' = thr gives ŵ within
//     (2^b − 1)·1e-8 of that).
//  3. int_asym_float_zp rounds x/s together with the float zero point, u = round((x − m)/s + V),
//     and keeps s and m in fp16: the q4_1/q5_1 grid is m + d·u. (AutoRound's round(x/s + V) + zp
//     puts its levels off that grid, and its export re-rounds them.)
//
//   GgufQdq f = qdq_gguf(wg, group_range(wg), params, scheme);   // f.w_hat differentiable
#pragma once

#include "quant/qdq.h"

namespace arq::quant {

// The flavours implemented here.
inline bool is_gguf_qtype(QDataType t) {
  return t == QDataType::int_asym_dq || t == QDataType::int_sym_dq || t == QDataType::int_asym_float_zp;
}

// Every intermediate of one forward. The differentiable qdq returns w_hat; the freeze path runs
// the same graph without gradients and reads the rest, so the two agree bit for bit.
struct GgufQdq {
  ag::Var w_hat;  // [rows, G] ŵ (f32)
  ag::Var u;      // [rows, G] unsigned codes, integer-valued f32
  ag::Var scale;  // [rows, 1] s' (dq) or s (float_zp)
  ag::Var min;    // [rows, 1] ≥ 0, ŵ = scale·u − min (int_asym_dq: m'; float_zp: −m); undefined for sym
  ag::Var d;      // [rows / super_group, 1] super-scale of the scales (dq types), fp16 values
  ag::Var dmin;   // [rows / super_group, 1] super-scale of the mins (int_asym_dq), fp16 values
};

// wg [rows, G] f32; rows must be a multiple of super_group_size for the dq types (the caller
// checks that super-groups do not straddle output rows).
GgufQdq qdq_gguf(const Tensor& wg, const GroupRange& r, const QdqParams& p, const QuantScheme& s);

// Throws UsageError when `g` cannot hold whole super-groups of scheme `s` (dq types need
// in % (group_size · super_group_size) == 0). `where` names the layer.
void check_gguf_layout(const GroupLayout& g, const QuantScheme& s, const std::string& where);

// Freeze w [out, in] with the given V/α/β (each may be undefined): codes, scales, zeros (0, or
// Q for sym), mins, d_scales, d_mins of QuantizedLinear.
QuantizedLinear quantize_gguf_with_params(const Tensor& w, const QuantScheme& s, const Tensor& v, const Tensor& alpha,
                                          const Tensor& beta);

}  // namespace arq::quant
