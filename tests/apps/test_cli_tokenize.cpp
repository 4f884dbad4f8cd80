// `ar-quant tokenize` as a subprocess: a byte-level BPE tokenizer trained here (so the test needs
// nothing from ../shared) must give the ids of an independent reference encoder written below,
// and decode must give back the input byte for byte; the real stories260k sentencepiece model
// (and its GGUF twin) when ../shared has them.
#include <doctest/doctest.h>

#include <algorithm>
#include <climits>
#include <map>
#include <set>

#include "tests/apps/cli_test_util.h"

using namespace arq::cli_test;

namespace {

// ---- a tiny BPE trainer and encoder, independent of io/ --------------------------------------

// UTF-8 of one code point (< 0x800 is all the byte-level alphabet needs).
std::string utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

// GPT-2's byte -> printable character table: printable Latin-1 bytes stand for themselves, the
// other 68 bytes take code points 256, 257, ... in byte order.
std::vector<std::string> byte_alphabet() {
  std::vector<std::string> a(256);
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    a[b] = utf8(printable ? b : next++);
  }
  return a;
}

using Word = std::vector<std::string>;   // symbols in the byte-level alphabet

Word to_symbols(const std::string& bytes, const std::vector<std::string>& alpha) {
  Word w;
  for (unsigned char c : bytes) w.push_back(alpha[c]);
  return w;
}

// Lowercase words separated by single spaces pre-tokenize as "w0", " w1", " w2", ... under the
// GPT-2 regex; the test texts for id comparison stay inside that subset.
std::vector<std::string> pre_tokens(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t i = 1; i <= text.size(); ++i) {
    if (i == text.size() || text[i] == ' ') {
      out.push_back(text.substr(start, i - start));
      start = i;
    }
  }
  return out;
}

struct TrainedBpe {
  std::vector<std::string> vocab;                        // id -> symbol
  std::vector<std::pair<std::string, std::string>> merges;  // rank order
  int32_t bos = -1, eos = -1;

  int32_t id(const std::string& sym) const {
    auto it = std::find(vocab.begin(), vocab.end(), sym);
    REQUIRE(it != vocab.end());
    return static_cast<int32_t>(it - vocab.begin());
  }

  // Reference encoder: in each pre-token merge the lowest-ranked adjacent pair (leftmost
  // first) until none is left.
  std::vector<int32_t> encode(const std::string& text) const {
    const auto alpha = byte_alphabet();
    std::map<std::pair<std::string, std::string>, size_t> rank;
    for (size_t r = 0; r < merges.size(); ++r) rank.emplace(merges[r], r);
    std::vector<int32_t> ids;
    for (const std::string& p : pre_tokens(text)) {
      Word w = to_symbols(p, alpha);
      for (;;) {
        size_t best = SIZE_MAX, at = 0;
        for (size_t i = 0; i + 1 < w.size(); ++i) {
          auto it = rank.find({w[i], w[i + 1]});
          if (it != rank.end() && it->second < best) {
            best = it->second;
            at = i;
          }
        }
        if (best == SIZE_MAX) break;
        w[at] += w[at + 1];
        w.erase(w.begin() + static_cast<std::ptrdiff_t>(at) + 1);
      }
      for (const auto& s : w) ids.push_back(id(s));
    }
    return ids;
  }
};

// Most frequent adjacent pair wins (ties: the smaller pair), `n_merges` times.
TrainedBpe train_bpe(const std::string& corpus, int n_merges) {
  const auto alpha = byte_alphabet();
  TrainedBpe t;
  t.vocab = alpha;   // id b = byte b
  std::map<std::string, int64_t> counts;
  for (const std::string& p : pre_tokens(corpus)) counts[p]++;
  std::vector<std::pair<Word, int64_t>> words;
  for (const auto& [p, c] : counts) words.emplace_back(to_symbols(p, alpha), c);
  for (int m = 0; m < n_merges; ++m) {
    std::map<std::pair<std::string, std::string>, int64_t> pairs;
    for (const auto& [w, c] : words)
      for (size_t i = 0; i + 1 < w.size(); ++i) pairs[{w[i], w[i + 1]}] += c;
    if (pairs.empty()) break;
    auto best = pairs.begin();
    for (auto it = pairs.begin(); it != pairs.end(); ++it)
      if (it->second > best->second) best = it;
    const auto [a, b] = best->first;
    t.merges.emplace_back(a, b);
    t.vocab.push_back(a + b);
    for (auto& [w, c] : words) {
      for (size_t i = 0; i + 1 < w.size();) {
        if (w[i] == a && w[i + 1] == b) {
          w[i] += w[i + 1];
          w.erase(w.begin() + static_cast<std::ptrdiff_t>(i) + 1);
        } else {
          ++i;
        }
      }
    }
  }
  t.bos = static_cast<int32_t>(t.vocab.size());
  t.eos = t.bos + 1;
  return t;
}

