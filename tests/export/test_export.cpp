// Export folders: auto_round / auto_gptq / auto_awq written from a small in-memory llama, read
// back through io::PackedCheckpoint (dequantize on load) and compared bit for bit with the
// quantizer's own dequantized weights; quantization_config keys per format; GGUF export re-read
// by the GGUF reader; bad input (unknown format, AWQ 3-bit, existing/unwritable output).
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "export_test_util.h"
#include "io/ggml_blocks.h"
#include "io/gguf.h"
#include "io/pack_load.h"
#include "models/loader.h"
#include "models/tensor_source.h"
#include "quant/export.h"
#include "quant/export_gguf.h"
#include "quant/qdq.h"

using namespace arq;
using namespace arq::quant;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kH = 64, kI = 128, kV = 96, kL = 2, kHeads = 4, kKv = 2;

Tensor randn(Shape s, uint32_t seed, float sd) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, sd);
  Tensor t = Tensor::empty(s, DType::f32);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = nd(rng);
  return t;
}

struct TinyModel {
  std::shared_ptr<models::MapSource> src = std::make_shared<models::MapSource>();
  std::map<std::string, QuantizedLinear> quantized;
  io::JsonValue config = io::JsonValue::object();
};

TinyModel tiny_llama(const QuantScheme& s, DType dtype = DType::bf16) {
  TinyModel m;
  uint32_t seed = 1;
  m.src->put("model.embed_tokens.weight", randn({kV, kH}, seed++, 0.02f).to(dtype));
  m.src->put("model.norm.weight", randn({kH}, seed++, 0.1f).to(dtype));
  m.src->put("lm_head.weight", randn({kV, kH}, seed++, 0.02f).to(dtype));
  const int64_t hd = kH / kHeads;
  for (int64_t l = 0; l < kL; ++l) {
    const std::string p = cat("model.layers.", l, ".");
    m.src->put(p + "input_layernorm.weight", randn({kH}, seed++, 0.1f).to(dtype));
    m.src->put(p + "post_attention_layernorm.weight", randn({kH}, seed++, 0.1f).to(dtype));
    const std::pair<std::string, Shape> lin[] = {
        {"self_attn.q_proj", {kHeads * hd, kH}}, {"self_attn.k_proj", {kKv * hd, kH}}, {"self_attn.v_proj", {kKv * hd, kH}},
        {"self_attn.o_proj", {kH, kHeads * hd}}, {"mlp.gate_proj", {kI, kH}},        {"mlp.up_proj", {kI, kH}},
        {"mlp.down_proj", {kH, kI}}};
    for (const auto& [n, shape] : lin) {
      const Tensor w = randn(shape, seed++, 0.02f).to(dtype);
      m.src->put(p + n + ".weight", w);
      // Layer 1's down_proj stays in 16 bits (an unquantized in-block layer).
      if (l == 1 && n == "mlp.down_proj") continue;
      QuantizedLinear q = quantize_rtn(w, s);
      q.name = p + n;
      m.quantized[q.name] = q;
    }
  }
  m.config.set("architectures", io::JsonValue::array({"LlamaForCausalLM"}))
      .set("model_type", "llama")
      .set("hidden_size", kH)
      .set("intermediate_size", kI)
      .set("num_hidden_layers", kL)
      .set("num_attention_heads", kHeads)
      .set("num_key_value_heads", kKv)
      .set("vocab_size", kV)
      .set("max_position_embeddings", 256)
      .set("rms_norm_eps", 1e-5)
      .set("rope_theta", 10000.0)
      .set("tie_word_embeddings", false)
      .set("torch_dtype", "bfloat16");
  return m;
}

ExportSource source_of(const TinyModel& m, const QuantScheme& s) {
  ExportSource src;
  src.tensors = m.src;
  src.quantized = &m.quantized;
  src.scheme = s;
  src.tuning.iters = 0;
  src.config = m.config;
  return src;
}

bool bit_equal(const Tensor& a, const Tensor& b) {
  const Tensor x = a.to(DType::f32).contiguous(), y = b.to(DType::f32).contiguous();
  return x.shape() == y.shape() && std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()) == 0;
}

io::JsonValue read_json(const std::string& path) {
  return io::parse_json(std::string(reinterpret_cast<const char*>(arq::test::read_file_bytes(path).data()),
                                    arq::test::read_file_bytes(path).size()),
                        path);
}

