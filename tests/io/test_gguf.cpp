// GGUF reader: every metadata type, alignment, innermost-first dims, views and raw blocks, and
// the real stories260k.gguf against its safetensors twin.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

#include "engine/error.h"
#include "files_test_util.h"
#include "io/gguf.h"
#include "io/safetensors.h"

using namespace arq;
using namespace arq::io;
using arq::test::GgufBuilder;
using arq::test::TempDir;

namespace {

template <class T>
std::string le(T v) {
  std::string s(sizeof v, '\0');
  std::memcpy(s.data(), &v, sizeof v);
  return s;
}

std::string floats(const std::vector<float>& v) {
  std::string s;
  for (const float x : v) s += le(x);
  return s;
}

// Every metadata value type once, arrays of strings / ints / floats / bools and a nested one.
void add_all_kv(GgufBuilder& b) {
  b.kv_raw("t.u8", 0, le<uint8_t>(200));
  b.kv_raw("t.i8", 1, le<int8_t>(-100));
  b.kv_raw("t.u16", 2, le<uint16_t>(60000));
  b.kv_raw("t.i16", 3, le<int16_t>(-30000));
  b.kv_u32("t.u32", 4000000000u);
  b.kv_raw("t.i32", 5, le<int32_t>(-2000000000));
  b.kv_raw("t.f32", 6, le<float>(0.15625f));
  b.kv_raw("t.bool", 7, le<uint8_t>(1));
  b.kv_string("t.string", "héllo");
  b.kv_raw("t.u64", 10, le<uint64_t>(1ull << 60));
  b.kv_raw("t.i64", 11, le<int64_t>(-(1ll << 60)));
  b.kv_raw("t.f64", 12, le<double>(-2.5e-300));
  std::string strs = le<uint32_t>(8) + le<uint64_t>(3);
  for (const char* s : {"<unk>", "", "▁a"}) strs += le<uint64_t>(std::strlen(s)) + s;
  b.kv_raw("t.strings", 9, strs);
  b.kv_raw("t.ints", 9, le<uint32_t>(5) + le<uint64_t>(3) + le<int32_t>(-1) + le<int32_t>(0) + le<int32_t>(7));
  b.kv_raw("t.floats", 9, le<uint32_t>(6) + le<uint64_t>(2) + le<float>(0.5f) + le<float>(-3.f));
  b.kv_raw("t.bools", 9, le<uint32_t>(7) + le<uint64_t>(2) + le<uint8_t>(0) + le<uint8_t>(1));
  b.kv_raw("t.nested", 9, le<uint32_t>(9) + le<uint64_t>(1) + le<uint32_t>(4) + le<uint64_t>(2) + le<uint32_t>(8) +
                              le<uint32_t>(9));
}

}  // namespace

