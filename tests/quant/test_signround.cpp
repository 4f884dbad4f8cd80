// The SignRound tuner on a synthetic block: a residual SwiGLU MLP written inline,
// y = x + down(silu(x·gateᵀ) ⊙ (x·upᵀ)), hidden 32, intermediate 64, random weights.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/loss.h"
#include "autograd/ops.h"
#include "engine/ops.h"
#include "quant/qdq.h"
#include "quant/signround.h"

using namespace arq;
using namespace arq::quant;

namespace {

struct Mlp {
  std::map<std::string, Tensor> w;  // gate [64, 32], up [64, 32], down [32, 64]
  explicit Mlp(uint64_t seed) {
    w["gate"] = rand_normal({64, 32}, seed, 0, 0.25);
    w["up"] = rand_normal({64, 32}, seed + 1, 0, 0.25);
    w["down"] = rand_normal({32, 64}, seed + 2, 0, 0.2);
  }
  BlockFn fn() const {
    return [this](const ag::Var& x, const WeightMap& sub) {
      auto get = [&](const char* n) {
        auto it = sub.find(n);
        return it != sub.end() ? it->second : ag::Var(w.at(n));
      };
      auto lin = [](const ag::Var& a, const ag::Var& wt) { return ag::matmul(a, ag::transpose(wt, 0, 1)); };
      return x + lin(ag::silu(lin(x, get("gate"))) * lin(x, get("up")), get("down"));
    };
  }
  std::vector<TunableLinear> linears(const QuantScheme& s) const {
    return {{"gate", w.at("gate"), s}, {"up", w.at("up"), s}, {"down", w.at("down"), s}};
  }
};

// Masked mean squared error over all samples of the block with the given weights.
double block_mse(const Mlp& m, const Tensor& x, const Tensor& y, const Tensor& mask, const std::map<std::string, Tensor>& wts) {
  const Tensor out = run_block(m.fn(), x, wts, 4, DType::f32, DType::f32);
  ag::NoGrad ng;
  return ag::masked_mse(ag::Var(out), y, mask.reshape({mask.size(0), mask.size(1), 1}), ag::MseReduction::mean_valid)
      .value()
      .item();
}

struct Data {
  Tensor x, y, mask;
};
Data make_data(const Mlp& m, int64_t n, int64_t seq) {
  Data d;
  d.x = rand_normal({n, seq, 32}, 77);
  d.y = run_block(m.fn(), d.x, {}, 4, DType::f32, DType::f32);
  // the last position of every sample is masked out, as AutoRound's text data always is
  d.mask = ones({n, seq});
  Tensor last = d.mask.narrow(1, seq - 1, 1);
  fill_(last, 0.0);
  return d;
}

}  // namespace

TEST_CASE("SignRound iteration 0 is RTN: one iteration keeps the RTN weights and logs the RTN loss") {
  Mlp m(5);
  Data d = make_data(m, 12, 6);
  for (bool sym : {true, false}) {
    for (bool not_best : {false, true}) {
      QuantScheme s{.bits = 3, .group_size = 16, .sym = sym};
      PyRandom rng(42);
      TuneResult r = tune_block(m.fn(), m.linears(s), {d.x, d.y, d.mask},
                                {.iters = 1, .batch_size = 4, .not_use_best_mse = not_best}, rng);
      REQUIRE(r.layers.size() == 3);
      std::map<std::string, Tensor> rtn;
      for (const TunedLinear& l : r.layers) {
        const QuantizedLinear q = quantize_rtn(m.w.at(l.q.name), s);
        CHECK(to_vector(l.q.codes) == to_vector(q.codes));
        CHECK(to_vector(l.q.scales) == to_vector(q.scales));
        CHECK(to_vector(l.q.zeros) == to_vector(q.zeros));
        CHECK(to_vector(l.weight) == to_vector(dequantize(q)));
        rtn[l.q.name] = dequantize(q);
      }
      // the logged loss: mean over all elements of the first batch (seed-42 sample of 4 out of
      // 12), divided by that batch's valid tokens. Same ops on bit-identical weights, so equal
      // up to the order of one f32 sum (relative 1e-6).
      PyRandom rng2(42);
      IndexSampler smp(12, 4, rng2);
      std::vector<int64_t> idx = smp.next();
      std::vector<double> di(idx.begin(), idx.end());
      const Tensor sel = from_vector(di, {4}, DType::i64);
      const Tensor xb = index_select(d.x, 0, sel), yb = index_select(d.y, 0, sel);
      const Tensor mb = index_select(d.mask, 0, sel).reshape({4, 6, 1});
      const Tensor out = run_block(m.fn(), xb, rtn, 4, DType::f32, DType::f32);
      ag::NoGrad ng;
      const double l = ag::masked_mse(ag::Var(out), yb, mb, ag::MseReduction::mean_all).value().item() / sum_all(mb).item();
      CHECK(r.loss_init == doctest::Approx(l).epsilon(1e-6));
      CHECK(r.best_iter == 0);
    }
  }
}

