// Reverse-mode automatic differentiation over engine ops.
//
// A `Var` is a cheap shared handle to a value tensor, the gradient accumulated into it (leaves
// only), and the graph node that produced it. While grad mode is on (the default; see NoGrad),
// every op in autograd/ops.h whose inputs require a gradient records a node holding the tensors
// its vector-Jacobian product (VJP) needs. `backward(loss)` walks the nodes in reverse
// topological order, accumulates cotangents (summing away broadcast dimensions), frees every
// node's saved tensors as soon as its VJP has run, and adds the result into each leaf's grad.
//
// The graph holds no Var values: only the tensors a VJP saved. Dropping the Vars of a forward
// pass therefore leaves exactly the saved activations alive, and backward releases them node
// by node (peak memory = saved activations + a few cotangents in flight).
//
//   Var w(rand_normal({7, 5}, 1), /*requires_grad=*/true);   // [out, in]
//   Var x(rand_normal({3, 5}, 2));                           // [n, in], constant
//   Var loss = mean_all(silu(matmul(x, transpose(w, 0, 1))));
//   backward(loss);                                          // w.grad(): [7, 5]
//   w.zero_grad();
#pragma once

#include <cstdint>
#include <memory>

#include "engine/tensor.h"

namespace arq::ag {

struct Node;     // graph node (autograd/graph.h)
struct VarImpl;  // value + node (autograd/var.cpp)

class Var {
 public:
  Var();  // undefined: defined() is false
  explicit Var(Tensor value, bool requires_grad = false);

  bool defined() const;
  const Tensor& value() const;
  // The accumulated gradient of a leaf that requires grad; undefined until a backward reached
  // it (and after zero_grad). Non-leaf Vars keep no gradient.
  Tensor grad() const;
  // Replace the accumulated gradient (gradient clipping, tests). Leaves only.
  void set_grad(const Tensor& g);
  // A leaf that requires grad, or any Var produced by a recorded op.
  bool requires_grad() const;
  // Leaves only: make this Var a trainable parameter (true) or a constant (false).
  void set_requires_grad(bool on);
  bool is_leaf() const;  // not produced by a recorded op
  void zero_grad();      // drops the accumulated gradient (grad() becomes undefined)
  // The same value (shared storage) with no history and requires_grad = false.
  Var detach() const;

  const Shape& shape() const { return value().shape(); }
  DType dtype() const { return value().dtype(); }
  Device device() const { return value().device(); }
  int64_t dim() const { return value().dim(); }
  int64_t size(int64_t d) const { return value().size(d); }
  int64_t numel() const { return value().numel(); }
  std::string str() const { return value().str(); }

  // ---- internal (ops.cpp / backward.cpp) ------------------------------------------------
  // The node whose VJP receives this Var's cotangent: the producing op's node, or the leaf's
  // accumulator node; null for constants.
  const std::shared_ptr<Node>& node() const;
  static Var make_result(Tensor value, std::shared_ptr<Node> node);

 private:
  std::shared_ptr<VarImpl> impl_;
};

// Backpropagate from `loss` and add d(loss)/d(leaf) into every reachable leaf's grad.
// `seed` is the cotangent of `loss` (same shape); undefined means ones (loss usually 0-d).
// The graph's saved tensors are freed on the way unless `retain_graph`, so a second backward
// through the same graph throws UsageError; run a new forward pass for each backward (the
// gradients accumulate until zero_grad).
void backward(const Var& loss, const Tensor& seed = {}, bool retain_graph = false);

// Grad mode is per thread. While a NoGrad is alive ops record nothing (evaluation, reference
// outputs, optimizer updates).
bool grad_enabled();
void set_grad_enabled(bool on);
struct NoGrad {
  NoGrad();
  ~NoGrad();
  NoGrad(const NoGrad&) = delete;
  NoGrad& operator=(const NoGrad&) = delete;

 private:
  bool prev_;
};

}  // namespace arq::ag
