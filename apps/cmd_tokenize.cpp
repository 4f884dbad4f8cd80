// ar-quant tokenize: text on stdin -> token ids on stdout (or ids -> text with --decode), with
// only the tokenizer files of a model (tokenizer.model or tokenizer.json, tokenizer_config.json)
// or the tokenizer.ggml.* metadata of a GGUF file. Meant for scripts and reference checks, so
// the output is exact: ids on one line separated by single spaces; decoded text byte for byte,
// with no newline added.
//
//   printf 'Hello world' | ar-quant tokenize --model tokenizers/llama2.model       # 15043 3186
//   echo 15043 3186 | ar-quant tokenize --model tokenizers/llama2.model --decode   # Hello world
//
// --jsonl handles many strings in one process (a reference check sends hundreds): each stdin
// line is a JSON string, each output line the ids of one string; with --decode each stdin
// line is a list of ids and each output line a JSON string.
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "apps/commands.h"
#include "apps/flags.h"
#include "engine/error.h"
#include "io/json_util.h"
#include "io/tokenizer.h"
#include "io/tokenizer_gguf.h"

namespace arq::app {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::unique_ptr<io::Tokenizer> open_tokenizer(const std::string& path) {
  if (ends_with(path, ".gguf")) return io::load_tokenizer_gguf(path);
  return io::load_tokenizer(path);
}

std::string join_ids(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) s += ' ';
    s += std::to_string(ids[i]);
  }
  return s;
}

// Whitespace-separated ids; anything else, or an id outside the vocabulary, is a UsageError
// naming the offending word (a bad id must not reach a decoder that indexes with it).
std::vector<int32_t> parse_ids(const std::string& text, int64_t vocab_size, const std::string& where) {
  std::vector<int32_t> ids;
  std::istringstream in(text);
  std::string word;
  while (in >> word) {
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(word, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    ARQ_CHECK(used == word.size(), UsageError, "tokenize --decode: '", word, "' in ", where, " is not a token id");
    ARQ_CHECK(v >= 0 && v < vocab_size, UsageError, "tokenize --decode: id ", v, " in ", where,
              " is outside the vocabulary (size ", vocab_size, ")");
    ids.push_back(static_cast<int32_t>(v));
  }
  return ids;
}

std::string read_stdin() {
  std::string s;
  char buf[1 << 16];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, stdin)) > 0) s.append(buf, n);
  ARQ_CHECK(!std::ferror(stdin), IoError, "tokenize: cannot read stdin");
  return s;
}

void write_all(const std::string& s) {
  const size_t n = std::fwrite(s.data(), 1, s.size(), stdout);
  ARQ_CHECK(n == s.size(), IoError, "tokenize: short write to stdout");
}

}  // namespace

int cmd_tokenize(const Args& args) {
  Flags f("tokenize",
          {
              {"model", true, "model folder with tokenizer files, a tokenizer.json / tokenizer.model file, or a .gguf file", ""},
              {"add_special", false, "add BOS/EOS as the tokenizer adds them by default (add_bos_token, add_eos_token)", ""},
              {"split_special", false, "treat special tokens written in the text as plain text", ""},
              {"decode", false, "read token ids from stdin and print the text", ""},
              {"skip_special", false, "with --decode: leave special tokens out of the text", ""},
              {"jsonl", false, "one JSON string per stdin line, one line of ids per string (with --decode: the reverse)", ""},
              {"help", false, "print this help", ""},
          });
  f.parse(args);
  if (f.on("help")) {
    const std::string h = f.help();   // its first line is a generic usage line: ours names the input
    std::printf("usage: ar-quant tokenize --model DIR [--add_special] [--decode] < input\n%s", h.substr(h.find('\n') + 1).c_str());
    return 0;
  }
  ARQ_CHECK(f.positional().empty(), UsageError, "tokenize: unexpected argument '", f.positional().front(),
            "' (the text is read from stdin)");
  const auto tok = open_tokenizer(f.require("model"));
  const bool decode = f.on("decode"), jsonl = f.on("jsonl");
  io::EncodeOptions eo;
  if (!f.on("add_special")) eo.add_bos = eo.add_eos = false;   // unset: the tokenizer's defaults
  eo.parse_special = !f.on("split_special");

  if (!jsonl) {
    const std::string input = read_stdin();
    if (decode) {
      write_all(tok->decode(parse_ids(input, tok->vocab_size(), "stdin"), f.on("skip_special")));
    } else {
      write_all(join_ids(tok->encode(input, eo)) + "\n");
    }
    std::fflush(stdout);
    return 0;
  }
  std::string line;
  for (int64_t n = 1; std::getline(std::cin, line); ++n) {
    const std::string where = cat("stdin line ", n);
    if (decode) {
      write_all(io::json_quote(tok->decode(parse_ids(line, tok->vocab_size(), where), f.on("skip_special"))) + "\n");
    } else {
      const io::JsonValue v = io::parse_json(line, where);
      ARQ_CHECK(v.kind() == io::JsonValue::Kind::string, UsageError, "tokenize --jsonl: ", where,
                " is not a JSON string");
      write_all(join_ids(tok->encode(v.as_string(), eo)) + "\n");
    }
  }
  std::fflush(stdout);
  return 0;
}

}  // namespace arq::app