TEST_CASE("SignRound lowers the block MSE below RTN (W2 and W3, G16) and is deterministic") {
  Mlp m(9);
  Data d = make_data(m, 16, 8);
  for (int bits : {2, 3}) {
    QuantScheme s{.bits = bits, .group_size = 16};
    std::map<std::string, Tensor> rtn;
    for (const TunableLinear& l : m.linears(s)) rtn[l.name] = dequantize(quantize_rtn(l.weight, s));
    const double mse_rtn = block_mse(m, d.x, d.y, d.mask, rtn);
    PyRandom rng(42);
    TuneResult r = tune_block(m.fn(), m.linears(s), {d.x, d.y, d.mask}, {.iters = 60, .batch_size = 4}, rng);
    std::map<std::string, Tensor> tuned;
    for (const TunedLinear& l : r.layers) tuned[l.q.name] = l.weight;
    const double mse_sr = block_mse(m, d.x, d.y, d.mask, tuned);
    CAPTURE(bits);
    CAPTURE(mse_rtn);
    CAPTURE(mse_sr);
    CHECK(r.loss_best <= r.loss_init);
    CHECK(mse_sr < 0.9 * mse_rtn);
    // same inputs, flags, seed -> identical codes and scales
    PyRandom rng2(42);
    TuneResult r2 = tune_block(m.fn(), m.linears(s), {d.x, d.y, d.mask}, {.iters = 60, .batch_size = 4}, rng2);
    for (size_t i = 0; i < r.layers.size(); ++i) {
      CHECK(to_vector(r.layers[i].q.codes) == to_vector(r2.layers[i].q.codes));
      CHECK(to_vector(r.layers[i].q.scales) == to_vector(r2.layers[i].q.scales));
    }
    CHECK(r.loss_best == r2.loss_best);
  }
}

TEST_CASE("SignRound with gradient accumulation, no minmax tuning, explicit lr, asym") {
  Mlp m(13);
  Data d = make_data(m, 10, 5);
  QuantScheme s{.bits = 3, .group_size = 32, .sym = false};
  std::map<std::string, Tensor> rtn;
  for (const TunableLinear& l : m.linears(s)) rtn[l.name] = dequantize(quantize_rtn(l.weight, s));
  const double mse_rtn = block_mse(m, d.x, d.y, d.mask, rtn);
  PyRandom rng(42);
  // nsamples 10 < batch 4 × gas 3: global batch 10 = micro-batches of 4, 4, 2
  TuneResult r = tune_block(m.fn(), m.linears(s), {d.x, d.y, d.mask},
                            {.iters = 40, .lr = 0.02, .batch_size = 4, .gradient_accumulate_steps = 3,
                             .enable_minmax_tuning = false},
                            rng);
  std::map<std::string, Tensor> tuned;
  for (const TunedLinear& l : r.layers) tuned[l.q.name] = l.weight;
  CHECK(block_mse(m, d.x, d.y, d.mask, tuned) < mse_rtn);
  CHECK(r.iters_run == 40);
}

TEST_CASE("tune_block rejects bad input with errors naming the problem") {
  Mlp m(1);
  Data d = make_data(m, 4, 3);
  PyRandom rng(42);
  QuantScheme s{.bits = 4, .group_size = 32};
  CHECK_THROWS_AS(tune_block(m.fn(), m.linears(s), {d.x, d.y, d.mask}, {.iters = 0}, rng), UsageError);
  CHECK_THROWS_AS(tune_block(m.fn(), m.linears(s), {d.x, d.y.narrow(0, 0, 2), d.mask}, {.iters = 1}, rng), ShapeError);
  CHECK_THROWS_AS(tune_block(m.fn(), m.linears({.bits = 16}), {d.x, d.y, d.mask}, {.iters = 1}, rng), UsageError);
}

TEST_CASE("auto learning rate: 1/iters, doubled for <= 3 bits from 1000 iterations") {
  CHECK(auto_lr(200, 4) == 1.0 / 200);
  CHECK(auto_lr(200, 2) == 1.0 / 200);
  CHECK(auto_lr(1000, 3) == 2.0 / 1000);
  CHECK(auto_lr(1000, 4) == 1.0 / 1000);
}
