// SignRound block tuning (spec/autoround.md §1.6–1.9), generic over a "block function".
//
// A block function maps an input batch x [b, s, H] and substitute weights for some of its
// linear layers (by name, each [out, in]) to the block output [b, s, H]; linears absent from
// the map use the block's own weights. The tuner wraps every TunableLinear as
// ŵ = qdq(W; V, α, β), runs `iters` steps of SignSGD on the masked MSE between block(x_q) and
// the FP reference outputs, keeps the parameters of the best iteration, and freezes each layer.
//
//   BlockFn f = [&](const ag::Var& x, const WeightMap& w) { return lm.block_forward(bw, x, in, w); };
//   TuneData d{.inputs = x_q, .targets = y_fp, .mask = mask};   // [n, s, H], [n, s]
//   PyRandom rng(42);
//   TuneResult r = tune_block(f, linears, d, {.iters = 200}, rng);
//   // r.layers[i].q: codes/scales/zeros; r.layers[i].weight: the dequantized weight
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "autograd/var.h"
#include "quant/py_random.h"
#include "quant/quantized_linear.h"
#include "quant/scheme.h"

namespace arq::quant {

using WeightMap = std::map<std::string, ag::Var>;
using BlockFn = std::function<ag::Var(const ag::Var& x, const WeightMap& weights)>;

struct TunableLinear {
  std::string name;    // key in the WeightMap handed to the block function
  Tensor weight;       // [out, in] original weight, model dtype
  QuantScheme scheme;  // must not be keep_fp
};

struct SignRoundOptions {
  int64_t iters = 200;
  double lr = 0;          // <= 0: auto per layer: 1/iters, or 2/iters for bits <= 3 when iters >= 1000
  double minmax_lr = 0;   // <= 0: the layer's lr
  int64_t batch_size = 8;
  int64_t gradient_accumulate_steps = 1;
  bool enable_minmax_tuning = true;
  bool not_use_best_mse = false;
  double momentum = 0;
  int64_t dynamic_max_gap = -1;   // > 0: stop when the best iteration is this many steps old
  DType compute_dtype = DType::f32;  // the block runs in this dtype (inputs are cast to it)
  // Where the tuner works: the block function's inputs, V/α/β, the grouped weights and the loss.
  // Unset: the inputs' device. A CUDA device with inputs/targets/mask on the host is
  // low_gpu_mem_usage (spec §1.12): each micro-batch is copied to the device when it is used.
  std::optional<Device> device{};
  // Called after every iteration (progress bars); may be empty.
  std::function<void(int64_t iter, int64_t iters, double loss)> on_iter{};
};

// Activations of one block for all calibration samples. The output width may differ from
// the input width (lm_head: H in, vocab out).
struct TuneData {
  Tensor inputs;   // [n, s, H] training input (X_q, or X_fp without quanted input), any float dtype
  Tensor targets;  // [n, s, H_out] FP reference outputs Y = block_fp(X_fp); undefined when `reference` is set
  Tensor mask;     // [n, s] 0/1 valid-token mask (floating), or undefined: every token valid
  // Instead of `targets`: the reference outputs of samples `idx`, computed when needed (a layer
  // whose outputs for all samples would not fit, e.g. lm_head's [n, s, vocab]): [len(idx), s, H_out].
  std::function<Tensor(const std::vector<int64_t>& idx)> reference{};
};

struct TunedLinear {
  QuantizedLinear q;  // frozen codes, scales, zeros (q.name = TunableLinear::name)
  Tensor weight;      // dequantize(q): [out, in] in the original dtype
};

struct TuneResult {
  std::vector<TunedLinear> layers;  // in the order of the input list
  double loss_init = 0;  // tracked loss at iteration 0 (= RTN)
  double loss_best = 0;  // tracked loss of the kept iteration
  int64_t best_iter = 0;
  int64_t iters_run = 0;
  double seconds = 0;
};

// The learning rate a layer gets when `lr` is auto (§1.9).
double auto_lr(int64_t iters, int bits);

// Run SignRound on one block. `rng` is the run's shared Python-compatible generator (seeded
// with --seed once per run): each block draws a new IndexSampler from it.
TuneResult tune_block(const BlockFn& block, const std::vector<TunableLinear>& linears, const TuneData& data,
                      const SignRoundOptions& opt, PyRandom& rng);

// x [n, s, H] in chunks of `batch_size` samples, each cast to `compute_dtype` and passed to `fn`
// without gradients; the outputs, cast to `out_dtype`, concatenated along the samples on x's
// device. `compute_device` (unset: x's device) is where `fn` runs: with x on the host and a CUDA
// device there (low_gpu_mem_usage), each chunk is copied in and its output copied back into a
// host result (page-locked when a CUDA device is present, see host_cache_empty).
Tensor map_sample_batches(const Tensor& x, int64_t batch_size, DType compute_dtype, DType out_dtype,
                          const std::function<ag::Var(const ag::Var& xb)>& fn,
                          const std::optional<Device>& compute_device = std::nullopt);

// Block outputs for all samples without gradients, in chunks of `batch_size`:
// x [n, s, H] → [n, s, H] in `out_dtype` on x's device. `weights` as for the block function;
// `compute_device` as for map_sample_batches.
Tensor run_block(const BlockFn& block, const Tensor& x, const std::map<std::string, Tensor>& weights, int64_t batch_size,
                 DType compute_dtype, DType out_dtype, const std::optional<Device>& compute_device = std::nullopt);

// A host tensor for an activation cache: page-locked (arq::cuda_pinned_alloc) when a CUDA device
// is present, so copies of its samples to and from the device run by DMA; ordinary host memory
// otherwise. Uninitialized. `to_host_cache` copies x (any device) into one.
Tensor host_cache_empty(const Shape& shape, DType dtype);
Tensor to_host_cache(const Tensor& x);

// x[idx] along dim 0 as a contiguous tensor on `device`. x on another device (a host cache):
// each sample x[i] (contiguous in x) is copied to its slot on the device, no host gather first.
Tensor take_samples(const Tensor& x, const std::vector<int64_t>& idx, const Device& device);

}  // namespace arq::quant
