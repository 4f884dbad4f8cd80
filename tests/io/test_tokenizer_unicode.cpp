// Unicode tables, NFC, the code-point regex engine and the pre-tokenizer splits (suite unit,
// no shared/ needed). References: facts from the Unicode standard written out by hand, NFC
// results produced once by Python's unicodedata (Unicode 14.0.0), and splits derived by hand
// from the regex semantics (each derivation in a comment).
#include <doctest/doctest.h>

#include "engine/error.h"
#include "io/bpe_pretokenize.h"
#include "io/bpe_regex.h"
#include "io/unicode.h"

using namespace arq::io;
namespace uc = arq::io::unicode;

TEST_CASE("unicode: general categories and White_Space") {
  CHECK(uc::category(U'A') == uc::Gc::Lu);
  CHECK(uc::category(U'\u00E9') == uc::Gc::Ll);
  CHECK(uc::category(U'\u6C49') == uc::Gc::Lo);
  CHECK(uc::category(U'\u0663') == uc::Gc::Nd);   // ARABIC-INDIC DIGIT THREE
  CHECK(uc::category(U'\u00BD') == uc::Gc::No);   // ½
  CHECK(uc::category(U'\u20AC') == uc::Gc::Sc);   // €
  CHECK(uc::category(U'\u2014') == uc::Gc::Pd);   // —
  CHECK(uc::category(U'\u0301') == uc::Gc::Mn);
  CHECK(uc::category(U'\uE000') == uc::Gc::Co);
  CHECK(uc::category(U'\u0378') == uc::Gc::Cn);   // unassigned
  CHECK(uc::category(U'\U0001F600') == uc::Gc::So);  // 😀
  CHECK(uc::category(0x10FFFF) == uc::Gc::Cn);
  CHECK(uc::category(uc::kRawByteBase + 0xFF) == uc::Gc::Cn);
  CHECK(uc::is_whitespace(U' '));
  CHECK(uc::is_whitespace(U'\u3000'));
  CHECK(uc::is_whitespace(U'\u0085'));
  CHECK_FALSE(uc::is_whitespace(U'\u200B'));  // ZERO WIDTH SPACE is Cf, not White_Space
  CHECK_FALSE(uc::is_whitespace(U'\u001C'));  // Python's isspace says yes; White_Space says no
  CHECK(uc::combining_class(U'\u0301') == 230);
  CHECK(uc::combining_class(U'\u0323') == 220);
  CHECK(uc::combining_class(U'a') == 0);
  CHECK(std::string(uc::unicode_version()) == "14.0.0");
}

TEST_CASE("unicode: UTF-8 round trip keeps ill-formed bytes") {
  const std::string s = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80|\xFF\xC0\xAF\xED\xA0\x80\xE2\x82";
  const std::u32string cps = uc::utf8_decode(s);
  // a é € 😀 | then 0xFF, C0 AF (overlong), ED A0 80 (surrogate), E2 82 (truncated): raw bytes.
  REQUIRE(cps.size() == 5 + 1 + 2 + 3 + 2);
  CHECK(cps[1] == U'\u00E9');
  CHECK(cps[3] == U'\U0001F600');
  CHECK(cps[5] == uc::kRawByteBase + 0xFF);
  CHECK(uc::utf8_encode(cps) == s);
  CHECK(uc::utf8_len_at(s, 1) == 2);
  CHECK(uc::utf8_len_at(s, 6) == 4);   // 😀
  CHECK(uc::utf8_len_at(s, 5) == 1);   // a continuation byte alone
  CHECK(uc::utf8_len_at(s, 11) == 1);  // 0xFF
}

