// GGUF from tuned layers (spec/autoround.md §4d "Packing with stored parameters"):
//  - every ggml type: a layer frozen with gguf_type_scheme(t) and random V/α/β, packed with
//    gguf_pack_layer, decodes with ggml's decoders (golden-verified in test_ggml_blocks.cpp) to
//    exactly the quantizer's own dequantize(q) — bit for bit, also with the Q/K row permutation;
//    and the table's re-quantization rule (ggml_levels_from_params) recovers the frozen levels
//    from those values;
//  - end to end: a random llama with 256-wide rows (so the k-quants apply) → the pipeline with
//    the GGUF type mix and iters > 0 → export → load_causal_lm of the .gguf: every quantized
//    linear reads back equal to the frozen layer and the logits equal those of the quantizer's
//    dequantized model.
#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <set>
#include <unistd.h>

#include "engine/ops.h"
#include "io/ggml_blocks.h"
#include "io/ggml_encode_params.h"
#include "io/gguf.h"
#include "models/family.h"
#include "models/loader.h"
#include "models/random_model.h"
#include "quant/export.h"
#include "quant/export_gguf.h"
#include "quant/pipeline.h"
#include "quant/qdq.h"
#include "tests/temp_dir.h"

using namespace arq;
using namespace arq::quant;
using io::GgmlType;
namespace fs = std::filesystem;

namespace {

const GgmlType kTypes[] = {GgmlType::q4_0, GgmlType::q5_0, GgmlType::q8_0, GgmlType::q4_1, GgmlType::q5_1,
                           GgmlType::q2_K, GgmlType::q3_K, GgmlType::q4_K, GgmlType::q5_K, GgmlType::q6_K};

int count_diff(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = to_vector(a), y = to_vector(b);
  if (x.size() != y.size()) return -1;
  int n = 0;
  for (size_t i = 0; i < x.size(); ++i) n += x[i] != y[i];
  return n;
}

QuantizedLinear tuned_layer(GgmlType t, int64_t out, int64_t in, uint64_t seed) {
  const QuantScheme s = gguf_type_scheme(t);
  const Tensor w = rand_normal({out, in}, seed, 0, 0.04);
  const GroupLayout g = make_group_layout(out, in, s.group_size);
  const Tensor v = rand_uniform({g.n_rows(), g.group_len}, seed + 1, -0.45, 0.45);
  const Tensor a = rand_uniform({g.n_rows(), 1}, seed + 2, 0.6, 1.0);
  const Tensor b = rand_uniform({g.n_rows(), 1}, seed + 3, 0.6, 1.0);
  QuantizedLinear q = quantize_with_params(w, s, v, a, b);
  q.name = "layer";
  return q;
}

}  // namespace

TEST_CASE("gguf tuned: packed layers decode to exactly the quantizer's dequantized weights") {
  for (GgmlType t : kTypes) {
    CAPTURE(io::ggml_type_name(t));
    const int64_t out = 8, in = 512;
    const QuantizedLinear q = tuned_layer(t, out, in, 40 + static_cast<uint64_t>(t));
    const Tensor want = dequantize(q, DType::f32);  // [out, in]
    const std::vector<uint8_t> bytes = gguf_pack_layer(q, t);
    REQUIRE(bytes.size() == io::ggml_row_bytes(t, in) * out);
    CHECK(count_diff(io::ggml_dequantize(bytes.data(), bytes.size(), t, {out, in}), want) == 0);
    // rows in llama's interleaved Q/K order: the same rows, moved
    const std::vector<uint8_t> perm = gguf_pack_layer(q, t, 2);
    CHECK(count_diff(io::ggml_dequantize(perm.data(), perm.size(), t, {out, in}), permute_qk_rows(want, 2)) == 0);
    // a layer of another scheme is refused
    CHECK_THROWS_AS(gguf_pack_layer(q, t == GgmlType::q4_K ? GgmlType::q5_K : GgmlType::q4_K), UsageError);
  }
}

