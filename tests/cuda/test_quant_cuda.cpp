// The quantizer with `--device cuda`: SignRound on a decoder block and the whole pipeline on a
// tiny random Llama, run on CUDA and on the CPU with the same data, seed and batch order.
//
// What must agree, and why:
//  - iteration 0 is RTN on both devices: V = 0, α = β = 1, and the qdq is elementwise exact
//    arithmetic (÷, round, clamp, ×: bit-identical kernels), so with iters = 1 the frozen codes,
//    scales and zeros are identical;
//  - the losses differ only through GEMM/reduction order: every block output carries a relative
//    error ≤ K·eps32 (K the longest reduction, f32 accumulation) on each device, so the loss
//    mean((pred − y)²) moves by ≤ 2·δ·rms(y)·√loss + δ²·ms(y) with δ = 4·K·eps32 (bound
//    computed from the CPU run's own numbers below);
//  - later iterations follow sign(∇): a gradient element within rounding of 0 may take the other
//    sign, so V drifts by 2·lr at such elements and a code whose x/s + V sits that close to a
//    rounding boundary flips by one (a flipped α/β step moves a whole group's scale, so a few
//    codes may move further). Such elements are rare. Measured on an H100 (2026-11-27): 0 of
//    10,240 / 20,480 codes differ and the best losses agree to 6 digits; the bounds below
//    (≤ 1% of codes differ, ≤ 0.1% by more than one step, best losses within 1%) leave room
//    for other cards' cuBLAS algorithms.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "engine/ops.h"
#include "kernels/cuda/cuda_api.h"
#include "models/family.h"
#include "models/random_model.h"
#include "quant/pipeline.h"
#include "tests/quant/quant_test_util.h"
#include "quant/signround.h"
#include "tests/cuda/cuda_test_util.h"

using namespace arq;
using namespace arq::cudatest;
using namespace arq::quant;
using namespace arq::quant_test;

namespace {

Device test_device() { return on_cpu_selfcheck() ? Device::cpu() : Device::cuda(0); }

struct Run {
  TuneResult r;
  std::vector<double> losses;  // per iteration
};

Run tune_on(const Device& dev, const QuantScheme& s, int64_t iters, const Tensor& x_cpu, const Tensor& mask_cpu) {
  const models::CausalLM lm = models::random_causal_lm(spec_all_quantizable(), {.seed = 11, .stddev = 0.1}, {.device = dev});
  BlockRunner b(lm, 0, x_cpu.size(1));
  const Tensor x = x_cpu.to(dev), mask = mask_cpu.to(dev);
  const Tensor y = run_block(b.fn(), x, {}, 4, DType::f32, DType::f32);
  Run out;
  SignRoundOptions o;
  o.iters = iters;
  o.batch_size = 4;
  o.on_iter = [&](int64_t, int64_t, double l) { out.losses.push_back(l); };
  PyRandom rng(42);
  TuneData data;
  data.inputs = x;
  data.targets = y;
  data.mask = mask;
  out.r = tune_block(b.fn(), b.linears(s), data, o, rng);
  return out;
}

// Codes of two frozen layers: number of differing codes; every difference must be one step.
struct CodeDiff {
  int64_t n = 0, differ = 0, beyond_one = 0;
};
CodeDiff code_diff(const QuantizedLinear& a, const QuantizedLinear& b) {
  const std::vector<double> ca = to_vector(a.codes), cb = to_vector(b.codes);
  CodeDiff d;
  d.n = static_cast<int64_t>(ca.size());
  for (size_t i = 0; i < ca.size(); ++i) {
    if (ca[i] != cb[i]) ++d.differ;
    if (std::fabs(ca[i] - cb[i]) > 1) ++d.beyond_one;
  }
  return d;
}

// δ·rms bound on the loss difference for a loss `l` over outputs of mean square `ms_y` (see top).
double loss_tol(double l, double ms_y, int64_t k_max) {
  const double delta = 4.0 * static_cast<double>(k_max) * 0x1p-23;
  return 2 * delta * std::sqrt(ms_y) * std::sqrt(l) + delta * delta * ms_y + 1e-12;
}

}  // namespace

