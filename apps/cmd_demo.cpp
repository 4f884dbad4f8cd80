// ar-quant demo: the whole product on something real, offline, in minutes on a laptop CPU.
//
//   1. corpus     English records of Debian's `fortunes` (or --corpus FILE), 10% held out;
//   2. tokenizer  sentencepiece BPE (vocab 1024) trained on the training records;
//   3. model      a Llama-family decoder (hidden 256, 4 layers, every linear dim a multiple of
//                 128) trained from scratch with ar-quant's autograd + AdamW, saved as a
//                 Hugging Face folder and reused by the next run;
//   4. quantize   RTN and SignRound at W4G128 and W2G128, exported (auto_round, gguf:q4_k_m);
//   5. report     a table of size / held-out perplexity / time, and greedy samples.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "apps/commands.h"
#include "apps/flags.h"
#include "engine/backend.h"
#include "engine/error.h"
#include "engine/ops.h"
#include "io/corpus_fortunes.h"
#include "io/json_util.h"
#include "io/tokenizer.h"
#include "models/family.h"
#include "models/generate.h"
#include "models/loader.h"
#include "models/perplexity.h"
#include "models/random_model.h"
#include "models/train/spm_trainer.h"
#include "models/train/trainer.h"
#include "io/pack_load.h"
#include "quant/export.h"
#include "quant/pipeline.h"
#include "quant/recipe.h"

