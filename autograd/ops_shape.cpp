// Gathers, scatters, joins, views and casts, and their VJPs.
#include <numeric>

#include "autograd/graph.h"
#include "autograd/ops.h"

namespace arq::ag {

namespace {
std::vector<const Var*> ptrs(const std::vector<Var>& xs) {
  std::vector<const Var*> p;
  for (const Var& x : xs) p.push_back(&x);
  return p;
}
}  // namespace

Var embedding(const Var& table, const Tensor& ids) {
  // y[i] = T[ids[i]]: dT[v] = Σ_{i: ids[i] = v} g[i]
  return record("embedding", arq::embedding(table.value(), ids), {&table},
                [ids, shape = table.shape(), dt = table.dtype()](const Tensor& g, const std::vector<bool>&) {
                  Tensor flat = ids.reshape({ids.numel()});
                  Tensor g2 = g.reshape({ids.numel(), shape[1]});
                  return std::vector<Tensor>{arq::scatter_add(zeros(shape, dt, g.device()), 0, flat, g2)};
                });
}

Var index_select(const Var& x, int64_t dim, const Tensor& idx) {
  // y.select(d, i) = x.select(d, idx[i]): dx gathers back by scatter-add (repeats add up)
  const int64_t d = x.value().norm_dim(dim);
  return record("index_select", arq::index_select(x.value(), d, idx), {&x},
                [d, idx, shape = x.shape(), dt = x.dtype()](const Tensor& g, const std::vector<bool>&) {
                  return std::vector<Tensor>{arq::scatter_add(zeros(shape, dt, g.device()), d, idx, g)};
                });
}

Var scatter_add(const Var& base, int64_t dim, const Tensor& idx, const Var& src) {
  // y = base + scatter(src): d base = g, d src[i] = g.select(d, idx[i])
  const int64_t d = base.value().norm_dim(dim);
  return record("scatter_add", arq::scatter_add(base.value(), d, idx, src.value()), {&base, &src},
                [d, idx](const Tensor& g, const std::vector<bool>& need) {
                  return std::vector<Tensor>{need[0] ? g : Tensor(), need[1] ? arq::index_select(g, d, idx) : Tensor()};
                });
}

Var concat(const std::vector<Var>& xs, int64_t dim) {
  // each input receives its own slice of the cotangent
  std::vector<Tensor> vals;
  for (const Var& x : xs) vals.push_back(x.value());
  Tensor y = arq::concat(vals, dim);
  const int64_t d = y.norm_dim(dim);
  std::vector<int64_t> sizes;
  for (const Var& x : xs) sizes.push_back(x.size(d));
  return record("concat", y, ptrs(xs), [d, sizes](const Tensor& g, const std::vector<bool>& need) {
    std::vector<Tensor> out(sizes.size());
    int64_t start = 0;
    for (size_t i = 0; i < sizes.size(); start += sizes[i], ++i)
      if (need[i]) out[i] = g.narrow(d, start, sizes[i]);
    return out;
  });
}

Var stack(const std::vector<Var>& xs, int64_t dim) {
  // input i receives the cotangent's i-th slice along the new dim
  std::vector<Tensor> vals;
  for (const Var& x : xs) vals.push_back(x.value());
  Tensor y = arq::stack(vals, dim);
  const int64_t d = y.norm_dim(dim);
  return record("stack", y, ptrs(xs), [d](const Tensor& g, const std::vector<bool>& need) {
    std::vector<Tensor> out(need.size());
    for (size_t i = 0; i < need.size(); ++i)
      if (need[i]) out[i] = g.select(d, static_cast<int64_t>(i));
    return out;
  });
}

Var reshape(const Var& x, const Shape& shape) {
  // a reshape moves no values: reshape the cotangent back
  return record("reshape", x.value().reshape(shape), {&x}, [in = x.shape()](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{g.reshape(in)};
  });
}

Var permute(const Var& x, std::vector<int64_t> order) {
  // y = xᵖ: dx = g permuted by p⁻¹
  Tensor y = x.value().permute(order);
  std::vector<int64_t> inv(order.size());
  for (size_t i = 0; i < order.size(); ++i) {
    const int64_t o = order[i] < 0 ? order[i] + x.dim() : order[i];
    inv[static_cast<size_t>(o)] = static_cast<int64_t>(i);
  }
  return record("permute", y, {&x}, [inv](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{g.permute(inv)};
  });
}

Var transpose(const Var& x, int64_t a, int64_t b) {
  // a swap is its own inverse
  return record("transpose", x.value().transpose(a, b), {&x}, [a, b](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{g.transpose(a, b)};
  });
}

Var narrow(const Var& x, int64_t dim, int64_t start, int64_t length) {
  // dx is g inside the window and 0 outside
  const int64_t d = x.value().norm_dim(dim);
  return record("narrow", x.value().narrow(d, start, length), {&x},
                [d, start, length, shape = x.shape()](const Tensor& g, const std::vector<bool>&) {
                  Tensor gx = zeros(shape, g.dtype(), g.device());
                  Tensor window = gx.narrow(d, start, length);
                  copy_(window, g);
                  return std::vector<Tensor>{gx};
                });
}

Var select(const Var& x, int64_t dim, int64_t index) {
  // dx is g at the selected index and 0 elsewhere
  const int64_t d = x.value().norm_dim(dim);
  return record("select", x.value().select(d, index), {&x},
                [d, index, shape = x.shape()](const Tensor& g, const std::vector<bool>&) {
                  Tensor gx = zeros(shape, g.dtype(), g.device());
                  Tensor slot = gx.select(d, index);
                  copy_(slot, g);
                  return std::vector<Tensor>{gx};
                });
}

Var unsqueeze(const Var& x, int64_t dim) {
  return record("unsqueeze", x.value().unsqueeze(dim), {&x}, [in = x.shape()](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{g.reshape(in)};
  });
}

Var squeeze(const Var& x, int64_t dim) {
  return record("squeeze", x.value().squeeze(dim), {&x}, [in = x.shape()](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{g.reshape(in)};
  });
}

Var expand(const Var& x, const Shape& shape) {
  // broadcast copies: backward() sums the cotangent back to x's shape
  return record("expand", x.value().expand(shape), {&x},
                [](const Tensor& g, const std::vector<bool>&) { return std::vector<Tensor>{g}; });
}

Var contiguous(const Var& x) {
  return record("contiguous", x.value().contiguous(), {&x},
                [](const Tensor& g, const std::vector<bool>&) { return std::vector<Tensor>{g}; });
}

Var cast(const Var& x, DType dtype) {
  // identity up to rounding: the cotangent is cast back to x's dtype (by backward())
  return record("cast", arq::cast(x.value(), dtype), {&x},
                [](const Tensor& g, const std::vector<bool>&) { return std::vector<Tensor>{g}; });
}

}  // namespace arq::ag
