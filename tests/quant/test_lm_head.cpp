// lm_head outside the blocks (spec/autoround.md §1.11) on a random tiny untied Llama: tuned
// alone with SignRound, iteration 0 is RTN (its tracked loss recomputed independently), the
// tuned layer's loss is at most RTN's, the iters-0 fallback, the tied-embeddings rule, and the
// pipeline handing lm_head to on_block_frozen as block num_blocks.
#include <doctest/doctest.h>

#include <cmath>

#include "engine/ops.h"
#include "models/family.h"
#include "models/random_model.h"
#include "quant/imatrix.h"
#include "quant/lm_head.h"
#include "quant/opt_rtn.h"
#include "quant/pipeline.h"
#include "tests/quant/quant_test_util.h"
#include "quant/qdq.h"

using namespace arq;
using namespace arq::quant;
using namespace arq::quant_test;

namespace {

models::DecoderSpec untied_spec() {
  models::DecoderSpec s = models::tiny_spec("llama");   // vocab 96, hidden 32: lm_head [96, 32] quantizable
  s.intermediate_size = 64;
  s.num_key_value_heads = 4;
  s.tie_word_embeddings = false;
  s.validate();
  return s;
}

// Σ over valid tokens and vocab of (x_q·Ŵᵀ − x_fp·Wᵀ)², divided by the valid tokens: the tracked
// loss of §1.6 (`sum` reduction, num_elm = valid tokens of the global batch), in f64.
double head_loss(const Tensor& xq, const Tensor& xfp, const Tensor& w_hat, const Tensor& w, const Tensor& mask) {
  const int64_t n = xq.size(0), s = xq.size(1), H = xq.size(2), V = w.size(0);
  const std::vector<double> a = to_vector(xq), b = to_vector(xfp), wh = to_vector(w_hat), wv = to_vector(w), m = to_vector(mask);
  double loss = 0, tokens = 0;
  for (int64_t t = 0; t < n * s; ++t) {
    if (m[t] == 0) continue;
    tokens += 1;
    for (int64_t v = 0; v < V; ++v) {
      double p = 0, r = 0;
      for (int64_t h = 0; h < H; ++h) {
        p += a[t * H + h] * wh[v * H + h];
        r += b[t * H + h] * wv[v * H + h];
      }
      loss += (p - r) * (p - r);
    }
  }
  return loss / tokens;
}

}  // namespace

TEST_CASE("lm_head SignRound: iteration 0 is RTN; the tuned head's loss is at most RTN's") {
  const models::CausalLM lm = models::random_causal_lm(untied_spec(), {.seed = 8, .stddev = 0.2});
  const int64_t n = 4, seq = 6, H = lm.spec().hidden_size;
  const Tensor head_fp = lm.final_norm(rand_normal({n, seq, H}, 31));
  const Tensor head_q = add(head_fp, rand_normal({n, seq, H}, 32, 0, 0.05));   // the quantized chain drifted
  const Tensor mask = last_masked(n, seq);
  const Tensor w = lm.source().get("lm_head.weight");
  PipelineOptions o;
  o.scheme = {.bits = 2, .group_size = 32};
  o.quant_lm_head = true;
  o.batch_size = 2;
  o.gradient_accumulate_steps = 2;   // 2 × 2 = n: the global batch is every sample, so the
                                     // tracked loss is the full-set loss below
  REQUIRE(lm_head_quantized(lm, o));
  const QuantizedLinear rtn = quantize_rtn(w, o.scheme);
  const double l_rtn = head_loss(head_q, head_fp, dequantize(rtn, DType::f32), w, mask);

  o.iters = 1;
  PyRandom rng1(42);
  const LmHeadResult r1 = quantize_lm_head(lm, head_fp, head_q, mask, o, rng1);
  REQUIRE(r1.tuned);
  CHECK(to_vector(r1.q.codes) == to_vector(rtn.codes));
  CHECK(to_vector(r1.q.scales) == to_vector(rtn.scales));
  // f32 forward of 32-term dot products and an f32 loss reduction over 20·96 terms: 1e-4 relative
  CHECK(r1.loss_init == doctest::Approx(l_rtn).epsilon(1e-4));

  o.iters = 40;
  PyRandom rng(42);
  const LmHeadResult r = quantize_lm_head(lm, head_fp, head_q, mask, o, rng);
  CHECK(r.method == "SignRound");
  CHECK(r.loss_init == doctest::Approx(l_rtn).epsilon(1e-4));
  CHECK(r.loss_best < r.loss_init);
  const double l_tuned = head_loss(head_q, head_fp, r.weight.to(DType::f32), w, mask);
  CHECK(l_tuned == doctest::Approx(r.loss_best).epsilon(1e-4));   // the kept iteration's parameters
  CHECK(l_tuned < l_rtn);
  CHECK(lm_head_log_line(r).rfind("lm_head: quantized with SignRound W2G32", 0) == 0);
}

