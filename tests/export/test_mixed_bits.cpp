// Mixed bits end to end (issue 7; spec/autoround.md §4a `extra_config`, §4b `dynamic`): a tiny
// random Llama quantized by the pipeline (RTN) with a --layer_config that gives q_proj 8 bits
// at group 32, v_proj 2 bits, every other linear the global W4G64, and one layer kept in 16 bits
// through --fp_layers; exported to auto_round and auto_gptq; each folder loaded back with
// models::load_causal_lm must give exactly the logits of the model built in memory from the
// pipeline's own dequantized weights, and its quantization_config must hold the keys and values
// written down below from the spec (not from the exporter).
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <tuple>
#include <cmath>
#include <filesystem>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "engine/ops.h"
#include "io/json_util.h"
#include "io/pack_load.h"
#include "io/weight_store.h"
#include "models/family.h"
#include "models/loader.h"
#include "models/random_model.h"
#include "quant/export.h"
#include "quant/layer_config.h"
#include "quant/pipeline.h"
#include "export_test_util.h"

using namespace arq;
namespace fs = std::filesystem;

namespace {

// hidden 64, intermediate 256: every linear holds whole groups of 32 and 64, and every packed
// dimension is a multiple of 32 (so no layer is demoted for its shape).
models::DecoderSpec mixed_spec() {
  models::DecoderSpec s = models::tiny_spec("llama");
  s.hidden_size = 64;
  s.intermediate_size = 256;
  s.num_attention_heads = 4;
  s.num_key_value_heads = 2;
  s.head_dim = 16;
  s.rope.dim = 16;
  s.tie_word_embeddings = false;
  return s;
}

const char* kLayerConfig = "{q_proj:{bits:8,group_size:32}, v_proj:{bits:2}}";
const char* kFpLayer = "model.layers.0.mlp.up_proj";

io::JsonValue read_json(const std::string& path) { return io::parse_json(io::read_text_file(path), path); }

std::vector<std::string> keys_of(const io::JsonValue& obj) {
  std::vector<std::string> k;
  for (const auto& [name, v] : obj.items()) k.push_back(name);
  return k;
}

Tensor test_ids() {
  std::vector<double> v;
  for (int i = 0; i < 2 * 11; ++i) v.push_back(static_cast<double>((i * 29 + 3) % 96));
  return from_vector(v, {2, 11}, DType::i64);   // [2, 11]
}

// Python re.match (anchored at the start only), as GPTQModel applies `dynamic` keys.
bool py_match(const std::string& pattern, const std::string& name) {
  return std::regex_search(name, std::regex(pattern), std::regex_constants::match_continuous);
}

struct MixedFixture {
  models::DecoderSpec spec = mixed_spec();
  std::shared_ptr<models::MapSource> fp = models::random_weights(spec, {.seed = 23});
  arq::test::ExportTempDir tmp;
  std::string src_folder = tmp / "src";
  quant::QuantScheme base{.bits = 4, .group_size = 64, .sym = true};
  quant::PipelineResult r;

  explicit MixedFixture(const char* layer_config = kLayerConfig) {
    models::save_pretrained(models::CausalLM(spec, fp), src_folder);
    const models::CausalLM lm = models::load_causal_lm(src_folder, {.dtype = DType::f32});
    quant::PipelineOptions o;
    o.scheme = base;
    o.layer_config = quant::LayerConfig::parse(layer_config, "--layer_config");
    o.fp_layers = {kFpLayer};
    o.iters = 0;
    o.disable_opt_rtn = true;   // plain RTN: no calibration data needed
    r = quant::quantize_blocks(lm, Tensor(), Tensor(), o);
  }
  quant::ExportSource source() const {
    quant::ExportSource src;
    src.model_folder = src_folder;
    src.tensors = fp;
    src.quantized = &r.quantized;
    src.scheme = base;
    src.tuning.iters = 0;
    return src;
  }
  // The in-memory quantized model: the pipeline's dequantized weights over the FP tensors.
  Tensor reference_logits() const {
    auto ref = std::make_shared<models::MapSource>();
    for (const std::string& n : fp->names()) {
      auto it = r.weights.find(n);
      ref->put(n, (it != r.weights.end() ? it->second : fp->get(n)).to(DType::f32));
    }
    return models::CausalLM(spec, ref, {.dtype = DType::f32}).forward(test_ids());
  }
};

}  // namespace

