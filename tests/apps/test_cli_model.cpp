// `ar-quant make-model` and `ar-quant inspect` as subprocesses: the config written equals the
// one read, weights have the requested dtype and statistics, inspect reports what is on disk
// (parameter count computed here from the shapes) and fails with status 1 naming a damaged file.
#include <doctest/doctest.h>

#include <cmath>
#include <regex>

#include "engine/tensor.h"
#include "io/gguf_write.h"
#include "io/json_util.h"
#include "io/safetensors.h"
#include "tests/apps/cli_test_util.h"

using namespace arq::cli_test;
using arq::io::JsonValue;

namespace {

// Equal as JSON values; numbers compare by value (1e6 == 1000000.0), objects ignore key order.
bool json_equal(const JsonValue& a, const JsonValue& b) {
  using K = JsonValue::Kind;
  auto numeric = [](K k) { return k == K::integer || k == K::uinteger || k == K::number; };
  if (numeric(a.kind()) && numeric(b.kind())) return a.as_double() == b.as_double();
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case K::object:
      if (a.items().size() != b.items().size()) return false;
      for (const auto& [k, v] : a.items()) {
        const JsonValue* w = b.find(k);
        if (w == nullptr || !json_equal(v, *w)) return false;
      }
      return true;
    case K::array:
      if (a.elements().size() != b.elements().size()) return false;
      for (size_t i = 0; i < a.elements().size(); ++i)
        if (!json_equal(a.elements()[i], b.elements()[i])) return false;
      return true;
    default: return a.dump() == b.dump();
  }
}

JsonValue read_json(const fs::path& p) { return arq::io::parse_json(slurp(p), p.string()); }

void truncate_copy(const fs::path& from, const fs::path& to, size_t keep) {
  const std::string bytes = slurp(from);
  REQUIRE(keep < bytes.size());
  spit(to, bytes.substr(0, keep));
}

// Parameters of a Llama with these sizes, from the equations (q, k, v, o, gate, up, down,
// two norms per layer; embedding, final norm, untied lm_head).
int64_t llama_params(int64_t V, int64_t H, int64_t I, int64_t L, int64_t nh, int64_t nkv, int64_t hd) {
  const int64_t attn = H * nh * hd + 2 * H * nkv * hd + nh * hd * H;
  const int64_t mlp = 3 * H * I;
  return V * H + L * (attn + mlp + 2 * H) + H + V * H;
}

// "1,234,567" (v >= 0), as inspect prints counts.
std::string grouped(int64_t v) {
  const std::string d = std::to_string(v);
  std::string s;
  for (size_t i = 0; i < d.size(); ++i) {
    if (i > 0 && (d.size() - i) % 3 == 0) s += ',';
    s += d[i];
  }
  return s;
}

}  // namespace

