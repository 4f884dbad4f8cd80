// The block-by-block pipeline on a random Llama (models/random_model.h): RTN and SignRound
// freeze what the single-layer functions freeze, iteration 0 is RTN end to end, results do not
// depend on the thread count, the shape rule keeps layers in 16 bits.
#include <doctest/doctest.h>

#include "engine/backend.h"
#include "engine/ops.h"
#include "models/family.h"
#include "models/random_model.h"
#include "quant/opt_rtn.h"
#include "quant/pipeline.h"
#include "tests/quant/quant_test_util.h"
#include "quant/qdq.h"

using namespace arq;
using namespace arq::quant;
using namespace arq::quant_test;

namespace {

}  // namespace

TEST_CASE("pipeline RTN and opt-RTN freeze every block's linears like the single-layer functions") {
  const models::CausalLM lm = models::random_causal_lm(spec_all_quantizable(), {.seed = 3, .stddev = 0.1});
  for (bool opt : {false, true}) {
    PipelineOptions o;
    o.scheme = {.bits = 3, .group_size = 32};
    o.iters = 0;
    o.disable_opt_rtn = !opt;
    const PipelineResult r = quantize_blocks(lm, Tensor(), Tensor(), o);
    CHECK(r.quantized.size() == 14);  // 2 blocks × 7 linears
    CHECK(r.blocks.size() == 2);
    for (const auto& [name, q] : r.quantized) {
      const Tensor w = lm.source().get(name + ".weight");
      const QuantizedLinear ref = opt ? quantize_opt_rtn(w, o.scheme, Tensor()) : quantize_rtn(w, o.scheme);
      CHECK(to_vector(q.codes) == to_vector(ref.codes));
      CHECK(to_vector(r.weights.at(name + ".weight")) == to_vector(dequantize(ref)));
    }
  }
}

TEST_CASE("pipeline SignRound: iteration 0 is RTN end to end; more iterations lower each block's loss") {
  const models::CausalLM lm = models::random_causal_lm(spec_all_quantizable(), {.seed = 4, .stddev = 0.1});
  const Tensor ids = calib_ids(8, 12, lm.spec().vocab_size), mask = last_masked(8, 12);
  PipelineOptions o;
  o.scheme = {.bits = 2, .group_size = 32};
  o.iters = 1;
  o.batch_size = 4;
  PipelineResult r = quantize_blocks(lm, ids, mask, o);
  REQUIRE(r.quantized.size() == 14);
  for (const auto& [name, q] : r.quantized)
    CHECK(to_vector(q.codes) == to_vector(quantize_rtn(lm.source().get(name + ".weight"), o.scheme).codes));

  o.iters = 30;
  r = quantize_blocks(lm, ids, mask, o);
  for (const BlockLog& b : r.blocks) {
    CHECK(b.tuned);
    CHECK(b.n_quantized == 7);
    CHECK(b.loss_best < b.loss_init);
  }
  CHECK(block_log_line(r.blocks[1], 2).rfind("block 2/2: quantized 7/7 layers, loss iter 0: ", 0) == 0);
}

TEST_CASE("pipeline results do not depend on the thread count") {
  const models::CausalLM lm = models::random_causal_lm(spec_all_quantizable(), {.seed = 5, .stddev = 0.1});
  const Tensor ids = calib_ids(6, 10, lm.spec().vocab_size), mask = last_masked(6, 10);
  PipelineOptions o;
  o.scheme = {.bits = 4, .group_size = 32, .sym = false};
  o.iters = 8;
  o.batch_size = 2;
  o.gradient_accumulate_steps = 2;
  const int keep = num_threads();
  set_num_threads(1);
  const PipelineResult a = quantize_blocks(lm, ids, mask, o);
  set_num_threads(2);
  const PipelineResult b = quantize_blocks(lm, ids, mask, o);
  set_num_threads(keep);
  for (const auto& [name, q] : a.quantized) {
    CHECK(to_vector(q.codes) == to_vector(b.quantized.at(name).codes));
    CHECK(to_vector(q.scales) == to_vector(b.quantized.at(name).scales));
  }
  for (size_t i = 0; i < a.blocks.size(); ++i) CHECK(a.blocks[i].loss_best == b.blocks[i].loss_best);
}

TEST_CASE("pipeline layer rules: dimensions not divisible by 32 and --fp_layers stay 16-bit") {
  // the stock tiny llama: k/v [16, 32] and gate/up/down with 56 stay FP; q/o are quantized
  const models::CausalLM lm = models::random_causal_lm(models::tiny_spec("llama"), {.seed = 6});
  PipelineOptions o;
  o.scheme = {.bits = 4, .group_size = 32};
  o.iters = 0;
  o.fp_layers = {"layers.1.self_attn.o_proj"};
  const PipelineResult r = quantize_blocks(lm, Tensor(), Tensor(), o);
  CHECK(r.quantized.size() == 3);
  CHECK(r.quantized.count("model.layers.0.self_attn.q_proj") == 1);
  CHECK(r.quantized.count("model.layers.1.self_attn.o_proj") == 0);
  CHECK(r.blocks[0].n_quantized == 2);
  CHECK(r.blocks[1].n_quantized == 1);
  CHECK_THROWS_AS(quantize_blocks(lm, Tensor(), Tensor(), {.scheme = {.bits = 1}}), UsageError);
  PipelineOptions t;
  t.iters = 5;
  CHECK_THROWS_AS(quantize_blocks(lm, Tensor(), Tensor(), t), UsageError);  // tuning without data
}
