// safetensors: round trips in every dtype, the reference byte layout, sharding, zero-copy views.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "files_test_util.h"
#include "io/json_util.h"
#include "io/safetensors.h"
#include "io/weight_store.h"

using namespace arq;
using namespace arq::io;
using arq::test::TempDir;

namespace {

// A tensor of `dtype` holding a deterministic pattern that exercises signs and fractions.
Tensor pattern(const Shape& shape, DType dtype, int seed) {
  Tensor t = Tensor::empty(shape, dtype);
  const int64_t n = t.numel();
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    T* p = t.data<T>();
    for (int64_t i = 0; i < n; ++i) {
      const double v = is_floating(dtype) ? (static_cast<double>((i * 37 + seed) % 101) - 50.0) / 8.0
                                          : static_cast<double>((i * 37 + seed) % 101) - (dtype == DType::u8 ? 0 : 50);
      p[i] = convert<T>(v);
    }
  });
  return t;
}

}  // namespace

TEST_CASE("safetensors: round trip of every engine dtype is bit exact") {
  TempDir dir;
  const DType all[] = {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i8, DType::u8, DType::i32, DType::i64};
  std::vector<std::pair<std::string, Tensor>> ts;
  int seed = 0;
  for (const DType d : all) {
    ts.emplace_back(cat("t.", dtype_name(d), ".odd"), pattern({5, 7}, d, seed++));
    ts.emplace_back(cat("t.", dtype_name(d), ".3d"), pattern({2, 3, 13}, d, seed++));
  }
  ts.emplace_back("scalar", pattern({}, DType::f32, 3));
  ts.emplace_back("empty", Tensor::empty({0, 4}, DType::bf16));
  // A non-contiguous input is written in its logical (row-major) order.
  Tensor base = pattern({4, 6}, DType::f32, 9);
  ts.emplace_back("transposed", base.t());

  const ShardResult r = save_safetensors_sharded(dir.str(), ts);
  CHECK(r.files == std::vector<std::string>{"model.safetensors"});
  CHECK_FALSE(r.indexed);
  CHECK_FALSE(std::filesystem::exists(dir / "model.safetensors.index.json"));
  CHECK_FALSE(std::filesystem::exists(dir / "model.safetensors.tmp"));

  const auto f = SafetensorsFile::open(dir / "model.safetensors");
  CHECK(f.tensors().size() == ts.size());
  REQUIRE(f.metadata().size() == 1);
  CHECK(f.metadata()[0] == std::pair<std::string, std::string>{"format", "pt"});
  for (const auto& [name, t] : ts) {
    CAPTURE(name);
    const Tensor got = f.view(name);
    CHECK(got.dtype() == t.dtype());
    CHECK(got.shape() == t.shape());
    const Tensor want = t.contiguous();
    REQUIRE(got.nbytes() == want.nbytes());
    if (want.nbytes()) CHECK(std::memcmp(got.data_ptr(), want.data_ptr(), want.nbytes()) == 0);
  }
  // Logical order of the transposed view: element [i, j] of base.t() is base[j, i].
  const Tensor tr = f.view("transposed");
  for (int64_t i = 0; i < 6; ++i)
    for (int64_t j = 0; j < 4; ++j) CHECK(tr.at({i, j}) == base.at({j, i}));
}

