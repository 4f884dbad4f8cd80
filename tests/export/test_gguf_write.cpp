// GGUF writer: write with io/gguf_write, read back with the project's reader (io/gguf.h), every
// key, value, tensor info and tensor byte checked; alignment and offsets checked on the raw file;
// failures leave no file behind.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>

#include "engine/dtype.h"
#include "export_test_util.h"
#include "io/ggml_blocks.h"
#include "io/gguf.h"
#include "io/gguf_write.h"

using namespace arq;
using namespace arq::io;
namespace fs = std::filesystem;

namespace {

GgufMetadata all_types_metadata() {
  GgufMetadata md;
  md.set("general.architecture", GgufValue::make_string("llama"));
  md.set("test.u8", gguf_u8(250));
  md.set("test.i8", gguf_i8(-120));
  md.set("test.u16", gguf_u16(65000));
  md.set("test.i16", gguf_i16(-32000));
  md.set("test.u32", GgufValue::make_u32(4000000000u));
  md.set("test.i32", GgufValue::make_i32(-2000000000));
  md.set("test.f32", GgufValue::make_f32(1e-5f));
  md.set("test.bool", GgufValue::make_bool(true));
  md.set("test.string", GgufValue::make_string("héllo ✓"));
  md.set("test.u64", GgufValue::make_u64(0xFFFFFFFFFFFFFFF0ull));
  md.set("test.i64", gguf_i64(-(int64_t{1} << 60)));
  md.set("test.f64", gguf_f64(3.141592653589793));
  md.set("test.empty_string", GgufValue::make_string(""));
  md.set("test.arr.str", gguf_string_array({"a", "", "<s>", "Ġthe"}));
  md.set("test.arr.f32", gguf_f32_array({0.5f, -1.25f, 1e30f}));
  md.set("test.arr.i32", gguf_i32_array({1, -2, 2147483647}));
  md.set("test.arr.u32", gguf_u32_array({0, 4294967295u}));
  md.set("test.arr.bool", gguf_int_array(GgufType::boolean, {1, 0, 1}));
  md.set("test.arr.u8", gguf_int_array(GgufType::u8, {0, 255}));
  md.set("test.arr.i64", gguf_int_array(GgufType::i64, {-5, int64_t{1} << 62}));
  GgufValue f64arr;
  f64arr.type = GgufType::array;
  f64arr.array_type = GgufType::f64;
  f64arr.floats = {1.0 / 3.0, -2.5};
  md.set("test.arr.f64", f64arr);
  GgufValue nested;
  nested.type = GgufType::array;
  nested.array_type = GgufType::array;
  nested.nested = {gguf_i32_array({1, 2}), gguf_string_array({"x"})};
  md.set("test.arr.nested", nested);
  md.set("test.arr.empty", gguf_i32_array({}));
  return md;
}

void check_value_equal(const GgufValue& a, const GgufValue& b, const std::string& key) {
  INFO("key " << key);
  REQUIRE(a.type == b.type);
  switch (a.type) {
    case GgufType::string: CHECK(a.s == b.s); break;
    case GgufType::f32: CHECK(static_cast<float>(a.f) == static_cast<float>(b.f)); break;
    case GgufType::f64: CHECK(a.f == b.f); break;
    case GgufType::array:
      REQUIRE(a.array_type == b.array_type);
      CHECK(a.strings == b.strings);
      CHECK(a.ints == b.ints);
      REQUIRE(a.floats.size() == b.floats.size());
      for (size_t i = 0; i < a.floats.size(); ++i)
        CHECK((a.array_type == GgufType::f32 ? static_cast<float>(a.floats[i]) == static_cast<float>(b.floats[i])
                                             : a.floats[i] == b.floats[i]));
      REQUIRE(a.nested.size() == b.nested.size());
      for (size_t i = 0; i < a.nested.size(); ++i) check_value_equal(a.nested[i], b.nested[i], key + "[]");
      break;
    case GgufType::i8: case GgufType::i16: case GgufType::i32: case GgufType::i64: CHECK(a.i == b.i); break;
    default: CHECK(a.u == b.u); break;
  }
}

std::vector<float> randn(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 0.05f);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

std::vector<GgufWriteTensor> sample_tensors() {
  std::vector<GgufWriteTensor> ts;
  auto add = [&](const std::string& name, Shape shape, GgmlType t, uint32_t seed) {
    GgufWriteTensor w;
    w.decl = {name, shape, t};
    const auto x = randn(static_cast<size_t>(shape_numel(shape)), seed);
    w.bytes.resize(w.decl.nbytes());
    const int64_t cols = shape.back();
    const size_t rb = ggml_row_bytes(t, cols);
    for (int64_t r = 0; r < shape_numel(shape) / cols; ++r)
      ggml_quantize_row(t, x.data() + r * cols, w.bytes.data() + static_cast<size_t>(r) * rb, cols);
    ts.push_back(std::move(w));
  };
  add("token_embd.weight", {7, 256}, GgmlType::q4_K, 1);
  add("blk.0.attn_norm.weight", {64}, GgmlType::f32, 2);        // 1-D, 256 bytes
  add("blk.0.attn_q.weight", {5, 96}, GgmlType::q4_0, 3);       // 5 rows × 54 bytes: needs padding
  add("blk.0.ffn_down.weight", {3, 512}, GgmlType::q6_K, 4);
  add("blk.0.attn_k.weight", {3, 40}, GgmlType::f16, 5);        // 240 bytes: padding
  add("blk.0.attn_v.weight", {2, 32}, GgmlType::bf16, 6);
  add("blk.0.ffn_gate_exps.weight", {2, 3, 64}, GgmlType::q8_0, 7);  // 3-D
  add("output_norm.weight", {1, 33}, GgmlType::f32, 8);          // leading 1: n_dims 1
  return ts;
}

}  // namespace

