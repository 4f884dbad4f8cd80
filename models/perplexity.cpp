#include "models/perplexity.h"

#include <algorithm>

#include "engine/ops.h"

namespace arq::models {

PerplexityResult perplexity(const CausalLM& lm, const std::vector<int32_t>& ids, const PerplexityOptions& o) {
  ARQ_CHECK(o.seqlen >= 2, UsageError, "perplexity: seqlen must be at least 2, got ", o.seqlen);
  ARQ_CHECK(o.bos_id >= 0 && o.bos_id < lm.spec().vocab_size, UsageError, "perplexity: BOS id ", o.bos_id,
            " is not a token of the model (vocab_size ", lm.spec().vocab_size, ")");
  ARQ_CHECK(!ids.empty(), UsageError, "perplexity: the text has no tokens");
  const int64_t per_chunk = o.seqlen - 1, n = static_cast<int64_t>(ids.size());
  int64_t total = (n + per_chunk - 1) / per_chunk;
  if (o.max_chunks > 0) total = std::min(total, o.max_chunks);
  const int64_t V = lm.spec().vocab_size;
  PerplexityResult r;
  for (int64_t c = 0; c < total; ++c) {
    const int64_t begin = c * per_chunk, len = std::min(per_chunk, n - begin);
    std::vector<double> chunk(static_cast<size_t>(len + 1));
    chunk[0] = static_cast<double>(o.bos_id);
    for (int64_t t = 0; t < len; ++t) chunk[static_cast<size_t>(t + 1)] = ids[static_cast<size_t>(begin + t)];
    Tensor logits = lm.forward(from_vector(chunk, {1, len + 1}, DType::i64)).to(Device::cpu()).contiguous();   // [1, len+1, V]
    const float* L = logits.data<float>();
    // Position t predicts token t + 1: −log softmax, in f64 with the max subtracted.
    for (int64_t t = 0; t < len; ++t) {
      const float* row = L + t * V;
      double mx = row[0];
      for (int64_t v = 1; v < V; ++v) mx = std::max(mx, static_cast<double>(row[v]));
      double z = 0;
      for (int64_t v = 0; v < V; ++v) z += std::exp(static_cast<double>(row[v]) - mx);
      const int64_t target = static_cast<int64_t>(chunk[static_cast<size_t>(t + 1)]);
      r.nll_sum += std::log(z) + mx - static_cast<double>(row[target]);
    }
    r.tokens += len;
    r.chunks += 1;
    if (c == 0 && o.keep_first_logits) r.first_logits = logits.select(0, 0);
    if (o.progress) o.progress(c + 1, total);
  }
  return r;
}

}  // namespace arq::models
