// Byte-level BPE on a tiny hand-made tokenizer.json (suite unit, no shared/ needed): merges by
// rank in both file forms, added tokens and their flags, the byte round trip, BOS from a
// TemplateProcessing post-processor and tokenizer_config.json, and bad input.
#include <doctest/doctest.h>

#include <random>

#include "engine/error.h"
#include "io/tokenizer.h"
#include "io/tokenizer_bpe.h"
#include "tokenizer_test_util.h"

using namespace arq::io;
using arq::io::test::TempDir;

namespace {

// JSON string literal for s (s is UTF-8; only quote, backslash and controls need escapes).
std::string jstr(const std::string& s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') { o += '\\'; o += static_cast<char>(c); }
    else if (c < 0x20) { char b[8]; std::snprintf(b, sizeof b, "\\u%04x", c); o += b; }
    else o += static_cast<char>(c);
  }
  return o + "\"";
}

// Vocabulary: ids 0..255 are the 256 single bytes (id = byte value), then merged pieces.
// Merges (rank order): "h e", "l l", "he ll", "hell o", "Ġ w", "l o".
std::string tiny_json(bool array_merges, const std::string& extra_added = "", const std::string& post = "null") {
  std::string vocab;
  for (int b = 0; b < 256; ++b) {
    const std::string piece = bpe_bytes_to_unicode(std::string(1, static_cast<char>(b)));
    vocab += jstr(piece) + ":" + std::to_string(b) + ",";
  }
  vocab += R"("he":256,"ll":257,"hell":258,"hello":259,"Ġw":260,"lo":261)";
  const char* pairs[][2] = {{"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {"Ġ", "w"}, {"l", "o"}};
  std::string merges;
  for (auto& p : pairs) {
    if (!merges.empty()) merges += ",";
    merges += array_merges ? "[" + jstr(p[0]) + "," + jstr(p[1]) + "]" : jstr(std::string(p[0]) + " " + p[1]);
  }
  return R"({"version":"1.0","added_tokens":[
      {"id":300,"content":"<|x|>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},
      {"id":301,"content":"<mask>","single_word":false,"lstrip":true,"rstrip":true,"normalized":false,"special":true},
      {"id":302,"content":"<|x|>y","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":false},
      {"id":303,"content":"<s>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true})" +
         extra_added + R"(],
    "normalizer":null,
    "pre_tokenizer":{"type":"Sequence","pretokenizers":[
      {"type":"Split","pattern":{"Regex":"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},"behavior":"Isolated","invert":false},
      {"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":false}]},
    "post_processor":)" + post + R"(,
    "decoder":{"type":"ByteLevel"},
    "model":{"type":"BPE","ignore_merges":false,"vocab":{)" +
         vocab + R"(},"merges":[)" + merges + "]}}";
}

using Ids = std::vector<int32_t>;

}  // namespace

TEST_CASE("bpe: byte-to-unicode table") {
  // formats.md §5.2: space -> U+0120, '\n' -> U+010A, '\t' -> U+0109, 0xAD -> U+0143, '!' itself.
  CHECK(bpe_bytes_to_unicode(" ") == "\xC4\xA0");
  CHECK(bpe_bytes_to_unicode("\n") == "\xC4\x8A");
  CHECK(bpe_bytes_to_unicode("\t") == "\xC4\x89");
  CHECK(bpe_bytes_to_unicode("\xAD") == "\xC5\x83");
  CHECK(bpe_bytes_to_unicode("!~") == "!~");
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  CHECK(bpe_unicode_to_bytes(bpe_bytes_to_unicode(all)) == all);
}

TEST_CASE("bpe: merges by rank, both merge forms") {
  for (bool arr : {false, true}) {
    CAPTURE(arr);
    auto tok = BpeTokenizer::from_json(tiny_json(arr), "tiny.json");
    CHECK(tok->vocab_size() == 304);
    // h e -> he (rank 0), l l -> ll (1), he ll -> hell (2), hell o -> hello (3).
    CHECK(tok->encode("hello", false) == Ids{259});
    // "llo": l l (rank 1) beats l o (rank 5) -> [ll, o].
    CHECK(tok->encode("llo", false) == Ids{257, 'o'});
    // "lll": the leftmost of two equal-rank pairs merges first -> [ll, l].
    CHECK(tok->encode("lll", false) == Ids{257, 'l'});
    // " w" is one pre-token; Ġ w merges.
    CHECK(tok->encode("hello world", false) == Ids{259, 260, 'o', 'r', 'l', 'd'});
    CHECK(tok->id_to_piece(260) == "\xC4\xA0w");
    CHECK(tok->piece_to_id("hello") == 259);
    CHECK(tok->piece_to_id("nope") == -1);
  }
}

TEST_CASE("bpe: added tokens, flags and parse_special") {
  auto tok = BpeTokenizer::from_json(tiny_json(false), "tiny.json");
  // Longest match first: "<|x|>y" (302) wins over "<|x|>" (300).
  CHECK(tok->encode("a<|x|>yb", false) == Ids{'a', 302, 'b'});
  CHECK(tok->encode("a<|x|>b", false) == Ids{'a', 300, 'b'});
  // <mask> has lstrip and rstrip: the spaces around it are swallowed.
  CHECK(tok->encode("a  <mask> b", false) == Ids{'a', 301, 'b'});
  // Without parse_special, special tokens are plain text; non-special ones still match.
  EncodeOptions plain;
  plain.parse_special = false;
  plain.add_bos = false;
  const Ids raw = tok->encode("<|x|>", plain);
  CHECK(raw.size() == 5);
  CHECK(tok->decode(raw) == "<|x|>");
  CHECK(tok->encode("<|x|>y", plain) == Ids{302});
  // decode: specials kept or skipped.
  CHECK(tok->decode(Ids{'a', 300, 'b'}) == "a<|x|>b");
  CHECK(tok->decode(Ids{'a', 300, 'b'}, true) == "ab");
  CHECK(tok->decode(Ids{'a', 302}, true) == "a<|x|>y");  // not special
  CHECK_THROWS_AS(tok->decode(Ids{400}), arq::Error);
}

TEST_CASE("bpe: decode(encode(x)) == x for arbitrary bytes") {
  auto tok = BpeTokenizer::from_json(tiny_json(true), "tiny.json");
  std::mt19937 rng(5);
  const std::string alphabet[] = {"h", "e", "l", "o", " ", "  ", "\n", "w", "'s", "1", "23", "\xC3\xA9", "\xE6\xB1\x89",
                                  "\xF0\x9F\x98\x80", "\xFF", "\xC3", "!", "\t", "<|x|>"};
  for (int t = 0; t < 300; ++t) {
    std::string s;
    const int n = static_cast<int>(rng() % 20);
    for (int k = 0; k < n; ++k) s += alphabet[rng() % std::size(alphabet)];
    const Ids ids = tok->encode(s, false);
    REQUIRE(tok->decode(ids) == s);
  }
}

TEST_CASE("bpe: BOS from TemplateProcessing and tokenizer_config.json") {
  const std::string post =
      R"({"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],
          "special_tokens":{"<s>":{"id":"<s>","ids":[303],"tokens":["<s>"]}}})";
  auto tok = BpeTokenizer::from_json(tiny_json(false, "", post), "tiny.json");
  CHECK(tok->bos_id() == 303);
  CHECK(tok->add_bos_token());
  CHECK(tok->encode("hello") == Ids{303, 259});
  CHECK(tok->encode("hello", false) == Ids{259});

  TempDir dir("bpe_cfg");
  dir.file("tokenizer.json", tiny_json(false));
  dir.file("tokenizer_config.json",
           R"({"add_bos_token": true, "bos_token": {"content": "<|x|>"}, "eos_token": "<s>", "pad_token": null})");
  dir.file("generation_config.json", R"({"eos_token_id": [303, 300]})");
  auto t2 = load_tokenizer(dir.path.string());
  CHECK(t2->bos_id() == 300);
  CHECK(t2->eos_id() == 303);
  CHECK(t2->special_tokens().eos_ids == Ids{303, 300});
  CHECK(t2->pad_id() == -1);
  CHECK(t2->encode("hello") == Ids{300, 259});
}

TEST_CASE("bpe: bad tokenizer.json is a clear arq::Error") {
  CHECK_THROWS_AS(BpeTokenizer::from_json("{not json", "bad.json"), arq::IoError);
  CHECK_THROWS_AS(BpeTokenizer::from_json("[]", "bad.json"), arq::IoError);
  try {
    BpeTokenizer::from_json(R"({"version":"1.0","added_tokens":[]})", "nomodel.json");
    FAIL("no exception");
  } catch (const arq::IoError& e) {
    CHECK(std::string(e.what()).find("nomodel.json") != std::string::npos);
    CHECK(std::string(e.what()).find("model") != std::string::npos);
  }
  try {
    BpeTokenizer::from_json(R"({"model":{"type":"WordPiece","vocab":{}}})", "wp.json");
    FAIL("no exception");
  } catch (const arq::UnsupportedError& e) {
    CHECK(std::string(e.what()).find("WordPiece") != std::string::npos);
  }
  CHECK_THROWS_AS(BpeTokenizer::from_json(R"({"model":{"type":"BPE","vocab":{"a":0},"merges":["ab"]},
      "decoder":{"type":"ByteLevel"}})", "m.json"), arq::IoError);
  CHECK_THROWS_AS(BpeTokenizer::from_json(R"({"model":{"type":"BPE","vocab":{"a":-1},"merges":[]}})", "m.json"),
                  arq::IoError);
  CHECK_THROWS_AS(BpeTokenizer::from_json(R"({"normalizer":{"type":"NFKD"},"model":{"type":"BPE","vocab":{},"merges":[]},
      "decoder":{"type":"ByteLevel"}})", "n.json"), arq::UnsupportedError);
  // Metaspace (sentencepiece-style tokenizer.json) is not byte-level.
  CHECK_THROWS_AS(BpeTokenizer::from_json(R"({"pre_tokenizer":{"type":"Metaspace"},"model":{"type":"BPE","vocab":{},"merges":[]}})",
                                          "ms.json"), arq::UnsupportedError);
  CHECK_THROWS_AS(BpeTokenizer::from_json_file("/nonexistent/tokenizer.json"), arq::IoError);
  CHECK_THROWS_AS(load_tokenizer("/nonexistent/folder"), arq::IoError);
  // Every truncation of a valid file fails cleanly (a poor man's fuzz run).
  const std::string good = tiny_json(false);
  for (size_t n = 0; n < good.size(); n += 97) {
    CAPTURE(n);
    CHECK_THROWS_AS(BpeTokenizer::from_json(good.substr(0, n), "cut.json"), arq::Error);
  }
}
