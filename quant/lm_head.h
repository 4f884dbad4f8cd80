// lm_head, the one linear outside the decoder blocks (spec/autoround.md §1.5, §1.11).
//
// It is quantized only with `quant_lm_head` and untied embeddings. With cached inputs (the
// final norm applied to the last block's output) and iters > 0 it is tuned alone with
// SignRound: batch_size 1 with accumulation over batch_size × gradient_accumulate_steps
// samples (`sum` reduction when that product is > 1), reference layer(fp_input), training
// input the quantized chain's when enable_quanted_input. Otherwise it is rounded: opt-RTN
// (with the importance matrix of the FP inputs when there are some) or RTN.
//
//   Tensor head_fp = lm.final_norm(x_fp), head_q = lm.final_norm(x_q);   // [n, s, H]
//   LmHeadResult r = quantize_lm_head(lm, head_fp, head_q, mask, options, rng);
//   if (r.quantized) write(r.q, r.weight);
#pragma once

#include <string>

#include "models/causal_lm.h"
#include "quant/pipeline.h"
#include "quant/py_random.h"

namespace arq::quant {

struct LmHeadResult {
  bool quantized = false;   // false: the rules keep lm_head as it is (the rest is empty)
  QuantizedLinear q;        // name "lm_head"
  Tensor weight;            // dequantize(q): [V, H] in the model's dtype, on the CPU
  std::string method;       // "SignRound", "opt-RTN" or "RTN"
  std::string scheme;       // QuantScheme::str()
  bool tuned = false;
  double loss_init = 0, loss_best = 0;   // SignRound's tracked losses (tuned only)
  int64_t best_iter = 0;
  double seconds = 0;
};

// Whether these options quantize lm_head on this model (quant_lm_head, untied embeddings, an
// lm_head tensor, and not kept in 16 bits by the layer rules).
bool lm_head_quantized(const models::CausalLM& lm, const PipelineOptions& o);

// head_fp / head_q: [n, s, H] lm_head inputs of the FP and the quantized chain (head_q may be
// head_fp; both undefined without calibration data). mask: [n, s] or undefined. `rng` is the
// run's generator (the sampler of the tuning draws from it after the blocks).
LmHeadResult quantize_lm_head(const models::CausalLM& lm, const Tensor& head_fp, const Tensor& head_q, const Tensor& mask,
                              const PipelineOptions& o, PyRandom& rng);

// "lm_head: quantized with SignRound W4G32 int_sym, loss iter 0: a -> iter k: b, 1.2 s"
std::string lm_head_log_line(const LmHeadResult& r);

}  // namespace arq::quant
