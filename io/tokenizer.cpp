#include "io/json_util.h"
#include "io/tokenizer.h"

#include <simdjson.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/error.h"
#include "io/tokenizer_bpe.h"
#include "io/tokenizer_spm.h"
#include "io/tokenizer_spm_score.h"

namespace arq::io {

namespace fs = std::filesystem;

std::vector<int32_t> Tokenizer::encode(std::string_view text, const EncodeOptions& opt) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 2);
  if (opt.add_bos.value_or(special_.add_bos) && special_.bos >= 0) ids.push_back(special_.bos);
  encode_text(text, opt.parse_special, ids);
  if (opt.add_eos.value_or(special_.add_eos) && special_.eos >= 0) ids.push_back(special_.eos);
  return ids;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos) const {
  EncodeOptions opt;
  opt.add_bos = add_bos;
  return encode(text, opt);
}

namespace {


// The On-Demand API is used on purpose: HF config files may hold integers beyond 64 bits
// (Llama-3's "model_max_length": 1000000000000000019884624838656), which the DOM parser
// rejects; On-Demand only parses the values we ask for.
namespace od = simdjson::ondemand;

// A token given as "text", {"content": "text", ...} or null.
enum class TokField { other, null, text };
TokField token_field(od::value v, std::string& text) {
  od::json_type t;
  if (v.type().get(t) != simdjson::SUCCESS) return TokField::other;
  std::string_view s;
  if (t == od::json_type::null) return TokField::null;
  if (t == od::json_type::string && v.get_string().get(s) == simdjson::SUCCESS) {
    text = std::string(s);
    return TokField::text;
  }
  od::object o;
  if (t == od::json_type::object && v.get_object().get(o) == simdjson::SUCCESS &&
      o["content"].get_string().get(s) == simdjson::SUCCESS) {
    text = std::string(s);
    return TokField::text;
  }
  return TokField::other;
}

// Calls fn(key, value) for every top-level field of the JSON object in file `p`; false when
// the file does not exist.
template <class Fn>
bool for_each_field(const fs::path& p, Fn&& fn) {
  if (!fs::is_regular_file(p)) return false;
  const simdjson::padded_string padded(read_text_file(p));
  od::parser parser;
  od::document doc;
  od::object obj;
  auto fail = [&](simdjson::error_code err) {
    throw IoError(cat(p.string(), ": malformed JSON (", simdjson::error_message(err), ")"));
  };
  if (auto err = parser.iterate(padded).get(doc); err != simdjson::SUCCESS) fail(err);
  if (auto err = doc.get_object().get(obj); err != simdjson::SUCCESS) fail(err);
  for (auto field : obj) {
    std::string_view key;
    od::value val;
    if (auto err = field.unescaped_key().get(key); err != simdjson::SUCCESS) fail(err);
    if (auto err = field.value().get(val); err != simdjson::SUCCESS) fail(err);
    fn(key, val);
  }
  return true;
}

}  // namespace

