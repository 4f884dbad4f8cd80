#include "quant/pipeline.h"

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "autograd/ops.h"
#include "engine/ops.h"
#include "quant/opt_rtn.h"
#include "quant/py_random.h"
#include "quant/qdq.h"
#include "quant/signround.h"

namespace arq::quant {

bool needs_calibration(const PipelineOptions& o) { return o.iters > 0; }

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
  ARQ_CHECK(o.cache_dtype == DType::f32 || o.cache_dtype == DType::bf16, UsageError, "--cache_dtype must be f32 or bf16, got ",
            dtype_name(o.cache_dtype));
}

size_t bytes_of(const Tensor& t) { return t.defined() ? t.nbytes() : 0; }

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
  if (calibrate) {
    ARQ_CHECK(ids.defined() && ids.dim() == 2 && ids.size(0) >= 1 && ids.size(1) >= 2, UsageError,
              "calibration ids must be [nsamples, seqlen] with seqlen >= 2, got ", ids.defined() ? ids.str() : "none");
    if (loss_mask.defined())
      ARQ_CHECK(loss_mask.shape() == ids.shape(), ShapeError, "loss mask ", loss_mask.str(), " does not match ids ", ids.str());
  }
  const models::DecoderSpec& spec = lm.spec();
  const int64_t n_blocks = lm.num_blocks();
  const DType compute = lm.dtype();
  PipelineResult res;
  PyRandom rng(o.seed);

  Tensor x_fp, x_q, mask;  // [n, s, H] in cache dtype; [n, s] f32
  std::unique_ptr<InputsCache> inputs;
  if (calibrate) {
    ag::NoGrad ng;
    // Block-0 inputs are the embeddings of the calibration ids (computed once, §1.4).
    x_fp = lm.embed(ids.to(DType::i64)).to(o.cache_dtype).to(lm.device());
    x_q = x_fp;
    if (loss_mask.defined()) mask = loss_mask.to(DType::f32).to(lm.device());
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
      const LayerChoice c = choose_layer(li.name, li.out_features, li.in_features, o.scheme, o.layer_config, o.fp_layers);
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
      const Tensor y = run_block(fn, x_fp, {}, o.batch_size, compute, o.cache_dtype);
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
        if (o.on_iter) so.on_iter = [&](int64_t it, int64_t n, double l) { o.on_iter(bi, it, n, l); };
        const TuneData data{o.enable_quanted_input ? x_q : x_fp, y, mask};
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
        x_q = run_block(fn, x_q, qweights, o.batch_size, compute, o.cache_dtype);
      } else if (o.enable_quanted_input && x_q.storage() != x_fp.storage()) {
        x_q = run_block(fn, x_q, {}, o.batch_size, compute, o.cache_dtype);
      } else {
        x_q = y;
      }
      x_fp = y;
    } else {
      // RTN (§3): no data; opt-RTN searches each group's scale (importance weights 1: the block
      // interface exposes no per-linear inputs to build an imatrix from).
      for (const TunableLinear& t : tunables) {
        const bool opt = !o.disable_opt_rtn.value_or(false) && opt_rtn_applies(t.scheme);
        QuantizedLinear q = opt ? quantize_opt_rtn(t.weight, t.scheme, Tensor()) : quantize_rtn(t.weight, t.scheme);
        q.name = t.name;
        qweights[t.name] = dequantize(q).to(t.weight.device());
        block_q[t.name] = std::move(q);
        for (LayerLog& ll : log.layers)
          if (ll.name == t.name && opt) ll.scheme = "opt-rtn " + ll.scheme;
      }
    }
    std::map<std::string, Tensor> block_w;  // checkpoint tensor name -> dequantized weight (CPU)
    for (const models::LinearInfo& li : infos) {
      auto it = qweights.find(li.name);
      if (it != qweights.end()) block_w[li.weight_name()] = it->second.to(Device::cpu());
    }
    qweights.clear();
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

  // lm_head (§1.11): only with quant_lm_head and untied embeddings; RTN (the fallback AutoRound
  // uses when the head's inputs are not cached).
  if (o.quant_lm_head && !spec.tie_word_embeddings && lm.source().has("lm_head.weight")) {
    const Tensor w = lm.source().get("lm_head.weight");
    const LayerChoice c = choose_layer("lm_head", w.size(0), w.size(1), o.scheme, o.layer_config, o.fp_layers);
    if (!c.scheme.keep_fp()) {
      const bool opt = !o.disable_opt_rtn.value_or(false) && opt_rtn_applies(c.scheme);
      QuantizedLinear q = opt ? quantize_opt_rtn(w, c.scheme, Tensor()) : quantize_rtn(w, c.scheme);
      q.name = "lm_head";
      std::map<std::string, Tensor> head_w{{"lm_head.weight", dequantize(q)}};
      std::map<std::string, QuantizedLinear> head_q;
      head_q["lm_head"] = std::move(q);
      if (o.on_block_frozen) {
        o.on_block_frozen(n_blocks, std::move(head_q), std::move(head_w));
      } else {
        res.quantized["lm_head"] = std::move(head_q["lm_head"]);
        res.weights["lm_head.weight"] = std::move(head_w["lm_head.weight"]);
      }
      if (o.log) o.log(cat("lm_head: quantized with ", opt ? "opt-RTN " : "RTN ", c.scheme.str()));
    }
  }
  return res;
}

}  // namespace arq::quant