TEST_CASE("unicode: NFC") {
  // Hand-checked cases from UAX #15.
  CHECK(uc::nfc(U"A\u030A") == U"\u00C5");
  CHECK(uc::nfc(U"\u212B") == U"\u00C5");                 // singleton ANGSTROM SIGN
  CHECK(uc::nfc(U"\u1100\u1161\u11A8") == U"\uAC01");     // Hangul L V T
  CHECK(uc::nfc(U"\u0958") == U"\u0915\u093C");           // composition exclusion
  CHECK(uc::nfc(U"d\u0307\u0323") == U"\u1E0D\u0307");    // reordered by combining class
  CHECK(uc::nfc(U"\u0344") == U"\u0308\u0301");           // non-starter decomposition
  CHECK(uc::nfc(U"plain ascii") == U"plain ascii");
  CHECK(uc::nfc_utf8("e\xCC\x81") == "\xC3\xA9");
  // Random starter+mark sequences, expected values from Python 3.11 unicodedata.normalize('NFC').
  struct Case { std::u32string in, want; };
  const Case cases[] = {
    {U"\U000003B1\U0001D165\U00000307\U0000030A\U00001100\U00000327\U00000308\U0000093C", U"\U000003B1\U0001D165\U00000307\U0000030A\U00001100\U0000093C\U00000327\U00000308"},
    {U"\U00000075\U00000061\U0000093C\U00000327\U00000300", U"\U00000075\U000000E0\U0000093C\U00000327"},
    {U"\U00000041\U000003B1\U000005B4\U00000344", U"\U00000041\U000003B1\U000005B4\U00000308\U00000301"},
    {U"\U00000041\U0000006F\U00000308\U00000B3E\U00003099", U"\U00000041\U000000F6\U00000B3E\U00003099"},
    {U"\U0000017F\U0000212B", U"\U0000017F\U000000C5"},
    {U"\U00000061\U00000345\U00000327\U00000344", U"\U000000E4\U00000327\U00000301\U00000345"},
    {U"\U0000AC00\U000011A8\U00000300\U00000CC2", U"\U0000AC01\U00000300\U00000CC2"},
    {U"\U00000B47", U"\U00000B47"},
    {U"\U000000C5\U0000093C\U00000323\U00000915\U00003099\U00001100\U00000B3E", U"\U00001EA0\U0000093C\U0000030A\U00000915\U00003099\U00001100\U00000B3E"},
    {U"\U0000AC00\U00000345\U00000302\U000005B4\U00000061\U0000006F", U"\U0000AC00\U000005B4\U00000302\U00000345\U00000061\U0000006F"},
    {U"\U00000B47\U00000344\U00000302\U000011A8", U"\U00000B47\U00000308\U00000301\U00000302\U000011A8"},
    {U"\U0000AC00", U"\U0000AC00"},
    {U"\U00000075\U000000C5\U0000093C\U0000017F\U00000307", U"\U00000075\U000000C5\U0000093C\U00001E9B"},
    {U"\U00000065\U00000302\U00000B3E\U00000CC2", U"\U000000EA\U00000B3E\U00000CC2"},
    {U"\U00000065", U"\U00000065"},
    {U"\U00000915\U0000212B\U00000915", U"\U00000915\U000000C5\U00000915"},
    {U"\U000003B1\U0000093C\U00000344\U00000302\U0001D157", U"\U000003B1\U0000093C\U00000308\U00000301\U00000302\U0001D157"},
    {U"\U00000065\U00000300\U00001161\U00000308\U00000915\U000011A8\U00000300\U00000CD5", U"\U000000E8\U00001161\U00000308\U00000915\U000011A8\U00000300\U00000CD5"},
    {U"\U00000075\U0001D165\U00001100\U0000093C\U00000345", U"\U00000075\U0001D165\U00001100\U0000093C\U00000345"},
    {U"\U0000017F\U000011A8\U0000030A\U000005B4", U"\U0000017F\U000011A8\U000005B4\U0000030A"},
    {U"\U00000915\U0000030A\U000005B4\U00001E0D\U00000CC2\U0000093C\U00000CC2", U"\U00000915\U000005B4\U0000030A\U00001E0D\U00000CC2\U0000093C\U00000CC2"},
    {U"\U00000061\U00000301\U000011A8", U"\U000000E1\U000011A8"},
    {U"\U000000C5\U00000307\U00000300\U00000075\U0000093C\U0000030A\U00000300\U00000CC6\U00000323", U"\U000000C5\U00000307\U00000300\U0000016F\U0000093C\U00000300\U00000CC6\U00000323"},
    {U"\U0000006F\U00000308\U00000344\U00000CD5", U"\U000000F6\U00000308\U00000301\U00000CD5"},
    {U"\U00000B47\U00000CD5\U00000344", U"\U00000B47\U00000CD5\U00000308\U00000301"},
    {U"\U0001D157\U00003099\U00000B47\U0000212B\U00000323\U0000093C\U0000093C", U"\U0001D157\U00003099\U00000B47\U00001EA0\U0000093C\U0000093C\U0000030A"},
    {U"\U00000041\U00000344\U00000307\U0001D165", U"\U000000C4\U0001D165\U00000301\U00000307"},
    {U"\U00000065\U00000344\U00000CC2\U00000CC6", U"\U000000EB\U00000301\U00000CC2\U00000CC6"},
    {U"\U0001D157\U00000061\U00000CC2\U00000344\U000005B4", U"\U0001D157\U00000061\U00000CC2\U000005B4\U00000308\U00000301"},
    {U"\U00000061\U00000344\U0000017F\U00000345", U"\U000000E4\U00000301\U0000017F\U00000345"},
    {U"\U0001D157\U00000345\U00000307\U00000302", U"\U0001D157\U00000307\U00000302\U00000345"},
    {U"\U000003B1\U00000344\U00000327", U"\U000003B1\U00000327\U00000308\U00000301"},
    {U"\U0001D157\U00000B3E\U00003099\U0000AC00\U00000323\U00000344\U0001D157\U00000307\U00000345", U"\U0001D157\U00000B3E\U00003099\U0000AC00\U00000323\U00000308\U00000301\U0001D157\U00000307\U00000345"},
    {U"\U0000212B", U"\U000000C5"},
    {U"\U00000041\U00000300\U00000344\U00000301\U0001D157\U00000344\U00000307\U00000308\U00000915", U"\U000000C0\U00000308\U00000301\U00000301\U0001D157\U00000308\U00000301\U00000307\U00000308\U00000915"},
  };
  int i = 0;
  for (const Case& c : cases) {
    CAPTURE(i);
    CHECK(uc::nfc(c.in) == c.want);
    CHECK(uc::nfc(c.want) == c.want);  // NFC is idempotent
    ++i;
  }
}

