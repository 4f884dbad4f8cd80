// Helpers shared by the tokenizer and dataset tests.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace arq::io::test {

// $ARQ_SHARED_DIR/<rel>, or "" when the variable or the file is missing.
inline std::string shared_file(const std::string& rel) {
  const char* d = std::getenv("ARQ_SHARED_DIR");
  if (d == nullptr) return "";
  const std::filesystem::path p = std::filesystem::path(d) / rel;
  return std::filesystem::exists(p) ? p.string() : "";
}

inline std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A fresh empty folder under the system temp dir, removed on destruction.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& tag) {
    path = std::filesystem::temp_directory_path() /
           ("arq_" + tag + "_" + std::to_string(std::rand()) + "_" + std::to_string(reinterpret_cast<uintptr_t>(this)));
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string file(const std::string& name, const std::string& content) const {
    const auto p = path / name;
    std::ofstream(p, std::ios::binary) << content;
    return p.string();
  }
};

}  // namespace arq::io::test

#include <sentencepiece_trainer.h>

#include <mutex>

namespace arq::io::test {

// Simple English-like text from a fixed word list and a fixed LCG (no shared/ needed).
inline std::string generated_text(int n_sentences, uint32_t seed) {
  static const char* kWords[] = {"the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "big", "red",
                                 "ball", "little", "girl", "named", "Lily", "park", "one", "day", "she", "saw",
                                 "tree", "happy", "played", "with", "her", "friend", "Tom", "sun", "was", "very"};
  uint32_t s = seed;
  auto next = [&]() { s = s * 1664525u + 1013904223u; return s >> 8; };
  std::string out;
  for (int i = 0; i < n_sentences; ++i) {
    const int len = 4 + static_cast<int>(next() % 8);
    for (int k = 0; k < len; ++k) {
      if (k) out += ' ';
      out += kWords[next() % (sizeof(kWords) / sizeof(kWords[0]))];
    }
    out += (next() % 5 == 0) ? "!\n" : ".\n";
  }
  return out;
}

// A tiny sentencepiece BPE model (Llama-2 style: byte fallback, dummy prefix, identity
// normalizer, extra whitespace kept), trained once per process into the temp dir.
// `remove_extra_whitespaces`: the variant whose normalizer strips and collapses spaces, as
// stories260k's does (sentencepiece's default).
inline std::string tiny_spm_model(bool remove_extra_whitespaces = false) {
  static std::once_flag once[2];
  static std::string path[2];
  // Removes the training folder when the test process exits.
  static TempDir dir_holder("tiny_spm");
  const int k = remove_extra_whitespaces ? 1 : 0;
  std::call_once(once[k], [k] {
    const auto dir = dir_holder.path;
    const auto text = dir / "train.txt";
    if (!std::filesystem::exists(text)) std::ofstream(text) << generated_text(3000, 17);
    const std::string prefix = (dir / (k ? "tiny_rmws" : "tiny")).string();
    const auto st = sentencepiece::SentencePieceTrainer::Train(
        "--input=" + text.string() + " --model_prefix=" + prefix +
        " --vocab_size=400 --model_type=bpe --byte_fallback=true --character_coverage=1.0"
        " --normalization_rule_name=identity --remove_extra_whitespaces=" + (k ? "true" : "false") +
        " --add_dummy_prefix=true --bos_id=1 --eos_id=2 --unk_id=0 --pad_id=-1 --minloglevel=2");
    if (st.ok()) path[k] = prefix + ".model";
  });
  return path[k];
}

}  // namespace arq::io::test
