// Helpers shared by the engine unit tests: an independent reader of tensor memory, f64
// plain-loop references, input views in several layouts, dtype tolerances, error checks.
//
// Everything here is written without the engine's kernels: `read()` walks a multi-index over
// the tensor's own shape/strides and decodes f16/bf16 bits with its own code, so a wrong
// stride, offset or conversion in the engine shows up as a mismatch against the reference.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include "engine/ops.h"

namespace arq::test {

// ---- multi-index walking -------------------------------------------------------------------

// Calls f(idx) for every multi-index of `shape` in row-major order (nothing for 0-sized shapes,
// once with an empty index for a 0-d shape).
inline void for_each_index(const Shape& shape, const std::function<void(const std::vector<int64_t>&)>& f) {
  for (int64_t s : shape)
    if (s == 0) return;
  std::vector<int64_t> idx(shape.size(), 0);
  for (;;) {
    f(idx);
    int64_t d = static_cast<int64_t>(shape.size()) - 1;
    for (; d >= 0; --d) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
    if (d < 0) return;
  }
}

inline int64_t numel_of(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

// Row-major linear position of idx in shape.
inline int64_t linear(const Shape& shape, const std::vector<int64_t>& idx) {
  int64_t p = 0;
  for (size_t i = 0; i < shape.size(); ++i) p = p * shape[i] + idx[i];
  return p;
}

// Index into a NumPy-broadcast operand of shape `s` from an index of the (wider) output shape.
inline int64_t broadcast_linear(const Shape& s, const Shape& out, const std::vector<int64_t>& idx) {
  const size_t lead = out.size() - s.size();
  int64_t p = 0;
  for (size_t i = 0; i < s.size(); ++i) p = p * s[i] + (s[i] == 1 ? 0 : idx[lead + i]);
  return p;
}

// ---- independent decoding -----------------------------------------------------------------

inline double decode_f16(uint16_t h) {
  const int sign = h >> 15, e = (h >> 10) & 31, m = h & 1023;
  double v;
  if (e == 0) v = std::ldexp(static_cast<double>(m), -24);
  else if (e == 31) v = m ? std::nan("") : INFINITY;
  else v = std::ldexp(1024.0 + m, e - 25);
  return sign ? -v : v;
}
inline double decode_bf16(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// All elements of any CPU tensor as doubles, in row-major order of its shape.
inline std::vector<double> read(const Tensor& t) {
  std::vector<double> out;
  out.reserve(static_cast<size_t>(numel_of(t.shape())));
  const char* base = static_cast<const char*>(t.data_ptr());
  for_each_index(t.shape(), [&](const std::vector<int64_t>& idx) {
    int64_t off = 0;
    for (size_t i = 0; i < idx.size(); ++i) off += idx[i] * t.strides()[i];
    const char* p = base + off * static_cast<int64_t>(t.itemsize());
    double v = 0;
    switch (t.dtype()) {
      case DType::f32: { float x; std::memcpy(&x, p, 4); v = x; break; }
      case DType::f64: { std::memcpy(&v, p, 8); break; }
      case DType::f16: { uint16_t x; std::memcpy(&x, p, 2); v = decode_f16(x); break; }
      case DType::bf16: { uint16_t x; std::memcpy(&x, p, 2); v = decode_bf16(x); break; }
      case DType::i8: { int8_t x; std::memcpy(&x, p, 1); v = x; break; }
      case DType::u8: { uint8_t x; std::memcpy(&x, p, 1); v = x; break; }
      case DType::i32: { int32_t x; std::memcpy(&x, p, 4); v = x; break; }
      case DType::i64: { int64_t x; std::memcpy(&x, p, 8); v = static_cast<double>(x); break; }
    }
    out.push_back(v);
  });
  return out;
}

// ---- tolerances ----------------------------------------------------------------------------

// Unit roundoff u = 2^-p (p = significand bits incl. the implicit one): rounding a real r to
// the dtype errs by at most u·|r| in the normal range.
inline double unit_roundoff(DType t) {
  switch (t) {
    case DType::f32: return std::ldexp(1.0, -24);
    case DType::f64: return std::ldexp(1.0, -53);
    case DType::f16: return std::ldexp(1.0, -11);
    case DType::bf16: return std::ldexp(1.0, -8);
    default: return 0;
  }
}
// Unit roundoff of the type kernels compute in: f32 for f32/f16/bf16, f64 for f64.
inline double compute_roundoff(DType t) { return t == DType::f64 ? std::ldexp(1.0, -53) : std::ldexp(1.0, -24); }
// Half the smallest subnormal: the absolute error floor of rounding into the dtype.
inline double abs_floor(DType t) {
  switch (t) {
    case DType::f32: return std::ldexp(1.0, -150);
    case DType::f64: return 0;
    case DType::f16: return std::ldexp(1.0, -25);
    case DType::bf16: return std::ldexp(1.0, -134);
    default: return 0;
  }
}

inline bool same_or_close(double got, double want, double tol) {
  if (std::isnan(want)) return std::isnan(got);
  if (std::isinf(want)) return got == want;
  return std::fabs(got - want) <= tol;
}

// Compares element by element; reports the first few mismatches with their position.
inline void expect_close(const std::vector<double>& got, const std::vector<double>& want,
                         const std::function<double(size_t)>& tol, const std::string& what) {
  REQUIRE_MESSAGE(got.size() == want.size(), what, ": size ", got.size(), " vs ", want.size());
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double t = tol(i);
    if (!same_or_close(got[i], want[i], t)) {
      if (++bad <= 3) FAIL_CHECK(what << ": element " << i << " got " << got[i] << " want " << want[i] << " tol " << t);
    }
  }
  CHECK_MESSAGE(bad == 0, what, ": ", bad, " of ", got.size(), " elements differ");
}
inline void expect_equal(const std::vector<double>& got, const std::vector<double>& want, const std::string& what) {
  expect_close(got, want, [](size_t) { return 0.0; }, what);
}

// ---- inputs --------------------------------------------------------------------------------

// Deterministic uniform doubles in [lo, hi).
inline std::vector<double> uniform(int64_t n, double lo, double hi, uint32_t seed) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> d(lo, hi);
  std::vector<double> v(static_cast<size_t>(n));
  for (double& x : v) x = d(g);
  return v;
}
// Deterministic integers in [lo, hi] as doubles.
inline std::vector<double> uniform_int(int64_t n, int64_t lo, int64_t hi, uint32_t seed) {
  std::mt19937_64 g(seed);
  std::uniform_int_distribution<int64_t> d(lo, hi);
  std::vector<double> v(static_cast<size_t>(n));
  for (double& x : v) x = static_cast<double>(d(g));
  return v;
}

// An input tensor of `shape` laid out in one of several ways. `values` is what the engine
// sees, read back independently (so it holds the dtype-rounded numbers).
struct Input {
  std::string layout;
  Tensor t;
  std::vector<double> values;
};

enum class Layout { contiguous, transposed, stepped, narrowed, broadcast, permuted };
inline const char* layout_name(Layout l) {
  switch (l) {
    case Layout::contiguous: return "contiguous";
    case Layout::transposed: return "transposed";
    case Layout::stepped: return "stepped";
    case Layout::narrowed: return "narrowed";
    case Layout::broadcast: return "broadcast";
    case Layout::permuted: return "permuted";
  }
  return "?";
}

// Builds a tensor of `shape` and dtype `dt` whose memory layout is `l` (a view of a bigger or
// differently ordered base): transposed = last two dims swapped in memory; stepped = last dim
// taken with step 3 from offset 1; narrowed = dim 0 cut out of a longer base at offset 2;
// broadcast = dim 0 expanded (stride 0) from size 1; permuted = every dim reversed in memory.
// `gen(n)` makes the base values. Returns an undefined tensor when the layout does not apply.
inline Input make_input(const Shape& shape, DType dt, Layout l, const std::function<std::vector<double>(int64_t)>& gen) {
  Input in;
  in.layout = layout_name(l);
  const int64_t nd = static_cast<int64_t>(shape.size());
  Shape base = shape;
  switch (l) {
    case Layout::contiguous: break;
    case Layout::transposed:
      if (nd < 2) return in;
      std::swap(base[nd - 1], base[nd - 2]);
      break;
    case Layout::stepped:
      if (nd < 1) return in;
      base[nd - 1] = 3 * shape[nd - 1] + 1;
      break;
    case Layout::narrowed:
      if (nd < 1) return in;
      base[0] = shape[0] + 5;
      break;
    case Layout::broadcast:
      if (nd < 1 || shape[0] == 1) return in;
      base[0] = 1;
      break;
    case Layout::permuted:
      if (nd < 3) return in;
      for (int64_t i = 0; i < nd; ++i) base[i] = shape[nd - 1 - i];
      break;
  }
  Tensor b = from_vector(gen(numel_of(base)), base, dt);
  Tensor v;
  switch (l) {
    case Layout::contiguous: v = b; break;
    case Layout::transposed: v = b.transpose(-1, -2); break;
    case Layout::stepped: v = b.slice(-1, 1, base[nd - 1], 3); break;
    case Layout::narrowed: v = b.narrow(0, 2, shape[0]); break;
    case Layout::broadcast: v = b.expand(shape); break;
    case Layout::permuted: {
      std::vector<int64_t> order(static_cast<size_t>(nd));
      for (int64_t i = 0; i < nd; ++i) order[i] = nd - 1 - i;
      v = b.permute(order);
      break;
    }
  }
  REQUIRE(v.shape() == shape);
  in.t = v;
  in.values = read(v);
  return in;
}

inline std::vector<Layout> all_layouts() {
  return {Layout::contiguous, Layout::transposed, Layout::stepped, Layout::narrowed, Layout::broadcast, Layout::permuted};
}

inline std::vector<DType> float_dtypes() { return {DType::f32, DType::f64, DType::f16, DType::bf16}; }
inline std::vector<DType> int_dtypes() { return {DType::i8, DType::u8, DType::i32, DType::i64}; }

// ---- errors --------------------------------------------------------------------------------

// Runs fn, expects it to throw E whose message contains every string in `parts`.
template <class E, class Fn>
void expect_error(Fn&& fn, std::initializer_list<const char*> parts) {
  bool thrown = false;
  try {
    fn();
  } catch (const E& e) {
    thrown = true;
    const std::string msg = e.what();
    for (const char* p : parts) CHECK_MESSAGE(msg.find(p) != std::string::npos, "message '", msg, "' lacks '", std::string(p), "'");
  } catch (const std::exception& e) {
    FAIL_CHECK("threw the wrong type: " << e.what());
    return;
  }
  CHECK_MESSAGE(thrown, "expected an exception containing '", std::string(*parts.begin()), "'");
}

}  // namespace arq::test
