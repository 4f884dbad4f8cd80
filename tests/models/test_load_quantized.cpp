// Quantized checkpoints through load_causal_lm (suite model): a random llama is RTN-quantized,
// exported with quant::export_model to auto_round / auto_gptq / auto_awq folders and to GGUF
// q8_0 / q4_k_m files, loaded back with load_causal_lm, and its logits compared with a model
// built in memory from weights dequantized independently of the loader: the quantizer's own
// `dequantize` for HF packs, `ggml_quantize` → `ggml_dequantize` of the original rows for GGUF.
// With shared/: stories260k exported to GGUF q8_0 and auto_gptq stays close to the FP model.
#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <unistd.h>

#include "engine/ops.h"
#include "io/ggml_blocks.h"
#include "io/gguf.h"
#include "models/family.h"
#include "models/loader.h"
#include "models/random_model.h"
#include "quant/export.h"
#include "quant/qdq.h"

using namespace arq;
using namespace arq::models;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    static std::atomic<int> n{0};
    path = fs::temp_directory_path() / cat("arq-loadq-", getpid(), "-", n++);
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string operator/(const std::string& s) const { return (path / s).string(); }
};

// hidden 64 and intermediate 256: group size 32 fits every linear; in GGUF q4_k_m the 256-wide
// ffn_down rows take k-quants (q4_K / q6_K) and the 64-wide rows fall back to q5_0 / q8_0.
DecoderSpec quant_spec() {
  DecoderSpec s = tiny_spec("llama");
  s.hidden_size = 64;
  s.intermediate_size = 256;
  s.num_attention_heads = 4;
  s.num_key_value_heads = 2;
  s.head_dim = 16;
  s.rope.dim = 16;
  s.tie_word_embeddings = false;
  return s;
}

quant::ExportOptions export_to(const std::string& folder) {
  quant::ExportOptions o;
  o.output_folder = folder;
  return o;
}

Tensor test_ids() {
  std::vector<double> v;
  for (int i = 0; i < 2 * 13; ++i) v.push_back(static_cast<double>((i * 37 + 5) % 96));
  return from_vector(v, {2, 13}, DType::i64);   // [2, 13]
}

// max |a − b| / max |b|.
double rel_diff(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = to_vector(a), y = to_vector(b);
  REQUIRE(x.size() == y.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    num = std::max(num, std::fabs(x[i] - y[i]));
    den = std::max(den, std::fabs(y[i]));
  }
  return num / den;
}

struct QuantFixture {
  DecoderSpec spec = quant_spec();
  std::shared_ptr<MapSource> fp = random_weights(spec, {.seed = 11});
  std::map<std::string, quant::QuantizedLinear> quantized;
  TempDir tmp;
  std::string src_folder = tmp / "src";

  explicit QuantFixture(const quant::QuantScheme& s) {
    save_pretrained(CausalLM(spec, fp), src_folder);   // config.json for the exporter
    for (const std::string& n : fp->names()) {
      if (n.find("model.layers.") != 0 || n.find("_proj.weight") == std::string::npos) continue;
      quant::QuantizedLinear q = quant::quantize_rtn(fp->get(n), s);
      q.name = n.substr(0, n.size() - 7);
      quantized[q.name] = q;
    }
  }
  quant::ExportSource source(const quant::QuantScheme& s) const {
    quant::ExportSource src;
    src.model_folder = src_folder;
    src.tensors = fp;
    src.quantized = &quantized;
    src.scheme = s;
    src.tuning.iters = 0;
    return src;
  }
  Tensor fp_logits() const { return CausalLM(spec, fp, {.dtype = DType::f32}).forward(test_ids()); }
};

// The 1e-4 bound: the loaded model and the reference hold the same f32 weights and run the same
// ops in the same order, so their logits agree to rounding noise (they are in fact identical);
// RTN at 4 bits moves these logits by ~1e-2 relative, so a wrong or unquantized tensor fails.
constexpr double kSameModel = 1e-4, kQuantShift = 1e-3;

}  // namespace

TEST_CASE("load_causal_lm: auto_round / auto_gptq / auto_awq folders give the dequantized model's logits") {
  for (bool sym : {true, false}) {
    CAPTURE(sym);
    const quant::QuantScheme s{.bits = 4, .group_size = 32, .sym = sym};
    QuantFixture fx(s);
    const std::string fmt = sym ? "auto_round,auto_gptq,auto_awq" : "auto_round,auto_awq";
    const quant::ExportResult r = quant::export_model(fx.source(s), fmt, export_to(fx.tmp / "out"));
    REQUIRE(r.folders.size() == (sym ? 3u : 2u));
    const Tensor fp_logits = fx.fp_logits();
    for (const std::string& dir : r.folders) {
      INFO("folder " << dir);
      CausalLM lm = load_causal_lm(dir, {.dtype = DType::f32});
      const auto* store_src = dynamic_cast<const StoreSource*>(&lm.source());
      REQUIRE(store_src != nullptr);
      REQUIRE(store_src->packed() != nullptr);
      const std::vector<std::string> names = lm.source().names();
      CHECK(std::find(names.begin(), names.end(), "model.layers.0.self_attn.q_proj.weight") != names.end());
      CHECK(std::find(names.begin(), names.end(), "model.layers.0.self_attn.q_proj.qweight") == names.end());
      // Reference: the quantizer's dequantized weights; other tensors as the folder stores them.
      auto ref = std::make_shared<MapSource>();
      for (const std::string& n : fx.fp->names()) {
        auto it = fx.quantized.find(n.size() > 7 ? n.substr(0, n.size() - 7) : n);
        if (it != fx.quantized.end()) {
          CHECK(store_src->packed()->is_packed(n));
          ref->put(n, quant::dequantize(it->second, DType::f32));
        } else {
          REQUIRE(lm.source().has(n));
          ref->put(n, fx.fp->get(n).to(lm.source().get(n).dtype()).to(DType::f32));
        }
      }
      const Tensor want = CausalLM(fx.spec, ref, {.dtype = DType::f32}).forward(test_ids());
      const Tensor got = lm.forward(test_ids());
      CHECK(rel_diff(got, want) <= kSameModel);
      CHECK(rel_diff(got, fp_logits) > kQuantShift);   // the packed weights were really used
    }
  }
}

