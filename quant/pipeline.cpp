#include "quant/pipeline.h"

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "autograd/ops.h"
#include "engine/ops.h"
#include "quant/imatrix.h"
#include "quant/lm_head.h"
#include "quant/opt_rtn.h"
#include "quant/py_random.h"
#include "quant/qdq.h"
#include "quant/signround.h"

namespace arq::quant {

DType resolved_cache_dtype(const PipelineOptions& o, const Device& device, DType compute) {
  if (o.cache_dtype) return *o.cache_dtype;
  return device.is_cuda() && dtype_size(compute) == 2 ? DType::bf16 : DType::f32;
}

bool needs_calibration(const PipelineOptions& o) { return o.iters > 0; }

bool uses_calibration(const PipelineOptions& o) {
  // iters 0: only opt-RTN layers use the data (a layer_config or chooser may make some int_sym)
  return needs_calibration(o) || (!o.disable_opt_rtn.value_or(false) &&
                                  (opt_rtn_applies(o.scheme) || !o.layer_config.empty() || o.choose_layer_fn));
}

std::string block_log_line(const BlockLog& b, int64_t n_blocks) {
  char buf[256];
  if (b.tuned) {
    std::snprintf(buf, sizeof buf, "block %lld/%lld: quantized %lld/%zu layers, loss iter 0: %.6g -> iter %lld: %.6g, %.1f s",
                  static_cast<long long>(b.block + 1), static_cast<long long>(n_blocks), static_cast<long long>(b.n_quantized),
                  b.layers.size(), b.loss_init, static_cast<long long>(b.best_iter), b.loss_best, b.seconds);
  } else {
    std::snprintf(buf, sizeof buf, "block %lld/%lld: quantized %lld/%zu layers (RTN), %.1f s", static_cast<long long>(b.block + 1),
                  static_cast<long long>(n_blocks), static_cast<long long>(b.n_quantized), b.layers.size(), b.seconds);
  }
  return buf;
}

size_t peak_rss_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmHWM:", 0) == 0) {
      std::istringstream ss(line.substr(6));
      size_t kb = 0;
      ss >> kb;
      return kb * 1024;
    }
  }
  return 0;
}

namespace {

void validate_options(const PipelineOptions& o) {
  validate_scheme(o.scheme, "--bits/--group_size/--data_type");
  ARQ_CHECK(o.iters >= 0, UsageError, "--iters must be >= 0, got ", o.iters);
  ARQ_CHECK(o.batch_size >= 1, UsageError, "--batch_size must be >= 1, got ", o.batch_size);
  ARQ_CHECK(o.gradient_accumulate_steps >= 1, UsageError, "--gradient_accumulate_steps must be >= 1, got ",
            o.gradient_accumulate_steps);
  ARQ_CHECK(o.lr >= 0, UsageError, "--lr must be positive, got ", o.lr);
  ARQ_CHECK(o.minmax_lr >= 0, UsageError, "--minmax_lr must be positive, got ", o.minmax_lr);
  ARQ_CHECK(!o.cache_dtype || *o.cache_dtype == DType::f32 || *o.cache_dtype == DType::bf16, UsageError,
            "--cache_dtype must be f32 or bf16, got ", dtype_name(o.cache_dtype.value_or(DType::f32)));
}

size_t bytes_of(const Tensor& t) { return t.defined() ? t.nbytes() : 0; }

// lm_head's input for every sample: the final norm of the last block's output, [n, s, H] in
// `out` dtype on x's device, computed in chunks of `batch` on `run_dev` (unset: x's device).
Tensor final_norm_all(const models::CausalLM& lm, const Tensor& x, int64_t batch, DType out,
                      const std::optional<Device>& run_dev) {
  return map_sample_batches(x, batch, lm.dtype(), out, [&](const ag::Var& xb) { return ag::Var(lm.final_norm(xb.value())); },
                            run_dev);
}

// BlockInputs (RoPE tables, masks) per batch size, built once and reused by every block.
class InputsCache {
 public:
  InputsCache(const models::CausalLM& lm, int64_t seq) : lm_(lm), seq_(seq) {}
  const models::BlockInputs& get(int64_t batch) {
    auto it = cache_.find(batch);
    if (it == cache_.end()) it = cache_.emplace(batch, lm_.block_inputs({.batch = batch, .seq = seq_})).first;
    return it->second;
  }

