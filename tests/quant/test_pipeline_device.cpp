// The device plumbing of the tuner and the pipeline, checked on the CPU (tests/cuda/test_quant_cuda.cpp
// runs the same paths with a GPU): the tuner's explicit device, the streamed no-grad block runs
// (map_sample_batches with a compute device), host caches and sample gathers, low_gpu_mem_usage
// on the CPU (accepted, no effect), AutoRound's autocast dtype rule and the --device checks.
#include <doctest/doctest.h>

#include <atomic>
#include <filesystem>
#include <unistd.h>

#include "engine/backend.h"
#include "engine/ops.h"
#include "models/family.h"
#include "models/random_model.h"
#include "quant/pipeline.h"
#include "quant/signround.h"
#include "tests/quant/quant_test_util.h"
#include "tests/temp_dir.h"

using namespace arq;
using namespace arq::quant;
using namespace arq::quant_test;

TEST_CASE("tune_block with the tuner device set explicitly equals the default (inputs' device)") {
  const models::CausalLM lm = models::random_causal_lm(spec_all_quantizable(), {.seed = 21, .stddev = 0.1});
  const int64_t n = 6, seq = 10;
  BlockRunner b(lm, 0, seq);
  const Tensor x = rand_normal({n, seq, lm.spec().hidden_size}, 8, 0, 1);
  const Tensor y = run_block(b.fn(), x, {}, 4, DType::f32, DType::f32);
  const QuantScheme s{.bits = 3, .group_size = 32, .sym = false};
  auto tune = [&](std::optional<Device> dev) {
    SignRoundOptions o;
    o.iters = 6;
    o.batch_size = 4;   // 6 samples: a short last micro-batch with accumulation below
    o.gradient_accumulate_steps = 2;
    o.device = dev;
    std::vector<double> losses;
    o.on_iter = [&](int64_t, int64_t, double l) { losses.push_back(l); };
    PyRandom rng(42);
    TuneResult r = tune_block(b.fn(), b.linears(s), {.inputs = x, .targets = y, .mask = last_masked(n, seq), .reference = {}}, o, rng);
    return std::make_pair(std::move(r), losses);
  };
  const auto [def, def_losses] = tune(std::nullopt);
  const auto [cpu, cpu_losses] = tune(Device::cpu());
  CHECK(def_losses == cpu_losses);   // same kernels, same data, same order: bit-identical
  REQUIRE(def.layers.size() == cpu.layers.size());
  for (size_t i = 0; i < def.layers.size(); ++i) {
    INFO(def.layers[i].q.name);
    CHECK(to_vector(def.layers[i].q.codes) == to_vector(cpu.layers[i].q.codes));
    CHECK(to_vector(def.layers[i].q.scales) == to_vector(cpu.layers[i].q.scales));
    CHECK(to_vector(def.layers[i].q.zeros) == to_vector(cpu.layers[i].q.zeros));
  }
  CHECK(def.best_iter == cpu.best_iter);
}

TEST_CASE("map_sample_batches: an explicit compute device equal to x's gives the default's outputs") {
  const Tensor x = rand_normal({7, 3, 5}, 2, 0, 1);   // 7 samples in chunks of 3: 3 + 3 + 1
  auto fn = [](const ag::Var& xb) { return ag::Var(mul(xb.value(), xb.value())); };
  const Tensor a = map_sample_batches(x, 3, DType::f32, DType::bf16, fn);
  const Tensor b = map_sample_batches(x, 3, DType::f32, DType::bf16, fn, Device::cpu());
  CHECK(a.shape() == Shape({7, 3, 5}));
  CHECK(b.dtype() == DType::bf16);
  CHECK(to_vector(a) == to_vector(b));
  // and both equal x² rounded once to bf16
  CHECK(to_vector(a) == to_vector(mul(x, x).to(DType::bf16)));
}

TEST_CASE("host caches and sample gathers on the CPU") {
  const Tensor x = rand_normal({5, 4, 3}, 3, 0, 1);   // [n, s, H]
  const Tensor h = to_host_cache(x);
  CHECK(h.device() == Device::cpu());
  CHECK(h.is_contiguous());
  CHECK(h.storage() != x.storage());
  CHECK(to_vector(h) == to_vector(x));
  const Tensor e = host_cache_empty({2, 3}, DType::bf16);
  CHECK(e.shape() == Shape({2, 3}));
  CHECK(e.dtype() == DType::bf16);
  // take_samples: rows in the given order, repeats allowed; plain-loop reference
  const std::vector<int64_t> idx{4, 0, 4, 2};
  const Tensor t = take_samples(x, idx, Device::cpu());
  REQUIRE(t.shape() == Shape({4, 4, 3}));
  const std::vector<double> xv = to_vector(x), tv = to_vector(t);
  for (size_t k = 0; k < idx.size(); ++k)
    for (int64_t j = 0; j < 12; ++j) CHECK(tv[k * 12 + static_cast<size_t>(j)] == xv[static_cast<size_t>(idx[k] * 12 + j)]);
}

