// dtype conversions: f32/f64 -> f16/bf16 round-to-nearest-even (ties, subnormals, overflow,
// NaN, Inf), no double rounding from f64, integer truncation and saturation, names and sizes.
//
// The reference rounding here does not share code with engine/dtype.cpp: it decodes every
// candidate 16-bit pattern with test_util.h's own decoder and picks the nearest by comparing
// distances in double (exact for these magnitudes), ties to the even bit pattern.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/ops.h"
#include "tests/engine/test_util.h"

using namespace arq;
using arq::test::decode_bf16;
using arq::test::decode_f16;

namespace {

float f32_of_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Nearest 16-bit pattern to the real |x| on the grid `decode(0 .. inf_bits-1)` extended by one
// step to `inf_bits` (the value that the first overflowing pattern would have with an unbounded
// exponent, `inf_value`); ties pick the even pattern. IEEE 754 overflows exactly when this
// extended rounding lands on inf_bits. Sign and NaN handled by the caller.
uint16_t ref_round16(double a, double (*decode)(uint16_t), uint32_t inf_bits, double inf_value) {
  auto val = [&](uint32_t b) { return b == inf_bits ? inf_value : decode(static_cast<uint16_t>(b)); };
  if (a >= inf_value) return static_cast<uint16_t>(inf_bits);
  uint32_t lo = 0, hi = inf_bits;  // val(lo) <= a < val(hi)
  while (hi - lo > 1) {
    const uint32_t mid = (lo + hi) / 2;
    if (val(mid) <= a) lo = mid; else hi = mid;
  }
  const double dl = a - val(lo), dh = val(hi) - a;
  if (dl < dh) return static_cast<uint16_t>(lo);
  if (dh < dl) return static_cast<uint16_t>(hi);
  return static_cast<uint16_t>((lo & 1) ? hi : lo);
}

uint16_t ref_f16(double x) {
  const uint16_t s = std::signbit(x) ? 0x8000 : 0;
  if (std::isnan(x)) return 0;  // callers check NaN separately
  return s | ref_round16(std::fabs(x), decode_f16, 0x7c00, 65536.0);
}
uint16_t ref_bf16(double x) {
  const uint16_t s = std::signbit(x) ? 0x8000 : 0;
  if (std::isnan(x)) return 0;
  return s | ref_round16(std::fabs(x), decode_bf16, 0x7f80, std::ldexp(1.0, 128));
}

bool f16_is_nan(uint16_t h) { return (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0; }
bool bf16_is_nan(uint16_t b) { return (b & 0x7f80) == 0x7f80 && (b & 0x7f) != 0; }

// Converts through a tensor cast (the kernel path) rather than the scalar helper.
uint16_t cast_bits(double v, DType from, DType to) {
  Tensor src = Tensor::empty({1}, from);
  if (from == DType::f32) src.data<float>()[0] = static_cast<float>(v);
  else src.data<double>()[0] = v;
  Tensor dst = src.to(to);
  uint16_t b;
  std::memcpy(&b, dst.data_ptr(), 2);
  return b;
}

}  // namespace

TEST_CASE("dtype: names, sizes, classes") {
  const DType all[] = {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i8, DType::u8, DType::i32, DType::i64};
  const size_t sizes[] = {4, 8, 2, 2, 1, 1, 4, 8};
  for (int i = 0; i < 8; ++i) {
    CHECK(dtype_size(all[i]) == sizes[i]);
    CHECK(dtype_from_name(dtype_name(all[i])) == all[i]);
    CHECK(is_floating(all[i]) == (i < 4));
    CHECK(is_integral(all[i]) == (i >= 4));
  }
  CHECK(std::string(dtype_name(DType::bf16)) == "bf16");
  test::expect_error<DTypeError>([] { dtype_from_name("float32"); }, {"float32"});
}

TEST_CASE("dtype: f16 decode of every bit pattern") {
  int bad = 0;
  for (uint32_t h = 0; h < 65536; ++h) {
    const double want = decode_f16(static_cast<uint16_t>(h));
    const float got = f16_bits_to_f32(static_cast<uint16_t>(h));
    const bool ok = std::isnan(want) ? (std::isnan(got) && std::signbit(got) == ((h & 0x8000) != 0))
                                     : (got == want && std::signbit(got) == std::signbit(want));
    if (!ok && ++bad <= 3) FAIL_CHECK("f16 bits " << h << " decoded to " << got << ", want " << want);
  }
  CHECK(bad == 0);
  // Every finite f16 round-trips through f32 unchanged; every NaN stays NaN.
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint16_t back = f32_to_f16_bits(f16_bits_to_f32(static_cast<uint16_t>(h)));
    if (f16_is_nan(static_cast<uint16_t>(h))) CHECK(f16_is_nan(back));
    else if (back != h && ++bad <= 3) FAIL_CHECK("f16 " << h << " round-trips to " << back);
  }
  CHECK(bad == 0);
}

