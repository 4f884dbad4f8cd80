// CPU elementwise kernels: copy/cast, fill, unary, binary, where.
#include <cmath>
#include <cstring>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/strided.h"
#include "kernels/cpu/vec_math.h"

namespace arq::cpu {

namespace {

// out[i] = f(in[i]) over a 2-operand layout; the contiguous case is a plain loop the compiler
// vectorizes. kWide: compile the loops for the widest ISA present (vec_math.h for_isa), for
// compute-bound f (exp-based ops, whose std::fma would be a libm call at the baseline ISA);
// f gives the same bits on every path.
template <class TO, class TI, bool kWide = false, class F>
void map1(const Tensor& x, Tensor& out, F f) {
  auto L = make_layout<2>(out.shape(), {&out, &x});
  TO* po = static_cast<TO*>(out.data_ptr());
  const TI* px = static_cast<const TI*>(x.data_ptr());
  const bool contig = L.inner_contiguous();
  parallel_rows(L, kElementwiseGrain, [&](const std::array<int64_t, 2>& off, int64_t n) {
    TO* o = po + off[0];
    const TI* a = px + off[1];
    if (contig) {
      if constexpr (kWide) {
        for_isa([&](auto) ARQ_LAMBDA_INLINE {
          for (int64_t i = 0; i < n; ++i) o[i] = f(a[i]);
        });
      } else {
        for (int64_t i = 0; i < n; ++i) o[i] = f(a[i]);
      }
    } else {
      const int64_t so = L.inner(0), sa = L.inner(1);
      if constexpr (kWide) {
        for_isa([&](auto) ARQ_LAMBDA_INLINE {
          for (int64_t i = 0; i < n; ++i) o[i * so] = f(a[i * sa]);
        });
      } else {
        for (int64_t i = 0; i < n; ++i) o[i * so] = f(a[i * sa]);
      }
    }
  });
}

template <class TO, class TA, class TB, class F>
void map2(const Tensor& a, const Tensor& b, Tensor& out, F f) {
  auto L = make_layout<3>(out.shape(), {&out, &a, &b});
  TO* po = static_cast<TO*>(out.data_ptr());
  const TA* pa = static_cast<const TA*>(a.data_ptr());
  const TB* pb = static_cast<const TB*>(b.data_ptr());
  const bool contig = L.inner_contiguous();
  const bool b_scalar = L.inner(0) == 1 && L.inner(1) == 1 && L.inner(2) == 0;
  parallel_rows(L, kElementwiseGrain, [&](const std::array<int64_t, 3>& off, int64_t n) {
    TO* o = po + off[0];
    const TA* x = pa + off[1];
    const TB* y = pb + off[2];
    if (contig) {
      for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], y[i]);
    } else if (b_scalar) {
      const TB yv = *y;
      for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], yv);
    } else {
      const int64_t so = L.inner(0), sa = L.inner(1), sb = L.inner(2);
      for (int64_t i = 0; i < n; ++i) o[i * so] = f(x[i * sa], y[i * sb]);
    }
  });
}

template <class T>
inline T round_half_even(T v) {
  return std::nearbyint(v);  // default FP environment rounds to nearest, ties to even
}

template <class C>
inline C sign_of(C v) {
  if constexpr (std::is_floating_point_v<C>) {
    if (v != v) return v;
  }
  return static_cast<C>((v > C(0)) - (v < C(0)));
}

