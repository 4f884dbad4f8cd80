// Perplexity with the protocol every ar-quant number uses (and ASSETS.md's golden value):
// the whole text is encoded without BOS, the ids are cut into consecutive chunks of
// seqlen − 1, each chunk is prefixed with BOS, and every token after the BOS is scored
// (the last chunk may be shorter). NLL is accumulated in f64 from f32 logits.
//
//   PerplexityResult r = perplexity(lm, ids, {.seqlen = 256, .bos_id = 1});
//   std::printf("%.4f over %lld tokens\n", r.perplexity(), (long long)r.tokens);
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

#include "models/causal_lm.h"

namespace arq::models {

struct PerplexityOptions {
  int64_t seqlen = 2048;       // BOS + seqlen − 1 text tokens per chunk
  int64_t max_chunks = 0;      // 0: all
  int64_t bos_id = -1;         // required (>= 0)
  bool keep_first_logits = false;   // return the first chunk's logits (f32 [tokens, vocab])
  std::function<void(int64_t done, int64_t total)> progress{};   // after each chunk
};

struct PerplexityResult {
  double nll_sum = 0;     // Σ −log p(token)
  int64_t tokens = 0;     // scored tokens
  int64_t chunks = 0;
  Tensor first_logits{};  // [chunk_len, vocab] when asked for (chunk_len includes the BOS position)
  double mean_nll() const { return tokens > 0 ? nll_sum / static_cast<double>(tokens) : 0.0; }
  double perplexity() const { return std::exp(mean_nll()); }
};

PerplexityResult perplexity(const CausalLM& lm, const std::vector<int32_t>& ids, const PerplexityOptions& options);

}  // namespace arq::models
