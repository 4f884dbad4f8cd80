#include "models/blocks/layers.h"

#include "autograd/fused.h"

namespace arq::models {

ag::Var linear(const ag::Var& x, const ag::Var& w, const ag::Var& bias) {
  ARQ_CHECK(w.dim() == 2, ShapeError, "[linear] weight must be [out, in], got ", w.str());
  ARQ_CHECK(x.dim() >= 1 && x.size(-1) == w.size(1), ShapeError, "[linear] input ", x.str(),
            " does not match weight ", w.str(), " (in_features ", w.size(1), ")");
  const int64_t in = w.size(1), out = w.size(0);
  Shape out_shape = x.shape();
  out_shape.back() = out;
  ag::Var x2 = x.dim() == 2 ? x : ag::reshape(x, {x.numel() / in, in});   // [rows, in]
  ag::Var y = ag::matmul(x2, ag::transpose(w, 0, 1));                        // [rows, out]
  if (bias.defined()) {
    ARQ_CHECK(bias.dim() == 1 && bias.size(0) == out, ShapeError, "[linear] bias ", bias.str(), " does not match weight ",
              w.str());
    y = ag::add(y, bias);
  }
  return x.dim() == 2 ? y : ag::reshape(y, out_shape);
}

ag::Var rms_norm(const ag::Var& x, const ag::Var& weight, double eps) {
  ARQ_CHECK(weight.dim() == 1 && x.size(-1) == weight.size(0), ShapeError, "[rms_norm] weight ", weight.str(),
            " does not match input ", x.str());
  // The fused backward kernel gives the composed VJP's dx bit for bit on the CPU (f64 sums in
  // another order on CUDA); the forward is the same rms_norm kernel.
  return ag::rms_norm_fused(x, weight, eps);
}

ag::Var swiglu_mlp(const ag::Var& x, const MlpWeights& w, const LinearObserver* observe) {
  if (observe) {
    (*observe)("gate_proj", x.value());
    (*observe)("up_proj", x.value());
  }
  ag::Var g = linear(x, w.gate, w.gate_bias);   // [..., I]
  ag::Var u = linear(x, w.up, w.up_bias);       // [..., I]
  ag::Var h = ag::swiglu(g, u);                 // [..., I] = silu(g) ⊙ u, fused, bit-identical
  if (observe) (*observe)("down_proj", h.value());
  return linear(h, w.down, w.down_bias);
}

}  // namespace arq::models
