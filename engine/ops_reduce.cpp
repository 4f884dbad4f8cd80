// Reductions over one axis.
#include <limits>

#include "engine/ops.h"

namespace arq {

Tensor reduce(ReduceOp op, const Tensor& x, int64_t axis, bool keepdim) {
  const char* name = reduce_name(op);
  ARQ_CHECK(x.defined(), ShapeError, "[", name, "] undefined input");
  ARQ_CHECK(x.dim() > 0, ShapeError, "[", name, "] needs at least one dimension, got ", x.str());
  const int64_t ax = x.norm_dim(axis);
  const bool needs_float = op == ReduceOp::mean || op == ReduceOp::sum_squares;
  ARQ_CHECK(!needs_float || is_floating(x.dtype()), DTypeError, "[", name, "] needs a floating dtype, got ", x.str());
  const bool min_max = op == ReduceOp::max || op == ReduceOp::min || op == ReduceOp::argmax;
  ARQ_CHECK(!min_max || x.size(ax) > 0, ShapeError, "[", name, "] over an empty axis ", ax, " of ", x.str());
  Shape kshape = x.shape();
  kshape[ax] = 1;
  Tensor out = Tensor::empty(kshape, op == ReduceOp::argmax ? DType::i64 : x.dtype(), x.device());
  if (x.size(ax) == 0) {
    // An empty sum is 0 and an empty mean 0/0 = NaN; kernels never see a zero-length axis.
    fill_(out, op == ReduceOp::mean ? std::numeric_limits<double>::quiet_NaN() : 0.0);
  } else if (out.numel() > 0) {
    backend_for(x.device()).reduce(op, x, ax, out);
  }
  return keepdim ? out : out.squeeze(ax);
}

Tensor sum(const Tensor& x, int64_t axis, bool keepdim) { return reduce(ReduceOp::sum, x, axis, keepdim); }
Tensor mean(const Tensor& x, int64_t axis, bool keepdim) { return reduce(ReduceOp::mean, x, axis, keepdim); }
Tensor max(const Tensor& x, int64_t axis, bool keepdim) { return reduce(ReduceOp::max, x, axis, keepdim); }
Tensor min(const Tensor& x, int64_t axis, bool keepdim) { return reduce(ReduceOp::min, x, axis, keepdim); }
Tensor argmax(const Tensor& x, int64_t axis, bool keepdim) { return reduce(ReduceOp::argmax, x, axis, keepdim); }
Tensor sum_squares(const Tensor& x, int64_t axis, bool keepdim) {
  return reduce(ReduceOp::sum_squares, x, axis, keepdim);
}

Tensor sum_all(const Tensor& x) {
  Tensor flat = x.reshape({x.numel()});
  return sum(flat, 0, false);
}

Tensor mean_all(const Tensor& x) {
  Tensor flat = x.reshape({x.numel()});
  return mean(flat, 0, false);
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  ARQ_CHECK(x.dim() >= static_cast<int64_t>(shape.size()), ShapeError, "[sum_to] cannot reduce ", x.str(), " to ",
            shape_str(shape));
  Tensor r = x;
  const int64_t lead = x.dim() - static_cast<int64_t>(shape.size());
  for (int64_t i = 0; i < lead; ++i) r = sum(r, 0, false);
  for (int64_t i = 0; i < static_cast<int64_t>(shape.size()); ++i) {
    if (shape[i] == 1 && r.size(i) != 1) {
      r = sum(r, i, true);
    } else {
      ARQ_CHECK(shape[i] == r.size(i), ShapeError, "[sum_to] cannot reduce ", x.str(), " to ", shape_str(shape));
    }
  }
  return r;
}

}  // namespace arq
