// Op builders: check shapes and dtypes, allocate the output, dispatch to the device's kernel.
//
// Broadcasting follows NumPy: shapes are aligned on the right, a dimension of 1 stretches.
// Binary ops require both operands to share a dtype (no silent promotion); a scalar operand
// takes the tensor's dtype. Comparisons return u8 (0/1). Errors name the op and all shapes:
//   add(f32[5, 7], f32[3]) -> ShapeError "[add] cannot broadcast f32[5, 7] cpu with f32[3] cpu"
//
//   Tensor y = silu(matmul(x, w.t()));        // x [n, in], w [out, in] -> y [n, out]
#pragma once

#include <utility>
#include <vector>

#include "engine/backend.h"
#include "engine/tensor.h"

namespace arq {

// ---- creation ------------------------------------------------------------------------
Tensor full(const Shape& shape, double value, DType dtype = DType::f32, Device device = Device::cpu());
Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
Tensor ones(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
Tensor scalar_tensor(double value, DType dtype = DType::f32, Device device = Device::cpu());  // 0-d
Tensor zeros_like(const Tensor& x);
Tensor ones_like(const Tensor& x);
Tensor arange(double start, double end, double step = 1, DType dtype = DType::i64, Device device = Device::cpu());
// Deterministic random: the same (shape, seed) gives the same values on every thread count.
Tensor rand_uniform(const Shape& shape, uint64_t seed, double lo = 0, double hi = 1,
                    DType dtype = DType::f32, Device device = Device::cpu());
Tensor rand_normal(const Shape& shape, uint64_t seed, double mean = 0, double stddev = 1,
                   DType dtype = DType::f32, Device device = Device::cpu());
// Host vector -> tensor (tests, tables).
Tensor from_vector(const std::vector<double>& v, const Shape& shape, DType dtype = DType::f32);
// Tensor -> host vector of doubles (any device, any layout).
std::vector<double> to_vector(const Tensor& x);

// In place: dst[...] = src (broadcast to dst's shape, cast to dst's dtype). dst may be a view.
void copy_(Tensor& dst, const Tensor& src);
void fill_(Tensor& dst, double value);

// ---- elementwise ---------------------------------------------------------------------
Tensor neg(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor silu(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sign(const Tensor& x);   // -1, 0, +1 (0 for ±0; NaN stays NaN)
Tensor round(const Tensor& x);  // round half to even
Tensor floor(const Tensor& x);
Tensor pow(const Tensor& x, double exponent);
Tensor clamp(const Tensor& x, double lo, double hi);
Tensor affine(const Tensor& x, double scale, double shift);  // scale * x + shift, one pass

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b);
Tensor binary(BinaryOp op, const Tensor& a, double b);   // scalar in a's dtype
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);

Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a);
Tensor operator+(const Tensor& a, double b);
Tensor operator-(const Tensor& a, double b);
Tensor operator*(const Tensor& a, double b);
Tensor operator/(const Tensor& a, double b);
Tensor operator*(double a, const Tensor& b);

// Broadcast shape of two shapes; throws ShapeError naming `op`.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

// ---- reductions (over one axis) -------------------------------------------------------
Tensor sum(const Tensor& x, int64_t axis, bool keepdim = false);
Tensor mean(const Tensor& x, int64_t axis, bool keepdim = false);
Tensor max(const Tensor& x, int64_t axis, bool keepdim = false);
Tensor min(const Tensor& x, int64_t axis, bool keepdim = false);
Tensor argmax(const Tensor& x, int64_t axis, bool keepdim = false);  // i64
Tensor sum_squares(const Tensor& x, int64_t axis, bool keepdim = false);
Tensor reduce(ReduceOp op, const Tensor& x, int64_t axis, bool keepdim);
Tensor sum_all(const Tensor& x);   // 0-d
Tensor mean_all(const Tensor& x);  // 0-d
// Sum `x` down to `shape` (the inverse of broadcasting; used by VJPs).
Tensor sum_to(const Tensor& x, const Shape& shape);

// ---- neural-net ops --------------------------------------------------------------------
// A [..., m, k] · B [..., k, n] -> [..., m, n]; batch dims broadcast; 1-D operands are not
// promoted (use unsqueeze). f32/f64/f16/bf16 with f32 accumulation for the 16-bit types.
Tensor matmul(const Tensor& a, const Tensor& b);
Tensor softmax(const Tensor& x, int64_t axis = -1);
Tensor log_softmax(const Tensor& x, int64_t axis = -1);
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps);  // over the last axis
// x [..., d]; cos, sin broadcastable to [..., d/2].
Tensor rope(const Tensor& x, const Tensor& cos, const Tensor& sin, RopeStyle style);

// ---- indexing, joining -------------------------------------------------------------------
Tensor embedding(const Tensor& table, const Tensor& ids);  // table [v, d], ids [...] -> [..., d]
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);  // index 1-D i32/i64
// base + src scattered along dim: out.select(dim, index[i]) += src.select(dim, i).
Tensor scatter_add(const Tensor& base, int64_t dim, const Tensor& index, const Tensor& src);
Tensor concat(const std::vector<Tensor>& xs, int64_t dim);
Tensor stack(const std::vector<Tensor>& xs, int64_t dim);
std::pair<Tensor, Tensor> topk(const Tensor& x, int64_t k);  // last axis; values, i64 indices
Tensor cast(const Tensor& x, DType dtype);

}  // namespace arq
