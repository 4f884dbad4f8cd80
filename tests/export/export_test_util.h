// Helpers shared by the export tests (ggml blocks, GGUF writer, HF packing, export folders).
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "tests/shared_assets.h"
#include "tests/temp_dir.h"

namespace arq::test {

// The shared temp folder (tests/temp_dir.h) under the name the export tests use.
struct ExportTempDir : TempDir {
  ExportTempDir() : TempDir("export") {}
};

inline std::vector<uint8_t> read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

inline std::vector<float> read_f32_file(const std::string& path) {
  const std::vector<uint8_t> b = read_file_bytes(path);
  std::vector<float> v(b.size() / 4);
  std::memcpy(v.data(), b.data(), v.size() * 4);
  return v;
}

inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

}  // namespace arq::test