 private:
  const models::CausalLM& lm_;
  int64_t seq_;
  std::map<int64_t, models::BlockInputs> cache_;
};

}  // namespace

PipelineResult quantize_blocks(const models::CausalLM& lm, const Tensor& ids, const Tensor& loss_mask, const PipelineOptions& o) {
  validate_options(o);
  const bool calibrate = needs_calibration(o);
  // iters 0 with calibration data: opt-RTN weights its scale search with the importance matrix
  // of each linear's FP input (§3), so the FP chain runs block by block (no quantized chain).
  const bool imatrix_on = !calibrate && ids.defined() && uses_calibration(o);
  if (calibrate || imatrix_on) {
    ARQ_CHECK(ids.defined() && ids.dim() == 2 && ids.size(0) >= 1 && ids.size(1) >= 2, UsageError,
              "calibration ids must be [nsamples, seqlen] with seqlen >= 2, got ", ids.defined() ? ids.str() : "none");
    if (loss_mask.defined())
      ARQ_CHECK(loss_mask.shape() == ids.shape(), ShapeError, "loss mask ", loss_mask.str(), " does not match ids ", ids.str());
  }
  const int64_t n_blocks = lm.num_blocks();
  const DType compute = lm.dtype();
  const DType cache = resolved_cache_dtype(o, lm.device(), compute);
  // low_gpu_mem_usage: caches on the host, every no-grad block run and every tuning micro-batch
  // streamed to the model's device (run_dev); otherwise the caches live on the model's device.
  const Device dev = lm.device();
  const bool host_caches = o.low_gpu_mem_usage && dev.is_cuda();
  const std::optional<Device> run_dev = host_caches ? std::optional<Device>(dev) : std::nullopt;
  PipelineResult res;
  res.cache_device = host_caches ? Device::cpu() : dev;
  PyRandom rng(o.seed);

  Tensor x_fp, x_q, mask;  // [n, s, H] in cache dtype; [n, s] f32
  std::unique_ptr<InputsCache> inputs;
  if (!calibrate && !imatrix_on && !o.disable_opt_rtn.value_or(false) && opt_rtn_applies(o.scheme) && o.log)
    o.log("opt-RTN: no calibration data, so no importance matrix (every weight counts 1); pass --dataset to use one");
  if (calibrate || imatrix_on) {
    ag::NoGrad ng;
    // Block-0 inputs are the embeddings of the calibration ids (computed once, §1.4).
    const Tensor ids64 = ids.to(DType::i64);
    if (host_caches) {
      // in chunks, so the device never holds all samples' embeddings
      const int64_t n = ids.size(0), step = std::max<int64_t>(o.batch_size, 1);
      for (int64_t b0 = 0; b0 < n; b0 += step) {
        const int64_t b = std::min(step, n - b0);
        const Tensor e = lm.embed(ids64.narrow(0, b0, b)).to(cache);   // [b, s, H] on the device
        if (!x_fp.defined()) x_fp = host_cache_empty({n, e.size(1), e.size(2)}, cache);
        Tensor rows = x_fp.narrow(0, b0, b);
        copy_(rows, e);
      }
    } else {
      x_fp = lm.embed(ids64).to(cache).to(dev);
    }
    x_q = x_fp;
    if (loss_mask.defined()) mask = loss_mask.to(DType::f32).to(res.cache_device);
    inputs = std::make_unique<InputsCache>(lm, ids.size(1));
  }

  for (int64_t bi = 0; bi < n_blocks; ++bi) {
    const auto t0 = std::chrono::steady_clock::now();
    BlockLog log;
    log.block = bi;
    const std::vector<models::LinearInfo> infos = lm.block_linears(bi);
    const models::BlockWeights bw = lm.load_block(bi);
    res.max_block_bytes = std::max(res.max_block_bytes, bw.nbytes());

    std::vector<TunableLinear> tunables;
    for (const models::LinearInfo& li : infos) {
      const LayerChoice c = o.choose_layer_fn ? o.choose_layer_fn(li.name, li.out_features, li.in_features)
                                              : choose_layer(li.name, li.out_features, li.in_features, o.scheme, o.layer_config, o.fp_layers);
      LayerLog ll{li.name, c.scheme.keep_fp() ? cat("fp16 (", c.reason, ")") : c.scheme.str(), !c.scheme.keep_fp()};
      if (!c.scheme.keep_fp()) {
        validate_scheme(c.scheme, li.name);
        tunables.push_back({li.name, bw.at(li.weight_name()), c.scheme});
      }
      log.layers.push_back(std::move(ll));
    }
    log.n_quantized = static_cast<int64_t>(tunables.size());

    std::map<std::string, Tensor> qweights;         // layer name -> dequantized weight
    std::map<std::string, QuantizedLinear> block_q;  // layer name -> frozen layer
    if (calibrate) {
      auto fn = [&](const ag::Var& x, const WeightMap& w) {
        return lm.block_forward(bw, x, inputs->get(x.size(0)), w);
      };
      // FP reference Y = block_fp(X_fp), §1.6 step 1.
      const Tensor y = run_block(fn, x_fp, {}, o.batch_size, compute, cache, run_dev);
      if (!tunables.empty()) {
        SignRoundOptions so;
        so.iters = o.iters;
        so.lr = o.lr;
        so.minmax_lr = o.minmax_lr;
        so.batch_size = std::min(o.batch_size, x_fp.size(0));
        so.gradient_accumulate_steps = o.gradient_accumulate_steps;
        so.enable_minmax_tuning = o.enable_minmax_tuning;
        so.not_use_best_mse = o.not_use_best_mse;
        so.compute_dtype = compute;
        so.device = dev;   // the caches may be on the host (low_gpu_mem_usage)
        if (o.on_iter) so.on_iter = [&](int64_t it, int64_t n, double l) { o.on_iter(bi, it, n, l); };
        const TuneData data{.inputs = o.enable_quanted_input ? x_q : x_fp, .targets = y, .mask = mask, .reference = {}};
        TuneResult tr = tune_block(fn, tunables, data, so, rng);
        log.tuned = true;
        log.loss_init = tr.loss_init;
        log.loss_best = tr.loss_best;
        log.best_iter = tr.best_iter;
        for (TunedLinear& tl : tr.layers) {
          qweights[tl.q.name] = tl.weight;
          block_q[tl.q.name] = std::move(tl.q);
        }
      }
      res.cache_bytes = std::max(res.cache_bytes, bytes_of(x_fp) + (x_q.storage() == x_fp.storage() ? 0 : bytes_of(x_q)) +
                                                      bytes_of(y));
      // Next inputs (§1.6 step 7): the quantized chain runs the frozen weights on X_q.
      if (o.enable_quanted_input && !qweights.empty()) {
        x_q = run_block(fn, x_q, qweights, o.batch_size, compute, cache, run_dev);
      } else if (o.enable_quanted_input && x_q.storage() != x_fp.storage()) {
        x_q = run_block(fn, x_q, {}, o.batch_size, compute, cache, run_dev);
      } else {
        x_q = y;
      }
      x_fp = y;
    } else {
      // RTN (§3): opt-RTN searches each group's scale, weighted by the importance matrix of the
      // layer's FP input when there is calibration data (collected while X_fp ← block_fp(X_fp)),
      // else with weights 1.
      std::map<std::string, Tensor> imat;  // layer name -> f32 [in]
      if (imatrix_on) {
        ImatrixCollector ic;
        const ObservedBlockFn ofn = [&](const ag::Var& x, const models::LinearObserver& obs) {
          return lm.block_forward(bw, x, inputs->get(x.size(0)), {}, nullptr, &obs);
        };
        Tensor y = run_block_with_imatrix(ofn, x_fp, o.batch_size, compute, cache, ic, run_dev);
        res.cache_bytes = std::max(res.cache_bytes, bytes_of(x_fp) + bytes_of(y));
        x_fp = std::move(y);
        x_q = x_fp;
        imat = ic.result();
      }
      for (const TunableLinear& t : tunables) {
        const bool opt = !o.disable_opt_rtn.value_or(false) && opt_rtn_applies(t.scheme);
        auto im = imat.find(t.name);
        QuantizedLinear q = opt ? quantize_opt_rtn(t.weight, t.scheme, im != imat.end() ? im->second : Tensor())
                                : quantize_rtn(t.weight, t.scheme);
        q.name = t.name;
        qweights[t.name] = dequantize(q, q.weight_dtype, t.weight.device());
        block_q[t.name] = std::move(q);
        for (LayerLog& ll : log.layers)
          if (ll.name == t.name && opt) ll.scheme = (imatrix_on ? "opt-rtn+imatrix " : "opt-rtn ") + ll.scheme;
      }
    }
    std::map<std::string, Tensor> block_w;  // checkpoint tensor name -> dequantized weight (CPU)
    for (const models::LinearInfo& li : infos) {
      auto it = qweights.find(li.name);
      if (it != qweights.end()) block_w[li.weight_name()] = it->second.to(Device::cpu());
    }
    qweights.clear();
    size_t frozen_bytes = 0;
    for (const auto& [k, q] : block_q) frozen_bytes += bytes_of(q.codes) + bytes_of(q.scales) + bytes_of(q.zeros);
    for (const auto& [k, w] : block_w) frozen_bytes += bytes_of(w);
    res.frozen_block_bytes = std::max(res.frozen_block_bytes, frozen_bytes);
    if (o.on_block_frozen) {
      o.on_block_frozen(bi, std::move(block_q), std::move(block_w));
    } else {
      for (auto& [k, v] : block_q) res.quantized[k] = std::move(v);
      for (auto& [k, v] : block_w) res.weights[k] = std::move(v);
    }
    log.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (o.log) o.log(block_log_line(log, n_blocks));
    res.blocks.push_back(std::move(log));
  }

  // lm_head (§1.11): only with quant_lm_head and untied embeddings. Its inputs are the final
  // norm of the last block's output: tuned alone with SignRound when there are calibration
  // data and iters > 0, else opt-RTN (imatrix of the FP inputs when cached) or RTN.
  if (lm_head_quantized(lm, o)) {
    Tensor head_fp, head_q;  // [n, s, H] cache dtype
    if (calibrate || imatrix_on) {
      head_fp = final_norm_all(lm, x_fp, o.batch_size, cache, run_dev);
      head_q = calibrate && o.enable_quanted_input && x_q.storage() != x_fp.storage()
                   ? final_norm_all(lm, x_q, o.batch_size, cache, run_dev)
                   : head_fp;
    }
    x_fp = x_q = Tensor();  // the blocks' caches are no longer needed
    LmHeadResult h = quantize_lm_head(lm, head_fp, head_q, mask, o, rng);
    if (h.quantized) {
      std::map<std::string, Tensor> head_w{{"lm_head.weight", std::move(h.weight)}};
      std::map<std::string, QuantizedLinear> head_q_map;
      head_q_map["lm_head"] = std::move(h.q);
      if (o.on_block_frozen) {
        o.on_block_frozen(n_blocks, std::move(head_q_map), std::move(head_w));
      } else {
        res.quantized["lm_head"] = std::move(head_q_map["lm_head"]);
        res.weights["lm_head.weight"] = std::move(head_w["lm_head.weight"]);
      }
      if (o.log) o.log(lm_head_log_line(h));
    }
  }
  return res;
}

}  // namespace arq::quant