TEST_CASE("cuda quant: tune_block on CUDA agrees with the CPU (iteration 0 exactly, later within bounds)") {
  const int64_t n = 8, seq = 12, H = spec_all_quantizable().hidden_size, K = spec_all_quantizable().intermediate_size;
  const Tensor x = rand_normal({n, seq, H}, 5, 0, 1);
  const Tensor mask = last_masked(n, seq);
  const double ms_y = 1.5;  // block outputs are x + small updates, x ~ N(0, 1): E[y²] ≈ 1..1.5
  for (bool sym : {true, false}) {
    const QuantScheme s{.bits = 3, .group_size = 32, .sym = sym};
    const std::string kind = sym ? "sym" : "asym";
    INFO(kind);
    // iters = 1: RTN on both sides.
    const Run c1 = tune_on(Device::cpu(), s, 1, x, mask), g1 = tune_on(test_device(), s, 1, x, mask);
    REQUIRE(c1.r.layers.size() == g1.r.layers.size());
    for (size_t i = 0; i < c1.r.layers.size(); ++i) {
      INFO(c1.r.layers[i].q.name);
      CHECK(to_vector(c1.r.layers[i].q.codes) == to_vector(g1.r.layers[i].q.codes));
      CHECK(to_vector(c1.r.layers[i].q.scales) == to_vector(g1.r.layers[i].q.scales));
      CHECK(to_vector(c1.r.layers[i].q.zeros) == to_vector(g1.r.layers[i].q.zeros));
      CHECK(g1.r.layers[i].weight.device() == test_device());  // on the original weight's device
    }
    CHECK(std::fabs(c1.r.loss_init - g1.r.loss_init) <= loss_tol(c1.r.loss_init, ms_y, K));
    MESSAGE(cat(sym ? "sym" : "asym", " iteration-0 loss cpu ", c1.r.loss_init, " device ", g1.r.loss_init));

    // iters = 20: tuned.
    const Run c = tune_on(Device::cpu(), s, 20, x, mask), g = tune_on(test_device(), s, 20, x, mask);
    REQUIRE(c.losses.size() == g.losses.size());
    CHECK(std::fabs(c.losses[0] - g.losses[0]) <= loss_tol(c.losses[0], ms_y, K));
    CHECK(g.r.loss_best < g.r.loss_init);
    CHECK(std::fabs(c.r.loss_best - g.r.loss_best) <= 0.01 * c.r.loss_best);
    int64_t total = 0, differ = 0, beyond = 0;
    for (size_t i = 0; i < c.r.layers.size(); ++i) {
      const CodeDiff d = code_diff(c.r.layers[i].q, g.r.layers[i].q);
      total += d.n;
      differ += d.differ;
      beyond += d.beyond_one;
    }
    MESSAGE(cat(sym ? "sym" : "asym", " 20 iters: best loss cpu ", c.r.loss_best, " (iter ", c.r.best_iter, ") device ",
                g.r.loss_best, " (iter ", g.r.best_iter, "); codes differing ", differ, " of ", total));
    CHECK(beyond <= total / 1000);
    CHECK(differ <= total / 100);
  }
}