TEST_CASE("dtype: f32 -> f16 against the reference at every tie and its neighbours") {
  // For each pair of adjacent f16 values (including the largest subnormal -> smallest normal
  // step and 65504 -> overflow) check the exact midpoint and one f32 ulp either side, both signs.
  int bad = 0, n = 0;
  auto check = [&](float f) {
    ++n;
    const uint16_t got = f32_to_f16_bits(f), want = ref_f16(f);
    if (got != want && ++bad <= 5) FAIL_CHECK("f32 " << f << " -> f16 " << got << ", want " << want);
  };
  for (uint32_t h = 0; h < 0x7c00; ++h) {
    const double lo = decode_f16(static_cast<uint16_t>(h));
    const double hi = h + 1 == 0x7c00 ? 65536.0 : decode_f16(static_cast<uint16_t>(h + 1));
    const float mid = static_cast<float>((lo + hi) / 2);  // exact: at most 12 significant bits
    REQUIRE(static_cast<double>(mid) == (lo + hi) / 2);
    for (float f : {static_cast<float>(lo), mid, std::nextafter(mid, 0.0f), std::nextafter(mid, INFINITY)}) {
      check(f);
      check(-f);
    }
  }
  // Random f32 bit patterns over the whole range (NaN excluded; checked below).
  std::mt19937 g(7);
  for (int i = 0; i < 400000; ++i) {
    const float f = static_cast<float>(f32_of_bits(g()));
    if (!std::isnan(f)) check(f);
  }
  CHECK(bad == 0);
  MESSAGE("checked ", n, " f32 -> f16 conversions");
}

TEST_CASE("dtype: f32 -> bf16 against the reference at every tie and its neighbours") {
  int bad = 0;
  auto check = [&](float f) {
    const uint16_t got = f32_to_bf16_bits(f), want = ref_bf16(f);
    if (got != want && ++bad <= 5) FAIL_CHECK("f32 bits " << f32_bits(f) << " -> bf16 " << got << ", want " << want);
  };
  for (uint32_t b = 0; b < 0x7f80; ++b) {
    const uint32_t u = b << 16;
    for (uint32_t low : {0x0000u, 0x7fffu, 0x8000u, 0x8001u, 0xffffu}) {
      const float f = static_cast<float>(f32_of_bits(u | low));
      check(f);
      check(-f);
    }
  }
  std::mt19937 g(11);
  for (int i = 0; i < 400000; ++i) {
    const float f = static_cast<float>(f32_of_bits(g()));
    if (!std::isnan(f)) check(f);
  }
  CHECK(bad == 0);
}

