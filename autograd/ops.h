// Differentiable ops: each mirrors the engine op of the same name (engine/ops.h: same shapes,
// dtypes, broadcasting and errors) and, in grad mode, records its VJP (autograd/vjp_*.cpp).
//
// Tensor arguments (cond, cos/sin, ids, idx) are constants: no gradient flows into them.
// Gradients of broadcast operands are summed back to their own shape.
//
//   Var h = silu(matmul(x, transpose(w_gate, 0, 1))) * matmul(x, transpose(w_up, 0, 1));
//   Var q = rope(reshape(matmul(x, transpose(wq, 0, 1)), {b, s, nh, hd}), cos, sin,
//                RopeStyle::rotate_half);
#pragma once

#include <cstdint>
#include <vector>

#include "autograd/var.h"
#include "engine/ops.h"

namespace arq::ag {

// ---- matmul ------------------------------------------------------------------------------
// a [..., m, k] · b [..., k, n] -> [..., m, n]; batch dims broadcast.
Var matmul(const Var& a, const Var& b);

// ---- elementwise (NumPy broadcasting) ----------------------------------------------------
Var add(const Var& a, const Var& b);
Var sub(const Var& a, const Var& b);
Var mul(const Var& a, const Var& b);
Var div(const Var& a, const Var& b);
// Ties (a == b) split the gradient evenly between a and b.
Var minimum(const Var& a, const Var& b);
Var maximum(const Var& a, const Var& b);
// cond (u8, broadcastable) ? a : b; the gradient goes to the chosen side only.
Var where(const Tensor& cond, const Var& a, const Var& b);

Var neg(const Var& x);
Var exp(const Var& x);
Var log(const Var& x);
Var sqrt(const Var& x);
Var rsqrt(const Var& x);
Var sigmoid(const Var& x);
Var silu(const Var& x);
Var tanh(const Var& x);
Var abs(const Var& x);  // gradient sign(x) (0 at 0)
Var pow(const Var& x, double exponent);
// Gradient passes where lo <= x <= hi (bounds included), zero outside.
Var clamp(const Var& x, double lo, double hi);
// Forward: round half to even; backward: identity (straight-through estimator).
Var round_ste(const Var& x);
Var affine(const Var& x, double scale, double shift);  // scale * x + shift

Var operator+(const Var& a, const Var& b);
Var operator-(const Var& a, const Var& b);
Var operator*(const Var& a, const Var& b);
Var operator/(const Var& a, const Var& b);
Var operator-(const Var& x);
Var operator+(const Var& a, double b);
Var operator-(const Var& a, double b);
Var operator*(const Var& a, double b);
Var operator/(const Var& a, double b);
Var operator+(double a, const Var& b);
Var operator-(double a, const Var& b);
Var operator*(double a, const Var& b);

// ---- reductions --------------------------------------------------------------------------
Var sum(const Var& x, int64_t axis, bool keepdim = false);
Var mean(const Var& x, int64_t axis, bool keepdim = false);
Var sum_all(const Var& x);   // 0-d
Var mean_all(const Var& x);  // 0-d
Var sum_to(const Var& x, const Shape& shape);  // inverse of broadcasting

// ---- neural-net ops ------------------------------------------------------------------------
Var softmax(const Var& x, int64_t axis = -1);
Var log_softmax(const Var& x, int64_t axis = -1);
// x [..., d], w [d]: x * rsqrt(mean(x², -1) + eps) * w. Backward in f32 for 16-bit inputs.
Var rms_norm(const Var& x, const Var& w, double eps);
// x [..., d]; cos/sin broadcastable to [..., d/2]. Backward is rope with -sin (a rotation's
// transpose is the rotation by the opposite angle).
Var rope(const Var& x, const Tensor& cos, const Tensor& sin, RopeStyle style);

// ---- indexing, joining, views --------------------------------------------------------------
Var embedding(const Var& table, const Tensor& ids);  // table [v, d], ids [...] -> [..., d]
Var index_select(const Var& x, int64_t dim, const Tensor& idx);  // idx 1-D i32/i64
// base + src scattered along dim at idx (see engine scatter_add).
Var scatter_add(const Var& base, int64_t dim, const Tensor& idx, const Var& src);
Var concat(const std::vector<Var>& xs, int64_t dim);
Var stack(const std::vector<Var>& xs, int64_t dim);
Var reshape(const Var& x, const Shape& shape);
Var permute(const Var& x, std::vector<int64_t> order);
Var transpose(const Var& x, int64_t a, int64_t b);
Var narrow(const Var& x, int64_t dim, int64_t start, int64_t length);
Var select(const Var& x, int64_t dim, int64_t index);  // drops dim
Var unsqueeze(const Var& x, int64_t dim);
Var squeeze(const Var& x, int64_t dim);
Var expand(const Var& x, const Shape& shape);
Var contiguous(const Var& x);
Var cast(const Var& x, DType dtype);  // gradient cast back to x's dtype

}  // namespace arq::ag