TEST_CASE("mixed bits: the pipeline gives each layer the scheme its layer_config / fp_layers entry asks") {
  MixedFixture fx;
  for (int blk = 0; blk < 2; ++blk) {
    const std::string p = "model.layers." + std::to_string(blk) + ".";
    CAPTURE(p);
    REQUIRE(fx.r.quantized.count(p + "self_attn.q_proj"));
    CHECK(fx.r.quantized.at(p + "self_attn.q_proj").bits == 8);
    CHECK(fx.r.quantized.at(p + "self_attn.q_proj").layout.group_size == 32);
    CHECK(fx.r.quantized.at(p + "self_attn.v_proj").bits == 2);
    CHECK(fx.r.quantized.at(p + "self_attn.v_proj").layout.group_size == 64);
    CHECK(fx.r.quantized.at(p + "self_attn.k_proj").bits == 4);
    CHECK(fx.r.quantized.at(p + "mlp.down_proj").layout.group_size == 64);
  }
  CHECK(fx.r.quantized.count(kFpLayer) == 0);
  CHECK(fx.r.quantized.size() == 13);   // 2 blocks × 7 linears − the FP one
}

TEST_CASE("mixed bits: auto_round / auto_gptq exports load back to the in-memory quantized model's logits exactly") {
  MixedFixture fx;
  const std::string out = fx.tmp / "mixed";
  const quant::ExportResult res = quant::export_model(fx.source(), "auto_round,auto_gptq", {.output_folder = out});
  REQUIRE(res.folders.size() == 2);
  const Tensor want = fx.reference_logits();
  const Tensor fp_logits = models::CausalLM(fx.spec, fx.fp, {.dtype = DType::f32}).forward(test_ids());
  for (const std::string& dir : res.folders) {
    INFO("folder " << dir);
    const models::CausalLM lm = models::load_causal_lm(dir, {.dtype = DType::f32});
    const std::vector<double> got = to_vector(lm.forward(test_ids())), ref = to_vector(want), fpv = to_vector(fp_logits);
    REQUIRE(got.size() == ref.size());
    // Same f32 weights (packed codes dequantized as scale·(u − zp), the quantizer's formula) and
    // the same ops in the same order: the logits are bit-identical, so the bound is 0.
    double worst = 0, moved = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      worst = std::max(worst, std::fabs(got[i] - ref[i]));
      moved = std::max(moved, std::fabs(got[i] - fpv[i]));
    }
    CHECK(worst == 0.0);
    CHECK(moved > 1e-3);   // the 2-bit layers really are in the file (RTN moves these logits by ~1e-1)

    // Every packed layer decodes to the pipeline's dequantized weights, bit for bit; the FP layer
    // is a plain weight equal to the source.
    auto store = std::make_shared<const io::WeightStore>(io::WeightStore::open(dir));
    const std::optional<io::PackedCheckpoint> pc = io::PackedCheckpoint::open(store);
    REQUIRE(pc);
    for (const auto& [mod, q] : fx.r.quantized) {
      CAPTURE(mod);
      REQUIRE(pc->is_packed(mod + ".weight"));
      CHECK(to_vector(pc->get(mod + ".weight")) == to_vector(fx.r.weights.at(mod + ".weight").to(DType::f32)));
    }
    CHECK_FALSE(pc->is_packed(std::string(kFpLayer) + ".weight"));
    CHECK(store->has(std::string(kFpLayer) + ".weight"));
    CHECK_FALSE(store->has(std::string(kFpLayer) + ".qweight"));
    CHECK(to_vector(lm.source().get(std::string(kFpLayer) + ".weight")) == to_vector(fx.fp->get(std::string(kFpLayer) + ".weight")));
  }

  // ---- auto_round config (§4a), written down from the spec --------------------------------
  // Keys in insertion order: scheme keys, non-default tuning keys (iters 0), autoround_version,
  // block_name_to_quantize, quant_method, packing_format, extra_config. A sym int scheme packs as
  // "auto_round:auto_gptq" (table in §4a). extra_config holds, per in-block layer, only the
  // keys that differ from the global scheme: q_proj {bits 8, group_size 32}, v_proj {bits 2},
  // the skipped layer {bits 16, data_type "fp"}; layers equal to the global scheme have no entry.
  const io::JsonValue ar_cfg = read_json(out + "/auto-round/config.json");
  const io::JsonValue ar = *ar_cfg.find("quantization_config");
  CHECK(keys_of(ar) == std::vector<std::string>{"bits", "data_type", "group_size", "sym", "iters", "autoround_version",
                                                 "block_name_to_quantize", "quant_method", "packing_format", "extra_config"});
  CHECK(ar.find("bits")->as_int() == 4);
  CHECK(ar.find("data_type")->as_string() == "int");
  CHECK(ar.find("group_size")->as_int() == 64);
  CHECK(ar.find("sym")->as_bool() == true);
  CHECK(ar.find("iters")->as_int() == 0);
  CHECK(ar.find("block_name_to_quantize")->as_string() == "model.layers");
  CHECK(ar.find("quant_method")->as_string() == "auto-round");
  CHECK(ar.find("packing_format")->as_string() == "auto_round:auto_gptq");
  const io::JsonValue& extra = *ar.find("extra_config");
  std::set<std::string> want_extra;
  for (int blk = 0; blk < 2; ++blk) {
    const std::string p = "model.layers." + std::to_string(blk) + ".self_attn.";
    want_extra.insert(p + "q_proj");
    want_extra.insert(p + "v_proj");
    const io::JsonValue* q = extra.find(p + "q_proj");
    const io::JsonValue* v = extra.find(p + "v_proj");
    REQUIRE(q);
    REQUIRE(v);
    CHECK(keys_of(*q) == std::vector<std::string>{"bits", "group_size"});
    CHECK(q->find("bits")->as_int() == 8);
    CHECK(q->find("group_size")->as_int() == 32);
    CHECK(keys_of(*v) == std::vector<std::string>{"bits"});
    CHECK(v->find("bits")->as_int() == 2);
  }
  want_extra.insert(kFpLayer);
  const io::JsonValue* fpe = extra.find(kFpLayer);
  REQUIRE(fpe);
  CHECK(keys_of(*fpe) == std::vector<std::string>{"bits", "data_type"});
  CHECK(fpe->find("bits")->as_int() == 16);
  CHECK(fpe->find("data_type")->as_string() == "fp");
  const std::vector<std::string> ek = keys_of(extra);
  CHECK(std::set<std::string>(ek.begin(), ek.end()) == want_extra);
  // torch_dtype is rewritten only for GPTQ/AWQ packs and act_bits <= 8 (§4.0): kept here.
  CHECK(ar_cfg.find("torch_dtype")->as_string() == read_json(fx.src_folder + "/config.json").find("torch_dtype")->as_string());
  // quantization_config.json: the same dict.
  CHECK(read_json(out + "/auto-round/quantization_config.json").dump() == ar.dump());

  // ---- auto_gptq config (§4b) ------------------------------------------------------------------
  // The filtered dict plus lm_head false, provider "auto-round", quant_method "gptq", desc_act
  // false, true_sequential false, damp_percent 0.01; `dynamic` in GPTQModel syntax:
  // "+:<regex>": {bits, group_size, sym} for every quantized layer that differs, "-:<regex>": {}
  // for the 16-bit one; modules_in_block_to_quantize (some in-block layer is not quantized):
  // one list per block group of the relative names quantized in any block of it — up_proj is
  // quantized in block 1, so all seven appear, sorted.
  const io::JsonValue gq_cfg = read_json(out + "/auto-gptq/config.json");
  const io::JsonValue gq = *gq_cfg.find("quantization_config");
  CHECK(gq.find("bits")->as_int() == 4);
  CHECK(gq.find("group_size")->as_int() == 64);
  CHECK(gq.find("sym")->as_bool() == true);
  CHECK(gq.find("data_type")->as_string() == "int");
  CHECK(gq.find("lm_head")->as_bool() == false);
  CHECK(gq.find("provider")->as_string() == "auto-round");
  CHECK(gq.find("quant_method")->as_string() == "gptq");
  CHECK(gq.find("desc_act")->as_bool() == false);
  CHECK(gq.find("true_sequential")->as_bool() == false);
  CHECK(gq.find("damp_percent")->as_double() == 0.01);
  CHECK(gq.find("extra_config") == nullptr);
  CHECK(gq.find("packing_format") == nullptr);
  CHECK(gq_cfg.find("torch_dtype")->as_string() == "float16");
  const io::JsonValue* mib = gq.find("modules_in_block_to_quantize");
  REQUIRE(mib);
  REQUIRE(mib->elements().size() == 1);
  std::vector<std::string> rel;
  for (const io::JsonValue& e : mib->elements()[0].elements()) rel.push_back(e.as_string());
  CHECK(rel == std::vector<std::string>{"mlp.down_proj", "mlp.gate_proj", "mlp.up_proj", "self_attn.k_proj",
                                        "self_attn.o_proj", "self_attn.q_proj", "self_attn.v_proj"});
  // Each dynamic key is a regex that GPTQModel matches (re.match) against module names: it must
  // select its own layer and no other linear of the model.
  const io::JsonValue& dyn = *gq.find("dynamic");
  std::vector<std::string> all_linears;
  for (const std::string& n : fx.fp->names())
    if (n.find("_proj.weight") != std::string::npos) all_linears.push_back(n.substr(0, n.size() - 7));
  auto matched = [&](const std::string& pattern) {
    std::vector<std::string> m;
    for (const std::string& l : all_linears)
      if (py_match(pattern, l)) m.push_back(l);
    return m;
  };
  std::map<std::string, std::string> key_of;   // layer → its dynamic key
  for (const auto& [key, v] : dyn.items()) {
    CAPTURE(key);
    REQUIRE(key.size() > 2);
    REQUIRE((key.rfind("+:", 0) == 0 || key.rfind("-:", 0) == 0));
    const std::vector<std::string> m = matched(key.substr(2));
    REQUIRE(m.size() == 1);
    key_of[m[0]] = key;
  }
  CHECK(key_of.size() == 5);   // 2 q_proj + 2 v_proj + the FP layer
  for (int blk = 0; blk < 2; ++blk) {
    const std::string p = "model.layers." + std::to_string(blk) + ".self_attn.";
    for (const auto& [layer, bits, gs] : {std::tuple{p + "q_proj", 8, 32}, std::tuple{p + "v_proj", 2, 64}}) {
      CAPTURE(layer);
      REQUIRE(key_of.count(layer));
      CHECK(key_of[layer].rfind("+:", 0) == 0);
      const io::JsonValue& e = *dyn.find(key_of[layer]);
      CHECK(keys_of(e) == std::vector<std::string>{"bits", "group_size", "sym"});
      CHECK(e.find("bits")->as_int() == bits);
      CHECK(e.find("group_size")->as_int() == gs);
      CHECK(e.find("sym")->as_bool() == true);
    }
  }
  REQUIRE(key_of.count(kFpLayer));
  CHECK(key_of[kFpLayer].rfind("-:", 0) == 0);
  CHECK(dyn.find(key_of[kFpLayer])->items().empty());
  // GPTQ tensors: g_idx on every packed layer; qweight rows = in·bits/32 (§4b).
  io::WeightStore gs = io::WeightStore::open(out + "/auto-gptq");
  CHECK(gs.info("model.layers.0.self_attn.q_proj.qweight").shape == Shape{64 * 8 / 32, 64});
  CHECK(gs.info("model.layers.0.self_attn.q_proj.scales").shape == Shape{2, 64});
  CHECK(gs.info("model.layers.0.self_attn.v_proj.qweight").shape == Shape{64 * 2 / 32, 32});
  CHECK(gs.info("model.layers.1.mlp.down_proj.qweight").shape == Shape{256 * 4 / 32, 64});
  CHECK(gs.has("model.layers.1.self_attn.v_proj.g_idx"));
}

