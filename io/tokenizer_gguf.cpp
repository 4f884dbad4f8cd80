#include "io/tokenizer_gguf.h"

#include "engine/error.h"

namespace arq::io {

GgufVocab gguf_vocab_from_metadata(const GgufMetadata& md) {
  GgufVocab v;
  v.model = md.get_string("tokenizer.ggml.model");
  if (md.has("tokenizer.ggml.pre")) v.pre = md.get_string("tokenizer.ggml.pre");
  v.tokens = md.get_strings("tokenizer.ggml.tokens");
  if (md.has("tokenizer.ggml.scores")) {
    const auto& f = md.get_floats("tokenizer.ggml.scores");
    v.scores.assign(f.begin(), f.end());
  }
  if (md.has("tokenizer.ggml.token_type")) {
    const auto& t = md.get_ints("tokenizer.ggml.token_type");
    v.token_types.reserve(t.size());
    for (int64_t x : t) v.token_types.push_back(static_cast<int32_t>(x));
  }
  if (md.has("tokenizer.ggml.merges")) v.merges = md.get_strings("tokenizer.ggml.merges");
  auto id = [&](const char* key, int32_t& out) {
    if (md.has(key)) out = static_cast<int32_t>(md.get_i64(key));
  };
  id("tokenizer.ggml.bos_token_id", v.bos);
  id("tokenizer.ggml.eos_token_id", v.eos);
  id("tokenizer.ggml.unknown_token_id", v.unk);
  id("tokenizer.ggml.padding_token_id", v.pad);
  id("tokenizer.ggml.eot_token_id", v.eot);
  auto flag = [&](const char* key, std::optional<bool>& out) {
    if (md.has(key)) out = md.get_bool(key);
  };
  flag("tokenizer.ggml.add_bos_token", v.add_bos);
  flag("tokenizer.ggml.add_eos_token", v.add_eos);
  flag("tokenizer.ggml.add_space_prefix", v.add_space_prefix);
  flag("tokenizer.ggml.remove_extra_whitespaces", v.remove_extra_whitespaces);
  if (md.has("tokenizer.ggml.precompiled_charsmap")) {
    // A u8 (or i8, as llama.cpp also accepts) array of the raw NormalizerSpec bytes.
    const auto& b = md.get_ints("tokenizer.ggml.precompiled_charsmap");
    v.precompiled_charsmap.reserve(b.size());
    for (int64_t x : b) v.precompiled_charsmap.push_back(static_cast<char>(static_cast<uint8_t>(x)));
  }
  const int64_t n = static_cast<int64_t>(v.tokens.size());
  for (int32_t x : {v.bos, v.eos, v.unk, v.pad, v.eot})
    ARQ_CHECK(x < n, IoError, md.origin, ": special token id ", x, " is outside the vocabulary of ", n);
  return v;
}

std::unique_ptr<Tokenizer> load_tokenizer_gguf(const std::string& path) {
  GgufFile f = GgufFile::open(path);
  return tokenizer_from_gguf_vocab(gguf_vocab_from_metadata(f.metadata()));
}

}  // namespace arq::io
