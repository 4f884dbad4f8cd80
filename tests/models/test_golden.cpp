// The real stories260k model (ASSETS.md) against its golden numbers: greedy text from BOS,
// FP32 perplexity on tinystories-calib.txt at seqlen 256, and the GGUF twin's logits.
// Skips when ../shared is absent.
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "engine/ops.h"
#include "io/tokenizer.h"
#include "models/generate.h"
#include "models/loader.h"
#include "models/perplexity.h"

using namespace arq;
using namespace arq::models;
namespace fs = std::filesystem;

namespace {

std::string shared_path(const std::string& rel) {
  const char* d = std::getenv("ARQ_SHARED_DIR");
  return d ? (fs::path(d) / rel).string() : std::string();
}

bool have(const std::string& p) {
  if (!p.empty() && fs::exists(p)) return true;
  MESSAGE("skipped: ", (p.empty() ? std::string("ARQ_SHARED_DIR is not set") : p + " is absent"));
  return false;
}

std::string read_text(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

}  // namespace

TEST_CASE("golden stories260k: greedy text from BOS") {
  const std::string dir = shared_path("models/stories260k");
  if (!have(dir)) return;
  CausalLM lm = load_causal_lm(dir);
  auto tok = io::load_tokenizer(dir);
  std::vector<int64_t> out = generate(lm, {1}, {.max_new_tokens = 60});
  REQUIRE(out.size() == 60);
  std::vector<int32_t> ids(out.begin(), out.end());
  CHECK(tok->decode(ids) ==
        "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she "
        "saw a big, red ball. She wanted to play with it, but it was too high");
}

TEST_CASE("golden stories260k: FP32 perplexity on tinystories-calib.txt, seqlen 256") {
  const std::string dir = shared_path("models/stories260k"), text = shared_path("data/tinystories-calib.txt");
  if (!have(dir) || !have(text)) return;
  CausalLM lm = load_causal_lm(dir);
  auto tok = io::load_tokenizer(dir);
  std::vector<int32_t> ids = tok->encode(read_text(text), /*add_bos=*/false);
  CHECK(ids.size() == 234791);
  const auto t0 = std::chrono::steady_clock::now();
  PerplexityResult r = perplexity(lm, ids, {.seqlen = 256, .bos_id = tok->bos_id()});
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  MESSAGE("stories260k ppl ", r.perplexity(), " mean nll ", r.mean_nll(), " over ", r.tokens, " tokens in ", secs, " s");
  CHECK(r.tokens == 234791);
  CHECK(r.perplexity() == doctest::Approx(5.3851).epsilon(1e-3));   // ASSETS.md: within 0.1%
  CHECK(r.mean_nll() == doctest::Approx(1.68363).epsilon(1e-4));
}

TEST_CASE("golden stories260k: the GGUF twin gives the same logits") {
  const std::string dir = shared_path("models/stories260k"), gguf = shared_path("models/stories260k.gguf");
  if (!have(dir) || !have(gguf)) return;
  CausalLM hf = load_causal_lm(dir);
  CausalLM gg = load_causal_lm(gguf);
  CHECK(gg.spec().num_hidden_layers == hf.spec().num_hidden_layers);
  CHECK(gg.spec().num_key_value_heads == hf.spec().num_key_value_heads);
  CHECK(gg.spec().head_dim == hf.spec().head_dim);
  std::vector<double> v = {1};
  for (int i = 0; i < 40; ++i) v.push_back((i * 53 + 7) % 500 + 3);
  Tensor ids = from_vector(v, {1, static_cast<int64_t>(v.size())}, DType::i64);
  std::vector<double> a = to_vector(hf.forward(ids)), b = to_vector(gg.forward(ids));
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  MESSAGE("max |logit diff| HF vs GGUF: ", m);
  // Same f32 weights; Q/K rows are un-permuted exactly, so only summation order could differ: 1e-4 of logits ~10.
  CHECK(m < 1e-4);
}
