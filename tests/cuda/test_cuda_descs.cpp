// The CUDA kernels' index math on the CPU (suite unit, runs in CI without a GPU): the
// multiply-shift division and offsets_of (kernels/cuda/cuda_descs.h, the very code the kernels
// run) against plain 64-bit division and a per-dim decomposition over the operands' own strides,
// on transposed, sliced, broadcast (stride 0) and permuted views, and on shapes whose element
// count is near and beyond 2^31 (the 32-bit fast path and the 64-bit fallback).
#include <doctest/doctest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "engine/tensor.h"
#include "kernels/cuda/cuda_descs.h"

using namespace arq;
using arq::cuda::Descs;

namespace {

// Element offset of linear (row-major) index i of t's shape, through t's strides.
int64_t reference_offset(const Tensor& t, int64_t i) {
  int64_t off = 0;
  for (int64_t d = t.dim() - 1; d >= 0; --d) {
    const int64_t s = t.size(d);
    off += (i % s) * t.stride(d);
    i /= s;
  }
  return off;
}

// Linear indices to check: all of them for small tensors, else both ends and random ones.
std::vector<int64_t> sample_indices(int64_t n, uint64_t seed) {
  std::vector<int64_t> v;
  if (n <= 20000) {
    for (int64_t i = 0; i < n; ++i) v.push_back(i);
    return v;
  }
  for (int64_t i = 0; i < 2000; ++i) v.push_back(i);
  for (int64_t i = n - 2000; i < n; ++i) v.push_back(i);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> u(0, n - 1);
  for (int i = 0; i < 20000; ++i) v.push_back(u(rng));
  return v;
}

// Checks offsets_of for three operands (an output and two inputs of `shape`), on the layout as
// built and, when that took the 32-bit path, on the same layout forced to the 64-bit path.
void check_views(const Tensor& a, const Tensor& b, const Tensor& c, bool expect_small) {
  CAPTURE(shape_str(a.shape()));
  CAPTURE(shape_str(a.strides()));
  CAPTURE(shape_str(b.strides()));
  CAPTURE(shape_str(c.strides()));
  const Descs<3> L = cuda::make_descs<3>(a.shape(), {&a, &b, &c});
  CHECK(L.small == expect_small);
  Descs<3> wide = L;
  wide.small = false;
  const int64_t n = a.numel();
  int bad = 0;
  for (int64_t i : sample_indices(n, static_cast<uint64_t>(n))) {
    const int64_t want[3] = {reference_offset(a, i), reference_offset(b, i), reference_offset(c, i)};
    int64_t got[3], got_wide[3];
    cuda::offsets_of(L, i, got);
    cuda::offsets_of(wide, i, got_wide);
    for (int k = 0; k < 3; ++k) {
      if (got[k] != want[k] || got_wide[k] != want[k]) {
        if (bad++ < 5)
          FAIL_CHECK("index ", i, " operand ", k, ": offsets_of ", got[k], " (64-bit path ", got_wide[k], "), want ",
                     want[k]);
      }
    }
  }
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE("cuda index math: multiply-shift division equals 64-bit division") {
  std::vector<uint64_t> divisors;
  for (uint64_t d = 1; d <= 3000; ++d) divisors.push_back(d);
  for (int l = 12; l <= 31; ++l) {
    const uint64_t p = uint64_t{1} << l;
    for (uint64_t d : {p - 1, p, p + 1, p + p / 3}) divisors.push_back(d);
  }
  for (uint64_t d : {4096ull, 14336ull, 128256ull, 151936ull, 46339ull, 46341ull, 2147483647ull}) divisors.push_back(d);
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<uint64_t> big(2, uint64_t{1} << 31);
  for (int i = 0; i < 2000; ++i) divisors.push_back(big(rng));
  int bad = 0;
  for (uint64_t d : divisors) {
    const cuda::DivMagic m = cuda::div_magic(d);
    // numerators: the ends of the 31-bit range the kernels use, multiples of d and their
    // neighbours, and random ones
    std::vector<uint64_t> js = {0, 1, d - 1, d, d + 1, (uint64_t{1} << 31) - 1, (uint64_t{1} << 31) - d,
                                0xffffffffull};
    for (uint64_t q : {1ull, 2ull, 3ull, 1000ull, 65535ull}) {
      if (q * d + 1 < (uint64_t{1} << 32)) js.insert(js.end(), {q * d - 1, q * d, q * d + 1});
    }
    std::uniform_int_distribution<uint64_t> uj(0, 0xffffffffull);
    for (int r = 0; r < 64; ++r) js.push_back(uj(rng));
    for (uint64_t j : js) {
      if (j > 0xffffffffull) continue;
      const uint32_t got = cuda::fast_div(static_cast<uint32_t>(j), m.magic, m.shift);
      if (got != j / d && bad++ < 5) FAIL_CHECK(j, " / ", d, ": fast_div ", got, ", want ", j / d);
    }
  }
  CHECK(bad == 0);
}

TEST_CASE("cuda index math: offsets_of matches the strides of every view") {
  const Shape s3 = {13, 7, 5};
  Tensor out = Tensor::empty(s3, DType::f32);
  // transposed (the last two dims of a [13, 5, 7] block swapped)
  Tensor tr = Tensor::empty({13, 5, 7}, DType::f32).transpose(1, 2);
  // sliced with step 2 from index 1 in the last dim
  Tensor sl = Tensor::empty({13, 7, 11}, DType::f32).slice(2, 1, 11, 2);
  // broadcast: a [7, 1] column expanded (strides 0 in dims 0 and 2)
  Tensor bc = Tensor::empty({7, 1}, DType::f32).expand(s3);
  // permuted 3-D block and a narrowed one
  Tensor pm = Tensor::empty({5, 13, 7}, DType::f32).permute({1, 2, 0});
  Tensor nr = Tensor::empty({15, 9, 5}, DType::f32).narrow(0, 2, 13).narrow(1, 1, 7);
  check_views(out, tr, sl, true);
  check_views(out, bc, pm, true);
  check_views(tr, nr, bc, true);
  check_views(sl, pm, nr, true);
  // all contiguous (the contiguous shortcut) and a 0-d tensor
  check_views(out, out, out, true);
  Tensor s0 = Tensor::empty({}, DType::f32);
  check_views(s0, s0, s0, true);
  // size-1 dims between others (dropped by the coalescing) and a 4-D attention-like permutation
  Tensor a4 = Tensor::empty({2, 1, 3, 8}, DType::f32);
  Tensor p4 = Tensor::empty({2, 3, 1, 8}, DType::f32).permute({0, 2, 1, 3});
  Tensor b4 = Tensor::empty({1, 1, 1, 8}, DType::f32).expand({2, 1, 3, 8});
  check_views(a4, p4, b4, true);
}

TEST_CASE("cuda index math: element counts near and beyond 2^31") {
  // Broadcast views need no memory, so the shapes can be as large as real activations.
  // numel = 46341 · 46339 = 2147395599 < 2^31: the 32-bit path with divisors near 2^15.5
  {
    const Shape s = {46341, 46339};
    Tensor a = Tensor::empty({46341, 1}, DType::f32).expand(s);
    Tensor b = Tensor::empty({1, 46339}, DType::f32).expand(s);
    Tensor c = Tensor::empty({46339, 1}, DType::f32).expand({46339, 46341}).transpose(0, 1);
    check_views(a, b, c, true);
  }
  // numel = 3 · (2^30 + 7) > 2^31: the 64-bit path
  {
    const Shape s = {3, (int64_t{1} << 30) + 7};
    Tensor a = Tensor::empty({3, 1}, DType::f32).expand(s);
    Tensor b = Tensor::empty({1, 1}, DType::f32).expand(s);
    Tensor c = Tensor::empty({3, 1}, DType::f32).expand(s);
    check_views(a, b, c, false);
  }
  // an 8B-model activation with a broadcast row: [16384, 14336] (2^27.8 elements) and a
  // [32, 2048, 2048] score tensor with a [2048, 2048] mask (2^27 elements)
  {
    const Shape s = {16384, 14336};
    Tensor a = Tensor::empty({16384, 1}, DType::f32).expand(s);
    Tensor b = Tensor::empty({1, 14336}, DType::f32).expand(s);
    check_views(a, b, a, true);
    const Shape sc = {32, 2048, 2048};
    Tensor m = Tensor::empty({1, 2048, 1}, DType::f32).expand(sc);
    Tensor h = Tensor::empty({32, 1, 1}, DType::f32).expand(sc);
    check_views(m, h, m, true);
  }
}