TEST_CASE("lm_head fallback: iters 0 rounds with opt-RTN (imatrix of the FP inputs when given) or RTN") {
  const models::CausalLM lm = models::random_causal_lm(untied_spec(), {.seed = 9, .stddev = 0.2});
  const Tensor w = lm.source().get("lm_head.weight");
  const Tensor head_fp = lm.final_norm(rand_normal({3, 5, lm.spec().hidden_size}, 33));
  PipelineOptions o;
  o.scheme = {.bits = 4, .group_size = 32};
  o.quant_lm_head = true;
  o.iters = 0;
  o.batch_size = 2;
  PyRandom rng(42);
  LmHeadResult r = quantize_lm_head(lm, head_fp, head_fp, Tensor(), o, rng);
  CHECK(r.method == "opt-RTN");
  ImatrixCollector c;
  c.add("lm_head", head_fp);
  CHECK(to_vector(r.q.codes) == to_vector(quantize_opt_rtn(w, o.scheme, c.result().at("lm_head")).codes));
  r = quantize_lm_head(lm, Tensor(), Tensor(), Tensor(), o, rng);
  CHECK(to_vector(r.q.codes) == to_vector(quantize_opt_rtn(w, o.scheme, Tensor()).codes));
  o.disable_opt_rtn = true;
  r = quantize_lm_head(lm, head_fp, head_fp, Tensor(), o, rng);
  CHECK(r.method == "RTN");
  CHECK(to_vector(r.q.codes) == to_vector(quantize_rtn(w, o.scheme).codes));
}

TEST_CASE("lm_head rules: only with quant_lm_head and untied embeddings; streamed as block num_blocks") {
  models::DecoderSpec tied = untied_spec();
  tied.tie_word_embeddings = true;
  const models::CausalLM lt = models::random_causal_lm(tied, {.seed = 10, .stddev = 0.2});
  PipelineOptions o;
  o.scheme = {.bits = 4, .group_size = 32};
  o.quant_lm_head = true;
  CHECK_FALSE(lm_head_quantized(lt, o));
  const models::CausalLM lm = models::random_causal_lm(untied_spec(), {.seed = 10, .stddev = 0.2});
  CHECK(lm_head_quantized(lm, o));
  o.quant_lm_head = false;
  CHECK_FALSE(lm_head_quantized(lm, o));

  // Through the pipeline with SignRound: the head arrives last, with block = num_blocks.
  o.quant_lm_head = true;
  o.iters = 3;
  o.batch_size = 2;
  const Tensor ids = cast(floor(rand_uniform({4, 8}, 5, 0, 95.999)), DType::i64);
  std::vector<int64_t> blocks;
  std::vector<std::string> lines;
  o.log = [&](const std::string& l) { lines.push_back(l); };
  o.on_block_frozen = [&](int64_t b, std::map<std::string, QuantizedLinear>&& q, std::map<std::string, Tensor>&& wts) {
    blocks.push_back(b);
    if (b == lm.num_blocks()) {
      CHECK(q.count("lm_head") == 1);
      CHECK(wts.count("lm_head.weight") == 1);
      CHECK(wts.at("lm_head.weight").shape() == Shape({96, 32}));
    }
  };
  const PipelineResult r = quantize_blocks(lm, ids, last_masked(4, 8), o);
  CHECK(blocks == std::vector<int64_t>{0, 1, 2});
  CHECK(r.quantized.empty());
  REQUIRE(!lines.empty());
  CHECK(lines.back().rfind("lm_head: quantized with SignRound W4G32", 0) == 0);
}
