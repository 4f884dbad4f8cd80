// Small fixtures shared by the quantizer tests (tests/quant, tests/cuda): a tiny Llama whose
// linears are all quantizable at group size 32, random calibration ids, a loss mask, and one block
// of a model as a SignRound block function (BlockRunner).
#pragma once

#include <doctest/doctest.h>

#include <cstdint>

#include <map>
#include <vector>

#include "engine/ops.h"
#include "models/causal_lm.h"
#include "models/family.h"
#include "quant/pipeline.h"
#include "quant/signround.h"

namespace arq::quant_test {

// models::tiny_spec("llama") with intermediate 64 (gate/up/down divisible by 32) and 4 kv heads
// (k/v [32, 32]), so every linear of a block is quantized at G32.
inline models::DecoderSpec spec_all_quantizable() {
  models::DecoderSpec s = models::tiny_spec("llama");
  s.intermediate_size = 64;
  s.num_key_value_heads = 4;
  s.validate();
  return s;
}

// i64 [n, seq] uniform in [0, vocab), seeded.
inline Tensor calib_ids(int64_t n, int64_t seq, int64_t vocab) {
  return cast(floor(rand_uniform({n, seq}, 99, 0, static_cast<double>(vocab) - 1e-3)), DType::i64);
}

// f32 [n, seq] ones with the last position of every row masked out.
inline Tensor last_masked(int64_t n, int64_t seq) {
  Tensor m = ones({n, seq});
  Tensor last = m.narrow(1, seq - 1, 1);
  fill_(last, 0.0);
  return m;
}

// One block of `lm` as a SignRound block function, with its BlockInputs per batch size.
struct BlockRunner {
  const models::CausalLM& lm;
  models::BlockWeights bw;
  int64_t seq;
  std::map<int64_t, models::BlockInputs> inputs;
  BlockRunner(const models::CausalLM& m, int64_t block, int64_t s) : lm(m), bw(m.load_block(block)), seq(s) {}
  quant::BlockFn fn() {
    return [this](const ag::Var& x, const quant::WeightMap& w) {
      auto it = inputs.find(x.size(0));
      if (it == inputs.end()) it = inputs.emplace(x.size(0), lm.block_inputs({.batch = x.size(0), .seq = seq})).first;
      return lm.block_forward(bw, x, it->second, w);
    };
  }
  std::vector<quant::TunableLinear> linears(const quant::QuantScheme& s) const {
    std::vector<quant::TunableLinear> out;
    for (const models::LinearInfo& li : lm.block_linears(bw.layer)) out.push_back({li.name, bw.at(li.weight_name()), s});
    return out;
  }
};

// Two pipeline runs that must freeze the same layers (resident vs streamed caches, ...): the
// same codes and scales per layer and the same best loss per block.
inline void check_same_quantization(const quant::PipelineResult& a, const quant::PipelineResult& b) {
  REQUIRE(a.quantized.size() == b.quantized.size());
  for (const auto& [name, q] : a.quantized) {
    INFO(name);
    CHECK(to_vector(q.codes) == to_vector(b.quantized.at(name).codes));
    CHECK(to_vector(q.scales) == to_vector(b.quantized.at(name).scales));
  }
  for (size_t i = 0; i < a.blocks.size(); ++i) CHECK(a.blocks[i].loss_best == b.blocks[i].loss_best);
}

}  // namespace arq::quant_test