std::string json_str(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += c;   // the byte-level alphabet has no control characters
  }
  return o + "\"";
}

// A Hugging Face tokenizer.json for `t`: ByteLevel pre-tokenizer and decoder, "<s>"/"</s>" as
// special added tokens, a TemplateProcessing post-processor that adds both.
std::string tokenizer_json(const TrainedBpe& t) {
  auto added = [](int32_t id, const char* content) {
    return "{\"id\":" + std::to_string(id) + ",\"content\":\"" + content +
           "\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true}";
  };
  auto special = [](int32_t id, const char* content) {
    return std::string("\"") + content + "\":{\"id\":\"" + content + "\",\"ids\":[" + std::to_string(id) +
           "],\"tokens\":[\"" + content + "\"]}";
  };
  std::string j = "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":[" + added(t.bos, "<s>") +
                  "," + added(t.eos, "</s>") + "],\"normalizer\":null,";
  j += "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true},";
  j += "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
       "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"SpecialToken\":{\"id\":\"</s>\",\"type_id\":0}}],"
       "\"pair\":[{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"Sequence\":{\"id\":\"B\",\"type_id\":1}}],"
       "\"special_tokens\":{" + special(t.bos, "<s>") + "," + special(t.eos, "</s>") + "}},";
  j += "\"decoder\":{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true,\"use_regex\":true},";
  j += "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,\"continuing_subword_prefix\":null,"
       "\"end_of_word_suffix\":null,\"fuse_unk\":false,\"byte_fallback\":false,\"ignore_merges\":false,\"vocab\":{";
  for (size_t i = 0; i < t.vocab.size(); ++i) {
    if (i) j += ',';
    j += json_str(t.vocab[i]);
    j += ':';
    j += std::to_string(i);
  }
  j += "},\"merges\":[";
  for (size_t i = 0; i < t.merges.size(); ++i) {
    if (i) j += ',';
    j += json_str(t.merges[i].first + " " + t.merges[i].second);
  }
  j += "]}}";
  return j;
}

const char* kCorpus =
    "once upon a time there was a little robot named bolt and bolt liked to count the stars every night "
    "one evening a small bird landed on the arm of the robot and asked him why he counted the stars "
    "the robot said that numbers made him happy and the bird sang a song about the moon and the sea "
    "the little bird and the little robot counted the stars together every night after that";

}  // namespace

