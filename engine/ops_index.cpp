// Gathers, scatters, joins, top-k.
#include "engine/ops.h"

namespace arq {

namespace {
void check_index(const char* op, const Tensor& index, const Tensor& x) {
  ARQ_CHECK(index.dtype() == DType::i64 || index.dtype() == DType::i32, DTypeError, "[", op,
            "] index must be i32 or i64, got ", index.str());
  ARQ_CHECK(index.device() == x.device(), DeviceError, "[", op, "] index ", index.str(), " and input ", x.str(),
            " on different devices");
}
}  // namespace

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  check_index("index_select", index, x);
  ARQ_CHECK(index.dim() == 1, ShapeError, "[index_select] index must be 1-D, got ", index.str());
  const int64_t d = x.norm_dim(dim);
  Shape shape = x.shape();
  shape[d] = index.size(0);
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  backend_for(x.device()).index_select(x, d, index, out);
  return out;
}

Tensor embedding(const Tensor& table, const Tensor& ids) {
  ARQ_CHECK(table.dim() == 2, ShapeError, "[embedding] table must be [vocab, dim], got ", table.str());
  check_index("embedding", ids, table);
  Tensor flat;
  try {
    flat = index_select(table, 0, ids.reshape({ids.numel()}));
  } catch (const ShapeError& e) {  // an id out of range: say which op and table
    throw ShapeError(cat("[embedding] table ", table.str(), " ids ", ids.str(), ": ", e.what()));
  }
  Shape shape = ids.shape();
  shape.push_back(table.size(1));
  return flat.view(shape);
}

Tensor scatter_add(const Tensor& base, int64_t dim, const Tensor& index, const Tensor& src) {
  check_index("scatter_add", index, base);
  ARQ_CHECK(index.dim() == 1, ShapeError, "[scatter_add] index must be 1-D, got ", index.str());
  ARQ_CHECK(base.dtype() == src.dtype(), DTypeError, "[scatter_add] dtypes differ: ", base.str(), " and ", src.str());
  ARQ_CHECK(base.device() == src.device(), DeviceError, "[scatter_add] base ", base.str(), " and src ", src.str(),
            " on different devices");
  const int64_t d = base.norm_dim(dim);
  Shape expect = base.shape();
  expect[d] = index.size(0);
  ARQ_CHECK(src.shape() == expect, ShapeError, "[scatter_add] src must be ", shape_str(expect), " for base ",
            base.str(), " and index ", index.str(), ", got ", src.str());
  Tensor out = base.clone();
  backend_for(base.device()).index_add(out, d, index, src);
  return out;
}

Tensor concat(const std::vector<Tensor>& xs, int64_t dim) {
  ARQ_CHECK(!xs.empty(), ShapeError, "[concat] no tensors");
  const Tensor& x0 = xs[0];
  const int64_t d = x0.norm_dim(dim);
  Shape shape = x0.shape();
  int64_t total = 0;
  for (const Tensor& x : xs) {
    ARQ_CHECK(x.dim() == x0.dim() && x.dtype() == x0.dtype() && x.device() == x0.device(), ShapeError,
              "[concat] ", x.str(), " does not match ", x0.str());
    for (int64_t i = 0; i < x.dim(); ++i) {
      ARQ_CHECK(i == d || x.size(i) == x0.size(i), ShapeError, "[concat] along dim ", d, ": ", x.str(),
                " does not match ", x0.str());
    }
    total += x.size(d);
  }
  shape[d] = total;
  Tensor out = Tensor::empty(shape, x0.dtype(), x0.device());
  int64_t at = 0;
  for (const Tensor& x : xs) {
    Tensor dst = out.narrow(d, at, x.size(d));
    backend_for(out.device()).copy(x, dst);
    at += x.size(d);
  }
  return out;
}

Tensor stack(const std::vector<Tensor>& xs, int64_t dim) {
  ARQ_CHECK(!xs.empty(), ShapeError, "[stack] no tensors");
  std::vector<Tensor> us;
  const int64_t n = xs[0].dim() + 1;
  ARQ_CHECK(dim >= -n && dim < n, ShapeError, "[stack] dimension ", dim, " out of range for ", xs[0].str());
  for (const Tensor& x : xs) {
    ARQ_CHECK(x.shape() == xs[0].shape(), ShapeError, "[stack] ", x.str(), " does not match ", xs[0].str());
    us.push_back(x.unsqueeze(dim));
  }
  return concat(us, dim);
}

std::pair<Tensor, Tensor> topk(const Tensor& x, int64_t k) {
  ARQ_CHECK(x.dim() > 0, ShapeError, "[topk] needs at least one dimension, got ", x.str());
  ARQ_CHECK(k >= 0 && k <= x.size(-1), ShapeError, "[topk] k = ", k, " out of range for ", x.str());
  Shape shape = x.shape();
  shape.back() = k;
  Tensor values = Tensor::empty(shape, x.dtype(), x.device());
  Tensor indices = Tensor::empty(shape, DType::i64, x.device());
  if (values.numel() > 0) backend_for(x.device()).topk(x, k, values, indices);  // k = 0 or no rows: nothing to do
  return {values, indices};
}

}  // namespace arq
