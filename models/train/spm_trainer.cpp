#include "models/train/spm_trainer.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <sentencepiece_trainer.h>

#include "engine/error.h"
#include "io/json_util.h"

namespace arq::models {

namespace {

class VectorIterator : public sentencepiece::SentenceIterator {
 public:
  explicit VectorIterator(const std::vector<std::string>& v, size_t max_len) : v_(v), max_len_(max_len) { load(); }
  bool done() const override { return i_ >= v_.size(); }
  void Next() override {
    ++i_;
    load();
  }
  const std::string& value() const override { return cur_; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  void load() {
    if (done()) return;
    cur_ = v_[i_].substr(0, max_len_);
    for (char& c : cur_)
      if (c == '\n' || c == '\t' || c == '\r') c = ' ';
  }
  const std::vector<std::string>& v_;
  size_t max_len_;
  size_t i_ = 0;
  std::string cur_;
};

// libsentencepiece logs its whole flag line and progress to stderr before `--minloglevel` takes
// effect; the demo prints its own summary, so stderr is silenced for the call. The status
// still carries any error.
struct QuietStderr {
  int saved = -1;
  QuietStderr() {
    std::fflush(stderr);
    saved = dup(2);
    const int null_fd = open("/dev/null", O_WRONLY);
    if (saved >= 0 && null_fd >= 0) dup2(null_fd, 2);
    if (null_fd >= 0) close(null_fd);
  }
  ~QuietStderr() {
    if (saved >= 0) {
      dup2(saved, 2);
      close(saved);
    }
  }
};

}  // namespace

std::string train_spm_model(const std::vector<std::string>& sentences, const SpmTrainOptions& o) {
  ARQ_CHECK(!sentences.empty(), UsageError, "train_spm_model: no training sentences");
  ARQ_CHECK(o.vocab_size >= 8, UsageError, "train_spm_model: vocab_size must be >= 8, got ", o.vocab_size);
  const std::string args =
      cat("--model_type=", o.model_type, " --vocab_size=", o.vocab_size, " --character_coverage=", o.character_coverage,
          " --max_sentence_length=", o.max_sentence_length,
          // determinism: one thread, every sentence, no shuffling
          " --num_threads=1 --input_sentence_size=0 --shuffle_input_sentence=false",
          // Llama ids
          " --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1 --minloglevel=2",
          o.llama_style ? " --normalization_rule_name=identity --byte_fallback=true --remove_extra_whitespaces=false" : "");
  VectorIterator it(sentences, static_cast<size_t>(o.max_sentence_length));
  std::string proto;
  sentencepiece::util::Status st;
  {
    QuietStderr quiet;
    st = sentencepiece::SentencePieceTrainer::Train(args, &it, &proto);
  }
  ARQ_CHECK(st.ok(), Error, "sentencepiece training (", args, ") failed on ", sentences.size(),
            " sentences: ", st.ToString());
  return proto;
}

void write_spm_model(const std::string& proto, const std::string& path) {
  io::write_text_file_atomic(path, proto);
}

void write_tokenizer_config(const std::string& dir, int64_t model_max_length) {
  io::JsonValue c = io::JsonValue::object();
  c.set("add_bos_token", true)
      .set("add_eos_token", false)
      .set("bos_token", "<s>")
      .set("eos_token", "</s>")
      .set("unk_token", "<unk>")
      .set("pad_token", io::JsonValue())
      .set("model_max_length", model_max_length)
      .set("tokenizer_class", "LlamaTokenizer")
      .set("clean_up_tokenization_spaces", false)
      .set("legacy", false);
  io::write_text_file_atomic((std::filesystem::path(dir) / "tokenizer_config.json").string(), c.dump(2) + "\n");
}

}  // namespace arq::models
