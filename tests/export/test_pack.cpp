// HF-style int32 packing (io/pack): bit layouts against the spec's word-level descriptions and
// constants, and round trips for every format × bits × sym/asym × group size: weights read back
// from the packed tensors equal the quantizer's own dequantized weights bit for bit.
#include <doctest/doctest.h>

#include <cstring>
#include <random>

#include "export_test_util.h"
#include "io/pack.h"
#include "quant/export_hf.h"
#include "quant/qdq.h"
#include "quant/quantized_linear.h"

using namespace arq;
using namespace arq::io;

namespace {

Tensor i32_matrix(int64_t r, int64_t c, const std::vector<int32_t>& v) {
  Tensor t = Tensor::empty({r, c}, DType::i32);
  std::memcpy(t.data_ptr(), v.data(), v.size() * 4);
  return t;
}

Tensor constant_i32(int64_t r, int64_t c, int32_t v) { return i32_matrix(r, c, std::vector<int32_t>(static_cast<size_t>(r * c), v)); }

uint32_t word(const Tensor& t, int64_t i) { return static_cast<uint32_t>(t.data<int32_t>()[i]); }

Tensor random_weight(int64_t out, int64_t in, uint32_t seed, DType dtype) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 0.02f);
  Tensor w = Tensor::empty({out, in}, DType::f32);
  for (int64_t i = 0; i < out * in; ++i) w.data<float>()[i] = nd(rng) + (i % 97 == 0 ? 0.1f : 0.f);
  return w.to(dtype);
}

bool bit_equal(const Tensor& a, const Tensor& b) {
  const Tensor x = a.to(DType::f32).contiguous(), y = b.to(DType::f32).contiguous();
  return x.shape() == y.shape() && std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()) == 0;
}

}  // namespace

TEST_CASE("pack: symmetric qzeros constants of autoround.md §4a") {
  // Z = 2^(b−1) everywhere; v1 stores Z − 1, raw stores Z. [1 group, 32 columns].
  struct Case { int bits; uint32_t v1, raw; };
  for (Case c : {Case{2, 0x55555555u, 0xAAAAAAAAu}, Case{4, 0x77777777u, 0x88888888u}, Case{8, 0x7F7F7F7Fu, 0x80808080u}}) {
    CAPTURE(c.bits);
    const Tensor v1 = pack_cols(constant_i32(1, 32, (1 << (c.bits - 1)) - 1), c.bits);
    const Tensor raw = pack_cols(constant_i32(1, 32, 1 << (c.bits - 1)), c.bits);
    for (int64_t i = 0; i < v1.numel(); ++i) CHECK(word(v1, i) == c.v1);
    for (int64_t i = 0; i < raw.numel(); ++i) CHECK(word(raw, i) == c.raw);
  }
  // 3-bit, value 3 repeated: words 0xDB6DB6DB, 0xB6DB6DB6, 0x6DB6DB6D.
  const Tensor z3 = pack_cols(constant_i32(1, 64, 3), 3);
  REQUIRE(z3.shape() == Shape{1, 6});
  const uint32_t want[3] = {0xDB6DB6DBu, 0xB6DB6DB6u, 0x6DB6DB6Du};
  for (int i = 0; i < 6; ++i) CHECK(word(z3, i) == want[i % 3]);
  // AWQ sym: zero 8 → 0x88888888.
  const Tensor awq = pack_cols_awq(constant_i32(2, 16, 8));
  for (int64_t i = 0; i < awq.numel(); ++i) CHECK(word(awq, i) == 0x88888888u);
}

