// Reading a byte-level BPE tokenizer from tokenizer.json (simdjson) or GGUF metadata.
#include <simdjson.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/error.h"
#include "io/tokenizer_bpe.h"

namespace arq::io {

namespace {

using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::object;

struct JsonCtx {
  std::string source;

  [[noreturn]] void fail(const std::string& what) const { throw IoError(cat(source, ": ", what)); }

  std::string_view str(element e, const char* what) const {
    std::string_view s;
    if (e.get_string().get(s) != simdjson::SUCCESS) fail(cat(what, " is not a string"));
    return s;
  }
  // Optional field of an object; null counts as absent.
  bool field(object o, const char* key, element& out) const {
    if (o[key].get(out) != simdjson::SUCCESS) return false;
    return !out.is_null();
  }
  bool boolean(object o, const char* key, bool dflt) const {
    element e;
    if (!field(o, key, e)) return dflt;
    bool b = false;
    if (e.get_bool().get(b) != simdjson::SUCCESS) fail(cat("field \"", key, "\" is not a boolean"));
    return b;
  }
  std::string_view type_of(element e, const char* what) const {
    object o;
    if (e.get_object().get(o) != simdjson::SUCCESS) fail(cat(what, " is not an object"));
    element t;
    if (!field(o, "type", t)) fail(cat(what, " has no \"type\""));
    return str(t, cat(what, ".type").c_str());
  }
};

void read_normalizer(const JsonCtx& c, element n, BpeVocab& v) {
  const std::string_view type = c.type_of(n, "normalizer");
  if (type == "NFC") {
    v.nfc = true;
  } else if (type == "Sequence") {
    array list;
    if (n["normalizers"].get_array().get(list) != simdjson::SUCCESS) c.fail("normalizer Sequence has no list");
    for (element k : list) read_normalizer(c, k, v);
  } else {
    throw UnsupportedError(cat(c.source, ": normalizer \"", type,
                               "\" is not supported for byte-level BPE (supported: NFC, Sequence); "
                               "sentencepiece-style tokenizer.json files are read through tokenizer.model"));
  }
}

SplitBehavior behavior_of(const JsonCtx& c, std::string_view b) {
  if (b == "Isolated") return SplitBehavior::isolated;
  if (b == "Removed") return SplitBehavior::removed;
  if (b == "MergedWithPrevious") return SplitBehavior::merged_with_previous;
  if (b == "MergedWithNext") return SplitBehavior::merged_with_next;
  if (b == "Contiguous") return SplitBehavior::contiguous;
  c.fail(cat("unknown Split behavior \"", b, "\""));
}

// Returns whether a ByteLevel step was seen.
bool read_pre_tokenizer(const JsonCtx& c, element p, PreTokenizer& pre) {
  const std::string_view type = c.type_of(p, "pre_tokenizer");
  object o = p.get_object().value_unsafe();
  if (type == "Sequence") {
    array list;
    if (o["pretokenizers"].get_array().get(list) != simdjson::SUCCESS) c.fail("pre_tokenizer Sequence has no list");
    bool byte_level = false;
    for (element k : list) byte_level |= read_pre_tokenizer(c, k, pre);
    return byte_level;
  }
  if (type == "Split") {
    element pat;
    if (!c.field(o, "pattern", pat)) c.fail("Split pre_tokenizer has no pattern");
    object po;
    if (pat.get_object().get(po) != simdjson::SUCCESS) c.fail("Split pattern is not an object");
    element e;
    element beh;
    const SplitBehavior b =
        c.field(o, "behavior", beh) ? behavior_of(c, c.str(beh, "Split behavior")) : SplitBehavior::isolated;
    const bool invert = c.boolean(o, "invert", false);
    if (c.field(po, "Regex", e)) pre.add_split(CodepointRegex(c.str(e, "Split Regex")), b, invert);
    else if (c.field(po, "String", e)) pre.add_split(CodepointRegex::literal(c.str(e, "Split String")), b, invert);
    else c.fail("Split pattern has neither Regex nor String");
    return false;
  }
  if (type == "ByteLevel") {
    pre.add_byte_level(c.boolean(o, "add_prefix_space", true), c.boolean(o, "use_regex", true));
    return true;
  }
  if (type == "Digits") {
    pre.add_digits(c.boolean(o, "individual_digits", false));
    return false;
  }
  throw UnsupportedError(cat(c.source, ": pre_tokenizer \"", type,
                             "\" is not supported (supported: Sequence, Split, ByteLevel, Digits)"));
}

// TemplateProcessing: a SpecialToken before the sequence means BOS, one after it EOS.
void read_post_processor(const JsonCtx& c, element p, SpecialTokens& sp, const BpeVocab& v) {
  object o;
  if (p.get_object().get(o) != simdjson::SUCCESS) return;
  element t;
  if (!c.field(o, "type", t)) return;
  const std::string_view type = c.str(t, "post_processor.type");
  if (type == "Sequence") {
    array list;
    if (o["processors"].get_array().get(list) == simdjson::SUCCESS)
      for (element k : list) read_post_processor(c, k, sp, v);
    return;
  }
  if (type != "TemplateProcessing") return;
  array single;
  if (o["single"].get_array().get(single) != simdjson::SUCCESS) return;
  auto special_id = [&](std::string_view name) -> int32_t {
    int64_t id = -1;
    if (o["special_tokens"][name]["ids"].at(0).get_int64().get(id) == simdjson::SUCCESS) return static_cast<int32_t>(id);
    for (const BpeAddedToken& a : v.added)
      if (a.content == name) return a.id;
    return -1;
  };
  bool seen_sequence = false;
  for (element item : single) {
    object io;
    if (item.get_object().get(io) != simdjson::SUCCESS) continue;
    element e;
    if (c.field(io, "Sequence", e)) {
      seen_sequence = true;
      continue;
    }
    std::string_view name;
    if (io["SpecialToken"]["id"].get_string().get(name) != simdjson::SUCCESS) continue;
    const int32_t id = special_id(name);
    if (id < 0) continue;
    if (!seen_sequence) {
      sp.bos = id;
      sp.add_bos = true;
    } else {
      sp.eos = id;
      sp.add_eos = true;
    }
  }
}

}  // namespace

std::unique_ptr<BpeTokenizer> BpeTokenizer::from_json(std::string_view json, const std::string& source) {
  JsonCtx c{source};
  simdjson::dom::parser parser;
  simdjson::padded_string padded(json.data(), json.size());
  element doc;
  if (auto err = parser.parse(padded).get(doc); err != simdjson::SUCCESS)
    c.fail(cat("malformed JSON (", simdjson::error_message(err), ")"));
  object root;
  if (doc.get_object().get(root) != simdjson::SUCCESS) c.fail("top level is not a JSON object");

  element model_el;
  if (!c.field(root, "model", model_el)) c.fail("no \"model\" section: not a Hugging Face tokenizer.json");
  object model;
  if (model_el.get_object().get(model) != simdjson::SUCCESS) c.fail("\"model\" is not an object");
  element type_el;
  if (c.field(model, "type", type_el)) {
    const std::string_view type = c.str(type_el, "model.type");
    if (type != "BPE")
      throw UnsupportedError(cat(source, ": tokenizer model type \"", type,
                                 "\" is not supported (supported: BPE; sentencepiece models via tokenizer.model)"));
  }
  BpeVocab v;
  // vocab: {"piece": id, ...}
  object vocab;
  if (model["vocab"].get_object().get(vocab) != simdjson::SUCCESS) c.fail("model.vocab is missing or not an object");
  for (auto kv : vocab) {
    int64_t id = -1;
    if (kv.value.get_int64().get(id) != simdjson::SUCCESS || id < 0 || id > INT32_MAX)
      c.fail(cat("model.vocab[\"", kv.key, "\"] is not a valid token id"));
    if (static_cast<size_t>(id) >= v.tokens.size()) v.tokens.resize(static_cast<size_t>(id) + 1);
    v.tokens[static_cast<size_t>(id)] = std::string(kv.key);
  }
  // merges: ["a b", ...] or [["a", "b"], ...]
  array merges;
  if (model["merges"].get_array().get(merges) != simdjson::SUCCESS) c.fail("model.merges is missing or not an array");
  v.merges.reserve(merges.size());
  size_t rank = 0;
  for (element m : merges) {
    std::string_view s;
    array pair;
    if (m.get_string().get(s) == simdjson::SUCCESS) {
      const size_t sp = s.find(' ', 1);  // a piece may itself start with ' ' in old files; never "a b" with empty a
      if (sp == std::string_view::npos) c.fail(cat("merge ", rank, " \"", s, "\" is not \"left right\""));
      v.merges.emplace_back(std::string(s.substr(0, sp)), std::string(s.substr(sp + 1)));
    } else if (m.get_array().get(pair) == simdjson::SUCCESS && pair.size() == 2) {
      v.merges.emplace_back(std::string(c.str(pair.at(0).value_unsafe(), "merge left")),
                            std::string(c.str(pair.at(1).value_unsafe(), "merge right")));
    } else {
      c.fail(cat("merge ", rank, " is neither \"left right\" nor [left, right]"));
    }
    ++rank;
  }
  v.ignore_merges = c.boolean(model, "ignore_merges", false);

  array added;
  if (root["added_tokens"].get_array().get(added) == simdjson::SUCCESS) {
    for (element a : added) {
      object ao;
      if (a.get_object().get(ao) != simdjson::SUCCESS) c.fail("an added_tokens entry is not an object");
      BpeAddedToken t;
      int64_t id = -1;
      if (ao["id"].get_int64().get(id) != simdjson::SUCCESS || id < 0 || id > INT32_MAX)
        c.fail("an added_tokens entry has no valid id");
      t.id = static_cast<int32_t>(id);
      element content;
      if (!c.field(ao, "content", content)) c.fail(cat("added token ", id, " has no content"));
      t.content = std::string(c.str(content, "added token content"));
      t.special = c.boolean(ao, "special", false);
      t.single_word = c.boolean(ao, "single_word", false);
      t.lstrip = c.boolean(ao, "lstrip", false);
      t.rstrip = c.boolean(ao, "rstrip", false);
      t.normalized = c.boolean(ao, "normalized", !t.special);
      v.added.push_back(std::move(t));
    }
  }

  element e;
  if (c.field(root, "normalizer", e)) read_normalizer(c, e, v);
  bool byte_level = false;
  if (c.field(root, "pre_tokenizer", e)) byte_level = read_pre_tokenizer(c, e, v.pre);
  if (!byte_level && c.field(root, "decoder", e)) {
    std::string_view dt;
    if (e["type"].get_string().get(dt) == simdjson::SUCCESS) byte_level = dt == "ByteLevel";
  }
  if (!byte_level)
    throw UnsupportedError(cat(source, ": not a byte-level BPE tokenizer (no ByteLevel pre-tokenizer or decoder); "
                                       "for sentencepiece models use tokenizer.model"));
  SpecialTokens sp;
  if (c.field(root, "post_processor", e)) read_post_processor(c, e, sp, v);
  if (sp.eos >= 0) sp.eos_ids = {sp.eos};
  auto tok = std::make_unique<BpeTokenizer>(std::move(v), source);
  tok->set_special_tokens(sp);
  return tok;
}

std::unique_ptr<BpeTokenizer> BpeTokenizer::from_json_file(const std::string& path) {
  ARQ_CHECK(std::filesystem::is_regular_file(path), IoError, "tokenizer file '", path, "' does not exist");
  std::ifstream f(path, std::ios::binary);
  ARQ_CHECK(f.good(), IoError, "tokenizer file '", path, "' cannot be opened");
  std::ostringstream ss;
  ss << f.rdbuf();
  return from_json(ss.str(), path);
}

std::unique_ptr<BpeTokenizer> BpeTokenizer::from_gguf_vocab(const GgufVocab& g) {
  const std::string src = "GGUF vocabulary (tokenizer.ggml.model = \"" + g.model + "\")";
  ARQ_CHECK(g.token_types.empty() || g.token_types.size() == g.tokens.size(), IoError, src,
            ": tokenizer.ggml.token_type has ", g.token_types.size(), " entries for ", g.tokens.size(), " tokens");
  BpeVocab v;
  v.tokens.resize(g.tokens.size());
  for (size_t i = 0; i < g.tokens.size(); ++i) {
    const int32_t type = g.token_types.empty() ? 1 : g.token_types[i];
    if (type == 3 || type == 4) {  // control / user-defined: matched as added tokens in raw text
      BpeAddedToken t;
      t.id = static_cast<int32_t>(i);
      t.content = g.tokens[i];
      t.special = type == 3;
      if (!t.content.empty()) v.added.push_back(std::move(t));
    } else if (type != 5) {  // unused entries ([PAD..] holes) must not be produced
      v.tokens[i] = g.tokens[i];
    }
  }
  v.merges.reserve(g.merges.size());
  for (size_t r = 0; r < g.merges.size(); ++r) {
    const std::string& m = g.merges[r];
    const size_t sp = m.find(' ', 1);
    ARQ_CHECK(sp != std::string::npos, IoError, src, ": merge ", r, " \"", m, "\" is not \"left right\"");
    v.merges.emplace_back(m.substr(0, sp), m.substr(sp + 1));
  }
  const std::string pre = g.pre.empty() ? "default" : g.pre;
  v.pre = PreTokenizer::for_gguf_pre(pre);
  v.nfc = pre == "qwen2";                   // Qwen's tokenizer.json normalizer is NFC
  v.ignore_merges = pre == "llama-bpe" || pre == "llama3";
  auto tok = std::make_unique<BpeTokenizer>(std::move(v), src);
  SpecialTokens sp;
  sp.bos = g.bos;
  sp.eos = g.eos;
  sp.pad = g.pad;
  sp.unk = g.unk;
  if (g.eos >= 0) sp.eos_ids.push_back(g.eos);
  if (g.eot >= 0 && g.eot != g.eos) sp.eos_ids.push_back(g.eot);
  sp.add_bos = g.add_bos.value_or(false) && g.bos >= 0;
  sp.add_eos = g.add_eos.value_or(false) && g.eos >= 0;
  tok->set_special_tokens(sp);
  return tok;
}

}  // namespace arq::io
