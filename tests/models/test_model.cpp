// Whole models of every family: save → reload gives identical logits, the KV-cache path
// agrees with the full forward, greedy/sampled generation is deterministic, perplexity follows
// the chunking protocol, and bad folders fail with errors naming the tensor or field.
#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "engine/ops.h"
#include "io/config.h"
#include "models/family.h"
#include "models/generate.h"
#include "models/loader.h"
#include "models/perplexity.h"
#include "models/random_model.h"

using namespace arq;
using namespace arq::models;
namespace fs = std::filesystem;

namespace {

// A fresh folder under the system temp dir, removed when the test ends.
struct TempDir {
  fs::path path;
  TempDir() {
    static std::atomic<int> n{0};
    path = fs::temp_directory_path() / cat("arq-models-", getpid(), "-", n++);
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string str() const { return path.string(); }
};

Tensor ids_tensor(const std::vector<double>& v) { return from_vector(v, {1, static_cast<int64_t>(v.size())}, DType::i64); }

double max_abs_diff(const Tensor& a, const Tensor& b) {
  std::vector<double> x = to_vector(a), y = to_vector(b);
  REQUIRE(x.size() == y.size());
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::fabs(x[i] - y[i]));
  return m;
}

void write_text(const fs::path& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary);
  f << s;
}

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void replace_in(const fs::path& p, const std::string& from, const std::string& to) {
  std::string s = read_text(p);
  const size_t at = s.find(from);
  REQUIRE_MESSAGE(at != std::string::npos, "'", from, "' not in ", p.string());
  s.replace(at, from.size(), to);
  write_text(p, s);
}

}  // namespace

TEST_CASE("every family: save, reload, identical logits; KV cache agrees with the full forward") {
  for (const Family& fam : families()) {
    SUBCASE(fam.model_type) {
      DecoderSpec spec = tiny_spec(fam.model_type);
      CausalLM lm = random_causal_lm(spec, {.seed = 21, .stddev = 0.1, .norm_jitter = 0.2});
      const std::vector<double> ids = {1, 17, 5, 90, 33, 2, 64, 8, 45, 12, 77};   // 11 > mistral's window 5
      Tensor full = lm.forward(ids_tensor(ids));   // [1, 11, V]
      REQUIRE(full.shape() == Shape{1, 11, spec.vocab_size});

      TempDir dir;
      save_pretrained(lm, dir.str());
      CHECK(fs::exists(dir.path / "config.json"));
      CHECK(fs::exists(dir.path / "model.safetensors"));
      CausalLM back = load_causal_lm(dir.str());
      CHECK(back.spec().model_type == spec.model_type);
      CHECK(back.spec().qkv_bias == spec.qkv_bias);
      CHECK(back.spec().qk_norm == spec.qk_norm);
      CHECK(back.spec().sliding_window == spec.sliding_window);
      CHECK(back.spec().tie_word_embeddings == spec.tie_word_embeddings);
      CHECK(back.spec().head_dim == spec.head_dim);
      // Same bytes, same graph: bit-identical.
      CHECK(max_abs_diff(back.forward(ids_tensor(ids)), full) == 0.0);

      // Prompt of 4, then one token at a time, then a chunk of 3 (cache across a window boundary).
      KvCache cache = lm.new_cache(1, 16);
      std::vector<Tensor> parts;
      parts.push_back(lm.forward(ids_tensor({ids.begin(), ids.begin() + 4}), cache));
      for (size_t t = 4; t < 8; ++t) parts.push_back(lm.forward(ids_tensor({ids[t]}), cache));
      parts.push_back(lm.forward(ids_tensor({ids.begin() + 8, ids.end()}), cache));
      CHECK(cache.length() == 11);
      Tensor cached = concat(parts, 1);
      // f32: the same products summed over different key counts/blockings; logits ~ O(1), 1e-5 is
      // ~100 ulps of slack for the softmax/matmul reassociation.
      CHECK(max_abs_diff(cached, full) < 1e-5);
    }
  }
}

