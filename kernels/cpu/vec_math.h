// Vectorizable math for the CPU kernels, and running one loop with the widest x86 ISA present.
//
// exp_f64_reduced / exp_for_f32 are straight-line code (no tables, no branches), so a loop over
// them vectorizes. Each step is one correctly rounded IEEE operation (explicit std::fma where a
// multiply-add is wanted; the for_isa functions are compiled with contraction off so nothing
// else fuses), so the SSE2, AVX2 and AVX-512 builds of a loop give the same bits, and so do
// scalar and vector code: results do not depend on the machine's ISA, on the thread count, or
// on whether a tensor was contiguous. At the baseline ISA std::fma is a libm call (slow but
// exact), which is why callers run these loops through for_isa.
//
//   for_isa([&](auto) ARQ_LAMBDA_INLINE { for (int64_t i = 0; i < n; ++i) o[i] = exp_for_f32(x[i]); });
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

// No implicit a*b+c -> fma fusion in the loops for_isa compiles for AVX2/AVX-512 (GCC fuses by
// default in C++ whenever the target has FMA). A build with -march=<FMA-capable> for the whole
// library would fuse the baseline path too; keep the library's baseline ISA generic.
#if defined(__clang__)
#define ARQ_NO_CONTRACT _Pragma("clang fp contract(off)")
#else
#define ARQ_NO_CONTRACT
#endif

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define ARQ_X86_DISPATCH 1
#define ARQ_INLINE inline __attribute__((always_inline))
#if defined(__clang__)
#define ARQ_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define ARQ_TARGET_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw")))
#else
#define ARQ_TARGET_AVX2 __attribute__((target("avx2,fma"), optimize("fp-contract=off")))
#define ARQ_TARGET_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw"), optimize("fp-contract=off")))
#endif
#define ARQ_LAMBDA_INLINE __attribute__((always_inline))
#else
#define ARQ_X86_DISPATCH 0
#define ARQ_INLINE inline
#define ARQ_LAMBDA_INLINE
#endif

namespace arq::cpu {

// exp(x) for x in [-700, 700] (callers clamp), relative error < 1e-13: x = k·ln2 + r with
// |r| <= ln2/2, e^r by a degree-9 polynomial (fit error 3.7e-14 on [-ln2/2, ln2/2]), 2^k built
// in the exponent bits. Every multiply-add is an explicit std::fma (one
// rounding, so the same bits on every ISA; a single instruction where the target has FMA, the
// exact libm routine where it has not). NaN propagates through the polynomial.
ARQ_INLINE double exp_f64_reduced(double x) {
  ARQ_NO_CONTRACT
  constexpr double log2e = 1.4426950408889634074;
  constexpr double ln2_hi = 0x1.62e42fefa39efp-1;  // ln 2 rounded to f64
  constexpr double ln2_lo = 0x1.abc9e3b39803fp-56;  // ln 2 - ln2_hi
  constexpr double shifter = 0x1.8p52;  // adding it rounds to an integer, held in the low bits
  const double t = std::fma(x, log2e, shifter);
  const double k = t - shifter;
  const double r = std::fma(-k, ln2_lo, std::fma(-k, ln2_hi, x));
  // e^r = 1 + r·q(r), q a Chebyshev fit of (e^r - 1)/r: exp(0) is exactly 1.
  double q = 0x1.72c720d005e4bp-19;
  q = std::fma(q, r, 0x1.a15a4fc103094p-16);
  q = std::fma(q, r, 0x1.a019adabe6699p-13);
  q = std::fma(q, r, 0x1.6c164df426e43p-10);
  q = std::fma(q, r, 0x1.1111111c45d9fp-7);
  q = std::fma(q, r, 0x1.5555557428e4ap-5);
  q = std::fma(q, r, 0x1.5555555553b7dp-3);
  q = std::fma(q, r, 0x1.fffffffff71cfp-2);
  q = std::fma(q, r, 1.0);
  const double p = std::fma(q, r, 1.0);
  // The low 12 bits of t's bit pattern are k mod 2^12; shifted into the exponent field and
  // biased they give 2^k for k in [-1022, 1023].
  const uint64_t two_k_bits = (std::bit_cast<uint64_t>(t) << 52) + (uint64_t{1023} << 52);
  return p * std::bit_cast<double>(two_k_bits);
}

// v clamped to [-lim, lim] (lim_bits = the bits of a positive finite lim), NaN left alone.
// Done on the bits: a floating-point compare makes GCC branch here (FP compares may trap), and
// the loop around it no longer vectorizes.
ARQ_INLINE float clamp_abs(float v, uint32_t lim_bits) {
  uint32_t b = std::bit_cast<uint32_t>(v);
  const uint32_t mag = b & 0x7fffffffu;
  b = (mag > lim_bits && mag <= 0x7f800000u) ? ((b & 0x80000000u) | lim_bits) : b;
  return std::bit_cast<float>(b);
}
inline constexpr uint32_t kBits150 = 0x43160000u;  // 150.0f
inline constexpr uint32_t kBits700 = 0x442f0000u;  // 700.0f

// exp of an f32 argument in f64 (for sums that want f64 terms), for v in [-700, 700] or
// clamped there: past -700 the true value (< 1e-304) and this one both vanish next to any
// term >= 1e-290; converting the result to f32 gives exp_for_f32(v).
ARQ_INLINE double exp_f64_of_f32(float v) { return exp_f64_reduced(static_cast<double>(clamp_abs(v, kBits700))); }

ARQ_INLINE float exp_for_f32(float v) {
  // Past ±150 the f32 result is already inf / 0, and k stays small for the exponent trick.
  return static_cast<float>(exp_f64_reduced(static_cast<double>(clamp_abs(v, kBits150))));
}

#if ARQ_X86_DISPATCH
namespace detail {
template <class F> ARQ_TARGET_AVX512 void run_avx512(F& f) { f(0); }
template <class F> ARQ_TARGET_AVX2 void run_avx2(F& f) { f(0); }
inline int isa_level() {
  static const int level = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw"))
      return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
    return 0;
  }();
  return level;
}
}  // namespace detail
#endif

// Calls f(0) compiled for the widest ISA the CPU has: f is a lambda marked ARQ_LAMBDA_INLINE
// whose body is the loop, inlined into a function built for that ISA. Keep f free of calls
// that cannot inline, or the loop runs at the baseline ISA (std::fma then is a libm call).
//   for_isa([&](auto) ARQ_LAMBDA_INLINE { for (...) ... });
template <class F>
void for_isa(F&& f) {
#if ARQ_X86_DISPATCH
  switch (detail::isa_level()) {
    case 2: detail::run_avx512(f); return;
    case 1: detail::run_avx2(f); return;
    default: break;
  }
#endif
  f(0);
}

}  // namespace arq::cpu
