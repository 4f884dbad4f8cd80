// Losses built from differentiable ops (their gradients come from the ops' VJPs).
#include "autograd/loss.h"

#include "autograd/ops.h"

namespace arq::ag {

Var masked_mse(const Var& pred, const Tensor& target, const Tensor& mask, MseReduction reduction) {
  ARQ_CHECK(target.shape() == pred.shape(), ShapeError, "[masked_mse] target ", target.str(), " does not match pred ",
            pred.str());
  Var diff = pred - Var(target.dtype() == pred.dtype() ? target : cast(target, pred.dtype()));
  double valid = static_cast<double>(pred.numel());
  Var sq = diff * diff;
  if (mask.defined()) {
    Tensor m = mask.dtype() == pred.dtype() ? mask : cast(mask, pred.dtype());
    Shape bs = broadcast_shapes(pred.shape(), m.shape(), "masked_mse");
    ARQ_CHECK(bs == pred.shape(), ShapeError, "[masked_mse] mask ", mask.str(), " does not broadcast to pred ",
              pred.str());
    sq = sq * Var(m);
    valid = sum_all(m.expand(pred.shape())).item();
  }
  Var total = sum_all(sq);
  switch (reduction) {
    case MseReduction::sum: return total;
    case MseReduction::mean_all: return total / static_cast<double>(pred.numel());
    case MseReduction::mean_valid: return valid > 0 ? total / valid : total * 0.0;
  }
  return total;
}

Var cross_entropy(const Var& logits, const Tensor& targets, int64_t ignore_index) {
  ARQ_CHECK(logits.dim() == 2, ShapeError, "[cross_entropy] logits must be [n, v], got ", logits.str());
  ARQ_CHECK(targets.dim() == 1 && targets.size(0) == logits.size(0), ShapeError, "[cross_entropy] targets ",
            targets.str(), " do not match logits ", logits.str());
  ARQ_CHECK(targets.dtype() == DType::i64 || targets.dtype() == DType::i32, DTypeError,
            "[cross_entropy] targets must be i32/i64, got ", targets.str());
  const int64_t n = logits.size(0), v = logits.size(1);
  Tensor t = cast(targets, DType::i64).to(logits.device());  // [n]
  // Validate targets on the host (n is small compared with n·v).
  int64_t n_valid = 0;
  for (double x : to_vector(t)) {
    const auto ti = static_cast<int64_t>(x);
    if (ti == ignore_index) continue;
    ARQ_CHECK(ti >= 0 && ti < v, ShapeError, "[cross_entropy] target ", ti, " out of range for ", v,
              " classes (logits ", logits.str(), ")");
    ++n_valid;
  }
  // One-hot selection: picks[i, j] = (j == t[i]); ignored rows (t = ignore_index ∉ [0, v)) pick nothing.
  Tensor picks = eq(arange(0, static_cast<double>(v), 1, DType::i64, logits.device()).reshape({1, v}),
                    t.reshape({n, 1}));  // [n, v] u8
  Var lsm = log_softmax(logits, -1);
  Var zero(scalar_tensor(0, logits.dtype(), logits.device()));
  Var picked = sum_all(where(picks, lsm, zero));
  return n_valid > 0 ? picked * (-1.0 / static_cast<double>(n_valid)) : picked * 0.0;
}

}  // namespace arq::ag