TEST_CASE("mixed bits: a layer whose sym differs from the global scheme round-trips through auto_round") {
  // Global sym, k_proj asym: extra_config carries {"sym": false} for it (§4a: only the keys that
  // differ), and the file must still read back to the quantizer's weights.
  MixedFixture fx("{q_proj:{bits:8,group_size:32}, v_proj:{bits:2}, k_proj:{sym:false}}");
  REQUIRE(fx.r.quantized.at("model.layers.0.self_attn.k_proj").sym == false);
  const std::string out = fx.tmp / "mixed-sym";
  const quant::ExportResult res = quant::export_model(fx.source(), "auto_round", {.output_folder = out});
  const io::JsonValue ar = *read_json(res.folders[0] + "/config.json").find("quantization_config");
  const io::JsonValue* k = ar.find("extra_config")->find("model.layers.0.self_attn.k_proj");
  REQUIRE(k);
  CHECK(keys_of(*k) == std::vector<std::string>{"sym"});
  CHECK(k->find("sym")->as_bool() == false);
  auto store = std::make_shared<const io::WeightStore>(io::WeightStore::open(res.folders[0]));
  const std::optional<io::PackedCheckpoint> pc = io::PackedCheckpoint::open(store);
  REQUIRE(pc);
  for (const auto& [mod, q] : fx.r.quantized) {
    CAPTURE(mod);
    CHECK(to_vector(pc->get(mod + ".weight")) == to_vector(fx.r.weights.at(mod + ".weight").to(DType::f32)));
  }
  const std::vector<double> got = to_vector(models::load_causal_lm(res.folders[0], {.dtype = DType::f32}).forward(test_ids()));
  CHECK(got == to_vector(fx.reference_logits()));
}