TEST_CASE("gguf: metadata of every type, tensors, alignment") {
  for (const uint32_t version : {2u, 3u}) {
    CAPTURE(version);
    GgufBuilder b(version, 64);
    add_all_kv(b);
    b.kv_u32("general.alignment", 64);
    std::vector<float> w(15);
    for (int i = 0; i < 15; ++i) w[i] = static_cast<float>(i) - 7.f;
    b.tensor("w", {5, 3}, kGgmlF32, floats(w));                         // row-major [3, 5]
    b.tensor("h", {4}, kGgmlF16, le<uint16_t>(0x3C00) + le<uint16_t>(0xC000) + le<uint16_t>(0) + le<uint16_t>(0x7BFF));
    b.tensor("bf", {2}, kGgmlBF16, le<uint16_t>(0x3F80) + le<uint16_t>(0xC0A0));   // 1.0, -5.0
    std::string q8 = le<uint16_t>(0x3800);   // Q8_0 block: d = 0.5 (f16), then 32 int8
    for (int i = 0; i < 32; ++i) q8 += static_cast<char>(i - 16);
    b.tensor("q", {32, 2}, 8, q8 + q8);
    TempDir dir;
    arq::test::write_bytes(dir / "t.gguf", b.bytes());

    const auto g = GgufFile::open(dir / "t.gguf");
    CHECK(g.header().version == version);
    CHECK(g.header().alignment == 64);
    CHECK(g.header().data_offset % 64 == 0);
    const GgufMetadata& m = g.metadata();
    CHECK(m.get_u64("t.u8") == 200);
    CHECK(m.get_i64("t.i8") == -100);
    CHECK(m.get_u64("t.u16") == 60000);
    CHECK(m.get_i64("t.i16") == -30000);
    CHECK(m.get_u64("t.u32") == 4000000000u);
    CHECK(m.get_i64("t.i32") == -2000000000);
    CHECK(m.get_f64("t.f32") == 0.15625);
    CHECK(m.get_bool("t.bool"));
    CHECK(m.get_string("t.string") == "héllo");
    CHECK(m.get_u64("t.u64") == (1ull << 60));
    CHECK(m.get_i64("t.i64") == -(1ll << 60));
    CHECK(m.get_f64("t.f64") == -2.5e-300);
    CHECK(m.get_strings("t.strings") == std::vector<std::string>{"<unk>", "", "▁a"});
    CHECK(m.get_ints("t.ints") == std::vector<int64_t>{-1, 0, 7});
    CHECK(m.get_floats("t.floats") == std::vector<double>{0.5, -3.0});
    CHECK(m.get_ints("t.bools") == std::vector<int64_t>{0, 1});
    const GgufValue* nested = m.find("t.nested");
    REQUIRE(nested);
    REQUIRE(nested->nested.size() == 1);
    CHECK(nested->nested[0].ints == std::vector<int64_t>{8, 9});
    // Type mismatches name the key.
    const std::string msg = arq::test::error_of<IoError>([&] { m.get_string("t.u32"); });
    CHECK(msg.find("t.u32") != std::string::npos);
    CHECK_THROWS_AS(m.get_u64("t.i8"), IoError);   // negative
    CHECK_THROWS_AS(m.get_u64("absent.key"), IoError);

    REQUIRE(g.tensors().size() == 4);
    const Tensor tw = g.view("w");
    CHECK(tw.shape() == Shape{3, 5});
    CHECK(tw.dtype() == DType::f32);
    for (int64_t r = 0; r < 3; ++r)
      for (int64_t c = 0; c < 5; ++c) CHECK(tw.at({r, c}) == static_cast<double>(r * 5 + c) - 7.0);
    const Tensor th = g.view("h");
    CHECK(th.dtype() == DType::f16);
    CHECK(th.at({0}) == 1.0);
    CHECK(th.at({1}) == -2.0);
    CHECK(th.at({3}) == 65504.0);
    const Tensor tb = g.view("bf");
    CHECK(tb.dtype() == DType::bf16);
    CHECK(tb.at({1}) == -5.0);
    CHECK(g.info("q").shape == Shape{2, 32});
    CHECK(g.info("q").nbytes == 68);
    CHECK_THROWS_AS(g.view("q"), DTypeError);
    const GgufRawTensor raw = g.raw("q");
    CHECK(raw.info->ggml_type == 8);
    REQUIRE(raw.nbytes == 68);
    CHECK(std::memcmp(raw.data, (q8 + q8).data(), 68) == 0);
    CHECK(std::string(ggml_type_info(raw.info->ggml_type)->name) == "Q8_0");
  }
}

TEST_CASE("gguf: default alignment is 32") {
  GgufBuilder b(3, 32);
  b.kv_string("general.architecture", "llama");
  b.tensor("a", {3}, kGgmlF32, floats({1, 2, 3}));
  b.tensor("b", {2}, kGgmlF32, floats({4, 5}));
  TempDir dir;
  arq::test::write_bytes(dir / "a.gguf", b.bytes());
  const auto g = GgufFile::open(dir / "a.gguf");
  CHECK(g.header().alignment == 32);
  CHECK(g.info("b").offset == 32);   // 12 bytes padded to 32
  CHECK(g.view("b").at({1}) == 5.0);
}

