// GGUF tokenizer metadata of a sentencepiece BPE model: an HF folder whose tokenizer.model is
// trained here by the project's own trainer (models/train/spm_trainer: BPE, sentencepiece's
// default nmt_nfkc normalizer, no byte fallback, as `ar-quant demo` trains it) is exported to
// GGUF; the file's tokenizer (SPM-by-score over tokenizer.ggml.*) must give the ids that
// libsentencepiece gives through the HF folder, on text with newlines, tabs, runs of spaces,
// digits, punctuation and non-ASCII characters. Before tokenizer.ggml.precompiled_charsmap
// was written and applied, every '\n' was an <unk> in the GGUF ids where sentencepiece has "▁".
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <random>

#include "export_test_util.h"
#include "io/gguf.h"
#include "io/json_util.h"
#include "io/tokenizer.h"
#include "io/tokenizer_gguf.h"
#include "io/tokenizer_spm.h"
#include "models/tensor_source.h"
#include "models/train/spm_trainer.h"
#include "quant/export.h"

using namespace arq;
namespace fs = std::filesystem;
using Ids = std::vector<int32_t>;

namespace {

constexpr int64_t kVocab = 160, kH = 64, kI = 128, kHeads = 4;

Tensor randn(Shape s, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 0.02f);
  Tensor t = Tensor::empty(s, DType::f32);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = nd(rng);
  return t;
}

// Training records: words, numbers and punctuation, some records spanning several lines.
std::vector<std::string> training_records() {
  static const char* words[] = {"the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "and", "runs",
                                "away", "fast", "Hello", "world", "It's", "time", "café", "naïve", "42", "2024",
                                "3.14", "(yes)", "no!", "end.", "\"quoted\"", "a,b", "100%"};
  std::mt19937 rng(5);
  std::vector<std::string> out;
  for (int r = 0; r < 600; ++r) {
    std::string s;
    const int n = 4 + static_cast<int>(rng() % 10);
    for (int w = 0; w < n; ++w) {
      if (w) s += (rng() % 6 == 0) ? "\n" : " ";
      s += words[rng() % std::size(words)];
    }
    out.push_back(s);
  }
  return out;
}

// A one-layer llama whose vocabulary is the tokenizer's, written as an HF folder (config,
// tokenizer.model, tokenizer_config.json) plus its tensors in memory.
struct SpmFolder {
  arq::test::ExportTempDir tmp;
  std::string folder = tmp / "spm-bpe";
  std::shared_ptr<models::MapSource> src = std::make_shared<models::MapSource>();
  io::JsonValue config = io::JsonValue::object();

  SpmFolder() {
    fs::create_directories(folder);
    const std::string proto = models::train_spm_model(training_records(), {.vocab_size = kVocab});
    models::write_spm_model(proto, folder + "/tokenizer.model");
    models::write_tokenizer_config(folder, 256);
    uint32_t seed = 1;
    src->put("model.embed_tokens.weight", randn({kVocab, kH}, seed++));
    src->put("model.norm.weight", randn({kH}, seed++));
    src->put("lm_head.weight", randn({kVocab, kH}, seed++));
    const std::string p = "model.layers.0.";
    src->put(p + "input_layernorm.weight", randn({kH}, seed++));
    src->put(p + "post_attention_layernorm.weight", randn({kH}, seed++));
    for (const char* n : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"})
      src->put(p + n + ".weight", randn({kH, kH}, seed++));
    src->put(p + "mlp.gate_proj.weight", randn({kI, kH}, seed++));
    src->put(p + "mlp.up_proj.weight", randn({kI, kH}, seed++));
    src->put(p + "mlp.down_proj.weight", randn({kH, kI}, seed++));
    config.set("architectures", io::JsonValue::array({"LlamaForCausalLM"}))
        .set("model_type", "llama")
        .set("hidden_size", kH)
        .set("intermediate_size", kI)
        .set("num_hidden_layers", 1)
        .set("num_attention_heads", kHeads)
        .set("num_key_value_heads", kHeads)
        .set("vocab_size", kVocab)
        .set("max_position_embeddings", 256)
        .set("rms_norm_eps", 1e-5)
        .set("rope_theta", 10000.0)
        .set("tie_word_embeddings", false);
  }

  // Exports gguf:q8_0 from the FP tensors and returns the .gguf path.
  std::string export_gguf() {
    static const std::map<std::string, quant::QuantizedLinear> none;
    quant::ExportSource es;
    es.model_folder = folder;
    es.tensors = src;
    es.quantized = &none;
    es.scheme = quant::QuantScheme{.bits = 8, .group_size = 32, .sym = true};
    es.tuning.iters = 0;
    es.config = config;
    const quant::ExportResult r = quant::export_model(es, "gguf:q8_0", {.output_folder = tmp / "gguf"});
    REQUIRE(r.folders.size() == 1);
    for (const auto& e : fs::directory_iterator(r.folders[0]))
      if (e.path().extension() == ".gguf") return e.path().string();
    FAIL("export wrote no .gguf file in " << r.folders[0]);
    return {};
  }
};

std::string random_text(std::mt19937& rng) {
  static const std::string parts[] = {"the", " fox", "jumps", " ", "  ", "\n", "\n\n", "\t", "42", "3.14", "!", ",",
                                      "(yes)", "caf\xC3\xA9", "na\xC3\xAFve", "\xEF\xBD\x86\xEF\xBD\x95\xEF\xBD\x8C\xEF\xBD\x8C",
                                      "\xE2\x91\xA0", "\xE6\xB1\x89", "\xF0\x9F\x98\x80", "\x7F", "Hello", "world",
                                      "zzz", "\"", "100%", " \n "};
  std::string s;
  const int n = static_cast<int>(rng() % 14);
  for (int k = 0; k < n; ++k) s += parts[rng() % std::size(parts)];
  return s;
}

}  // namespace