template <class T>
void unary_typed(UnaryOp op, const Tensor& x, Tensor& out, double p0, double p1) {
  using C = acc_t<T>;
  auto run = [&](auto f) { map1<T, T>(x, out, [f](T v) { return store<T>(f(load(v))); }); };
  auto run_wide = [&](auto f) { map1<T, T, true>(x, out, [f](T v) { return store<T>(f(load(v))); }); };
  switch (op) {
    case UnaryOp::neg: run([](C v) { return C(-v); }); return;
    case UnaryOp::abs: run([](C v) { return v < C(0) ? C(-v) : v; }); return;
    case UnaryOp::sign: run([](C v) { return sign_of(v); }); return;
    case UnaryOp::clamp: {
      if constexpr (std::is_floating_point_v<C>) {
        const C lo = static_cast<C>(p0), hi = static_cast<C>(p1);
        run([lo, hi](C v) { return v != v ? v : (v < lo ? lo : (v > hi ? hi : v)); });
      } else {
        const double lo = std::ceil(p0), hi = std::floor(p1);
        run([lo, hi](C v) { return static_cast<C>(std::min(std::max(static_cast<double>(v), lo), hi)); });
      }
      return;
    }
    case UnaryOp::affine: {
      if constexpr (std::is_floating_point_v<C>) {
        const C s = static_cast<C>(p0), t = static_cast<C>(p1);
        run([s, t](C v) { return s * v + t; });
      } else {
        run([p0, p1](C v) { return static_cast<C>(std::nearbyint(p0 * static_cast<double>(v) + p1)); });
      }
      return;
    }
    default: break;
  }
  if constexpr (std::is_same_v<C, float>) {
    // f32/f16/bf16: exp through exp_for_f32 (vec_math.h: the correctly rounded expf in all but
    // ~1e-6 of inputs, where glibc's expf is off by one ulp in ~4e-5), which vectorizes.
    switch (op) {
      case UnaryOp::exp: run_wide([](C v) { return exp_for_f32(v); }); return;
      case UnaryOp::sigmoid: run_wide([](C v) { return C(1) / (C(1) + exp_for_f32(-v)); }); return;
      case UnaryOp::silu: run_wide([](C v) { return v / (C(1) + exp_for_f32(-v)); }); return;
      default: break;
    }
  }
  if constexpr (std::is_floating_point_v<C>) {
    switch (op) {
      case UnaryOp::exp: run([](C v) { return std::exp(v); }); return;
      case UnaryOp::log: run([](C v) { return std::log(v); }); return;
      case UnaryOp::sqrt: run([](C v) { return std::sqrt(v); }); return;
      case UnaryOp::rsqrt: run([](C v) { return C(1) / std::sqrt(v); }); return;
      case UnaryOp::sigmoid: run([](C v) { return C(1) / (C(1) + std::exp(-v)); }); return;
      case UnaryOp::silu: run([](C v) { return v / (C(1) + std::exp(-v)); }); return;
      case UnaryOp::tanh: run([](C v) { return std::tanh(v); }); return;
      case UnaryOp::round: run([](C v) { return round_half_even(v); }); return;
      case UnaryOp::floor: run([](C v) { return std::floor(v); }); return;
      case UnaryOp::pow: {
        const C e = static_cast<C>(p0);
        if (p0 == 2.0) run([](C v) { return v * v; });
        else run([e](C v) { return std::pow(v, e); });
        return;
      }
      default: break;
    }
  }
  throw UnsupportedError(cat("[", unary_name(op), "] not implemented on cpu for ", x.str()));
}

template <class T>
void binary_typed(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) {
  using C = acc_t<T>;
  auto run = [&](auto f) { map2<T, T, T>(a, b, out, [f](T x, T y) { return store<T>(f(load(x), load(y))); }); };
  auto cmp = [&](auto f) { map2<uint8_t, T, T>(a, b, out, [f](T x, T y) { return uint8_t(f(load(x), load(y)) ? 1 : 0); }); };
  switch (op) {
    case BinaryOp::add: run([](C x, C y) { return C(x + y); }); return;
    case BinaryOp::sub: run([](C x, C y) { return C(x - y); }); return;
    case BinaryOp::mul: run([](C x, C y) { return C(x * y); }); return;
    case BinaryOp::div:
      if constexpr (std::is_floating_point_v<C>) {
        run([](C x, C y) { return x / y; });
      } else {
        // integer division by zero gives 0: defined, never UB
        run([](C x, C y) { return y == 0 ? C(0) : C(x / y); });
      }
      return;
    case BinaryOp::minimum:
      run([](C x, C y) { return (x != x || y != y) ? C(x + y) : (y < x ? y : x); });
      return;
    case BinaryOp::maximum:
      run([](C x, C y) { return (x != x || y != y) ? C(x + y) : (y > x ? y : x); });
      return;
    case BinaryOp::pow:
      if constexpr (std::is_floating_point_v<C>) run([](C x, C y) { return std::pow(x, y); });
      return;
    case BinaryOp::eq: cmp([](C x, C y) { return x == y; }); return;
    case BinaryOp::ne: cmp([](C x, C y) { return x != y; }); return;
    case BinaryOp::lt: cmp([](C x, C y) { return x < y; }); return;
    case BinaryOp::le: cmp([](C x, C y) { return x <= y; }); return;
    case BinaryOp::gt: cmp([](C x, C y) { return x > y; }); return;
    case BinaryOp::ge: cmp([](C x, C y) { return x >= y; }); return;
  }
}

// dst [R, C] contiguous <- src whose first axis is the unit-stride one (a transposed view, e.g.
// w.t()): the strided loop would read src a column at a time, one cache line per element, so
// the copy goes tile by tile instead. Same dtype only (a byte copy). False: not this layout.
template <class E>
void transpose_tiles(const E* s, int64_t ss1, E* d, int64_t R, int64_t C) {
  constexpr int64_t kTile = 32;
  const int64_t tiles_r = (R + kTile - 1) / kTile;
  parallel_for(tiles_r, std::max<int64_t>(1, kElementwiseGrain / (kTile * std::max<int64_t>(C, 1))), [&](int64_t tb, int64_t te) {
    for (int64_t tr = tb; tr < te; ++tr) {
      const int64_t r0 = tr * kTile, r1 = std::min(R, r0 + kTile);
      for (int64_t c0 = 0; c0 < C; c0 += kTile) {
        const int64_t c1 = std::min(C, c0 + kTile);
        // src(r, c) = s[r + c·ss1]: rows r0..r1 of one source column are contiguous.
        for (int64_t c = c0; c < c1; ++c)
          for (int64_t r = r0; r < r1; ++r) d[r * C + c] = s[r + c * ss1];
      }
    }
  });
}

