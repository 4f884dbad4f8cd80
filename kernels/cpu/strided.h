// Strided iteration shared by the CPU kernels.
//
// A Layout holds an iteration shape and, for each of N operands, its element strides, after
// "coalescing": size-1 dims are dropped and neighbouring dims merged where every operand is
// contiguous across them, so most contiguous work becomes a single long row.
// `for_rows(L, begin, end, f)` visits the linear element range [begin, end) row by row, calling
// f(offsets, count): `count` elements starting at per-operand element offsets, stepping by each
// operand's innermost stride (L.inner(k)).
#pragma once

#include <array>
#include <cstdint>

#include "engine/tensor.h"
#include "kernels/cpu/thread_pool.h"

namespace arq::cpu {

inline constexpr int kMaxDims = 16;

template <int N>
struct Layout {
  int nd = 0;
  int64_t shape[kMaxDims];
  int64_t strides[N][kMaxDims];
  int64_t numel = 1;
  int64_t inner(int k) const { return strides[k][nd - 1]; }
  bool inner_contiguous() const {
    for (int k = 0; k < N; ++k)
      if (strides[k][nd - 1] != 1) return false;
    return true;
  }
};

// Build a coalesced layout; all operands must have `shape`.
template <int N>
Layout<N> make_layout(const Shape& shape, const std::array<const Tensor*, N>& ops) {
  ARQ_ASSERT(static_cast<int>(shape.size()) <= kMaxDims, "too many dims: ", shape_str(shape));
  Layout<N> L;
  L.numel = shape_numel(shape);
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    const int i = L.nd;
    if (i > 0) {
      bool merge = true;
      for (int k = 0; k < N; ++k) merge = merge && L.strides[k][i - 1] == ops[k]->strides()[d] * shape[d];
      if (merge) {
        L.shape[i - 1] *= shape[d];
        for (int k = 0; k < N; ++k) L.strides[k][i - 1] = ops[k]->strides()[d];
        continue;
      }
    }
    L.shape[i] = shape[d];
    for (int k = 0; k < N; ++k) L.strides[k][i] = ops[k]->strides()[d];
    ++L.nd;
  }
  if (L.nd == 0) {
    L.nd = 1;
    L.shape[0] = 1;
    for (int k = 0; k < N; ++k) L.strides[k][0] = 1;
  }
  return L;
}

template <int N, class F>
void for_rows(const Layout<N>& L, int64_t begin, int64_t end, F&& f) {
  if (begin >= end) return;
  int64_t idx[kMaxDims];
  int64_t rem = begin;
  for (int d = L.nd - 1; d >= 0; --d) {
    idx[d] = rem % L.shape[d];
    rem /= L.shape[d];
  }
  std::array<int64_t, N> off{};
  for (int k = 0; k < N; ++k)
    for (int d = 0; d < L.nd; ++d) off[k] += idx[d] * L.strides[k][d];
  const int last = L.nd - 1;
  int64_t pos = begin;
  while (pos < end) {
    const int64_t count = std::min(L.shape[last] - idx[last], end - pos);
    f(off, count);
    pos += count;
    if (pos >= end) break;
    // advance the multi-index by `count` along the last dim (which lands on a row boundary)
    for (int k = 0; k < N; ++k) off[k] += count * L.strides[k][last];
    idx[last] += count;
    for (int d = last; d > 0 && idx[d] == L.shape[d]; --d) {
      for (int k = 0; k < N; ++k) off[k] += L.strides[k][d - 1] - L.shape[d] * L.strides[k][d];
      idx[d] = 0;
      ++idx[d - 1];
    }
  }
}

// Elements per parallel chunk for cheap elementwise work.
inline constexpr int64_t kElementwiseGrain = 1 << 15;

template <int N, class F>
void parallel_rows(const Layout<N>& L, int64_t grain, F&& f) {
  parallel_for(L.numel, grain, [&](int64_t b, int64_t e) { for_rows(L, b, e, f); });
}

// The type kernels compute in: f32 for f32/f16/bf16, f64 for f64, i64 for integers.
template <class T> struct Acc { using type = int64_t; };
template <> struct Acc<float> { using type = float; };
template <> struct Acc<Half> { using type = float; };
template <> struct Acc<BFloat16> { using type = float; };
template <> struct Acc<double> { using type = double; };
template <class T> using acc_t = typename Acc<T>::type;

template <class T>
inline acc_t<T> load(const T& v) {
  if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>) return to_float(v);
  else return static_cast<acc_t<T>>(v);
}
template <class T, class C>
inline T store(C v) {
  if constexpr (std::is_same_v<T, C>) return v;
  else return convert<T>(v);
}

}  // namespace arq::cpu
