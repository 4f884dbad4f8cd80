// One SignRound iteration on CUDA for a Llama-3-8B-shaped decoder block (hidden 4096,
// intermediate 14336, 32 heads, 8 kv heads, head_dim 128), random weights, batch 8 × seqlen
// 2048 (16384 tokens), W4G128 sym, in bf16 (and f32 when the card has room).
//
// Timed: the interval between two consecutive iterations of quant::tune_block (SignSGD step,
// qdq of the 7 linears, block forward, loss, backward, best-snapshot), synchronizing the device
// at each iteration's callback; the median over the iterations after the first. Reported:
// seconds per iteration, the fraction of the same run's bf16 GEMM rate that the iteration's
// FLOPs reach, the per-block overhead (wrap + freeze), the projection to the default recipe
// (32 blocks × 200 iterations) next to AutoRound's 12 min / 18 GB (A100-80G, spec/anchors.md)
// and the 2.3-min H100 floor, and the caching allocator's peak bytes.
//
// Validation before timing: a 1-iteration tune must freeze exactly the RTN codes of the first
// linear (iteration 0 of SignRound is RTN, spec/autoround.md §1.9).
//
// Then (bf16, unless --no-profile) one steady-state iteration again under bench/cuda/kernel_profile.h:
// device time per kernel (op, dtype, shape), largest first, and their sum against the wall time.
//
//   build-x/bench/cuda/bench_signround_cuda [--quick] [--iters N] [--no-f32] [--no-profile]
//   (--quick: seqlen 512, 3 iterations; lines starting "BENCH signround" feed scripts/gpu-check)
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bench/cuda/kernel_profile.h"
#include "bench/llama_specs.h"
#include "engine/ops.h"
#include "kernels/cuda/cuda_api.h"
#include "models/random_model.h"
#include "quant/qdq.h"
#include "quant/signround.h"

using namespace arq;

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

constexpr int64_t kBatch = 8;

models::DecoderSpec spec_8b() { return bench::llama_8b_block_spec(); }

// FLOPs of one iteration: linears 2·T·P forward and 4·T·P backward (dX and dW); attention: the
// useful causal half of Q·Kᵀ and P·V forward (4·b·nh·s²·hd / 2) and of the backward's four GEMMs
// (twice that). The blocks run attention_core (autograd/attention.h), which skips the masked
// (future) score tiles, so the full square is no longer computed; not counted are the work it adds
// for that: the backward's recomputation of Q·Kᵀ and the masked half of the diagonal chunks
// (executed ≈ 3.5·att·(s + 128)/(2s) ≈ 1.86·att at s = 2048, against 1.5·att counted).
double iteration_flops(const models::DecoderSpec& s, int64_t seq, double params) {
  const double t = static_cast<double>(kBatch * seq);
  const double att = 4.0 * kBatch * s.num_attention_heads * static_cast<double>(seq) * seq * s.head_dim;
  return 6.0 * t * params + 3.0 * att / 2;
}

// bf16 GEMM rate of this card at the block's largest shape (gate/up: [T, 4096] · [4096, 14336]).
double gemm_tflops(int64_t tokens) {
  const Device dev = Device::cuda(0);
  const Tensor x = rand_uniform({tokens, 4096}, 1, -1, 1, DType::bf16, dev);
  const Tensor w = rand_uniform({14336, 4096}, 2, -1, 1, DType::bf16, dev);
  for (int i = 0; i < 3; ++i) (void)matmul(x, w.t());
  cuda_backend().synchronize();
  std::vector<double> sec;
  for (int i = 0; i < 7; ++i) {
    const auto t0 = Clock::now();
    (void)matmul(x, w.t());
    cuda_backend().synchronize();
    sec.push_back(since(t0));
  }
  std::sort(sec.begin(), sec.end());
  return 2.0 * static_cast<double>(tokens) * 4096.0 * 14336.0 / sec[sec.size() / 2] / 1e12;
}

struct Result {
  std::string dtype;
  bool ok = false;
  std::string error;
  double s_iter = 0, overhead_s = 0, peak_gib = 0, tflops = 0;
};

