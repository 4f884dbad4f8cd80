// Element types and exact conversions between them.
//
// f16 and bf16 are stored as raw 16-bit patterns (`Half`, `BFloat16`); every narrowing conversion
// rounds to nearest, ties to even, keeps NaN a NaN (quiet) and ±Inf an infinity, and produces
// subnormals where the target has them. Integer targets truncate toward zero and saturate.
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>

namespace arq {

enum class DType : uint8_t { f32, f64, f16, bf16, i8, u8, i32, i64 };
inline constexpr int kNumDTypes = 8;

size_t dtype_size(DType t);          // bytes per element
const char* dtype_name(DType t);     // "f32", "bf16", ...
DType dtype_from_name(const std::string& name);  // inverse of dtype_name; throws DTypeError
bool is_floating(DType t);           // f32, f64, f16, bf16
bool is_integral(DType t);           // i8, u8, i32, i64

struct Half {
  uint16_t bits = 0;
};
struct BFloat16 {
  uint16_t bits = 0;
};

inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float f32_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// float -> bf16, round to nearest even; NaN stays NaN (quiet bit forced).
inline uint16_t f32_to_bf16_bits(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
inline float bf16_bits_to_f32(uint16_t b) { return f32_from_bits(static_cast<uint32_t>(b) << 16); }

uint16_t f32_to_f16_bits(float f);
float f16_bits_to_f32(uint16_t h);
// double -> 16-bit formats without double rounding through f32.
uint16_t f64_to_f16_bits(double d);
uint16_t f64_to_bf16_bits(double d);

// Scalar conversion used by kernels: convert<To>(from).
template <class To, class From>
inline To convert(From v);

namespace detail {
template <class T> struct IsInt { static constexpr bool value = false; };
template <> struct IsInt<int8_t> { static constexpr bool value = true; };
template <> struct IsInt<uint8_t> { static constexpr bool value = true; };
template <> struct IsInt<int32_t> { static constexpr bool value = true; };
template <> struct IsInt<int64_t> { static constexpr bool value = true; };

template <class I>
inline I saturate_from_double(double v) {
  if (v != v) return 0;
  constexpr double lo = static_cast<double>(std::numeric_limits<I>::min());
  constexpr double hi = static_cast<double>(std::numeric_limits<I>::max());
  if (v <= lo) return std::numeric_limits<I>::min();
  if (v >= hi) return std::numeric_limits<I>::max();
  return static_cast<I>(v);  // truncation toward zero
}
}  // namespace detail

// Widen any element to double (exact for every dtype except i64 beyond 2^53).
inline double to_double(float v) { return v; }
inline double to_double(double v) { return v; }
inline double to_double(Half v) { return f16_bits_to_f32(v.bits); }
inline double to_double(BFloat16 v) { return bf16_bits_to_f32(v.bits); }
inline double to_double(int8_t v) { return v; }
inline double to_double(uint8_t v) { return v; }
inline double to_double(int32_t v) { return v; }
inline double to_double(int64_t v) { return static_cast<double>(v); }

// Narrow to float (the compute type of f16/bf16/f32 kernels).
inline float to_float(float v) { return v; }
inline float to_float(double v) { return static_cast<float>(v); }
inline float to_float(Half v) { return f16_bits_to_f32(v.bits); }
inline float to_float(BFloat16 v) { return bf16_bits_to_f32(v.bits); }
template <class I>
inline float to_float(I v) { return static_cast<float>(v); }

template <class To>
struct Converter;
template <> struct Converter<float> {
  template <class F> static float from(F v) { return to_float(v); }
};
template <> struct Converter<double> {
  template <class F> static double from(F v) { return to_double(v); }
};
template <> struct Converter<Half> {
  static Half from(double v) { return Half{f64_to_f16_bits(v)}; }
  static Half from(float v) { return Half{f32_to_f16_bits(v)}; }
  static Half from(Half v) { return v; }
  static Half from(BFloat16 v) { return Half{f32_to_f16_bits(bf16_bits_to_f32(v.bits))}; }
  template <class I> static Half from(I v) { return Half{f64_to_f16_bits(static_cast<double>(v))}; }
};
template <> struct Converter<BFloat16> {
  static BFloat16 from(double v) { return BFloat16{f64_to_bf16_bits(v)}; }
  static BFloat16 from(float v) { return BFloat16{f32_to_bf16_bits(v)}; }
  static BFloat16 from(BFloat16 v) { return v; }
  static BFloat16 from(Half v) { return BFloat16{f32_to_bf16_bits(f16_bits_to_f32(v.bits))}; }
  template <class I> static BFloat16 from(I v) { return BFloat16{f64_to_bf16_bits(static_cast<double>(v))}; }
};
template <class I>
struct IntConverter {
  template <class F> static I from(F v) {
    if constexpr (detail::IsInt<F>::value) {
      // integer -> integer: saturate through double is exact below 2^53; i64 -> i64 is identity.
      if constexpr (std::is_same_v<F, I>) return v;
      else return detail::saturate_from_double<I>(static_cast<double>(v));
    } else {
      return detail::saturate_from_double<I>(to_double(v));
    }
  }
};
template <> struct Converter<int8_t> : IntConverter<int8_t> {};
template <> struct Converter<uint8_t> : IntConverter<uint8_t> {};
template <> struct Converter<int32_t> : IntConverter<int32_t> {};
template <> struct Converter<int64_t> : IntConverter<int64_t> {};

template <class To, class From>
inline To convert(From v) { return Converter<To>::from(v); }

// C++ type of a dtype, and dtype of a C++ type.
template <DType D> struct CType;
template <> struct CType<DType::f32> { using type = float; };
template <> struct CType<DType::f64> { using type = double; };
template <> struct CType<DType::f16> { using type = Half; };
template <> struct CType<DType::bf16> { using type = BFloat16; };
template <> struct CType<DType::i8> { using type = int8_t; };
template <> struct CType<DType::u8> { using type = uint8_t; };
template <> struct CType<DType::i32> { using type = int32_t; };
template <> struct CType<DType::i64> { using type = int64_t; };

template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }
template <> constexpr DType dtype_of<Half>() { return DType::f16; }
template <> constexpr DType dtype_of<BFloat16>() { return DType::bf16; }
template <> constexpr DType dtype_of<int8_t>() { return DType::i8; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::u8; }
template <> constexpr DType dtype_of<int32_t>() { return DType::i32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::i64; }

// Call fn(T{}) with T the C++ type of `t`: dispatch_dtype(t, [&](auto tag) { using T = decltype(tag); ... });
template <class Fn>
decltype(auto) dispatch_dtype(DType t, Fn&& fn) {
  switch (t) {
    case DType::f32: return fn(float{});
    case DType::f64: return fn(double{});
    case DType::f16: return fn(Half{});
    case DType::bf16: return fn(BFloat16{});
    case DType::i8: return fn(int8_t{});
    case DType::u8: return fn(uint8_t{});
    case DType::i32: return fn(int32_t{});
    case DType::i64: return fn(int64_t{});
  }
  return fn(float{});
}

}  // namespace arq
