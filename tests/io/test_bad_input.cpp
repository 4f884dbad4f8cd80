// Broken files: every one is a clear arq::IoError / ConfigError naming the file and the problem,
// never a crash. The files are written into a temp folder by the test itself.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>

#include "engine/error.h"
#include "files_test_util.h"
#include "io/config.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "io/weight_store.h"

using namespace arq;
using namespace arq::io;
using arq::test::GgufBuilder;
using arq::test::safetensors_bytes;
using arq::test::TempDir;

namespace {

// Write `bytes` to a file, open it as safetensors, return the IoError message.
std::string st_error(const std::string& bytes) {
  TempDir dir;
  const std::string p = dir / "bad.safetensors";
  arq::test::write_bytes(p, bytes);
  const std::string m = arq::test::error_of<IoError>([&] { SafetensorsFile::open(p); });
  CHECK(m.find("bad.safetensors") != std::string::npos);
  return m;
}

std::string gguf_error(const std::string& bytes) {
  TempDir dir;
  const std::string p = dir / "bad.gguf";
  arq::test::write_bytes(p, bytes);
  const std::string m = arq::test::error_of<IoError>([&] { GgufFile::open(p); });
  CHECK(m.find("bad.gguf") != std::string::npos);
  return m;
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

const std::string kData8(8, '\x01');   // two F32 elements

std::string entry(const std::string& name, const std::string& dtype, const std::string& shape, uint64_t b, uint64_t e) {
  return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" +
         std::to_string(b) + "," + std::to_string(e) + "]}";
}

// A valid two-tensor safetensors file.
std::string good_safetensors() {
  const std::string h = "{\"__metadata__\":{\"format\":\"pt\"}," + entry("a", "F32", "[2]", 0, 8) + "," +
                        entry("b", "I8", "[2,2]", 8, 12) + "}";
  return safetensors_bytes(h, kData8 + "\x01\x02\x03\x04");
}

std::string good_gguf() {
  GgufBuilder b;
  b.kv_string("general.architecture", "llama");
  b.kv_u32("llama.block_count", 2);
  b.kv_raw("tokenizer.ggml.scores", 9, std::string("\x06\0\0\0", 4) + std::string("\x02\0\0\0\0\0\0\0", 8) +
                                           std::string(8, '\0'));
  b.tensor("w", {2, 2}, 0, std::string(16, '\x02'));
  b.tensor("v", {4}, 1, std::string(8, '\x03'));
  return b.bytes();
}

}  // namespace

TEST_CASE("bad safetensors: truncated and impossible header lengths") {
  CHECK(has(st_error(""), "truncated"));
  CHECK(has(st_error("\x05\0\0"), "truncated"));
  std::string s;
  arq::test::append_u64(s, 1000);
  CHECK(has(st_error(s + "{}"), "larger than the file"));
  s.clear();
  arq::test::append_u64(s, 1ull << 62);
  CHECK(has(st_error(s + "{}"), "exceeds the limit"));
  CHECK(has(st_error(safetensors_bytes("[1,2]", "")), "'{'"));
}

TEST_CASE("bad safetensors: malformed JSON and malformed entries") {
  CHECK(has(st_error(safetensors_bytes("{\"a\":{\"dtype\":\"F32\",", "")), "not valid JSON"));
  CHECK(has(st_error(safetensors_bytes("{\"a\":1}", "")), "'a'"));
  CHECK(has(st_error(safetensors_bytes("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", kData8)), "dtype"));
  CHECK(has(st_error(safetensors_bytes("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", kData8)), "shape"));
  CHECK(has(st_error(safetensors_bytes("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", kData8)), "data_offsets"));
  CHECK(has(st_error(safetensors_bytes("{" + entry("a", "F32", "[-2]", 0, 8) + "}", kData8)), "shape entry"));
  CHECK(has(st_error(safetensors_bytes("{" + entry("a", "F32", "[\"2\"]", 0, 8) + "}", kData8)), "shape entry"));
  CHECK(has(st_error(safetensors_bytes("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", kData8)),
            "data_offsets"));
  CHECK(has(st_error(safetensors_bytes("{\"__metadata__\":{\"format\":1}}", "")), "__metadata__"));
  CHECK(has(st_error(safetensors_bytes("{\"__metadata__\":[]}", "")), "__metadata__"));
  const std::string dup = "{" + entry("a", "F32", "[1]", 0, 4) + "," + entry("a", "F32", "[1]", 4, 8) + "}";
  CHECK(has(st_error(safetensors_bytes(dup, kData8)), "twice"));
  // Shape overflow: 2^40 × 2^40 elements.
  CHECK(has(st_error(safetensors_bytes("{" + entry("a", "F32", "[1099511627776,1099511627776]", 0, 8) + "}", kData8)),
            "overflows"));
}

TEST_CASE("bad safetensors: unknown dtype") {
  const std::string m = st_error(safetensors_bytes("{" + entry("w", "Q4", "[2]", 0, 8) + "}", kData8));
  CHECK(has(m, "unknown"));
  CHECK(has(m, "'Q4'"));
  CHECK(has(m, "'w'"));
  CHECK(has(st_error(safetensors_bytes("{" + entry("w", "F4", "[16]", 0, 8) + "}", kData8)), "'F4'"));
}

TEST_CASE("bad safetensors: offsets out of range, overlapping, holes, trailing bytes") {
  CHECK(has(st_error(safetensors_bytes("{" + entry("a", "F32", "[2]", 0, 8) + "}", "1234")), "out of range"));
  CHECK(has(st_error(safetensors_bytes("{" + entry("a", "F32", "[2]", 8, 0) + "}", kData8)), "end before begin"));
  const std::string overlap = "{" + entry("a", "F32", "[2]", 0, 8) + "," + entry("b", "F32", "[1]", 4, 8) + "}";
  const std::string m = st_error(safetensors_bytes(overlap, kData8));
  CHECK(has(m, "overlap"));
  CHECK(has(m, "'a'"));
  CHECK(has(m, "'b'"));
  const std::string hole = "{" + entry("a", "F32", "[1]", 0, 4) + "," + entry("b", "F32", "[1]", 8, 12) + "}";
  CHECK(has(st_error(safetensors_bytes(hole, kData8 + "xxxx")), "belong to no tensor"));
  CHECK(has(st_error(safetensors_bytes("{" + entry("a", "F32", "[2]", 0, 8) + "}", kData8 + "zz")), "trailing"));
}

TEST_CASE("bad safetensors: shape × dtype size does not match the offsets") {
  const std::string m = st_error(safetensors_bytes("{" + entry("w", "F32", "[3]", 0, 8) + "}", kData8));
  CHECK(has(m, "'w'"));
  CHECK(has(m, "needs 12 bytes"));
  CHECK(has(st_error(safetensors_bytes("{" + entry("w", "BF16", "[2,2]", 0, 8) + "," + entry("x", "U8", "[]", 8, 8) + "}",
                                       kData8)),
            "'x'"));
}

TEST_CASE("bad safetensors: every truncation and every byte flip is handled") {
  // In memory (the parser is what reads the file; opening a file only maps it).
  const std::string good = good_safetensors();
  auto parse = [](const std::string& b) {
    return parse_safetensors_header(reinterpret_cast<const uint8_t*>(b.data()), b.size(), "mem");
  };
  CHECK_NOTHROW(parse(good));
  // Every proper prefix is an error, never a crash.
  for (size_t n = 0; n < good.size(); ++n) CHECK_THROWS_AS(parse(good.substr(0, n)), IoError);
  // Any single corrupted byte in the length or header: parses to something valid or throws IoError.
  for (size_t i = 0; i < good.size() - 12; ++i) {
    for (const char c : {'\0', '"', '9', '\xff', ']'}) {
      std::string bad = good;
      bad[i] = c;
      try {
        const StHeader h = parse(bad);
        for (const auto& t : h.tensors) CHECK(h.data_start + t.end <= bad.size());
      } catch (const IoError&) {
      }
    }
  }
}

TEST_CASE("bad input: a missing file and a missing tensor") {
  CHECK(has(arq::test::error_of<IoError>([] { SafetensorsFile::open("/nonexistent/arq/x.safetensors"); }),
            "/nonexistent/arq/x.safetensors"));
  CHECK_THROWS_AS(GgufFile::open("/nonexistent/arq/x.gguf"), IoError);
  TempDir dir;
  arq::test::write_bytes(dir / "m.safetensors", good_safetensors());
  const auto f = SafetensorsFile::open(dir / "m.safetensors");
  const std::string m = arq::test::error_of<IoError>([&] { f.view("nope"); });
  CHECK(has(m, "'nope'"));
  CHECK(has(m, "m.safetensors"));
  const auto ws = WeightStore::open(dir.str());
  CHECK(has(arq::test::error_of<IoError>([&] { ws.load("lm_head.weight", DType::f32); }), "m.safetensors"));
}

TEST_CASE("bad input: unknown model_type") {
  TempDir dir;
  arq::test::write_bytes(dir / "config.json", R"({"model_type": "bert", "hidden_size": 8})");
  const std::string m = arq::test::error_of<ConfigError>([&] { load_config(dir.str()); });
  CHECK(has(m, "'bert'"));
  CHECK(has(m, "config.json"));
  CHECK(has(m, "qwen2_vl"));
}

TEST_CASE("bad gguf: magic and version") {
  CHECK(has(gguf_error(""), "bad magic"));
  CHECK(has(gguf_error("GGML\x03\0\0\0"), "bad magic"));
  std::string v1 = good_gguf();
  v1[4] = 1;
  CHECK(has(gguf_error(v1), "version 1"));
  std::string v4 = good_gguf();
  v4[4] = 4;
  CHECK(has(gguf_error(v4), "version 4"));
  std::string be = good_gguf();
  be[4] = 0;
  be[7] = 3;   // version 3 written big-endian
  CHECK(has(gguf_error(be), "big-endian"));
  CHECK(has(gguf_error("GGUF\x03\0"), "truncated"));
}

TEST_CASE("bad gguf: truncated anywhere in metadata, tensor infos or data") {
  const std::string good = good_gguf();
  TempDir dir;
  const std::string p = dir / "cut.gguf";
  // Shortest valid length: up to the end of the last tensor's bytes (the padding after it is optional).
  const GgufHeader h = parse_gguf(reinterpret_cast<const uint8_t*>(good.data()), good.size(), "good");
  uint64_t min_len = h.data_offset;
  for (const auto& t : h.tensors) min_len = std::max(min_len, h.data_offset + t.offset + t.nbytes);
  bool saw_metadata = false, saw_info = false;
  for (size_t n = 0; n < min_len; ++n) {
    const std::string cut = good.substr(0, n);
    const std::string m = arq::test::error_of<IoError>(
        [&] { parse_gguf(reinterpret_cast<const uint8_t*>(cut.data()), cut.size(), "cut.gguf"); });
    saw_metadata = saw_metadata || has(m, "metadata entry");
    saw_info = saw_info || has(m, "tensor info");
  }
  CHECK(saw_metadata);
  CHECK(saw_info);
  CHECK_NOTHROW(GgufFile::open((arq::test::write_bytes(p, good), p)));
}

TEST_CASE("bad gguf: malformed values and tensor infos") {
  auto with_kv = [](uint32_t type, const std::string& value) {
    GgufBuilder b;
    b.kv_raw("k", type, value);
    return b.bytes();
  };
  CHECK(has(gguf_error(with_kv(13, "")), "unknown GGUF value type 13"));
  CHECK(has(gguf_error(with_kv(7, std::string(1, '\x02'))), "bool"));
  // An array that claims 2^60 elements, a string that claims 2^40 bytes.
  CHECK(has(gguf_error(with_kv(9, std::string("\x04\0\0\0", 4) + std::string("\0\0\0\0\0\0\0\x10", 8))), "array"));
  CHECK(has(gguf_error(with_kv(8, std::string("\0\0\0\0\0\x01\0\0", 8) + "abc")), "truncated"));
  // Counts larger than the file can hold.
  std::string many = "GGUF";
  arq::test::append_u32(many, 3);
  arq::test::append_u64(many, 0);
  arq::test::append_u64(many, 1ull << 50);
  CHECK(has(gguf_error(many), "metadata entries"));

  {
    GgufBuilder b;
    b.kv_u32("general.alignment", 48);
    CHECK(has(gguf_error(b.bytes()), "power of two"));
  }
  {
    GgufBuilder b;
    b.kv_string("general.alignment", "32");
    CHECK(has(gguf_error(b.bytes()), "general.alignment"));
  }
  {
    GgufBuilder b;
    b.kv_u32("a", 1);
    b.kv_u32("a", 2);
    CHECK(has(gguf_error(b.bytes()), "twice"));
  }
  {
    GgufBuilder b;
    b.tensor("t", {1, 1, 1, 1, 1}, 0, std::string(4, '\0'));
    CHECK(has(gguf_error(b.bytes()), "dimensions"));
  }
  {
    GgufBuilder b;
    b.tensor("t", {4}, 4, std::string(4, '\0'));   // id 4 is retired
    CHECK(has(gguf_error(b.bytes()), "unknown ggml type 4"));
  }
  {
    GgufBuilder b;
    b.tensor("t", {16}, 8, std::string(17, '\0'));   // Q8_0 needs ne[0] % 32 == 0
    CHECK(has(gguf_error(b.bytes()), "block size"));
  }
  {
    GgufBuilder b;
    b.tensor("t", {2}, 0, std::string(8, '\0'));
    b.tensor("t", {2}, 0, std::string(8, '\0'));
    CHECK(has(gguf_error(b.bytes()), "twice"));
  }
  {
    GgufBuilder b;
    b.tensor("t", {1ull << 40, 1ull << 40}, 0, std::string(8, '\0'));
    CHECK(has(gguf_error(b.bytes()), "overflow"));
  }
  {
    GgufBuilder b;
    b.tensor("t", {64}, 0, std::string(16, '\0'));   // claims 256 bytes, file holds 32
    CHECK(has(gguf_error(b.bytes()), "beyond the end"));
  }
}

TEST_CASE("bad gguf: misaligned and overlapping tensor offsets") {
  // Build the bytes by hand: two tensor infos whose offsets we choose.
  auto file = [](uint64_t off_a, uint64_t off_b) {
    std::string s = "GGUF";
    arq::test::append_u32(s, 3);
    arq::test::append_u64(s, 2);
    arq::test::append_u64(s, 0);
    for (const auto& [name, off] : {std::pair<std::string, uint64_t>{"a", off_a}, {"b", off_b}}) {
      arq::test::append_u64(s, name.size());
      s += name;
      arq::test::append_u32(s, 1);
      arq::test::append_u64(s, 8);   // 8 f32 = 32 bytes
      arq::test::append_u32(s, 0);
      arq::test::append_u64(s, off);
    }
    while (s.size() % 32) s += '\0';
    return s + std::string(64, '\0');
  };
  CHECK_NOTHROW(parse_gguf(reinterpret_cast<const uint8_t*>(file(0, 32).data()), file(0, 32).size(), "ok"));
  CHECK(has(gguf_error(file(0, 16)), "alignment"));
  CHECK(has(gguf_error(file(0, 0)), "overlap"));
}
