// WeightStore: index / no-index folders, prefix listing, per-block loading with conversion,
// and the missing-tensor error.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>

#include "files_test_util.h"
#include "io/safetensors.h"
#include "io/weight_store.h"

using namespace arq;
using namespace arq::io;
using arq::test::TempDir;

namespace {

Tensor ramp(const Shape& shape, float start) {
  Tensor t = Tensor::empty(shape, DType::f32);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = start + 0.25f * static_cast<float>(i);
  return t;
}

// A two-block toy model: embed, 2 × (norm, q), final norm.
std::vector<std::pair<std::string, Tensor>> toy_model() {
  return {
      {"model.embed_tokens.weight", ramp({6, 4}, 0)},
      {"model.layers.0.input_layernorm.weight", ramp({4}, 1)},
      {"model.layers.0.self_attn.q_proj.weight", ramp({4, 4}, 2)},
      {"model.layers.1.input_layernorm.weight", ramp({4}, 3)},
      {"model.layers.1.self_attn.q_proj.weight", ramp({4, 4}, 4)},
      {"model.layers.10.input_layernorm.weight", ramp({4}, 5)},   // prefix trap for block 1
      {"model.norm.weight", ramp({4}, 6)},
  };
}

}  // namespace

TEST_CASE("WeightStore: sharded folder with index") {
  TempDir dir;
  const auto ts = toy_model();
  ShardOptions opt;
  opt.max_shard_bytes = 100;   // forces several shards
  const ShardResult r = save_safetensors_sharded(dir.str(), ts, opt);
  REQUIRE(r.files.size() > 2);
  const auto ws = WeightStore::open(dir.str());
  CHECK(ws.size() == ts.size());
  CHECK(ws.files().size() == r.files.size());
  CHECK(ws.has("model.norm.weight"));
  CHECK(ws.names("model.layers.1.") == std::vector<std::string>{"model.layers.1.input_layernorm.weight",
                                                                  "model.layers.1.self_attn.q_proj.weight"});
  CHECK(ws.names().size() == ts.size());

  const auto block = ws.load_block(1, DType::bf16);
  REQUIRE(block.size() == 2);
  const Tensor q = block.at("model.layers.1.self_attn.q_proj.weight");
  CHECK(q.dtype() == DType::bf16);
  CHECK(q.shape() == Shape{4, 4});
  // ramp values are multiples of 0.25 below 8: exact in bf16 (8 significant bits).
  for (int64_t i = 0; i < 16; ++i) CHECK(q.at({i / 4, i % 4}) == 4.0 + 0.25 * static_cast<double>(i));

  // load() returns fresh, writable memory even when no conversion is needed.
  Tensor e = ws.load("model.embed_tokens.weight", DType::f32, Device::cpu());
  CHECK(e.data_ptr() != ws.view("model.embed_tokens.weight").data_ptr());
  e.data<float>()[0] = 42.f;
  CHECK(ws.view("model.embed_tokens.weight").at({0, 0}) == 0.0);
}

TEST_CASE("WeightStore: folder of several files without an index, and a single file") {
  TempDir dir;
  write_safetensors(dir / "part-a.safetensors", {StWriteTensor::from_tensor("x", ramp({3}, 1))});
  write_safetensors(dir / "part-b.safetensors", {StWriteTensor::from_tensor("y", ramp({2, 2}, 2))});
  const auto ws = WeightStore::open(dir.str());
  CHECK(ws.size() == 2);
  CHECK(ws.load("y", DType::f64).at({1, 1}) == 2.75);
  CHECK(ws.file_of("x").path() == dir / "part-a.safetensors");

  const auto one = WeightStore::open(dir / "part-b.safetensors");
  CHECK(one.size() == 1);
  CHECK(one.has("y"));

  // The same name in two files with no index to arbitrate is an error.
  write_safetensors(dir / "part-c.safetensors", {StWriteTensor::from_tensor("x", ramp({3}, 1))});
  const std::string m = arq::test::error_of<IoError>([&] { WeightStore::open(dir.str()); });
  CHECK(m.find("'x'") != std::string::npos);
}

TEST_CASE("WeightStore: a missing tensor names itself and the files searched") {
  TempDir dir;
  ShardOptions opt;
  opt.max_shard_bytes = 100;
  const ShardResult r = save_safetensors_sharded(dir.str(), toy_model(), opt);
  const auto ws = WeightStore::open(dir.str());
  const std::string m = arq::test::error_of<IoError>([&] { ws.load("lm_head.weight", DType::f32); });
  CHECK(m.find("lm_head.weight") != std::string::npos);
  for (const auto& f : r.files) CHECK(m.find(f) != std::string::npos);
  CHECK_THROWS_AS(ws.load_block(7, DType::f32), IoError);
}

TEST_CASE("WeightStore: index problems are reported") {
  TempDir dir;
  ShardOptions opt;
  opt.max_shard_bytes = 100;
  const ShardResult r = save_safetensors_sharded(dir.str(), toy_model(), opt);
  std::filesystem::remove(dir / r.files.back());
  const std::string m = arq::test::error_of<IoError>([&] { WeightStore::open(dir.str()); });
  CHECK(m.find(r.files.back()) != std::string::npos);

  TempDir empty;
  CHECK_THROWS_AS(WeightStore::open(empty.str()), IoError);
  CHECK_THROWS_AS(WeightStore::open(empty / "nope"), IoError);
}

TEST_CASE("WeightStore: the real stories260k folder") {
  const std::string p = arq::test::shared_file("models/stories260k/model.safetensors");
  if (p.empty()) return;
  const auto ws = WeightStore::open(p.substr(0, p.rfind('/')));
  CHECK(ws.size() == 47);
  const auto block = ws.load_block(4, DType::f32);
  CHECK(block.size() == 9);
  CHECK(block.at("model.layers.4.self_attn.k_proj.weight").shape() == Shape{32, 64});
}