TEST_CASE("cuda quant: the pipeline end to end with the model on the device") {
  const models::DecoderSpec spec = spec_all_quantizable();
  const Tensor ids = calib_ids(8, 12, spec.vocab_size), mask = last_masked(8, 12);  // on the CPU, as the CLI has them
  auto run = [&](const Device& dev, int64_t iters) {
    const models::CausalLM lm = models::random_causal_lm(spec, {.seed = 4, .stddev = 0.1}, {.device = dev});
    PipelineOptions o;
    o.scheme = {.bits = 2, .group_size = 32};
    o.iters = iters;
    o.batch_size = 4;
    return quantize_blocks(lm, ids, mask, o);
  };
  // iters = 1: RTN codes on both devices, identical. Nothing stays on the device afterwards
  // (the caching allocator's bytes in use return to where they were: no leaked block state).
  const size_t in_use_before = cuda::allocator_stats().bytes_in_use;
  const PipelineResult c1 = run(Device::cpu(), 1), g1 = run(test_device(), 1);
  CHECK_MESSAGE(cuda::allocator_stats().bytes_in_use == in_use_before, "device bytes in use before ", in_use_before,
                ", after ", cuda::allocator_stats().bytes_in_use);
  REQUIRE(c1.quantized.size() == 14);
  REQUIRE(g1.quantized.size() == 14);
  for (const auto& [name, q] : c1.quantized) {
    INFO(name);
    CHECK(to_vector(q.codes) == to_vector(g1.quantized.at(name).codes));
    CHECK(g1.weights.at(name + ".weight").device() == Device::cpu());
  }
  // iters = 10: every block's loss falls on the device; losses and codes close to the CPU's.
  const PipelineResult c = run(Device::cpu(), 10), g = run(test_device(), 10);
  REQUIRE(c.blocks.size() == g.blocks.size());
  for (size_t b = 0; b < c.blocks.size(); ++b) {
    INFO("block ", b);
    CHECK(g.blocks[b].tuned);
    CHECK(g.blocks[b].loss_best < g.blocks[b].loss_init);
    // block 0 sees identical inputs; block 1's inputs went through block 0's (maybe different) codes
    const double tol = b == 0 ? loss_tol(c.blocks[b].loss_init, 1.5, spec.intermediate_size) : 0.01 * c.blocks[b].loss_init;
    CHECK(std::fabs(c.blocks[b].loss_init - g.blocks[b].loss_init) <= tol);
    CHECK(std::fabs(c.blocks[b].loss_best - g.blocks[b].loss_best) <= 0.01 * c.blocks[b].loss_best);
    MESSAGE(cat("block ", b, ": loss iter 0 cpu ", c.blocks[b].loss_init, " device ", g.blocks[b].loss_init, "; best cpu ",
                c.blocks[b].loss_best, " device ", g.blocks[b].loss_best));
  }
  int64_t total = 0, differ = 0, beyond = 0;
  for (const auto& [name, q] : c.quantized) {
    const CodeDiff d = code_diff(q, g.quantized.at(name));
    total += d.n;
    differ += d.differ;
    beyond += d.beyond_one;
  }
  MESSAGE(cat("pipeline 10 iters: codes differing ", differ, " of ", total));
  CHECK(beyond <= total / 1000);
  CHECK(differ <= total / 100);
}

// ---- low_gpu_mem_usage: host caches streamed to the device ------------------------------------
// The streamed path moves the same bytes to the same kernels in the same order as the
// GPU-resident one (a sample copied from a host cache is the row index_select would pick on the
// device), so results must be bit-identical, not merely close.

TEST_CASE("cuda quant: streamed batches and sample gathers from host caches equal the on-device ones") {
  const Device dev = test_device();
  const Tensor x = rand_normal({7, 5, 6}, 12, 0, 1);   // [n, s, H] on the host
  const Tensor h = to_host_cache(x);
  CHECK(h.device() == Device::cpu());
  if (dev.is_cuda()) CHECK(cuda::pinned_host_bytes() >= h.nbytes());   // page-locked when a GPU is present
  const std::vector<int64_t> idx{6, 1, 1, 3};
  const Tensor a = take_samples(h, idx, dev), b = take_samples(x.to(dev), idx, dev);
  CHECK(a.device() == dev);
  CHECK(to_vector(a) == to_vector(b));
  // square each chunk on the device: one rounding per element on either side, so bit-identical
  auto fn = [](const ag::Var& xb) { return ag::Var(mul(xb.value(), xb.value())); };
  const Tensor streamed = map_sample_batches(h, 3, DType::f32, DType::bf16, fn, dev);
  const Tensor resident = map_sample_batches(x.to(dev), 3, DType::f32, DType::bf16, fn);
  CHECK(streamed.device() == Device::cpu());   // the result stays with the cache
  CHECK(to_vector(streamed) == to_vector(resident));
}

