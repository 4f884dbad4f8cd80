// ggml block encoders/decoders: byte-exact against ggml's golden vectors (shared/golden/ggml),
// decoders against an independent decoder written from the spec's element formulas, and
// round-trip error bounds on generated data (no shared/ needed).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/dtype.h"
#include "export_test_util.h"
#include "io/ggml_blocks.h"
#include "io/gguf.h"

using namespace arq;
using namespace arq::io;
using arq::test::float_bits;

namespace {

const char* kGoldenTypes[] = {"q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_K", "q3_K",
                              "q4_K", "q5_K", "q6_K", "f16",  "bf16"};

std::vector<float> random_rows(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 0.02f);
  std::uniform_real_distribution<float> ud(-1.f, 1.f);
  std::vector<float> x(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      float v = (r % 3 == 0) ? nd(rng) : (r % 3 == 1) ? ud(rng) : std::fabs(nd(rng)) + 0.1f;
      if (r % 2 == 1 && c % 41 == 3) v *= 10;  // outliers
      x[static_cast<size_t>(r * cols + c)] = v;
    }
  return x;
}

float half(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return f16_bits_to_f32(v);
}

// Independent decoder: element by element from the formulas of spec formats.md §4.4, indexing
// raw bytes by offset (not the structs), in double. It agrees with ggml's float decoder to a
// relative 2^-20 (products of ≤ 3 exact-ish terms rounded once or twice in f32).
double g_mag = 0;  // |first term| + |second term| of the last spec_value (for the tolerance)
double terms(double a, double b) {
  g_mag = std::fabs(a) + std::fabs(b);
  return a + b;
}

double spec_value(GgmlType t, const uint8_t* b, int e) {
  switch (t) {
    case GgmlType::q4_0: {
      const int q = e < 16 ? (b[2 + e] & 15) : (b[2 + e - 16] >> 4);
      return terms(half(b) * (q - 8), 0);
    }
    case GgmlType::q4_1: {
      const int q = e < 16 ? (b[4 + e] & 15) : (b[4 + e - 16] >> 4);
      return terms(static_cast<double>(half(b)) * q, half(b + 2));
    }
    case GgmlType::q5_0: {
      const uint32_t qh = b[2] | b[3] << 8 | b[4] << 16 | static_cast<uint32_t>(b[5]) << 24;
      const int lo = e < 16 ? (b[6 + e] & 15) : (b[6 + e - 16] >> 4);
      return terms(half(b) * ((lo | static_cast<int>(((qh >> e) & 1) << 4)) - 16), 0);
    }
    case GgmlType::q5_1: {
      const uint32_t qh = b[4] | b[5] << 8 | b[6] << 16 | static_cast<uint32_t>(b[7]) << 24;
      const int lo = e < 16 ? (b[8 + e] & 15) : (b[8 + e - 16] >> 4);
      return terms(static_cast<double>(half(b)) * (lo | static_cast<int>(((qh >> e) & 1) << 4)), half(b + 2));
    }
    case GgmlType::q8_0: return terms(static_cast<double>(half(b)) * static_cast<int8_t>(b[2 + e]), 0);
    case GgmlType::q2_K: {
      const int hh = e / 128, g = (e % 128) / 32, l = e % 32, s = e / 16;
      const int q = (b[16 + 32 * hh + l] >> (2 * g)) & 3;
      return terms(static_cast<double>(half(b + 80)) * (b[s] & 15) * q, -static_cast<double>(half(b + 82)) * (b[s] >> 4));
    }
    case GgmlType::q3_K: {
      const int hh = e / 128, g = (e % 128) / 32, l = e % 32, s = e / 16;
      const uint8_t* hmask = b;
      const uint8_t* qs = b + 32;
      const uint8_t* sc = b + 96;
      const int low = (qs[32 * hh + l] >> (2 * g)) & 3;
      const int hb = (hmask[e % 32] >> (e / 32)) & 1;
      const int q = low - (hb ? 0 : 4);
      const int s_lo = s < 8 ? (sc[s] & 15) : (sc[s - 8] >> 4);
      const int s_hi = (sc[8 + s % 4] >> (2 * (s / 4))) & 3;
      return terms(static_cast<double>(half(b + 108)) * ((s_lo | s_hi << 4) - 32) * q, 0);
    }
    case GgmlType::q4_K:
    case GgmlType::q5_K: {
      const uint8_t* sb = b + 4;
      const int j = e / 32;
      int sc, mn;
      if (j < 4) {
        sc = sb[j] & 63;
        mn = sb[j + 4] & 63;
      } else {
        sc = (sb[j + 4] & 15) | ((sb[j - 4] >> 6) << 4);
        mn = (sb[j + 4] >> 4) | ((sb[j] >> 6) << 4);
      }
      const int c = e / 64, l = e % 32, hi_nib = (e % 64) >= 32;
      const uint8_t* qs = b + (t == GgmlType::q4_K ? 16 : 48);
      int q = hi_nib ? (qs[32 * c + l] >> 4) : (qs[32 * c + l] & 15);
      if (t == GgmlType::q5_K) q += 16 * ((b[16 + l] >> (2 * c + hi_nib)) & 1);
      return terms(static_cast<double>(half(b)) * sc * q, -static_cast<double>(half(b + 2)) * mn);
    }
    case GgmlType::q6_K: {
      const int hh = e / 128, r = e % 128, quarter = r / 32, l = r % 32;
      const uint8_t* ql = b + 64 * hh;
      const uint8_t* qh = b + 128 + 32 * hh;
      const int low = quarter == 0 ? (ql[l] & 15) : quarter == 1 ? (ql[l + 32] & 15) : quarter == 2 ? (ql[l] >> 4) : (ql[l + 32] >> 4);
      const int hi = (qh[l] >> (2 * quarter)) & 3;
      const auto sc = static_cast<int8_t>(b[192 + e / 16]);
      return terms(static_cast<double>(half(b + 208)) * sc * ((low | hi << 4) - 32), 0);
    }
    default: return 0;
  }
}

}  // namespace

