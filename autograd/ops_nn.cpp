// matmul, reductions, softmax, RMSNorm, RoPE and their VJPs.
#include "autograd/graph.h"
#include "autograd/ops.h"

namespace arq::ag {

// ---- matmul ----------------------------------------------------------------------------------

namespace {
// Aᵀ·G summed over A's batch, for a B with `b_dim` dims. For a 2-D B the batch is folded into
// the rows so the whole weight gradient is one GEMM ([k, B·m] · [B·m, n]) instead of B GEMMs
// and a reduction. When B is a transposed view (a linear layer's Wᵀ of a row-major W [n, k]),
// the gradient is computed as (Gᵀ·A)ᵀ: same FLOPs, but the result is W-shaped and contiguous
// once the transpose's VJP undoes the view, so the leaf needs no transposing copy.
Tensor grad_rhs(const Tensor& a, const Tensor& g, int64_t b_dim, bool b_transposed) {
  if (b_dim == 2) {
    const int64_t k = a.size(-1), n = g.size(-1);
    Tensor a2 = a.dim() > 2 ? a.reshape({-1, k}) : a, g2 = g.dim() > 2 ? g.reshape({-1, n}) : g;
    return b_transposed ? arq::matmul(g2.t(), a2).t() : arq::matmul(a2.t(), g2);
  }
  return arq::matmul(a.t(), g);  // broadcast batch dims are summed by backward()
}

// Column-major 2-D view (strides {1, rows}), e.g. transpose(W) of a row-major W.
bool is_transposed_2d(const Tensor& t) {
  return t.dim() == 2 && t.size(0) > 1 && t.size(1) > 1 && t.stride(0) == 1 && t.stride(1) == t.size(0);
}
}  // namespace

Var matmul(const Var& a, const Var& b) {
  // C = A·B: dA = dC·Bᵀ, dB = Aᵀ·dC
  Tensor sa = b.requires_grad() ? a.value() : Tensor(), sb = a.requires_grad() ? b.value() : Tensor();
  const int64_t b_dim = b.dim();
  const bool b_t = is_transposed_2d(b.value());
  return record("matmul", arq::matmul(a.value(), b.value()), {&a, &b},
                [sa, sb, b_dim, b_t](const Tensor& g, const std::vector<bool>& need) {
                  return std::vector<Tensor>{need[0] ? arq::matmul(g, sb.t()) : Tensor(),
                                             need[1] ? grad_rhs(sa, g, b_dim, b_t) : Tensor()};
                });
}

// ---- reductions ------------------------------------------------------------------------------

namespace {
// Put a reduced cotangent back on x's shape (a stride-0 view: no copy).
Tensor spread(const Tensor& g, int64_t axis, bool keepdim, const Shape& shape) {
  return (keepdim ? g : g.unsqueeze(axis)).expand(shape);
}
}  // namespace

Var sum(const Var& x, int64_t axis, bool keepdim) {
  // d Σᵢ xᵢ / d xⱼ = 1
  const int64_t ax = x.value().norm_dim(axis);
  return record("sum", arq::sum(x.value(), ax, keepdim), {&x},
                [ax, keepdim, shape = x.shape()](const Tensor& g, const std::vector<bool>&) {
                  return std::vector<Tensor>{spread(g, ax, keepdim, shape)};
                });
}

Var mean(const Var& x, int64_t axis, bool keepdim) {
  // d mean / d xⱼ = 1/n
  const int64_t ax = x.value().norm_dim(axis);
  const double n = static_cast<double>(x.size(ax));
  return record("mean", arq::mean(x.value(), ax, keepdim), {&x},
                [ax, keepdim, n, shape = x.shape()](const Tensor& g, const std::vector<bool>&) {
                  return std::vector<Tensor>{spread(arq::affine(g, 1 / n, 0), ax, keepdim, shape)};
                });
}

Var sum_all(const Var& x) {
  // every element contributes once
  return record("sum_all", arq::sum_all(x.value()), {&x}, [shape = x.shape()](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{g.expand(shape)};
  });
}

Var mean_all(const Var& x) {
  // every element contributes 1/N
  const double n = static_cast<double>(x.numel());
  return record("mean_all", arq::mean_all(x.value()), {&x},
                [n, shape = x.shape()](const Tensor& g, const std::vector<bool>&) {
                  return std::vector<Tensor>{arq::affine(g, 1 / n, 0).expand(shape)};
                });
}

Var sum_to(const Var& x, const Shape& shape) {
  // inverse of broadcasting: the cotangent is broadcast back
  return record("sum_to", arq::sum_to(x.value(), shape), {&x},
                [in = x.shape()](const Tensor& g, const std::vector<bool>&) { return std::vector<Tensor>{g.expand(in)}; });
}

// ---- softmax -------------------------------------------------------------------------------

Var softmax(const Var& x, int64_t axis) {
  // y = softmax(x): dx = y ⊙ (g − Σ(g ⊙ y))
  const int64_t ax = x.value().norm_dim(axis);
  Tensor y = arq::softmax(x.value(), ax);
  return record("softmax", y, {&x}, [y, ax](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{arq::mul(y, arq::sub(g, arq::sum(arq::mul(g, y), ax, true)))};
  });
}

Var log_softmax(const Var& x, int64_t axis) {
  // y = x − logΣeˣ: dx = g − softmax(x)·Σg = g − eʸ·Σg
  const int64_t ax = x.value().norm_dim(axis);
  Tensor y = arq::log_softmax(x.value(), ax);
  return record("log_softmax", y, {&x}, [y, ax](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{arq::sub(g, arq::mul(arq::exp(y), arq::sum(g, ax, true)))};
  });
}

// ---- RMSNorm -------------------------------------------------------------------------------

namespace {
// 16-bit inputs differentiate in f32 (the reduction over d would lose bits), others as is.
DType rms_compute_dtype(DType t) { return (t == DType::f16 || t == DType::bf16) ? DType::f32 : t; }
}  // namespace

Var rms_norm(const Var& x, const Var& w, double eps) {
  // y = w ⊙ x·r, r = (Σx²/d + ε)^(−½), ∂r/∂xⱼ = −r³xⱼ/d:
  //   dx = r·(g⊙w) − x·r³·mean(g⊙w⊙x),  dw = Σ_rows g⊙x·r
  return record("rms_norm", arq::rms_norm(x.value(), w.value(), eps), {&x, &w},
                [x0 = x.value(), w0 = w.value(), eps](const Tensor& g_in, const std::vector<bool>& need) {
                  const DType ct = rms_compute_dtype(x0.dtype());
                  Tensor xf = arq::cast(x0, ct), wf = arq::cast(w0, ct), g = arq::cast(g_in, ct);
                  const double d = static_cast<double>(x0.size(-1));
                  Tensor r = arq::rsqrt(arq::affine(arq::sum_squares(xf, -1, true), 1 / d, eps));  // [..., 1]
                  Tensor gx, gw;
                  if (need[0]) {
                    Tensor gwx = arq::mul(g, wf);                                    // [..., d]
                    Tensor m = arq::mean(arq::mul(gwx, xf), -1, true);               // [..., 1]
                    Tensor r3m = arq::mul(arq::mul(arq::mul(r, r), r), m);           // [..., 1]
                    gx = arq::sub(arq::mul(gwx, r), arq::mul(xf, r3m));
                  }
                  if (need[1]) gw = arq::sum_to(arq::mul(g, arq::mul(xf, r)), w0.shape());
                  return std::vector<Tensor>{gx, gw};
                });
}

// ---- RoPE ----------------------------------------------------------------------------------

Var rope(const Var& x, const Tensor& cos, const Tensor& sin, RopeStyle style) {
  // each pair is rotated by R(θ); the VJP applies Rᵀ = R(−θ): rope with −sin
  return record("rope", arq::rope(x.value(), cos, sin, style), {&x},
                [cos, sin, style](const Tensor& g, const std::vector<bool>&) {
                  return std::vector<Tensor>{arq::rope(g, cos, arq::neg(sin), style)};
                });
}

}  // namespace arq::ag
