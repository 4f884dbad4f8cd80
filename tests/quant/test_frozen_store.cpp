// Frozen layers spilled to disk (quant/frozen_store.h) and the quantize job that streams through
// them: the store reads back exactly what was added; the job's outputs — every format, fake
// included — are byte-identical whether the frozen layers are spilled or kept in memory (the
// pre-spill path); the spill folder is gone after success and after a failure.
#include <doctest/doctest.h>

#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "io/json_util.h"
#include "models/family.h"
#include "models/random_model.h"
#include "quant/frozen_store.h"
#include "quant/pipeline.h"
#include "quant/qdq.h"
#include "tests/temp_dir.h"

using namespace arq;
using namespace arq::quant;
namespace fs = std::filesystem;

namespace {

using arq::test::TempDir;

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  const Tensor x = a.contiguous(), y = b.contiguous();
  return x.dtype() == y.dtype() && x.shape() == y.shape() && std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()) == 0;
}

Tensor randn(Shape s, uint64_t seed) {
  Tensor t = Tensor::empty(s, DType::f32);
  uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;
  for (int64_t i = 0; i < t.numel(); ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    t.data<float>()[i] = static_cast<float>(static_cast<int64_t>(x % 2001) - 1000) / 1000.f;
  }
  return t;
}

// A byte-level BPE tokenizer (ids 0..255 = bytes, 256 = <s>) so the job can build calibration
// samples and evaluate without ../shared.
void write_tokenizer(const std::string& dir) {
  auto jstr = [](const std::string& s) {
    std::string o = "\"";
    for (unsigned char c : s) {
      if (c == '"' || c == '\\') { o += '\\'; o += static_cast<char>(c); }
      else if (c < 0x20) { char b[8]; std::snprintf(b, sizeof b, "\\u%04x", c); o += b; }
      else o += static_cast<char>(c);
    }
    return o + "\"";
  };
  // GPT-2's byte → code point table: printable Latin-1 bytes map to themselves, the rest to 256+.
  std::string vocab;
  int extra = 0;
  for (int b = 0; b < 256; ++b) {
    const bool keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    const uint32_t cp = keep ? static_cast<uint32_t>(b) : 256u + static_cast<uint32_t>(extra++);
    std::string u;
    if (cp < 0x80) u += static_cast<char>(cp);
    else { u += static_cast<char>(0xC0 | (cp >> 6)); u += static_cast<char>(0x80 | (cp & 0x3F)); }
    vocab += jstr(u) + ":" + std::to_string(b) + ",";
  }
  vocab += "\"<s>\":256";
  const std::string json = R"({"version":"1.0","added_tokens":[
      {"id":256,"content":"<s>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],
    "normalizer":null,
    "pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":false},
    "post_processor":null,"decoder":{"type":"ByteLevel"},
    "model":{"type":"BPE","ignore_merges":false,"vocab":{)" + vocab + R"(},"merges":[]}})";
  io::write_text_file_atomic((fs::path(dir) / "tokenizer.json").string(), json);
  io::write_text_file_atomic((fs::path(dir) / "tokenizer_config.json").string(), R"({"bos_token":"<s>","add_bos_token":true})");
}

// A small untied llama in bf16 with every dimension a multiple of 32 (so all linears quantize),
// saved as an HF folder with a tokenizer; plus calibration / evaluation text.
struct TinyJobModel {
  TempDir dir{"model"};
  std::string model, calib, eval;
  TinyJobModel() {
    models::DecoderSpec s = models::tiny_spec("llama");
    s.vocab_size = 288;   // a multiple of 32: lm_head quantizes too
    s.hidden_size = 64;
    s.intermediate_size = 128;
    s.num_attention_heads = 4;
    s.num_key_value_heads = 2;
    s.head_dim = 16;
    s.rope.dim = 16;
    s.tie_word_embeddings = false;
    model = dir / "tiny-llama";
    models::CausalLM lm = models::random_causal_lm(s, {.seed = 11, .dtype = DType::bf16, .norm_jitter = 0.1});
    models::save_pretrained(lm, model);
    write_tokenizer(model);
    std::string text;
    for (int i = 0; i < 40; ++i) text += "once upon a time " + std::to_string(i * 7919 % 1000) + " a cat sat on the mat.\n\n";
    calib = dir / "calib.txt";
    eval = dir / "eval.txt";
    io::write_text_file_atomic(calib, text);
    io::write_text_file_atomic(eval, text.substr(0, 600));
  }
};