bool copy_transposed_2d(const Tensor& src, Tensor& dst) {
  if (src.dim() != 2 || !dst.is_contiguous() || src.stride(0) != 1 || src.size(0) < 2 || src.size(1) < 2) return false;
  const int64_t R = src.size(0), C = src.size(1), ss1 = src.stride(1);
  if (ss1 < R) return false;  // overlapping or broadcast columns: leave to the generic loop
  switch (dtype_size(src.dtype())) {
    case 1: transpose_tiles(static_cast<const uint8_t*>(src.data_ptr()), ss1, static_cast<uint8_t*>(dst.data_ptr()), R, C); return true;
    case 2: transpose_tiles(static_cast<const uint16_t*>(src.data_ptr()), ss1, static_cast<uint16_t*>(dst.data_ptr()), R, C); return true;
    case 4: transpose_tiles(static_cast<const uint32_t*>(src.data_ptr()), ss1, static_cast<uint32_t*>(dst.data_ptr()), R, C); return true;
    case 8: transpose_tiles(static_cast<const uint64_t*>(src.data_ptr()), ss1, static_cast<uint64_t*>(dst.data_ptr()), R, C); return true;
    default: return false;
  }
}

}  // namespace

void copy(const Tensor& src, Tensor& dst) {
  ARQ_ASSERT(src.shape() == dst.shape(), "copy shapes ", src.str(), " -> ", dst.str());
  if (src.dtype() == dst.dtype() && src.is_contiguous() && dst.is_contiguous()) {
    const size_t n = dst.nbytes();
    char* d = static_cast<char*>(dst.data_ptr());
    const char* s = static_cast<const char*>(src.data_ptr());
    parallel_for(static_cast<int64_t>(n), 1 << 20, [&](int64_t b, int64_t e) { std::memcpy(d + b, s + b, e - b); });
    return;
  }
  if (src.dtype() == dst.dtype() && copy_transposed_2d(src, dst)) return;
  dispatch_dtype(src.dtype(), [&](auto st) {
    using S = decltype(st);
    dispatch_dtype(dst.dtype(), [&](auto dt) {
      using D = decltype(dt);
      // f32 <-> bf16 are inline bit operations that vectorize at AVX2/AVX-512 (SSE2 lacks the
      // unsigned 32 -> 16 bit narrowing), so those two take the widest ISA.
      constexpr bool wide = (std::is_same_v<S, float> && std::is_same_v<D, BFloat16>) ||
                            (std::is_same_v<S, BFloat16> && std::is_same_v<D, float>);
      map1<D, S, wide>(src, dst, [](S v) { return convert<D>(v); });
    });
  });
}

void fill(Tensor& dst, double value) {
  dispatch_dtype(dst.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T v = convert<T>(value);
    auto L = make_layout<1>(dst.shape(), {&dst});
    T* p = static_cast<T*>(dst.data_ptr());
    parallel_rows(L, kElementwiseGrain, [&](const std::array<int64_t, 1>& off, int64_t n) {
      const int64_t s = L.inner(0);
      for (int64_t i = 0; i < n; ++i) p[off[0] + i * s] = v;
    });
  });
}

void unary(UnaryOp op, const Tensor& x, Tensor& out, double p0, double p1) {
  dispatch_dtype(x.dtype(), [&](auto tag) { unary_typed<decltype(tag)>(op, x, out, p0, p1); });
}

void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) {
  dispatch_dtype(a.dtype(), [&](auto tag) { binary_typed<decltype(tag)>(op, a, b, out); });
}

void where(const Tensor& cond, const Tensor& a, const Tensor& b, Tensor& out) {
  dispatch_dtype(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    auto L = make_layout<4>(out.shape(), {&out, &cond, &a, &b});
    T* po = static_cast<T*>(out.data_ptr());
    const uint8_t* pc = static_cast<const uint8_t*>(cond.data_ptr());
    const T* pa = static_cast<const T*>(a.data_ptr());
    const T* pb = static_cast<const T*>(b.data_ptr());
    parallel_rows(L, kElementwiseGrain, [&](const std::array<int64_t, 4>& off, int64_t n) {
      const int64_t so = L.inner(0), sc = L.inner(1), sa = L.inner(2), sb = L.inner(3);
      for (int64_t i = 0; i < n; ++i)
        po[off[0] + i * so] = pc[off[1] + i * sc] ? pa[off[2] + i * sa] : pb[off[3] + i * sb];
    });
  });
}

}  // namespace arq::cpu