TEST_CASE("ggml traits: struct sizes agree with the GGUF reader's type table") {
  for (const GgmlTypeTraits& t : ggml_all_traits()) {
    const GgmlTypeInfo* info = ggml_type_info(static_cast<uint32_t>(t.type));
    REQUIRE_MESSAGE(info != nullptr, std::string(t.name));
    CHECK_MESSAGE(info->block_size == t.block_size, std::string(t.name));
    CHECK_MESSAGE(info->type_size == t.type_size, std::string(t.name));
    CHECK(ggml_type_from_name(t.name) == t.type);
  }
  CHECK(ggml_type_from_name("Q4_K") == GgmlType::q4_K);
  CHECK_THROWS_AS(ggml_type_from_name("q7_K"), UsageError);
  CHECK_THROWS_AS(ggml_row_bytes(GgmlType::q4_K, 100), ShapeError);
  CHECK(ggml_row_bytes(GgmlType::q4_K, 512) == 288);
}

TEST_CASE("ggml golden: quantize input.f32 byte-exact, dequantize bit-exact") {
  const std::string input = arq::test::shared_file("golden/ggml/input.f32");
  if (input.empty()) return;
  const std::string dir = input.substr(0, input.size() - std::string("input.f32").size());
  const std::vector<float> x = arq::test::read_f32_file(input);
  const int64_t cols = 512;
  REQUIRE(x.size() == 6 * 512);
  const int64_t rows = static_cast<int64_t>(x.size()) / cols;
  for (const char* name : kGoldenTypes) {
    SUBCASE(name) {
      const GgmlType t = ggml_type_from_name(name);
      const size_t row_bytes = ggml_row_bytes(t, cols);
      const std::vector<uint8_t> want = arq::test::read_file_bytes(dir + name + ".bin");
      REQUIRE(want.size() == row_bytes * static_cast<size_t>(rows));
      std::vector<uint8_t> got(want.size());
      for (int64_t r = 0; r < rows; ++r) ggml_quantize_row(t, x.data() + r * cols, got.data() + r * row_bytes, cols);
      size_t first_diff = want.size();
      for (size_t i = 0; i < want.size(); ++i)
        if (got[i] != want[i]) {
          first_diff = i;
          break;
        }
      const size_t bsz = ggml_traits(t).type_size;
      CHECK_MESSAGE(first_diff == want.size(), std::string(name) << ": first differing byte " << first_diff << " (block "
                                                 << first_diff / bsz << ", byte " << first_diff % bsz << " in block)");

      const std::vector<float> want_y = arq::test::read_f32_file(dir + name + ".dequant.f32");
      REQUIRE(want_y.size() == x.size());
      std::vector<float> y(x.size());
      for (int64_t r = 0; r < rows; ++r) ggml_dequantize_row(t, want.data() + r * row_bytes, y.data() + r * cols, cols);
      int64_t n_bad = 0, first_bad = -1;
      for (size_t i = 0; i < y.size(); ++i)
        if (float_bits(y[i]) != float_bits(want_y[i])) {
          if (first_bad < 0) first_bad = static_cast<int64_t>(i);
          ++n_bad;
        }
      CHECK_MESSAGE(n_bad == 0, std::string(name) << ": " << n_bad << " dequantized values differ, first at " << first_bad);
    }
  }
}

