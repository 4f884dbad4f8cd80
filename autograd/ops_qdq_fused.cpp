// VJP of the fused qdq: calls the fused backward kernel (an engine op, so it runs on every
// backend).
#include "autograd/qdq_fused.h"

#include "autograd/graph.h"

namespace arq::ag {

Var qdq_fused(const Tensor& wg, const Tensor& wmin, const Tensor& wmax, const Var& v, const Var& alpha, const Var& beta,
              const QdqSpec& spec, DType weight_dtype) {
  const QdqInputs in{.wg = wg,
                     .wmin = wmin,
                     .wmax = wmax,
                     .v = v.defined() ? v.value() : Tensor(),
                     .alpha = alpha.defined() ? alpha.value() : Tensor(),
                     .beta = beta.defined() ? beta.value() : Tensor()};
  Tensor w_hat = arq::qdq_fused(in, spec, weight_dtype);
  // Inputs in a fixed order (v, α, β), only the defined ones; slot[i] says which gradient goes
  // to the i-th recorded input.
  std::vector<const Var*> inputs;
  std::vector<int> slot;
  std::vector<Shape> shapes;  // each input's own shape (α given as [n_rows] gets a [n_rows] gradient)
  const Var* params[3] = {&v, &alpha, &beta};
  for (int i = 0; i < 3; ++i)
    if (params[i]->defined()) {
      inputs.push_back(params[i]);
      slot.push_back(i);
      shapes.push_back(params[i]->shape());
    }
  // ŵ = sc·t(x/sc + V) per group row (straight-through round): dV = the level clamp's mask ⊙
  // dŵ·sc; dα, dβ through sc's threshold clamp, its rounding to the scale dtype and the range.
  return record("qdq_fused", std::move(w_hat), inputs,
                [in, spec, slot, shapes](const Tensor& g, const std::vector<bool>& need) {
                  bool want[3] = {false, false, false};
                  for (size_t i = 0; i < slot.size(); ++i) want[slot[i]] = need[i];
                  const QdqGrads d = arq::qdq_fused_backward(in, spec, g, want[0], want[1], want[2]);
                  const Tensor by_slot[3] = {d.dv, d.dalpha, d.dbeta};
                  std::vector<Tensor> out;
                  for (size_t i = 0; i < slot.size(); ++i) {
                    const Tensor& d = by_slot[slot[i]];
                    out.push_back(d.defined() ? d.reshape(shapes[i]) : d);
                  }
                  return out;
                });
}

}  // namespace arq::ag
