#include "quant/imatrix.h"

#include <algorithm>

#include "autograd/ops.h"
#include "engine/ops.h"
#include "quant/signround.h"

namespace arq::quant {

namespace {

bool same_view(const Tensor& a, const Tensor& b) {
  return a.defined() && b.defined() && a.storage() == b.storage() && a.offset() == b.offset() && a.shape() == b.shape() &&
         a.strides() == b.strides() && a.dtype() == b.dtype();
}

// Σ over all rows of x² per channel, x [..., in] -> host f64 [in]. The reduction kernels
// accumulate in f64 and round the per-batch result once to f32 (relative error 2^-24 per
// channel, whatever the number of rows); batches are then summed in f64 here.
std::vector<double> channel_sum_squares(const Tensor& x) {
  const int64_t in = x.size(-1);
  Tensor x2 = x.dtype() == DType::f32 || x.dtype() == DType::f64 ? x : x.to(DType::f32);   // no 16-bit outputs
  x2 = x2.contiguous().reshape({x2.numel() / in, in});                                    // [rows, in]
  return to_vector(sum_squares(x2, 0).to(Device::cpu()));                                 // [in]
}

}  // namespace

void ImatrixCollector::add(const std::string& name, const Tensor& input) {
  ARQ_CHECK(input.defined() && input.dim() >= 2, ShapeError, "[imatrix] input of ", name, " must be [batch, ..., in], got ",
            input.defined() ? input.str() : "undefined");
  const int64_t in = input.size(-1);
  Acc& a = acc_[name];
  if (a.sum.empty()) a.sum.assign(static_cast<size_t>(in), 0.0);
  ARQ_CHECK(static_cast<int64_t>(a.sum.size()) == in, ShapeError, "[imatrix] input of ", name, " is ", input.str(),
            ", earlier inputs had ", a.sum.size(), " channels");
  if (!same_view(input, last_input_)) {
    last_sums_ = channel_sum_squares(input);
    last_input_ = input;
  }
  for (size_t j = 0; j < a.sum.size(); ++j) a.sum[j] += last_sums_[j];
  a.samples += input.size(0);
}

models::LinearObserver ImatrixCollector::observer() {
  return [this](const std::string& name, const Tensor& input) { add(name, input); };
}

std::map<std::string, Tensor> ImatrixCollector::result() const {
  std::map<std::string, Tensor> out;
  for (const auto& [name, a] : acc_) {
    std::vector<double> v(a.sum.size());
    for (size_t j = 0; j < v.size(); ++j) v[j] = a.samples > 0 ? a.sum[j] / static_cast<double>(a.samples) : 0.0;
    out[name] = from_vector(v, {static_cast<int64_t>(v.size())}, DType::f32);
  }
  return out;
}

int64_t ImatrixCollector::samples(const std::string& name) const {
  auto it = acc_.find(name);
  return it == acc_.end() ? 0 : it->second.samples;
}

void ImatrixCollector::end_batch() {
  last_input_ = Tensor();
  last_sums_.clear();
}

Tensor run_block_with_imatrix(const ObservedBlockFn& block, const Tensor& x, int64_t batch_size, DType compute_dtype,
                              DType out_dtype, ImatrixCollector& collector, const std::optional<Device>& compute_device) {
  const models::LinearObserver obs = collector.observer();
  return map_sample_batches(x, batch_size, compute_dtype, out_dtype, [&](const ag::Var& xb) {
    ag::Var y = block(xb, obs);
    collector.end_batch();
    return y;
  }, compute_device);
}

}  // namespace arq::quant
