// libFuzzer target: the GGUF parser (header, metadata, tensor infos) on arbitrary file bytes.
// Any input must give tensors that lie inside the file, or an arq::IoError.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "engine/error.h"
#include "io/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const arq::io::GgufHeader h = arq::io::parse_gguf(data, size, "fuzz");
    for (const auto& t : h.tensors)
      if (h.data_offset + t.offset + t.nbytes > size) std::abort();   // the parser let a bad range through
  } catch (const arq::IoError&) {
  }
  return 0;
}