TEST_CASE("safetensors: raw dtypes round trip and decode") {
  TempDir dir;
  // One payload per non-engine dtype, with values whose decoding is known exactly.
  const uint8_t bools[] = {0, 1, 1, 0};
  const int16_t i16[] = {-32768, -1, 0, 32767};
  const uint16_t u16[] = {0, 1, 40000, 65535};
  const uint32_t u32[] = {0, 7, 3000000000u, 4294967295u};
  const uint64_t u64[] = {0, 1, 1ull << 40, 9223372036854775807ull};
  // F8_E4M3: 0x38 = 1.0, 0x7E = 448 (max), 0x01 = 2^-9 (min subnormal), 0xB8 = -1.0
  const uint8_t e4m3[] = {0x38, 0x7E, 0x01, 0xB8};
  // F8_E5M2: 0x3C = 1.0, 0x7B = 57344 (max), 0x01 = 2^-16, 0x7C = +inf
  const uint8_t e5m2[] = {0x3C, 0x7B, 0x01, 0x7C};
  // F8_E8M0: 127 = 1.0, 0 = 2^-127, 130 = 8, 0xFF = NaN
  const uint8_t e8m0[] = {127, 0, 130, 0xFF};
  const float c64[] = {1.f, -2.f, 3.5f, 0.f};   // two complex numbers

  std::vector<StWriteTensor> w = {
      StWriteTensor::from_bytes("bool", StDType::BOOL, {4}, bools, 4),
      StWriteTensor::from_bytes("i16", StDType::I16, {2, 2}, i16, 8),
      StWriteTensor::from_bytes("u16", StDType::U16, {4}, u16, 8),
      StWriteTensor::from_bytes("u32", StDType::U32, {4}, u32, 16),
      StWriteTensor::from_bytes("u64", StDType::U64, {4}, u64, 32),
      StWriteTensor::from_bytes("e4m3", StDType::F8_E4M3, {4}, e4m3, 4),
      StWriteTensor::from_bytes("e5m2", StDType::F8_E5M2, {4}, e5m2, 4),
      StWriteTensor::from_bytes("e8m0", StDType::F8_E8M0, {4}, e8m0, 4),
      StWriteTensor::from_bytes("c64", StDType::C64, {2}, c64, 16),
  };
  write_safetensors(dir / "raw.safetensors", w);
  const auto f = SafetensorsFile::open(dir / "raw.safetensors");
  for (const auto& t : w) {
    CAPTURE(t.name);
    const RawTensor r = f.raw(t.name);
    CHECK(r.dtype == t.dtype);
    CHECK(r.shape == t.shape);
    REQUIRE(r.nbytes == t.nbytes);
    CHECK(std::memcmp(r.data, t.data, t.nbytes) == 0);
  }
  // view() refuses what the engine cannot hold, naming the tensor, the dtype and the file.
  const std::string msg = arq::test::error_of<DTypeError>([&] { f.view("e4m3"); });
  CHECK(msg.find("e4m3") != std::string::npos);
  CHECK(msg.find("F8_E4M3") != std::string::npos);
  CHECK(msg.find("raw.safetensors") != std::string::npos);

  const Tensor b = f.tensor("bool");
  CHECK(b.dtype() == DType::u8);
  CHECK(b.at({1}) == 1);
  const Tensor s16 = f.tensor("i16");
  CHECK(s16.dtype() == DType::i32);
  CHECK(s16.at({0, 0}) == -32768);
  CHECK(s16.at({1, 1}) == 32767);
  CHECK(f.tensor("u16").at({2}) == 40000);
  CHECK(f.tensor("u32").at({3}) == 4294967295.0);
  CHECK(f.tensor("u64").at({2}) == std::ldexp(1.0, 40));
  const Tensor f8 = f.tensor("e4m3");
  CHECK(f8.dtype() == DType::f32);
  CHECK(f8.at({0}) == 1.0);
  CHECK(f8.at({1}) == 448.0);
  CHECK(f8.at({2}) == std::ldexp(1.0, -9));
  CHECK(f8.at({3}) == -1.0);
  const Tensor f52 = f.tensor("e5m2");
  CHECK(f52.at({0}) == 1.0);
  CHECK(f52.at({1}) == 57344.0);
  CHECK(f52.at({2}) == std::ldexp(1.0, -16));
  CHECK(std::isinf(f52.at({3})));
  const Tensor e8 = f.tensor("e8m0");
  CHECK(e8.at({0}) == 1.0);
  CHECK(e8.at({1}) == std::ldexp(1.0, -127));
  CHECK(e8.at({2}) == 8.0);
  CHECK(std::isnan(e8.at({3})));
  CHECK_THROWS_AS(f.tensor("c64"), DTypeError);
}