// Every tensor of an exported folder equals what the model computes with: packed layers equal
// the quantizer's dequantize (f32, bit for bit), the rest equal the source tensors.
void check_folder(const std::string& dir, const TinyModel& m) {
  auto store = std::make_shared<const io::WeightStore>(io::WeightStore::open(dir));
  auto pc = io::PackedCheckpoint::open(store);
  REQUIRE(pc.has_value());
  const std::vector<std::string> names = pc->names();
  CHECK(names == m.src->names());
  int n_packed = 0;
  for (const std::string& n : names) {
    INFO(dir << " tensor " << n);
    const std::string mod = n.size() > 7 ? n.substr(0, n.size() - 7) : n;
    auto it = m.quantized.find(mod);
    if (pc->is_packed(n)) {
      REQUIRE(it != m.quantized.end());
      CHECK(pc->shape(n) == it->second.codes.shape());
      CHECK(bit_equal(pc->get(n), dequantize(it->second, DType::f32)));
      ++n_packed;
    } else {
      CHECK(it == m.quantized.end());
      CHECK(bit_equal(store->load(n), m.src->get(n)));
    }
  }
  CHECK(n_packed == static_cast<int>(m.quantized.size()));
}

}  // namespace

TEST_CASE("export formats: parsing and errors") {
  const auto fs3 = parse_export_formats("auto_round, auto_gptq,auto_awq,gguf:q4_k_m");
  REQUIRE(fs3.size() == 4);
  CHECK(fs3[0].kind == ExportKind::auto_round);
  CHECK(fs3[3].kind == ExportKind::gguf);
  CHECK(fs3[3].gguf_preset == "q4_k_m");
  CHECK(fs3[3].subfolder() == "gguf-q4-k-m");
  CHECK(parse_export_formats("auto_round:auto_awq")[0].packing_format == "auto_round:auto_awq");
  const std::string msg = [] {
    try {
      parse_export_formats("auto_round,exllama");
    } catch (const UsageError& e) {
      return std::string(e.what());
    }
    return std::string();
  }();
  CHECK(msg.find("exllama") != std::string::npos);
  CHECK(msg.find("auto_gptq") != std::string::npos);   // lists the known ones
  CHECK_THROWS_AS(parse_export_formats("gguf:q7_k"), UsageError);
  CHECK_THROWS_AS(parse_export_formats("auto_gptq,auto_gptq"), UsageError);
  CHECK_THROWS_AS(parse_export_formats(""), UsageError);
}

