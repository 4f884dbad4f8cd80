// Elementwise builders: broadcasting, dtype and device checks, then one kernel call.
#include "engine/ops.h"

namespace arq {

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    ARQ_CHECK(da == db || da == 1 || db == 1, ShapeError, "[", op, "] cannot broadcast ", shape_str(a), " with ",
              shape_str(b));
    out[i] = da == 1 ? db : da;
  }
  return out;
}

namespace {

void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  ARQ_CHECK(a.device() == b.device(), DeviceError, "[", op, "] operands on different devices: ", a.str(), " and ",
            b.str());
}

Tensor unary(UnaryOp op, const Tensor& x, double p0 = 0, double p1 = 0) {
  ARQ_CHECK(x.defined(), ShapeError, "[", unary_name(op), "] undefined input");
  const bool int_ok = op == UnaryOp::neg || op == UnaryOp::abs || op == UnaryOp::sign || op == UnaryOp::clamp ||
                      op == UnaryOp::affine;
  ARQ_CHECK(is_floating(x.dtype()) || int_ok, DTypeError, "[", unary_name(op), "] needs a floating dtype, got ",
            x.str());
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  backend_for(x.device()).unary(op, x, out, p0, p1);
  return out;
}

}  // namespace

Tensor neg(const Tensor& x) { return unary(UnaryOp::neg, x); }
Tensor abs(const Tensor& x) { return unary(UnaryOp::abs, x); }
Tensor exp(const Tensor& x) { return unary(UnaryOp::exp, x); }
Tensor log(const Tensor& x) { return unary(UnaryOp::log, x); }
Tensor sqrt(const Tensor& x) { return unary(UnaryOp::sqrt, x); }
Tensor rsqrt(const Tensor& x) { return unary(UnaryOp::rsqrt, x); }
Tensor sigmoid(const Tensor& x) { return unary(UnaryOp::sigmoid, x); }
Tensor silu(const Tensor& x) { return unary(UnaryOp::silu, x); }
Tensor tanh(const Tensor& x) { return unary(UnaryOp::tanh, x); }
Tensor sign(const Tensor& x) { return unary(UnaryOp::sign, x); }
Tensor round(const Tensor& x) { return unary(UnaryOp::round, x); }
Tensor floor(const Tensor& x) { return unary(UnaryOp::floor, x); }
Tensor pow(const Tensor& x, double exponent) { return unary(UnaryOp::pow, x, exponent); }
Tensor clamp(const Tensor& x, double lo, double hi) {
  ARQ_CHECK(!(lo > hi), ShapeError, "[clamp] lo ", lo, " > hi ", hi);
  return unary(UnaryOp::clamp, x, lo, hi);
}
Tensor affine(const Tensor& x, double scale, double shift) { return unary(UnaryOp::affine, x, scale, shift); }

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  const char* name = binary_name(op);
  ARQ_CHECK(a.defined() && b.defined(), ShapeError, "[", name, "] undefined operand");
  check_same_device(name, a, b);
  ARQ_CHECK(a.dtype() == b.dtype(), DTypeError, "[", name, "] dtypes differ: ", a.str(), " and ", b.str(),
            " (cast one explicitly)");
  ARQ_CHECK(op != BinaryOp::pow || is_floating(a.dtype()), DTypeError, "[pow] needs a floating dtype, got ", a.str());
  Shape shape;
  try {
    shape = broadcast_shapes(a.shape(), b.shape(), name);
  } catch (const ShapeError&) {
    throw ShapeError(cat("[", name, "] cannot broadcast ", a.str(), " with ", b.str()));
  }
  Tensor out = Tensor::empty(shape, is_comparison(op) ? DType::u8 : a.dtype(), a.device());
  backend_for(a.device()).binary(op, a.expand(shape), b.expand(shape), out);
  return out;
}

Tensor binary(BinaryOp op, const Tensor& a, double b) {
  return binary(op, a, scalar_tensor(b, a.dtype(), a.device()));
}

Tensor add(const Tensor& a, const Tensor& b) { return binary(BinaryOp::add, a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary(BinaryOp::sub, a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(BinaryOp::mul, a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary(BinaryOp::div, a, b); }
Tensor minimum(const Tensor& a, const Tensor& b) { return binary(BinaryOp::minimum, a, b); }
Tensor maximum(const Tensor& a, const Tensor& b) { return binary(BinaryOp::maximum, a, b); }
Tensor pow(const Tensor& a, const Tensor& b) { return binary(BinaryOp::pow, a, b); }
Tensor eq(const Tensor& a, const Tensor& b) { return binary(BinaryOp::eq, a, b); }
Tensor ne(const Tensor& a, const Tensor& b) { return binary(BinaryOp::ne, a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return binary(BinaryOp::lt, a, b); }
Tensor le(const Tensor& a, const Tensor& b) { return binary(BinaryOp::le, a, b); }
Tensor gt(const Tensor& a, const Tensor& b) { return binary(BinaryOp::gt, a, b); }
Tensor ge(const Tensor& a, const Tensor& b) { return binary(BinaryOp::ge, a, b); }

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  check_same_device("where", cond, a);
  check_same_device("where", a, b);
  ARQ_CHECK(cond.dtype() == DType::u8, DTypeError, "[where] condition must be u8, got ", cond.str());
  ARQ_CHECK(a.dtype() == b.dtype(), DTypeError, "[where] dtypes differ: ", a.str(), " and ", b.str());
  Shape shape;
  try {
    shape = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  } catch (const ShapeError&) {
    throw ShapeError(cat("[where] cannot broadcast ", cond.str(), ", ", a.str(), " and ", b.str()));
  }
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  backend_for(a.device()).where(cond.expand(shape), a.expand(shape), b.expand(shape), out);
  return out;
}

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator-(const Tensor& a) { return neg(a); }
Tensor operator+(const Tensor& a, double b) { return affine(a, 1.0, b); }
Tensor operator-(const Tensor& a, double b) { return affine(a, 1.0, -b); }
Tensor operator*(const Tensor& a, double b) { return affine(a, b, 0.0); }
Tensor operator/(const Tensor& a, double b) { return binary(BinaryOp::div, a, b); }
Tensor operator*(double a, const Tensor& b) { return affine(b, a, 0.0); }

}  // namespace arq