TEST_CASE("ggml decoders agree with an independent decoder from the spec formulas") {
  // Random bytes exercise every bit of every field (fp16 fields forced finite and moderate).
  std::mt19937 rng(7);
  for (const GgmlTypeTraits& tt : ggml_all_traits()) {
    if (!tt.quantized || tt.type == GgmlType::q8_K) continue;
    SUBCASE(tt.name) {
      const int nblocks = 8;
      std::vector<uint8_t> bytes(tt.type_size * nblocks);
      for (auto& v : bytes) v = static_cast<uint8_t>(rng());
      // fp16 fields: positions per layout; give them values in ±[2^-10, 2).
      auto set_half = [&](size_t off) {
        const float v = std::ldexp(static_cast<float>(rng() % 1000 + 1) / 1000.f, -static_cast<int>(rng() % 10)) *
                        ((rng() & 1) ? -1.f : 1.f);
        const uint16_t hbits = f32_to_f16_bits(v);
        std::memcpy(&bytes[off], &hbits, 2);
      };
      for (int b = 0; b < nblocks; ++b) {
        const size_t o = tt.type_size * b;
        switch (tt.type) {
          case GgmlType::q4_0: case GgmlType::q5_0: case GgmlType::q8_0: set_half(o); break;
          case GgmlType::q4_1: case GgmlType::q5_1: case GgmlType::q4_K: case GgmlType::q5_K:
            set_half(o); set_half(o + 2); break;
          case GgmlType::q2_K: set_half(o + 80); set_half(o + 82); break;
          case GgmlType::q3_K: set_half(o + 108); break;
          case GgmlType::q6_K: set_half(o + 208); break;
          default: break;
        }
      }
      const int64_t n = tt.block_size * nblocks;
      std::vector<float> y(static_cast<size_t>(n));
      ggml_dequantize_row(tt.type, bytes.data(), y.data(), n);
      int bad = 0;
      for (int64_t i = 0; i < n; ++i) {
        const int b = static_cast<int>(i / tt.block_size);
        const double want = spec_value(tt.type, bytes.data() + tt.type_size * b, static_cast<int>(i % tt.block_size));
        // ggml evaluates in f32: at most 3 roundings (d·sc, ·q, ± second term), each ≤ 2^-24
        // relative to a value bounded by |first| + |second| term: tol = 4·2^-24·(|a| + |b|).
        const double tol = 4.0 * std::ldexp(1.0, -24) * g_mag;
        if (std::fabs(y[static_cast<size_t>(i)] - want) > tol && ++bad <= 3)
          MESSAGE(std::string(tt.name) << " element " << i << ": got " << y[static_cast<size_t>(i)] << " want " << want);
      }
      CHECK(bad == 0);
    }
  }
}

