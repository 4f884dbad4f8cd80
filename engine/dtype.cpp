#include "engine/dtype.h"

#include <cmath>

#include "engine/error.h"

namespace arq {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::f16: return 2;
    case DType::bf16: return 2;
    case DType::i8: return 1;
    case DType::u8: return 1;
    case DType::i32: return 4;
    case DType::i64: return 8;
  }
  ARQ_ASSERT(false, "unknown dtype ", static_cast<int>(t));
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::f16: return "f16";
    case DType::bf16: return "bf16";
    case DType::i8: return "i8";
    case DType::u8: return "u8";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
  }
  return "?";
}

DType dtype_from_name(const std::string& name) {
  for (int i = 0; i < kNumDTypes; ++i) {
    auto t = static_cast<DType>(i);
    if (name == dtype_name(t)) return t;
  }
  throw DTypeError(cat("unknown dtype '", name, "' (expected one of f32 f64 f16 bf16 i8 u8 i32 i64)"));
}

bool is_floating(DType t) {
  return t == DType::f32 || t == DType::f64 || t == DType::f16 || t == DType::bf16;
}
bool is_integral(DType t) { return !is_floating(t); }

uint16_t f32_to_f16_bits(float f) {
  const uint32_t x = f32_bits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t a = x & 0x7fffffffu;
  if (a >= 0x7f800000u) {  // Inf or NaN (NaN keeps its top payload bits and becomes quiet)
    if (a == 0x7f800000u) return sign | 0x7c00u;
    return static_cast<uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
  }
  if (a >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 rounds (ties-to-even) to Inf
  if (a < 0x38800000u) {
    // Below 2^-14: half subnormal. f * 2^24 is exact in float; nearbyint rounds half-even.
    // A result of 1024 is the bit pattern of the smallest normal, so it needs no special case.
    const float scaled = f32_from_bits(a) * 16777216.0f;
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(std::nearbyint(scaled)));
  }
  // Normal: add the rounding bias (half-ulp minus one, plus the lsb for ties-to-even), rebias
  // the exponent from 127 to 15 and drop 13 mantissa bits. A carry into the exponent is correct.
  const uint32_t r = a + 0xfffu + ((a >> 13) & 1u);
  return static_cast<uint16_t>(sign | ((r - 0x38000000u) >> 13));
}

float f16_bits_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu;
  const uint32_t m = h & 0x3ffu;
  if (e == 0) {
    const float v = static_cast<float>(m) * 5.9604644775390625e-08f;  // m * 2^-24, exact
    return sign ? -v : v;
  }
  if (e == 31) return f32_from_bits(sign | 0x7f800000u | (m << 13));
  return f32_from_bits(sign | ((e + 112u) << 23) | (m << 13));
}

namespace {
// Round a double to a binary format with `ebits` exponent bits and `mbits` stored mantissa bits
// (IEEE-like: bias 2^(ebits-1)-1, subnormals, all-ones exponent = Inf/NaN), ties to even.
uint16_t f64_to_small(double d, int ebits, int mbits) {
  const uint32_t sign_bit = 1u << (ebits + mbits);
  const uint32_t exp_all = (1u << ebits) - 1u;
  if (std::isnan(d)) return static_cast<uint16_t>((exp_all << mbits) | (1u << (mbits - 1)) | (std::signbit(d) ? sign_bit : 0));
  const uint32_t sign = std::signbit(d) ? sign_bit : 0u;
  double a = std::fabs(d);
  if (a == 0) return static_cast<uint16_t>(sign);
  const int bias = (1 << (ebits - 1)) - 1;
  const int emin = 1 - bias;
  if (std::isinf(a)) return static_cast<uint16_t>(sign | (exp_all << mbits));
  int e2;
  std::frexp(a, &e2);
  int E = e2 - 1;  // a = 1.f * 2^E
  const int qexp = (E < emin ? emin : E) - mbits;  // exponent of one ulp
  const double q = std::nearbyint(std::ldexp(a, -qexp));  // integer count of ulps, half-even
  const double r = std::ldexp(q, qexp);
  if (r >= std::ldexp(1.0, bias + 1)) return static_cast<uint16_t>(sign | (exp_all << mbits));
  if (r < std::ldexp(1.0, emin)) {
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(std::ldexp(r, mbits - emin)));
  }
  std::frexp(r, &e2);
  E = e2 - 1;
  const uint32_t mant = static_cast<uint32_t>(std::ldexp(r, mbits - E)) - (1u << mbits);
  return static_cast<uint16_t>(sign | (static_cast<uint32_t>(E + bias) << mbits) | mant);
}
}  // namespace

uint16_t f64_to_f16_bits(double d) { return f64_to_small(d, 5, 10); }
uint16_t f64_to_bf16_bits(double d) { return f64_to_small(d, 8, 7); }

}  // namespace arq