void apply_hf_token_config(Tokenizer& tok, const std::string& folder) {
  SpecialTokens sp = tok.special_tokens();
  bool eos_from_config = false;
  const fs::path tc = fs::path(folder) / "tokenizer_config.json";
  for_each_field(tc, [&](std::string_view key, od::value v) {
    int32_t* target = nullptr;
    if (key == "bos_token") target = &sp.bos;
    else if (key == "eos_token") target = &sp.eos;
    else if (key == "pad_token") target = &sp.pad;
    else if (key == "unk_token") target = &sp.unk;
    bool b = false;
    if (target != nullptr) {
      std::string text;
      switch (token_field(v, text)) {
        case TokField::other: break;
        case TokField::null: *target = -1; break;
        case TokField::text: {
          const int32_t found = tok.piece_to_id(text);
          ARQ_CHECK(found >= 0, ConfigError, tc.string(), ": ", key, " \"", text, "\" is not in the vocabulary");
          *target = found;
          if (key == "eos_token") eos_from_config = true;
          break;
        }
      }
    } else if (key == "add_bos_token" && v.get_bool().get(b) == simdjson::SUCCESS) {
      sp.add_bos = b;
    } else if (key == "add_eos_token" && v.get_bool().get(b) == simdjson::SUCCESS) {
      sp.add_eos = b;
    }
  });
  const fs::path gc = fs::path(folder) / "generation_config.json";
  for_each_field(gc, [&](std::string_view key, od::value v) {
    int64_t x = 0;
    if (key == "bos_token_id" && sp.bos < 0 && v.get_int64().get(x) == simdjson::SUCCESS) {
      sp.bos = static_cast<int32_t>(x);
    } else if (key == "pad_token_id" && sp.pad < 0 && v.get_int64().get(x) == simdjson::SUCCESS) {
      sp.pad = static_cast<int32_t>(x);
    } else if (key == "eos_token_id") {
      std::vector<int32_t> eos_list;
      od::array arr;
      if (v.get_int64().get(x) == simdjson::SUCCESS) {
        eos_list.push_back(static_cast<int32_t>(x));
      } else if (v.get_array().get(arr) == simdjson::SUCCESS) {
        for (auto e : arr)
          if (e.get_int64().get(x) == simdjson::SUCCESS) eos_list.push_back(static_cast<int32_t>(x));
      }
      if (!eos_list.empty()) {
        if (!eos_from_config) sp.eos = eos_list[0];
        sp.eos_ids = eos_list;
      }
    }
  });
  if (sp.eos >= 0 && std::find(sp.eos_ids.begin(), sp.eos_ids.end(), sp.eos) == sp.eos_ids.end())
    sp.eos_ids.insert(sp.eos_ids.begin(), sp.eos);
  for (int32_t id : {sp.bos, sp.eos, sp.pad, sp.unk})
    ARQ_CHECK(id < tok.vocab_size(), ConfigError, folder, ": special token id ", id, " is outside the vocabulary of ",
              tok.vocab_size());
  if (sp.bos < 0) sp.add_bos = false;
  if (sp.eos < 0) sp.add_eos = false;
  tok.set_special_tokens(sp);
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  const fs::path p(path);
  ARQ_CHECK(fs::exists(p), IoError, "tokenizer path '", path, "' does not exist");
  std::unique_ptr<Tokenizer> tok;
  fs::path folder;
  if (fs::is_directory(p)) {
    folder = p;
    const fs::path json = p / "tokenizer.json", model = p / "tokenizer.model";
    if (fs::is_regular_file(json)) {
      try {
        tok = BpeTokenizer::from_json_file(json.string());
      } catch (const UnsupportedError&) {
        // A sentencepiece-style tokenizer.json (Llama-2, Mistral): the .model file is the source of truth.
        if (!fs::is_regular_file(model)) throw;
      }
    }
    if (!tok && fs::is_regular_file(model)) tok = std::make_unique<SpmTokenizer>(model.string());
    ARQ_CHECK(tok != nullptr, IoError, "no tokenizer.json or tokenizer.model in '", path, "'");
  } else {
    folder = p.parent_path();
    if (p.extension() == ".json") tok = BpeTokenizer::from_json_file(path);
    else tok = std::make_unique<SpmTokenizer>(path);
  }
  apply_hf_token_config(*tok, folder.empty() ? "." : folder.string());
  return tok;
}

std::unique_ptr<Tokenizer> tokenizer_from_gguf_vocab(const GgufVocab& v) {
  if (v.model == "llama") return SpmScoreTokenizer::from_gguf_vocab(v);
  if (v.model == "gpt2") return BpeTokenizer::from_gguf_vocab(v);
  throw UnsupportedError(cat("GGUF tokenizer.ggml.model \"", v.model, "\" is not supported (supported: llama, gpt2)"));
}

}  // namespace arq::io
