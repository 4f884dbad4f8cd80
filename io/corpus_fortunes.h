// The demo corpus: English text from Debian's `fortunes` package (plain files of records
// separated by lines holding a single `%`), or any text file, split into a training part and
// a fixed held-out part for evaluation.
//
// Records are read file by file in name order, exact duplicates are dropped (the package repeats
// a few quotes across files; a duplicate in both parts would leak into the held-out score), and
// every tenth record (index % 10 == 9) is held out — the same split on every machine as long as
// the files are the same. The offensive set (`off/`, package fortunes-off) and the `ascii-art`
// file (pictures, not prose) are skipped.
//
//   Corpus c = load_fortunes_corpus();                    // /usr/share/games/fortunes
//   std::string train = join_records(c.train);            // records separated by blank lines
//   Corpus mine = load_text_corpus("my.txt");             // `%` records, else paragraphs, else lines
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace arq::io {

inline constexpr const char* kFortunesDir = "/usr/share/games/fortunes";

struct Corpus {
  std::string origin;                  // "/usr/share/games/fortunes (38 files)" or the file path
  std::vector<std::string> train;      // records, in corpus order
  std::vector<std::string> heldout;    // every tenth record
  size_t bytes() const;                // text bytes of both parts
};

// Records of one fortune file: text between `%` lines, trailing whitespace of each record
// trimmed, empty records dropped. IoError naming the path when it cannot be read.
std::vector<std::string> read_fortune_file(const std::string& path);

// Records of a text: `%`-separated when the text has a `%` line, else paragraphs (blank-line
// separated) when it has at least 10, else non-empty lines.
std::vector<std::string> split_records(std::string_view text);

// Drops exact duplicates (first one kept), then holds out index % 10 == 9.
Corpus split_corpus(std::vector<std::string> records, std::string origin);

// The fortunes package (see above). IoError naming the folder (and `apt-get install fortunes`)
// when it is missing or holds no records.
Corpus load_fortunes_corpus(const std::string& dir = kFortunesDir);

// Any text file (`--corpus FILE`). IoError naming the path when missing; UsageError when it
// yields fewer than 10 records (nothing could be held out).
Corpus load_text_corpus(const std::string& path);

// Records joined by "\n\n" (the text that is tokenized for training and evaluation).
std::string join_records(const std::vector<std::string>& records);

}  // namespace arq::io
