// The importance matrix ("imatrix") of optimized RTN (spec/autoround.md §3): for every
// quantizable linear, per input channel, the sum of x² over all tokens of all calibration
// samples, divided by the number of samples (the batch-dimension count, not tokens). It is
// collected on the FP block input only (RTN never uses quantized inputs), during the FP
// reference pass of each block, through the LinearObserver of models::CausalLM::block_forward.
//
//   ImatrixCollector c;
//   ObservedBlockFn f = [&](const ag::Var& x, const models::LinearObserver& obs) {
//     return lm.block_forward(bw, x, in, {}, nullptr, &obs);
//   };
//   Tensor y = run_block_with_imatrix(f, x_fp, 8, DType::f32, DType::f32, c);   // x_fp, y [n, s, H]
//   Tensor im = c.result().at("model.layers.0.mlp.down_proj");                  // f32 [I]
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "autograd/var.h"
#include "models/blocks/layers.h"

namespace arq::quant {

// Accumulates Σx² per input channel (in f64 on the host) and the sample count per linear.
// Inputs that several linears share (q/k/v, gate/up: the same tensor handed over several
// times in a row) are reduced once.
class ImatrixCollector {
 public:
  // input [b, ..., in] as the linear receives it: adds Σ over all but the last axis of x² to
  // `name`'s channels and b (input.size(0)) to its sample count. ShapeError when `in` changes.
  void add(const std::string& name, const Tensor& input);
  // An observer for block_forward that forwards to add(); valid while this collector lives.
  models::LinearObserver observer();
  // name -> f32 [in] on the CPU: Σx² / samples.
  std::map<std::string, Tensor> result() const;
  int64_t samples(const std::string& name) const;   // 0 when never seen
  // Drops the reference to the last input (called between batches; see add()).
  void end_batch();

 private:
  struct Acc {
    std::vector<double> sum;   // [in]
    int64_t samples = 0;
  };
  std::map<std::string, Acc> acc_;
  Tensor last_input_;               // the last reduced input, kept alive so its address is not reused
  std::vector<double> last_sums_;   // its per-channel Σx²
};

// A block forward that reports its linears' inputs to `observe`.
using ObservedBlockFn = std::function<ag::Var(const ag::Var& x, const models::LinearObserver& observe)>;

// The FP reference pass with the imatrix hooks (§1.6 step 1, §3): runs `block` on x [n, s, H]
// in chunks of `batch_size` without gradients (inputs cast to compute_dtype), fills `collector`
// and returns the outputs [n, s, H] in `out_dtype`. `compute_device` as for map_sample_batches
// (x on the host, the block on a GPU: low_gpu_mem_usage).
Tensor run_block_with_imatrix(const ObservedBlockFn& block, const Tensor& x, int64_t batch_size, DType compute_dtype,
                              DType out_dtype, ImatrixCollector& collector,
                              const std::optional<Device>& compute_device = std::nullopt);

}  // namespace arq::quant
