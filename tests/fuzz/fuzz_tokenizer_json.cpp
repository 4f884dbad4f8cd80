// libFuzzer target: tokenizer.json parsing (BpeTokenizer::from_json) on arbitrary bytes, then
// the tokenizer it builds (its own vocab, merges, added tokens and pre-tokenizer regexes) on a
// few fixed texts. Any input must give a working tokenizer or an arq::Error; every id encode
// returns must lie inside the vocabulary.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "engine/error.h"
#include "io/tokenizer_bpe.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::unique_ptr<arq::io::BpeTokenizer> tok;
  try {
    tok = arq::io::BpeTokenizer::from_json({reinterpret_cast<const char*>(data), size}, "fuzz");
  } catch (const arq::Error&) {
    return 0;
  }
  static constexpr std::string_view kTexts[] = {
      "Hello world 12345 <|endoftext|> <s>",
      "  tabs\tand\n\nnewlines  \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\xA4\x96 caf\xC3\xA9",
      "bad \xFF\xFE utf-8 \xC3",
  };
  for (const std::string_view text : kTexts) {
    try {
      const std::vector<int32_t> ids = tok->encode(text, false);
      for (const int32_t id : ids)
        if (id < 0 || id >= tok->vocab_size()) std::abort();   // encode made up an id
      (void)tok->decode(ids);
    } catch (const arq::Error&) {
      // e.g. a byte with no token in a vocabulary that lacks the byte alphabet
    }
  }
  return 0;
}
