#include "io/bpe_pretokenize.h"

#include "engine/error.h"
#include "io/unicode.h"

namespace arq::io {

const char* PreTokenizer::gpt2_pattern() {
  return R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
}
const char* PreTokenizer::llama3_pattern() {
  return R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
}
const char* PreTokenizer::qwen2_pattern() {
  return R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
}

void PreTokenizer::add_split(CodepointRegex re, SplitBehavior behavior, bool invert) {
  steps_.push_back({Kind::split, std::move(re), behavior, invert});
}

void PreTokenizer::add_byte_level(bool add_prefix_space, bool use_regex) {
  if (add_prefix_space) steps_.push_back({Kind::prefix_space, {}});
  if (use_regex) add_split(CodepointRegex(gpt2_pattern()), SplitBehavior::isolated);
}

void PreTokenizer::add_digits(bool individual) {
  Step s{Kind::digits, {}};
  s.individual = individual;
  steps_.push_back(std::move(s));
}

PreTokenizer PreTokenizer::for_gguf_pre(std::string_view pre) {
  PreTokenizer p;
  auto add = [&](const char* pat) { p.add_split(CodepointRegex(pat), SplitBehavior::isolated); };
  if (pre == "llama-bpe" || pre == "llama3") {
    add(llama3_pattern());
  } else if (pre == "qwen2") {
    add(qwen2_pattern());
  } else if (pre == "deepseek-v3") {
    add(R"(\p{N}{1,3})");
    add("[一-龥぀-ゟ゠-ヿ]+");
    add(R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)");
  } else if (pre == "deepseek-llm") {
    add(R"([\r\n])");
    add("\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+");
    add("\\s?[!-/:-~！-／：-～‘-‟　-。]+");
    add(R"(\s+$)");
    add("[一-龥ࠀ-一가-퟿]+");
    add(R"(\p{N}+)");
  } else if (pre == "gpt-2" || pre == "gpt2" || pre == "default") {
    add(gpt2_pattern());
  } else {
    throw UnsupportedError(cat("tokenizer.ggml.pre \"", pre,
                               "\" is not supported; known: llama-bpe, qwen2, deepseek-v3, deepseek-llm, "
                               "gpt-2, default"));
  }
  return p;
}

namespace {

struct Seg {
  size_t b, e;
  bool match;
};

// Matches and gaps of `re` over `s`, in order, each non-empty.
std::vector<Seg> segments(const CodepointRegex& re, std::u32string_view s) {
  std::vector<Seg> out;
  size_t pos = 0, gap = 0;
  while (pos <= s.size()) {
    size_t b = 0, e = 0;
    if (!re.find(s, pos, b, e)) break;
    if (e == b) {  // an empty match splits nothing; step over one character
      pos = b + 1;
      continue;
    }
    if (b > gap) out.push_back({gap, b, false});
    out.push_back({b, e, true});
    pos = gap = e;
  }
  if (gap < s.size()) out.push_back({gap, s.size(), false});
  return out;
}

void split_piece(const CodepointRegex& re, SplitBehavior beh, bool invert, std::u32string_view s,
                 std::vector<std::u32string>& out) {
  std::vector<Seg> segs = segments(re, s);
  if (invert)
    for (Seg& g : segs) g.match = !g.match;
  std::vector<std::u32string> pieces;
  bool prev_match = false;
  bool pending_next = false;  // merged_with_next: a match waiting for the next piece
  for (const Seg& g : segs) {
    std::u32string_view t = s.substr(g.b, g.e - g.b);
    switch (beh) {
      case SplitBehavior::isolated: pieces.emplace_back(t); break;
      case SplitBehavior::removed:
        if (!g.match) pieces.emplace_back(t);
        break;
      case SplitBehavior::merged_with_previous:
        if (g.match && !pieces.empty() && !prev_match) pieces.back() += t;
        else pieces.emplace_back(t);
        break;
      case SplitBehavior::merged_with_next:
        if (pending_next) pieces.back() += t;
        else pieces.emplace_back(t);
        pending_next = g.match;
        break;
      case SplitBehavior::contiguous:
        if (g.match && prev_match) pieces.back() += t;
        else pieces.emplace_back(t);
        break;
    }
    prev_match = g.match;
  }
  for (auto& p : pieces) out.push_back(std::move(p));
}

void split_digits(bool individual, std::u32string_view s, std::vector<std::u32string>& out) {
  size_t i = 0;
  while (i < s.size()) {
    const bool dig = unicode::is_number(s[i]);
    size_t j = i + 1;
    if (!(dig && individual))
      while (j < s.size() && unicode::is_number(s[j]) == dig) ++j;
    out.emplace_back(s.substr(i, j - i));
    i = j;
  }
}

}  // namespace

std::vector<std::u32string> PreTokenizer::split(std::u32string_view text) const {
  std::vector<std::u32string> cur;
  if (text.empty()) return cur;
  cur.emplace_back(text);
  for (const Step& st : steps_) {
    std::vector<std::u32string> next;
    next.reserve(cur.size() * 2);
    for (const std::u32string& p : cur) {
      switch (st.kind) {
        case Kind::split: split_piece(st.re, st.behavior, st.invert, p, next); break;
        case Kind::digits: split_digits(st.individual, p, next); break;
        case Kind::prefix_space:
          next.push_back(!p.empty() && p[0] == U' ' ? p : U" " + p);
          break;
      }
    }
    cur = std::move(next);
  }
  return cur;
}

}  // namespace arq::io
