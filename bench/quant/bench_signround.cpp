// One SignRound iteration (forward + backward + SignSGD update over all 7 linears of a block)
// on a Llama block with 1B shapes: hidden 2048, intermediate 5632, 16 heads, 8 kv heads,
// batch 8 × seqlen 512, in f32 and bf16 on CPU. Reported: seconds per iteration and GFLOP/s
// of the block's matmuls (forward 2·T·P, backward twice that: 6·T·P for T tokens and P linear
// weights), and the same run's plain matmul GFLOP/s on a [4096, 2048]·[2048, 5632] product, so
// the ratio says how much of the matmul rate the tuner sustains (target >= 50%).
//
// Validation before timing: a 1-iteration tune must freeze exactly the RTN codes (iteration 0
// of SignRound is RTN, spec/autoround.md §1.9).
//
//   meson compile -C build bench_quant && ./build/bench/quant/bench_quant
// The CUDA counterpart (Llama-3-8B block, batch 8 × 2048, projection to the default recipe and
// peak GPU memory) is bench/cuda/bench_signround_cuda.cpp, run by scripts/gpu-check.
#include <benchmark/benchmark.h>

#include <cstdio>

#include "bench/llama_specs.h"
#include "autograd/autograd.h"
#include "engine/ops.h"
#include "models/random_model.h"
#include "quant/qdq.h"
#include "quant/signround.h"

using namespace arq;

namespace {

constexpr int64_t kBatch = 8, kSeq = 512;

models::DecoderSpec spec_1b() { return bench::llama_1b_spec(1, 256); }

struct Setup {
  models::CausalLM lm;
  models::BlockWeights bw;
  models::BlockInputs in;
  Tensor x, y;
  std::vector<quant::TunableLinear> linears;
  double params = 0;
  explicit Setup(DType dt)
      : lm(models::random_causal_lm(spec_1b(), {.seed = 1, .dtype = dt})), bw(lm.load_block(0)),
        in(lm.block_inputs({.batch = kBatch, .seq = kSeq})) {
    x = rand_normal({kBatch, kSeq, 2048}, 2, 0, 1, DType::f32).to(dt);
    for (const auto& li : lm.block_linears(0)) {
      linears.push_back({li.name, bw.at(li.weight_name()), {.bits = 4, .group_size = 128}});
      params += static_cast<double>(li.in_features * li.out_features);
    }
    y = quant::run_block(fn(), x, {}, kBatch, dt, dt);
  }
  quant::BlockFn fn() const {
    return [this](const ag::Var& h, const quant::WeightMap& w) { return lm.block_forward(bw, h, in, w); };
  }
};

void BM_signround_iteration(benchmark::State& state, DType dt) {
  Setup s(dt);
  const quant::TuneData data{s.x, s.y, Tensor()};
  {
    quant::PyRandom rng(42);
    quant::TuneResult r = quant::tune_block(s.fn(), s.linears, data, {.iters = 1, .batch_size = kBatch, .compute_dtype = dt}, rng);
    const quant::QuantizedLinear ref = quant::quantize_rtn(s.linears[0].weight, s.linears[0].scheme);
    if (to_vector(r.layers[0].q.codes) != to_vector(ref.codes)) {
      state.SkipWithError("iteration 0 did not reproduce RTN");
      return;
    }
  }
  for (auto _ : state) {
    quant::PyRandom rng(42);
    quant::TuneResult r = quant::tune_block(s.fn(), s.linears, data, {.iters = 1, .batch_size = kBatch, .compute_dtype = dt}, rng);
    benchmark::DoNotOptimize(r.loss_init);
  }
  const double tokens = static_cast<double>(kBatch * kSeq);
  state.counters["s/iter"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["GFLOP/s"] = benchmark::Counter(6.0 * tokens * s.params * 1e-9 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_matmul_reference(benchmark::State& state, DType dt) {
  const Tensor a = rand_normal({kBatch * kSeq, 2048}, 3, 0, 1, DType::f32).to(dt);
  const Tensor b = rand_normal({2048, 5632}, 4, 0, 1, DType::f32).to(dt);
  for (auto _ : state) benchmark::DoNotOptimize(matmul(a, b));
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * kBatch * kSeq * 2048 * 5632 * 1e-9 * static_cast<double>(state.iterations()),
                                                 benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK_CAPTURE(BM_matmul_reference, f32, DType::f32)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_signround_iteration, f32, DType::f32)->Unit(benchmark::kSecond)->UseRealTime()->Iterations(2);
BENCHMARK_CAPTURE(BM_matmul_reference, bf16, DType::bf16)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_signround_iteration, bf16, DType::bf16)->Unit(benchmark::kSecond)->UseRealTime()->Iterations(2);

BENCHMARK_MAIN();