TEST_CASE("make-model --config: config round trip, dtype, std and norms, tokenizer copy") {
  TempDir dir("make_model");
  // Fields of several kinds: ints, floats, a nested rope_scaling, a list, a key ar-quant does not model.
  const std::string config = R"({
    "model_type": "qwen3", "vocab_size": 320, "hidden_size": 64, "intermediate_size": 96,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 24,
    "max_position_embeddings": 512, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
    "rope_scaling": {"rope_type": "linear", "factor": 2.0}, "tie_word_embeddings": false,
    "bos_token_id": 1, "eos_token_id": [2, 3], "initializer_range": 0.05,
    "architectures": ["Qwen3ForCausalLM"], "hidden_act": "silu", "my_custom_note": "kept as is"
  })";
  spit(dir.path / "in.json", config);
  fs::create_directories(dir.path / "tok");
  spit(dir.path / "tok" / "tokenizer.json", "{\"model\": {}}");   // copied, not parsed
  spit(dir.path / "tok" / "tokenizer_config.json", "{\"add_bos_token\": false}");
  const std::string out = dir / "model";
  const RunResult r = run_arq({"make-model", "--config", dir / "in.json", "--output_dir", out, "--seed", "5",
                               "--dtype", "bf16", "--tokenizer", dir / "tok"});
  REQUIRE_MESSAGE(r.status == 0, r.err);

  SUBCASE("every field read is written back, torch_dtype follows --dtype") {
    const JsonValue in = arq::io::parse_json(config, "in.json"), written = read_json(fs::path(out) / "config.json");
    for (const auto& [k, v] : in.items()) {
      CAPTURE(k);
      const JsonValue* w = written.find(k);
      REQUIRE(w != nullptr);
      CHECK_MESSAGE(json_equal(v, *w), v.dump(), " != ", w->dump());
    }
    const JsonValue* dt = written.find("torch_dtype");
    REQUIRE(dt != nullptr);
    CHECK(dt->as_string() == "bfloat16");
  }

  SUBCASE("tokenizer files are copied byte for byte") {
    CHECK(slurp(fs::path(out) / "tokenizer.json") == slurp(dir.path / "tok" / "tokenizer.json"));
    CHECK(slurp(fs::path(out) / "tokenizer_config.json") == slurp(dir.path / "tok" / "tokenizer_config.json"));
  }

  SUBCASE("weights: bf16, N(0, initializer_range), norms exactly 1, shapes from the config") {
    const auto f = arq::io::SafetensorsFile::open((fs::path(out) / "model.safetensors").string());
    int n_linear = 0, n_norm = 0;
    for (const auto& t : f.tensors()) {
      CAPTURE(t.name);
      CHECK(t.dtype == arq::io::StDType::BF16);
      const arq::Tensor x = f.tensor(t.name).to(arq::DType::f32).contiguous();
      const float* p = x.data<float>();
      const int64_t n = x.numel();
      if (t.name.find("norm") != std::string::npos) {
        ++n_norm;
        for (int64_t i = 0; i < n; ++i) REQUIRE(p[i] == 1.0f);
        continue;
      }
      ++n_linear;
      double s = 0, s2 = 0;
      for (int64_t i = 0; i < n; ++i) {
        s += p[i];
        s2 += static_cast<double>(p[i]) * p[i];
      }
      const double mean = s / static_cast<double>(n), sd = std::sqrt(s2 / static_cast<double>(n) - mean * mean);
      // For n normal samples the sample std has relative standard error 1/sqrt(2n) and the mean
      // standard error std/sqrt(n); 6 of those, plus bf16 rounding (relative 2^-9 per value,
      // unbiased), gives a bound a correct generator misses with negligible probability.
      const double rel = 6.0 / std::sqrt(2.0 * static_cast<double>(n)) + 1.0 / 512;
      CHECK(std::abs(sd / 0.05 - 1.0) < rel);
      CHECK(std::abs(mean) < 6.0 * 0.05 / std::sqrt(static_cast<double>(n)));
    }
    CHECK(n_norm == 2 * 2 + 2 * 2 + 1);   // input/post-attention + q/k norms per layer, final norm
    CHECK(n_linear == 1 + 2 * 7 + 1);      // embedding, 7 linears per layer, lm_head
    CHECK(f.info("model.layers.1.self_attn.q_proj.weight").shape == arq::Shape{4 * 24, 64});
    CHECK(f.info("model.layers.0.self_attn.k_norm.weight").shape == arq::Shape{24});
    CHECK(f.info("lm_head.weight").shape == arq::Shape{320, 64});
  }

  SUBCASE("the same seed gives the same bytes, another seed other bytes") {
    const std::string again = dir / "again", other = dir / "other";
    REQUIRE(run_arq({"make-model", "--config", dir / "in.json", "--output_dir", again, "--seed", "5", "--dtype", "bf16"}).status == 0);
    REQUIRE(run_arq({"make-model", "--config", dir / "in.json", "--output_dir", other, "--seed", "6", "--dtype", "bf16"}).status == 0);
    CHECK(slurp(fs::path(again) / "model.safetensors") == slurp(fs::path(out) / "model.safetensors"));
    CHECK(slurp(fs::path(other) / "model.safetensors") != slurp(fs::path(out) / "model.safetensors"));
  }
}

