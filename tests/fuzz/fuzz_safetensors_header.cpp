// libFuzzer target: the safetensors header parser on arbitrary file bytes. Any input must give
// either a header whose every tensor lies inside the buffer, or an arq::IoError.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "engine/error.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const arq::io::StHeader h = arq::io::parse_safetensors_header(data, size, "fuzz");
    for (const auto& t : h.tensors) {
      if (t.begin > t.end || h.data_start + t.end > size) std::abort();   // the parser let a bad range through
      size_t numel = 1;
      for (const int64_t d : t.shape) numel *= static_cast<size_t>(d);   // the parser checked overflow
      if (t.nbytes() != numel * arq::io::st_dtype_size(t.dtype)) std::abort();
    }
  } catch (const arq::IoError&) {
  }
  return 0;
}
