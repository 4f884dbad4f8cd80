// The graph walk: reverse topological order (Kahn's algorithm on dependency counts) from the
// loss; each node's cotangent is complete once every consumer has run, its VJP then runs once
// and its saved tensors are dropped before the next node.
#include <unordered_map>

#include "autograd/graph.h"

namespace arq::ag {

namespace {

// Add a (possibly broadcast-shaped) gradient into a pending cotangent slot.
void accumulate(Tensor& slot, Tensor g) {
  if (!slot.defined()) {
    slot = std::move(g);
  } else {
    slot = add(slot, g);
  }
}

// The first gradient a leaf stores must not share bytes with anything else (a VJP may pass its
// cotangent through unchanged, and the same tensor may reach two leaves), because optimizers
// and set_grad users treat leaf.grad as theirs.
Tensor owned(Tensor g) {
  if (g.is_contiguous() && g.storage().use_count() == 1 && g.offset() == 0 &&
      g.storage()->nbytes() == g.nbytes())
    return g;
  return g.clone();
}

}  // namespace

void backward(const Var& loss, const Tensor& seed, bool retain_graph) {
  ARQ_CHECK(loss.defined(), UsageError, "[backward] undefined loss");
  const std::shared_ptr<Node>& root = loss.node();
  ARQ_CHECK(root != nullptr, UsageError, "[backward] loss ", loss.str(),
            " does not require grad (no input requires grad, or it was computed under NoGrad)");
  Tensor g0;
  if (seed.defined()) {
    ARQ_CHECK(seed.shape() == loss.shape(), ShapeError, "[backward] seed ", seed.str(), " does not match loss ",
              loss.str());
    g0 = seed.dtype() == loss.dtype() ? seed : cast(seed, loss.dtype());
  } else {
    g0 = ones(loss.shape(), loss.dtype(), loss.device());
  }

  // Dependency counts: how many recorded consumers still owe each node a cotangent.
  std::unordered_map<Node*, int> deps;
  std::vector<Node*> stack{root.get()};
  deps[root.get()] = 0;
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    ARQ_CHECK(!n->released, UsageError, "[backward] the graph through op '", n->name,
              "' was already freed by an earlier backward; run the forward pass again or pass retain_graph");
    for (const auto& p : n->next) {
      if (!p) continue;
      auto [it, fresh] = deps.try_emplace(p.get(), 0);
      ++it->second;
      if (fresh) stack.push_back(p.get());
    }
  }

  std::unordered_map<Node*, Tensor> pending;
  pending[root.get()] = std::move(g0);
  // Ready nodes are held by shared_ptr: releasing a consumer's edges may drop the last other
  // reference to its producer.
  std::vector<std::shared_ptr<Node>> ready{root};
  while (!ready.empty()) {
    std::shared_ptr<Node> node = std::move(ready.back());
    ready.pop_back();
    Node* n = node.get();
    Tensor g;
    if (auto it = pending.find(n); it != pending.end()) {
      g = std::move(it->second);
      pending.erase(it);
    }
    if (n->leaf) {
      if (g.defined()) {
        if (g.dtype() != n->out_dtype) g = cast(g, n->out_dtype);
        n->grad = n->grad.defined() ? add(n->grad, g) : owned(std::move(g));
      }
      continue;
    }
    std::vector<Tensor> grads;
    if (g.defined()) {
      std::vector<bool> need(n->next.size());
      for (size_t i = 0; i < need.size(); ++i) need[i] = n->next[i] != nullptr;
      grads = n->vjp(g, need);
      ARQ_ASSERT(grads.size() == n->next.size(), "VJP of '", n->name, "' returned ", grads.size(),
                 " gradients for ", n->next.size(), " inputs");
      g = Tensor();
    }
    std::vector<std::shared_ptr<Node>> next = n->next;
    if (!retain_graph) {
      n->vjp = nullptr;  // frees the saved tensors now, not when the Vars die
      n->next.clear();
      n->released = true;
    }
    for (size_t i = 0; i < next.size(); ++i) {
      Node* p = next[i].get();
      if (!p) continue;
      if (i < grads.size() && grads[i].defined()) {
        Tensor gi = std::move(grads[i]);
        if (gi.shape() != n->in_shapes[i]) gi = sum_to(gi, n->in_shapes[i]);
        if (gi.dtype() != n->in_dtypes[i]) gi = cast(gi, n->in_dtypes[i]);
        accumulate(pending[p], std::move(gi));
      }
      if (--deps[p] == 0) ready.push_back(next[i]);
    }
  }
}

}  // namespace arq::ag
