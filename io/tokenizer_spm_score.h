// Sentencepiece-style BPE from a plain vocabulary (GGUF `tokenizer.ggml.model` = "llama":
// tokens, scores, token types), without libsentencepiece or the protobuf model.
// Encode (formats.md §5.1): control tokens written in the text are split out first (with
// EncodeOptions::parse_special); each other stretch gets a leading "▁" (add_space_prefix),
// spaces become "▁", user-defined pieces are atomic symbols, every other symbol is one
// character; the adjacent pair whose concatenation is a piece with the highest score merges
// first (leftmost on ties); UNUSED results are split back into their halves; a symbol that is
// not a piece becomes its UTF-8 bytes as <0xXX> pieces (or <unk> without byte pieces).
// With GgufVocab::remove_extra_whitespaces (GGUF `tokenizer.ggml.remove_extra_whitespaces`,
// absent in llama.cpp's SPM files, so off by default) each stretch first loses its leading and
// trailing spaces and every run of spaces becomes one, as sentencepiece's normalizer does.
// With GgufVocab::precompiled_charsmap (`tokenizer.ggml.precompiled_charsmap`, which ar-quant
// writes for sentencepiece models with a non-identity normalizer such as the default nmt_nfkc)
// the text is first normalized by those rules ('\n' -> ' ', full-width -> ASCII, control
// characters dropped) exactly as sentencepiece's Normalizer does, so the ids equal
// libsentencepiece's. Without it (llama.cpp's files) every character is kept as written.
//
//   auto tok = SpmScoreTokenizer::from_gguf_vocab(vocab);
//   tok->encode("Hello world", false);   // Llama-2: {15043, 3186}
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "io/tokenizer.h"

namespace arq::io {

class SpmScoreTokenizer : public Tokenizer {
 public:
  explicit SpmScoreTokenizer(const GgufVocab& vocab);
  static std::unique_ptr<SpmScoreTokenizer> from_gguf_vocab(const GgufVocab& v) {
    return std::make_unique<SpmScoreTokenizer>(v);
  }

  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const override;
  int64_t vocab_size() const override { return static_cast<int64_t>(tokens_.size()); }
  std::string id_to_piece(int32_t id) const override;
  int32_t piece_to_id(std::string_view piece) const override;
  const char* kind() const override { return "spm-score"; }

 protected:
  void encode_text(std::string_view text, bool parse_special, std::vector<int32_t>& out) const override;

 private:
  // One stretch without control tokens: normalize, then encode_symbols.
  void encode_segment(std::string_view text, std::vector<int32_t>& out) const;
  // sentencepiece's Normalizer::Normalize: charsmap rules, remove_extra_whitespaces, the "▁"
  // dummy prefix and spaces as "▁". Empty when nothing but removable spaces is left.
  std::string normalize(std::string_view text) const;
  // The normalized form of the longest prefix of text[i..] and how many bytes it consumed.
  std::pair<std::string_view, size_t> normalize_prefix(std::string_view text, size_t i) const;
  // Longest charsmap rule matching text[i..]: {byte length, offset of its replacement}; {0, 0} when none.
  std::pair<size_t, size_t> charsmap_match(std::string_view text, size_t i) const;
  void encode_symbols(const std::string& norm, std::vector<int32_t>& out) const;
  void emit_piece(const std::string& piece, std::vector<int32_t>& out) const;

  std::vector<std::string> tokens_;   // [n_vocab]
  std::vector<float> scores_;         // [n_vocab]
  std::vector<int32_t> types_;        // [n_vocab]
  std::unordered_map<std::string, int32_t> piece_id_;
  std::vector<std::pair<std::string, int32_t>> controls_;  // longest first
  std::vector<std::string> user_defined_;                  // longest first
  int32_t byte_id_[256];              // <0xXX> pieces, -1 when absent
  bool add_space_prefix_ = true;
  bool remove_extra_whitespaces_ = false;   // llama.cpp's SPM keeps every space
  // precompiled_charsmap, split: a darts-clone double array over UTF-8 bytes whose values are
  // offsets of NUL-terminated replacements in charsmap_text_. Both empty: identity.
  std::vector<uint32_t> charsmap_units_;
  std::string charsmap_text_;
};

}  // namespace arq::io