TEST_CASE("GGUF writer: every metadata type and tensor reads back through io/gguf.h") {
  for (uint32_t alignment : {32u, 64u}) {
    CAPTURE(alignment);
    arq::test::ExportTempDir dir;
    const std::string path = dir / "m.gguf";
    const GgufMetadata md = all_types_metadata();
    const auto ts = sample_tensors();
    write_gguf(path, md, ts, alignment);
    CHECK(!fs::exists(path + ".tmp"));

    GgufFile g = GgufFile::open(path);
    CHECK(g.header().version == 3);
    CHECK(g.header().alignment == alignment);
    CHECK(g.header().data_offset % alignment == 0);
    // Every key in order; general.alignment added only when not 32.
    const auto& items = g.metadata().items();
    REQUIRE(items.size() == md.items().size() + (alignment != 32 ? 1 : 0));
    for (size_t i = 0; i < md.items().size(); ++i) {
      CHECK(items[i].first == md.items()[i].first);
      check_value_equal(items[i].second, md.items()[i].second, md.items()[i].first);
    }
    if (alignment != 32) {
      CHECK(items.back().first == "general.alignment");
      CHECK(items.back().second.type == GgufType::u32);
    }
    // Every tensor: name, shape (leading 1s dropped as ggml does), type, offset, bytes.
    REQUIRE(g.tensors().size() == ts.size());
    uint64_t expect_offset = 0;
    for (size_t i = 0; i < ts.size(); ++i) {
      const GgufTensorInfo& info = g.tensors()[i];
      INFO("tensor " << ts[i].decl.name);
      CHECK(info.name == ts[i].decl.name);
      CHECK(info.ne == gguf_ne(ts[i].decl.shape));
      CHECK(info.ggml_type == static_cast<uint32_t>(ts[i].decl.type));
      CHECK(info.offset == expect_offset);
      CHECK(info.nbytes == ts[i].bytes.size());
      expect_offset += (ts[i].bytes.size() + alignment - 1) / alignment * alignment;
      const GgufRawTensor raw = g.raw(info.name);
      REQUIRE(raw.nbytes == ts[i].bytes.size());
      CHECK(std::memcmp(raw.data, ts[i].bytes.data(), raw.nbytes) == 0);
    }
    CHECK(g.tensors()[7].shape == Shape{33});
    CHECK(g.tensors()[6].ne == std::vector<int64_t>{64, 3, 2});
    // File ends right after the last tensor's padding.
    CHECK(fs::file_size(path) == g.header().data_offset + expect_offset);
    // A plain tensor through view(): values equal the f16 conversion of the source.
    Tensor k = g.view("blk.0.attn_k.weight");
    CHECK(k.dtype() == DType::f16);
    CHECK(k.shape() == Shape{3, 40});
  }
}

