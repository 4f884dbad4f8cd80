#include "quant/lm_head.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "autograd/ops.h"
#include "engine/ops.h"
#include "models/blocks/layers.h"
#include "quant/imatrix.h"
#include "quant/opt_rtn.h"
#include "quant/qdq.h"
#include "quant/signround.h"

namespace arq::quant {

namespace {

constexpr const char* kName = "lm_head";
constexpr const char* kWeight = "lm_head.weight";

LayerChoice head_choice(const models::CausalLM& lm, const PipelineOptions& o) {
  const std::optional<Shape> shape = lm.source().shape(kWeight);
  ARQ_ASSERT(shape && shape->size() == 2, "lm_head.weight missing or not 2-D");
  return choose_layer(kName, (*shape)[0], (*shape)[1], o.scheme, o.layer_config, o.fp_layers);
}

// x[idx] along dim 0, on x's device.
Tensor take_rows(const Tensor& x, const std::vector<int64_t>& idx) {
  std::vector<double> d(idx.begin(), idx.end());
  return index_select(x, 0, from_vector(d, {static_cast<int64_t>(idx.size())}, DType::i64).to(x.device()));
}

}  // namespace

bool lm_head_quantized(const models::CausalLM& lm, const PipelineOptions& o) {
  if (!o.quant_lm_head || lm.spec().tie_word_embeddings || !lm.source().has(kWeight)) return false;
  return !head_choice(lm, o).scheme.keep_fp();
}

LmHeadResult quantize_lm_head(const models::CausalLM& lm, const Tensor& head_fp, const Tensor& head_q, const Tensor& mask,
                              const PipelineOptions& o, PyRandom& rng) {
  LmHeadResult r;
  if (!lm_head_quantized(lm, o)) return r;
  const auto t0 = std::chrono::steady_clock::now();
  const LayerChoice c = head_choice(lm, o);
  validate_scheme(c.scheme, kName);
  r.quantized = true;
  r.scheme = c.scheme.str();
  const DType compute = lm.dtype();
  // [V, H] in the compute dtype on the compute device, as load_block gives the block linears.
  const Tensor w = lm.source().get(kWeight).to(compute).to(lm.device());
  const bool have_inputs = head_fp.defined();
  if (have_inputs) {
    ARQ_CHECK(head_fp.dim() == 3 && head_fp.size(2) == w.size(1), ShapeError, "[lm_head] inputs ", head_fp.str(),
              " do not match lm_head.weight ", w.str());
    ARQ_CHECK(!head_q.defined() || head_q.shape() == head_fp.shape(), ShapeError, "[lm_head] quantized-chain inputs ",
              head_q.str(), " do not match the FP inputs ", head_fp.str());
  }

  if (o.iters > 0 && have_inputs) {
    // §1.11: tuned alone, batch 1 with accumulation over batch_size × gradient_accumulate_steps.
    const BlockFn fn = [&](const ag::Var& x, const WeightMap& wm) {
      auto it = wm.find(kName);
      return models::linear(x, it != wm.end() ? it->second : ag::Var(w));   // [b, s, H] -> [b, s, V]
    };
    TuneData data;
    data.inputs = o.enable_quanted_input && head_q.defined() ? head_q : head_fp;
    data.mask = mask;
    // The reference layer(fp_input), computed per micro-batch: all of [n, s, V] may not fit.
    data.reference = [&](const std::vector<int64_t>& idx) {
      ag::NoGrad ng;
      // head_fp may be a host cache (low_gpu_mem_usage): the rows go to lm_head's device
      return models::linear(ag::Var(take_rows(head_fp, idx).to(lm.device()).to(compute)), ag::Var(w)).value();
    };
    SignRoundOptions so;
    so.iters = o.iters;
    so.lr = o.lr;
    so.minmax_lr = o.minmax_lr;
    so.batch_size = 1;
    so.gradient_accumulate_steps = o.batch_size * o.gradient_accumulate_steps;   // `sum` reduction when > 1
    so.enable_minmax_tuning = o.enable_minmax_tuning;
    so.not_use_best_mse = o.not_use_best_mse;
    so.compute_dtype = compute;
    so.device = lm.device();   // the inputs may stay on the host (low_gpu_mem_usage)
    if (o.on_iter) so.on_iter = [&](int64_t it, int64_t n, double l) { o.on_iter(lm.num_blocks(), it, n, l); };
    TuneResult tr = tune_block(fn, {TunableLinear{kName, w, c.scheme}}, data, so, rng);
    r.method = "SignRound";
    r.tuned = true;
    r.loss_init = tr.loss_init;
    r.loss_best = tr.loss_best;
    r.best_iter = tr.best_iter;
    r.q = std::move(tr.layers.front().q);
  } else {
    // iters 0 (or no cached inputs, §1.11's fallback): opt-RTN unless disabled, with the
    // importance matrix of the FP inputs when they are cached (§3), else RTN.
    const bool opt = !o.disable_opt_rtn.value_or(false) && opt_rtn_applies(c.scheme);
    Tensor imat;
    if (opt && have_inputs) {
      ImatrixCollector ic;
      for (int64_t b0 = 0; b0 < head_fp.size(0); b0 += o.batch_size) {
        ic.add(kName, head_fp.narrow(0, b0, std::min(o.batch_size, head_fp.size(0) - b0)));
        ic.end_batch();
      }
      imat = ic.result().at(kName);
    }
    r.method = opt ? "opt-RTN" : "RTN";
    r.q = opt ? quantize_opt_rtn(w, c.scheme, imat) : quantize_rtn(w, c.scheme);
  }
  r.q.name = kName;
  r.weight = dequantize(r.q).to(Device::cpu());
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

std::string lm_head_log_line(const LmHeadResult& r) {
  char buf[256];
  if (r.tuned)
    std::snprintf(buf, sizeof buf, "lm_head: quantized with SignRound %s, loss iter 0: %.6g -> iter %lld: %.6g, %.1f s",
                  r.scheme.c_str(), r.loss_init, static_cast<long long>(r.best_iter), r.loss_best, r.seconds);
  else
    std::snprintf(buf, sizeof buf, "lm_head: quantized with %s %s, %.1f s", r.method.c_str(), r.scheme.c_str(), r.seconds);
  return buf;
}

}  // namespace arq::quant
