// Optimizer steps against hand-computed values, the linear schedule, clipping, and a small
// deterministic training run (suite unit).
#include <cmath>

#include <doctest/doctest.h>

#include "autograd/autograd.h"

namespace arq::ag {
namespace {

Tensor vec(std::vector<double> v) { return from_vector(v, {static_cast<int64_t>(v.size())}, DType::f64); }
void check_vec(const Tensor& t, const std::vector<double>& want, double eps = 1e-12) {
  std::vector<double> got = to_vector(t);
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(eps));
}

TEST_CASE("optim: SignSGD step is p - lr*sign(g); params without grad are skipped") {
  Var p(vec({1, -2, 3, 0.5}), true), q(vec({7}), true);
  SignSGD opt({p, q}, 0.1);
  p.set_grad(vec({0.3, -0.1, 0, 2}));
  opt.step();
  check_vec(p.value(), {0.9, -1.9, 3, 0.4});  // sign(0) = 0 leaves the element alone
  check_vec(q.value(), {7});
  opt.zero_grad();
  CHECK_FALSE(p.grad().defined());
}

TEST_CASE("optim: SignSGD momentum, weight decay, nesterov") {
  Var p(vec({0, 0, 0, 0}), true);
  SignSGD opt({p}, 0.1, SignSgdOptions{.momentum = 0.9});
  p.set_grad(vec({1, -1, 0.5, -0.2}));
  opt.step();  // b = g1 -> sign (1, −1, 1, −1)
  check_vec(p.value(), {-0.1, 0.1, -0.1, 0.1});
  p.set_grad(vec({-0.5, -2, -1, 0.1}));
  opt.step();  // b = 0.9·g1 + g2 = (0.4, −2.9, −0.55, −0.08)
  check_vec(p.value(), {-0.2, 0.2, 0, 0.2});

  Var w(vec({1, -2}), true);
  SignSGD wd({w}, 0.1, SignSgdOptions{.weight_decay = 1.0});
  w.set_grad(vec({-0.5, 1}));  // g + wd·p = (0.5, −1)
  wd.step();
  check_vec(w.value(), {0.9, -1.9});

  Var n(vec({0, 0}), true);
  SignSGD nest({n}, 1.0, SignSgdOptions{.momentum = 0.5, .nesterov = true});
  n.set_grad(vec({1, -1}));
  nest.step();  // b = g; d = g + 0.5·b = (1.5, −1.5)
  n.set_grad(vec({-1.2, 0.4}));
  nest.step();  // b = 0.5·(1, −1) + (−1.2, 0.4) = (−0.7, −0.1); d = g + 0.5·b = (−1.55, 0.35)
  check_vec(n.value(), {0, 0});
}

TEST_CASE("optim: LinearLR decays to zero; total SignSGD movement (T+1)/(2T)") {
  Var p(vec({0}), true);
  const int64_t T = 10;
  SignSGD opt({p}, 1.0 / T);
  LinearLR sched(opt, T);
  for (int64_t t = 0; t < T; ++t) {
    CHECK(opt.groups()[0].lr == doctest::Approx((1.0 / T) * (1.0 - double(t) / T)).epsilon(1e-15));
    p.set_grad(vec({-1}));
    opt.step();
    sched.step();
  }
  CHECK(opt.groups()[0].lr == 0.0);
  check_vec(p.value(), {(T + 1.0) / (2.0 * T)});  // spec/autoround.md §1.7 bound on V
  CHECK(linear_decay_factor(2, 4) == 0.5);
  CHECK(linear_decay_factor(9, 4) == 0.0);
}

TEST_CASE("optim: AdamW matches a scalar reference for three steps") {
  const AdamWOptions o{.beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8, .weight_decay = 0.1};
  const double lr = 0.05;
  std::vector<double> p0 = {1, -0.5, 2}, ref = p0, m(3, 0), v(3, 0);
  const std::vector<std::vector<double>> grads = {{0.5, -1, 0}, {0.1, 2, -0.3}, {-0.4, 0.2, 1}};
  Var p(vec(p0), true);
  AdamW opt({p}, lr, o);
  for (int t = 1; t <= 3; ++t) {
    p.set_grad(vec(grads[t - 1]));
    opt.step();
    for (size_t i = 0; i < 3; ++i) {  // the textbook update, written independently
      const double g = grads[t - 1][i];
      ref[i] -= lr * o.weight_decay * ref[i];
      m[i] = o.beta1 * m[i] + (1 - o.beta1) * g;
      v[i] = o.beta2 * v[i] + (1 - o.beta2) * g * g;
      const double mh = m[i] / (1 - std::pow(o.beta1, t)), vh = v[i] / (1 - std::pow(o.beta2, t));
      ref[i] -= lr * mh / (std::sqrt(vh) + o.eps);
    }
    check_vec(p.value(), ref, 1e-12);
  }
}

TEST_CASE("optim: clip_grad_norm") {
  Var a(vec({3, 0}), true), b(vec({4}), true);
  a.set_grad(vec({3, 0}));
  b.set_grad(vec({4}));
  CHECK(clip_grad_norm({a, b}, 10) == doctest::Approx(5));
  check_vec(a.grad(), {3, 0});
  CHECK(clip_grad_norm({a, b}, 1) == doctest::Approx(5));
  check_vec(a.grad(), {0.6, 0});
  check_vec(b.grad(), {0.8});
}

TEST_CASE("optim: a 2-layer MLP fits a synthetic regression (AdamW, f32, fixed seed)") {
  // y = sin(2·x0) + x1·x2 − 0.5·x3² on 128 points of [−1, 1]⁴; tanh MLP 4 → 32 → 1.
  const int64_t n = 128, din = 4, hid = 32;
  Tensor x = rand_uniform({n, din}, 7, -1, 1);  // [n, 4]
  std::vector<double> xv = to_vector(x), yv(n);
  for (int64_t i = 0; i < n; ++i) {
    const double* r = &xv[i * din];
    yv[i] = std::sin(2 * r[0]) + r[1] * r[2] - 0.5 * r[3] * r[3];
  }
  Tensor y = from_vector(yv, {n, 1});  // [n, 1]
  Var w1(rand_normal({hid, din}, 8, 0, 0.5), true), b1(zeros({hid}), true);
  Var w2(rand_normal({1, hid}, 9, 0, 0.2), true), b2(zeros({1}), true);
  auto loss_fn = [&] {
    Var h = tanh(matmul(Var(x), transpose(w1, 0, 1)) + b1);
    return masked_mse(matmul(h, transpose(w2, 0, 1)) + b2, y);
  };
  AdamW opt({w1, b1, w2, b2}, 0.02, AdamWOptions{.weight_decay = 0});
  double first = 0, last = 0;
  for (int step = 0; step < 300; ++step) {
    Var loss = loss_fn();
    if (step == 0) first = loss.value().item();
    last = loss.value().item();
    backward(loss);
    opt.step();
    opt.zero_grad();
  }
  MESSAGE("MLP loss: ", first, " -> ", last);
  // Target variance is ~0.5; the threshold 0.01 means the MLP explains > 98% of it.
  CHECK(last < 0.01);
  CHECK(last < first / 20);
}

}  // namespace
}  // namespace arq::ag
