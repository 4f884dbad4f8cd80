// Var handles, grad mode, and the recording helper.
#include "autograd/graph.h"

namespace arq::ag {

struct VarImpl {
  Tensor value;
  std::shared_ptr<Node> node;  // producer node, or the leaf accumulator, or null (constant)
};

namespace {
thread_local bool g_grad_enabled = true;

std::shared_ptr<Node> make_leaf_node(const Tensor& v) {
  auto n = std::make_shared<Node>();
  n->name = "leaf";
  n->leaf = true;
  n->out_shape = v.shape();
  n->out_dtype = v.dtype();
  return n;
}
}  // namespace

bool grad_enabled() { return g_grad_enabled; }
void set_grad_enabled(bool on) { g_grad_enabled = on; }
NoGrad::NoGrad() : prev_(g_grad_enabled) { g_grad_enabled = false; }
NoGrad::~NoGrad() { g_grad_enabled = prev_; }

Var::Var() = default;

Var::Var(Tensor value, bool requires_grad) : impl_(std::make_shared<VarImpl>()) {
  ARQ_CHECK(value.defined(), UsageError, "[Var] cannot wrap an undefined tensor");
  ARQ_CHECK(!requires_grad || is_floating(value.dtype()), DTypeError,
            "[Var] requires_grad needs a floating dtype, got ", value.str());
  impl_->value = std::move(value);
  if (requires_grad) impl_->node = make_leaf_node(impl_->value);
}

bool Var::defined() const { return impl_ != nullptr; }

const Tensor& Var::value() const {
  static const Tensor undefined;
  return impl_ ? impl_->value : undefined;
}

Tensor Var::grad() const {
  if (!impl_ || !impl_->node || !impl_->node->leaf) return {};
  return impl_->node->grad;
}

void Var::set_grad(const Tensor& g) {
  ARQ_CHECK(impl_ && impl_->node && impl_->node->leaf, UsageError,
            "[Var::set_grad] only leaves that require grad hold a gradient (", str(), ")");
  ARQ_CHECK(!g.defined() || g.shape() == shape(), ShapeError, "[Var::set_grad] gradient ", g.str(),
            " does not match value ", str());
  impl_->node->grad = g;
}

bool Var::requires_grad() const { return impl_ && impl_->node != nullptr; }

bool Var::is_leaf() const { return !impl_ || !impl_->node || impl_->node->leaf; }

void Var::set_requires_grad(bool on) {
  ARQ_CHECK(impl_, UsageError, "[Var::set_requires_grad] undefined Var");
  ARQ_CHECK(is_leaf(), UsageError, "[Var::set_requires_grad] ", str(),
            " was produced by an op; use detach() to make a new leaf");
  if (on == requires_grad()) return;
  ARQ_CHECK(!on || is_floating(dtype()), DTypeError, "[Var::set_requires_grad] needs a floating dtype, got ", str());
  impl_->node = on ? make_leaf_node(impl_->value) : nullptr;
}

void Var::zero_grad() {
  if (impl_ && impl_->node && impl_->node->leaf) impl_->node->grad = Tensor();
}

Var Var::detach() const {
  ARQ_CHECK(impl_, UsageError, "[Var::detach] undefined Var");
  return Var(impl_->value, false);
}

const std::shared_ptr<Node>& Var::node() const {
  static const std::shared_ptr<Node> none;
  return impl_ ? impl_->node : none;
}

Var Var::make_result(Tensor value, std::shared_ptr<Node> node) {
  Var v;
  v.impl_ = std::make_shared<VarImpl>();
  v.impl_->value = std::move(value);
  v.impl_->node = std::move(node);
  return v;
}

bool any_requires_grad(std::initializer_list<const Var*> inputs) {
  if (!g_grad_enabled) return false;
  for (const Var* v : inputs)
    if (v->requires_grad()) return true;
  return false;
}

bool any_requires_grad(const std::vector<Var>& inputs) {
  if (!g_grad_enabled) return false;
  for (const Var& v : inputs)
    if (v.requires_grad()) return true;
  return false;
}

Var record(const char* name, Tensor out, const std::vector<const Var*>& inputs, Vjp vjp) {
  bool any = false;
  if (g_grad_enabled)
    for (const Var* v : inputs) any = any || v->requires_grad();
  if (!any) return Var::make_result(std::move(out), nullptr);
  auto n = std::make_shared<Node>();
  n->name = name;
  n->next.reserve(inputs.size());
  for (const Var* v : inputs) {
    n->next.push_back(v->node());
    n->in_shapes.push_back(v->shape());
    n->in_dtypes.push_back(v->dtype());
  }
  n->out_shape = out.shape();
  n->out_dtype = out.dtype();
  n->vjp = std::move(vjp);
  return Var::make_result(std::move(out), std::move(n));
}

}  // namespace arq::ag
