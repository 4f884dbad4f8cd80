// Builders of the fused ops (engine/fused.h): checks, contiguous operands, one kernel call.
#include "engine/fused.h"

#include "engine/ops.h"

namespace arq {

namespace {
FusedKernels* g_fused_override[2] = {nullptr, nullptr};   // by DeviceType; test/benchmark only
}  // namespace

void set_fused_kernels_override(DeviceType t, FusedKernels* k) { g_fused_override[static_cast<int>(t)] = k; }

FusedKernels& fused_kernels_for(const Device& d) {
  if (FusedKernels* o = g_fused_override[static_cast<int>(d.type)]) return *o;
  if (d.is_cpu()) return cpu_fused_kernels();
  return cuda_fused_kernels();
}

namespace {

void check_same(const char* op, const Tensor& a, const char* an, const Tensor& b, const char* bn) {
  ARQ_CHECK(a.defined() && b.defined(), ShapeError, "[", op, "] undefined operand");
  ARQ_CHECK(a.shape() == b.shape(), ShapeError, "[", op, "] ", an, " ", a.str(), " and ", bn, " ", b.str(),
            " must have one shape");
  ARQ_CHECK(a.dtype() == b.dtype() && is_floating(a.dtype()), DTypeError, "[", op, "] needs one floating dtype, got ", an,
            " ", a.str(), " and ", bn, " ", b.str());
  ARQ_CHECK(a.device() == b.device(), DeviceError, "[", op, "] ", an, " ", a.str(), " and ", bn, " ", b.str(),
            " on different devices");
}

}  // namespace

Tensor swiglu(const Tensor& gate, const Tensor& up) {
  check_same("swiglu", gate, "gate", up, "up");
  Tensor h = Tensor::empty(gate.shape(), gate.dtype(), gate.device());
  if (h.numel() > 0) fused_kernels_for(gate.device()).swiglu(gate.contiguous(), up.contiguous(), h);
  return h;
}

std::pair<Tensor, Tensor> swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& g) {
  check_same("swiglu_backward", gate, "gate", up, "up");
  check_same("swiglu_backward", gate, "gate", g, "grad");
  Tensor dgate = Tensor::empty(gate.shape(), gate.dtype(), gate.device());
  Tensor dup = Tensor::empty(gate.shape(), gate.dtype(), gate.device());
  if (dgate.numel() > 0)
    fused_kernels_for(gate.device()).swiglu_backward(gate.contiguous(), up.contiguous(), g.contiguous(), dgate, dup);
  return {dgate, dup};
}

void sign_sgd_step_(Tensor& p, const Tensor& d, double lr) {
  check_same("sign_sgd_step_", p, "param", d, "grad");
  if (p.numel() == 0) return;
  if (!p.is_contiguous()) {
    copy_(p, sub(p, affine(sign(d), lr, 0.0)));
    return;
  }
  fused_kernels_for(p.device()).sign_step(p, d.contiguous(), lr);
}

std::pair<Tensor, Tensor> rms_norm_backward(const Tensor& x, const Tensor& w, const Tensor& g, double eps, bool want_dx,
                                            bool want_dw) {
  ARQ_CHECK(x.defined() && w.defined() && g.defined(), ShapeError, "[rms_norm_backward] undefined operand");
  ARQ_CHECK(x.dim() > 0 && w.dim() == 1 && w.size(0) == x.size(-1), ShapeError, "[rms_norm_backward] weight must be [",
            x.dim() > 0 ? x.size(-1) : 0, "], got ", w.str(), " for x ", x.str());
  check_same("rms_norm_backward", x, "x", g, "grad");
  ARQ_CHECK(w.dtype() == x.dtype(), DTypeError, "[rms_norm_backward] weight ", w.str(), " and x ", x.str(),
            " need one dtype");
  ARQ_CHECK(w.device() == x.device(), DeviceError, "[rms_norm_backward] weight ", w.str(), " and x ", x.str(),
            " on different devices");
  const int64_t d = x.size(-1), rows = d > 0 ? x.numel() / d : 0;
  Tensor dx = want_dx ? Tensor::empty(x.shape(), x.dtype(), x.device()) : Tensor();
  Tensor dw = want_dw ? Tensor::empty(w.shape(), w.dtype(), w.device()) : Tensor();
  if (d == 0 || (!want_dx && !want_dw)) return {dx, dw};
  if (rows == 0) {
    if (want_dw) fill_(dw, 0.0);
    return {dx, dw};
  }
  Tensor dx2 = want_dx ? dx.view({rows, d}) : Tensor();
  fused_kernels_for(x.device())
      .rms_norm_backward(x.contiguous().view({rows, d}), w.contiguous(), g.contiguous().view({rows, d}), eps, dx2, dw);
  return {dx, dw};
}

}  // namespace arq
