// Helpers of the flash attention tests (tests/autograd/test_attention_flash.cpp on the CPU
// reference, tests/cuda/test_cuda_flash.cpp on CUDA): a normwise relative error and inputs laid
// out as the models' projections make them.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "engine/ops.h"

namespace arq::test {

// ‖a − b‖ / max(‖b‖, elem_floor·√n), ∞ when a holds a NaN or infinity. elem_floor > 0 is for
// references that are exactly 0 in exact arithmetic (one visible key: P = 1, dS = 0, so dQ and
// dK are 0 up to the kernels' rounding).
inline double normwise_rel_err(const Tensor& a, const Tensor& b, double elem_floor = 0) {
  const std::vector<double> x = to_vector(a.to(Device::cpu())), y = to_vector(b.to(Device::cpu()));
  REQUIRE(x.size() == y.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i])) return INFINITY;
    num += (x[i] - y[i]) * (x[i] - y[i]);
    den += y[i] * y[i];
  }
  return std::sqrt(num / std::max({den, elem_floor * elem_floor * double(x.size()), 1e-300}));
}

// [b, h, n, hd] normal values stored sequence-major ([b, n, h, hd] memory), as the projections
// make them.
inline Tensor seq_major_normal(int64_t b, int64_t h, int64_t n, int64_t hd, uint64_t seed, DType dt) {
  return rand_normal({b, n, h, hd}, seed, 0, 1, dt).permute({0, 2, 1, 3});
}

}  // namespace arq::test
