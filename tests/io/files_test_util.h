// Helpers shared by the io file-format tests (safetensors, config, WeightStore, GGUF).
#pragma once

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "tests/shared_assets.h"

namespace arq::test {

// A fresh folder under the system temp dir, removed (with its contents) on destruction.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() / ("arq_iof_" + std::to_string(rd()) + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }
  std::string str() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void append_u64(std::string& s, uint64_t v) {
  for (int i = 0; i < 8; ++i) s += static_cast<char>((v >> (8 * i)) & 0xFF);
}
inline void append_u32(std::string& s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s += static_cast<char>((v >> (8 * i)) & 0xFF);
}

// A safetensors file from a header text and a data buffer (header length is the text size).
inline std::string safetensors_bytes(const std::string& header, const std::string& data) {
  std::string s;
  append_u64(s, header.size());
  return s + header + data;
}

// The message of the exception `fn` throws as type E; fails the test when it throws nothing.
template <class E, class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const E& e) {
    return e.what();
  }
  FAIL("expected an exception");
  return "";
}

// Builds GGUF bytes field by field (independently of the reader) for tests.
class GgufBuilder {
 public:
  explicit GgufBuilder(uint32_t version = 3, uint32_t alignment = 32) : version_(version), align_(alignment) {}
  void str(std::string& out, const std::string& s) {
    append_u64(out, s.size());
    out += s;
  }
  // Key + type + raw value bytes.
  void kv_raw(const std::string& key, uint32_t type, const std::string& value) {
    str(kv_, key);
    append_u32(kv_, type);
    kv_ += value;
    ++n_kv_;
  }
  void kv_u32(const std::string& key, uint32_t v) {
    std::string b;
    append_u32(b, v);
    kv_raw(key, 4, b);
  }
  void kv_string(const std::string& key, const std::string& v) {
    std::string b;
    str(b, v);
    kv_raw(key, 8, b);
  }
  // Tensor with data bytes; ne innermost first. Offsets are assigned in order, padded.
  void tensor(const std::string& name, const std::vector<uint64_t>& ne, uint32_t type, const std::string& bytes) {
    str(info_, name);
    append_u32(info_, static_cast<uint32_t>(ne.size()));
    for (const uint64_t d : ne) append_u64(info_, d);
    append_u32(info_, type);
    append_u64(info_, data_.size());
    data_ += bytes;
    while (data_.size() % align_) data_ += '\0';
    ++n_tensors_;
  }
  std::string bytes() const {
    std::string out = "GGUF";
    append_u32(out, version_);
    append_u64(out, n_tensors_);
    append_u64(out, n_kv_);
    out += kv_;
    out += info_;
    while (out.size() % align_) out += '\0';
    return out + data_;
  }
  // Offset where the tensor infos start (for truncation tests).
  size_t header_and_kv_size() const { return 24 + kv_.size(); }

 private:
  uint32_t version_;
  uint32_t align_;
  uint64_t n_kv_ = 0, n_tensors_ = 0;
  std::string kv_, info_, data_;
};

}  // namespace arq::test