TEST_CASE("gguf tuned: the table's re-quantization rule recovers the frozen levels") {
  for (GgmlType t : kTypes) {
    CAPTURE(io::ggml_type_name(t));
    const int64_t in = 512;
    const QuantizedLinear q = tuned_layer(t, 1, in, 90 + static_cast<uint64_t>(t));
    const std::vector<double> x64 = to_vector(dequantize(q, DType::f32));
    const std::vector<float> x(x64.begin(), x64.end());
    // The stored parameters, as the block holds them (from the frozen layer's own fields).
    const std::vector<double> sc = to_vector(q.scales);
    const std::vector<double> mn = q.mins.defined() ? to_vector(q.mins) : std::vector<double>(sc.size(), 0.0);
    std::vector<float> d, m;
    std::vector<int32_t> ls, lm;
    if (q.d_scales.defined()) {
      const std::vector<double> ds = to_vector(q.d_scales);
      const std::vector<double> dm = q.d_mins.defined() ? to_vector(q.d_mins) : std::vector<double>(ds.size(), 0.0);
      for (size_t b = 0; b < ds.size(); ++b) {
        d.push_back(static_cast<float>(ds[b]));
        m.push_back(static_cast<float>(dm[b]));
      }
      const size_t sg = static_cast<size_t>(q.super_group_size);
      for (size_t j = 0; j < sc.size(); ++j) {
        ls.push_back(ds[j / sg] != 0 ? static_cast<int32_t>(std::lround(sc[j] / ds[j / sg])) : 0);
        lm.push_back(dm[j / sg] != 0 ? static_cast<int32_t>(std::lround(mn[j] / dm[j / sg])) : 0);
      }
    } else {
      for (size_t b = 0; b < sc.size(); ++b) {
        d.push_back(static_cast<float>(sc[b]));
        m.push_back(static_cast<float>(-mn[b]));
      }
    }
    io::GgmlBlockParams p{.levels = nullptr, .sub_scales = ls.data(), .sub_mins = lm.data(), .d = d.data(), .m = m.data()};
    std::vector<uint8_t> levels(static_cast<size_t>(in));
    io::ggml_levels_from_params(t, x.data(), p, levels.data(), in);
    const std::vector<double> codes = to_vector(q.codes.to(DType::f32));
    int diff = 0;
    for (int64_t i = 0; i < in; ++i) {
      // a level whose sub-block scale is 0 is not recoverable (every level decodes to the same value)
      if (q.d_scales.defined() && ls[static_cast<size_t>(i / q.layout.group_len)] == 0) continue;
      diff += levels[static_cast<size_t>(i)] != static_cast<uint8_t>(codes[static_cast<size_t>(i)]);
    }
    CHECK(diff == 0);
  }
}

TEST_CASE("gguf tuned: ggml_pack_row refuses levels out of range and d that fp16 cannot hold") {
  std::vector<uint8_t> L(32, 3), out(io::ggml_row_bytes(GgmlType::q4_0, 32));
  float d = 0.1f;  // not an fp16 value
  io::GgmlBlockParams p{.levels = L.data(), .d = &d};
  CHECK_THROWS_AS(io::ggml_pack_row(GgmlType::q4_0, p, out.data(), 32), ShapeError);
  d = 0.125f;
  io::ggml_pack_row(GgmlType::q4_0, p, out.data(), 32);
  L[5] = 16;
  CHECK_THROWS_AS(io::ggml_pack_row(GgmlType::q4_0, p, out.data(), 32), ShapeError);
  CHECK_THROWS_AS(io::ggml_pack_row(GgmlType::f16, p, out.data(), 32), ShapeError);
}

namespace {

// 256-wide rows: attention [256, 256] / [128, 256], MLP [512, 256] and [256, 512] all take the
// k-quants of the preset (q4_K, q6_K, q3_K, q5_K, q2_K) rather than the q5_0/q8_0 fallbacks.
models::DecoderSpec spec256() {
  models::DecoderSpec s = models::tiny_spec("llama");
  s.hidden_size = 256;
  s.intermediate_size = 512;
  s.num_attention_heads = 4;
  s.num_key_value_heads = 2;
  s.head_dim = 64;
  s.rope.dim = 64;
  s.tie_word_embeddings = false;
  return s;
}

double rel_diff(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = to_vector(a), y = to_vector(b);
  REQUIRE(x.size() == y.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) num = std::max(num, std::fabs(x[i] - y[i])), den = std::max(den, std::fabs(y[i]));
  return num / den;
}

}  // namespace

