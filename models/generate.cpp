#include "models/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "engine/ops.h"

namespace arq::models {

Sampler::Sampler(SamplingParams p) : p_(p), state_(p.seed ^ 0x6A09E667F3BCC909ULL) {
  ARQ_CHECK(p.temperature >= 0 && std::isfinite(p.temperature), UsageError, "temperature must be >= 0, got ",
            p.temperature);
  ARQ_CHECK(p.top_p > 0 && p.top_p <= 1, UsageError, "top_p must be in (0, 1], got ", p.top_p);
}

double Sampler::uniform() {
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);   // splitmix64
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

int64_t Sampler::sample(const float* logits, int64_t vocab) {
  ARQ_CHECK(vocab > 0, ShapeError, "sample: empty logits");
  if (p_.temperature == 0) {
    int64_t best = 0;
    for (int64_t i = 1; i < vocab; ++i)
      if (logits[i] > logits[best]) best = i;
    return best;
  }
  double mx = -INFINITY;
  for (int64_t i = 0; i < vocab; ++i) mx = std::max(mx, static_cast<double>(logits[i]));
  std::vector<double> prob(static_cast<size_t>(vocab));
  double z = 0;
  for (int64_t i = 0; i < vocab; ++i) z += prob[i] = std::exp((logits[i] - mx) / p_.temperature);
  std::vector<int64_t> order(static_cast<size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return prob[a] > prob[b]; });
  // Nucleus: the shortest prefix (by probability) whose mass reaches top_p.
  double kept = 0;
  size_t n = 0;
  while (n < order.size()) {
    kept += prob[order[n]] / z;
    ++n;
    if (kept >= p_.top_p) break;
  }
  double u = uniform() * kept, acc = 0;
  for (size_t i = 0; i < n; ++i) {
    acc += prob[order[i]] / z;
    if (u < acc) return order[i];
  }
  return order[n - 1];
}

std::vector<int64_t> generate(const CausalLM& lm, const std::vector<int64_t>& prompt, const GenerateOptions& o) {
  ARQ_CHECK(!prompt.empty(), UsageError, "generate: the prompt has no tokens");
  ARQ_CHECK(o.max_new_tokens >= 0, UsageError, "generate: max_new_tokens must be >= 0, got ", o.max_new_tokens);
  Sampler sampler(o.sampling);
  const int64_t n = static_cast<int64_t>(prompt.size());
  KvCache cache = lm.new_cache(1, n + std::max<int64_t>(o.max_new_tokens, 1));
  std::vector<double> p(prompt.begin(), prompt.end());
  Tensor logits = lm.forward(from_vector(p, {1, n}, DType::i64), cache);   // [1, n, V]
  const int64_t V = lm.spec().vocab_size;
  std::vector<int64_t> out;
  for (int64_t step = 0; step < o.max_new_tokens; ++step) {
    Tensor last = logits.select(1, logits.size(1) - 1).to(Device::cpu()).contiguous();   // [1, V]
    const int64_t tok = sampler.sample(last.data<float>(), V);
    out.push_back(tok);
    if (o.on_token) o.on_token(tok);
    if (std::find(o.stop_ids.begin(), o.stop_ids.end(), tok) != o.stop_ids.end()) break;
    if (step + 1 == o.max_new_tokens) break;
    logits = lm.forward(from_vector({static_cast<double>(tok)}, {1, 1}, DType::i64), cache);
  }
  return out;
}

}  // namespace arq::models