namespace {

// GGUF name of an HF stories260k tensor (formats.md §4.7).
std::string gguf_name(const std::string& hf) {
  if (hf == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf == "model.norm.weight") return "output_norm.weight";
  const std::string pre = "model.layers.";
  const size_t dot = hf.find('.', pre.size());
  const std::string n = hf.substr(pre.size(), dot - pre.size());
  const std::string rest = hf.substr(dot + 1);
  static const std::pair<const char*, const char*> map[] = {
      {"input_layernorm.weight", "attn_norm.weight"},    {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.k_proj.weight", "attn_k.weight"},      {"self_attn.v_proj.weight", "attn_v.weight"},
      {"self_attn.o_proj.weight", "attn_output.weight"}, {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},       {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"},
  };
  for (const auto& [a, b] : map)
    if (rest == a) return "blk." + n + "." + b;
  return "";
}

}  // namespace

TEST_CASE("gguf: stories260k.gguf holds the weights of the safetensors twin") {
  const std::string gp = arq::test::shared_file("models/stories260k.gguf");
  const std::string sp = arq::test::shared_file("models/stories260k/model.safetensors");
  if (gp.empty() || sp.empty()) return;
  const auto g = GgufFile::open(gp);
  const auto s = SafetensorsFile::open(sp);
  CHECK(g.header().version == 3);
  CHECK(g.metadata().get_string("general.architecture") == "llama");
  CHECK(g.metadata().get_strings("tokenizer.ggml.tokens").size() == 512);
  CHECK(g.tensors().size() == 48);
  const int64_t n_head = static_cast<int64_t>(g.metadata().get_u64("llama.attention.head_count"));
  const int64_t n_head_kv = static_cast<int64_t>(g.metadata().get_u64("llama.attention.head_count_kv"));
  CHECK(n_head == 8);
  CHECK(n_head_kv == 4);

  int compared = 0;
  for (const auto& ti : s.tensors()) {
    CAPTURE(ti.name);
    const std::string gn = gguf_name(ti.name);
    REQUIRE(!gn.empty());
    const Tensor hf = s.view(ti.name);
    const Tensor gg = g.view(gn);
    REQUIRE(gg.shape() == hf.shape());
    REQUIRE(gg.dtype() == DType::f32);
    const bool is_q = gn.find("attn_q.weight") != std::string::npos;
    const bool is_k = gn.find("attn_k.weight") != std::string::npos;
    const int64_t rows = hf.size(0), cols = hf.dim() == 2 ? hf.size(1) : 1;
    const float* a = static_cast<const float*>(hf.data_ptr());
    const float* b = static_cast<const float*>(gg.data_ptr());
    int64_t mismatches = 0;
    for (int64_t r = 0; r < rows; ++r) {
      // Undo the converter's permutation (§4.8): inside each head of hd rows, GGUF row 2i is HF
      // row i and GGUF row 2i+1 is HF row i + hd/2.
      int64_t gr = r;
      if (is_q || is_k) {
        const int64_t hd = rows / (is_q ? n_head : n_head_kv);
        const int64_t h = r / hd, i = r % hd;
        gr = h * hd + (i < hd / 2 ? 2 * i : 2 * (i - hd / 2) + 1);
      }
      for (int64_t c = 0; c < cols; ++c) mismatches += a[r * cols + c] != b[gr * cols + c];
    }
    CHECK(mismatches == 0);   // same f32 numbers, bit for bit
    ++compared;
  }
  CHECK(compared == 47);
  // The 48th tensor is the (tied) output matrix: equal to the embedding.
  if (const GgufTensorInfo* out = g.find("output.weight")) {
    const Tensor o = g.view(out->name);
    const Tensor e = s.view("model.embed_tokens.weight");
    REQUIRE(o.nbytes() == e.nbytes());
    CHECK(std::memcmp(o.data_ptr(), e.data_ptr(), e.nbytes()) == 0);
  }
}