TEST_CASE("export: auto_round / auto_gptq / auto_awq folders read back to the quantizer's weights") {
  for (bool sym : {true, false}) {
    CAPTURE(sym);
    const QuantScheme s{.bits = 4, .group_size = 32, .sym = sym};
    const TinyModel m = tiny_llama(s);
    arq::test::ExportTempDir tmp;
    const std::string out = tmp / "tiny-w4g32";
    std::vector<std::string> logs;
    ExportOptions o{.output_folder = out, .overwrite = false, .max_shard_bytes = 10'000};   // force several shards
    o.log = [&](const std::string& l) { logs.push_back(l); };
    const ExportResult r = export_model(source_of(m, s), "auto_round,auto_gptq,auto_awq", o);
    REQUIRE(r.folders.size() == 3);
    CHECK(r.folders[0] == out + "/auto-round");
    for (const auto& e : fs::directory_iterator(tmp.str())) CHECK(e.path().string() == out);   // no temp left
    CHECK(fs::exists(out + "/auto-round/model.safetensors.index.json"));
    for (const std::string& d : r.folders) {
      check_folder(d, m);
      CHECK(fs::exists(d + "/quantization_config.json"));
    }
    const io::JsonValue ar = read_json(out + "/auto-round/config.json");
    const io::JsonValue* qc = ar.find("quantization_config");
    REQUIRE(qc);
    CHECK(qc->find("quant_method")->as_string() == "auto-round");
    CHECK(qc->find("packing_format")->as_string() == (sym ? "auto_round:auto_gptq" : "auto_round:auto_awq"));
    CHECK(qc->find("bits")->as_int() == 4);
    CHECK(qc->find("group_size")->as_int() == 32);
    CHECK(qc->find("sym")->as_bool() == sym);
    CHECK(qc->find("data_type")->as_string() == "int");
    CHECK(qc->find("iters")->as_int() == 0);
    CHECK(qc->find("block_name_to_quantize")->as_string() == "model.layers");
    const io::JsonValue* extra = qc->find("extra_config");
    REQUIRE(extra);
    CHECK(extra->find("model.layers.1.mlp.down_proj")->find("bits")->as_int() == 16);
    CHECK(ar.find("torch_dtype")->as_string() == (sym ? "bfloat16" : "float16"));

    const io::JsonValue gq = *read_json(out + "/auto-gptq/config.json").find("quantization_config");
    CHECK(gq.find("quant_method")->as_string() == "gptq");
    CHECK(gq.find("desc_act")->as_bool() == false);
    CHECK(gq.find("true_sequential")->as_bool() == false);
    CHECK(gq.find("damp_percent")->as_double() == 0.01);
    CHECK(gq.find("provider")->as_string() == "auto-round");
    CHECK(gq.find("lm_head")->as_bool() == false);
    CHECK(gq.find("dynamic")->find("-:model\\.layers\\.1\\.mlp\\.down_proj") != nullptr);
    CHECK(fs::exists(out + "/auto-gptq/model.safetensors.index.json"));
    io::WeightStore gs = io::WeightStore::open(out + "/auto-gptq");
    CHECK(gs.has("model.layers.0.self_attn.q_proj.g_idx"));
    CHECK(gs.info("model.layers.0.self_attn.q_proj.scales").dtype == io::StDType::F16);

    const io::JsonValue aq = *read_json(out + "/auto-awq/config.json").find("quantization_config");
    CHECK(aq.find("quant_method")->as_string() == "awq");
    CHECK(aq.find("version")->as_string() == "gemm");
    CHECK(aq.find("zero_point")->as_bool() == !sym);
    CHECK(aq.find("modules_to_not_convert")->elements().size() == 1);
    CHECK(read_json(out + "/auto-awq/config.json").find("torch_dtype")->as_string() == "float16");
  }
}

TEST_CASE("export: 2/3/8-bit and per-channel auto_round / auto_gptq round trips") {
  for (int bits : {2, 3, 8})
    for (int64_t gs : {int64_t{32}, int64_t{-1}})
      for (bool sym : {true, false}) {
        CAPTURE(bits);
        CAPTURE(gs);
        CAPTURE(sym);
        const QuantScheme s{.bits = bits, .group_size = gs, .sym = sym};
        const TinyModel m = tiny_llama(s, DType::f32);
        arq::test::ExportTempDir tmp;
        const std::string fmt = sym ? "auto_round,auto_gptq" : "auto_round";
        const ExportResult r = export_model(source_of(m, s), fmt, {.output_folder = tmp / "o"});
        for (const std::string& d : r.folders) check_folder(d, m);
        if (!sym)
          CHECK(read_json(r.folders[0] + "/config.json").find("quantization_config")->find("packing_format")->as_string() ==
                "auto_round");
      }
}

TEST_CASE("export bad input: clear errors and nothing half-written") {
  const QuantScheme s3{.bits = 3, .group_size = 32, .sym = true};
  const TinyModel m3 = tiny_llama(s3);
  arq::test::ExportTempDir tmp;
  SUBCASE("AWQ cannot hold 3 bits") {
    CHECK_THROWS_AS(export_model(source_of(m3, s3), "auto_round,auto_awq", {.output_folder = tmp / "o"}), UsageError);
    CHECK(fs::is_empty(tmp.str()));
  }
  SUBCASE("unknown format") {
    CHECK_THROWS_AS(export_model(source_of(m3, s3), "auto_gptq,marlin", {.output_folder = tmp / "o"}), UsageError);
    CHECK(fs::is_empty(tmp.str()));
  }
  SUBCASE("existing output folder is refused without overwrite, replaced with it") {
    fs::create_directories(tmp / "o");
    arq::test::ExportTempDir keep;
    { std::ofstream(tmp / "o/keep.txt") << "x"; }
    CHECK_THROWS_AS(export_model(source_of(m3, s3), "auto_round", {.output_folder = tmp / "o"}), UsageError);
    CHECK(fs::exists(tmp / "o/keep.txt"));
    export_model(source_of(m3, s3), "auto_round", {.output_folder = tmp / "o", .overwrite = true});
    CHECK(!fs::exists(tmp / "o/keep.txt"));
    CHECK(fs::exists(tmp / "o/config.json"));
    std::vector<std::string> entries;
    for (const auto& e : fs::directory_iterator(tmp.str())) entries.push_back(e.path().filename().string());
    CHECK(entries == std::vector<std::string>{"o"});
  }
  SUBCASE("unwritable output path") {
    { std::ofstream(tmp / "file") << "x"; }   // a file where a folder is needed
    CHECK_THROWS_AS(export_model(source_of(m3, s3), "auto_round", {.output_folder = tmp / "file/sub/o"}), IoError);
    fs::create_directories(tmp / "ro");
    fs::permissions(tmp / "ro", fs::perms::owner_read | fs::perms::owner_exec);
    if (::access((tmp / "ro").c_str(), W_OK) != 0) {   // root ignores permissions: skip then
      CHECK_THROWS_AS(export_model(source_of(m3, s3), "auto_round", {.output_folder = tmp / "ro/o"}), IoError);
      CHECK(fs::is_empty(tmp / "ro"));
    } else {
      MESSAGE("running as a user that ignores folder permissions: read-only folder case skipped");
    }
    fs::permissions(tmp / "ro", fs::perms::owner_all);
  }
}

TEST_CASE("export: GGUF of a tiny llama re-read with every key and tensor checked") {
  const QuantScheme s{.bits = 4, .group_size = 32, .sym = true};
  TinyModel m = tiny_llama(s, DType::f32);
  arq::test::ExportTempDir tmp;
  const ExportResult r = export_model(source_of(m, s), "gguf:q4_k_m,gguf:q8_0", {.output_folder = tmp / "g"});
  REQUIRE(r.folders.size() == 2);
  for (const std::string& preset : {std::string("q4_k_m"), std::string("q8_0")}) {
    CAPTURE(preset);
    std::string upper = preset;
    for (char& c : upper) c = static_cast<char>(std::toupper(c));
    const std::string path = tmp / ("g/gguf-" + ExportFormat{.spec = preset}.subfolder() + "/model-" + upper + ".gguf");
    REQUIRE(fs::exists(path));
    io::GgufFile g = io::GgufFile::open(path);
    const auto& md = g.metadata();
    CHECK(md.get_string("general.architecture") == "llama");
    CHECK(md.get_u64("general.file_type") == gguf_preset_ftype(preset));
    CHECK(md.get_u64("general.quantization_version") == 2);
    CHECK(md.get_u64("llama.embedding_length") == kH);
    CHECK(md.get_u64("llama.block_count") == kL);
    CHECK(md.get_u64("llama.feed_forward_length") == kI);
    CHECK(md.get_u64("llama.attention.head_count") == kHeads);
    CHECK(md.get_u64("llama.attention.head_count_kv") == kKv);
    CHECK(md.get_u64("llama.rope.dimension_count") == kH / kHeads);
    CHECK(static_cast<float>(md.get_f64("llama.attention.layer_norm_rms_epsilon")) == 1e-5f);
    CHECK(md.get_f64("llama.rope.freq_base") == 10000.0);
    CHECK(g.tensors().size() == 3 + kL * 9);
    for (const io::GgufTensorInfo& t : g.tensors()) {
      INFO(t.name);
      // Find the HF source tensor by mapping every source name.
      std::string hf;
      for (const std::string& n : m.src->names())
        if (models::GgufSource::gguf_name(n) == t.name) hf = n;
      REQUIRE(!hf.empty());
      Tensor src = m.src->get(hf);
      CHECK(t.shape == src.shape());
      const int64_t layer = t.name.rfind("blk.", 0) == 0 ? std::stoll(t.name.substr(4)) : -1;
      const io::GgmlType want_type = gguf_tensor_type(t.name, t.shape, {preset, layer, kL, kHeads / kKv, false});
      CHECK(t.ggml_type == static_cast<uint32_t>(want_type));
      if (t.name.find("attn_q.") != std::string::npos) src = permute_qk_rows(src, kHeads);
      if (t.name.find("attn_k.") != std::string::npos) src = permute_qk_rows(src, kKv);
      const std::vector<uint8_t> want = io::ggml_quantize(src, want_type);
      const io::GgufRawTensor raw = g.raw(t.name);
      REQUIRE(raw.nbytes == want.size());
      CHECK(std::memcmp(raw.data, want.data(), want.size()) == 0);
    }
  }
  // The type mix: norms f32; with 64-wide rows no k-quant fits, so q4_k_m falls back to q5_0
  // and output (q6_K) to q8_0.
  CHECK(gguf_tensor_type("blk.0.attn_norm.weight", {64}, {"q4_k_m", 0, 2, 2, false}) == io::GgmlType::f32);
  CHECK(gguf_tensor_type("output.weight", {96, 64}, {"q4_k_m", -1, 2, 2, false}) == io::GgmlType::q8_0);
  CHECK(gguf_tensor_type("output.weight", {96, 256}, {"q4_k_m", -1, 2, 2, false}) == io::GgmlType::q6_K);
  CHECK(gguf_tensor_type("blk.0.attn_v.weight", {64, 256}, {"q4_k_m", 0, 32, 4, false}) == io::GgmlType::q6_K);
  CHECK(gguf_tensor_type("blk.5.attn_v.weight", {64, 256}, {"q4_k_m", 5, 32, 4, false}) == io::GgmlType::q4_K);
  CHECK(gguf_tensor_type("blk.6.ffn_down.weight", {64, 256}, {"q4_k_m", 6, 32, 4, false}) == io::GgmlType::q6_K);  // (6−4)%3==2
  CHECK(gguf_tensor_type("blk.1.attn_q.weight", {64, 64}, {"q4_k_m", 1, 32, 4, false}) == io::GgmlType::q5_0);
  CHECK(gguf_tensor_type("blk.1.ffn_down.weight", {64, 172}, {"q4_k_m", 1, 32, 4, false}) == io::GgmlType::bf16);
}

TEST_CASE("export: Q/K permutation puts rotary pairs side by side") {
  // 2 heads of hd = 4, one column: row r holds r.
  Tensor w = Tensor::empty({8, 1}, DType::f32);
  for (int i = 0; i < 8; ++i) w.data<float>()[i] = static_cast<float>(i);
  const Tensor p = permute_qk_rows(w, 2);
  const float want[8] = {0, 2, 1, 3, 4, 6, 5, 7};
  for (int i = 0; i < 8; ++i) CHECK(p.data<float>()[i] == want[i]);
}

TEST_CASE("export: stories260k to every HF format and GGUF, read back") {
  const std::string cfg = arq::test::shared_file("models/stories260k/config.json");
  if (cfg.empty()) return;
  const std::string folder = fs::path(cfg).parent_path().string();
  auto store = std::make_shared<const io::WeightStore>(io::WeightStore::open(folder));
  // A TensorSource over the folder.
  auto src = std::make_shared<models::MapSource>();
  for (const std::string& n : store->names()) src->put(n, store->load(n));
  const QuantScheme s{.bits = 4, .group_size = 32, .sym = true};
  TinyModel m;
  m.src = src;
  for (const std::string& n : store->names()) {
    const Shape sh = store->info(n).shape;
    if (sh.size() != 2 || n.rfind("model.layers.", 0) != 0) continue;
    QuantizedLinear q = quantize_rtn(store->load(n), s);
    q.name = n.substr(0, n.size() - 7);
    m.quantized[q.name] = q;
  }
  ExportSource es = source_of(m, s);
  es.config = io::JsonValue();
  es.model_folder = folder;
  arq::test::ExportTempDir tmp;
  std::vector<std::string> logs;
  ExportOptions o{.output_folder = tmp / "stories"};
  o.log = [&](const std::string& l) { logs.push_back(l); };
  const ExportResult r = export_model(es, "auto_round,auto_gptq,auto_awq,gguf:q4_k_m", o);
  for (int i = 0; i < 3; ++i) {
    CHECK(fs::exists(r.folders[static_cast<size_t>(i)] + "/tokenizer.model"));
    CHECK(fs::exists(r.folders[static_cast<size_t>(i)] + "/generation_config.json"));
    // down_proj [64, 172]: 172 is not a multiple of the packing: written as dequantized weights.
    auto st = std::make_shared<const io::WeightStore>(io::WeightStore::open(r.folders[static_cast<size_t>(i)]));
    auto pc = io::PackedCheckpoint::open(st);
    REQUIRE(pc.has_value());
    for (const auto& [name, q] : m.quantized) {
      const std::string w = name + ".weight";
      const Tensor got = pc->is_packed(w) ? pc->get(w) : st->load(w);
      CHECK(bit_equal(got, dequantize(q, DType::f32)));
    }
  }
  io::GgufFile g = io::GgufFile::open(r.folders[3] + "/stories260k-Q4_K_M.gguf");
  CHECK(g.metadata().get_string("tokenizer.ggml.model") == "llama");
  CHECK(g.metadata().get_strings("tokenizer.ggml.tokens").size() == 512);
  CHECK(g.metadata().get_floats("tokenizer.ggml.scores").size() == 512);
  CHECK(g.find("output.weight") == nullptr);   // tied embeddings
  CHECK(g.info("token_embd.weight").ggml_type == static_cast<uint32_t>(io::GgmlType::q8_0));
}