TEST_CASE("bf16 storage and compute run and stay close to f32") {
  DecoderSpec spec = tiny_spec("llama");
  CausalLM f32 = random_causal_lm(spec, {.seed = 2, .stddev = 0.1});
  TempDir dir;
  save_pretrained(f32, dir.str(), {.dtype = DType::bf16});
  CHECK(io::decoder_config(io::load_config(dir.str())).torch_dtype == "bfloat16");
  CausalLM bf = load_causal_lm(dir.str());
  CHECK(bf.dtype() == DType::bf16);
  const std::vector<double> ids = {1, 4, 9, 16, 25, 36};
  // bf16 weights (8 bits of mantissa) and activations: logits within a few 1e-2 of f32.
  CHECK(max_abs_diff(bf.forward(ids_tensor(ids)), f32.forward(ids_tensor(ids))) < 5e-2);
  CausalLM bf_as_f32 = load_causal_lm(dir.str(), {.dtype = DType::f32});
  CHECK(bf_as_f32.dtype() == DType::f32);
}

TEST_CASE("generation: greedy equals argmax of the full forward; sampling is seeded") {
  DecoderSpec spec = tiny_spec("qwen3");
  CausalLM lm = random_causal_lm(spec, {.seed = 5, .stddev = 0.3});
  std::vector<int64_t> out = generate(lm, {1, 7}, {.max_new_tokens = 6});
  REQUIRE(out.size() == 6);
  // Replay without cache: each token is the argmax after the sequence so far.
  std::vector<double> seq = {1, 7};
  for (int64_t tok : out) {
    Tensor l = lm.forward(ids_tensor(seq));
    Tensor last = l.select(1, l.size(1) - 1);
    CHECK(static_cast<int64_t>(argmax(last, -1).item()) == tok);
    seq.push_back(static_cast<double>(tok));
  }
  GenerateOptions o{.max_new_tokens = 8, .sampling = {.temperature = 1.0, .top_p = 0.9, .seed = 42}};
  std::vector<int64_t> a = generate(lm, {1}, o), b = generate(lm, {1}, o);
  CHECK(a == b);
  o.sampling.seed = 43;
  std::vector<int64_t> c = generate(lm, {1}, o);
  o.sampling.seed = 44;
  std::vector<int64_t> d = generate(lm, {1}, o);
  CHECK((a != c || a != d));   // three seeds giving the same 8 tokens from a near-flat distribution: ~impossible
  // Stop ids end generation after the stop token.
  std::vector<int64_t> stopped = generate(lm, {1, 7}, {.max_new_tokens = 6, .stop_ids = {out[2]}});
  CHECK(stopped.size() == 3);
}

TEST_CASE("sampler: top-p keeps the nucleus only; temperature 0 is argmax") {
  const float logits[4] = {0.0f, 3.0f, 2.9f, -1.0f};
  Sampler greedy({});
  CHECK(greedy.sample(logits, 4) == 1);
  // p ≈ [.03, .50, .45, .01]: top_p 0.5 keeps {1} only, so every draw is 1.
  Sampler nucleus({.temperature = 1.0, .top_p = 0.5, .seed = 1});
  for (int i = 0; i < 50; ++i) CHECK(nucleus.sample(logits, 4) == 1);
  Sampler wide({.temperature = 1.0, .top_p = 1.0, .seed = 1});
  int ones = 0, twos = 0;
  for (int i = 0; i < 400; ++i) {
    const int64_t t = wide.sample(logits, 4);
    ones += t == 1;
    twos += t == 2;
  }
  CHECK(ones > 150);   // expected 200 ± 10
  CHECK(twos > 130);   // expected 181 ± 10
  CHECK_THROWS_AS(Sampler({.temperature = -1}), UsageError);
}

TEST_CASE("perplexity: chunking protocol and NLL against a direct computation") {
  DecoderSpec spec = tiny_spec("mistral");
  CausalLM lm = random_causal_lm(spec, {.seed = 8, .stddev = 0.2});
  std::vector<int32_t> ids;
  for (int i = 0; i < 23; ++i) ids.push_back((i * 37 + 11) % 90 + 3);
  // seqlen 8: chunks of 7 tokens: 7, 7, 7, 2 -> 23 scored tokens.
  PerplexityResult r = perplexity(lm, ids, {.seqlen = 8, .bos_id = 1, .keep_first_logits = true});
  CHECK(r.tokens == 23);
  CHECK(r.chunks == 4);
  REQUIRE(r.first_logits.shape() == Shape{8, spec.vocab_size});
  double nll = 0;
  for (int c = 0; c < 4; ++c) {
    std::vector<double> chunk = {1};
    for (int t = c * 7; t < std::min(23, c * 7 + 7); ++t) chunk.push_back(ids[t]);
    Tensor lp = log_softmax(lm.forward(ids_tensor(chunk)).to(DType::f64), -1);
    for (size_t t = 0; t + 1 < chunk.size(); ++t) nll -= lp.at({0, static_cast<int64_t>(t), static_cast<int64_t>(chunk[t + 1])});
  }
  CHECK(r.nll_sum == doctest::Approx(nll).epsilon(1e-9));
  CHECK(r.perplexity() == doctest::Approx(std::exp(nll / 23)).epsilon(1e-9));
  PerplexityResult two = perplexity(lm, ids, {.seqlen = 8, .max_chunks = 2, .bos_id = 1});
  CHECK(two.tokens == 14);
}

