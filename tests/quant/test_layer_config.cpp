// Layer selection rules, --layer_config parsing (JSON and AutoRound's JSON-like text), presets
// and recipes.
#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>

#include "engine/error.h"
#include "quant/layer_config.h"
#include "quant/recipe.h"

using namespace arq;
using namespace arq::quant;

TEST_CASE("layer selection: shape rule, fp_layers, routers, vision modules") {
  const QuantScheme base{.bits = 4, .group_size = 32};
  const LayerConfig none;
  LayerChoice c = choose_layer("model.layers.0.self_attn.q_proj", 64, 64, base, none, {});
  CHECK((c.scheme.bits == 4 && c.reason.empty()));
  // stories260k: gate/up are [172, 64], down is [64, 172] -> 16-bit
  c = choose_layer("model.layers.0.mlp.gate_proj", 172, 64, base, none, {});
  CHECK(c.scheme.keep_fp());
  CHECK(c.reason.find("172") != std::string::npos);
  CHECK(choose_layer("model.layers.0.mlp.down_proj", 64, 172, base, none, {}).scheme.keep_fp());
  CHECK(choose_layer("model.layers.0.self_attn.k_proj", 32, 64, base, none, {}).scheme.bits == 4);
  CHECK(choose_layer("model.layers.1.self_attn.v_proj", 64, 64, base, none, {"layers.1.self_attn"}).scheme.keep_fp());
  CHECK(choose_layer("model.layers.1.self_attn.v_proj", 64, 64, base, none, {"layers\\.[0-9]+\\.self_attn\\.v"}).scheme.keep_fp());
  CHECK(choose_layer("model.layers.0.mlp.gate", 8, 64, base, none, {}).scheme.keep_fp());  // MoE router
  CHECK(choose_layer("model.visual.blocks.0.attn.qkv", 96, 64, base, none, {}).scheme.keep_fp());
}

TEST_CASE("layer_config: JSON-like and strict JSON, regex and exact keys, presets") {
  const QuantScheme base{.bits = 4, .group_size = 128};
  LayerConfig lc = LayerConfig::parse("{k_proj:{bits:8}, '.*mlp\\.down_proj': {bits: 2, group_size: 32, sym: false}}");
  REQUIRE(lc.entries().size() == 2);
  QuantScheme s = choose_layer("model.layers.3.self_attn.k_proj", 64, 64, base, lc, {}).scheme;
  CHECK((s.bits == 8 && s.group_size == 128 && s.sym));
  s = choose_layer("model.layers.3.mlp.down_proj", 64, 128, base, lc, {}).scheme;
  CHECK((s.bits == 2 && s.group_size == 32 && !s.sym));
  s = choose_layer("model.layers.3.self_attn.q_proj", 64, 64, base, lc, {}).scheme;
  CHECK(s.bits == 4);

  lc = LayerConfig::parse(R"({"model.layers.0.mlp.down_proj": {"bits": 8, "group_size": 32}, "q_proj": "W2A16G64",
                             "o_proj": "BF16", "model.layers.0.self_attn.q_proj": {"data_type": "int_sym_gptq"}})");
  s = choose_layer("model.layers.0.mlp.down_proj", 64, 128, base, lc, {}).scheme;
  CHECK((s.bits == 8 && s.group_size == 32));
  s = choose_layer("model.layers.1.self_attn.q_proj", 64, 64, base, lc, {}).scheme;
  CHECK((s.bits == 2 && s.group_size == 64));
  // the exact name wins after the substring match: gptq-sym on top of W2A16G64
  s = choose_layer("model.layers.0.self_attn.q_proj", 64, 64, base, lc, {}).scheme;
  CHECK((s.bits == 2 && s.data_type == "int_sym_gptq"));
  LayerChoice c = choose_layer("model.layers.0.self_attn.o_proj", 64, 64, base, lc, {});
  CHECK(c.scheme.keep_fp());
  CHECK(c.reason == "layer_config");

  // from a file
  const std::string path = "/tmp/arq_test_layer_config.json";
  {
    std::ofstream f(path);
    f << R"({"v_proj": {"bits": 3}})";
  }
  lc = LayerConfig::parse(path);
  CHECK(choose_layer("model.layers.0.self_attn.v_proj", 64, 64, base, lc, {}).scheme.bits == 3);
  std::remove(path.c_str());
}

TEST_CASE("layer_config errors name the flag and the key") {
  CHECK_THROWS_WITH_AS(LayerConfig::parse("{k_proj:{bits:9}}"), doctest::Contains("k_proj"), UsageError);
  CHECK_THROWS_WITH_AS(LayerConfig::parse("{k_proj:{bitz:4}}"), doctest::Contains("bitz"), UsageError);
  CHECK_THROWS_WITH_AS(LayerConfig::parse("{k_proj:W9A16}"), doctest::Contains("W9A16"), UsageError);
  CHECK_THROWS_WITH_AS(LayerConfig::parse("{k_proj:{bits:4}"), doctest::Contains("--layer_config"), UsageError);
  CHECK_THROWS_AS(LayerConfig::parse("/no/such/file.json"), UsageError);
  CHECK_THROWS_WITH_AS(LayerConfig::parse("{'(k_proj': {bits: 4}}"), doctest::Contains("regular expression"), UsageError);
  CHECK(LayerConfig::parse("").empty());
}

TEST_CASE("presets and recipes (spec §1.14, §2)") {
  auto p = preset_scheme("W2A16G32");
  REQUIRE(p);
  CHECK((*p->bits == 2 && *p->group_size == 32));
  p = preset_scheme("w4a16");
  REQUIRE(p);
  CHECK((*p->bits == 4 && *p->group_size == 128));
  CHECK_FALSE(preset_scheme("W4A8").has_value());

  Recipe r = recipe_by_name("default");
  CHECK((r.iters == 200 && r.nsamples == 128 && r.seqlen == 2048 && r.batch_size == 8 && r.lr == 0));
  r = recipe_by_name("auto-round-best");
  CHECK((r.iters == 1000 && r.nsamples == 512 && r.lr == 0));
  r = recipe_by_name("light");
  CHECK((r.iters == 50 && r.lr == 5e-3));
  r = recipe_by_name("rtn");
  CHECK((r.iters == 0 && r.disable_opt_rtn == true && r.nsamples == 1));
  r = recipe_by_name("opt-rtn");
  CHECK((r.iters == 0 && r.disable_opt_rtn == false));
  CHECK_THROWS_WITH_AS(recipe_by_name("fast"), doctest::Contains("--recipe"), UsageError);
}