TEST_CASE("safetensors: FP8 E4M3/E5M2 decoders are monotone over every code") {
  // Independent of the formula: finite positive codes must increase strictly with the code,
  // negative codes mirror them, and the extremes are the published ones (448; 57344).
  double prev = -1;
  for (int c = 0; c < 0x7F; ++c) {   // 0x7F is NaN in E4M3 (FN variant)
    const double v = f8_e4m3_to_f32(static_cast<uint8_t>(c));
    CHECK(v > prev);
    CHECK(f8_e4m3_to_f32(static_cast<uint8_t>(c | 0x80)) == -v);
    prev = v;
  }
  CHECK(prev == 448.0);
  CHECK(std::isnan(f8_e4m3_to_f32(0x7F)));
  CHECK(std::isnan(f8_e4m3_to_f32(0xFF)));
  prev = -1;
  for (int c = 0; c < 0x7C; ++c) {   // 0x7C = inf, above = NaN
    const double v = f8_e5m2_to_f32(static_cast<uint8_t>(c));
    CHECK(v > prev);
    prev = v;
  }
  CHECK(prev == 57344.0);
  CHECK(std::isnan(f8_e5m2_to_f32(0x7D)));
}

TEST_CASE("safetensors: header bytes are those of the reference writer") {
  TempDir dir;
  const double d[] = {1.5};
  const float a[] = {2.f};
  const float b[] = {3.f, 4.f};
  const int8_t c[] = {1, 2, 3};
  std::vector<StWriteTensor> w = {
      StWriteTensor::from_bytes("b", StDType::F32, {2}, b, 8),
      StWriteTensor::from_bytes("c", StDType::I8, {3}, c, 3),
      StWriteTensor::from_bytes("a", StDType::F32, {1, 1}, a, 4),
      StWriteTensor::from_bytes("d", StDType::F64, {}, d, 8),
  };
  write_safetensors(dir / "x.safetensors", w);
  const std::string bytes = arq::test::read_bytes(dir / "x.safetensors");
  // Dtype descending in the reference enum order (F64 > F32 > I8), then name ascending.
  std::string want =
      R"({"__metadata__":{"format":"pt"},"d":{"dtype":"F64","shape":[],"data_offsets":[0,8]},)"
      R"("a":{"dtype":"F32","shape":[1,1],"data_offsets":[8,12]},"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]},)"
      R"("c":{"dtype":"I8","shape":[3],"data_offsets":[20,23]}})";
  while (want.size() % 8) want += ' ';
  std::string expect;
  arq::test::append_u64(expect, want.size());
  expect += want;
  expect.append(reinterpret_cast<const char*>(d), 8);
  expect.append(reinterpret_cast<const char*>(a), 4);
  expect.append(reinterpret_cast<const char*>(b), 8);
  expect.append(reinterpret_cast<const char*>(c), 3);
  CHECK(bytes == expect);
}

TEST_CASE("safetensors: views are zero-copy into the mapping") {
  TempDir dir;
  save_safetensors_sharded(dir.str(), {{"w", pattern({3, 5}, DType::f32, 1)}});
  const auto f = SafetensorsFile::open(dir / "model.safetensors");
  const Tensor v = f.view("w");
  const RawTensor r = f.raw("w");
  CHECK(v.data_ptr() == static_cast<const void*>(r.data));
  // The view keeps the mapping alive after the file object is gone.
  Tensor kept;
  {
    const auto g = SafetensorsFile::open(dir / "model.safetensors");
    kept = g.view("w");
  }
  CHECK(kept.at({2, 4}) == pattern({3, 5}, DType::f32, 1).at({2, 4}));
}

