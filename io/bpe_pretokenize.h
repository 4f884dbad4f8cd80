// Pre-tokenization for byte-level BPE: the chain of splits a tokenizer.json `pre_tokenizer`
// describes (Split with a regex or a string, ByteLevel's GPT-2 regex, Digits), applied in
// sequence, each step splitting the pieces produced by the one before.
//
//   PreTokenizer pre = PreTokenizer::for_gguf_pre("llama-bpe");
//   auto pieces = pre.split(U"Hello world's");   // {"Hello", " world", "'s"}
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "io/bpe_regex.h"

namespace arq::io {

// How a Split step treats the matched text (HF `SplitDelimiterBehavior`).
enum class SplitBehavior { isolated, removed, merged_with_previous, merged_with_next, contiguous };

class PreTokenizer {
 public:
  // Split on `re`; with invert, the non-matching gaps play the role of the matches.
  void add_split(CodepointRegex re, SplitBehavior behavior, bool invert = false);
  // ByteLevel: optionally a space in front of each piece that lacks one, then (use_regex)
  // the GPT-2 split.
  void add_byte_level(bool add_prefix_space, bool use_regex);
  // Digits: every digit alone (individual) or runs of digits.
  void add_digits(bool individual);

  // The regexes llama.cpp knows by `tokenizer.ggml.pre` name (formats.md §5.2): "llama-bpe"
  // (also "llama3"), "qwen2", "deepseek-v3", "deepseek-llm", "gpt-2" / "default".
  static PreTokenizer for_gguf_pre(std::string_view pre);

  std::vector<std::u32string> split(std::u32string_view text) const;
  bool empty() const { return steps_.empty(); }

  static const char* gpt2_pattern();
  static const char* llama3_pattern();
  static const char* qwen2_pattern();

 private:
  enum class Kind { split, prefix_space, digits };
  struct Step {
    Kind kind;
    CodepointRegex re;
    SplitBehavior behavior = SplitBehavior::isolated;
    bool invert = false;
    bool individual = false;
  };
  std::vector<Step> steps_;
};

}  // namespace arq::io
