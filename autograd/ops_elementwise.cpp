// Elementwise ops and their VJPs. Binary VJPs return gradients in the output's (broadcast)
// shape; backward() sums them down to each operand's shape.
#include "autograd/graph.h"
#include "autograd/ops.h"

namespace arq::ag {

namespace {
Tensor zero_of(const Tensor& g) { return scalar_tensor(0, g.dtype(), g.device()); }
}  // namespace

// ---- binary --------------------------------------------------------------------------------

Var add(const Var& a, const Var& b) {
  // d(a+b) = da + db
  return record("add", arq::add(a.value(), b.value()), {&a, &b},
                [](const Tensor& g, const std::vector<bool>&) { return std::vector<Tensor>{g, g}; });
}

Var sub(const Var& a, const Var& b) {
  // d(a−b) = da − db
  return record("sub", arq::sub(a.value(), b.value()), {&a, &b},
                [](const Tensor& g, const std::vector<bool>& need) {
                  return std::vector<Tensor>{g, need[1] ? arq::neg(g) : Tensor()};
                });
}

Var mul(const Var& a, const Var& b) {
  // d(ab) = b·da + a·db; keep only the factor the other side's gradient needs
  Tensor sa = b.requires_grad() ? a.value() : Tensor(), sb = a.requires_grad() ? b.value() : Tensor();
  return record("mul", arq::mul(a.value(), b.value()), {&a, &b},
                [sa, sb](const Tensor& g, const std::vector<bool>& need) {
                  return std::vector<Tensor>{need[0] ? arq::mul(g, sb) : Tensor(),
                                             need[1] ? arq::mul(g, sa) : Tensor()};
                });
}

Var div(const Var& a, const Var& b) {
  // y = a/b: dy/da = 1/b, dy/db = −a/b² = −y/b
  Tensor y = arq::div(a.value(), b.value());
  Tensor sy = b.requires_grad() ? y : Tensor();
  return record("div", y, {&a, &b}, [sb = b.value(), sy](const Tensor& g, const std::vector<bool>& need) {
    Tensor ga = arq::div(g, sb);
    return std::vector<Tensor>{need[0] ? ga : Tensor(), need[1] ? arq::neg(arq::mul(ga, sy)) : Tensor()};
  });
}

namespace {
// Share of the gradient that goes to `a` in min/max: 1 where a wins, ½ on ties, 0 where b wins.
Tensor first_share(const Tensor& a, const Tensor& b, bool is_min) {
  Tensor one = scalar_tensor(1, a.dtype(), a.device()), half = scalar_tensor(0.5, a.dtype(), a.device());
  Tensor wins = is_min ? arq::lt(a, b) : arq::gt(a, b);
  return arq::where(wins, one, arq::where(arq::eq(a, b), half, zero_of(a)));
}

Var min_max(const Var& a, const Var& b, bool is_min) {
  // d min(a,b) = w·da + (1−w)·db with w = 1[a wins] + ½·1[a == b]
  Tensor y = is_min ? arq::minimum(a.value(), b.value()) : arq::maximum(a.value(), b.value());
  return record(is_min ? "minimum" : "maximum", y, {&a, &b},
                [sa = a.value(), sb = b.value(), is_min](const Tensor& g, const std::vector<bool>&) {
                  Tensor ga = arq::mul(g, first_share(sa, sb, is_min));
                  return std::vector<Tensor>{ga, arq::sub(g, ga)};
                });
}
}  // namespace

Var minimum(const Var& a, const Var& b) { return min_max(a, b, true); }
Var maximum(const Var& a, const Var& b) { return min_max(a, b, false); }

Var where(const Tensor& cond, const Var& a, const Var& b) {
  // y = c ? a : b: the gradient goes to the selected side only
  return record("where", arq::where(cond, a.value(), b.value()), {&a, &b},
                [cond](const Tensor& g, const std::vector<bool>& need) {
                  return std::vector<Tensor>{need[0] ? arq::where(cond, g, zero_of(g)) : Tensor(),
                                             need[1] ? arq::where(cond, zero_of(g), g) : Tensor()};
                });
}

// ---- unary -----------------------------------------------------------------------------------

namespace {
using UnaryVjp = std::function<Tensor(const Tensor& g)>;
Var unary_op(const char* name, Tensor y, const Var& x, UnaryVjp f) {
  return record(name, std::move(y), {&x}, [f = std::move(f)](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{f(g)};
  });
}
}  // namespace

Var neg(const Var& x) {
  // d(−x) = −dx
  return unary_op("neg", arq::neg(x.value()), x, [](const Tensor& g) { return arq::neg(g); });
}

Var exp(const Var& x) {
  // d eˣ = eˣ dx = y dx
  Tensor y = arq::exp(x.value());
  return unary_op("exp", y, x, [y](const Tensor& g) { return arq::mul(g, y); });
}

Var log(const Var& x) {
  // d log x = dx / x
  return unary_op("log", arq::log(x.value()), x, [x0 = x.value()](const Tensor& g) { return arq::div(g, x0); });
}

Var sqrt(const Var& x) {
  // d √x = dx / (2√x) = dx / 2y
  Tensor y = arq::sqrt(x.value());
  return unary_op("sqrt", y, x, [y](const Tensor& g) { return arq::affine(arq::div(g, y), 0.5, 0); });
}

Var rsqrt(const Var& x) {
  // d x^(−½) = −½ x^(−3/2) dx = −½ y³ dx
  Tensor y = arq::rsqrt(x.value());
  return unary_op("rsqrt", y, x, [y](const Tensor& g) { return arq::affine(arq::mul(g, arq::pow(y, 3.0)), -0.5, 0); });
}

Var sigmoid(const Var& x) {
  // σ' = σ(1 − σ)
  Tensor y = arq::sigmoid(x.value());
  return unary_op("sigmoid", y, x,
                  [y](const Tensor& g) { return arq::mul(g, arq::mul(y, arq::affine(y, -1, 1))); });
}

Var silu(const Var& x) {
  // silu = x·σ(x): silu' = σ + xσ(1 − σ) = σ·(1 + x(1 − σ))
  return unary_op("silu", arq::silu(x.value()), x, [x0 = x.value()](const Tensor& g) {
    Tensor s = arq::sigmoid(x0);
    return arq::mul(g, arq::mul(s, arq::affine(arq::mul(x0, arq::affine(s, -1, 1)), 1, 1)));
  });
}

Var tanh(const Var& x) {
  // tanh' = 1 − tanh²
  Tensor y = arq::tanh(x.value());
  return unary_op("tanh", y, x, [y](const Tensor& g) { return arq::mul(g, arq::affine(arq::mul(y, y), -1, 1)); });
}

Var abs(const Var& x) {
  // |x|' = sign(x) (0 at 0)
  return unary_op("abs", arq::abs(x.value()), x, [x0 = x.value()](const Tensor& g) { return arq::mul(g, arq::sign(x0)); });
}

Var pow(const Var& x, double p) {
  // d xᵖ = p·x^(p−1) dx
  return unary_op("pow", arq::pow(x.value(), p), x,
                  [x0 = x.value(), p](const Tensor& g) { return arq::mul(g, arq::affine(arq::pow(x0, p - 1), p, 0)); });
}

Var clamp(const Var& x, double lo, double hi) {
  // clamp' = 1 where lo <= x <= hi (bounds included: there clamp(x) == x), else 0.
  // Saving the u8 mask (1 byte/elem) instead of x keeps the graph small.
  Tensor y = arq::clamp(x.value(), lo, hi);
  Tensor inside = any_requires_grad({&x}) ? arq::eq(y, x.value()) : Tensor();
  return unary_op("clamp", y, x, [inside](const Tensor& g) { return arq::where(inside, g, zero_of(g)); });
}

Var round_ste(const Var& x) {
  // straight-through: treat round as the identity in backward
  return unary_op("round_ste", arq::round(x.value()), x, [](const Tensor& g) { return g; });
}

Var affine(const Var& x, double scale, double shift) {
  // d(s·x + t) = s·dx
  return unary_op("affine", arq::affine(x.value(), scale, shift), x,
                  [scale](const Tensor& g) { return arq::affine(g, scale, 0); });
}

// ---- operators -----------------------------------------------------------------------------

Var operator+(const Var& a, const Var& b) { return add(a, b); }
Var operator-(const Var& a, const Var& b) { return sub(a, b); }
Var operator*(const Var& a, const Var& b) { return mul(a, b); }
Var operator/(const Var& a, const Var& b) { return div(a, b); }
Var operator-(const Var& x) { return neg(x); }
Var operator+(const Var& a, double b) { return affine(a, 1, b); }
Var operator-(const Var& a, double b) { return affine(a, 1, -b); }
Var operator*(const Var& a, double b) { return affine(a, b, 0); }
Var operator/(const Var& a, double b) {
  // d(a/b) = da/b; divides (not multiplies by 1/b) so the forward matches the engine bit for bit
  return unary_op("div_scalar", arq::binary(BinaryOp::div, a.value(), b), a,
                  [b](const Tensor& g) { return arq::binary(BinaryOp::div, g, b); });
}
Var operator+(double a, const Var& b) { return affine(b, 1, a); }
Var operator-(double a, const Var& b) { return affine(b, -1, a); }
Var operator*(double a, const Var& b) { return affine(b, a, 0); }

}  // namespace arq::ag