namespace arq::app {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// The default training budget: 192 steps of 8 × 256 tokens. The llama demo costs 22 MFLOP per
// training token (models::train_flops_per_token), so this is 8.7 TFLOP; measured rates on a
// 2-core x86 machine shared with other jobs were 10–18 GFLOP/s (470–820 tokens/s), and an idle
// machine should do better, so training takes about 5 (idle) to 14 (busy) of the demo's minutes.
// It reaches a held-out perplexity of 136 against a unigram baseline of 486 (seed 0).
constexpr int64_t kDefaultTrainTokens = 393216;   // 192 steps × 8 rows × 256

std::string default_output_dir() {
  const char* home = std::getenv("HOME");
  if (home && *home) return (fs::path(home) / ".cache" / "ar-quant" / "demo").string();
  return "ar-quant-demo";
}

std::vector<FlagSpec> demo_flags() {
  return {
      {"output_dir", true, "where the trained model (and the quantized ones) go", default_output_dir()},
      {"corpus", true, "train on this text file instead of the fortunes package (`%` records, else paragraphs, else lines)", ""},
      {"arch", true, "model family of the demo model: llama | mistral | qwen2 | qwen3", "llama"},
      {"model_size", true, "demo (hidden 256, 4 layers) | small (hidden 128, 2 layers; quick checks)", "demo"},
      {"train_tokens", true, "training budget in tokens (rounded up to whole steps)", std::to_string(kDefaultTrainTokens)},
      {"batch_size", true, "training rows per step", "8"},
      {"seqlen", true, "training / evaluation sequence length", "256"},
      {"lr", true, "peak AdamW learning rate (warm-up + cosine)", "3e-3"},
      {"vocab_size", true, "sentencepiece vocabulary", "1024"},
      {"retrain", false, "train tokenizer and model again even if a matching one is cached", ""},
      {"iters", true, "SignRound iterations per block (the default recipe's)", "200"},
      {"nsamples", true, "SignRound calibration samples (rows of the training text; the default recipe's)", "128"},
      {"calib_seqlen", true, "SignRound calibration sequence length (0: --seqlen; the recipe's 2048 exceeds the model)", "0"},
      {"quant_batch_size", true, "SignRound batch size (recipe default: 8)", "8"},
      {"eval_tokens", true, "held-out tokens scored for perplexity (0 = all)", "16384"},
      {"sample_tokens", true, "length of the greedy samples", "40"},
      {"prompt", true, "prompt of the greedy samples", "The best way to"},
      {"seed", true, "seed of initialization, batch order and calibration picks", "0"},
      {"threads", true, "CPU threads (default: ARQ_NUM_THREADS or all cores)", ""},
      {"help", false, "print this help", ""},
  };
}

struct DemoSettings {
  std::string output_dir, corpus, arch, model_size, prompt;
  int64_t train_tokens = 0, batch_size = 0, seqlen = 0, vocab_size = 0;
  double lr = 0;
  bool retrain = false;
  int64_t iters = 0, nsamples = 0, calib_seqlen = 0, quant_batch_size = 0, eval_tokens = 0, sample_tokens = 0;
  uint64_t seed = 0;
};

DemoSettings parse_settings(const Flags& f) {
  DemoSettings s;
  s.output_dir = f.str("output_dir");
  s.corpus = f.str("corpus");
  s.arch = f.str("arch");
  s.model_size = f.str("model_size");
  ARQ_CHECK(s.model_size == "demo" || s.model_size == "small", UsageError, "demo: --model_size must be demo or small, got '",
            s.model_size, "'");
  s.prompt = f.str("prompt");
  s.train_tokens = f.integer("train_tokens");
  s.batch_size = f.integer("batch_size");
  s.seqlen = f.integer("seqlen");
  s.vocab_size = f.integer("vocab_size");
  s.lr = f.number("lr");
  s.retrain = f.on("retrain");
  s.iters = f.integer("iters");
  s.nsamples = f.integer("nsamples");
  s.calib_seqlen = f.integer("calib_seqlen");
  s.quant_batch_size = f.integer("quant_batch_size");
  s.eval_tokens = f.integer("eval_tokens");
  s.sample_tokens = f.integer("sample_tokens");
  const int64_t seed = f.integer("seed");
  auto positive = [](int64_t v, const char* flag, int64_t min = 1) {
    ARQ_CHECK(v >= min, UsageError, "demo: --", flag, " must be >= ", min, ", got ", v);
  };
  positive(s.train_tokens, "train_tokens");
  positive(s.batch_size, "batch_size");
  positive(s.seqlen, "seqlen", 8);
  positive(s.vocab_size, "vocab_size", 64);
  positive(s.iters, "iters", 0);
  positive(s.nsamples, "nsamples");
  if (s.calib_seqlen == 0) s.calib_seqlen = s.seqlen;
  positive(s.calib_seqlen, "calib_seqlen", 8);
  positive(s.quant_batch_size, "quant_batch_size");
  positive(s.eval_tokens, "eval_tokens", 0);
  positive(s.sample_tokens, "sample_tokens", 0);
  positive(seed, "seed", 0);
  ARQ_CHECK(s.lr > 0 && s.lr < 1, UsageError, "demo: --lr must be in (0, 1), got ", s.lr);
  ARQ_CHECK(s.calib_seqlen <= s.seqlen, UsageError, "demo: --calib_seqlen (", s.calib_seqlen,
            ") must not exceed --seqlen (", s.seqlen, ")");
  models::family_for(s.arch);   // ConfigError listing the families
  s.seed = static_cast<uint64_t>(seed);
  return s;
}

// ---- progress ------------------------------------------------------------------------------

std::string hms(double seconds) {
  const auto t = static_cast<int64_t>(std::max(0.0, seconds) + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%lld:%02lld", static_cast<long long>(t / 60), static_cast<long long>(t % 60));
  return buf;
}

// A bar redrawn in place on a terminal; on a pipe, a line every tenth of the way.
class TrainBar {
 public:
  void update(const models::TrainStep& s) {
    const double tps = s.seconds > 0 ? static_cast<double>(s.tokens) / s.seconds : 0;
    const double eta = s.step > 0 ? s.seconds * static_cast<double>(s.steps - s.step) / static_cast<double>(s.step) : 0;
    ema_ = s.step == 1 ? s.loss : 0.9 * ema_ + 0.1 * s.loss;
    const int width = 24;
    const auto filled = static_cast<int>(width * s.step / s.steps);
    char line[256];
    std::snprintf(line, sizeof line, "  train [%s%s] %lld/%lld  loss %.3f  %.0f tok/s  lr %.2e  %s left",
                  std::string(static_cast<size_t>(filled), '#').c_str(), std::string(static_cast<size_t>(width - filled), '.').c_str(),
                  static_cast<long long>(s.step), static_cast<long long>(s.steps), ema_, tps, s.lr, hms(eta).c_str());
    if (tty_) {
      std::fprintf(stderr, "\r%s   ", line);
      if (s.step == s.steps) std::fprintf(stderr, "\n");
    } else if (s.step == s.steps || s.step * 10 / s.steps != (s.step - 1) * 10 / s.steps) {
      std::fprintf(stderr, "%s\n", line);
    }
    std::fflush(stderr);
  }

 private:
  bool tty_ = isatty(2) != 0;
  double ema_ = 0;
};

// ---- the trained model, cached -------------------------------------------------------------

// What a cached model was made from; a different recipe means training again.
io::JsonValue train_recipe(const DemoSettings& s, const io::Corpus& c) {
  io::JsonValue r = io::JsonValue::object();
  r.set("corpus", c.origin)
      .set("corpus_records", static_cast<int64_t>(c.train.size() + c.heldout.size()))
      .set("corpus_bytes", static_cast<int64_t>(c.bytes()))
      .set("arch", s.arch)
      .set("model_size", s.model_size)
      .set("vocab_size", s.vocab_size)
      .set("tokenizer", "bpe, llama-style (identity normalizer, byte fallback)")
      .set("train_tokens", s.train_tokens)
      .set("batch_size", s.batch_size)
      .set("seqlen", s.seqlen)
      .set("lr", s.lr)
      .set("seed", static_cast<int64_t>(s.seed));
  return r;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool cached_model_matches(const std::string& dir, const io::JsonValue& recipe) {
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.model", "tokenizer_config.json", "demo_train.json"})
    if (!fs::exists(fs::path(dir) / f)) return false;
  try {
    const io::JsonValue info = io::parse_json(read_file((fs::path(dir) / "demo_train.json").string()), dir);
    const io::JsonValue* r = info.find("recipe");
    return r != nullptr && r->dump() == recipe.dump();
  } catch (const Error&) {
    return false;
  }
}

struct Trained {
  double train_seconds = 0;   // 0 when reused
  int64_t train_tokens = 0;
  double tokens_per_s = 0;
  double final_loss = 0;
  bool reused = false;
};

// Trains tokenizer and model into `dir` (through a temporary folder renamed at the end, so an
// interrupted run never leaves a half-written model that the next run would reuse).
Trained train_demo_model(const DemoSettings& s, const io::Corpus& corpus, const std::string& dir,
                         const io::JsonValue& recipe) {
  Trained t;
  const fs::path tmp = fs::path(dir).string() + ".tmp";
  fs::remove_all(tmp);
  fs::create_directories(tmp);

  auto t0 = Clock::now();
  // Llama-2 style pieces, so llama.cpp tokenizes the GGUF export like sentencepiece does.
  const std::string proto = models::train_spm_model(corpus.train, {.vocab_size = s.vocab_size, .llama_style = true});
  models::write_spm_model(proto, (tmp / "tokenizer.model").string());
  models::write_tokenizer_config(tmp.string(), s.seqlen);
  std::unique_ptr<io::Tokenizer> tok = io::load_tokenizer(tmp.string());
  std::printf("tokenizer: sentencepiece BPE, vocab %lld, trained in %.1f s\n", static_cast<long long>(tok->vocab_size()),
              since(t0));

  const std::vector<int32_t> train_ids = tok->encode(io::join_records(corpus.train), false);
  const models::DecoderSpec spec = models::demo_spec(
      s.arch, tok->vocab_size(), s.seqlen, s.model_size == "small" ? models::DemoScale::small : models::DemoScale::standard);
  models::TrainableLM m(spec, {.seed = s.seed});
  const int64_t rows_per_step = s.batch_size * s.seqlen;
  const int64_t steps = (s.train_tokens + rows_per_step - 1) / rows_per_step;
  const double flops = models::train_flops_per_token(spec, s.seqlen);
  std::printf("model: %s, %lld layers, hidden %lld, intermediate %lld, %lld/%lld heads, %.2f M parameters\n",
              spec.model_type.c_str(), static_cast<long long>(spec.num_hidden_layers), static_cast<long long>(spec.hidden_size),
              static_cast<long long>(spec.intermediate_size), static_cast<long long>(spec.num_attention_heads),
              static_cast<long long>(spec.num_key_value_heads), static_cast<double>(m.num_parameters()) / 1e6);
  std::printf("training: %lld steps x %lld rows x %lld tokens = %lld tokens (%.2f epochs of %lld), %.1f MFLOP/token, "
              "AdamW lr %.1e warm-up + cosine, clip 1.0\n",
              static_cast<long long>(steps), static_cast<long long>(s.batch_size), static_cast<long long>(s.seqlen),
              static_cast<long long>(steps * rows_per_step),
              static_cast<double>(steps * rows_per_step) / static_cast<double>(train_ids.size()),
              static_cast<long long>(train_ids.size()), flops / 1e6, s.lr);
  std::fflush(stdout);

  TrainBar bar;
  models::TrainOptions o;
  o.steps = steps;
  o.batch_size = s.batch_size;
  o.seqlen = s.seqlen;
  o.lr = s.lr;
  o.seed = s.seed;
  o.on_step = [&bar](const models::TrainStep& st) { bar.update(st); };
  const models::TrainResult r = models::train_lm(m, train_ids, tok->bos_id(), o);

  t.train_seconds = r.seconds;
  t.train_tokens = r.tokens;
  t.tokens_per_s = static_cast<double>(r.tokens) / std::max(r.seconds, 1e-9);
  double tail = 0;
  const size_t k = std::min<size_t>(10, r.losses.size());
  for (size_t i = r.losses.size() - k; i < r.losses.size(); ++i) tail += r.losses[i] / static_cast<double>(k);
  t.final_loss = tail;
  std::printf("trained in %.1f s: %.0f tokens/s (%.2f GFLOP/s), loss %.3f -> %.3f (mean of the last %zu steps)\n",
              r.seconds, t.tokens_per_s, t.tokens_per_s * flops / 1e9, r.losses.front(), tail, k);

  models::save_pretrained(m.model(), tmp.string());
  io::JsonValue info = io::JsonValue::object();
  info.set("recipe", recipe)
      .set("train_seconds", r.seconds)
      .set("tokens_per_second", t.tokens_per_s)
      .set("final_loss", tail)
      .set("threads", static_cast<int64_t>(num_threads()));
  io::write_text_file_atomic((tmp / "demo_train.json").string(), info.dump(2) + "\n");
  fs::remove_all(dir);
  fs::rename(tmp, dir);
  return t;
}

// ---- evaluation and quantization -----------------------------------------------------------

struct Row {
  std::string method;    // FP, RTN, SignRound
  std::string format;    // safetensors, auto_round, gguf:q4_k_m, ...
  std::string bits;
  std::string group;
  std::string size;      // "14.1 MiB", or an estimate marked '*'
  double ppl = 0;
  double seconds = 0;
  std::string note;
};

std::string mib(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f MiB", bytes / 1048576.0);
  return buf;
}

// Bytes of the weight files of an exported model: the *.safetensors of a folder, or the .gguf
// file (tokenizer and config files are left out, so every row counts the same thing).
size_t weight_file_bytes(const std::string& dir) {
  size_t n = 0;
  for (const fs::directory_entry& e : fs::recursive_directory_iterator(dir)) {
    const std::string ext = e.path().extension().string();
    if (e.is_regular_file() && (ext == ".safetensors" || ext == ".gguf")) n += static_cast<size_t>(e.file_size());
  }
  return n;
}

std::string find_gguf(const std::string& dir) {
  for (const fs::directory_entry& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".gguf") return e.path().string();
  throw IoError(cat("no .gguf file in '", dir, "'"));
}

// An exported auto_round folder read back the simple way (every packed linear dequantized),
// as a model: what a user loading the export gets.
models::CausalLM load_exported(const models::DecoderSpec& spec, const std::string& folder) {
  auto src = std::make_shared<models::MapSource>();
  src->set_origin(folder);
  for (auto& [name, t] : io::dequantize_folder_tensors(folder)) src->put(name, t.to(DType::f32));
  return models::CausalLM(spec, src);
}

// `nsamples` rows of BOS + (calib_seqlen − 1) training tokens at evenly spread offsets.
Tensor calibration_ids(const std::vector<int32_t>& ids, int32_t bos, int64_t nsamples, int64_t seqlen) {
  const auto n = static_cast<int64_t>(ids.size());
  ARQ_CHECK(n >= seqlen, UsageError, "demo: the training text (", n, " tokens) is shorter than --calib_seqlen ", seqlen);
  Tensor t = Tensor::empty({nsamples, seqlen}, DType::i64);   // [nsamples, seqlen]
  int64_t* d = t.data<int64_t>();
  const int64_t span = n - (seqlen - 1);
  for (int64_t i = 0; i < nsamples; ++i) {
    const int64_t start = (i * span) / nsamples;
    d[i * seqlen] = bos;
    for (int64_t j = 1; j < seqlen; ++j) d[i * seqlen + j] = ids[static_cast<size_t>(start + j - 1)];
  }
  return t;
}

std::string sample_text(const models::CausalLM& lm, const io::Tokenizer& tok, const DemoSettings& s) {
  std::vector<int64_t> prompt = {tok.bos_id()};
  for (int32_t id : tok.encode(s.prompt, false)) prompt.push_back(id);
  models::GenerateOptions g;
  g.max_new_tokens = s.sample_tokens;
  for (int32_t e : tok.special_tokens().eos_ids) g.stop_ids.push_back(e);
  std::vector<int64_t> out = models::generate(lm, prompt, g);
  std::vector<int32_t> all;
  for (size_t i = 1; i < prompt.size(); ++i) all.push_back(static_cast<int32_t>(prompt[i]));
  for (int64_t id : out) all.push_back(static_cast<int32_t>(id));
  std::string text = tok.decode(all, /*skip_special=*/true);
  std::replace(text.begin(), text.end(), '\n', ' ');
  return text;
}

quant::ExportSource export_source(const models::CausalLM& fp, const quant::PipelineResult& r,
                                  const quant::PipelineOptions& o, const std::string& model_dir) {
  quant::ExportSource src;
  src.model_folder = model_dir;
  src.tensors = fp.source_ptr();
  src.quantized = &r.quantized;
  src.scheme = o.scheme;
  src.tuning.iters = o.iters;
  src.tuning.batch_size = o.batch_size;
  return src;
}

// gguf:q4_k_m of the model: written, read back by ar-quant's GGUF loader and evaluated. The
// GGUF exporter encodes from the FP checkpoint with llama.cpp's own k-quant scale search (the
// RTN path AutoRound recommends for 4-bit GGUF). A failure here is reported in the table, not
// fatal: the HF export above is the demo's main path.
template <class EvalFn>
Row export_gguf_row(const models::CausalLM& fp, const quant::PipelineResult& r, const quant::PipelineOptions& o,
                    const std::string& model_dir, const std::string& quant_dir, EvalFn eval_ppl) {
  Row row;
  row.method = "llama.cpp";
  row.format = "gguf:q4_k_m";
  row.bits = "-";
  row.group = "32/256";
  const auto t0 = Clock::now();
  try {
    const std::string folder = (fs::path(quant_dir) / "q4_k_m-gguf").string();
    quant::ExportSource src = export_source(fp, r, o, model_dir);
    quant::ExportOptions eo;
    eo.output_folder = folder;
    eo.overwrite = true;
    quant::export_model(src, "gguf:q4_k_m", eo);
    row.seconds = since(t0);
    const std::string file = find_gguf(folder);
    row.size = mib(static_cast<double>(fs::file_size(file)));
    // Q4_K_M mixes types per tensor (Q4_K, Q6_K for some): show the effective bits per weight
    double n_weights = 0;
    for (const std::string& n : fp.source().names()) n_weights += static_cast<double>(shape_numel(*fp.source().shape(n)));
    char bits[16];
    std::snprintf(bits, sizeof bits, "%.1f", 8.0 * static_cast<double>(fs::file_size(file)) / n_weights);
    row.bits = bits;
    models::CausalLM g = models::load_causal_lm(file);
    row.ppl = eval_ppl(g);
    std::printf("gguf:q4_k_m: exported in %.1f s to %s, held-out perplexity %.2f\n", row.seconds, file.c_str(), row.ppl);
  } catch (const Error& e) {
    row.seconds = since(t0);
    if (row.size.empty()) row.size = "-";
    row.ppl = std::nan("");
    row.note = cat("(", e.what(), ")");
    std::printf("gguf:q4_k_m: %s\n", e.what());
  }
  return row;
}

void print_table(const std::vector<Row>& rows) {
  std::printf("\n  %-10s %-13s %4s %6s %13s %13s %9s\n", "method", "format", "bits", "group", "size on disk", "held-out ppl",
              "seconds");
  std::printf("  %s\n", std::string(74, '-').c_str());
  for (const Row& r : rows)
    std::printf("  %-10s %-13s %4s %6s %13s %13.2f %9.1f%s\n", r.method.c_str(), r.format.c_str(), r.bits.c_str(),
                r.group.c_str(), r.size.c_str(), r.ppl, r.seconds, r.note.empty() ? "" : ("  " + r.note).c_str());
}

}  // namespace

int cmd_demo(const Args& args) {
  Flags f("demo", demo_flags());
  f.parse(args);
  if (f.on("help")) {
    std::printf("ar-quant demo: train a small model on the fortunes corpus, quantize it with RTN and SignRound, "
                "compare.\n\n%s",
                f.help().c_str());
    return 0;
  }
  ARQ_CHECK(f.positional().empty(), UsageError, "demo: unexpected argument '", f.positional().front(), "'");
  if (f.has("threads")) {
    const int64_t t = f.integer("threads");
    ARQ_CHECK(t >= 1, UsageError, "--threads must be >= 1, got ", t);
    set_num_threads(static_cast<int>(t));
  }
  const DemoSettings s = parse_settings(f);
  const auto t_start = Clock::now();

  // 1. corpus
  const io::Corpus corpus = s.corpus.empty() ? io::load_fortunes_corpus() : io::load_text_corpus(s.corpus);
  std::printf("corpus: %s: %zu records (%.2f MB); %zu for training, %zu held out (every tenth)\n", corpus.origin.c_str(),
              corpus.train.size() + corpus.heldout.size(), static_cast<double>(corpus.bytes()) / 1e6, corpus.train.size(),
              corpus.heldout.size());

  // 2 + 3. tokenizer and model, cached
  std::string model_name = s.arch == "llama" ? "model" : "model-" + s.arch;
  if (s.model_size != "demo") model_name += "-" + s.model_size;
  const std::string model_dir = (fs::path(s.output_dir) / model_name).string();
  const io::JsonValue recipe = train_recipe(s, corpus);
  Trained trained;
  if (!s.retrain && cached_model_matches(model_dir, recipe)) {
    trained.reused = true;
    std::printf("model: reusing %s (same corpus and settings; --retrain to train again)\n", model_dir.c_str());
  } else {
    fs::create_directories(s.output_dir);
    trained = train_demo_model(s, corpus, model_dir, recipe);
  }
  std::fflush(stdout);

  std::unique_ptr<io::Tokenizer> tok = io::load_tokenizer(model_dir);
  models::CausalLM fp = models::load_causal_lm(model_dir);
  const std::vector<int32_t> train_ids = tok->encode(io::join_records(corpus.train), false);
  std::vector<int32_t> eval_ids = tok->encode(io::join_records(corpus.heldout), false);
  const size_t all_eval = eval_ids.size();
  models::PerplexityOptions po;
  po.seqlen = s.seqlen;
  po.bos_id = tok->bos_id();
  if (s.eval_tokens > 0 && static_cast<int64_t>(eval_ids.size()) > s.eval_tokens)
    eval_ids.resize(static_cast<size_t>(s.eval_tokens));
  auto eval_ppl = [&](const models::CausalLM& lm) { return models::perplexity(lm, eval_ids, po).perplexity(); };

  auto t0 = Clock::now();
  const double fp_ppl = eval_ppl(fp);
  const double eval_seconds = since(t0);
  const double uni = models::unigram_perplexity(train_ids, eval_ids, tok->vocab_size());
  std::printf("held-out perplexity: %.2f over %zu of %zu held-out tokens (unigram baseline %.2f; %.1f s to evaluate)\n",
              fp_ppl, eval_ids.size(), all_eval, uni, eval_seconds);
  const std::string fp_sample = sample_text(fp, *tok, s);

  std::vector<Row> rows;
  rows.push_back({.method = "FP", .format = "safetensors", .bits = "32", .group = "-",
                  .size = mib(static_cast<double>(fs::file_size(fs::path(model_dir) / "model.safetensors"))),
                  .ppl = fp_ppl, .seconds = trained.train_seconds,
                  .note = trained.reused ? "(cached model)" : "(training)"});

  // 4. quantize
  const quant::Recipe rc = quant::recipe_by_name("default");
  if (s.iters != rc.iters)
    std::printf("SignRound: --iters %lld (the default recipe uses %lld)\n", static_cast<long long>(s.iters),
                static_cast<long long>(rc.iters));
  const Tensor calib = calibration_ids(train_ids, tok->bos_id(), s.nsamples, s.calib_seqlen);
  std::printf("SignRound: %lld calibration rows of %lld tokens from the training text, batch %lld, %lld iters per block\n",
              static_cast<long long>(s.nsamples), static_cast<long long>(s.calib_seqlen),
              static_cast<long long>(s.quant_batch_size), static_cast<long long>(s.iters));
  std::fflush(stdout);

  std::vector<std::pair<std::string, std::string>> samples;
  std::optional<Row> gguf_row;
  const std::string quant_dir = (fs::path(s.output_dir) / (model_name + "-quantized")).string();
  for (int bits : {4, 2}) {
    for (bool signround : {false, true}) {
      quant::PipelineOptions o;
      o.scheme.bits = bits;
      o.scheme.group_size = 128;
      o.iters = signround ? s.iters : 0;
      o.batch_size = s.quant_batch_size;
      o.seed = 42;
      o.disable_opt_rtn = true;   // the RTN row is plain round-to-nearest
      if (signround) o.disable_opt_rtn = rc.disable_opt_rtn;
      const std::string label = cat(signround ? "SignRound" : "RTN", " W", bits, "G128");
      o.on_iter = [&](int64_t block, int64_t it, int64_t iters, double loss) {
        if (isatty(2) && (it + 1 == iters || it % 10 == 0))
          std::fprintf(stderr, "\r  %s block %lld/%lld iter %lld/%lld loss %.4g   ", label.c_str(),
                       static_cast<long long>(block + 1), static_cast<long long>(fp.num_blocks()),
                       static_cast<long long>(it + 1), static_cast<long long>(iters), loss);
      };
      t0 = Clock::now();
      fp.set_keep_resident(false);
      const quant::PipelineResult r = quantize_blocks(fp, signround ? calib : Tensor(), Tensor(), o);
      const double q_seconds = since(t0);
      if (isatty(2) && signround) std::fprintf(stderr, "\r%*s\r", 70, "");
      // export, then evaluate the folder read back (not the in-memory weights)
      t0 = Clock::now();
      const std::string folder =
          (fs::path(quant_dir) / cat(signround ? "signround" : "rtn", "-w", bits, "g128")).string();
      quant::ExportSource src = export_source(fp, r, o, model_dir);
      src.tuning.nsamples = s.nsamples;
      src.tuning.seqlen = s.calib_seqlen;
      quant::ExportOptions eo;
      eo.output_folder = folder;
      eo.overwrite = true;
      quant::export_model(src, "auto_round", eo);
      const double export_seconds = since(t0);
      models::CausalLM qlm = load_exported(fp.spec(), folder);
      const double ppl = eval_ppl(qlm);
      std::printf("%s: quantized in %.1f s, exported (auto_round) in %.1f s to %s, held-out perplexity %.2f\n",
                  label.c_str(), q_seconds, export_seconds, folder.c_str(), ppl);
      std::fflush(stdout);
      rows.push_back({.method = signround ? "SignRound" : "RTN", .format = "auto_round", .bits = std::to_string(bits),
                      .group = "128", .size = mib(static_cast<double>(weight_file_bytes(folder))), .ppl = ppl,
                      .seconds = q_seconds, .note = ""});
      if (signround) samples.emplace_back(label, sample_text(qlm, *tok, s));
      if (signround && bits == 4) gguf_row = export_gguf_row(fp, r, o, model_dir, quant_dir, eval_ppl);
    }
  }
  if (gguf_row) rows.push_back(*gguf_row);

  // 5. report
  print_table(rows);
  std::printf("\n  size: the weight files (*.safetensors, *.gguf); perplexity: each exported model read back from disk;\n"
              "  seconds: training (FP), quantization (RTN, SignRound) or export (gguf)\n");
  std::printf("\nunigram baseline perplexity %.2f; FP perplexity %.2f (%.1fx lower)\n", uni, fp_ppl, uni / fp_ppl);
  std::printf("\ngreedy samples, prompt \"%s\":\n", s.prompt.c_str());
  std::printf("  %-18s %s\n", "FP:", fp_sample.c_str());
  for (const auto& [label, text] : samples) std::printf("  %-18s %s\n", (label + ":").c_str(), text.c_str());
  std::printf("\nmodel folder: %s\ntotal %.1f s (%s)\n", model_dir.c_str(), since(t_start), hms(since(t_start)).c_str());
  return 0;
}

}  // namespace arq::app
