// Finite-difference gradient checks (STYLE.md §14, flashlight jacobianTestImpl).
//
// Compares the backprop vector-Jacobian products of `fn` with central differences
// (f(x + εe_j) − f(x − εe_j)) / 2ε computed in f64, for every element of every input.
//
//   auto r = check_gradients([](const std::vector<Var>& v) { return silu(v[0]) * v[1]; },
//                            {rand_normal({5, 7}, 1, 0, 1, DType::f64),
//                             rand_normal({7}, 2, 0, 1, DType::f64)});
//   CHECK_MESSAGE(r.ok, r.report);
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "autograd/var.h"

namespace arq::ag {

struct GradCheckOptions {
  double eps = 1e-6;  // central-difference step
  // |backprop − numeric| <= tol · max(1, |numeric|). With f64, ε = 1e-6 the difference error
  // is O(ε²·f''') + O(u/ε) ≈ 1e-10, so 1e-6 leaves room for ill-conditioned ops.
  double tol = 1e-6;
  // Cotangents: every basis vector when the output has at most this many elements, else
  // `n_random` random normal cotangents.
  int64_t max_basis = 16;
  int n_random = 3;
  uint64_t seed = 1234;
  // Store inputs of dim >= 2 with their last two dims transposed in memory, so the leaves
  // are non-contiguous views.
  bool non_contiguous = false;
  // Per-input: whether to check the gradient (default all true).
  std::vector<bool> wrt;
};

struct GradCheckResult {
  bool ok = true;
  double max_abs_err = 0;
  double max_rel_err = 0;  // |bp − num| / max(1, |num|)
  std::string report;      // first failures, with input/element/cotangent
};

// Inputs are converted to f64 CPU tensors (fn must accept f64 Vars). Inputs that are not
// floating (indices) are passed through as constants and not checked.
GradCheckResult check_gradients(const std::function<Var(const std::vector<Var>&)>& fn,
                                const std::vector<Tensor>& inputs, const GradCheckOptions& opt = {});
// Convenience: eps and tol only.
GradCheckResult check_gradients(const std::function<Var(const std::vector<Var>&)>& fn,
                                const std::vector<Tensor>& inputs, double eps, double tol);

}  // namespace arq::ag