TEST_CASE("gguf tokenizer: sentencepiece BPE (nmt_nfkc, no byte fallback) exported to GGUF keeps its ids") {
  SpmFolder m;
  const std::string gguf = m.export_gguf();

  // The metadata: SPM vocabulary with scores, the model's normalizer flags and rule table.
  io::GgufFile g = io::GgufFile::open(gguf);
  const io::GgufMetadata& md = g.metadata();
  CHECK(md.get_string("tokenizer.ggml.model") == "llama");
  CHECK(md.get_strings("tokenizer.ggml.tokens").size() == static_cast<size_t>(kVocab));
  io::SpmTokenizer spm(m.folder + "/tokenizer.model");
  const io::SpmTokenizer::NormalizerFlags nf = spm.normalizer_flags();
  CHECK(nf.name == "nmt_nfkc");
  REQUIRE(!nf.precompiled_charsmap.empty());
  const io::GgufVocab v = io::gguf_vocab_from_metadata(md);
  CHECK(v.precompiled_charsmap == nf.precompiled_charsmap);
  CHECK(v.remove_extra_whitespaces == std::optional<bool>(true));
  CHECK(v.add_space_prefix == std::optional<bool>(true));
  CHECK(spm.piece_to_id("<0x0A>") == -1);   // no byte pieces: '\n' has no piece of its own

  const auto hf = io::load_tokenizer(m.folder);   // libsentencepiece: the reference
  const auto gg = io::load_tokenizer_gguf(gguf);  // SPM-by-score over the GGUF metadata
  CHECK(std::string(hf->kind()) == "sentencepiece");
  CHECK(std::string(gg->kind()) == "spm-score");

  const std::string text =
      "Hello, world!  It's 2024.\n\tThe quick brown fox (yes) jumps over 3.14 lazy dogs -- 100% sure?\n\n"
      "  caf\xC3\xA9 na\xC3\xAFve \xEF\xBD\x86\xEF\xBD\x95\xEF\xBD\x8C\xEF\xBD\x8C-width \xE2\x91\xA0 \xE6\xB1\x89\xE5\xAD\x97"
      " \xF0\x9F\x98\x80\x7F end.   \n";
  const Ids want = hf->encode(text, false);
  const Ids got = gg->encode(text, false);
  CHECK(got == want);
  MESSAGE("nmt_nfkc BPE text: sentencepiece ", want.size(), " ids, GGUF ", got.size(), " ids");
  CHECK(gg->encode(text) == hf->encode(text));    // BOS as both add it by default
  // Without the rule table '\n' and '\t' would be <unk>s (no byte pieces) where nmt_nfkc has spaces.
  const Ids layout = gg->encode("the\tfox\n\njumps \n", false);
  CHECK(layout == hf->encode("the fox jumps", false));
  CHECK(std::count(layout.begin(), layout.end(), hf->unk_id()) == 0);
  // A run of characters without a piece is one <unk>, as sentencepiece spells it.
  CHECK(gg->encode("fox \xE6\xB1\x89\xE5\xAD\x97\xF0\x9F\x98\x80 dog", false) ==
        hf->encode("fox \xE6\xB1\x89\xE5\xAD\x97\xF0\x9F\x98\x80 dog", false));

  // Varied snippets: the two paths agree on every one.
  std::mt19937 rng(11);
  int same = 0, shown = 0;
  const int n = 400;
  for (int i = 0; i < n; ++i) {
    const std::string t = random_text(rng);
    const Ids a = hf->encode(t, false), b = gg->encode(t, false);
    if (a == b) ++same;
    else if (shown++ < 3) CHECK_MESSAGE(a == b, "text \"", t, "\"");
  }
  CHECK(same == n);
}