TEST_CASE("bad input: shapes that disagree, a missing layer, unsupported model_type and rope_scaling") {
  DecoderSpec spec = tiny_spec("llama");
  CausalLM lm = random_causal_lm(spec, {.seed = 1});
  TempDir dir;
  save_pretrained(lm, dir.str());
  const fs::path cfg = dir.path / "config.json";
  const std::string good = read_text(cfg);

  replace_in(cfg, "\"intermediate_size\": 56", "\"intermediate_size\": 60");
  const std::string want = "model.layers.0.mlp.gate_proj.weight' in " + dir.str() +
                           " has shape [56, 32], but the config implies [60, 32] (intermediate_size 60";
  CHECK_THROWS_WITH_AS(load_causal_lm(dir.str()), doctest::Contains(want.c_str()), ConfigError);
  write_text(cfg, good);

  replace_in(cfg, "\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3");
  CHECK_THROWS_WITH_AS(load_causal_lm(dir.str()), doctest::Contains("layer 2 is incomplete: tensor 'model.layers.2.input_layernorm.weight' is missing"),
                       ConfigError);
  write_text(cfg, good);

  replace_in(cfg, "\"num_key_value_heads\": 2", "\"num_key_value_heads\": 4");
  CHECK_THROWS_WITH_AS(load_causal_lm(dir.str()), doctest::Contains("model.layers.0.self_attn.k_proj.weight"), ConfigError);
  write_text(cfg, good);

  replace_in(cfg, "\"model_type\": \"llama\"", "\"model_type\": \"mixtral\"");
  CHECK_THROWS_WITH_AS(load_causal_lm(dir.str()), doctest::Contains("model_type 'mixtral' is not supported"), ConfigError);
  write_text(cfg, good);

  replace_in(cfg, "\"model_type\": \"llama\"", "\"model_type\": \"gpt2\"");
  CHECK_THROWS_WITH_AS(load_causal_lm(dir.str()), doctest::Contains("gpt2"), ConfigError);
  write_text(cfg, good);

  replace_in(cfg, "\"rope_theta\":", "\"rope_scaling\": {\"rope_type\": \"longrope\", \"factor\": 2.0, \"short_factor\": [1,1,1,1], \"long_factor\": [1,1,1,1]},\n  \"rope_theta\":");
  CHECK_THROWS_WITH_AS(load_causal_lm(dir.str()), doctest::Contains("rope_scaling.rope_type 'longrope'"), ConfigError);
  write_text(cfg, good);

  replace_in(cfg, "\"rope_theta\":", "\"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 2.0},\n  \"rope_theta\":");
  CHECK(load_causal_lm(dir.str()).spec().rope.scaling.rope_type == "linear");
  write_text(cfg, good);

  // A tensor missing from an otherwise complete file.
  auto src = random_weights(spec, {.seed = 1});
  src->erase("model.layers.1.mlp.down_proj.weight");
  CHECK_THROWS_WITH_AS(CausalLM(spec, src), doctest::Contains("'model.layers.1.mlp.down_proj.weight' is missing"), ConfigError);
  // Untied model without lm_head.
  REQUIRE(!spec.tie_word_embeddings);
  DecoderSpec tied = spec;
  tied.tie_word_embeddings = true;
  CHECK_THROWS_WITH_AS(CausalLM(spec, random_weights(tied, {.seed = 1})), doctest::Contains("'lm_head.weight' is missing"), ConfigError);
  CHECK_THROWS_WITH_AS(load_causal_lm((dir.path / "nope").string()), doctest::Contains("does not exist"), IoError);
}