TEST_CASE("dtype: named edge cases f32 -> bf16") {
  // Exact ties: 1 + 2^-8 lies halfway between bf16 1.0 (0x3f80) and 1 + 2^-7 (0x3f81): even wins.
  CHECK(f32_to_bf16_bits(static_cast<float>(f32_of_bits(0x3f808000u))) == 0x3f80);
  CHECK(f32_to_bf16_bits(static_cast<float>(f32_of_bits(0x3f818000u))) == 0x3f82);  // odd below -> up
  CHECK(f32_to_bf16_bits(static_cast<float>(f32_of_bits(0x3f808001u))) == 0x3f81);  // just above the tie
  CHECK(f32_to_bf16_bits(static_cast<float>(f32_of_bits(0x3f807fffu))) == 0x3f80);  // just below
  CHECK(f32_to_bf16_bits(static_cast<float>(f32_of_bits(0xbf808000u))) == 0xbf80);  // negative tie
  // Subnormals: f32 subnormal 0x00008000 is a tie between bf16 0 and 0x0001 -> 0.
  CHECK(f32_to_bf16_bits(static_cast<float>(f32_of_bits(0x00008000u))) == 0x0000);
  CHECK(f32_to_bf16_bits(static_cast<float>(f32_of_bits(0x00018000u))) == 0x0002);
  CHECK(f32_to_bf16_bits(static_cast<float>(f32_of_bits(0x00010000u))) == 0x0001);
  // Overflow: the largest f32 is above the midpoint of bf16-max and 2^128 -> Inf.
  CHECK(f32_to_bf16_bits(std::numeric_limits<float>::max()) == 0x7f80);
  CHECK(f32_to_bf16_bits(-std::numeric_limits<float>::max()) == 0xff80);
  CHECK(f32_to_bf16_bits(static_cast<float>(f32_of_bits(0x7f7f7fffu))) == 0x7f7f);  // below the midpoint
  // ±Inf and NaN (quiet and signalling, both signs): NaN stays NaN with its sign.
  CHECK(f32_to_bf16_bits(INFINITY) == 0x7f80);
  CHECK(f32_to_bf16_bits(-INFINITY) == 0xff80);
  for (uint32_t nan : {0x7fc00000u, 0x7f800001u, 0x7fffffffu, 0xffc00000u, 0xff800001u}) {
    const uint16_t b = f32_to_bf16_bits(static_cast<float>(f32_of_bits(nan)));
    CHECK(bf16_is_nan(b));
    CHECK(((b & 0x8000) != 0) == ((nan & 0x80000000u) != 0));
    CHECK(bf16_is_nan(cast_bits(f32_of_bits(nan), DType::f32, DType::bf16)));
  }
  CHECK(f32_to_bf16_bits(-0.0f) == 0x8000);
}