namespace {
std::vector<std::u32string> find_all(const CodepointRegex& re, std::u32string_view s) {
  std::vector<std::u32string> out;
  size_t pos = 0, b = 0, e = 0;
  while (pos <= s.size() && re.find(s, pos, b, e)) {
    out.emplace_back(s.substr(b, e - b));
    pos = e > b ? e : b + 1;
  }
  return out;
}
using V = std::vector<std::u32string>;
}  // namespace

TEST_CASE("regex: engine basics") {
  CHECK(find_all(CodepointRegex(R"(\p{N}{1,3})"), U"ab1234x5") == V{U"123", U"4", U"5"});
  CHECK(find_all(CodepointRegex(R"(\p{L}+)"), U"héllo wörld 汉字") == V{U"héllo", U"wörld", U"汉字"});
  CHECK(find_all(CodepointRegex(R"([^\s\p{L}]+)"), U"a,b;; c") == V{U",", U";;"});
  // (?i:...) folds ASCII letters only inside the group.
  CHECK(find_all(CodepointRegex(R"((?i:'s|'ve)x)"), U"'Sx 'VEx 'sX") == V{U"'Sx", U"'VEx"});
  // Lookahead: \s+(?!\S) leaves the last space for the next word.
  CHECK(find_all(CodepointRegex(R"(\s+(?!\S))"), U"a   b") == V{U"  "});
  // Alternation is leftmost-first, not longest.
  CHECK(find_all(CodepointRegex("a|ab"), U"ab") == V{U"a"});
  // Lazy, possessive, atomic.
  CHECK(find_all(CodepointRegex("a+?"), U"aaa") == V{U"a", U"a", U"a"});
  CHECK(find_all(CodepointRegex("a++a"), U"aaa").empty());
  CHECK(find_all(CodepointRegex("(?>a+)b"), U"aab") == V{U"aab"});
  // Class with escapes and ranges (part of DeepSeek-V3's punctuation class).
  CHECK(find_all(CodepointRegex(R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+)"), U"x.net [a\\b") ==
        V{U".net", U"[a", U"\\b"});
  CHECK(find_all(CodepointRegex(R"(\s+$)"), U"ab  \ncd  ") == V{U"  ", U"  "});
  CHECK(find_all(CodepointRegex(R"(x{2}|\x{41}\u0042)"), U"xxxAB") == V{U"xx", U"AB"});
  CHECK(find_all(CodepointRegex::literal("a.b"), U"a.b axb") == V{U"a.b"});
}

TEST_CASE("regex: unsupported or broken patterns are IoErrors") {
  CHECK_THROWS_AS(CodepointRegex("(?<=a)b"), arq::IoError);
  CHECK_THROWS_AS(CodepointRegex("(a"), arq::IoError);
  CHECK_THROWS_AS(CodepointRegex("a)"), arq::IoError);
  CHECK_THROWS_AS(CodepointRegex("[abc"), arq::IoError);
  CHECK_THROWS_AS(CodepointRegex(R"(\p{Xyz})"), arq::IoError);
  CHECK_THROWS_AS(CodepointRegex(R"(\1)"), arq::IoError);
  CHECK_THROWS_AS(CodepointRegex("*a"), arq::IoError);
}

TEST_CASE("pre-tokenizer: Llama-3 and Qwen2 splits") {
  const PreTokenizer llama = PreTokenizer::for_gguf_pre("llama-bpe");
  // "Hello" [^\r\n\p{L}\p{N}]?\p{L}+; " world" the same with the optional space; "'s" the
  // contraction; " " before a digit: only \s+ matches; "123","45" \p{N}{1,3}; "\n\n" via
  // \s*[\r\n]+ (backtracking off the trailing spaces); of "  x" the first space by \s+(?!\S)
  // (the lookahead rejects taking both), then " x".
  CHECK(llama.split(U"Hello world's 12345 test\n\n  x") ==
        V{U"Hello", U" world", U"'s", U" ", U"123", U"45", U" test", U"\n\n", U" ", U" x"});
  // Case-insensitive contractions; punctuation run with its trailing newlines.
  CHECK(llama.split(U"I'VE done!!\n\nok") == V{U"I", U"'VE", U" done", U"!!\n\n", U"ok"});
  const PreTokenizer qwen = PreTokenizer::for_gguf_pre("qwen2");
  CHECK(qwen.split(U"x 2024") == V{U"x", U" ", U"2", U"0", U"2", U"4"});
  // DeepSeek-V3: digits first (1-3), then CJK runs, then the rest.
  const PreTokenizer ds = PreTokenizer::for_gguf_pre("deepseek-v3");
  CHECK(ds.split(U"ab12345汉字c") == V{U"ab", U"123", U"45", U"汉字", U"c"});
  CHECK_THROWS_AS(PreTokenizer::for_gguf_pre("no-such-pre"), arq::UnsupportedError);
  // Pieces always tile the input.
  const std::u32string text = U"  Tab\there\r\n¡Hola! 3.14159 — 😀😀 ok ";
  std::u32string joined;
  for (const auto& p : llama.split(text)) joined += p;
  CHECK(joined == text);
}

TEST_CASE("pre-tokenizer: split behaviours and Digits") {
  PreTokenizer removed;
  removed.add_split(CodepointRegex(" "), SplitBehavior::removed);
  CHECK(removed.split(U"a b  c") == V{U"a", U"b", U"c"});
  PreTokenizer prev;
  prev.add_split(CodepointRegex("-"), SplitBehavior::merged_with_previous);
  CHECK(prev.split(U"a-b-") == V{U"a-", U"b-"});
  PreTokenizer next;
  next.add_split(CodepointRegex("-"), SplitBehavior::merged_with_next);
  CHECK(next.split(U"a-b-c") == V{U"a", U"-b", U"-c"});
  PreTokenizer digits;
  digits.add_digits(true);
  CHECK(digits.split(U"ab12c") == V{U"ab", U"1", U"2", U"c"});
  PreTokenizer bl;
  bl.add_byte_level(true, true);
  CHECK(bl.split(U"hi there") == V{U" hi", U" there"});
}