TEST_CASE("load_causal_lm: GGUF q8_0 / q4_k_m files give the dequantized model's logits") {
  const quant::QuantScheme s{.bits = 4, .group_size = 32, .sym = true};
  QuantFixture fx(s);
  const Tensor fp_logits = fx.fp_logits();
  for (const std::string preset : {"q8_0", "q4_k_m"}) {
    CAPTURE(preset);
    const std::string out = fx.tmp / ("gguf-" + preset);
    quant::export_model(fx.source(s), "gguf:" + preset, export_to(out));
    std::string path;
    for (const auto& e : fs::directory_iterator(out))
      if (e.path().extension() == ".gguf") path = e.path().string();
    REQUIRE(!path.empty());
    const io::GgufFile g = io::GgufFile::open(path);
    // Reference: each original HF row block-quantized to the type the file holds and decoded
    // (rows quantize independently, so GGUF's Q/K row permutation does not change the values).
    auto ref = std::make_shared<MapSource>();
    std::set<std::string> types;
    for (const std::string& n : fx.fp->names()) {
      const io::GgufTensorInfo* info = g.find(GgufSource::gguf_name(n));
      REQUIRE_MESSAGE(info != nullptr, n);
      const io::GgmlType t = static_cast<io::GgmlType>(info->ggml_type);
      types.insert(io::ggml_type_name(t));
      const Tensor w = fx.fp->get(n);
      if (t == io::GgmlType::f32 || t == io::GgmlType::f16 || t == io::GgmlType::bf16) {
        const DType d = t == io::GgmlType::f32 ? DType::f32 : t == io::GgmlType::f16 ? DType::f16 : DType::bf16;
        ref->put(n, w.to(d).to(DType::f32));
      } else {
        const std::vector<uint8_t> bytes = io::ggml_quantize(w, t);
        ref->put(n, io::ggml_dequantize(bytes.data(), bytes.size(), t, w.shape()));
      }
    }
    std::string type_list;
    for (const std::string& t : types) type_list += t + " ";
    MESSAGE(preset, " tensor types: ", type_list);
    if (std::string(preset) == "q4_k_m") CHECK((types.count("q4_K") + types.count("q6_K")) > 0);
    CausalLM lm = load_causal_lm(path, {.dtype = DType::f32});
    const Tensor want = CausalLM(fx.spec, ref, {.dtype = DType::f32}).forward(test_ids());
    const Tensor got = lm.forward(test_ids());
    CHECK(rel_diff(got, want) <= kSameModel);
    if (std::string(preset) == "q4_k_m") CHECK(rel_diff(got, fp_logits) > kQuantShift);
    // Without a compute dtype, a quantized embedding table computes in f32.
    CHECK(load_causal_lm(path).dtype() == DType::f32);
  }
}

TEST_CASE("load_causal_lm: stories260k exported to GGUF q8_0 stays close to the FP model") {
  const char* env = std::getenv("ARQ_SHARED_DIR");
  const std::string folder = env ? std::string(env) + "/models/stories260k" : "";
  if (folder.empty() || !fs::exists(folder + "/config.json")) {
    MESSAGE("SKIP: ARQ_SHARED_DIR/models/stories260k not found");
    return;
  }
  CausalLM fp = load_causal_lm(folder);
  TempDir tmp;
  quant::ExportSource src;
  src.model_folder = folder;
  src.tensors = fp.source_ptr();
  std::map<std::string, quant::QuantizedLinear> none;
  src.quantized = &none;
  src.scheme = {.bits = 8, .group_size = 32, .sym = true};
  src.tuning.iters = 0;
  quant::export_model(src, "gguf:q8_0", export_to(tmp / "g"));
  std::string path;
  for (const auto& e : fs::directory_iterator(tmp / "g"))
    if (e.path().extension() == ".gguf") path = e.path().string();
  REQUIRE(!path.empty());
  CausalLM q = load_causal_lm(path);
  std::vector<double> v = {1, 403, 407, 261, 378, 434, 267, 395, 299, 378};
  const Tensor ids = from_vector(v, {1, static_cast<int64_t>(v.size())}, DType::i64);
  // q8_0 (tied embeddings and lm_head included) moves this model's logits by ~2e-2 of their
  // largest magnitude (measured 1.97e-2); 5e-2 catches a broken dequantizer or a Q/K row-order
  // mistake (those move logits by O(1)), and exact equality would mean nothing was quantized.
  const double d = rel_diff(q.forward(ids), fp.forward(ids));
  MESSAGE("stories260k q8_0 vs f32 logits: rel diff ", d);
  CHECK(d < 5e-2);
  CHECK(d > 0);
  // The tokenizer travels in the GGUF metadata.
  auto tok = load_model_tokenizer(path);
  CHECK(tok->vocab_size() == 512);
}
