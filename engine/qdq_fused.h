// The fused SignRound qdq (quantize-dequantize) of one weight, for the integer data types
// int_sym, int_asym and int_sym_gptq (spec/autoround.md §1.7–1.8). quant/qdq.cpp's composition
// of ~15 autograd ops (each a pass over the grouped weight, each saved for backward) stays the
// reference; these ops compute the same values in one pass:
//
//   qdq_fused           reads wg, V, α, β, wmin, wmax and writes ŵ [out, in] in the weight dtype
//                       (padding dropped), bit-identical to the composition on the CPU;
//   qdq_fused_backward  turns dŵ into dV [n_rows, G], dα, dβ [n_rows, 1], recomputing the
//                       forward's intermediates per group row (the per-row sums in f64);
//   qdq_fused_codes     the frozen form of the same forward: u8 codes [out, in], f32 scales and
//                       i32 zero points per row;
//   dequantize_codes    ŵ = scale·(u − zp), or scale·u − min, in the requested dtype.
//
// The kernels sit behind their own small interface (as engine/fused.h's), with a CPU version
// (kernels/cpu/qdq_fused.cpp) and a CUDA one (kernels/cuda/cuda_qdq_fused.cu, a stub without
// CUDA). The scalar math both share is kernels/cpu/qdq_math.h.
//
//   QdqSpec s{.kind = QdqKind::int_sym, .bits = 4, .scale_dtype = DType::f16, .scale_thresh = 1e-5,
//             .out = 64, .in = 100, .group_len = 32, .groups_per_row = 4};
//   Tensor w_hat = qdq_fused({.wg = wg, .wmin = lo, .wmax = hi, .v = v}, s, DType::bf16);
#pragma once

#include <cstdint>

#include "engine/tensor.h"

namespace arq {

enum class QdqKind : uint8_t { int_sym, int_asym, int_sym_gptq };

// What the kernels need of a quant::QuantScheme and its GroupLayout.
struct QdqSpec {
  QdqKind kind = QdqKind::int_sym;
  int bits = 4;
  DType scale_dtype = DType::f16;  // the scale is rounded to it and its threshold applied in it
  double scale_thresh = 1e-5;      // AutoRound's q_scale_thresh
  int64_t out = 0, in = 0;         // the weight is [out, in]
  int64_t group_len = 0;           // G: elements per group row (padded)
  int64_t groups_per_row = 1;      // n_g
  bool per_tensor = false;         // one row of out·in elements

  int64_t n_rows() const { return per_tensor ? 1 : out * groups_per_row; }
};

// Operands of the qdq: all f32 on one device. Undefined v means V = 0; undefined alpha/beta
// mean α = β = 1 (AutoRound multiplies only when min_scale/max_scale exist). The builders make
// them contiguous.
struct QdqInputs {
  Tensor wg{};     // [n_rows, G] the weight, grouped and zero-padded
  Tensor wmin{};   // [n_rows, 1] min(group, 0)
  Tensor wmax{};   // [n_rows, 1] max(group, 0)
  Tensor v{};      // [n_rows, G] or undefined
  Tensor alpha{};  // [n_rows, 1] (already clamped to [0, 1]) or undefined
  Tensor beta{};   // [n_rows, 1] or undefined
};

struct QdqGrads {
  Tensor dv;      // [n_rows, G] f32 (0 in the padding), or undefined when not wanted
  Tensor dalpha;  // [n_rows, 1] f32 or undefined
  Tensor dbeta;   // [n_rows, 1] f32 or undefined
};

struct QdqCodes {
  Tensor codes;   // [out, in] u8: u = level + zp ∈ [0, 2^bits − 1]
  Tensor scales;  // [n_rows] f32 (values exact in the scale dtype)
  Tensor zeros;   // [n_rows] i32
};

// ---- builders (check shapes/dtypes/devices, allocate, call one kernel) ------------------------
// ŵ [out, in] in `weight_dtype` (f32, f16 or bf16).
Tensor qdq_fused(const QdqInputs& x, const QdqSpec& s, DType weight_dtype);
// g: cotangent of ŵ, [out, in] in any floating dtype (widened to f32 exactly as autograd's cast
// VJP does). Gradients equal the composed VJPs' up to the order of their f64 row sums
// (bit-identical on the CPU). A wanted dα/dβ needs alpha/beta defined.
QdqGrads qdq_fused_backward(const QdqInputs& x, const QdqSpec& s, const Tensor& g, bool want_dv, bool want_dalpha,
                            bool want_dbeta);
QdqCodes qdq_fused_codes(const QdqInputs& x, const QdqSpec& s);
// codes [out, in] u8; scales [n_rows] f32 (any shape with n_rows elements); zeros [n_rows] i32 or
// mins [n_rows] f32 (exactly one defined): ŵ = scale·f32(u − zp), or scale·u − min, in f32, then
// rounded to `dtype`. Runs on the codes' device.
Tensor dequantize_codes(const Tensor& codes, const Tensor& scales, const Tensor& zeros, const Tensor& mins,
                        const QdqSpec& layout, DType dtype);

// ---- the kernels' interface -----------------------------------------------------------------
// Operands are contiguous, on one device, with the shapes above; outputs are allocated.
class QdqKernels {
 public:
  virtual ~QdqKernels() = default;
  // w_hat [out, in] (f32/f16/bf16) when defined; else codes/scales/zeros (the frozen form).
  virtual void forward(const QdqInputs& x, const QdqSpec& s, Tensor& w_hat, QdqCodes& codes) = 0;
  // g [out, in] f32, f16 or bf16 (widened exactly); each of dv/dalpha/dbeta written when defined.
  virtual void backward(const QdqInputs& x, const QdqSpec& s, const Tensor& g, QdqGrads& grads) = 0;
  // scales [n_rows] f32, zeros [n_rows] i32 or mins [n_rows] f32; out [out, in] floating.
  virtual void dequantize(const Tensor& codes, const Tensor& scales, const Tensor& zeros, const Tensor& mins,
                          const QdqSpec& s, Tensor& out) = 0;
};

QdqKernels& qdq_kernels_for(const Device& d);
// Test/benchmark only (as set_backend_override): qdq_kernels_for returns `k` for devices of type `t`.
void set_qdq_kernels_override(DeviceType t, QdqKernels* k);
QdqKernels& cpu_qdq_kernels();   // kernels/cpu/qdq_fused.cpp
QdqKernels& cuda_qdq_kernels();  // kernels/cuda/cuda_qdq_fused.cu, or its stub without CUDA

}  // namespace arq
