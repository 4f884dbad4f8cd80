// Models with random weights, made in memory from a spec: the fixtures of every test that
// needs a model of a given family and shape, and of `ar-quant make-model`.
//
// Linear weights and embeddings are N(0, std) with std = initializer_range (as transformers
// initializes them); norm weights are 1 (+ optional jitter so tests see a norm weight that is
// not the identity); biases are N(0, std) rather than transformers' zeros, so bias paths are
// exercised. Every tensor draws from its own counter-based stream keyed by (seed, name), so
// the same seed gives the same tensor whatever the other tensors are.
//
//   CausalLM lm = random_causal_lm(tiny_spec("qwen2"), {.seed = 7});
//   save_pretrained(lm, "/tmp/tiny-qwen2");                    // config.json + model.safetensors
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "models/causal_lm.h"

namespace arq::models {

struct RandomInit {
  uint64_t seed = 0;
  DType dtype = DType::f32;   // stored dtype of every tensor
  double stddev = 0;          // 0: spec.initializer_range
  double norm_jitter = 0;     // norm weights = 1 + norm_jitter · N(0, 1)
};

std::shared_ptr<MapSource> random_weights(const DecoderSpec& spec, const RandomInit& init = {});
CausalLM random_causal_lm(const DecoderSpec& spec, const RandomInit& init = {}, const LoadOptions& options = {});

struct SaveOptions {
  std::optional<DType> dtype{};   // stored dtype; unset: as held in the source
  std::string tokenizer_dir{};    // copy tokenizer files (and generation_config.json) from here
  uint64_t max_shard_bytes = 5'000'000'000ULL;
};

// An HF folder: config.json (the family's fields), model.safetensors (sharded past
// max_shard_bytes), tokenizer files when given. lm_head.weight is left out when tied.
void save_pretrained(const CausalLM& model, const std::string& dir, const SaveOptions& options = {});

// Every tensor name a spec implies, globals first, then block by block.
std::vector<std::string> checkpoint_tensor_names(const DecoderSpec& spec);

}  // namespace arq::models
