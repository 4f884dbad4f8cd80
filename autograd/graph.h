// Internal: the graph node and the helper every differentiable op uses to record itself.
// Not part of the public API (ops.h, var.h are); included by autograd/*.cpp only.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "autograd/var.h"
#include "engine/ops.h"

namespace arq::ag {

// VJP of one op: given the cotangent g of its output and which inputs need a gradient,
// return one gradient per input (undefined where not needed or identically zero). A returned
// gradient may have the output's broadcast shape: backward sums it down to the input's shape.
using Vjp = std::function<std::vector<Tensor>(const Tensor& g, const std::vector<bool>& need)>;

struct Node {
  const char* name = "";
  // Producer node of each input; null where the input needs no gradient.
  std::vector<std::shared_ptr<Node>> next;
  std::vector<Shape> in_shapes;   // to undo broadcasting
  std::vector<DType> in_dtypes;
  Shape out_shape;
  DType out_dtype = DType::f32;
  Vjp vjp;                        // holds the saved tensors; reset once run (unless retained)
  bool released = false;
  // Leaf accumulator: a leaf that requires grad owns one node with leaf = true and no vjp.
  bool leaf = false;
  Tensor grad;                    // accumulated d(loss)/d(leaf), leaf only
};

// True when grad mode is on and at least one input requires a gradient.
bool any_requires_grad(std::initializer_list<const Var*> inputs);
bool any_requires_grad(const std::vector<Var>& inputs);

// Wrap `out` as the result of op `name` with inputs `inputs`; records a node with `vjp` when
// any input requires a gradient in grad mode, else returns a constant Var.
Var record(const char* name, Tensor out, const std::vector<const Var*>& inputs, Vjp vjp);

}  // namespace arq::ag