TEST_CASE("dtype: named edge cases f32 -> f16") {
  // Ties: 1 + 2^-11 halfway between 1.0 (0x3c00) and 1 + 2^-10 (0x3c01) -> even.
  CHECK(f32_to_f16_bits(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);
  CHECK(f32_to_f16_bits(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3c02);
  CHECK(f32_to_f16_bits(-(1.0f + std::ldexp(1.0f, -11))) == 0xbc00);
  // Subnormals: smallest 2^-24 -> 0x0001; exactly half of it is a tie with 0 -> 0 (even);
  // just over half -> 0x0001; just under -> 0; 1.5 * 2^-24 ties 1 and 2 -> 2.
  const float s = std::ldexp(1.0f, -24);
  CHECK(f32_to_f16_bits(s) == 0x0001);
  CHECK(f32_to_f16_bits(s / 2) == 0x0000);
  CHECK(f32_to_f16_bits(std::nextafter(s / 2, 1.0f)) == 0x0001);
  CHECK(f32_to_f16_bits(std::nextafter(s / 2, 0.0f)) == 0x0000);
  CHECK(f32_to_f16_bits(1.5f * s) == 0x0002);
  CHECK(f32_to_f16_bits(-s) == 0x8001);
  CHECK(f32_to_f16_bits(-s / 2) == 0x8000);  // rounds to -0, sign kept
  // Largest subnormal 1023 * 2^-24 and the tie 1023.5 * 2^-24 that rounds up into the smallest
  // normal 2^-14 (0x0400, even).
  CHECK(f32_to_f16_bits(1023 * s) == 0x03ff);
  CHECK(f32_to_f16_bits(1023.5f * s) == 0x0400);
  CHECK(f32_to_f16_bits(std::ldexp(1.0f, -14)) == 0x0400);
  // Overflow: 65504 is the largest finite; 65520 (the midpoint to 65536) ties to Inf (even);
  // the float just below 65520 (65519.996) rounds to 65504.
  CHECK(f32_to_f16_bits(65504.0f) == 0x7bff);
  CHECK(f32_to_f16_bits(65520.0f) == 0x7c00);
  CHECK(f32_to_f16_bits(std::nextafter(65520.0f, 0.0f)) == 0x7bff);
  CHECK(f32_to_f16_bits(65519.99f) == 0x7bff);
  CHECK(f32_to_f16_bits(-65520.0f) == 0xfc00);
  CHECK(f32_to_f16_bits(1e10f) == 0x7c00);
  CHECK(f32_to_f16_bits(INFINITY) == 0x7c00);
  CHECK(f32_to_f16_bits(-INFINITY) == 0xfc00);
  for (uint32_t nan : {0x7fc00000u, 0x7f800001u, 0x7f801fffu, 0xffc00000u, 0xff800001u}) {
    const uint16_t h = f32_to_f16_bits(static_cast<float>(f32_of_bits(nan)));
    CHECK(f16_is_nan(h));  // 0x7f800001 has no payload in the top 10 bits: must not become Inf
    CHECK(((h & 0x8000) != 0) == ((nan & 0x80000000u) != 0));
    CHECK(f16_is_nan(cast_bits(f32_of_bits(nan), DType::f32, DType::f16)));
  }
  // The tensor cast path agrees with the scalar helper on the edge cases.
  for (float f : {1.0f + std::ldexp(1.0f, -11), s / 2, 1.5f * s, 1023.5f * s, 65520.0f, 65519.99f, -65504.0f})
    CHECK(cast_bits(f, DType::f32, DType::f16) == f32_to_f16_bits(f));
}

TEST_CASE("dtype: f64 -> f16/bf16 rounds once (no double rounding through f32)") {
  // 1 + 2^-11 + 2^-40 is above the f16 tie, so it rounds up to 0x3c01. Rounding to f32 first
  // would drop the 2^-40 (below f32's half-ulp 2^-24) and land exactly on the tie -> 0x3c00.
  const double d16 = 1.0 + std::ldexp(1.0, -11) + std::ldexp(1.0, -40);
  REQUIRE(f32_to_f16_bits(static_cast<float>(d16)) == 0x3c00);  // the double-rounding answer
  CHECK(f64_to_f16_bits(d16) == 0x3c01);
  CHECK(cast_bits(d16, DType::f64, DType::f16) == 0x3c01);
  CHECK(f64_to_f16_bits(1.0 + std::ldexp(1.0, -11) - std::ldexp(1.0, -40)) == 0x3c00);
  CHECK(f64_to_f16_bits(-d16) == 0xbc01);
  // Same for bf16 with the tie 1 + 2^-8.
  const double d8 = 1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -40);
  REQUIRE(f32_to_bf16_bits(static_cast<float>(d8)) == 0x3f80);
  CHECK(f64_to_bf16_bits(d8) == 0x3f81);
  CHECK(cast_bits(d8, DType::f64, DType::bf16) == 0x3f81);
  // In the f16 subnormal range: 2^-25 + 2^-60 is above the 0/2^-24 tie -> 0x0001 (through f32
  // the 2^-60 is lost and the tie goes to 0).
  CHECK(f64_to_f16_bits(std::ldexp(1.0, -25) + std::ldexp(1.0, -60)) == 0x0001);
  CHECK(f64_to_f16_bits(std::ldexp(1.0, -25)) == 0x0000);
  // Overflow, NaN, Inf from f64.
  CHECK(f64_to_f16_bits(65519.99999) == 0x7bff);
  CHECK(f64_to_f16_bits(65520.0) == 0x7c00);
  CHECK(f64_to_f16_bits(-1e300) == 0xfc00);
  CHECK(f64_to_bf16_bits(1e300) == 0x7f80);
  CHECK(f16_is_nan(f64_to_f16_bits(std::nan(""))));
  CHECK(f16_is_nan(f64_to_f16_bits(-std::nan(""))));
  CHECK((f64_to_f16_bits(-std::nan("")) & 0x8000) != 0);
  CHECK(bf16_is_nan(f64_to_bf16_bits(std::nan(""))));
  CHECK((f64_to_bf16_bits(-std::nan("")) & 0x8000) != 0);
  CHECK(f64_to_f16_bits(-INFINITY) == 0xfc00);
  CHECK(f64_to_bf16_bits(INFINITY) == 0x7f80);
  CHECK(f64_to_f16_bits(-0.0) == 0x8000);
  // Random doubles (including many below f16's and bf16's normal range) against the reference.
  std::mt19937_64 g(3);
  int bad = 0;
  for (int i = 0; i < 200000; ++i) {
    const double m = std::ldexp(static_cast<double>(g() >> 11), -53);  // [0, 1), 53 bits
    const int e16 = static_cast<int>(g() % 46) - 28;                      // 2^-28 .. 2^17
    const int e8 = static_cast<int>(g() % 280) - 140;                     // 2^-140 .. 2^139
    const double sgn = (g() & 1) ? -1.0 : 1.0;
    const double x16 = sgn * std::ldexp(1.0 + m, e16), x8 = sgn * std::ldexp(1.0 + m, e8);
    if (f64_to_f16_bits(x16) != ref_f16(x16) && ++bad <= 3) FAIL_CHECK("f64 " << x16 << " -> f16");
    if (f64_to_bf16_bits(x8) != ref_bf16(x8) && ++bad <= 3) FAIL_CHECK("f64 " << x8 << " -> bf16");
  }
  CHECK(bad == 0);
}

TEST_CASE("dtype: 16-bit to 16-bit and integers to 16-bit round once") {
  // f16 65504 -> bf16: 65504 = 0x477fe000 as f32, nearest bf16 is 65536.
  CHECK(test::read(from_vector({65504}, {1}, DType::f16).to(DType::bf16))[0] == 65536.0);
  // bf16 -> f16 beyond the f16 range: 2^16 -> Inf; a bf16 subnormal -> f16 0.
  CHECK(std::isinf(test::read(from_vector({65536}, {1}, DType::bf16).to(DType::f16))[0]));
  // i64 -> f16: 2049 ties between 2048 and 2050 -> 2048 (even); 2051 -> 2052; 65519 -> 65504.
  std::vector<double> got = test::read(from_vector({2049, 2051, 65519, 70000}, {4}, DType::i64).to(DType::f16));
  CHECK(got == std::vector<double>{2048, 2052, 65504, INFINITY});
  // i32 -> bf16: 257 ties between 256 and 258 -> 256; 259 -> 260.
  got = test::read(from_vector({257, 259}, {2}, DType::i32).to(DType::bf16));
  CHECK(got == std::vector<double>{256, 260});
}

TEST_CASE("dtype: integer targets truncate toward zero and saturate") {
  struct Case {
    double in;
    DType to;
    double want;
  };
  const Case cases[] = {
      {3.7, DType::i8, 3},      {-3.7, DType::i8, -3},     {127.9, DType::i8, 127},   {200, DType::i8, 127},
      {-200, DType::i8, -128},  {-128.9, DType::i8, -128}, {-0.9, DType::u8, 0},      {-1.5, DType::u8, 0},
      {255.5, DType::u8, 255},  {300, DType::u8, 255},     {3e9, DType::i32, 2147483647.0},
      {-3e9, DType::i32, -2147483648.0},                   {-2.5, DType::i32, -2},    {2.5, DType::i32, 2},
      {1e19, DType::i64, 9223372036854775807.0},           {-1e19, DType::i64, -9223372036854775808.0},
      {-7.99, DType::i64, -7},  {INFINITY, DType::i8, 127}, {-INFINITY, DType::u8, 0},
  };
  for (DType from : {DType::f32, DType::f64}) {
    for (const Case& c : cases) {
      const double got = from_vector({c.in}, {1}, from).to(c.to).item();
      CHECK_MESSAGE(got == c.want, std::string(dtype_name(from)), " ", c.in, " -> ", std::string(dtype_name(c.to)));
    }
  }
  // NaN converts to 0 (documented in engine/dtype.h's saturate_from_double).
  CHECK(from_vector({NAN}, {1}, DType::f32).to(DType::i32).item() == 0);
  // bf16/f16 sources go through the same rules.
  CHECK(from_vector({-300}, {1}, DType::bf16).to(DType::i8).item() == -128);
  CHECK(from_vector({65504}, {1}, DType::f16).to(DType::i8).item() == 127);
  CHECK(from_vector({-2.75}, {1}, DType::f16).to(DType::i32).item() == -2);
  // Integer -> integer saturates.
  CHECK(from_vector({1000}, {1}, DType::i64).to(DType::i8).item() == 127);
  CHECK(from_vector({-5}, {1}, DType::i64).to(DType::u8).item() == 0);
  CHECK(from_vector({200}, {1}, DType::u8).to(DType::i8).item() == 127);
  CHECK(from_vector({-100000}, {1}, DType::i32).to(DType::i8).item() == -128);
  CHECK(from_vector({-7}, {1}, DType::i8).to(DType::i64).item() == -7);
  CHECK(from_vector({255}, {1}, DType::u8).to(DType::i32).item() == 255);
}

TEST_CASE("dtype: i64 <-> f64") {
  // Exact up to 2^53; 2^53 + 1 rounds to even (2^53) in f64; large values convert back exactly.
  const int64_t p53 = int64_t(1) << 53;
  Tensor t = Tensor::empty({5}, DType::i64);
  int64_t* p = t.data<int64_t>();
  p[0] = p53; p[1] = p53 + 1; p[2] = -p53; p[3] = p53 + 3; p[4] = std::numeric_limits<int64_t>::min();
  Tensor d = t.to(DType::f64);
  const double* q = d.data<double>();
  CHECK(q[0] == 9007199254740992.0);
  CHECK(q[1] == 9007199254740992.0);
  CHECK(q[2] == -9007199254740992.0);
  CHECK(q[3] == 9007199254740996.0);  // 2^53 + 3 ties between +2 and +4 -> +4 (even)
  CHECK(q[4] == -9223372036854775808.0);
  Tensor back = d.to(DType::i64);
  CHECK(back.data<int64_t>()[0] == p53);
  CHECK(back.data<int64_t>()[3] == p53 + 4);
  CHECK(back.data<int64_t>()[4] == std::numeric_limits<int64_t>::min());
  Tensor big = from_vector({4611686018427387904.0, -1234567890123.0}, {2}, DType::f64).to(DType::i64);  // 2^62
  CHECK(big.data<int64_t>()[0] == (int64_t(1) << 62));
  CHECK(big.data<int64_t>()[1] == -1234567890123);
}

TEST_CASE("dtype: casts of strided views keep values and layout order") {
  // A transposed, stepped f32 view cast to every dtype equals element-wise scalar conversion.
  Tensor base = from_vector(test::uniform(7 * 16, -100, 100, 5), {7, 16}, DType::f32);
  Tensor v = base.slice(1, 1, 16, 3).t();  // [5, 7], strides {3, 16}
  const std::vector<double> src = test::read(v);
  for (DType to : {DType::f64, DType::f16, DType::bf16, DType::i8, DType::u8, DType::i32, DType::i64}) {
    Tensor c = cast(v, to);
    CHECK(c.shape() == Shape{5, 7});
    CHECK(c.is_contiguous());
    const std::vector<double> got = test::read(c);
    for (size_t i = 0; i < src.size(); ++i) {
      double want;
      const float f = static_cast<float>(src[i]);
      switch (to) {
        case DType::f64: want = src[i]; break;
        case DType::f16: want = decode_f16(ref_f16(src[i])); break;
        case DType::bf16: want = decode_bf16(ref_bf16(src[i])); break;
        case DType::i8: want = std::clamp(std::trunc(src[i]), -128.0, 127.0); break;
        case DType::u8: want = std::clamp(std::trunc(src[i]), 0.0, 255.0); break;
        default: want = std::trunc(f); break;
      }
      if (got[i] != want) {
        FAIL_CHECK("cast to " << dtype_name(to) << " element " << i << ": " << got[i] << " vs " << want);
        break;
      }
    }
  }
}
