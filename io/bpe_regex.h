// A small backtracking regex engine over Unicode code points, for the pre-tokenizer patterns
// of Hugging Face tokenizer.json files (GPT-2, Llama-3, Qwen2, DeepSeek, ...).
//
// std::regex has no Unicode property classes and no lookahead, so the subset those patterns
// use is implemented here by hand, with Oniguruma's (Perl-style, leftmost-first, greedy)
// semantics: literals and escapes (\r \n \t \f \v \xHH \x{H..} \uHHHH), classes [...] with
// ranges and negation, \s \S \d \D \w \W, \p{..}/\P{..} for general categories (L, Lu, N, P,
// S, M, Z, C and their two-letter subcategories), `.`, ^ $ (line anchors, as in Oniguruma's
// Ruby syntax), \A \z, groups (...) (?:...) (?i:...), lookahead (?=...) (?!...), atomic
// groups (?>...), quantifiers ? * + {n} {n,} {n,m} with lazy (?) and possessive (+) forms.
// Case-insensitive matching folds ASCII letters plus U+017F (long s) and U+212A (Kelvin),
// the only non-ASCII simple folds onto ASCII letters.
// Anything else (backreferences, lookbehind, nested classes) is an IoError naming the pattern.
//
//   CodepointRegex re(R"(\p{N}{1,3})");
//   size_t b, e;
//   re.find(U"ab1234", 0, b, e);   // b = 2, e = 5
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace arq::io {

class CodepointRegex {
 public:
  CodepointRegex() = default;
  explicit CodepointRegex(std::string_view pattern);  // UTF-8 pattern text
  // A pattern that matches `literal` exactly (tokenizer.json `{"String": ...}` splits).
  static CodepointRegex literal(std::string_view literal);

  // Leftmost match starting at or after `from`; false when there is none.
  bool find(std::u32string_view text, size_t from, size_t& begin, size_t& end) const;
  const std::string& pattern() const { return pattern_; }

  enum class Op : uint8_t { chr, cls, any, split, jmp, match, look, atomic, bol, eol, bot, eot };
  struct Inst {
    Op op;
    bool flag = false;  // chr: case-insensitive; cls: case-insensitive; look: negative
    char32_t cp = 0;    // chr
    int32_t x = 0;      // split: preferred target; jmp target; cls index; look/atomic: continuation
    int32_t y = 0;      // split: second target
  };
  struct ClassItem {
    char32_t lo = 0, hi = 0;   // range, when mask == 0 && !space
    uint32_t mask = 0;         // general-category mask (\p{..}, \d, \w)
    bool space = false;        // White_Space (\s)
    bool neg = false;          // \P{..}, \S, \D, \W
  };
  struct ClassSet {
    std::vector<ClassItem> items;
    bool neg = false;
  };

 private:
  bool run(std::u32string_view text, int32_t pc, size_t pos, size_t& end, uint64_t& steps) const;
  bool class_matches(const ClassSet& c, char32_t cp, bool icase) const;

  std::string pattern_;
  std::vector<Inst> prog_;
  std::vector<ClassSet> classes_;
  friend class RegexCompiler;
};

}  // namespace arq::io