TEST_CASE("safetensors: sharding follows huggingface_hub and writes the index") {
  TempDir dir;
  // Sizes in bytes: a 400, b 400, c 400, big 1200, d 40; limit 1000.
  // hub's split: [a b] (c would make 1200 > 1000) | big alone (placed when met) | [c d]
  std::vector<std::pair<std::string, Tensor>> ts = {
      {"layer.a", pattern({100}, DType::f32, 1)}, {"layer.b", pattern({10, 10}, DType::f32, 2)},
      {"layer.c", pattern({50}, DType::f64, 3)},  {"big", pattern({300}, DType::f32, 4)},
      {"layer.d", pattern({20}, DType::bf16, 5)},
  };
  ShardOptions opt;
  opt.max_shard_bytes = 1000;
  const ShardResult r = save_safetensors_sharded(dir.str(), ts, opt);
  REQUIRE(r.files.size() == 3);
  CHECK(r.files[0] == "model-00001-of-00003.safetensors");
  CHECK(r.files[2] == "model-00003-of-00003.safetensors");
  CHECK(r.total_size == 400 + 400 + 400 + 1200 + 40);
  CHECK(r.indexed);

  const std::string idx_text = arq::test::read_bytes(dir / "model.safetensors.index.json");
  CHECK(idx_text.back() == '\n');
  const JsonValue idx = parse_json(idx_text, "index");
  REQUIRE(idx.find("metadata"));
  CHECK(idx.find("metadata")->find("total_size")->as_int() == 2440);
  const JsonValue* wm = idx.find("weight_map");
  REQUIRE(wm);
  CHECK(wm->find("layer.a")->as_string() == "model-00001-of-00003.safetensors");
  CHECK(wm->find("layer.b")->as_string() == "model-00001-of-00003.safetensors");
  CHECK(wm->find("big")->as_string() == "model-00002-of-00003.safetensors");
  CHECK(wm->find("layer.c")->as_string() == "model-00003-of-00003.safetensors");
  CHECK(wm->find("layer.d")->as_string() == "model-00003-of-00003.safetensors");
  // Sorted keys, 2-space indent (json.dumps(indent=2, sort_keys=True)).
  CHECK(idx_text.rfind("{\n  \"metadata\": {\n    \"total_size\": 2440\n  },\n  \"weight_map\": {\n    \"big\"", 0) == 0);

  const auto ws = WeightStore::open(dir.str());
  CHECK(ws.size() == 5);
  for (const auto& [name, t] : ts) {
    CAPTURE(name);
    const Tensor got = ws.load(name);
    REQUIRE(got.nbytes() == t.nbytes());
    CHECK(std::memcmp(got.data_ptr(), t.data_ptr(), t.nbytes()) == 0);
  }
  for (const auto& e : std::filesystem::directory_iterator(dir.str()))
    CHECK(e.path().extension() != ".tmp");

  // Saving again into the same folder as one file removes the stale index.
  save_safetensors_sharded(dir.str(), ts);
  CHECK_FALSE(std::filesystem::exists(dir / "model.safetensors.index.json"));
}

TEST_CASE("safetensors: the writer refuses inconsistent input") {
  TempDir dir;
  const float x[] = {1, 2, 3};
  CHECK_THROWS_AS(write_safetensors(dir / "a.safetensors", {StWriteTensor::from_bytes("x", StDType::F32, {2, 2}, x, 12)}),
                  IoError);
  CHECK_THROWS_AS(write_safetensors(dir / "a.safetensors", {StWriteTensor::from_bytes("x", StDType::F32, {3}, x, 12),
                                                            StWriteTensor::from_bytes("x", StDType::F32, {3}, x, 12)}),
                  IoError);
  CHECK_FALSE(std::filesystem::exists(dir / "a.safetensors"));
}

TEST_CASE("safetensors: rewriting the real stories260k file reproduces it byte for byte") {
  const std::string path = arq::test::shared_file("models/stories260k/model.safetensors");
  if (path.empty()) return;
  const auto f = SafetensorsFile::open(path);
  CHECK(f.tensors().size() == 47);   // embed + norm + 5 layers × 9 (tied lm_head absent)
  CHECK(f.info("model.embed_tokens.weight").shape == Shape{512, 64});
  CHECK(f.info("model.layers.0.mlp.down_proj.weight").shape == Shape{64, 172});
  std::vector<StWriteTensor> w;
  for (const auto& t : f.tensors()) w.push_back(StWriteTensor::from_tensor(t.name, f.view(t.name)));
  TempDir dir;
  write_safetensors(dir / "model.safetensors", w);
  CHECK(arq::test::read_bytes(dir / "model.safetensors") == arq::test::read_bytes(path));
}
