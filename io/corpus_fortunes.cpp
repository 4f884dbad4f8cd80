#include "io/corpus_fortunes.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_set>

#include "engine/error.h"

namespace arq::io {

namespace fs = std::filesystem;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  ARQ_CHECK(f.good(), IoError, "cannot read corpus file '", path, "'");
  std::stringstream ss;
  ss << f.rdbuf();
  ARQ_CHECK(!f.bad(), IoError, "error while reading corpus file '", path, "'");
  return ss.str();
}

bool is_blank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
}

// Trims trailing whitespace and leading blank lines; keeps indentation inside the record
// (poems and dialogues use it).
std::string tidy(std::string r) {
  while (!r.empty() && (r.back() == '\n' || r.back() == '\r' || r.back() == ' ' || r.back() == '\t')) r.pop_back();
  size_t start = 0;
  while (start < r.size()) {
    const size_t nl = r.find('\n', start);
    if (nl == std::string::npos || !is_blank(std::string_view(r).substr(start, nl - start))) break;
    start = nl + 1;
  }
  return r.substr(start);
}

// Lines of `text` without their '\n' (and a trailing '\r').
std::vector<std::string_view> lines_of(std::string_view text) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(pos, nl - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    out.push_back(line);
    pos = nl + 1;
  }
  return out;
}

// Records separated by lines for which `is_sep` holds.
template <class Sep>
std::vector<std::string> split_by(std::string_view text, Sep is_sep) {
  std::vector<std::string> out;
  std::string cur;
  auto flush = [&] {
    std::string r = tidy(std::move(cur));
    if (!r.empty()) out.push_back(std::move(r));
    cur.clear();
  };
  for (std::string_view line : lines_of(text)) {
    if (is_sep(line)) {
      flush();
      continue;
    }
    cur.append(line);
    cur.push_back('\n');
  }
  flush();
  return out;
}

}  // namespace

size_t Corpus::bytes() const {
  size_t n = 0;
  for (const auto& r : train) n += r.size();
  for (const auto& r : heldout) n += r.size();
  return n;
}

std::vector<std::string> read_fortune_file(const std::string& path) {
  const std::string text = read_file(path);
  return split_by(text, [](std::string_view l) { return l == "%"; });
}

std::vector<std::string> split_records(std::string_view text) {
  const std::vector<std::string_view> lines = lines_of(text);
  const bool fortune = std::any_of(lines.begin(), lines.end(), [](std::string_view l) { return l == "%"; });
  if (fortune) return split_by(text, [](std::string_view l) { return l == "%"; });
  std::vector<std::string> paras = split_by(text, is_blank);
  if (paras.size() >= 10) return paras;
  std::vector<std::string> out;
  for (std::string_view l : lines)
    if (!is_blank(l)) out.push_back(tidy(std::string(l)));
  return out;
}

Corpus split_corpus(std::vector<std::string> records, std::string origin) {
  Corpus c;
  c.origin = std::move(origin);
  std::unordered_set<std::string> seen;
  size_t kept = 0;
  for (std::string& r : records) {
    if (!seen.insert(r).second) continue;
    // A fixed tenth, spread over the whole corpus (every file contributes), not a random draw.
    if (kept % 10 == 9) c.heldout.push_back(std::move(r));
    else c.train.push_back(std::move(r));
    ++kept;
  }
  return c;
}

Corpus load_fortunes_corpus(const std::string& dir) {
  ARQ_CHECK(fs::is_directory(dir), IoError, "fortunes corpus folder '", dir,
            "' does not exist (install it with `apt-get install fortunes`, or give --corpus FILE)");
  std::vector<std::string> files;
  for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
    // Plain files only: `off/` is a folder, `*.u8` are symlinks to the same files, `*.dat` are
    // strfile indexes.
    if (!e.is_regular_file() || e.is_symlink()) continue;
    const std::string name = e.path().filename().string();
    if (name.find('.') != std::string::npos || name == "ascii-art") continue;
    files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  std::vector<std::string> records;
  for (const std::string& f : files) {
    std::vector<std::string> r = read_fortune_file(f);
    records.insert(records.end(), std::make_move_iterator(r.begin()), std::make_move_iterator(r.end()));
  }
  ARQ_CHECK(!records.empty(), IoError, "no fortune records found in '", dir, "' (", files.size(),
            " files; install `fortunes`, or give --corpus FILE)");
  return split_corpus(std::move(records), cat(dir, " (", files.size(), " files)"));
}

Corpus load_text_corpus(const std::string& path) {
  ARQ_CHECK(fs::is_regular_file(path), IoError, "--corpus: '", path, "' does not exist or is not a file");
  std::vector<std::string> records = split_records(read_file(path));
  ARQ_CHECK(records.size() >= 10, UsageError, "--corpus: '", path, "' holds ", records.size(),
            " records; at least 10 are needed (records are `%`-separated, else paragraphs, else lines)");
  return split_corpus(std::move(records), path);
}

std::string join_records(const std::vector<std::string>& records) {
  std::string out;
  for (size_t i = 0; i < records.size(); ++i) {
    if (i) out += "\n\n";
    out += records[i];
  }
  return out;
}

}  // namespace arq::io