Result run(DType dt, int64_t seq, int64_t iters, bool profile) {
  Result r;
  r.dtype = dtype_name(dt);
  const Device dev = Device::cuda(0);
  try {
    cuda::empty_cache();
    allocator_for(dev).reset_peak();
    const models::DecoderSpec spec = spec_8b();
    const auto t_setup = Clock::now();
    const models::CausalLM lm = models::random_causal_lm(spec, {.seed = 1, .dtype = dt}, {.device = dev});
    const models::BlockWeights bw = lm.load_block(0);
    const models::BlockInputs in = lm.block_inputs({.batch = kBatch, .seq = seq});
    const quant::BlockFn fn = [&](const ag::Var& h, const quant::WeightMap& w) { return lm.block_forward(bw, h, in, w); };
    std::vector<quant::TunableLinear> linears;
    double params = 0;
    for (const auto& li : lm.block_linears(0)) {
      linears.push_back({li.name, bw.at(li.weight_name()), {.bits = 4, .group_size = 128}});
      params += static_cast<double>(li.in_features * li.out_features);
    }
    // Calibration activations: unit-variance hidden states (a block input after RMSNorm scale).
    const Tensor x = rand_normal({kBatch, seq, spec.hidden_size}, 2, 0, 1, dt, dev);
    const Tensor y = quant::run_block(fn, x, {}, kBatch, dt, dt);
    cuda_backend().synchronize();
    std::printf("  %s: setup %.1f s (random weights on the host, block to the device, reference outputs)\n",
                r.dtype.c_str(), since(t_setup));
    std::fflush(stdout);
    quant::TuneData data;
    data.inputs = x;
    data.targets = y;
    {  // validate: iteration 0 is RTN
      quant::PyRandom rng(42);
      quant::SignRoundOptions one;
      one.iters = 1;
      one.batch_size = kBatch;
      one.compute_dtype = dt;
      const quant::TuneResult v = quant::tune_block(fn, {linears[0]}, data, one, rng);
      const quant::QuantizedLinear ref = quant::quantize_rtn(linears[0].weight, linears[0].scheme);
      if (to_vector(v.layers[0].q.codes) != to_vector(ref.codes)) throw Error("iteration 0 did not reproduce RTN codes");
    }
    std::vector<Clock::time_point> marks;
    quant::SignRoundOptions o;
    o.iters = iters;
    o.batch_size = kBatch;
    o.compute_dtype = dt;
    o.on_iter = [&](int64_t, int64_t, double) {
      cuda_backend().synchronize();
      marks.push_back(Clock::now());
    };
    quant::PyRandom rng(42);
    const auto t0 = Clock::now();
    const quant::TuneResult tr = quant::tune_block(fn, linears, data, o, rng);
    const double total = since(t0);
    std::vector<double> gaps;
    for (size_t i = 2; i < marks.size(); ++i) gaps.push_back(std::chrono::duration<double>(marks[i] - marks[i - 1]).count());
    if (gaps.empty()) throw Error("need at least 3 iterations to time one");
    std::sort(gaps.begin(), gaps.end());
    r.s_iter = gaps[gaps.size() / 2];
    r.overhead_s = std::max(0.0, total - r.s_iter * static_cast<double>(iters));
    r.tflops = iteration_flops(spec, seq, params) / r.s_iter / 1e12;
    r.peak_gib = static_cast<double>(allocator_for(dev).peak_bytes()) / (1 << 30);
    r.ok = true;
    if (profile) {   // one steady-state iteration (the step after iteration 1 and iteration 2), by kernel
      bench::KernelProfile prof;
      quant::SignRoundOptions po = o;
      po.iters = 3;
      po.on_iter = [&](int64_t i, int64_t, double) {
        if (i == 1) prof.start();
        if (i == 2) prof.stop();
      };
      quant::PyRandom prng(42);
      (void)quant::tune_block(fn, linears, data, po, prng);
      prof.report(28, (std::string("SignRound iteration ") + r.dtype).c_str());
    }
    // loss: iteration 0 (RTN) and the best of the timed run, all 7 linears quantized
    std::printf("BENCH signround %s %.4f s/iter %.1f TFLOP/s overhead %.1f s peak %.2f GiB loss %.4g -> %.4g\n",
                r.dtype.c_str(), r.s_iter, r.tflops, r.overhead_s, r.peak_gib, tr.loss_init, tr.loss_best);
  } catch (const std::exception& e) {
    r.error = e.what();
    r.peak_gib = static_cast<double>(allocator_for(dev).peak_bytes()) / (1 << 30);
    std::printf("BENCH signround %s FAILED (peak %.2f GiB): %s\n", r.dtype.c_str(), r.peak_gib, e.what());
  }
  std::fflush(stdout);
  cuda::empty_cache();
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, f32 = true, profile = true;
  int64_t iters = 5;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) quick = true;
    else if (std::strcmp(argv[i], "--no-f32") == 0) f32 = false;
    else if (std::strcmp(argv[i], "--no-profile") == 0) profile = false;
    else if (std::strcmp(argv[i], "--iters") == 0 && i + 1 < argc) iters = std::max<int64_t>(3, std::atoll(argv[++i]));
    else {
      std::printf("usage: bench_signround_cuda [--quick] [--iters N>=3] [--no-f32] [--no-profile]\n");
      return 2;
    }
  }
  if (cuda_device_count() == 0) {
    std::printf("no CUDA GPU visible: SignRound CUDA benchmark skipped\n");
    return 0;
  }
  const int64_t seq = quick ? 512 : 2048;
  if (quick) iters = 3;
  cuda_backend().synchronize();  // installs the caching allocator whose peak is reported
  const std::string device = cuda_device_name(0);
  size_t free_b = 0, total_b = 0;
  cudaMemGetInfo(&free_b, &total_b);
  std::printf("bench_signround_cuda on %s (%.1f GiB), Llama-3-8B block, batch %lld x seqlen %lld, W4G128, %lld iterations\n",
              device.c_str(), static_cast<double>(total_b) / (1 << 30), static_cast<long long>(kBatch),
              static_cast<long long>(seq), static_cast<long long>(iters));
  const double gemm = gemm_tflops(kBatch * seq);
  std::printf("BENCH signround gemm bf16 %.1f TFLOP/s\n", gemm);
  std::vector<Result> rs;
  rs.push_back(run(DType::bf16, seq, iters, profile));
  // f32 needs about twice bf16's activations and weights: try it only when that fits.
  const double need = rs[0].peak_gib * 2.2;
  if (f32 && rs[0].ok && need < static_cast<double>(total_b) / (1 << 30)) {
    rs.push_back(run(DType::f32, seq, iters, false));
  } else if (f32) {
    std::printf("  f32 skipped: about %.0f GiB needed (2.2 x the bf16 peak), card has %.0f GiB\n", need,
                static_cast<double>(total_b) / (1 << 30));
  }

  std::printf("\n== SignRound iteration, Llama-3-8B block, %s (batch %lld x %lld, W4G128) ==\n", device.c_str(),
              static_cast<long long>(kBatch), static_cast<long long>(seq));
  std::printf("%-6s %10s %12s %10s %12s %14s %10s\n", "dtype", "s/iter", "TFLOP/s", "of GEMM", "overhead s",
              "32x200 proj.", "peak GiB");
  // The exit status follows bf16 (the recipe's dtype); an f32 run that does not fit is reported only.
  const bool all_ok = rs[0].ok;
  for (const Result& r : rs) {
    if (!r.ok) {
      std::printf("%-6s FAILED: %s\n", r.dtype.c_str(), r.error.c_str());
      continue;
    }
    // Projection: 32 blocks, each 200 iterations plus its own wrap/freeze overhead; the
    // per-sample caches of 128 samples and data loading are not included.
    const double proj_min = 32.0 * (200.0 * r.s_iter + r.overhead_s) / 60.0;
    std::printf("%-6s %10.4f %12.1f %9.0f%% %12.1f %11.1f min %10.2f\n", r.dtype.c_str(), r.s_iter, r.tflops,
                100.0 * r.tflops / gemm, r.overhead_s, proj_min, r.peak_gib);
    std::printf("BENCH signround-proj %s %.1f min peak %.2f GiB\n", r.dtype.c_str(), proj_min, r.peak_gib);
  }
  std::printf("reference: AutoRound 12 min / 18 GB (A100-80G, torch 2.6 + compile); H100 bf16 floor 2.3 min "
              "(spec/anchors.md); GEMM bf16 here %.0f TFLOP/s%s\n",
              gemm, quick ? "; --quick: seqlen 512, the projection is not the real recipe's" : "");
  return all_ok ? 0 : 1;
}