QuantizeJob tiny_job(const TinyJobModel& m, const std::string& out, const std::string& format) {
  QuantizeJob job;
  job.model = m.model;
  job.output_dir = out;
  job.format = format;
  job.dataset = m.calib + ":concat=true";
  job.nsamples = 4;
  job.seqlen = 32;
  job.pipeline.scheme = {.bits = 4, .group_size = 32};
  job.pipeline.iters = 2;
  job.pipeline.batch_size = 2;
  return job;
}

// Every file under a folder, relative path -> bytes; quantization_log.json without its timings.
std::map<std::string, std::string> folder_bytes(const fs::path& root) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    if (!e.is_regular_file()) continue;
    std::string bytes = slurp(e.path());
    if (e.path().filename() == "quantization_log.json")
      bytes = std::regex_replace(bytes, std::regex("\"seconds\": [-+0-9.eE]+"), "\"seconds\": 0");
    out[fs::relative(e.path(), root).string()] = std::move(bytes);
  }
  return out;
}

std::vector<std::string> spill_leftovers(const fs::path& dir) {
  std::vector<std::string> out;
  if (!fs::exists(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".arq-spill-") != std::string::npos) out.push_back(e.path().string());
  return out;
}

}  // namespace

TEST_CASE("frozen store: layers read back bit for bit; folder removed with the store") {
  TempDir tmp("store");
  const std::string dir = tmp / "spill";
  std::map<std::string, QuantizedLinear> ref;
  {
    FrozenStore store(dir);
    CHECK(fs::is_directory(dir));
    for (int64_t block = 0; block < 3; ++block) {
      std::map<std::string, QuantizedLinear> layers;
      for (const char* n : {"q_proj", "down_proj"}) {
        const std::string name = cat("model.layers.", block, ".", n);
        // odd shapes, per-group / per-channel / asym, padded last group
        const QuantScheme s{.bits = static_cast<int>(2 + block), .group_size = block == 1 ? -1 : 32, .sym = block != 2};
        QuantizedLinear q = quantize_rtn(randn({5 + block, 70}, static_cast<uint64_t>(block * 10 + n[0])).to(DType::bf16), s);
        q.name = name;
        ref[name] = q;
        layers[name] = q;
      }
      const size_t written = store.add(block, std::move(layers));
      CHECK(written > 0);
      CHECK(layers.empty());
    }
    CHECK(store.bytes_on_disk() > 0);
    std::vector<std::string> expect;
    for (const auto& [n, q] : ref) expect.push_back(n);
    CHECK(store.names() == expect);
    CHECK(store.info("model.layers.9.q_proj") == nullptr);
    CHECK_THROWS_AS(store.load("model.layers.9.q_proj"), IoError);
    for (const auto& [n, q] : ref) {
      INFO(n);
      const QuantizedLinear* info = store.info(n);
      REQUIRE(info != nullptr);
      CHECK(info->bits == q.bits);
      CHECK(info->sym == q.sym);
      CHECK(info->layout.group_size == q.layout.group_size);
      CHECK(info->weight_dtype == q.weight_dtype);
      CHECK_FALSE(info->codes.defined());   // metadata only
      const QuantizedLinear back = store.load(n);
      CHECK(same_bytes(back.codes, q.codes));
      CHECK(same_bytes(back.scales, q.scales));
      CHECK(same_bytes(back.zeros, q.zeros));
      CHECK(same_bytes(dequantize(back), dequantize(q)));
    }
    // A layer stored twice is a caller bug the store refuses.
    std::map<std::string, QuantizedLinear> again{{"model.layers.0.q_proj", ref.at("model.layers.0.q_proj")}};
    CHECK_THROWS_AS(store.add(7, std::move(again)), UsageError);
    // The in-memory view serves the same layers.
    const MapFrozenLayers view(ref);
    CHECK(view.names() == expect);
    CHECK(same_bytes(view.load("model.layers.1.down_proj").codes, ref.at("model.layers.1.down_proj").codes));
  }
  CHECK_FALSE(fs::exists(dir));
  // An uncreatable folder (a regular file in the way) is an IoError naming it.
  io::write_text_file_atomic(tmp / "file", "x");
  try {
    FrozenStore bad(tmp / "file/spill");
    FAIL("expected IoError");
  } catch (const IoError& e) {
    CHECK(std::string(e.what()).find("file/spill") != std::string::npos);
  }
}