TEST_CASE("ggml round trip on generated data stays within the type's step") {
  const int64_t rows = 8, cols = 1024;
  const std::vector<float> x = random_rows(rows, cols, 1234);
  for (const GgmlTypeTraits& tt : ggml_all_traits()) {
    if (tt.type == GgmlType::q8_K) continue;
    SUBCASE(tt.name) {
      const size_t rb = ggml_row_bytes(tt.type, cols);
      std::vector<uint8_t> q(rb * rows);
      std::vector<float> y(x.size());
      for (int64_t r = 0; r < rows; ++r) {
        ggml_quantize_row(tt.type, x.data() + r * cols, q.data() + r * rb, cols);
        ggml_dequantize_row(tt.type, q.data() + r * rb, y.data() + r * cols, cols);
      }
      // Per block of the type: max |x − y| ≤ k · (max − min of the block) with k ≈ 1/levels,
      // widened for the k-quants whose 4/6-bit scale quantization and clipped searches can cost
      // a few steps (q2_K has 4 levels: up to a full range step).
      double k = 0;
      switch (tt.type) {
        case GgmlType::f32: k = 0; break;
        case GgmlType::f16: k = 1.0 / 1024; break;
        case GgmlType::bf16: k = 1.0 / 128; break;
        case GgmlType::q8_0: k = 1.0 / 127; break;
        case GgmlType::q4_0: k = 1.0 / 8; break;   // the far end clips at 7·d: one full step
        case GgmlType::q5_0: k = 1.0 / 16; break;
        case GgmlType::q4_1: k = 1.0 / 15; break;
        case GgmlType::q5_1: k = 1.0 / 31; break;
        case GgmlType::q6_K: k = 1.0 / 16; break;
        case GgmlType::q5_K: k = 1.0 / 8; break;
        case GgmlType::q4_K: k = 1.0 / 4; break;
        case GgmlType::q3_K: k = 1.0 / 2; break;
        case GgmlType::q2_K: k = 1.0; break;
        default: break;
      }
      const int64_t bs = std::max<int64_t>(tt.block_size, 32);
      double worst = 0;
      for (size_t b0 = 0; b0 < x.size(); b0 += static_cast<size_t>(bs)) {
        float mn = x[b0], mx = x[b0];
        for (int64_t i = 0; i < bs; ++i) {
          mn = std::min(mn, x[b0 + i]);
          mx = std::max(mx, x[b0 + i]);
        }
        const double range = std::max(std::fabs(mx), std::fabs(mn)) + (mx - mn);
        for (int64_t i = 0; i < bs; ++i) {
          const double err = std::fabs(static_cast<double>(x[b0 + i]) - y[b0 + i]);
          worst = std::max(worst, err / (range + 1e-30));
          if (tt.type == GgmlType::f32) CHECK(err == 0);
        }
      }
      CHECK_MESSAGE(worst <= k + 1e-6, std::string(tt.name) << ": worst error / range = " << worst);
      // And the quantized representation is not trivial: mean error well below the bound.
    }
  }
}

TEST_CASE("ggml encoders: all-zero blocks decode to zeros; exact grids decode exactly") {
  for (const GgmlTypeTraits& tt : ggml_all_traits()) {
    if (tt.type == GgmlType::q8_K) continue;
    const int64_t n = 512;
    std::vector<float> x(n, 0.f), y(n, 1.f);
    std::vector<uint8_t> q(ggml_row_bytes(tt.type, n));
    ggml_quantize_row(tt.type, x.data(), q.data(), n);
    ggml_dequantize_row(tt.type, q.data(), y.data(), n);
    for (float v : y) CHECK_MESSAGE(v == 0.f, std::string(tt.name));
  }
  // q8_0: values k·2^-7 with k ∈ [−127, 127] and one element at ±127 are reproduced exactly
  // (d = 127·2^-7/127 = 2^-7 is exact in fp16).
  std::vector<float> x(64), y(64);
  for (int i = 0; i < 64; ++i) x[static_cast<size_t>(i)] = std::ldexp(static_cast<float>((i * 37) % 255 - 127), -7);
  x[0] = std::ldexp(127.f, -7);
  x[32] = std::ldexp(-127.f, -7);
  std::vector<uint8_t> q(ggml_row_bytes(GgmlType::q8_0, 64));
  ggml_quantize_row(GgmlType::q8_0, x.data(), q.data(), 64);
  ggml_dequantize_row(GgmlType::q8_0, q.data(), y.data(), 64);
  for (int i = 0; i < 64; ++i) CHECK(y[static_cast<size_t>(i)] == x[static_cast<size_t>(i)]);
}

TEST_CASE("ggml tensor-level quantize/dequantize of a [rows, cols] weight") {
  const std::vector<float> x = random_rows(3, 256, 99);
  Tensor w = Tensor::empty({3, 256}, DType::f32);
  std::memcpy(w.data<float>(), x.data(), x.size() * 4);
  const std::vector<uint8_t> q = ggml_quantize(w.to(DType::bf16), GgmlType::q6_K);
  CHECK(q.size() == 3 * 210);
  Tensor y = ggml_dequantize(q.data(), q.size(), GgmlType::q6_K, {3, 256});
  CHECK(y.shape() == Shape{3, 256});
  CHECK_THROWS_AS(ggml_dequantize(q.data(), q.size() - 1, GgmlType::q6_K, {3, 256}), IoError);
  CHECK_THROWS_AS(ggml_quantize(Tensor::empty({2, 100}, DType::f32), GgmlType::q4_0), ShapeError);
}