TEST_CASE("GGUF stream writer: Tensor overload encodes to the declared type") {
  arq::test::ExportTempDir dir;
  const std::string path = dir / "t.gguf";
  Tensor w = Tensor::empty({4, 256}, DType::f32);
  const auto x = randn(4 * 256, 11);
  std::memcpy(w.data<float>(), x.data(), x.size() * 4);
  GgufMetadata md;
  md.set("general.architecture", GgufValue::make_string("qwen2"));
  {
    GgufStreamWriter sw(path, md, {{"a.weight", {4, 256}, GgmlType::q5_K}, {"b.weight", {4, 256}, GgmlType::bf16}});
    sw.write_tensor("a.weight", w);
    sw.write_tensor("b.weight", w.to(DType::bf16));
    sw.finish();
  }
  GgufFile g = GgufFile::open(path);
  const GgufRawTensor a = g.raw("a.weight");
  const std::vector<uint8_t> want = ggml_quantize(w, GgmlType::q5_K);
  REQUIRE(a.nbytes == want.size());
  CHECK(std::memcmp(a.data, want.data(), want.size()) == 0);
  Tensor b = g.view("b.weight");
  for (int64_t i = 0; i < 4 * 256; ++i)
    CHECK(b.data<BFloat16>()[i].bits == f32_to_bf16_bits(x[static_cast<size_t>(i)]));
}

TEST_CASE("GGUF writer failures leave no file behind") {
  arq::test::ExportTempDir dir;
  const std::string path = dir / "bad.gguf";
  GgufMetadata md;
  md.set("general.architecture", GgufValue::make_string("llama"));
  std::vector<uint8_t> bytes(18 * 2);

  SUBCASE("out of order") {
    {
      GgufStreamWriter w(path, md, {{"a", {1, 32}, GgmlType::q4_0}, {"b", {1, 32}, GgmlType::q4_0}});
      CHECK_THROWS_AS(w.write_tensor("b", bytes.data(), 18), IoError);
    }
    CHECK(!fs::exists(path));
    CHECK(!fs::exists(path + ".tmp"));
  }
  SUBCASE("wrong byte count") {
    {
      GgufStreamWriter w(path, md, {{"a", {1, 32}, GgmlType::q4_0}});
      CHECK_THROWS_AS(w.write_tensor("a", bytes.data(), 17), IoError);
    }
    CHECK(!fs::exists(path + ".tmp"));
  }
  SUBCASE("finish with a tensor missing") {
    GgufStreamWriter w(path, md, {{"a", {1, 32}, GgmlType::q4_0}, {"b", {1, 32}, GgmlType::q4_0}});
    w.write_tensor("a", bytes.data(), 18);
    CHECK_THROWS_AS(w.finish(), IoError);
    CHECK(!fs::exists(path));
    CHECK(!fs::exists(path + ".tmp"));
  }
  SUBCASE("declarations rejected") {
    CHECK_THROWS_AS(GgufStreamWriter(path, md, {{"a", {1, 30}, GgmlType::q4_0}}), ShapeError);
    CHECK_THROWS_AS(GgufStreamWriter(path, md, {{"a", {1, 32}, GgmlType::q4_0}, {"a", {1, 32}, GgmlType::q4_0}}), IoError);
    CHECK_THROWS_AS(GgufStreamWriter(path, md, {{std::string(64, 'x'), {32}, GgmlType::f32}}), IoError);
    CHECK_THROWS_AS(GgufStreamWriter(path, md, {{"a", {2, 2, 3, 4, 32}, GgmlType::f32}}), ShapeError);
    GgufMetadata bad = md;
    bad.set("x.u8", gguf_u8(0));
    bad.set("x.u8", gguf_int_array(GgufType::u8, {300}));
    CHECK_THROWS_AS(GgufStreamWriter(path, bad, {}), IoError);
    CHECK(!fs::exists(path + ".tmp"));
  }
  SUBCASE("missing folder") {
    CHECK_THROWS_AS(GgufStreamWriter(dir / "no/such/dir/x.gguf", md, {}), IoError);
  }
}
