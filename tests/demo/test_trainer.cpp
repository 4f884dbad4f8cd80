// The demo's library parts: the corpus split, the sentencepiece trainer, the learning-rate
// schedule, the unigram baseline and the LM trainer (loss falls, runs are reproducible, and the
// training forward equals the evaluation forward).
#include <doctest/doctest.h>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/ops.h"
#include "io/corpus_fortunes.h"
#include "io/dataset.h"
#include "io/tokenizer_spm.h"
#include "models/family.h"
#include "models/train/spm_trainer.h"
#include "models/train/trainer.h"

using namespace arq;
namespace fs = std::filesystem;

namespace {

std::string temp_dir(const char* tag) {
  const fs::path p = fs::temp_directory_path() / cat("arq_demo_", tag, "_", ::getpid());
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

// A small spec with every linear dimension tiny, so a step takes milliseconds.
models::DecoderSpec micro_spec(const std::string& family) {
  models::DecoderSpec s = models::tiny_spec(family);
  s.vocab_size = 32;
  s.rope.max_position_embeddings = 64;
  s.validate();
  return s;
}

// A learnable stream: a fixed random permutation of 0..K−1 cycled, with a noise token now and
// then; the next token is predictable from the previous one except after noise.
std::vector<int32_t> cyclic_stream(int64_t n, int32_t vocab) {
  std::vector<int32_t> perm;
  for (int32_t i = 3; i < vocab; ++i) perm.push_back(i);   // 0..2 are special
  uint64_t st = 7;
  for (size_t i = perm.size(); i > 1; --i) std::swap(perm[i - 1], perm[io::seeded_below(st, i)]);
  std::vector<int32_t> out;
  for (int64_t i = 0; i < n; ++i) out.push_back(perm[static_cast<size_t>(i) % perm.size()]);
  return out;
}

}  // namespace

TEST_CASE("corpus: fortune records, dedup, every tenth held out") {
  const std::string text = "first\nline two\n%\n\n  second  \n%\nfirst\nline two\n%\n%\nthird\n";
  const std::vector<std::string> r = io::split_records(text);
  REQUIRE(r.size() == 4);
  CHECK(r[0] == "first\nline two");
  CHECK(r[1] == "  second");   // leading blank line dropped, indentation kept, tail trimmed
  CHECK(r[3] == "third");

  std::vector<std::string> many;
  for (int i = 0; i < 25; ++i) many.push_back(cat("record ", i));
  many.insert(many.begin() + 5, "record 2");   // a duplicate: dropped before the split
  const io::Corpus c = io::split_corpus(many, "test");
  REQUIRE(c.heldout.size() == 2);
  CHECK(c.heldout[0] == "record 9");
  CHECK(c.heldout[1] == "record 19");
  CHECK(c.train.size() == 23);
  CHECK(io::join_records({"a", "b"}) == "a\n\nb");

  // paragraphs when there is no `%` line, lines when there are fewer than 10 paragraphs
  CHECK(io::split_records("a\nb\n\nc\n").size() == 3);
  std::string paras;
  for (int i = 0; i < 12; ++i) paras += cat("p", i, " x\np", i, " y\n\n");
  CHECK(io::split_records(paras).size() == 12);
  CHECK_THROWS_AS(io::load_text_corpus("/nonexistent/corpus.txt"), IoError);
}

TEST_CASE("corpus: the fortunes package") {
  if (!fs::is_directory(io::kFortunesDir)) {
    MESSAGE("SKIP: ", io::kFortunesDir, " not installed (apt-get install fortunes)");
    return;
  }
  const io::Corpus c = io::load_fortunes_corpus();
  CHECK(c.train.size() > 1000);
  // a fixed tenth: train/heldout = 9/1 up to the rounding of the last group of ten
  CHECK(std::abs(static_cast<double>(c.train.size()) - 9.0 * static_cast<double>(c.heldout.size())) <= 9.0);
  for (const std::string& r : c.heldout) CHECK(r.find("\n%\n") == std::string::npos);
  CHECK_THROWS_AS(io::load_fortunes_corpus("/nonexistent/fortunes"), IoError);
}

TEST_CASE("spm trainer: deterministic, loadable, round-trips text") {
  std::vector<std::string> sentences;
  const char* words[] = {"the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "and", "runs", "away", "fast"};
  uint64_t st = 3;
  for (int i = 0; i < 400; ++i) {
    std::string s;
    for (int w = 0; w < 8; ++w) s += cat(w ? " " : "", words[io::seeded_below(st, 12)]);
    sentences.push_back(s);
  }
  const std::string a = models::train_spm_model(sentences, {.vocab_size = 64});
  const std::string b = models::train_spm_model(sentences, {.vocab_size = 64});
  CHECK(a == b);
  const std::string dir = temp_dir("spm");
  models::write_spm_model(a, dir + "/tokenizer.model");
  io::SpmTokenizer tok(dir + "/tokenizer.model");
  CHECK(tok.vocab_size() == 64);
  CHECK(tok.piece_to_id("<unk>") == 0);
  CHECK(tok.piece_to_id("<s>") == 1);
  CHECK(tok.piece_to_id("</s>") == 2);
  const std::vector<int32_t> ids = tok.encode("the lazy dog runs away", false);
  CHECK(ids.size() < 22);   // fewer pieces than characters: merges were learnt
  CHECK(tok.decode(ids) == "the lazy dog runs away");
  CHECK_THROWS_AS(models::train_spm_model({}, {}), UsageError);
  fs::remove_all(dir);
}

TEST_CASE("warm-up + cosine schedule") {
  const double peak = 1e-3;
  CHECK(models::warmup_cosine_lr(0, 100, 10, peak, 0.1) == doctest::Approx(1e-4));
  CHECK(models::warmup_cosine_lr(9, 100, 10, peak, 0.1) == doctest::Approx(peak));
  CHECK(models::warmup_cosine_lr(10, 100, 10, peak, 0.1) == doctest::Approx(peak));
  CHECK(models::warmup_cosine_lr(99, 100, 10, peak, 0.1) == doctest::Approx(1e-4));
  // halfway through the decay the cosine is at its midpoint: min + (peak − min)/2
  const double mid = models::warmup_cosine_lr(10 + 89 / 2, 100, 10, peak, 0.1);
  CHECK(mid == doctest::Approx(1e-4 + 0.5 * 9e-4 * (1 + std::cos(M_PI * 44.0 / 89.0))));
  double prev = peak;
  for (int64_t s = 10; s < 100; ++s) {
    const double lr = models::warmup_cosine_lr(s, 100, 10, peak, 0.1);
    CHECK(lr <= prev + 1e-18);
    prev = lr;
  }
}

TEST_CASE("unigram baseline against a hand count") {
  // train counts (+1): token0 3, token1 2, token2 1 of total 3 + 3 = 6
  const double ppl = models::unigram_perplexity({0, 0, 1}, {0, 1, 2}, 3);
  CHECK(ppl == doctest::Approx(std::exp(-(std::log(3.0 / 6) + std::log(2.0 / 6) + std::log(1.0 / 6)) / 3)));
}

TEST_CASE("demo spec: every linear dimension a multiple of 128") {
  for (const char* fam : {"llama", "mistral", "qwen2", "qwen3"}) {
    const models::DecoderSpec s = models::demo_spec(fam, 1024);
    for (int64_t d : {s.hidden_size, s.intermediate_size, s.q_dim(), s.kv_dim()}) CHECK(d % 128 == 0);
  }
  const models::DecoderSpec s = models::demo_spec("llama", 1024);
  // hand count: per layer 2·(256·256·2 + 256·128·2 + 3·256·768) = 2·786432 FLOP; head 2·1024·256;
  // attention 2·2·256·(256/2) per layer; training = 3 × forward.
  const double fwd = 4 * 2.0 * 786432 + 2.0 * 1024 * 256 + 4 * (4.0 * 256 * 128);
  CHECK(models::train_flops_per_token(s, 256) == doctest::Approx(3 * fwd));
  CHECK_THROWS_AS(models::demo_spec("gpt2", 1024), ConfigError);
}

TEST_CASE("trainer: the loss falls on a tiny corpus, deterministically") {
  const models::DecoderSpec spec = micro_spec("llama");
  const std::vector<int32_t> stream = cyclic_stream(2000, static_cast<int32_t>(spec.vocab_size));
  auto run = [&] {
    models::TrainableLM m(spec, {.seed = 5});
    return models::train_lm(m, stream, 1, {.steps = 30, .batch_size = 4, .seqlen = 16, .lr = 1e-2, .seed = 9}).losses;
  };
  const std::vector<double> a = run();
  REQUIRE(a.size() == 30);
  // starts near ln(V) (an untrained model is close to uniform) ...
  CHECK(a.front() == doctest::Approx(std::log(static_cast<double>(spec.vocab_size))).epsilon(0.1));
  // ... and the cycle is learnt: the mean of the last five steps is well below the first
  double tail = 0;
  for (size_t i = a.size() - 5; i < a.size(); ++i) tail += a[i] / 5;
  CHECK(tail < 0.5 * a.front());
  const std::vector<double> b = run();
  CHECK(a == b);   // same seed, same thread count: bit-identical
}

TEST_CASE("trainer: the training loss equals cross-entropy of the evaluation forward") {
  for (const char* fam : {"llama", "qwen2", "qwen3", "mistral"}) {
    CAPTURE(fam);
    const models::DecoderSpec spec = micro_spec(fam);
    models::TrainableLM m(spec, {.seed = 3});
    const std::vector<int32_t> stream = cyclic_stream(400, static_cast<int32_t>(spec.vocab_size));
    models::train_lm(m, stream, 1, {.steps = 3, .batch_size = 2, .seqlen = 12, .lr = 1e-2});
    // one batch, scored both ways
    Tensor in = Tensor::empty({2, 12}, DType::i64), tg = Tensor::empty({2, 12}, DType::i64);
    for (int64_t i = 0; i < 24; ++i) {
      in.data<int64_t>()[i] = i % 12 == 0 ? 1 : stream[static_cast<size_t>(i + 5 - 1)];
      tg.data<int64_t>()[i] = stream[static_cast<size_t>(i + 5)];
    }
    const double train_loss = m.loss(in, tg).value().item();
    const models::CausalLM lm = m.model();
    const Tensor logits = lm.forward(in);   // f32 [2, 12, V]
    double nll = 0;
    for (int64_t r = 0; r < 2; ++r)
      for (int64_t t = 0; t < 12; ++t) {
        double mx = -1e300, z = 0;
        for (int64_t v = 0; v < spec.vocab_size; ++v) mx = std::max(mx, logits.at({r, t, v}));
        for (int64_t v = 0; v < spec.vocab_size; ++v) z += std::exp(logits.at({r, t, v}) - mx);
        nll -= logits.at({r, t, tg.at({r, t}) < 0 ? 0 : static_cast<int64_t>(tg.at({r, t}))}) - mx - std::log(z);
      }
    // Both paths are f32 with the same ops; they differ only in summation order of the f32
    // softmax (V = 32 terms) and the final mean over 24 rows: a few ulp of the ~3.5 loss, so a
    // relative 1e-5 bound holds with ample margin.
    CHECK(train_loss == doctest::Approx(nll / 24).epsilon(1e-5));
  }
}
