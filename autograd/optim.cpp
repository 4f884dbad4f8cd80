// SignSGD, AdamW, the linear schedule and gradient clipping. Updates run under NoGrad and write
// into the parameters' value tensors in place, so every holder of the Var sees the new value.
#include "autograd/optim.h"

#include <cmath>

#include "autograd/ops.h"
#include "engine/fused.h"

namespace arq::ag {

namespace {
void assign(const Var& p, const Tensor& v) {
  Tensor dst = p.value();
  copy_(dst, v);
}
std::vector<ParamGroup> one_group(std::vector<Var> params, double lr) {
  return {ParamGroup{std::move(params), lr, lr}};
}
}  // namespace

Optimizer::Optimizer(std::vector<ParamGroup> groups) : groups_(std::move(groups)) {
  for (ParamGroup& g : groups_) {
    if (g.initial_lr < 0) g.initial_lr = g.lr;
    for (const Var& p : g.params)
      ARQ_CHECK(p.defined() && p.is_leaf() && p.requires_grad(), UsageError,
                "[optimizer] every parameter must be a leaf that requires grad, got ",
                p.defined() ? p.str() : std::string("an undefined Var"));
  }
}

void Optimizer::zero_grad() {
  for (ParamGroup& g : groups_)
    for (Var& p : g.params) p.zero_grad();
}

// ---- SignSGD -------------------------------------------------------------------------------

SignSGD::SignSGD(std::vector<ParamGroup> groups, SignSgdOptions opt) : Optimizer(std::move(groups)), opt_(opt) {
  momentum_.resize(groups_.size());
  for (size_t i = 0; i < groups_.size(); ++i) momentum_[i].resize(groups_[i].params.size());
}
SignSGD::SignSGD(std::vector<Var> params, double lr, SignSgdOptions opt)
    : SignSGD(one_group(std::move(params), lr), opt) {}

void SignSGD::step() {
  NoGrad ng;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const double lr = groups_[gi].lr;
    for (size_t pi = 0; pi < groups_[gi].params.size(); ++pi) {
      const Var& p = groups_[gi].params[pi];
      Tensor d = p.grad();
      if (!d.defined()) continue;
      if (opt_.weight_decay == 0 && opt_.momentum == 0) {   // SignRound's case: one fused pass
        Tensor v = p.value();
        sign_sgd_step_(v, d, lr);
        continue;
      }
      if (opt_.weight_decay != 0) d = arq::add(d, arq::affine(p.value(), opt_.weight_decay, 0));
      if (opt_.momentum != 0) {
        // torch SGD: the buffer starts as the first gradient, then b = μb + (1 − dampening)g
        Tensor& b = momentum_[gi][pi];
        b = b.defined() ? arq::add(arq::affine(b, opt_.momentum, 0), arq::affine(d, 1 - opt_.dampening, 0)) : d.clone();
        d = opt_.nesterov ? arq::add(d, arq::affine(b, opt_.momentum, 0)) : b;
      }
      assign(p, arq::sub(p.value(), arq::affine(arq::sign(d), lr, 0)));
    }
  }
  ++steps_;
}

// ---- AdamW ---------------------------------------------------------------------------------

AdamW::AdamW(std::vector<ParamGroup> groups, AdamWOptions opt) : Optimizer(std::move(groups)), opt_(opt) {
  m_.resize(groups_.size());
  v_.resize(groups_.size());
  for (size_t i = 0; i < groups_.size(); ++i) {
    m_[i].resize(groups_[i].params.size());
    v_[i].resize(groups_[i].params.size());
  }
}
AdamW::AdamW(std::vector<Var> params, double lr, AdamWOptions opt) : AdamW(one_group(std::move(params), lr), opt) {}

void AdamW::step() {
  NoGrad ng;
  ++steps_;
  const double t = static_cast<double>(steps_);
  const double bc1 = 1 - std::pow(opt_.beta1, t), bc2 = 1 - std::pow(opt_.beta2, t);
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const double lr = groups_[gi].lr;
    for (size_t pi = 0; pi < groups_[gi].params.size(); ++pi) {
      const Var& p = groups_[gi].params[pi];
      const Tensor g = p.grad();
      if (!g.defined()) continue;
      Tensor& m = m_[gi][pi];
      Tensor& v = v_[gi][pi];
      if (!m.defined()) {
        m = zeros_like(p.value());
        v = zeros_like(p.value());
      }
      // m = β₁m + (1−β₁)g, v = β₂v + (1−β₂)g²
      m = arq::add(arq::affine(m, opt_.beta1, 0), arq::affine(g, 1 - opt_.beta1, 0));
      v = arq::add(arq::affine(v, opt_.beta2, 0), arq::affine(arq::mul(g, g), 1 - opt_.beta2, 0));
      // p ← p(1 − lr·wd) − lr·m̂/(√v̂ + ε), m̂ = m/bc1, v̂ = v/bc2
      Tensor denom = arq::affine(arq::sqrt(arq::affine(v, 1 / bc2, 0)), 1, opt_.eps);
      Tensor upd = arq::affine(arq::div(m, denom), lr / bc1, 0);
      assign(p, arq::sub(arq::affine(p.value(), 1 - lr * opt_.weight_decay, 0), upd));
    }
  }
}

// ---- schedule, clipping --------------------------------------------------------------------

double linear_decay_factor(int64_t step, int64_t total, double start, double end) {
  if (total <= 0) return end;
  const double f = static_cast<double>(std::min(std::max<int64_t>(step, 0), total)) / static_cast<double>(total);
  return start + (end - start) * f;
}

LinearLR::LinearLR(Optimizer& opt, int64_t total_iters, double start_factor, double end_factor)
    : opt_(opt), total_(total_iters), start_(start_factor), end_(end_factor) {
  for (ParamGroup& g : opt_.groups()) g.lr = g.initial_lr * linear_decay_factor(0, total_, start_, end_);
}

void LinearLR::step() {
  ++t_;
  for (ParamGroup& g : opt_.groups()) g.lr = g.initial_lr * linear_decay_factor(t_, total_, start_, end_);
}

double clip_grad_norm(const std::vector<Var>& params, double max_norm) {
  NoGrad ng;
  double sq = 0;
  for (const Var& p : params) {
    const Tensor g = p.grad();
    if (g.defined()) sq += arq::sum_all(arq::mul(cast(g, DType::f64), cast(g, DType::f64))).item();
  }
  const double norm = std::sqrt(sq);
  if (norm > max_norm && norm > 0) {
    const double s = max_norm / norm;
    for (Var p : params) {  // a Var copy shares the parameter's state
      const Tensor g = p.grad();
      if (g.defined()) p.set_grad(arq::affine(g, s, 0));
    }
  }
  return norm;
}

}  // namespace arq::ag