TEST_CASE("pipeline: low_gpu_mem_usage on the CPU is accepted and changes nothing; caches reported on the host") {
  const models::CausalLM lm = models::random_causal_lm(spec_all_quantizable(), {.seed = 4, .stddev = 0.1});
  const Tensor ids = calib_ids(6, 10, lm.spec().vocab_size), mask = last_masked(6, 10);
  auto run = [&](bool low, int64_t iters) {
    PipelineOptions o;
    o.scheme = {.bits = 2, .group_size = 32};
    o.iters = iters;
    o.batch_size = 4;
    o.low_gpu_mem_usage = low;
    return quantize_blocks(lm, ids, mask, o);
  };
  for (int64_t iters : {int64_t{0}, int64_t{5}}) {
    INFO("iters ", iters);
    const PipelineResult a = run(false, iters), b = run(true, iters);
    CHECK(a.cache_device == Device::cpu());
    CHECK(b.cache_device == Device::cpu());
    CHECK(a.cache_bytes == b.cache_bytes);
    check_same_quantization(a, b);
  }
}

TEST_CASE("job_compute_dtype: --model_dtype, else AutoRound's autocast on CUDA (bf16 for f32), else as stored") {
  arq::test::TempDir f32("dev_f32"), bf16("dev_bf16");
  const models::CausalLM lm = models::random_causal_lm(spec_all_quantizable(), {.seed = 1, .stddev = 0.1});
  models::save_pretrained(lm, f32.str(), {.dtype = DType::f32});
  models::save_pretrained(lm, bf16.str(), {.dtype = DType::bf16});
  QuantizeJob job;
  job.model = f32.str();
  CHECK(job_compute_dtype(job) == DType::f32);   // CPU: as stored
  job.device = Device::cuda(0);                  // reads metadata only: no GPU needed
  CHECK(job_compute_dtype(job) == DType::bf16);  // autocast
  job.model_dtype = DType::f32;
  CHECK(job_compute_dtype(job) == DType::f32);   // an explicit dtype wins
  job.model_dtype = DType::f16;
  job.device = Device::cpu();
  CHECK(job_compute_dtype(job) == DType::f16);
  job.model_dtype.reset();
  job.model = bf16.str();
  CHECK(job_compute_dtype(job) == DType::bf16);
  job.device = Device::cuda(0);
  CHECK(job_compute_dtype(job) == DType::bf16);  // a 16-bit model runs as stored
}

TEST_CASE("validate_job: --device cuda without CUDA or without that device is one clear error") {
  arq::test::TempDir m("dev_model");
  models::save_pretrained(models::random_causal_lm(spec_all_quantizable(), {.seed = 1}), m.str());
  QuantizeJob job;
  job.model = m.str();
  job.pipeline.iters = 0;
  job.device = Device::cuda(cuda_device_count());   // never present: one past the last
  try {
    validate_job(job);
    FAIL(cat("validate_job accepted ", job.device.str()));
  } catch (const DeviceError& e) {
    const std::string msg = e.what();
    CHECK(msg.find("--device " + job.device.str()) != std::string::npos);
    CHECK(msg.find(cuda_compiled() ? "no such CUDA device" : "built without CUDA") != std::string::npos);
    CHECK(msg.find('\n') == std::string::npos);
  }
  job.device = Device::cpu();
  job.pipeline.low_gpu_mem_usage = true;   // accepted on the CPU
  CHECK_NOTHROW(validate_job(job));
}

TEST_CASE("resolved_cache_dtype: the option when set; else bf16 on CUDA under 16-bit compute, f32 otherwise") {
  PipelineOptions o;
  CHECK(resolved_cache_dtype(o, Device::cpu(), DType::f32) == DType::f32);
  CHECK(resolved_cache_dtype(o, Device::cpu(), DType::bf16) == DType::f32);      // the CPU keeps f32 caches
  CHECK(resolved_cache_dtype(o, Device::cuda(0), DType::bf16) == DType::bf16);   // AutoRound's AMP dtype
  CHECK(resolved_cache_dtype(o, Device::cuda(0), DType::f16) == DType::bf16);
  CHECK(resolved_cache_dtype(o, Device::cuda(0), DType::f32) == DType::f32);     // --model_dtype fp32: no autocast
  o.cache_dtype = DType::f32;
  CHECK(resolved_cache_dtype(o, Device::cuda(0), DType::bf16) == DType::f32);
  o.cache_dtype = DType::bf16;
  CHECK(resolved_cache_dtype(o, Device::cpu(), DType::f32) == DType::bf16);
}
