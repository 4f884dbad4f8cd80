// Training a sentencepiece tokenizer for the demo models, with libsentencepiece's own trainer,
// so the `tokenizer.model` it writes is an ordinary sentencepiece model that every loader
// (io::SpmTokenizer, transformers' LlamaTokenizer, llama.cpp's converter) reads.
//
// Deterministic: one trainer thread, no sentence sampling or shuffling, so the same sentences
// give the same file byte for byte. Ids follow the Llama convention: <unk> 0, <s> 1, </s> 2,
// no pad.
//
//   std::string proto = train_spm_model(records, {.vocab_size = 1024});
//   write_spm_model(proto, dir + "/tokenizer.model");
//   write_tokenizer_config(dir, 256);                  // tokenizer_config.json (LlamaTokenizer)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace arq::models {

struct SpmTrainOptions {
  int64_t vocab_size = 1024;
  std::string model_type = "bpe";       // bpe | unigram | char | word
  double character_coverage = 0.9995;   // rarer characters become <unk>
  int64_t max_sentence_length = 16384;  // bytes; longer records are cut (sentencepiece skips them otherwise)
  // Llama-2 style (what llama.cpp's SPM tokenizer can represent): no normalizer, <0xNN> byte
  // pieces for characters without a piece (needs vocab_size > 259), spaces kept as they are.
  // false: sentencepiece's defaults (nmt_nfkc, no byte fallback, extra spaces removed).
  bool llama_style = false;
};

// Trains on `sentences` (one record each; newlines and tabs become spaces, since sentencepiece
// normalizes them away anyway) and returns the serialized ModelProto. Error (naming the
// sentencepiece status) when training fails, e.g. when the text has too few distinct pieces for
// vocab_size.
std::string train_spm_model(const std::vector<std::string>& sentences, const SpmTrainOptions& options = {});

// Writes `proto` atomically to `path` (IoError naming it).
void write_spm_model(const std::string& proto, const std::string& path);

// tokenizer_config.json for a Llama-style sentencepiece tokenizer: BOS added, EOS not.
void write_tokenizer_config(const std::string& dir, int64_t model_max_length);

}  // namespace arq::models
