// Python's `random` module generator (MT19937 seeded through init_by_array), so that SignRound's
// minibatch order is the one AutoRound draws with `random.seed(42)` + `random.shuffle`
// (spec/autoround.md §1.6 step 4).
//
//   PyRandom rng(42);
//   double u = rng.random();                 // 0.6394267984578837, as Python
//   std::vector<int64_t> idx = {0, 1, ..., 9};
//   rng.shuffle(idx);                        // [7, 3, 2, 8, 5, 6, 9, 4, 0, 1], as Python
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace arq::quant {

class PyRandom {
 public:
  explicit PyRandom(uint64_t seed = 42) { seed_(seed); }
  void seed_(uint64_t seed);          // random.seed(n) for a non-negative integer n
  uint32_t next_u32();                // genrand_uint32
  uint64_t getrandbits(int k);        // 1 <= k <= 64
  uint64_t randbelow(uint64_t n);     // uniform in [0, n), Python's rejection method; n >= 1
  double random();                    // [0, 1) with 53 random bits
  // random.shuffle (Fisher–Yates from the end, j = randbelow(i + 1)).
  void shuffle(std::vector<int64_t>& x);

 private:
  static constexpr int kN = 624;
  std::array<uint32_t, kN> mt_{};
  int mti_ = kN + 1;
};

// SignRound's index sampler: a shuffled permutation of 0..n−1 handed out in consecutive slices
// of `batch`; when fewer than `batch` indices remain it reshuffles and starts over (the
// incomplete tail is dropped).
class IndexSampler {
 public:
  IndexSampler(int64_t n, int64_t batch, PyRandom& rng);
  std::vector<int64_t> next();

 private:
  std::vector<int64_t> perm_;
  int64_t batch_;
  size_t pos_ = 0;
  PyRandom& rng_;
};

}  // namespace arq::quant
