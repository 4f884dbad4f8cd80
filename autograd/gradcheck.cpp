// Central finite differences in f64 against backprop vector-Jacobian products.
#include "autograd/gradcheck.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "autograd/ops.h"

namespace arq::ag {

namespace {

// f64 CPU copy of x; with `transposed`, laid out with the last two dims swapped in memory.
Tensor prepare(const Tensor& x, bool transposed) {
  Tensor c = x.to(Device::cpu());
  if (!is_floating(c.dtype())) return c.clone();
  if (transposed && c.dim() >= 2) {
    Shape s = c.shape();
    std::swap(s[s.size() - 1], s[s.size() - 2]);
    Tensor t = Tensor::empty(s, DType::f64).transpose(-2, -1);  // [.., a, b] view of [.., b, a]
    copy_(t, c);
    return t;
  }
  Tensor t = Tensor::empty(c.shape(), DType::f64);
  copy_(t, c);
  return t;
}

// Storage offset (elements, from element 0) of the j-th element in row-major logical order.
int64_t element_offset(const Tensor& x, int64_t j) {
  int64_t off = 0;
  for (int64_t d = x.dim() - 1; d >= 0; --d) {
    off += (j % x.size(d)) * x.stride(d);
    j /= x.size(d);
  }
  return off;
}

std::vector<double> eval(const std::function<Var(const std::vector<Var>&)>& fn, const std::vector<Var>& leaves) {
  NoGrad ng;
  return to_vector(fn(leaves).value());
}

}  // namespace

GradCheckResult check_gradients(const std::function<Var(const std::vector<Var>&)>& fn,
                                const std::vector<Tensor>& inputs, const GradCheckOptions& opt) {
  GradCheckResult res;
  std::ostringstream rep;
  int n_fail = 0;
  std::vector<Var> leaves;
  std::vector<bool> check(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    Tensor v = prepare(inputs[i], opt.non_contiguous);
    check[i] = is_floating(v.dtype()) && (i >= opt.wrt.size() || opt.wrt[i]);
    leaves.emplace_back(v, check[i]);
  }
  const std::vector<double> y0 = eval(fn, leaves);
  Shape out_shape;
  {
    NoGrad ng;
    out_shape = fn(leaves).shape();
  }
  const auto ny = static_cast<int64_t>(y0.size());

  // Cotangents: basis vectors for small outputs, random normal ones otherwise.
  std::vector<std::vector<double>> cots;
  if (ny <= opt.max_basis) {
    for (int64_t k = 0; k < ny; ++k) {
      std::vector<double> e(static_cast<size_t>(ny), 0.0);
      e[static_cast<size_t>(k)] = 1.0;
      cots.push_back(e);
    }
  } else {
    for (int r = 0; r < opt.n_random; ++r)
      cots.push_back(to_vector(rand_normal({ny}, opt.seed + static_cast<uint64_t>(r), 0, 1, DType::f64)));
  }

  // Backprop: one fresh forward + backward per cotangent (backward frees the graph).
  // bp[c][i] = uᶜᵀ·∂y/∂xᵢ flattened in row-major order.
  std::vector<std::vector<std::vector<double>>> bp(cots.size());
  for (size_t c = 0; c < cots.size(); ++c) {
    for (Var& l : leaves) l.zero_grad();
    Var y = fn(leaves);
    ARQ_CHECK(y.requires_grad(), UsageError, "[check_gradients] the output ", y.str(), " does not depend on any input");
    backward(y, from_vector(cots[c], out_shape, y.dtype()));
    for (size_t i = 0; i < leaves.size(); ++i) {
      Tensor g = leaves[i].grad();
      bp[c].push_back(g.defined() ? to_vector(g) : std::vector<double>(static_cast<size_t>(leaves[i].numel()), 0.0));
    }
  }
  for (Var& l : leaves) l.zero_grad();

  // Numeric: one Jacobian column per input element, dotted with every cotangent.
  for (size_t i = 0; i < leaves.size(); ++i) {
    if (!check[i]) continue;
    const Tensor& x = leaves[i].value();
    double* base = x.data<double>();
    for (int64_t j = 0; j < x.numel(); ++j) {
      double* e = base + element_offset(x, j);
      const double orig = *e;
      *e = orig + opt.eps;
      const std::vector<double> yp = eval(fn, leaves);
      *e = orig - opt.eps;
      const std::vector<double> ym = eval(fn, leaves);
      *e = orig;
      for (size_t c = 0; c < cots.size(); ++c) {
        double num = 0;
        for (int64_t k = 0; k < ny; ++k)
          num += cots[c][static_cast<size_t>(k)] * (yp[static_cast<size_t>(k)] - ym[static_cast<size_t>(k)]) /
                 (2 * opt.eps);
        const double b = bp[c][i][static_cast<size_t>(j)];
        const double err = std::abs(b - num);
        const double rel = err / std::max(1.0, std::abs(num));
        res.max_abs_err = std::max(res.max_abs_err, err);
        res.max_rel_err = std::max(res.max_rel_err, rel);
        if (!(rel <= opt.tol)) {  // NaN fails too
          res.ok = false;
          if (n_fail++ < 8)
            rep << "input " << i << " " << x.str() << " element " << j << " cotangent " << c << ": backprop " << b
                << " vs numeric " << num << " (rel err " << rel << ")\n";
        }
      }
    }
  }
  if (n_fail > 8) rep << "... " << (n_fail - 8) << " more mismatches\n";
  rep << "max abs err " << res.max_abs_err << ", max rel err " << res.max_rel_err << " (tol " << opt.tol << ")";
  res.report = rep.str();
  return res;
}

GradCheckResult check_gradients(const std::function<Var(const std::vector<Var>&)>& fn,
                                const std::vector<Tensor>& inputs, double eps, double tol) {
  GradCheckOptions o;
  o.eps = eps;
  o.tol = tol;
  return check_gradients(fn, inputs, o);
}

}  // namespace arq::ag
