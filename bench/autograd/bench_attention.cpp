// bench_attention: forward + backward of causal GQA attention at the 1B Llama block's shape
// (bench/llama_specs.h: 16 heads, 8 kv heads, head_dim 128), attention_core (chunked,
// recomputing, causal tiles skipped) against the composition it replaced (attention_composed:
// the whole [b, nh, s, s] score matrix, several copies saved for backward), and attention_core
// with its row steps as the engine-op chain (core_chain_*) against the fused row kernels
// (engine/attention_rows.h; core_*).
//
// Counters (per benchmark; the time is the median of the repetitions):
//   peak_MiB    peak bytes of the CPU allocator above the inputs during forward + backward
//   saved_MiB   bytes alive between forward and backward (what the graph keeps)
//   score_frac  fraction of the score square computed (per pass; the backward recomputes Q·Kᵀ)
//   GFLOP/s     useful FLOPs (the causal half of 2 GEMMs forward, 4 backward: 6·b·nh·s²·hd)
//               per second, the same count for both, so the ratio of rates is the speed-up
// Validation before timing: at a small shape, attention_core's output and gradients equal the
// composition's to 1e-4 (normwise, f32).
//
//   build-x/bench/autograd/bench_attention --benchmark_repetitions=3
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "autograd/attention.h"
#include "autograd/autograd.h"
#include "bench/llama_specs.h"
#include "engine/storage.h"

namespace arq::bench {
namespace {

using namespace arq::ag;

struct Shape4 {
  int64_t b, nh, nkv, s, hd;
};

Shape4 shape_1b(int64_t batch, int64_t seq) {
  const models::DecoderSpec sp = llama_1b_spec(1, 32);
  return {batch, sp.num_attention_heads, sp.num_key_value_heads, seq, sp.head_dim};
}

struct Inputs {
  Tensor q, k, v, w;  // q/w [b, nh, s, hd], k/v [b, nkv, s, hd]
  AttentionOptions o;
};

Inputs make_inputs(const Shape4& sh, DType dt) {
  Inputs in;
  in.q = rand_normal({sh.b, sh.nh, sh.s, sh.hd}, 1, 0, 1, dt);
  in.k = rand_normal({sh.b, sh.nkv, sh.s, sh.hd}, 2, 0, 1, dt);
  in.v = rand_normal({sh.b, sh.nkv, sh.s, sh.hd}, 3, 0, 1, dt);
  in.w = rand_normal({sh.b, sh.nh, sh.s, sh.hd}, 4, 0, 1, dt);
  in.o.scaling = 1 / std::sqrt(double(sh.hd));
  in.o.causal = true;
  return in;
}

struct StepBytes {
  size_t saved = 0, peak = 0;
};

// One forward + backward; returns the bytes kept for backward and the peak above the inputs.
StepBytes step(const Inputs& in, bool core, Tensor* out_grads = nullptr) {
  Allocator& alloc = allocator_for(Device::cpu());
  const size_t before = alloc.bytes_in_use();
  alloc.reset_peak();
  Var q(in.q, true), k(in.k, true), v(in.v, true);
  Var loss;
  {
    Var out = core ? attention_core(q, k, v, in.o) : attention_composed(q, k, v, in.o);
    loss = sum_all(out * Var(in.w));
  }
  StepBytes r;
  r.saved = alloc.bytes_in_use() - before;
  backward(loss);
  r.peak = alloc.peak_bytes() - before;
  if (out_grads) {
    out_grads[0] = q.grad();
    out_grads[1] = k.grad();
    out_grads[2] = v.grad();
    out_grads[3] = loss.value();
  }
  return r;
}

bool validate() {
  const Inputs in = make_inputs({1, 4, 2, 96, 32}, DType::f32);
  Inputs small = in;
  small.o.chunk_rows = 7;
  Tensor a[4], b[4];
  step(small, true, a);
  step(small, false, b);
  for (int i = 0; i < 4; ++i) {
    const double scale = std::max(1.0, arq::max(arq::abs(b[i].flatten()), 0).item());
    const double err = arq::max(arq::abs(arq::sub(a[i], b[i]).flatten()), 0).item();
    if (!(err <= 1e-4 * scale)) {
      std::fprintf(stderr, "bench_attention: validation failed (output %d: err %g, scale %g)\n", i, err, scale);
      return false;
    }
  }
  return true;
}

// impl: 0 attention_core (fused row kernels), 1 attention_core with the engine-op chain for the
// row steps (AttentionOptions::fused_rows = false: the code before engine/attention_rows.h),
// 2 the composition.
void BM_attention(benchmark::State& st, int impl, DType dt) {
  const bool core = impl != 2;
  static const bool ok = validate();
  if (!ok) {
    st.SkipWithError("validation failed");
    return;
  }
  const Shape4 sh = shape_1b(st.range(0), st.range(1));
  Inputs in = make_inputs(sh, dt);
  in.o.fused_rows = impl == 0;
  StepBytes bytes;
  for (auto _ : st) bytes = step(in, core);
  const double flops = 6.0 * double(sh.b * sh.nh) * double(sh.s) * double(sh.s) * double(sh.hd);
  st.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["peak_MiB"] = double(bytes.peak) / (1 << 20);
  st.counters["saved_MiB"] = double(bytes.saved) / (1 << 20);
  // Fraction of the [b, nh, s, s] score square attention_core computes (the composition: all of it).
  st.counters["score_frac"] =
      core ? double(attention_score_elements(in.q, in.k, in.o)) / (double(sh.b * sh.nh) * double(sh.s * sh.s)) : 1.0;
  st.counters["chunk_rows"] =
      core ? double(attention_chunk_rows(in.o, sh.b, sh.nh, sh.s, sh.s, dt)) : double(sh.s);
}

void args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"batch", "seq"})->Args({1, 512})->Args({1, 1024})->Args({2, 1024})->Args({1, 2048});
  b->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1)->Repetitions(3)->ReportAggregatesOnly(true);
}

BENCHMARK_CAPTURE(BM_attention, core_f32, 0, DType::f32)->Apply(args);
BENCHMARK_CAPTURE(BM_attention, core_chain_f32, 1, DType::f32)->Apply(args);
BENCHMARK_CAPTURE(BM_attention, composed_f32, 2, DType::f32)->Apply(args);
BENCHMARK_CAPTURE(BM_attention, core_bf16, 0, DType::bf16)->Apply(args);
BENCHMARK_CAPTURE(BM_attention, core_chain_bf16, 1, DType::bf16)->Apply(args);
BENCHMARK_CAPTURE(BM_attention, composed_bf16, 2, DType::bf16)->Apply(args);

}  // namespace
}  // namespace arq::bench

BENCHMARK_MAIN();
