// Shared helpers for the autograd tests: f64 random inputs and a CHECK around check_gradients.
#pragma once

#include <doctest/doctest.h>

#include "autograd/autograd.h"

namespace arq::ag::test {

using Fn = std::function<Var(const std::vector<Var>&)>;

inline Tensor randn(const Shape& s, uint64_t seed, double scale = 1.0) {
  return rand_normal(s, seed, 0, scale, DType::f64);
}
inline Tensor randu(const Shape& s, uint64_t seed, double lo, double hi) {
  return rand_uniform(s, seed, lo, hi, DType::f64);
}

// f64 with ε = 1e-6: truncation O(ε²·|f'''|) ≈ 1e-12 and cancellation O(u·|f|/ε) ≈ 1e-10
// for |f| ~ 1, so 1e-6 relative is loose for smooth ops yet catches any wrong rule (O(1)).
inline void expect_grad(const char* what, const Fn& fn, const std::vector<Tensor>& inputs, bool non_contiguous = false,
                        double tol = 1e-6, double eps = 1e-6) {
  GradCheckOptions o;
  o.eps = eps;
  o.tol = tol;
  o.non_contiguous = non_contiguous;
  GradCheckResult r = check_gradients(fn, inputs, o);
  INFO(what, non_contiguous ? " (non-contiguous)" : "");
  CHECK_MESSAGE(r.ok, r.report);
}

}  // namespace arq::ag::test
