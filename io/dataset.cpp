#include "io/dataset.h"

#include <simdjson.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>

#include "engine/error.h"

namespace arq::io {

namespace fs = std::filesystem;

uint64_t seeded_below(uint64_t& state, uint64_t n) {
  ARQ_ASSERT(n > 0, "seeded_below(0)");
  auto next = [&]() {  // SplitMix64
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  // Reject the top partial block so every residue is equally likely.
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  for (;;) {
    const uint64_t r = next();
    if (r < limit) return r % n;
  }
}

// ---- dataset string -------------------------------------------------------------------

std::vector<DatasetSource> parse_dataset_spec(std::string_view spec) {
  std::vector<DatasetSource> out;
  auto split = [](std::string_view s, char sep) {
    std::vector<std::string> parts;
    size_t start = 0;
    for (;;) {
      const size_t e = s.find(sep, start);
      parts.emplace_back(s.substr(start, e == std::string_view::npos ? std::string_view::npos : e - start));
      if (e == std::string_view::npos) break;
      start = e + 1;
    }
    return parts;
  };
  for (const std::string& item : split(spec, ',')) {
    if (item.empty()) continue;
    const std::vector<std::string> parts = split(item, ':');
    DatasetSource src;
    src.path = parts[0];
    ARQ_CHECK(!src.path.empty(), UsageError, "dataset \"", spec, "\": empty path in \"", item, "\"");
    for (size_t k = 1; k < parts.size(); ++k) {
      const std::string& opt = parts[k];
      const size_t eq = opt.find('=');
      const std::string key = opt.substr(0, eq);
      const std::string val = eq == std::string::npos ? "" : opt.substr(eq + 1);
      if (key == "num") {
        char* end = nullptr;
        const long long n = std::strtoll(val.c_str(), &end, 10);
        ARQ_CHECK(!val.empty() && *end == '\0' && n > 0, UsageError, "dataset \"", item, "\": num must be a positive integer, got \"",
                  val, "\"");
        src.num = n;
      } else if (key == "concat") {
        std::string v = val;
        std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        ARQ_CHECK(v.empty() || v == "true" || v == "false", UsageError, "dataset \"", item,
                  "\": concat must be true or false, got \"", val, "\"");
        src.concat = v != "false";
      } else if (key == "field") {
        ARQ_CHECK(!val.empty(), UsageError, "dataset \"", item, "\": field= needs a name");
        src.field = val;
      } else if (key == "split" || key == "apply_chat_template" || key == "apply_template" || key == "system_prompt") {
        throw UsageError(cat("dataset \"", item, "\": option '", key,
                             "' applies to Hugging Face hub datasets and chat templates, not to local files"));
      } else {
        throw UsageError(cat("dataset \"", item, "\": unknown option '", key, "' (known: num=K, concat=true, field=name)"));
      }
    }
    out.push_back(std::move(src));
  }
  ARQ_CHECK(!out.empty(), UsageError, "dataset string \"", spec, "\" names no source");
  return out;
}

// ---- reading documents ----------------------------------------------------------------

namespace {

std::string rstrip(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  return s;
}

bool blank(const std::string& line) {
  return std::all_of(line.begin(), line.end(), [](unsigned char c) { return std::isspace(c); });
}

std::string json_text(simdjson::dom::element e, const std::string& field, const std::string& where) {
  std::string_view s;
  if (e.get_string().get(s) == simdjson::SUCCESS) return std::string(s);
  simdjson::dom::object o;
  ARQ_CHECK(e.get_object().get(o) == simdjson::SUCCESS, IoError, where, ": expected an object or a string");
  simdjson::dom::element f;
  ARQ_CHECK(o[field].get(f) == simdjson::SUCCESS, IoError, where, ": no field \"", field, "\"");
  ARQ_CHECK(f.get_string().get(s) == simdjson::SUCCESS, IoError, where, ": field \"", field, "\" is not a string");
  return std::string(s);
}

}  // namespace

std::vector<std::string> read_documents(const DatasetSource& src, const std::string& default_field) {
  const std::string& path = src.path;
  ARQ_CHECK(fs::exists(path), IoError, "dataset file '", path, "' does not exist");
  ARQ_CHECK(fs::is_regular_file(path), IoError, "dataset path '", path, "' is not a regular file");
  std::ifstream f(path, std::ios::binary);
  ARQ_CHECK(f.good(), IoError, "dataset file '", path, "' cannot be opened");
  const std::string field = src.field.empty() ? default_field : src.field;
  const std::string ext = fs::path(path).extension().string();
  std::vector<std::string> docs;
  if (ext == ".jsonl") {
    simdjson::dom::parser parser;
    std::string line;
    size_t lineno = 0;
    while (std::getline(f, line)) {
      ++lineno;
      if (blank(line)) continue;
      simdjson::dom::element e;
      const std::string where = cat(path, ":", lineno);
      if (auto err = parser.parse(line).get(e); err != simdjson::SUCCESS)
        throw IoError(cat(where, ": malformed JSON (", simdjson::error_message(err), ")"));
      std::string t = rstrip(json_text(e, field, where));
      if (!t.empty()) docs.push_back(std::move(t));
    }
  } else if (ext == ".json") {
    std::ostringstream ss;
    ss << f.rdbuf();
    simdjson::dom::parser parser;
    simdjson::padded_string padded(ss.str());
    simdjson::dom::element doc;
    if (auto err = parser.parse(padded).get(doc); err != simdjson::SUCCESS)
      throw IoError(cat(path, ": malformed JSON (", simdjson::error_message(err), ")"));
    simdjson::dom::array arr;
    ARQ_CHECK(doc.get_array().get(arr) == simdjson::SUCCESS, IoError, path, ": expected a JSON array of documents");
    size_t k = 0;
    for (simdjson::dom::element e : arr) {
      std::string t = rstrip(json_text(e, field, cat(path, "[", k++, "]")));
      if (!t.empty()) docs.push_back(std::move(t));
    }
  } else {
    // Plain text: documents are separated by one or more blank lines.
    std::string line, cur;
    auto flush = [&]() {
      std::string t = rstrip(std::move(cur));
      if (!t.empty()) docs.push_back(std::move(t));
      cur.clear();
    };
    while (std::getline(f, line)) {
      if (blank(line)) {
        flush();
        continue;
      }
      if (!cur.empty()) cur.push_back('\n');
      cur += line;
    }
    flush();
  }
  return docs;
}

// ---- samples --------------------------------------------------------------------------

void loss_mask_for(const std::vector<int64_t>& ids, int32_t pad_id, std::vector<int64_t>& labels,
                   std::vector<uint8_t>& mask) {
  const size_t n = ids.size();
  labels = ids;
  mask.assign(n, 1);
  if (n == 0) return;
  if (pad_id >= 0) {
    for (size_t i = 0; i < n; ++i)
      if (ids[i] == pad_id) mask[i] = 0;
  } else {
    for (size_t i = n; i > 0 && ids[i - 1] == ids[n - 1]; --i) mask[i - 1] = 0;
  }
  mask[n - 1] = 0;
  for (size_t i = 0; i < n; ++i)
    if (mask[i] == 0) labels[i] = -100;
}

namespace {

// AutoRound's filter: long enough, and the last token not repeated more than seqlen/2 times.
bool keep_sample(const std::vector<int64_t>& ids, int64_t seqlen) {
  if (static_cast<int64_t>(ids.size()) < seqlen) return false;
  const int64_t last = ids[static_cast<size_t>(seqlen - 1)];
  const auto count = std::count(ids.begin(), ids.begin() + seqlen, last);
  return count <= seqlen / 2;
}

struct SourceSamples {
  std::string name;
  size_t n_docs = 0;
  std::vector<std::vector<int64_t>> samples;  // each [seqlen]
};

SourceSamples collect(const Tokenizer& tok, const DatasetSource& src, const CalibOptions& opt) {
  SourceSamples out;
  out.name = src.path;
  std::vector<std::string> docs = read_documents(src, opt.text_field);
  out.n_docs = docs.size();
  seeded_shuffle(docs, opt.seed);
  // No source contributes more than this, so stop tokenizing once it is reached.
  const size_t cap = static_cast<size_t>(std::max<int64_t>(opt.nsamples, src.num.value_or(0)));
  const size_t seqlen = static_cast<size_t>(opt.seqlen);
  const int32_t bos = tok.bos_id(), eos = tok.eos_id();
  std::vector<int64_t> buffer;  // concat: tokens waiting for a full chunk
  bool have_bos = false, have_eos = false;
  for (const std::string& d : docs) {
    if (out.samples.size() >= cap) break;
    std::vector<int32_t> ids32 = tok.encode(d);
    if (ids32.size() > seqlen) ids32.resize(seqlen);  // truncation=True, max_length=seqlen
    std::vector<int64_t> ids(ids32.begin(), ids32.end());
    if (!src.concat) {
      if (keep_sample(ids, opt.seqlen)) out.samples.push_back(std::move(ids));
      continue;
    }
    if (ids.empty()) continue;
    size_t b = 0, e = ids.size();
    if (bos >= 0 && ids[0] == bos) { ++b; have_bos = true; }
    if (e > b && eos >= 0 && ids[e - 1] == eos) { --e; have_eos = true; }
    buffer.insert(buffer.end(), ids.begin() + static_cast<std::ptrdiff_t>(b), ids.begin() + static_cast<std::ptrdiff_t>(e));
    const size_t extra = (have_bos ? 1 : 0) + (have_eos ? 1 : 0);
    ARQ_CHECK(seqlen > extra, UsageError, "dataset '", src.path, "': seqlen ", seqlen, " is too short for concat");
    const size_t body = seqlen - extra;
    size_t used = 0;
    while (buffer.size() - used >= body && out.samples.size() < cap) {
      std::vector<int64_t> chunk;
      chunk.reserve(seqlen);
      if (have_bos) chunk.push_back(bos);
      chunk.insert(chunk.end(), buffer.begin() + static_cast<std::ptrdiff_t>(used),
                   buffer.begin() + static_cast<std::ptrdiff_t>(used + body));
      if (have_eos) chunk.push_back(eos);
      used += body;
      if (keep_sample(chunk, opt.seqlen)) out.samples.push_back(std::move(chunk));
    }
    buffer.erase(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(used));
  }
  return out;
}

}  // namespace

CalibSamples build_calibration(const Tokenizer& tok, const CalibOptions& opt) {
  ARQ_CHECK(opt.nsamples > 0 && opt.seqlen > 0, UsageError, "calibration: nsamples (", opt.nsamples, ") and seqlen (",
            opt.seqlen, ") must be positive");
  const std::vector<DatasetSource> sources = parse_dataset_spec(opt.dataset);
  std::vector<SourceSamples> per;
  per.reserve(sources.size());
  for (const DatasetSource& s : sources) per.push_back(collect(tok, s, opt));

  // Smallest sources first, so that the ones capped by their size leave their share to the others.
  std::vector<size_t> order(per.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return per[a].samples.size() < per[b].samples.size(); });
  int64_t reserved = 0;
  size_t n_free = 0;
  for (const DatasetSource& s : sources) {
    if (s.num) reserved += *s.num;
    else ++n_free;
  }
  int64_t cnt = reserved > opt.nsamples ? 0 : reserved;
  std::vector<std::vector<int64_t>> all;
  for (size_t i : order) {
    const int64_t have = static_cast<int64_t>(per[i].samples.size());
    int64_t take;
    if (sources[i].num) {
      take = std::min(*sources[i].num, have);
    } else {
      take = std::max<int64_t>(0, (opt.nsamples - cnt) / static_cast<int64_t>(n_free));
      take = std::min(take, have);
      cnt += take;
      --n_free;
    }
    for (int64_t k = 0; k < take; ++k) all.push_back(std::move(per[i].samples[static_cast<size_t>(k)]));
  }
  if (per.size() > 1) seeded_shuffle(all, opt.seed);

  if (static_cast<int64_t>(all.size()) < opt.nsamples) {
    std::string detail;
    for (size_t i = 0; i < per.size(); ++i)
      detail += cat(i ? "; " : "", "'", per[i].name, "': ", per[i].n_docs, " documents -> ", per[i].samples.size(),
                    " samples", sources[i].concat ? " (concat)" : "");
    throw UsageError(cat("calibration data: found only ", all.size(), " samples of ", opt.seqlen,
                         " tokens, need nsamples = ", opt.nsamples, " (", detail,
                         "). Samples shorter than seqlen are dropped: lower --seqlen or --nsamples, add text, "
                         "or use :concat=true to pack short documents"));
  }

  CalibSamples out;
  out.nsamples = opt.nsamples;
  out.seqlen = opt.seqlen;
  const size_t n = static_cast<size_t>(opt.nsamples * opt.seqlen);
  out.input_ids.reserve(n);
  out.labels.reserve(n);
  out.loss_mask.reserve(n);
  std::vector<int64_t> labels;
  std::vector<uint8_t> mask;
  for (int64_t k = 0; k < opt.nsamples; ++k) {
    std::vector<int64_t>& s = all[static_cast<size_t>(k)];
    s.resize(static_cast<size_t>(opt.seqlen));
    loss_mask_for(s, tok.pad_id(), labels, mask);
    out.input_ids.insert(out.input_ids.end(), s.begin(), s.end());
    out.labels.insert(out.labels.end(), labels.begin(), labels.end());
    out.loss_mask.insert(out.loss_mask.end(), mask.begin(), mask.end());
  }
  return out;
}

Tensor CalibSamples::ids_tensor() const {
  Tensor t = Tensor::empty({nsamples, seqlen}, DType::i64);
  std::memcpy(t.data_ptr(), input_ids.data(), input_ids.size() * sizeof(int64_t));
  return t;
}

Tensor CalibSamples::mask_tensor() const {
  Tensor t = Tensor::empty({nsamples, seqlen}, DType::u8);
  std::memcpy(t.data_ptr(), loss_mask.data(), loss_mask.size());
  return t;
}

}  // namespace arq::io
