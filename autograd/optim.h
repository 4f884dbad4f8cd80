// Optimizers over leaf Vars, updated in place (the Var's value tensor keeps its storage).
//
// SignSGD is SignRound's optimizer (spec/autoround.md §1.9): p ← p − lr·sign(g), optionally
// with a momentum buffer b = μ·b + (1 − dampening)·g and the update sign(b). AdamW trains the
// project's demo models. Parameters whose grad is undefined are skipped.
//
//   SignSGD opt({{.params = {v1, v2}, .lr = 1.0 / iters}}, {});
//   LinearLR sched(opt, iters);                    // lr_t = lr0 · (1 − t/iters)
//   for (int i = 0; i < iters; ++i) { backward(loss_fn()); opt.step(); opt.zero_grad(); sched.step(); }
#pragma once

#include <cstdint>
#include <vector>

#include "autograd/var.h"

namespace arq::ag {

struct ParamGroup {
  std::vector<Var> params;
  double lr = 1e-3;
  double initial_lr = -1;  // filled by the optimizer with lr (the schedule's base)
};

class Optimizer {
 public:
  explicit Optimizer(std::vector<ParamGroup> groups);
  virtual ~Optimizer() = default;
  virtual void step() = 0;  // runs under NoGrad
  void zero_grad();
  std::vector<ParamGroup>& groups() { return groups_; }
  const std::vector<ParamGroup>& groups() const { return groups_; }
  int64_t steps_taken() const { return steps_; }

 protected:
  std::vector<ParamGroup> groups_;
  int64_t steps_ = 0;
};

struct SignSgdOptions {
  double momentum = 0;
  double dampening = 0;
  double weight_decay = 0;  // g ← g + wd·p before the momentum buffer (torch SGD order)
  bool nesterov = false;    // update direction g + μ·b instead of b
};

class SignSGD : public Optimizer {
 public:
  SignSGD(std::vector<ParamGroup> groups, SignSgdOptions opt = {});
  SignSGD(std::vector<Var> params, double lr, SignSgdOptions opt = {});
  void step() override;

 private:
  SignSgdOptions opt_;
  std::vector<std::vector<Tensor>> momentum_;  // per group, per param ([] until first step)
};

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;  // decoupled: p ← p·(1 − lr·wd) before the Adam update
};

class AdamW : public Optimizer {
 public:
  AdamW(std::vector<ParamGroup> groups, AdamWOptions opt = {});
  AdamW(std::vector<Var> params, double lr, AdamWOptions opt = {});
  void step() override;

 private:
  AdamWOptions opt_;
  std::vector<std::vector<Tensor>> m_, v_;  // first/second moments (f32/f64 like the param)
};

// lr factor of a linear schedule at step t (0-based): start + (end − start)·min(t, total)/total.
double linear_decay_factor(int64_t step, int64_t total, double start = 1.0, double end = 0.0);

// Sets every group's lr to initial_lr · linear_decay_factor(t) after each step() (torch
// LinearLR with start_factor 1, end_factor 0 by default, as AutoRound).
class LinearLR {
 public:
  LinearLR(Optimizer& opt, int64_t total_iters, double start_factor = 1.0, double end_factor = 0.0);
  void step();
  int64_t last_step() const { return t_; }

 private:
  Optimizer& opt_;
  int64_t total_;
  double start_, end_;
  int64_t t_ = 0;
};

// Scales all gradients by min(1, max_norm / ‖g‖₂) (global norm over every param's grad) and
// returns the norm before clipping.
double clip_grad_norm(const std::vector<Var>& params, double max_norm);

}  // namespace arq::ag