TEST_CASE("tokenize: a BPE tokenizer trained here gives the reference ids and round-trips") {
  const TrainedBpe bpe = train_bpe(kCorpus, 80);
  REQUIRE(bpe.merges.size() == 80);
  TempDir dir("tok_bpe");
  spit(dir.path / "tokenizer.json", tokenizer_json(bpe));

  SUBCASE("ids equal the reference encoder's, no BOS/EOS by default") {
    for (const char* text : {"once upon a time", "the little robot counted the stars",
                           "a bird named moon liked numbers", "zebra quilts vex", "the the the"}) {
      CAPTURE(text);
      const RunResult r = run_arq({"tokenize", "--model", dir.path.string()}, text);
      REQUIRE_MESSAGE(r.status == 0, r.err);
      CHECK(r.out.back() == '\n');
      CHECK(r.out.find("  ") == std::string::npos);   // single spaces between ids
      CHECK(parse_ids(r.out) == bpe.encode(text));
    }
    // The learned merges must actually fire: a frequent word is one token.
    CHECK(parse_ids(run_arq({"tokenize", "--model", dir.path.string()}, " robot").out) ==
          std::vector<int32_t>{bpe.id(byte_alphabet()[' '] + "robot")});
  }

  SUBCASE("--add_special adds BOS and EOS as the post-processor says; <s> in the text is its id") {
    const std::string text = "the stars";
    const std::vector<int32_t> plain = bpe.encode(text);
    std::vector<int32_t> with = {bpe.bos};
    with.insert(with.end(), plain.begin(), plain.end());
    with.push_back(bpe.eos);
    CHECK(parse_ids(run_arq({"tokenize", "--model", dir.path.string(), "--add_special"}, text).out) == with);
    const auto ids = parse_ids(run_arq({"tokenize", "--model", dir.path.string()}, "the<s>stars").out);
    CHECK(std::count(ids.begin(), ids.end(), bpe.bos) == 1);
    // --split_special: the same text as plain bytes, so no special id.
    const auto split = parse_ids(run_arq({"tokenize", "--model", dir.path.string(), "--split_special"}, "the<s>stars").out);
    CHECK(std::count(split.begin(), split.end(), bpe.bos) == 0);
  }

  SUBCASE("decode(encode(x)) == x byte for byte, the tokenizer.json file path works too") {
    const std::string model = (dir.path / "tokenizer.json").string();
    for (const std::string& text : {std::string("Hello, World!\n\tTabs  and   runs of spaces\n\n"),
                                   std::string("日本語のテキスト and emoji 🤖🚀 and café (NFC) vs cafe\xCC\x81"),
                                   std::string("code: for (int i = 0; i < 10; ++i) { x[i] = 12345678; }"),
                                   std::string("special <s> inside </s> text"), std::string("bad utf-8 \xFF\xFE end"),
                                   std::string(""), std::string(" ")}) {
      CAPTURE(text);
      const RunResult enc = run_arq({"tokenize", "--model", model}, text);
      REQUIRE_MESSAGE(enc.status == 0, enc.err);
      const RunResult dec = run_arq({"tokenize", "--model", model, "--decode"}, enc.out);
      REQUIRE_MESSAGE(dec.status == 0, dec.err);
      CHECK(dec.out == text);
    }
  }

  SUBCASE("--jsonl: one JSON string a line in, one line of ids out, and back") {
    const RunResult enc = run_arq({"tokenize", "--model", dir.path.string(), "--jsonl"},
                                  "\"once upon a time\"\n\"the stars\\n\\u00e9\"\n");
    REQUIRE_MESSAGE(enc.status == 0, enc.err);
    std::istringstream lines(enc.out);
    std::string l1, l2;
    std::getline(lines, l1);
    std::getline(lines, l2);
    CHECK(parse_ids(l1) == bpe.encode("once upon a time"));
    const RunResult dec = run_arq({"tokenize", "--model", dir.path.string(), "--jsonl", "--decode"}, enc.out);
    REQUIRE_MESSAGE(dec.status == 0, dec.err);
    CHECK(dec.out == "\"once upon a time\"\n\"the stars\\n\xC3\xA9\"\n");
  }

  SUBCASE("bad input is a clear error") {
    RunResult r = run_arq({"tokenize", "--model", dir.path.string(), "--decode"}, "1 2 99999");
    CHECK(r.status == 2);
    CHECK(r.err.find("99999") != std::string::npos);
    CHECK(r.err.find("outside the vocabulary") != std::string::npos);
    r = run_arq({"tokenize", "--model", dir.path.string(), "--decode"}, "1 two");
    CHECK(r.status == 2);
    CHECK(r.err.find("'two'") != std::string::npos);
    r = run_arq({"tokenize", "--model", (dir.path / "missing").string()}, "x");
    CHECK(r.status == 1);
    CHECK(r.err.find("missing") != std::string::npos);
    r = run_arq({"tokenize"}, "x");
    CHECK(r.status == 2);
    CHECK(r.err.find("--model") != std::string::npos);
  }
}

TEST_CASE("tokenize: stories260k sentencepiece folder and its GGUF twin") {
  const std::string folder = shared_path("models/stories260k");
  const std::string gguf = shared_path("models/stories260k.gguf");
  if (folder.empty() || !fs::exists(fs::path(folder) / "tokenizer.model")) {
    MESSAGE("skipped: $ARQ_SHARED_DIR/models/stories260k/tokenizer.model is absent");
    return;
  }
  // Text sentencepiece normalizes to itself (single spaces, no leading/trailing space), so the
  // decode is the input exactly.
  const std::string text = "Once upon a time, there was a little girl named Lily. She loved to play outside.";
  const RunResult enc = run_arq({"tokenize", "--model", folder}, text);
  REQUIRE_MESSAGE(enc.status == 0, enc.err);
  const auto ids = parse_ids(enc.out);
  REQUIRE(ids.size() > 5);
  CHECK(ids.size() < text.size());   // merges happened
  CHECK(std::find(ids.begin(), ids.end(), 1) == ids.end());   // no BOS without --add_special
  CHECK(run_arq({"tokenize", "--model", folder, "--decode"}, enc.out).out == text);

  const auto with = parse_ids(run_arq({"tokenize", "--model", folder, "--add_special"}, text).out);
  REQUIRE(!with.empty());
  CHECK(with.front() == 1);   // BOS = 1 in stories260k's tokenizer
  CHECK(std::vector<int32_t>(with.begin() + 1, with.begin() + 1 + static_cast<std::ptrdiff_t>(ids.size())) == ids);

  if (gguf.empty()) {
    MESSAGE("skipped the GGUF half: $ARQ_SHARED_DIR/models/stories260k.gguf is absent");
    return;
  }
  // Two independent loaders (libsentencepiece vs. the GGUF score-based encoder) agree.
  const RunResult g = run_arq({"tokenize", "--model", gguf}, text);
  REQUIRE_MESSAGE(g.status == 0, g.err);
  CHECK(parse_ids(g.out) == ids);
  CHECK(run_arq({"tokenize", "--model", gguf, "--decode"}, g.out).out == text);
}
