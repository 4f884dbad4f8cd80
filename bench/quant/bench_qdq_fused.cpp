// The SignRound qdq of one linear per iteration, forward + backward, fused (engine/qdq_fused.h:
// one kernel each way) against the autograd composition it replaces (quant/qdq.cpp,
// QdqImpl::composed: ~15 nodes, each a pass over the grouped weight), on the CPU at the Llama-1B
// block's weight shapes (bench/llama_specs.h): W4G128 int_sym and int_asym, bf16 weights, fp16
// scales, V and α/β tuned (minmax on), as tune_block runs it every iteration for every linear.
//
// Validation before timing: the fused ŵ must equal the composition's bit for bit and dV, dα, dβ
// value for value. Reported per case: ms per forward+backward and the bytes the fused pair must
// move (wg, V read twice, ŵ and dŵ once, dV written: 18 B per weight) per second; after the run, the
// median composed/fused ratio per shape, of wall time and of process CPU time.
//
//   meson configure build -Dbenchmarks=true && ninja -C build bench/quant/bench_qdq_fused
//   ./build/bench/quant/bench_qdq_fused --benchmark_repetitions=5
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>
#include <string>
#include <vector>

#include "autograd/autograd.h"
#include "bench/llama_specs.h"
#include "engine/ops.h"
#include "quant/qdq.h"

using namespace arq;
using namespace arq::quant;

namespace {

struct LinearShape {
  const char* name;
  int64_t out, in;
};

// The distinct weight shapes of a Llama-1B block: q/o [2048, 2048], k/v [1024, 2048],
// gate/up [5632, 2048], down [2048, 5632].
std::vector<LinearShape> shapes_1b() {
  const models::DecoderSpec s = bench::llama_1b_spec(1, 256);
  const int64_t H = s.hidden_size, I = s.intermediate_size, kv = s.num_key_value_heads * s.head_dim;
  return {{"q_proj", s.num_attention_heads * s.head_dim, H}, {"k_proj", kv, H}, {"gate_proj", I, H}, {"down_proj", H, I}};
}

struct Problem {
  QuantScheme scheme;
  GroupLayout layout;
  Tensor wg;
  GroupRange range;
  QdqParams params;
  Tensor grad_out;  // [out, in] bf16 cotangent of ŵ
  Problem(const LinearShape& sh, const char* type) {
    scheme = {.bits = 4, .group_size = 128, .data_type = type};
    layout = make_group_layout(sh.out, sh.in, 128);
    const Tensor w = rand_normal({sh.out, sh.in}, 1, 0, 0.02).to(DType::bf16);
    wg = to_groups(w, layout);
    range = group_range(wg);
    params = make_qdq_params(layout, true);
    Tensor v = params.v.value();
    copy_(v, rand_uniform(v.shape(), 2, -0.3, 0.3));
    Tensor a = params.alpha.value();
    copy_(a, rand_uniform(a.shape(), 3, 0.7, 1.0));
    grad_out = rand_normal({sh.out, sh.in}, 4, 0, 1e-3).to(DType::bf16);
  }
  // One iteration's qdq work: forward, backward into the leaves' grads.
  ag::Var step(QdqImpl impl) {
    params.v.zero_grad();
    params.alpha.zero_grad();
    params.beta.zero_grad();
    ag::Var w_hat = qdq_weight(wg, range, params, scheme, layout, DType::bf16, impl);
    ag::backward(w_hat, grad_out);
    return w_hat;
  }
};

bool validate(Problem& p, std::string& why) {
  const Tensor wf = p.step(QdqImpl::fused).value();
  const Tensor gv = p.params.v.grad().clone(), ga = p.params.alpha.grad().clone(), gb = p.params.beta.grad().clone();
  const Tensor wc = p.step(QdqImpl::composed).value();
  if (std::memcmp(wf.data_ptr(), wc.data_ptr(), wf.nbytes()) != 0) why = "forward bits differ";
  else if (to_vector(gv) != to_vector(p.params.v.grad())) why = "dV differs";
  else if (to_vector(ga) != to_vector(p.params.alpha.grad())) why = "dα differs";
  else if (to_vector(gb) != to_vector(p.params.beta.grad())) why = "dβ differs";
  return why.empty();
}

// Per-iteration wall and process-CPU times of every case, for the table printed after the run
// (on a loaded machine the CPU seconds of a 1-thread run, ARQ_NUM_THREADS=1, still compare work).
std::map<std::string, std::vector<double>>& times() {
  static std::map<std::string, std::vector<double>> t;
  return t;
}
std::map<std::string, std::vector<double>>& cpu_times() {
  static std::map<std::string, std::vector<double>> t;
  return t;
}
double process_cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : (v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]));
}

void BM_qdq(benchmark::State& state, LinearShape sh, const char* type, QdqImpl impl) {
  Problem p(sh, type);
  std::string why;
  if (!validate(p, why)) {
    state.SkipWithError(why.c_str());
    return;
  }
  const std::string key = cat(sh.name, " ", type, impl == QdqImpl::fused ? " fused" : " composed");
  std::vector<double>& t = times()[key];
  std::vector<double>& tc = cpu_times()[key];
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    const double c0 = process_cpu_s();
    benchmark::DoNotOptimize(p.step(impl));
    tc.push_back(process_cpu_s() - c0);
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  const double n = static_cast<double>(sh.out * sh.in);
  state.counters["GB/s(18B/w)"] =
      benchmark::Counter(18.0 * n * 1e-9 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void register_all() {
  for (const LinearShape& sh : shapes_1b())
    for (const char* type : {"int_sym", "int_asym"})
      for (QdqImpl impl : {QdqImpl::composed, QdqImpl::fused}) {
        const std::string name =
            cat("qdq_fwd_bwd/", sh.name, "[", sh.out, "x", sh.in, "]/W4G128/", type, impl == QdqImpl::fused ? "/fused" : "/composed");
        benchmark::RegisterBenchmark(name.c_str(), BM_qdq, sh, type, impl)
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime()
            ->MinTime(1.0);
      }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  std::printf("\nmedian ms per forward+backward over every timed iteration (wall; process CPU):\n");
  std::printf("%-22s %10s %10s %7s | %10s %10s %7s\n", "case", "composed", "fused", "ratio", "cpu comp", "cpu fused",
              "ratio");
  for (const LinearShape& sh : shapes_1b())
    for (const char* type : {"int_sym", "int_asym"}) {
      const std::string key = cat(sh.name, " ", type);
      const double c = median(times()[key + " composed"]), f = median(times()[key + " fused"]);
      const double cc = median(cpu_times()[key + " composed"]), cf = median(cpu_times()[key + " fused"]);
      if (c > 0 && f > 0)
        std::printf("%-22s %10.2f %10.2f %6.2fx | %10.2f %10.2f %6.2fx\n", key.c_str(), 1e3 * c, 1e3 * f, c / f, 1e3 * cc,
                    1e3 * cf, cf > 0 ? cc / cf : 0.0);
    }
  benchmark::Shutdown();
  return 0;
}