TEST_CASE("cuda quant: tune_block with host inputs/targets/mask and the tuner on the device equals the resident run") {
  const Device dev = test_device();
  const models::CausalLM lm = models::random_causal_lm(spec_all_quantizable(), {.seed = 11, .stddev = 0.1}, {.device = dev});
  const int64_t n = 8, seq = 12;
  BlockRunner b(lm, 0, seq);
  const Tensor x = rand_normal({n, seq, spec_all_quantizable().hidden_size}, 5, 0, 1).to(dev);
  const Tensor y = run_block(b.fn(), x, {}, 4, DType::f32, DType::f32);
  const Tensor mask = last_masked(n, seq);
  const QuantScheme s{.bits = 3, .group_size = 32, .sym = true};
  auto tune = [&](bool host) {
    SignRoundOptions o;
    o.iters = 8;
    o.batch_size = 4;
    o.device = dev;
    std::vector<double> losses;
    o.on_iter = [&](int64_t, int64_t, double l) { losses.push_back(l); };
    PyRandom rng(42);
    TuneData d;
    d.inputs = host ? to_host_cache(x) : x;
    d.targets = host ? to_host_cache(y) : y;
    d.mask = host ? mask : mask.to(dev);
    TuneResult r = tune_block(b.fn(), b.linears(s), d, o, rng);
    return std::make_pair(std::move(r), losses);
  };
  const auto [res, res_losses] = tune(false);
  const auto [low, low_losses] = tune(true);
  CHECK(res_losses == low_losses);
  REQUIRE(res.layers.size() == low.layers.size());
  for (size_t i = 0; i < res.layers.size(); ++i) {
    INFO(res.layers[i].q.name);
    CHECK(to_vector(res.layers[i].q.codes) == to_vector(low.layers[i].q.codes));
    CHECK(to_vector(res.layers[i].q.scales) == to_vector(low.layers[i].q.scales));
  }
}

TEST_CASE("cuda quant: the pipeline with low_gpu_mem_usage gives the resident run's codes at a lower device peak") {
  const Device dev = test_device();
  const models::DecoderSpec spec = spec_all_quantizable();
  // 64 samples × 64 tokens: each [n, s, H] f32 cache is 64·64·H·4 bytes, several times the
  // block's weights and one micro-batch's activations, so the caches dominate the resident peak.
  const int64_t n = 64, seq = 64;
  const Tensor ids = calib_ids(n, seq, spec.vocab_size), mask = last_masked(n, seq);
  auto run = [&](bool low, size_t& peak) {
    const models::CausalLM lm = models::random_causal_lm(spec, {.seed = 4, .stddev = 0.1}, {.device = dev});
    PipelineOptions o;
    o.scheme = {.bits = 2, .group_size = 32};
    o.iters = 4;
    o.batch_size = 4;
    o.low_gpu_mem_usage = low;
    if (dev.is_cuda()) allocator_for(dev).reset_peak();
    PipelineResult r = quantize_blocks(lm, ids, mask, o);
    peak = dev.is_cuda() ? allocator_for(dev).peak_bytes() : 0;
    return r;
  };
  size_t peak_res = 0, peak_low = 0;
  const PipelineResult res = run(false, peak_res);
  const PipelineResult low = run(true, peak_low);
  CHECK(res.cache_device == dev);
  CHECK(low.cache_device == Device::cpu());
  CHECK(res.cache_bytes == low.cache_bytes);
  check_same_quantization(res, low);
  MESSAGE(cat("low_gpu_mem_usage: device peak ", peak_low, " B vs resident ", peak_res, " B; caches ", res.cache_bytes,
              " B; pinned host bytes ", cuda::pinned_host_bytes()));
  if (dev.is_cuda()) {
    // The resident run holds the caches (x_fp, x_q, Y: cache_bytes) on the device on top of the
    // same working set; the streamed run holds one batch of them. Half the caches is a margin
    // for the allocator's rounding.
    CHECK(peak_low + res.cache_bytes / 2 <= peak_res);
    CHECK(cuda::pinned_host_bytes() > 0);
    // Every cache is freed by now: the pinned cache hands all back but the staged copies' two
    // buffers, which live as long as the process.
    cuda_pinned_release();
    CHECK(cuda::pinned_host_bytes() == cuda::staging_host_bytes());
  }
}
