// Creation ops and host <-> tensor helpers.
#include <cmath>

#include "engine/ops.h"

namespace arq {

Tensor full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = Tensor::empty(shape, dtype, device);
  backend_for(device).fill(t, value);
  return t;
}
Tensor zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }
Tensor ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }
Tensor scalar_tensor(double value, DType dtype, Device device) { return full({}, value, dtype, device); }
Tensor zeros_like(const Tensor& x) { return zeros(x.shape(), x.dtype(), x.device()); }
Tensor ones_like(const Tensor& x) { return ones(x.shape(), x.dtype(), x.device()); }

Tensor arange(double start, double end, double step, DType dtype, Device device) {
  ARQ_CHECK(step != 0, ShapeError, "[arange] step is 0");
  const double n = std::ceil((end - start) / step);
  Tensor t = Tensor::empty({n > 0 ? static_cast<int64_t>(n) : 0}, dtype, device);
  backend_for(device).arange(start, step, t);
  return t;
}

Tensor rand_uniform(const Shape& shape, uint64_t seed, double lo, double hi, DType dtype, Device device) {
  ARQ_CHECK(is_floating(dtype), DTypeError, "[rand_uniform] needs a floating dtype, got ", dtype_name(dtype));
  Tensor t = Tensor::empty(shape, dtype, device);
  backend_for(device).random(RandomKind::uniform, seed, lo, hi, t);
  return t;
}

Tensor rand_normal(const Shape& shape, uint64_t seed, double mean, double stddev, DType dtype, Device device) {
  ARQ_CHECK(is_floating(dtype), DTypeError, "[rand_normal] needs a floating dtype, got ", dtype_name(dtype));
  Tensor t = Tensor::empty(shape, dtype, device);
  backend_for(device).random(RandomKind::normal, seed, mean, stddev, t);
  return t;
}

Tensor from_vector(const std::vector<double>& v, const Shape& shape, DType dtype) {
  ARQ_CHECK(static_cast<int64_t>(v.size()) == shape_numel(shape), ShapeError, "[from_vector] ", v.size(),
            " values for shape ", shape_str(shape));
  Tensor src(Storage::wrap(const_cast<double*>(v.data()), v.size() * sizeof(double), Device::cpu(), nullptr),
             shape, contiguous_strides(shape), 0, DType::f64);
  return src.to(dtype).clone();  // clone: never alias the caller's vector
}

std::vector<double> to_vector(const Tensor& x) {
  Tensor h = x.to(Device::cpu()).to(DType::f64).contiguous();
  const double* p = h.data<double>();
  return std::vector<double>(p, p + h.numel());
}

void copy_(Tensor& dst, const Tensor& src) {
  Tensor s = src;
  if (src.shape() != dst.shape()) {
    broadcast_shapes(dst.shape(), src.shape(), "copy_");
    s = src.expand(dst.shape());
  }
  if (s.device() != dst.device()) {
    ARQ_CHECK(dst.is_contiguous(), DeviceError, "[copy_] cross-device copy into a strided view ", dst.str());
    s = s.contiguous();
    if (s.dtype() != dst.dtype()) s = s.to(dst.dtype());
    backend_for(dst.device().is_cpu() ? s.device() : dst.device()).copy(s, dst);
    return;
  }
  if (s.may_overlap(dst)) s = s.clone();
  backend_for(dst.device()).copy(s, dst);
}

void fill_(Tensor& dst, double value) { backend_for(dst.device()).fill(dst, value); }

Tensor cast(const Tensor& x, DType dtype) { return x.to(dtype); }

}  // namespace arq
