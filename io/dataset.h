// Calibration / evaluation text -> `nsamples x seqlen` token ids plus a loss mask, following
// AutoRound's rules (spec/autoround.md §1.3).
//
// Dataset string: sources separated by commas, each `path[:option]...`:
//   - a text file: documents separated by blank lines;
//   - `*.jsonl`: one JSON object per line, text in field `text` (or `field=...`/CalibOptions);
//   - `*.json`: an array of strings or of objects with that field;
//   options: `num=K` (take exactly K samples from this source), `concat=true` (pack documents
//   into seqlen chunks), `field=name`. Hub-only options (`split=`, `apply_chat_template`,
//   `system_prompt=`) are refused with a UsageError.
// Per source: documents shuffled (seed), tokenized (the tokenizer's own BOS/EOS, truncated to
// seqlen), optionally packed, then filtered: a sample is kept only if it has >= seqlen tokens
// and its last token (within the first seqlen) occurs at most seqlen/2 times there.
// Several sources: sorted by size; `num=` sources give exactly K; the others share the rest
// equally, capped by their size; the union is shuffled (seed). The first nsamples are returned.
// Too few samples is a UsageError that says how many were found.
//
//   CalibOptions o{.dataset = "calib.txt,extra.jsonl:num=8", .nsamples = 32, .seqlen = 256};
//   CalibSamples s = build_calibration(*tok, o);
//   Tensor ids = s.ids_tensor();      // i64 [32, 256]
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/tensor.h"
#include "io/tokenizer.h"

namespace arq::io {

struct DatasetSource {
  std::string path;
  std::optional<int64_t> num;  // num=K
  bool concat = false;         // concat=true
  std::string field;           // text field for .json/.jsonl; "" = CalibOptions::text_field
};

// Parses "a.txt,b.jsonl:num=10:concat=true"; UsageError for an empty spec or a bad option.
std::vector<DatasetSource> parse_dataset_spec(std::string_view spec);

// The documents of one source, in file order. IoError naming the path when it does not
// exist, and naming the line for malformed JSON or a missing/non-string field.
std::vector<std::string> read_documents(const DatasetSource& src, const std::string& default_field = "text");

struct CalibOptions {
  std::string dataset;          // the dataset string above
  int64_t nsamples = 128;
  int64_t seqlen = 2048;
  uint64_t seed = 42;
  std::string text_field = "text";
};

struct CalibSamples {
  int64_t nsamples = 0;
  int64_t seqlen = 0;
  std::vector<int64_t> input_ids;  // [nsamples, seqlen]
  // AutoRound's label copy: input_ids with -100 at the positions the loss ignores (pad tokens
  // if the tokenizer has a pad id, else the trailing run of the last token; always the last
  // position of every sample).
  std::vector<int64_t> labels;     // [nsamples, seqlen]
  std::vector<uint8_t> loss_mask;  // [nsamples, seqlen] 1 = counts in the loss, 0 = ignored

  Tensor ids_tensor() const;       // i64 [nsamples, seqlen], CPU
  Tensor mask_tensor() const;      // u8  [nsamples, seqlen], CPU
};

CalibSamples build_calibration(const Tokenizer& tok, const CalibOptions& opt);

// The label/mask rule above for one sample (exposed for tests and evaluation code).
void loss_mask_for(const std::vector<int64_t>& ids, int32_t pad_id, std::vector<int64_t>& labels,
                   std::vector<uint8_t>& mask);

// Deterministic Fisher–Yates shuffle (SplitMix64 + rejection sampling, so the order is the
// same on every platform and compiler; it does not reproduce Python's or HF datasets' order).
template <class T>
void seeded_shuffle(std::vector<T>& v, uint64_t seed);
uint64_t seeded_below(uint64_t& state, uint64_t n);  // uniform in [0, n), advances state

template <class T>
void seeded_shuffle(std::vector<T>& v, uint64_t seed) {
  uint64_t state = seed;
  for (size_t i = v.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(seeded_below(state, i));
    std::swap(v[i - 1], v[j]);
  }
}

}  // namespace arq::io