TEST_CASE("mixed bits: an explicit auto_round:auto_gptq export of asym layers stores zero − 1 and reads back") {
  // §4a: "auto_round:auto_gptq" is the GPTQ-v1 layout (zero − 1) for every layer; AutoRound
  // packs asym layers of such a folder with the same zero − 1 packer, and loaders add 1 back.
  MixedFixture fx("{v_proj:{bits:8}}");
  fx.base.sym = false;
  quant::PipelineOptions o;
  o.scheme = fx.base;
  o.iters = 0;
  o.disable_opt_rtn = true;
  fx.r = quant::quantize_blocks(models::load_causal_lm(fx.src_folder, {.dtype = DType::f32}), Tensor(), Tensor(), o);
  const quant::ExportResult res =
      quant::export_model(fx.source(), "auto_round:auto_gptq", {.output_folder = fx.tmp / "asym-gptq-pack"});
  CHECK(read_json(res.folders[0] + "/config.json").find("quantization_config")->find("packing_format")->as_string() ==
        "auto_round:auto_gptq");
  auto store = std::make_shared<const io::WeightStore>(io::WeightStore::open(res.folders[0]));
  const std::optional<io::PackedCheckpoint> pc = io::PackedCheckpoint::open(store);
  REQUIRE(pc);
  for (const auto& [mod, q] : fx.r.quantized) {
    CAPTURE(mod);
    REQUIRE_FALSE(q.sym);
    CHECK(to_vector(pc->get(mod + ".weight")) == to_vector(fx.r.weights.at(mod + ".weight").to(DType::f32)));
  }
}