TEST_CASE("gguf tuned: pipeline (iters > 0) → export → load gives the quantizer's model") {
  const models::DecoderSpec spec = spec256();
  const auto fp = models::random_weights(spec, {.seed = 23});
  arq::test::TempDir tmp("gguf_tuned");
  const std::string src_folder = tmp / "src";
  models::save_pretrained(models::CausalLM(spec, fp), src_folder);
  const models::CausalLM lm(spec, fp, {.dtype = DType::f32});
  std::vector<double> idv;
  for (int i = 0; i < 4 * 12; ++i) idv.push_back(static_cast<double>((i * 29 + 3) % 96));
  const Tensor ids = from_vector(idv, {4, 12}, DType::i64);  // [4, 12] calibration ids

  for (const std::string preset : {"q4_k_m", "q3_k_m", "q2_k_s", "q4_1", "q5_0"}) {
    CAPTURE(preset);
    PipelineOptions o;
    o.iters = 3;
    o.batch_size = 2;
    o.choose_layer_fn = gguf_layer_chooser(preset, spec, {});
    const PipelineResult res = quantize_blocks(lm, ids, Tensor(), o);
    REQUIRE(res.quantized.size() == 14);  // 7 linears × 2 blocks, none kept in 16 bits

    ExportSource src;
    src.model_folder = src_folder;
    src.tensors = fp;
    src.quantized = &res.quantized;
    src.tuning.iters = o.iters;
    const std::string out = tmp / ("out-" + preset);
    export_model(src, "gguf:" + preset, {.output_folder = out});
    std::string path;
    for (const auto& e : fs::directory_iterator(out))
      if (e.path().extension() == ".gguf") path = e.path().string();
    REQUIRE(!path.empty());

    const models::CausalLM back = models::load_causal_lm(path, {.dtype = DType::f32});
    const io::GgufFile g = io::GgufFile::open(path);
    auto ref = std::make_shared<models::MapSource>();
    std::set<std::string> types;
    for (const std::string& n : fp->names()) {
      auto it = res.quantized.find(n.size() > 7 ? n.substr(0, n.size() - 7) : "");
      if (it != res.quantized.end()) {
        const Tensor want = dequantize(it->second, DType::f32);
        CHECK_MESSAGE(count_diff(back.source().get(n).to(DType::f32), want) == 0, n);  // bit for bit
        types.insert(io::ggml_type_name(static_cast<GgmlType>(g.find(models::GgufSource::gguf_name(n))->ggml_type)));
        ref->put(n, want);
      } else {
        ref->put(n, back.source().get(n).to(DType::f32));  // embeddings, norms, output: as the file holds them
      }
    }
    std::string seen;
    for (const std::string& t : types) seen += t + " ";
    MESSAGE(preset, ": tuned tensor types ", seen);
    if (preset == "q4_k_m") CHECK((types.count("q4_K") && types.count("q6_K")));
    if (preset == "q3_k_m") CHECK((types.count("q3_K") && types.count("q5_K") && types.count("q4_K")));
    if (preset == "q2_k_s") CHECK(types.count("q2_K"));
    const Tensor want = models::CausalLM(spec, ref, {.dtype = DType::f32}).forward(ids);
    const Tensor got = back.forward(ids);
    // Same f32 weights, same ops in the same order: identical up to rounding noise (1e-5 bound).
    CHECK(rel_diff(got, want) <= 1e-5);
  }
}

