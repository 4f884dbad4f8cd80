#include "quant/signround.h"

#include <chrono>
#include <limits>

#include "autograd/loss.h"
#include "autograd/ops.h"
#include "autograd/optim.h"
#include "engine/backend.h"
#include "engine/ops.h"
#include "quant/qdq.h"

namespace arq::quant {

double auto_lr(int64_t iters, int bits) {
  ARQ_CHECK(iters > 0, UsageError, "--iters must be > 0 for SignRound, got ", iters);
  return (iters >= 1000 && bits <= 3 ? 2.0 : 1.0) / static_cast<double>(iters);
}

namespace {

// Everything the tuner keeps for one wrapped linear.
struct Wrapped {
  const TunableLinear* src = nullptr;
  GroupLayout layout;
  Tensor wg;         // [n_rows, G] f32 original weight, grouped and padded
  GroupRange range;  // [n_rows, 1] each
  QdqParams params;  // V [n_rows, G], α/β [n_rows, 1]
  // Snapshot of the kept iteration's parameters.
  Tensor best_v, best_alpha, best_beta;
};

Tensor clone_or_empty(const ag::Var& v) { return v.defined() ? v.value().clone() : Tensor(); }

// x[idx] for a [n, ...] tensor, as a contiguous tensor on x's device (the index is built on
// the host and moved there: index_select needs both on one device).
Tensor take(const Tensor& x, const std::vector<int64_t>& idx) {
  std::vector<double> d(idx.begin(), idx.end());
  return index_select(x, 0, from_vector(d, {static_cast<int64_t>(idx.size())}, DType::i64).to(x.device()));
}

}  // namespace

Tensor host_cache_empty(const Shape& shape, DType dtype) {
  const size_t nbytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  void* p = cuda_pinned_alloc(nbytes);
  if (p == nullptr) return Tensor::empty(shape, dtype, Device::cpu());
  // The storage's owner hands the block back to the pinned cache when the last view goes.
  std::shared_ptr<void> owner(p, [](void* q) { cuda_pinned_free(q); });
  return Tensor(Storage::wrap(p, nbytes, Device::cpu(), std::move(owner)), shape, contiguous_strides(shape), 0, dtype);
}

Tensor to_host_cache(const Tensor& x) {
  Tensor out = host_cache_empty(x.shape(), x.dtype());
  copy_(out, x);
  return out;
}

Tensor take_samples(const Tensor& x, const std::vector<int64_t>& idx, const Device& device) {
  if (x.device() == device) return take(x, idx);
  Shape shape = x.shape();   // [len(idx), ...]
  shape[0] = static_cast<int64_t>(idx.size());
  Tensor out = Tensor::empty(shape, x.dtype(), device);
  for (size_t k = 0; k < idx.size(); ++k) {
    ARQ_ASSERT(idx[k] >= 0 && idx[k] < x.size(0), "take_samples: index ", idx[k], " out of range for ", x.str());
    Tensor slot = out.narrow(0, static_cast<int64_t>(k), 1);
    copy_(slot, x.narrow(0, idx[k], 1));   // one sample: contiguous in a contiguous cache
  }
  return out;
}

TuneResult tune_block(const BlockFn& block, const std::vector<TunableLinear>& linears, const TuneData& data,
                      const SignRoundOptions& opt, PyRandom& rng) {
  const auto t0 = std::chrono::steady_clock::now();
  ARQ_CHECK(opt.iters > 0, UsageError, "--iters must be > 0 for SignRound (use RTN for 0), got ", opt.iters);
  ARQ_CHECK(opt.batch_size >= 1, UsageError, "--batch_size must be >= 1, got ", opt.batch_size);
  ARQ_CHECK(opt.gradient_accumulate_steps >= 1, UsageError, "--gradient_accumulate_steps must be >= 1, got ",
            opt.gradient_accumulate_steps);
  ARQ_CHECK(data.inputs.defined() && data.inputs.dim() == 3, ShapeError, "[tune_block] inputs must be [n, s, H], got ",
            data.inputs.defined() ? data.inputs.str() : "undefined");
  // targets [n, s, H_out]: the output width may differ from the input's (lm_head)
  ARQ_CHECK(data.reference || (data.targets.defined() && data.targets.dim() == 3 &&
                               data.targets.size(0) == data.inputs.size(0) && data.targets.size(1) == data.inputs.size(1)),
            ShapeError, "[tune_block] targets ", data.targets.defined() ? data.targets.str() : "undefined",
            " do not match inputs ", data.inputs.str(), " (expected [n, s, H_out] with the inputs' n and s)");
  const int64_t n = data.inputs.size(0), seq = data.inputs.size(1);
  // The tuner's device; inputs/targets/mask may stay elsewhere (host caches) and come in per batch.
  const Device dev = opt.device.value_or(data.inputs.device());
  if (data.mask.defined())
    ARQ_CHECK(data.mask.shape() == Shape({n, seq}), ShapeError, "[tune_block] mask ", data.mask.str(), " must be [", n, ", ",
              seq, "]");

  // ---- wrap ----------------------------------------------------------------------------------
  std::vector<Wrapped> wrapped(linears.size());
  std::vector<ag::ParamGroup> groups;
  for (size_t i = 0; i < linears.size(); ++i) {
    const TunableLinear& l = linears[i];
    ARQ_CHECK(!l.scheme.keep_fp(), UsageError, "[tune_block] ", l.name, " is kept in 16 bits and cannot be tuned");
    validate_scheme(l.scheme, l.name);
    ARQ_CHECK(l.weight.dim() == 2, ShapeError, "[tune_block] ", l.name, ": weight must be [out, in], got ", l.weight.str());
    Wrapped& w = wrapped[i];
    w.src = &l;
    w.layout = make_group_layout(l.weight.size(0), l.weight.size(1), l.scheme.group_size);
    w.wg = to_groups(l.weight, w.layout, dev);
    w.range = group_range(w.wg);
    w.params = make_qdq_params(w.layout, opt.enable_minmax_tuning, dev);
    const double lr = opt.lr > 0 ? opt.lr : auto_lr(opt.iters, l.scheme.bits);
    const double mm_lr = opt.minmax_lr > 0 ? opt.minmax_lr : lr;
    groups.push_back({.params = {w.params.v}, .lr = lr});
    if (opt.enable_minmax_tuning) groups.push_back({.params = {w.params.alpha, w.params.beta}, .lr = mm_lr});
  }
  ag::SignSGD optimizer(groups, {.momentum = opt.momentum});
  ag::LinearLR scheduler(optimizer, opt.iters);

  auto weights_now = [&]() {
    WeightMap m;
    for (Wrapped& w : wrapped) {
      clamp_minmax_(w.params);
      m[w.src->name] = qdq_weight(w.wg, w.range, w.params, w.src->scheme, w.layout, w.src->weight.dtype());
    }
    return m;
  };
  auto snapshot = [&]() {
    for (Wrapped& w : wrapped) {
      w.best_v = clone_or_empty(w.params.v);
      w.best_alpha = clone_or_empty(w.params.alpha);
      w.best_beta = clone_or_empty(w.params.beta);
    }
  };

  // ---- sampling (§1.6 step 4) -----------------------------------------------------------------
  const int64_t global_batch = std::min(n, opt.batch_size * opt.gradient_accumulate_steps);
  const int64_t micro = std::min(opt.batch_size, global_batch);
  IndexSampler sampler(n, global_batch, rng);
  const ag::MseReduction reduction =
      opt.gradient_accumulate_steps == 1 ? ag::MseReduction::mean_all : ag::MseReduction::sum;
  Tensor mask3;  // [n, s, 1] f32, where the mask is (the global batch's rows go to `dev`)
  if (data.mask.defined()) mask3 = data.mask.to(DType::f32).reshape({n, seq, 1});

  TuneResult res;
  double best = std::numeric_limits<double>::infinity();
  int64_t i = 0;
  for (; i < opt.iters; ++i) {
    const std::vector<int64_t> idx = sampler.next();
    // num_elm: valid tokens of the global batch with a mask; all input elements with
    // accumulation and no mask; else 1. Only the tracked loss is divided by it.
    double num_elm = 1;
    Tensor mask_g;
    if (mask3.defined()) {
      mask_g = take(mask3, idx).to(dev);   // [global_batch, s, 1]
      num_elm = sum_all(mask_g).item();
      if (num_elm <= 0) num_elm = 1;
    } else if (opt.gradient_accumulate_steps > 1) {
      num_elm = static_cast<double>(global_batch) * static_cast<double>(seq * data.inputs.size(2));
    }
    double total = 0;
    for (int64_t step = 0; step < opt.gradient_accumulate_steps && step * micro < global_batch; ++step) {
      // the last micro-batch may be short when nsamples < batch_size · gradient_accumulate_steps
      const int64_t b0 = step * micro, bn = std::min(micro, global_batch - b0);
      const std::vector<int64_t> mb(idx.begin() + b0, idx.begin() + b0 + bn);
      const Tensor x = take_samples(data.inputs, mb, dev).to(opt.compute_dtype);
      const Tensor y = (data.reference ? data.reference(mb).to(dev) : take_samples(data.targets, mb, dev)).to(DType::f32);
      const Tensor m = mask_g.defined() ? mask_g.narrow(0, b0, bn) : Tensor();
      const WeightMap wm = weights_now();
      ag::Var pred = block(ag::Var(x), wm);
      if (pred.dtype() != DType::f32) pred = ag::cast(pred, DType::f32);
      const ag::Var loss = ag::masked_mse(pred, y, m, reduction);
      total += loss.value().item() / num_elm;
      ag::backward(loss * 1000.0);
    }
    if (i == 0) res.loss_init = total;
    if (total < best) {
      best = total;
      res.best_iter = i;
      if (!opt.not_use_best_mse) snapshot();
    }
    if (opt.not_use_best_mse && i == opt.iters - 1) snapshot();
    if (opt.on_iter) opt.on_iter(i, opt.iters, total);
    if (opt.dynamic_max_gap > 0 && i - res.best_iter >= opt.dynamic_max_gap) {
      if (opt.not_use_best_mse) snapshot();
      ++i;
      break;
    }
    optimizer.step();
    optimizer.zero_grad();
    scheduler.step();
  }
  res.iters_run = i;
  res.loss_best = best;

  // ---- unwrap with the kept parameters ----------------------------------------------------------
  for (Wrapped& w : wrapped) {
    ag::NoGrad ng;
    auto clamped = [](const Tensor& t) { return t.defined() ? clamp(t, 0.0, 1.0) : Tensor(); };
    TunedLinear tl;
    tl.q = quantize_with_params(w.src->weight, w.src->scheme, w.best_v, clamped(w.best_alpha), clamped(w.best_beta));
    tl.q.name = w.src->name;
    tl.weight = dequantize(tl.q, tl.q.weight_dtype, w.src->weight.device());   // decoded where the weight lives
    res.layers.push_back(std::move(tl));
  }
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

Tensor map_sample_batches(const Tensor& x, int64_t batch_size, DType compute_dtype, DType out_dtype,
                          const std::function<ag::Var(const ag::Var& xb)>& fn, const std::optional<Device>& compute_device) {
  ARQ_CHECK(x.dim() == 3, ShapeError, "[block batches] input must be [n, s, H], got ", x.str());
  ARQ_CHECK(batch_size >= 1, UsageError, "[block batches] batch_size must be >= 1, got ", batch_size);
  ag::NoGrad ng;
  const int64_t n = x.size(0);
  const Device dev = compute_device.value_or(x.device());
  if (dev != x.device()) {
    // Streamed (low_gpu_mem_usage): chunk in, output back into its rows of the result on x's
    // device; only one chunk's activations live on `dev`.
    Tensor out;   // [n, s, H_out] out_dtype on x's device, allocated once the first output's shape is known
    for (int64_t b0 = 0; b0 < n; b0 += batch_size) {
      const int64_t b = std::min(batch_size, n - b0);
      const Tensor yb = fn(ag::Var(x.narrow(0, b0, b).to(dev).to(compute_dtype))).value().to(out_dtype);
      ARQ_CHECK(yb.dim() >= 1 && yb.size(0) == b, ShapeError, "[block batches] output ", yb.str(), " of a chunk of ", b,
                " samples");
      if (!out.defined()) {
        Shape shape = yb.shape();
        shape[0] = n;
        out = x.device().is_cpu() ? host_cache_empty(shape, out_dtype) : Tensor::empty(shape, out_dtype, x.device());
      }
      Tensor rows = out.narrow(0, b0, b);
      copy_(rows, yb);
    }
    return out;
  }
  std::vector<Tensor> outs;
  for (int64_t b0 = 0; b0 < n; b0 += batch_size) {
    const int64_t b = std::min(batch_size, n - b0);
    outs.push_back(fn(ag::Var(x.narrow(0, b0, b).to(compute_dtype))).value().to(out_dtype));
  }
  return outs.size() == 1 ? outs[0].contiguous() : concat(outs, 0);
}

Tensor run_block(const BlockFn& block, const Tensor& x, const std::map<std::string, Tensor>& weights, int64_t batch_size,
                 DType compute_dtype, DType out_dtype, const std::optional<Device>& compute_device) {
  WeightMap wm;
  for (const auto& [name, t] : weights) wm[name] = ag::Var(t);
  return map_sample_batches(x, batch_size, compute_dtype, out_dtype, [&](const ag::Var& xb) { return block(xb, wm); },
                            compute_device);
}

}  // namespace arq::quant
