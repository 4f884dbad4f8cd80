// Byte-level BPE (GPT-2 family: Llama-3, Qwen2/2.5/3, Qwen2-VL, DeepSeek-V2/V3), loaded from a
// Hugging Face `tokenizer.json` or from GGUF metadata (`tokenizer.ggml.model` = "gpt2").
// Pipeline (formats.md §5.2): added tokens split out of the raw text (leftmost, longest first)
// -> NFC when the file asks for it -> pre-tokenizer regex splits -> bytes mapped to the GPT-2
// byte-to-unicode alphabet -> merges by rank (lowest first, leftmost on ties) -> ids.
// Decoding maps the pieces back to bytes; ill-formed UTF-8 in the input survives the round
// trip byte for byte (HF would replace it with U+FFFD).
//
//   auto tok = BpeTokenizer::from_json_file("tokenizers/qwen3/tokenizer.json");
//   tok->encode("Hello world", false);   // {9707, 1879}
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "io/bpe_pretokenize.h"
#include "io/tokenizer.h"

namespace arq::io {

// One `added_tokens` entry of tokenizer.json (GGUF: CONTROL = special, USER_DEFINED = not).
struct BpeAddedToken {
  int32_t id = -1;
  std::string content;       // raw text, not in the byte-level alphabet
  bool special = true;       // skipped by decode(skip_special); only split out with parse_special
  bool single_word = false;  // only when not touching a word character on either side
  bool lstrip = false;       // swallows the whitespace just before it
  bool rstrip = false;       // swallows the whitespace just after it
  bool normalized = false;   // recorded; matching is always done on the raw text
};

// Everything a byte-level BPE tokenizer is made of.
struct BpeVocab {
  std::vector<std::string> tokens;                          // [n_vocab] byte-level alphabet; "" = hole
  std::vector<std::pair<std::string, std::string>> merges;  // rank order
  std::vector<BpeAddedToken> added;
  PreTokenizer pre;
  bool nfc = false;            // normalizer NFC (Qwen2)
  bool ignore_merges = false;  // a pre-token that is already a vocab entry is emitted whole (Llama-3)
};

class BpeTokenizer : public Tokenizer {
 public:
  BpeTokenizer(BpeVocab vocab, std::string source);
  // tokenizer.json. Malformed JSON, a missing or non-BPE model, an unsupported normalizer or
  // pre-tokenizer are arq::Error subclasses naming the file.
  static std::unique_ptr<BpeTokenizer> from_json_file(const std::string& path);
  static std::unique_ptr<BpeTokenizer> from_json(std::string_view json, const std::string& source);
  static std::unique_ptr<BpeTokenizer> from_gguf_vocab(const GgufVocab& v);

  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const override;
  int64_t vocab_size() const override { return static_cast<int64_t>(id_to_token_.size()); }
  std::string id_to_piece(int32_t id) const override;
  int32_t piece_to_id(std::string_view piece) const override;
  const char* kind() const override { return "bpe"; }

  // Ids of one pre-token given as raw bytes (no added-token split, no normalization).
  void bpe_piece(std::string_view bytes, std::vector<int32_t>& out) const;

 protected:
  void encode_text(std::string_view text, bool parse_special, std::vector<int32_t>& out) const override;

 private:
  void encode_segment(std::string_view text, std::vector<int32_t>& out) const;

  std::string source_;
  std::vector<std::string> id_to_token_;                // [vocab_size]
  std::unordered_map<std::string, int32_t> token_to_id_;
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // (left<<32|right) -> (rank, merged)
  std::vector<BpeAddedToken> added_;                    // longest content first
  std::unordered_map<int32_t, size_t> added_by_id_;     // id -> index in added_
  std::vector<std::vector<uint32_t>> added_by_byte_;    // [256] first byte -> indices into added_, longest first
  int32_t byte_token_[256];                             // id of each single byte's token, -1 if none
  PreTokenizer pre_;
  bool nfc_ = false;
  bool ignore_merges_ = false;
};

// GPT-2 byte <-> unicode alphabet (formats.md §5.2).
std::string bpe_bytes_to_unicode(std::string_view bytes);
// Inverse; a code point outside the alphabet is kept as its UTF-8.
std::string bpe_unicode_to_bytes(std::string_view text);

}  // namespace arq::io
