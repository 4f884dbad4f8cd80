// VJPs of the fused ops: each calls the fused backward kernel (an engine op, so it runs on
// every backend).
#include "autograd/fused.h"

#include "autograd/graph.h"
#include "engine/fused.h"

namespace arq::ag {

Var swiglu(const Var& gate, const Var& up) {
  // h = silu(a) ⊙ u: du = g ⊙ silu(a), da = (g ⊙ u) ⊙ σ(a)(1 + a(1 − σ(a)))
  return record("swiglu", arq::swiglu(gate.value(), up.value()), {&gate, &up},
                [a = gate.value(), u = up.value()](const Tensor& g, const std::vector<bool>& need) {
                  auto [da, du] = arq::swiglu_backward(a, u, g);
                  return std::vector<Tensor>{need[0] ? da : Tensor(), need[1] ? du : Tensor()};
                });
}

Var rms_norm_fused(const Var& x, const Var& w, double eps) {
  ARQ_CHECK(w.dim() == 1 && x.dim() > 0 && x.size(-1) == w.size(0), ShapeError, "[rms_norm] weight ", w.str(),
            " does not match input ", x.str());
  // y = w ⊙ x·r, r = (Σx²/d + ε)^(−½): dx = r·(g⊙w) − x·r³·mean(g⊙w⊙x), dw = Σ_rows g⊙x·r
  return record("rms_norm", arq::rms_norm(x.value(), w.value(), eps), {&x, &w},
                [x0 = x.value(), w0 = w.value(), eps](const Tensor& g, const std::vector<bool>& need) {
                  const Tensor gg = g.dtype() == x0.dtype() ? g : arq::cast(g, x0.dtype());
                  auto [dx, dw] = arq::rms_norm_backward(x0, w0, gg, eps, need[0], need[1]);
                  return std::vector<Tensor>{dx, dw};
                });
}

}  // namespace arq::ag