TEST_CASE("gguf tuned: scheme facts, the per-layer chooser and the job's rules") {
  // §4d "Scheme facts": bits, group, sym, data_type, super_bits, super_group
  struct Fact {
    GgmlType t;
    int bits;
    int64_t group;
    bool sym;
    const char* data_type;
    int sb;
    int64_t sg;
  };
  const Fact facts[] = {{GgmlType::q4_0, 4, 32, true, "int_sym", 0, 0},          {GgmlType::q5_0, 5, 32, true, "int_sym", 0, 0},
                        {GgmlType::q8_0, 8, 32, true, "int_sym", 0, 0},          {GgmlType::q4_1, 4, 32, false, "int_asym_float_zp", 0, 0},
                        {GgmlType::q5_1, 5, 32, false, "int_asym_float_zp", 0, 0}, {GgmlType::q2_K, 2, 16, false, "int_asym_dq", 4, 16},
                        {GgmlType::q3_K, 3, 16, true, "int_sym_dq", 6, 16},      {GgmlType::q4_K, 4, 32, false, "int_asym_dq", 6, 8},
                        {GgmlType::q5_K, 5, 32, false, "int_asym_dq", 6, 8},     {GgmlType::q6_K, 6, 16, true, "int_sym_dq", 8, 16}};
  for (const Fact& f : facts) {
    CAPTURE(io::ggml_type_name(f.t));
    const QuantScheme s = gguf_type_scheme(f.t);
    CHECK(s.bits == f.bits);
    CHECK(s.group_size == f.group);
    CHECK(s.sym == f.sym);
    CHECK(s.data_type == f.data_type);
    CHECK(s.super_bits == f.sb);
    CHECK(s.super_group_size == f.sg);
    validate_scheme(s, "facts");
  }
  CHECK(gguf_type_scheme(GgmlType::bf16).keep_fp());

  // stories260k's shapes (hidden 64, intermediate 172, 5 layers, tied): every k preset falls
  // back to q5_0 for 64-wide rows and to bf16 for the 172-wide ffn_down.
  models::DecoderSpec st = models::tiny_spec("llama");
  st.hidden_size = 64;
  st.intermediate_size = 172;
  st.num_hidden_layers = 5;
  st.num_attention_heads = 8;
  st.num_key_value_heads = 4;
  st.tie_word_embeddings = true;
  for (const std::string preset : {"q2_k_s", "q3_k_m", "q4_k_m"}) {
    auto choose = gguf_layer_chooser(preset, st, {"layers.4.mlp"});
    CHECK(choose("model.layers.0.self_attn.q_proj", 64, 64).scheme.str() == gguf_type_scheme(GgmlType::q5_0).str());
    CHECK(choose("model.layers.0.mlp.gate_proj", 172, 64).scheme.str() == gguf_type_scheme(GgmlType::q5_0).str());
    CHECK(choose("model.layers.0.mlp.down_proj", 64, 172).scheme.keep_fp());
    CHECK(choose("model.layers.4.mlp.up_proj", 172, 64).scheme.keep_fp());   // --fp_layers
  }
  // 256-wide rows take the preset's k-quants: q4_k_m → Q6_K for attn_v on use_more_bits layers
  const models::DecoderSpec big = spec256();
  auto choose = gguf_layer_chooser("q4_k_m", big, {});
  CHECK(choose("model.layers.0.self_attn.v_proj", 128, 256).scheme.str() == gguf_type_scheme(GgmlType::q4_K).str());
  CHECK(choose("model.layers.1.self_attn.v_proj", 128, 256).scheme.str() == gguf_type_scheme(GgmlType::q6_K).str());

  {
    // iters 0, GGUF only: llama.cpp's searches encode the FP weights at export, so no layer is
    // quantized before it and no importance matrix is gathered; with an HF format beside it the
    // options are left alone (that format needs the RTN results).
    PipelineOptions z;
    z.iters = 0;
    apply_gguf_schemes("auto_round,gguf:q4_k_m", big, z);
    CHECK(!z.choose_layer_fn);
    CHECK(!z.disable_opt_rtn.has_value());
    apply_gguf_schemes("gguf:q4_k_m", big, z);
    REQUIRE(z.choose_layer_fn);
    CHECK(z.choose_layer_fn("model.layers.1.self_attn.v_proj", 128, 256).scheme.keep_fp());
    CHECK(z.choose_layer_fn("model.layers.0.mlp.down_proj", 256, 512).scheme.keep_fp());
    CHECK(z.disable_opt_rtn.value_or(false));
  }
  PipelineOptions o;
  o.iters = 10;
  std::string logged;
  o.log = [&](const std::string& l) { logged += l; };
  o.scheme.bits = 3;
  apply_gguf_schemes("gguf:q4_k_m", big, o);
  CHECK(o.choose_layer_fn);
  CHECK(logged.find("preset wins") != std::string::npos);
  apply_gguf_schemes("auto_round", big, o);   // no GGUF format: nothing else changes
  CHECK_THROWS_AS(apply_gguf_schemes("auto_round,gguf:q4_k_m", big, o), UsageError);
  o.layer_config = LayerConfig::parse("{k_proj:{bits:8}}");
  CHECK_THROWS_AS(apply_gguf_schemes("gguf:q4_k_m", big, o), UsageError);
}