TEST_CASE("make-model: the size flags still work; bad flags are usage errors") {
  TempDir dir("make_model_flags");
  const RunResult r = run_arq({"make-model", "--arch", "mistral", "--output_dir", dir / "m", "--hidden_size", "32",
                               "--intermediate_size", "48", "--num_hidden_layers", "1", "--num_attention_heads", "2",
                               "--num_key_value_heads", "1", "--vocab_size", "100", "--sliding_window", "8", "--dtype", "f16"});
  REQUIRE_MESSAGE(r.status == 0, r.err);
  const JsonValue c = read_json(dir.path / "m" / "config.json");
  CHECK(c.find("model_type")->as_string() == "mistral");
  CHECK(c.find("hidden_size")->as_int() == 32);
  CHECK(c.find("sliding_window")->as_int() == 8);
  CHECK(c.find("torch_dtype")->as_string() == "float16");
  const auto f = arq::io::SafetensorsFile::open((dir.path / "m" / "model.safetensors").string());
  CHECK(f.info("model.embed_tokens.weight").dtype == arq::io::StDType::F16);

  RunResult bad = run_arq({"make-model", "--output_dir", dir / "x", "--dtype", "f8"});
  CHECK(bad.status == 2);
  CHECK(bad.err.find("--dtype") != std::string::npos);
  bad = run_arq({"make-model", "--output_dir", dir / "x", "--hiden_size", "8"});
  CHECK(bad.status == 2);
  CHECK(bad.err.find("hidden_size") != std::string::npos);   // the suggestion
  spit(dir.path / "bad.json", R"({"model_type": "gpt_neox", "hidden_size": 8})");
  bad = run_arq({"make-model", "--config", dir / "bad.json", "--output_dir", dir / "x"});
  CHECK(bad.status == 1);
  CHECK(bad.err.find("gpt_neox") != std::string::npos);
}

TEST_CASE("inspect: a model made by make-model, then damaged copies") {
  TempDir dir("inspect");
  const std::string model = dir / "model";
  // V=128, H=64, I=96, L=2, nh=4, nkv=2, hd=16, untied
  const RunResult mk = run_arq({"make-model", "--arch", "llama", "--output_dir", model, "--vocab_size", "128",
                                "--hidden_size", "64", "--intermediate_size", "96", "--num_hidden_layers", "2",
                                "--num_attention_heads", "4", "--num_key_value_heads", "2"});
  REQUIRE_MESSAGE(mk.status == 0, mk.err);
  const int64_t params = llama_params(128, 64, 96, 2, 4, 2, 16);

  SUBCASE("folder: architecture, parameter count, dtypes, every tensor with its shape") {
    const RunResult r = run_arq({"inspect", model});
    REQUIRE_MESSAGE(r.status == 0, r.err);
    CHECK(r.out.find("architecture: llama (LlamaForCausalLM)") != std::string::npos);
    CHECK(line_with(r.out, "parameters:").find(grouped(params)) != std::string::npos);
    CHECK(r.out.find("F32 (21 tensors") != std::string::npos);   // 2 + 9 per layer + lm_head
    CHECK(r.out.find("model.safetensors: 21 tensors") != std::string::npos);
    const std::regex down(R"(^\s+model\.layers\.1\.mlp\.down_proj\.weight\s+F32\s+\[64, 96\]$)");
    const std::regex k(R"(^\s+model\.layers\.0\.self_attn\.k_proj\.weight\s+F32\s+\[32, 64\]$)");
    CHECK(std::regex_match(line_with(r.out, "layers.1.mlp.down_proj"), down));
    CHECK(std::regex_match(line_with(r.out, "layers.0.self_attn.k_proj"), k));
    // --summary leaves the tensor lines out; a single file works without its folder's config.
    CHECK(run_arq({"inspect", model, "--summary"}).out.find("down_proj") == std::string::npos);
    const RunResult file = run_arq({"inspect", (fs::path(model) / "model.safetensors").string()});
    REQUIRE_MESSAGE(file.status == 0, file.err);
    CHECK(line_with(file.out, "parameters:").find(grouped(params)) != std::string::npos);
  }

  SUBCASE("truncated safetensors: status 1, the message names the file") {
    const fs::path bad = dir.path / "bad";
    fs::create_directories(bad);
    fs::copy_file(fs::path(model) / "config.json", bad / "config.json");
    const size_t size = fs::file_size(fs::path(model) / "model.safetensors");
    truncate_copy(fs::path(model) / "model.safetensors", bad / "model.safetensors", size / 2);
    for (const std::string& target : {bad.string(), (bad / "model.safetensors").string()}) {
      const RunResult r = run_arq({"inspect", target});
      CHECK(r.status == 1);
      CHECK(r.err.find("error") != std::string::npos);
      CHECK(r.err.find((bad / "model.safetensors").string()) != std::string::npos);
      CHECK(r.out.find("parameters") == std::string::npos);   // nothing printed before the check
    }
    // Cut inside the 8-byte length and inside the header JSON.
    truncate_copy(fs::path(model) / "model.safetensors", bad / "model.safetensors", 5);
    CHECK(run_arq({"inspect", bad.string()}).status == 1);
    truncate_copy(fs::path(model) / "model.safetensors", bad / "model.safetensors", 100);
    const RunResult r = run_arq({"inspect", bad.string()});
    CHECK(r.status == 1);
    CHECK(r.err.find("model.safetensors") != std::string::npos);
  }

  SUBCASE("a missing path and a malformed config.json are errors too") {
    CHECK(run_arq({"inspect", dir / "nothing"}).status == 1);
    CHECK(run_arq({"inspect"}).status == 2);
    spit(fs::path(model) / "config.json", "{\"model_type\": ");
    const RunResult r = run_arq({"inspect", model});
    CHECK(r.status == 1);
    CHECK(r.err.find("config.json") != std::string::npos);
  }
}

