// Token generation over a KV cache: greedy, or temperature + top-p sampling from a seeded
// generator (splitmix64; the same seed gives the same tokens on every machine).
//
//   GenerateOptions o{.max_new_tokens = 60};                  // greedy (temperature 0)
//   std::vector<int64_t> out = generate(lm, {1}, o);          // new tokens only
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "models/causal_lm.h"

namespace arq::models {

struct SamplingParams {
  double temperature = 0;   // 0: greedy (argmax; ties pick the lowest id)
  double top_p = 1.0;       // keep the smallest set of most likely tokens whose mass reaches top_p
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(SamplingParams p);
  // logits [vocab] (f32, any scale) -> token id.
  int64_t sample(const float* logits, int64_t vocab);
  double uniform();   // [0, 1), 53 random bits

 private:
  SamplingParams p_;
  uint64_t state_;
};

struct GenerateOptions {
  int64_t max_new_tokens = 64;
  SamplingParams sampling{};
  std::vector<int64_t> stop_ids{};   // generation ends after emitting one of these
  std::function<void(int64_t token)> on_token{};   // called for each new token (streaming)
};

// prompt (non-empty) -> the new tokens (stop token included when hit).
std::vector<int64_t> generate(const CausalLM& lm, const std::vector<int64_t>& prompt, const GenerateOptions& options);

}  // namespace arq::models
