// Strided addressing of N kernel operands over one iteration shape, as plain C++ that compiles
// for the host and the device: the CUDA kernels (through cuda_device.cuh) and a CPU unit test
// (tests/cuda/test_cuda_descs.cpp, suite unit) use the same code, so the index math — coalescing,
// the 32-bit multiply-shift division, the 64-bit fallback — is checked in CI without a GPU.
//
//   const Descs<2> L = make_descs<2>(out.shape(), {&out, &x});   // host
//   int64_t off[2];
//   offsets_of(L, i, off);  // element offsets of linear index i in out and x (host or device)
#pragma once

#include <array>
#include <cstdint>

#include "engine/tensor.h"

#if defined(__CUDACC__)
#define ARQ_CUDA_HD __host__ __device__ __forceinline__
#else
#define ARQ_CUDA_HD inline
#endif

namespace arq::cuda {

inline constexpr int kMaxDims = 8;

// High 32 bits of a 32 × 32-bit product (__umulhi on the device).
ARQ_CUDA_HD uint32_t umulhi32(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __umulhi(a, b);
#else
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
#endif
}

// Division by d ≥ 1 as q = (umulhi(j, magic) + j) >> shift, exact for every 32-bit j
// (Granlund & Montgomery 1994, Fig. 4.1; shift = ceil(log2 d), magic = 2^32·(2^shift − d)/d + 1,
// which fits 32 bits for d ≤ 2^31).
struct DivMagic {
  uint32_t magic = 1, shift = 0;
};
inline DivMagic div_magic(uint64_t d) {
  DivMagic m;
  uint32_t l = 0;
  while ((uint64_t{1} << l) < d) ++l;
  m.shift = l;
  m.magic = static_cast<uint32_t>(((uint64_t{1} << 32) * ((uint64_t{1} << l) - d)) / d + 1);
  return m;
}
ARQ_CUDA_HD uint32_t fast_div(uint32_t j, uint32_t magic, uint32_t shift) {
  return static_cast<uint32_t>((static_cast<uint64_t>(umulhi32(j, magic)) + j) >> shift);
}

template <int N>
struct Descs {
  int nd;
  int64_t shape[kMaxDims];
  int64_t strides[N][kMaxDims];
  bool contiguous;  // every operand is dense row-major over `shape`: offset == linear index
  bool small;       // numel < 2^31: coordinates by 32-bit multiply-shift division (div_magic)
  uint32_t magic[kMaxDims];
  uint32_t shift[kMaxDims];
};

// Coalesced layout of N operands that all have `shape` (as kernels/cpu/strided.h make_layout):
// size-1 dims dropped, neighbours merged where every operand is contiguous across them.
template <int N>
Descs<N> make_descs(const Shape& shape, const std::array<const Tensor*, N>& ops) {
  Descs<N> L{};
  int nd = 0;
  int64_t sh[32];
  int64_t st[N][32];
  ARQ_CHECK(shape.size() <= 32, UnsupportedError, "cuda kernels support at most 32 dims, got ", shape_str(shape));
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (nd > 0) {
      bool merge = true;
      for (int k = 0; k < N; ++k) merge = merge && st[k][nd - 1] == ops[k]->strides()[d] * shape[d];
      if (merge) {
        sh[nd - 1] *= shape[d];
        for (int k = 0; k < N; ++k) st[k][nd - 1] = ops[k]->strides()[d];
        continue;
      }
    }
    sh[nd] = shape[d];
    for (int k = 0; k < N; ++k) st[k][nd] = ops[k]->strides()[d];
    ++nd;
  }
  if (nd == 0) {
    nd = 1;
    sh[0] = 1;
    for (int k = 0; k < N; ++k) st[k][0] = 1;
  }
  ARQ_CHECK(nd <= kMaxDims, UnsupportedError, "cuda kernels support at most ", kMaxDims,
            " non-mergeable dims, got shape ", shape_str(shape));
  L.nd = nd;
  L.contiguous = nd == 1;
  for (int d = 0; d < nd; ++d) {
    L.shape[d] = sh[d];
    for (int k = 0; k < N; ++k) L.strides[k][d] = st[k][d];
  }
  for (int k = 0; k < N; ++k) L.contiguous = L.contiguous && st[k][0] == 1;
  L.small = shape_numel(shape) < (int64_t{1} << 31);
  for (int d = 0; d < nd && L.small; ++d) {
    const DivMagic m = div_magic(static_cast<uint64_t>(sh[d]));
    L.magic[d] = m.magic;
    L.shift[d] = m.shift;
  }
  return L;
}

// Element offsets (in elements) of linear index i for every operand.
template <int N>
ARQ_CUDA_HD void offsets_of(const Descs<N>& L, int64_t i, int64_t (&off)[N]) {
  if (L.contiguous) {
    for (int k = 0; k < N; ++k) off[k] = i;
    return;
  }
  for (int k = 0; k < N; ++k) off[k] = 0;
  if (L.small) {
    uint32_t j = static_cast<uint32_t>(i);
    for (int d = L.nd - 1; d >= 0; --d) {
      const uint32_t q = fast_div(j, L.magic[d], L.shift[d]);
      const uint32_t c = j - q * static_cast<uint32_t>(L.shape[d]);
      j = q;
      for (int k = 0; k < N; ++k) off[k] += static_cast<int64_t>(c) * L.strides[k][d];
    }
    return;
  }
  for (int d = L.nd - 1; d >= 0; --d) {
    const int64_t s = L.shape[d];
    const int64_t c = i % s;
    i /= s;
    for (int k = 0; k < N; ++k) off[k] += c * L.strides[k][d];
  }
}

}  // namespace arq::cuda
