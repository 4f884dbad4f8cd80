// Evaluation throughput of a random Llama with 1B-shaped blocks (hidden 2048, 16 heads, 8 kv
// heads, intermediate 5632, 2 layers, vocab 32000) at seqlen 2048, reported as tokens/s and as
// the fraction of the matmul GFLOP/s measured in the same run on the MLP's GEMM shape.
//
// Validates before timing: the full forward of a short sequence must agree with the KV-cache
// path (a different code path through the same blocks). Medians of a few repeats.
//
//   bench_models [--seqlen 2048] [--repeats 3] [--dtypes f32,bf16]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bench/llama_specs.h"
#include "engine/ops.h"
#include "models/family.h"
#include "models/random_model.h"

using namespace arq;
using namespace arq::models;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

DecoderSpec spec_1b() { return arq::bench::llama_1b_spec(2, 32000); }

// FLOPs of one forward over s tokens: 2 per weight per token, plus QKᵀ and PV over all s keys
// (the kernel computes the full s × s product; the causal half is masked, not skipped).
double forward_flops(const DecoderSpec& c, int64_t s) {
  const double H = static_cast<double>(c.hidden_size), I = static_cast<double>(c.intermediate_size);
  const double per_layer_w = H * c.q_dim() + 2 * H * c.kv_dim() + c.q_dim() * H + 3 * H * I;
  const double attn = 2.0 * 2.0 * static_cast<double>(s) * static_cast<double>(s) * c.q_dim();
  return c.num_hidden_layers * (2.0 * per_layer_w * s + attn) + 2.0 * H * c.vocab_size * s;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t seqlen = 2048, repeats = 3;
  std::string dtypes = "f32,bf16";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--seqlen")) seqlen = std::atoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--repeats")) repeats = std::atoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--dtypes")) dtypes = argv[i + 1];
  }
  const DecoderSpec spec = spec_1b();
  std::printf("llama 1B-shaped blocks: hidden %lld, heads %lld/%lld, intermediate %lld, layers %lld, vocab %lld; "
              "seqlen %lld, %d threads\n",
              (long long)spec.hidden_size, (long long)spec.num_attention_heads, (long long)spec.num_key_value_heads,
              (long long)spec.intermediate_size, (long long)spec.num_hidden_layers, (long long)spec.vocab_size,
              (long long)seqlen, num_threads());
  int status = 0;
  for (const std::string dt : {"f32", "bf16"}) {
    if (dtypes.find(dt) == std::string::npos) continue;
    const DType d = dt == "f32" ? DType::f32 : DType::bf16;
    try {
      CausalLM lm = random_causal_lm(spec, {.seed = 1, .dtype = d});
      // Validate: full forward vs KV-cache path on 12 tokens.
      std::vector<double> ids(12);
      for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<double>((i * 7919 + 3) % 32000);
      Tensor full = lm.forward(from_vector(ids, {1, 12}, DType::i64));
      KvCache cache = lm.new_cache(1, 12);
      lm.forward(from_vector({ids.begin(), ids.begin() + 8}, {1, 8}, DType::i64), cache);
      Tensor tail = lm.forward(from_vector({ids.begin() + 8, ids.end()}, {1, 4}, DType::i64), cache);
      std::vector<double> a = to_vector(full.narrow(1, 8, 4)), b = to_vector(tail);
      double err = 0;
      for (size_t i = 0; i < a.size(); ++i) err = std::max(err, std::fabs(a[i] - b[i]));
      const double tol = d == DType::f32 ? 1e-3 : 0.25;   // logits ~O(1); bf16 keeps 8 mantissa bits
      if (!(err <= tol)) {
        std::printf("%s: VALIDATION FAILED: full vs cached logits differ by %.3g (tol %.3g)\n", dt.c_str(), err, tol);
        status = 1;
        continue;
      }
      // Matmul reference in the same run: the MLP GEMM [seqlen, H] · [H, I].
      Tensor x = rand_normal({seqlen, spec.hidden_size}, 2, 0, 1, d);
      Tensor w = rand_normal({spec.hidden_size, spec.intermediate_size}, 3, 0, 0.02, d);
      matmul(x, w);   // warm-up
      std::vector<double> mm;
      for (int r = 0; r < 3; ++r) {
        const double t0 = now();
        matmul(x, w);
        mm.push_back(now() - t0);
      }
      const double mm_gflops = 2.0 * seqlen * spec.hidden_size * spec.intermediate_size / median(mm) / 1e9;
      std::vector<double> ids_long(static_cast<size_t>(seqlen));
      for (int64_t i = 0; i < seqlen; ++i) ids_long[i] = static_cast<double>((i * 104729 + 11) % 32000);
      Tensor batch = from_vector(ids_long, {1, seqlen}, DType::i64);
      lm.forward(batch);   // warm-up (weights become resident)
      std::vector<double> ts;
      for (int64_t r = 0; r < repeats; ++r) {
        const double t0 = now();
        lm.forward(batch);
        ts.push_back(now() - t0);
      }
      const double t = median(ts), gflops = forward_flops(spec, seqlen) / t / 1e9;
      std::printf("%s: %.1f tokens/s (%.2f s per %lld-token forward, median of %lld), %.1f GFLOP/s = %.0f%% of matmul "
                  "%.1f GFLOP/s; validation err %.2g\n",
                  dt.c_str(), seqlen / t, t, (long long)seqlen, (long long)repeats, gflops, 100 * gflops / mm_gflops,
                  mm_gflops, err);
    } catch (const Error& e) {
      std::printf("%s: not run: %s\n", dt.c_str(), e.what());
    }
  }
  return status;
}
