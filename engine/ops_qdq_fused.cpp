// Builders of the fused qdq ops (engine/qdq_fused.h): checks, contiguous operands, one kernel call.
#include "engine/qdq_fused.h"

#include "engine/ops.h"

namespace arq {

namespace {
QdqKernels* g_qdq_override[2] = {nullptr, nullptr};   // by DeviceType; test/benchmark only
}  // namespace

void set_qdq_kernels_override(DeviceType t, QdqKernels* k) { g_qdq_override[static_cast<int>(t)] = k; }

QdqKernels& qdq_kernels_for(const Device& d) {
  if (QdqKernels* o = g_qdq_override[static_cast<int>(d.type)]) return *o;
  if (d.is_cpu()) return cpu_qdq_kernels();
  return cuda_qdq_kernels();
}

namespace {

void check_spec(const QdqSpec& s, const char* op) {
  ARQ_CHECK(s.out > 0 && s.in > 0 && s.group_len > 0 && s.groups_per_row > 0, ShapeError, "[", op,
            "] bad layout: weight [", s.out, ", ", s.in, "], G ", s.group_len, ", groups per row ", s.groups_per_row);
  ARQ_CHECK(s.per_tensor ? (s.group_len == s.out * s.in && s.groups_per_row == 1)
                         : (s.groups_per_row * s.group_len >= s.in && (s.groups_per_row - 1) * s.group_len < s.in),
            ShapeError, "[", op, "] G ", s.group_len, " × ", s.groups_per_row, " groups does not cover a row of ", s.in);
  ARQ_CHECK(s.bits >= 1 && s.bits <= 8, UsageError, "[", op, "] bits must be in [1, 8], got ", s.bits);
  ARQ_CHECK(s.scale_dtype == DType::f32 || s.scale_dtype == DType::f16 || s.scale_dtype == DType::bf16, DTypeError, "[",
            op, "] scale dtype must be f32, f16 or bf16, got ", dtype_name(s.scale_dtype));
}

// The operand `t` (named `name`) must be f32 `shape` on `dev`; returns it contiguous (undefined stays).
Tensor operand(const Tensor& t, const char* name, const Shape& shape, const Device& dev, const char* op,
               bool optional) {
  if (!t.defined()) {
    ARQ_CHECK(optional, ShapeError, "[", op, "] ", name, " is undefined");
    return t;
  }
  ARQ_CHECK(t.dtype() == DType::f32, DTypeError, "[", op, "] ", name, " must be f32, got ", t.str());
  ARQ_CHECK(t.numel() == shape_numel(shape) && (t.shape() == shape || t.dim() <= 2), ShapeError, "[", op, "] ", name,
            " ", t.str(), " must be ", shape_str(shape));
  ARQ_CHECK(t.device() == dev, DeviceError, "[", op, "] ", name, " ", t.str(), " is not on ", dev.str(),
            " with the weight");
  return t.contiguous().reshape(shape);
}

QdqInputs checked(const QdqInputs& x, const QdqSpec& s, const char* op) {
  check_spec(s, op);
  ARQ_CHECK(x.wg.defined(), ShapeError, "[", op, "] wg is undefined");
  const Device dev = x.wg.device();
  const int64_t R = s.n_rows(), G = s.group_len;
  QdqInputs c;
  c.wg = operand(x.wg, "wg", {R, G}, dev, op, false);
  c.wmin = operand(x.wmin, "wmin", {R, 1}, dev, op, false);
  c.wmax = operand(x.wmax, "wmax", {R, 1}, dev, op, false);
  c.v = operand(x.v, "V", {R, G}, dev, op, true);
  c.alpha = operand(x.alpha, "alpha", {R, 1}, dev, op, true);
  c.beta = operand(x.beta, "beta", {R, 1}, dev, op, true);
  return c;
}

}  // namespace

Tensor qdq_fused(const QdqInputs& x, const QdqSpec& s, DType weight_dtype) {
  const QdqInputs c = checked(x, s, "qdq_fused");
  ARQ_CHECK(weight_dtype == DType::f32 || weight_dtype == DType::f16 || weight_dtype == DType::bf16, DTypeError,
            "[qdq_fused] weight dtype must be f32, f16 or bf16, got ", dtype_name(weight_dtype));
  Tensor w_hat = Tensor::empty({s.out, s.in}, weight_dtype, c.wg.device());
  QdqCodes none;
  qdq_kernels_for(c.wg.device()).forward(c, s, w_hat, none);
  return w_hat;
}

QdqGrads qdq_fused_backward(const QdqInputs& x, const QdqSpec& s, const Tensor& g, bool want_dv, bool want_dalpha,
                            bool want_dbeta) {
  const QdqInputs c = checked(x, s, "qdq_fused_backward");
  const Device dev = c.wg.device();
  ARQ_CHECK(g.defined() && g.shape() == Shape({s.out, s.in}) && is_floating(g.dtype()), ShapeError,
            "[qdq_fused_backward] gradient ", g.defined() ? g.str() : "undefined", " must be floating [", s.out, ", ",
            s.in, "]");
  ARQ_CHECK(g.device() == dev, DeviceError, "[qdq_fused_backward] gradient ", g.str(), " is not on ", dev.str());
  ARQ_CHECK(!want_dalpha || c.alpha.defined(), UsageError, "[qdq_fused_backward] dα wanted without α");
  ARQ_CHECK(!want_dbeta || c.beta.defined(), UsageError, "[qdq_fused_backward] dβ wanted without β");
  // autograd's cast VJP widens the cotangent to f32 (exact from f16/bf16): the kernels read
  // f32/f16/bf16 cotangents as they are and widen each element
  const bool direct = g.dtype() == DType::f32 || g.dtype() == DType::f16 || g.dtype() == DType::bf16;
  const Tensor g32 = (direct ? g : cast(g, DType::f32)).contiguous();
  const int64_t R = s.n_rows();
  QdqGrads out;
  if (want_dv) out.dv = Tensor::empty({R, s.group_len}, DType::f32, dev);
  if (want_dalpha) out.dalpha = Tensor::empty({R, 1}, DType::f32, dev);
  if (want_dbeta) out.dbeta = Tensor::empty({R, 1}, DType::f32, dev);
  if (want_dv || want_dalpha || want_dbeta) qdq_kernels_for(dev).backward(c, s, g32, out);
  return out;
}

QdqCodes qdq_fused_codes(const QdqInputs& x, const QdqSpec& s) {
  const QdqInputs c = checked(x, s, "qdq_fused_codes");
  const Device dev = c.wg.device();
  QdqCodes out;
  out.codes = Tensor::empty({s.out, s.in}, DType::u8, dev);
  out.scales = Tensor::empty({s.n_rows()}, DType::f32, dev);
  out.zeros = Tensor::empty({s.n_rows()}, DType::i32, dev);
  Tensor none;
  qdq_kernels_for(dev).forward(c, s, none, out);
  return out;
}

Tensor dequantize_codes(const Tensor& codes, const Tensor& scales, const Tensor& zeros, const Tensor& mins,
                        const QdqSpec& layout, DType dtype) {
  const char* op = "dequantize";
  check_spec(layout, op);
  ARQ_CHECK(codes.defined() && codes.dtype() == DType::u8 && codes.shape() == Shape({layout.out, layout.in}), ShapeError,
            "[", op, "] codes ", codes.defined() ? codes.str() : "undefined", " must be u8 [", layout.out, ", ",
            layout.in, "]");
  ARQ_CHECK(zeros.defined() != mins.defined(), UsageError, "[", op, "] needs exactly one of zeros and mins");
  ARQ_CHECK(is_floating(dtype), DTypeError, "[", op, "] output dtype must be floating, got ", dtype_name(dtype));
  const Device dev = codes.device();
  const int64_t R = layout.n_rows();
  auto per_row = [&](const Tensor& t, const char* name, DType want) {
    if (!t.defined()) return t;
    ARQ_CHECK(t.numel() == R, ShapeError, "[", op, "] ", name, " ", t.str(), " must have ", R, " elements");
    return t.to(dev).to(want).contiguous().reshape({R});
  };
  const Tensor sc = per_row(scales, "scales", DType::f32);
  ARQ_CHECK(sc.defined(), ShapeError, "[", op, "] scales are undefined");
  const Tensor zp = per_row(zeros, "zeros", DType::i32), mn = per_row(mins, "mins", DType::f32);
  Tensor out = Tensor::empty({layout.out, layout.in}, dtype, dev);
  qdq_kernels_for(dev).dequantize(codes.contiguous(), sc, zp, mn, layout, out);
  return out;
}

}  // namespace arq
