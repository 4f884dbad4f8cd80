// Tokenizers: text <-> token ids, one interface over the three implementations:
//   - SpmTokenizer       sentencepiece `tokenizer.model` through libsentencepiece;
//   - BpeTokenizer       byte-level BPE from a Hugging Face `tokenizer.json` or from GGUF
//                        metadata (`tokenizer.ggml.model` = "gpt2");
//   - SpmScoreTokenizer  sentencepiece-style BPE-by-score from GGUF metadata
//                        (`tokenizer.ggml.model` = "llama"), no protobuf needed.
// BOS/EOS/PAD and whether BOS/EOS are added by default come from the model file and are
// overridden by `tokenizer_config.json` / `generation_config.json` next to it.
//
//   auto tok = arq::io::load_tokenizer("models/stories260k");   // folder, .json or .model
//   std::vector<int32_t> ids = tok->encode("Once upon a time");   // BOS per add_bos_token()
//   std::vector<int32_t> raw = tok->encode("Once upon a time", /*add_bos=*/false);
//   std::string text = tok->decode(raw);                          // "Once upon a time"
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace arq::io {

// Ids of the special tokens; -1 when the tokenizer has none.
struct SpecialTokens {
  int32_t bos = -1;
  int32_t eos = -1;
  int32_t pad = -1;
  int32_t unk = -1;
  std::vector<int32_t> eos_ids;  // every id that stops generation (generation_config may list several)
  bool add_bos = false;          // encode() prepends bos by default
  bool add_eos = false;          // encode() appends eos by default
};

struct EncodeOptions {
  std::optional<bool> add_bos;   // unset: the tokenizer's default (SpecialTokens::add_bos)
  std::optional<bool> add_eos;   // unset: the tokenizer's default
  bool parse_special = true;     // special tokens written in the text map to their ids (as HF does)
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  std::vector<int32_t> encode(std::string_view text, const EncodeOptions& opt = {}) const;
  std::vector<int32_t> encode(std::string_view text, bool add_bos) const;
  // Concatenated text of the pieces; with skip_special, control/special tokens are left out.
  virtual std::string decode(std::span<const int32_t> ids, bool skip_special = false) const = 0;

  virtual int64_t vocab_size() const = 0;
  // The piece as stored in the vocabulary (byte-level alphabet for BPE, "▁" for SPM);
  // an id out of range is an arq::Error.
  virtual std::string id_to_piece(int32_t id) const = 0;
  virtual int32_t piece_to_id(std::string_view piece) const = 0;  // -1 when absent
  virtual const char* kind() const = 0;  // "sentencepiece", "bpe", "spm-score"

  const SpecialTokens& special_tokens() const { return special_; }
  void set_special_tokens(SpecialTokens s) { special_ = std::move(s); }
  int32_t bos_id() const { return special_.bos; }
  int32_t eos_id() const { return special_.eos; }
  int32_t pad_id() const { return special_.pad; }
  int32_t unk_id() const { return special_.unk; }
  bool add_bos_token() const { return special_.add_bos; }
  bool add_eos_token() const { return special_.add_eos; }

 protected:
  // Ids for `text` without BOS/EOS.
  virtual void encode_text(std::string_view text, bool parse_special, std::vector<int32_t>& out) const = 0;

  SpecialTokens special_;
};

// Opens a tokenizer from a model folder (tokenizer.json preferred when it is byte-level BPE,
// else tokenizer.model), a tokenizer.json file or a tokenizer.model file. For a folder (or a
// file's folder) tokenizer_config.json and generation_config.json are applied when present.
// Missing files and unsupported tokenizer types are arq::Error subclasses naming the path.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

// Applies `tokenizer_config.json` (bos_token, eos_token, pad_token, unk_token, add_bos_token,
// add_eos_token) and `generation_config.json` (bos/eos/pad_token_id; eos may be a list) from
// `folder` to `tok`; absent files change nothing.
void apply_hf_token_config(Tokenizer& tok, const std::string& folder);

// The tokenizer part of GGUF metadata (formats.md §4.6, `tokenizer.ggml.*`). Filled by the
// GGUF reader; kept as a plain struct so tokenizers do not depend on the file format code.
struct GgufVocab {
  std::string model;                    // tokenizer.ggml.model: "llama" (SPM) or "gpt2" (BPE)
  std::string pre;                      // tokenizer.ggml.pre (BPE pre-tokenizer name)
  std::vector<std::string> tokens;      // [n_vocab]
  std::vector<float> scores;            // [n_vocab] or empty
  std::vector<int32_t> token_types;     // [n_vocab] or empty: 1 normal 2 unknown 3 control 4 user 5 unused 6 byte
  std::vector<std::string> merges;      // "left right", rank order (BPE)
  int32_t bos = -1, eos = -1, unk = -1, pad = -1, eot = -1;
  std::optional<bool> add_bos, add_eos, add_space_prefix;
  // tokenizer.ggml.remove_extra_whitespaces (sentencepiece's normalizer flag; llama.cpp's
  // converter writes it only for T5-style vocabularies, so SPM files usually lack it).
  std::optional<bool> remove_extra_whitespaces;
  // tokenizer.ggml.precompiled_charsmap (u8 array): sentencepiece's NormalizerSpec charsmap
  // (nmt_nfkc maps '\n' and '\t' to ' ', full-width forms to ASCII, ...). Empty for the
  // identity normalizer. llama.cpp applies it only to "t5" (unigram) vocabularies.
  std::string precompiled_charsmap;
};

std::unique_ptr<Tokenizer> tokenizer_from_gguf_vocab(const GgufVocab& vocab);

}  // namespace arq::io