TEST_CASE("quantize job: spilled frozen layers give byte-identical outputs in every format") {
  const TinyJobModel m;
  struct Case {
    const char* format;
    QuantScheme scheme;
    int64_t iters;
    bool lm_head;
    bool eval;
  };
  const Case cases[] = {
      {"auto_round,auto_gptq,auto_awq", {.bits = 4, .group_size = 32}, 2, true, false},
      {"gguf:q4_k_m", {.bits = 4, .group_size = 32}, 2, false, true},
      {"fake", {.bits = 4, .group_size = 32}, 2, true, true},
      {"auto_round,auto_gptq", {.bits = 3, .group_size = 32, .sym = false}, 0, false, false},
      {"auto_round", {.bits = 2, .group_size = -1}, 0, false, true},
  };
  for (const Case& c : cases) {
    const std::string what = cat(c.format, " ", c.scheme.str());
    CAPTURE(what);
    TempDir spilled("spilled"), in_memory("memory");
    QuantizeJobResult r[2];
    for (int i = 0; i < 2; ++i) {
      QuantizeJob job = tiny_job(m, i == 0 ? spilled.str() : in_memory.str(), c.format);
      job.pipeline.scheme = c.scheme;
      job.pipeline.iters = c.iters;
      job.pipeline.quant_lm_head = c.lm_head;
      if (c.eval) job.eval_text = m.eval;
      job.spill_frozen = i == 0;
      r[i] = run_quantize_job(job);
    }
    CHECK(r[0].n_quantized_layers == r[1].n_quantized_layers);
    CHECK(r[0].n_quantized_layers >= 14);
    CHECK(r[0].pipeline.spill_bytes > 0);
    CHECK(r[1].pipeline.spill_bytes == 0);
    CHECK(r[1].pipeline.quantized.size() == static_cast<size_t>(r[1].n_quantized_layers));
    CHECK(r[0].pipeline.quantized.empty());   // streamed: nothing kept
    CHECK(r[0].pipeline.weights.empty());
    CHECK(r[0].pipeline.frozen_block_bytes > 0);
    CHECK(r[0].pipeline.expected_peak_bytes() >= r[0].pipeline.max_block_bytes + r[0].pipeline.cache_bytes);
    if (c.eval) {
      CHECK(r[0].eval_tokens > 0);
      CHECK(r[0].q_ppl == r[1].q_ppl);   // the same files read back
      CHECK(r[0].fp_ppl == r[1].fp_ppl);
    }
    const auto a = folder_bytes(spilled.path()), b = folder_bytes(in_memory.path());
    REQUIRE(a.size() == b.size());
    CHECK(a.size() >= 2);
    for (const auto& [rel, bytes] : a) {
      INFO(rel);
      auto it = b.find(rel);
      REQUIRE(it != b.end());
      CHECK(bytes == it->second);
    }
    CHECK(spill_leftovers(spilled.path()).empty());
  }
}

TEST_CASE("quantize job: the spill folder is removed when the export fails") {
  const TinyJobModel m;
  TempDir out("fail");
  // A 3-bit layer in an AWQ export passes the scheme check before tuning (4 bits) and fails on
  // the real layers at export time, after every block was spilled.
  QuantizeJob job = tiny_job(m, out.str(), "auto_awq");
  job.pipeline.layer_config = LayerConfig::parse("{\"model.layers.1.mlp.up_proj\":{\"bits\":3}}");
  bool spilled_any = false;
  job.pipeline.log = [&](const std::string&) { spilled_any = spilled_any || !spill_leftovers(out.path()).empty(); };
  CHECK_THROWS_AS(run_quantize_job(job), UsageError);
  CHECK(spilled_any);   // the folder existed while blocks were quantized ...
  CHECK(spill_leftovers(out.path()).empty());   // ... and is gone after the failure
  for (const auto& e : fs::directory_iterator(out.path())) FAIL("left behind: " << e.path());

  // An output location that cannot be written (a file where a folder should be): a clear
  // IoError before any block is tuned, nothing left beside it.
  io::write_text_file_atomic(out / "blocker", "x");
  QuantizeJob bad = tiny_job(m, out / "blocker/sub", "auto_round");
  CHECK_THROWS_AS(run_quantize_job(bad), IoError);
  for (const auto& e : fs::directory_iterator(out.path())) CHECK(e.path().filename() == "blocker");
}