TEST_CASE("pack: 3-bit words follow the spec's element-by-element description") {
  // 32 distinct 3-bit values along the input dim of one column.
  std::vector<int32_t> v(32);
  for (int i = 0; i < 32; ++i) v[static_cast<size_t>(i)] = (i * 5 + 3) % 8;
  const Tensor p = pack_rows(i32_matrix(32, 1, v), 3);
  REQUIRE(p.shape() == Shape{3, 1});
  const uint32_t w0 = word(p, 0), w1 = word(p, 1), w2 = word(p, 2);
  auto e = [&](int i) { return static_cast<uint32_t>(v[static_cast<size_t>(i)]); };
  for (int i = 0; i <= 9; ++i) CHECK(((w0 >> (3 * i)) & 7u) == e(i));          // word0: elements 0–9
  CHECK((w0 >> 30) == (e(10) & 3u));                                            // bits 0–1 of element 10
  CHECK((w1 & 1u) == (e(10) >> 2));                                             // word1 bit 0: bit 2 of 10
  for (int i = 11; i <= 20; ++i) CHECK(((w1 >> (1 + 3 * (i - 11))) & 7u) == e(i));
  CHECK((w1 >> 31) == (e(21) & 1u));                                            // bit 0 of element 21
  CHECK((w2 & 3u) == (e(21) >> 1));                                             // bits 1–2 of element 21
  for (int i = 22; i <= 31; ++i) CHECK(((w2 >> (2 + 3 * (i - 22))) & 7u) == e(i));
  const Tensor back = unpack_rows(p, 3, 32);
  for (int i = 0; i < 32; ++i) CHECK(back.data<int32_t>()[i] == v[static_cast<size_t>(i)]);
}

TEST_CASE("pack: GPTQ 4-bit word (r, n) = Σ I[n, 8r + j] << 4j; AWQ nibble p holds column 8c + [0,2,4,6,1,3,5,7][p]") {
  std::vector<int32_t> v(16 * 16);
  for (int i = 0; i < 256; ++i) v[static_cast<size_t>(i)] = (i * 7 + i / 16) % 16;
  const Tensor m = i32_matrix(16, 16, v);   // [K=16, N=16] as packed (input rows)
  const Tensor g = pack_rows(m, 4);
  REQUIRE(g.shape() == Shape{2, 16});
  for (int r = 0; r < 2; ++r)
    for (int n = 0; n < 16; ++n) {
      uint32_t want = 0;
      for (int j = 0; j < 8; ++j) want += static_cast<uint32_t>(v[static_cast<size_t>((8 * r + j) * 16 + n)]) << (4 * j);
      CHECK(word(g, r * 16 + n) == want);
    }
  const Tensor a = pack_cols_awq(m);
  REQUIRE(a.shape() == Shape{16, 2});
  const int slot_col[8] = {0, 2, 4, 6, 1, 3, 5, 7};
  for (int k = 0; k < 16; ++k)
    for (int c = 0; c < 2; ++c)
      for (int p = 0; p < 8; ++p)
        CHECK(((word(a, k * 2 + c) >> (4 * p)) & 15u) == static_cast<uint32_t>(v[static_cast<size_t>(k * 16 + 8 * c + slot_col[p])]));
  const Tensor back = unpack_cols_awq(a, 16);
  CHECK(std::memcmp(back.data_ptr(), m.data_ptr(), m.nbytes()) == 0);
}

