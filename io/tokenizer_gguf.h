// Glue between the GGUF reader and the tokenizers: the `tokenizer.ggml.*` keys of a GGUF file
// (formats.md §4.6) as a GgufVocab, and a Tokenizer built from them.
//
//   auto tok = arq::io::load_tokenizer_gguf("stories260k.gguf");
#pragma once

#include <memory>
#include <string>

#include "io/gguf.h"
#include "io/tokenizer.h"

namespace arq::io {

// IoError naming the file and key when tokenizer.ggml.model or .tokens is missing.
GgufVocab gguf_vocab_from_metadata(const GgufMetadata& md);
std::unique_ptr<Tokenizer> load_tokenizer_gguf(const std::string& path);

}  // namespace arq::io