TEST_CASE("inspect: GGUF files") {
  TempDir dir("inspect_gguf");
  const std::string path = dir / "tiny.gguf";
  arq::io::GgufMetadata md;
  md.set("general.architecture", arq::io::GgufValue::make_string("llama"));
  md.set("llama.block_count", arq::io::GgufValue::make_u32(1));
  md.set("tokenizer.ggml.tokens", arq::io::gguf_string_array({"a", "b", "c"}));
  std::vector<arq::io::GgufWriteTensor> ts(2);
  ts[0].decl = {"token_embd.weight", {4, 32}, arq::io::GgmlType::f32};
  ts[0].bytes.assign(4 * 32 * 4, 0);
  ts[1].decl = {"blk.0.attn_q.weight", {2, 64}, arq::io::GgmlType::q8_0};
  ts[1].bytes.assign(ts[1].decl.nbytes(), 0);
  arq::io::write_gguf(path, md, ts);

  const RunResult r = run_arq({"inspect", path});
  REQUIRE_MESSAGE(r.status == 0, r.err);
  CHECK(r.out.find("GGUF v3") != std::string::npos);
  CHECK(r.out.find("architecture: llama") != std::string::npos);
  CHECK(line_with(r.out, "tokenizer.ggml.tokens").find("[3 x string]") != std::string::npos);
  CHECK(line_with(r.out, "parameters:").find(grouped(4 * 32 + 2 * 64)) != std::string::npos);
  CHECK(std::regex_match(line_with(r.out, "attn_q"), std::regex(R"(^\s+blk\.0\.attn_q\.weight\s+Q8_0\s+\[2, 64\]$)")));
  CHECK(std::regex_match(line_with(r.out, "token_embd"), std::regex(R"(^\s+token_embd\.weight\s+F32\s+\[4, 32\]$)")));

  const std::string cut = dir / "cut.gguf";
  truncate_copy(path, cut, fs::file_size(path) - 100);   // into the last tensor (136 bytes of q8_0)
  const RunResult bad = run_arq({"inspect", cut});
  CHECK(bad.status == 1);
  CHECK(bad.err.find(cut) != std::string::npos);

  const std::string real = shared_path("models/stories260k.gguf");
  if (real.empty()) {
    MESSAGE("skipped the real GGUF: $ARQ_SHARED_DIR/models/stories260k.gguf is absent");
    return;
  }
  const RunResult s = run_arq({"inspect", real, "--summary"});
  REQUIRE_MESSAGE(s.status == 0, s.err);
  CHECK(s.out.find("48 tensors") != std::string::npos);
  CHECK(s.out.find("architecture: llama") != std::string::npos);
}

TEST_CASE("ar-quant runs with OpenMP's passive wait policy unless the user chose one") {
  // oneDNN's spinning OpenMP workers starve the engine's thread pool on a busy machine, so main()
  // re-executes itself with OMP_WAIT_POLICY=passive when it is unset (apps/main.cpp).
  const char* saved = std::getenv("OMP_WAIT_POLICY");
  const std::string keep = saved ? saved : "";
  unsetenv("OMP_WAIT_POLICY");
  const RunResult unset = run_arq({"selftest"});
  setenv("OMP_WAIT_POLICY", "active", 1);
  const RunResult chosen = run_arq({"selftest"});
  if (saved) setenv("OMP_WAIT_POLICY", keep.c_str(), 1);
  else unsetenv("OMP_WAIT_POLICY");
  CHECK(unset.status == 0);
  CHECK(line_with(unset.out, "openmp wait policy") == "openmp wait policy: passive");
  CHECK(chosen.status == 0);
  CHECK(line_with(chosen.out, "openmp wait policy") == "openmp wait policy: active");
}