TEST_CASE("pack round trip: every format × bits × sym/asym × group size equals the quantizer's dequantize") {
  struct Fmt { HfPacking p; const char* name; };
  const Fmt fmts[] = {{HfPacking::gptq_v1, "gptq_v1"}, {HfPacking::gptq_raw, "gptq_raw"}, {HfPacking::awq, "awq"}};
  const int64_t out = 64, in = 256;
  const Tensor w_bf16 = random_weight(out, in, 42, DType::bf16);
  int n_cases = 0;
  for (const Fmt& f : fmts)
    for (int bits : {2, 3, 4, 8})
      for (bool sym : {true, false})
        for (int64_t gs : {int64_t{32}, int64_t{128}, int64_t{-1}}) {
          if (f.p == HfPacking::awq && bits != 4) continue;
          CAPTURE(f.name);
          CAPTURE(bits);
          CAPTURE(sym);
          CAPTURE(gs);
          quant::QuantScheme s{.bits = bits, .group_size = gs, .sym = sym};
          const quant::QuantizedLinear q = quant::quantize_rtn(w_bf16, s);
          const IntLinearParts parts = quant::int_parts(q);
          int64_t bad = -1;
          const PackedLinear packed = pack_linear(parts, f.p, /*with_g_idx=*/f.p != HfPacking::awq, &bad);
          CHECK(packed.scales.dtype() == DType::f16);
          const int64_t G = gs < 0 ? in : gs;
          CHECK(packed.scales.shape() == Shape{(in + G - 1) / G, out});
          if (f.p == HfPacking::awq) {
            CHECK(packed.qweight.shape() == Shape{in, out / 8});
          } else {
            CHECK(packed.qweight.shape() == Shape{in * bits / 32, out});
            CHECK(packed.qzeros.shape() == Shape{(in + G - 1) / G, out * bits / 32});
            CHECK(packed.g_idx.shape() == Shape{in});
          }
          if (bad > 0) {
            // gptq_v1 with a zero point of 0 (asym): GPTQ kernels read it back as 2^b.
            CHECK((f.p == HfPacking::gptq_v1 && !sym));
            continue;
          }
          const Tensor want = quant::dequantize(q, DType::f32);
          const Tensor got = dequantize_packed(packed, f.p, bits, G, in);
          CHECK(bit_equal(got, want));
          CHECK(bit_equal(dequantize_packed(packed, f.p, bits, G, in, DType::bf16), quant::dequantize(q)));
          const IntLinearParts back = unpack_linear(packed, f.p, bits, G, in);
          CHECK(std::memcmp(back.codes.contiguous().data_ptr(), q.codes.contiguous().data_ptr(), q.codes.nbytes()) == 0);
          ++n_cases;
        }
  CHECK(n_cases >= 40);
}

TEST_CASE("pack: gptq_v1 zero point 0 is counted and masked (no borrow into neighbours)") {
  // zeros [N=8, n_g=1]: column 3 has Z = 0.
  IntLinearParts p;
  p.bits = 4;
  p.group_size = 32;
  p.codes = Tensor::empty({8, 32}, DType::u8);
  std::memset(p.codes.data_ptr(), 5, p.codes.nbytes());
  p.zeros = constant_i32(8, 1, 7);
  p.zeros.data<int32_t>()[3] = 0;
  p.scales = Tensor::empty({8, 1}, DType::f32);
  for (int i = 0; i < 8; ++i) p.scales.data<float>()[i] = 0.5f;
  int64_t bad = 0;
  const PackedLinear packed = pack_linear(p, HfPacking::gptq_v1, true, &bad);
  CHECK(bad == 1);
  // Fields: 6 everywhere, 0xF at column 3; neighbours untouched.
  CHECK(word(packed.qzeros, 0) == 0x6666F666u);
}

TEST_CASE("pack: unsupported shapes and bits are clear errors") {
  CHECK(packing_unsupported_reason(HfPacking::awq, 3, 256, 64, 128).find("4-bit") != std::string::npos);
  CHECK(!packing_unsupported_reason(HfPacking::gptq_v1, 3, 48, 64, 16).empty());   // 3-bit needs in % 32
  CHECK(!packing_unsupported_reason(HfPacking::gptq_raw, 5, 256, 64, 128).empty());
  CHECK(!packing_unsupported_reason(HfPacking::awq, 4, 200, 64, 128).empty());      // in % G
  CHECK(packing_unsupported_reason(HfPacking::gptq_v1, 4, 200, 64, 128).empty());   // last group partial is fine
  quant::QuantScheme s{.bits = 3, .group_size = 32, .sym = true};
  const quant::QuantizedLinear q = quant::quantize_rtn(random_weight(16, 64, 1, DType::f32), s);
  CHECK_THROWS_AS(pack_linear(quant::int_parts(q), HfPacking::awq, false), UsageError);
}
