// Sentencepiece `tokenizer.model` (Llama-1/2, Mistral, Mixtral, stories260k) through
// libsentencepiece, so normalization and merges are exactly the reference library's.
// Control tokens written in the text ("<s>", "</s>") are split out first when
// EncodeOptions::parse_special is set (as Hugging Face's LlamaTokenizer does); every other
// stretch of text is encoded by sentencepiece on its own.
//
//   SpmTokenizer tok("tokenizers/llama2.model");
//   tok.encode("Hello world", false);   // {15043, 3186}
#pragma once

#include <memory>
#include <string>

#include "io/tokenizer.h"

namespace sentencepiece { class SentencePieceProcessor; }

namespace arq::io {

class SpmTokenizer : public Tokenizer {
 public:
  explicit SpmTokenizer(const std::string& model_path);  // IoError when missing or unreadable
  ~SpmTokenizer() override;

  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const override;
  int64_t vocab_size() const override;
  std::string id_to_piece(int32_t id) const override;
  int32_t piece_to_id(std::string_view piece) const override;
  const char* kind() const override { return "sentencepiece"; }

  // Per-piece facts, for building a GgufVocab from a model (tests, GGUF export).
  float score(int32_t id) const;
  int32_t token_type(int32_t id) const;  // GGUF numbering: 1 normal 2 unknown 3 control 5 unused 6 byte

  // The model's NormalizerSpec flags (sentencepiece defaults: all true). A GGUF export writes
  // them as tokenizer.ggml.add_space_prefix / remove_extra_whitespaces so that an SPM-by-score
  // encoder reading the file reproduces this tokenizer (stories260k strips and collapses spaces).
  struct NormalizerFlags {
    std::string name;   // "identity", "nmt_nfkc", ...
    bool add_dummy_prefix = true;
    bool remove_extra_whitespaces = true;
    bool escape_whitespaces = true;
    // The compiled normalization rules (darts-clone trie + replacement strings); empty for
    // "identity". A GGUF export writes them as tokenizer.ggml.precompiled_charsmap.
    std::string precompiled_charsmap;
  };
  NormalizerFlags normalizer_flags() const;

 protected:
  void encode_text(std::string_view text, bool parse_special, std::vector<int32_t>& out) const override;

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  std::string path_;
  std::vector<std::pair<std::string, int32_t>> controls_;  // control pieces, longest first
};

}  // namespace arq::io
