// Philox4x32-10 (engine/philox.h), the generator behind rand_uniform / rand_normal on the CPU and
// in the CUDA kernel (cuda_random.cu calls the same __host__ __device__ function), against the
// known-answer vectors of Random123 (Salmon et al., tests/kat_vectors, the three "philox4x32 10"
// lines) through an independent reference of the round function with a full 4-word counter and
// 2-word key; then the engine's (counter, seed) → words mapping against that reference.
#include <doctest/doctest.h>

#include <array>
#include <cstdint>

#include "engine/philox.h"

namespace {

using Ctr = std::array<uint32_t, 4>;

// Random123's philox4x32 with R rounds: round = (hi(M0·c0), lo(M0·c0), hi(M1·c2), lo(M1·c2))
// combined as {hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0}; the key is bumped between rounds.
Ctr reference_philox(Ctr c, std::array<uint32_t, 2> k, int rounds = 10) {
  for (int r = 0; r < rounds; ++r) {
    if (r > 0) {
      k[0] += 0x9E3779B9u;
      k[1] += 0xBB67AE85u;
    }
    const uint64_t p0 = uint64_t{0xD2511F53u} * c[0], p1 = uint64_t{0xCD9E8D57u} * c[2];
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c = {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
  }
  return c;
}

}  // namespace

TEST_CASE("philox4x32-10 matches Random123's known answers") {
  // counter, key, result (Random123 tests/kat_vectors)
  CHECK(reference_philox({0, 0, 0, 0}, {0, 0}) == Ctr{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8});
  CHECK(reference_philox({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}) ==
        Ctr{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd});
  CHECK(reference_philox({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}) ==
        Ctr{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1});
  // the engine's generator: counter = element index (words 0, 1), key = seed (words 0, 1)
  const arq::Philox4 z = arq::philox4x32_10(0, 0);
  CHECK(Ctr{z.v[0], z.v[1], z.v[2], z.v[3]} == Ctr{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8});
  const uint64_t counters[] = {1, 2, 12345, 0xffffffffull, 0x100000000ull, 3221225491ull, ~0ull};
  const uint64_t seeds[] = {0, 1, 42, 0x9E3779B97F4A7C15ull, ~0ull};
  for (uint64_t c : counters)
    for (uint64_t s : seeds) {
      const arq::Philox4 r = arq::philox4x32_10(c, s);
      const Ctr want = reference_philox({static_cast<uint32_t>(c), static_cast<uint32_t>(c >> 32), 0, 0},
                                        {static_cast<uint32_t>(s), static_cast<uint32_t>(s >> 32)});
      CHECK(Ctr{r.v[0], r.v[1], r.v[2], r.v[3]} == want);
    }
}

TEST_CASE("philox uniforms lie in [0, 1) with the promised resolution") {
  CHECK(arq::philox_uniform01(0) == 0.0f);
  CHECK(arq::philox_uniform01(0xffffffffu) == 1.0f - 0x1p-24f);  // 24 bits: the largest below 1
  CHECK(arq::philox_uniform01(0x100u) == 0x1p-24f);              // the low 8 bits are dropped
  CHECK(arq::philox_uniform01_f64(0, 0) == 0.0);
  CHECK(arq::philox_uniform01_f64(0xffffffffu, 0xffffffffu) == 1.0 - 0x1p-53);  // 53 bits
  CHECK(arq::philox_uniform01_f64(0, 0x800u) == 0x1p-53);
}
