// Helpers for the CLI tests: run the built ar-quant as a subprocess (path in $ARQ_BIN, set by
// tests/apps/meson.build) with a given stdin, capture stdout/stderr/exit status; temp folders.
#pragma once

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

extern char** environ;

namespace arq::cli_test {

namespace fs = std::filesystem;

inline std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline void spit(const fs::path& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary);
  f << s;
  if (!f) throw std::runtime_error("cannot write " + p.string());
}

// $ARQ_SHARED_DIR/<rel>, or "" when the variable or the file is missing.
inline std::string shared_path(const std::string& rel) {
  const char* d = std::getenv("ARQ_SHARED_DIR");
  if (d == nullptr) return "";
  const fs::path p = fs::path(d) / rel;
  return fs::exists(p) ? p.string() : "";
}

// A fresh empty folder, removed on destruction.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& tag) {
    static std::atomic<int> counter{0};
    path = fs::temp_directory_path() / ("arq_cli_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

struct RunResult {
  int status = -1;   // exit code; 128 + signal when killed by one
  std::string out, err;
};

inline std::string arq_bin() {
  const char* b = std::getenv("ARQ_BIN");
  if (b == nullptr || !fs::exists(b)) throw std::runtime_error("ARQ_BIN is not set to the built ar-quant");
  return b;
}

// Runs `ar-quant args...` with `input` on stdin. Files, not pipes, carry the three streams, so
// no deadlock is possible whatever the sizes.
inline RunResult run_arq(const std::vector<std::string>& args, const std::string& input = "") {
  TempDir io("io");
  const std::string in = io / "stdin", out = io / "stdout", err = io / "stderr";
  spit(in, input);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, in.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const std::string bin = arq_bin();
  std::vector<std::string> argv_s{bin};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, bin.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw std::runtime_error("posix_spawn failed for " + bin);
  int ws = 0;
  while (waitpid(pid, &ws, 0) < 0) {
  }
  RunResult r;
  r.status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

// "1 2 3\n" -> {1, 2, 3}
inline std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  std::istringstream in(s);
  long long v = 0;
  while (in >> v) ids.push_back(static_cast<int32_t>(v));
  return ids;
}

inline std::string join_ids(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? " " : "") + std::to_string(ids[i]);
  return s;
}

// The line of `text` that contains `needle`, or "".
inline std::string line_with(const std::string& text, const std::string& needle) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (line.find(needle) != std::string::npos) return line;
  return "";
}

}  // namespace arq::cli_test
