// matmul, softmax, RMSNorm, rotary embedding.
#include "engine/ops.h"

namespace arq {

namespace {
bool matmul_dtype_ok(DType t) { return is_floating(t); }
}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  ARQ_CHECK(a.defined() && b.defined(), ShapeError, "[matmul] undefined operand");
  ARQ_CHECK(a.device() == b.device(), DeviceError, "[matmul] operands on different devices: ", a.str(), " and ", b.str());
  ARQ_CHECK(a.dim() >= 2 && b.dim() >= 2, ShapeError, "[matmul] needs operands with at least 2 dims, got ", a.str(),
            " and ", b.str());
  ARQ_CHECK(a.dtype() == b.dtype(), DTypeError, "[matmul] dtypes differ: ", a.str(), " and ", b.str());
  ARQ_CHECK(matmul_dtype_ok(a.dtype()), DTypeError, "[matmul] needs f32/f64/f16/bf16, got ", a.str());
  const int64_t m = a.size(-2), k = a.size(-1), k2 = b.size(-2), n = b.size(-1);
  ARQ_CHECK(k == k2, ShapeError, "[matmul] inner dimensions differ: ", a.str(), " · ", b.str(), " (", k, " != ", k2, ")");
  Shape ba(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
  Shape batch;
  try {
    batch = broadcast_shapes(ba, bb, "matmul");
  } catch (const ShapeError&) {
    throw ShapeError(cat("[matmul] batch dimensions do not broadcast: ", a.str(), " · ", b.str()));
  }
  const int64_t nb = shape_numel(batch);
  Shape ea = batch, eb = batch, oshape = batch;
  ea.insert(ea.end(), {m, k});
  eb.insert(eb.end(), {k, n});
  oshape.insert(oshape.end(), {m, n});
  Tensor out = Tensor::empty(oshape, a.dtype(), a.device());
  if (out.numel() == 0) return out;
  // Collapse the batch dims to one. A broadcast operand keeps a stride-0 batch when it has no
  // batch of its own; otherwise reshape (which copies only when the batch dims cannot merge).
  auto as3 = [&](const Tensor& t, const Shape& full, int64_t r, int64_t c) {
    Tensor e = t.expand(full);
    if (t.dim() == 2) return Tensor(e.storage(), {nb, r, c}, {0, e.stride(-2), e.stride(-1)}, e.offset(), e.dtype());
    return e.reshape({nb, r, c});
  };
  Tensor a3 = as3(a, ea, m, k), b3 = as3(b, eb, k, n);
  Tensor o3 = out.view({nb, m, n});
  if (k == 0) {
    fill_(o3, 0.0);
    return out;
  }
  backend_for(a.device()).matmul(a3, b3, o3);
  return out;
}

static Tensor softmax_impl(const Tensor& x, int64_t axis, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  ARQ_CHECK(x.dim() > 0, ShapeError, "[", name, "] needs at least one dimension, got ", x.str());
  ARQ_CHECK(is_floating(x.dtype()), DTypeError, "[", name, "] needs a floating dtype, got ", x.str());
  const int64_t ax = x.norm_dim(axis);
  const bool last = ax == x.dim() - 1;
  Tensor xin = last ? x : x.transpose(ax, -1);
  Tensor out = Tensor::empty(xin.shape(), x.dtype(), x.device());
  if (out.numel() > 0) backend_for(x.device()).softmax(xin, out, log);  // kernels see no empty rows
  return last ? out : out.transpose(ax, -1).contiguous();
}

Tensor softmax(const Tensor& x, int64_t axis) { return softmax_impl(x, axis, false); }
Tensor log_softmax(const Tensor& x, int64_t axis) { return softmax_impl(x, axis, true); }

Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  ARQ_CHECK(x.dim() > 0 && weight.dim() == 1 && weight.size(0) == x.size(-1), ShapeError,
            "[rms_norm] weight must be [", x.dim() > 0 ? x.size(-1) : 0, "], got ", weight.str(), " for x ", x.str());
  ARQ_CHECK(x.device() == weight.device(), DeviceError, "[rms_norm] x ", x.str(), " and weight ", weight.str(),
            " on different devices");
  ARQ_CHECK(is_floating(x.dtype()) && x.dtype() == weight.dtype(), DTypeError,
            "[rms_norm] needs matching floating dtypes, got ", x.str(), " and ", weight.str());
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (out.numel() > 0) backend_for(x.device()).rms_norm(x, weight, eps, out);  // kernels see no empty rows
  return out;
}

Tensor rope(const Tensor& x, const Tensor& cos, const Tensor& sin, RopeStyle style) {
  ARQ_CHECK(x.dim() > 0 && x.size(-1) % 2 == 0, ShapeError, "[rope] last dim must be even, got ", x.str());
  ARQ_CHECK(cos.shape() == sin.shape(), ShapeError, "[rope] cos ", cos.str(), " and sin ", sin.str(), " differ");
  ARQ_CHECK(x.dtype() == cos.dtype() && x.dtype() == sin.dtype() && is_floating(x.dtype()), DTypeError,
            "[rope] needs matching floating dtypes, got ", x.str(), ", ", cos.str(), ", ", sin.str());
  ARQ_CHECK(x.device() == cos.device() && x.device() == sin.device(), DeviceError, "[rope] operands on different devices");
  Shape half = x.shape();
  half.back() /= 2;
  ARQ_CHECK(cos.dim() > 0 && cos.size(-1) == half.back(), ShapeError, "[rope] cos/sin last dim must be ", half.back(),
            ", got ", cos.str(), " for x ", x.str());
  Shape bs;
  try {
    bs = broadcast_shapes(half, cos.shape(), "rope");
  } catch (const ShapeError&) {
    throw ShapeError(cat("[rope] cos/sin ", cos.str(), " do not broadcast to ", shape_str(half), " for x ", x.str()));
  }
  ARQ_CHECK(bs == half, ShapeError, "[rope] cos/sin ", cos.str(), " do not broadcast to ", shape_str(half));
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  backend_for(x.device()).rope(x, cos.expand(half), sin.expand(half), style, out);
  return out;
}

}  // namespace arq
