#include "quant/py_random.h"

#include <numeric>

#include "engine/error.h"

namespace arq::quant {

void PyRandom::seed_(uint64_t seed) {
  // init_genrand(19650218), then mix in the key: the 32-bit little-endian words of |seed|
  // (one word 0 for seed 0), as CPython's random_seed → init_by_array.
  std::vector<uint32_t> key;
  do {
    key.push_back(static_cast<uint32_t>(seed & 0xffffffffu));
    seed >>= 32;
  } while (seed != 0);
  mt_[0] = 19650218u;
  for (int i = 1; i < kN; ++i) mt_[i] = 1812433253u * (mt_[i - 1] ^ (mt_[i - 1] >> 30)) + static_cast<uint32_t>(i);
  int i = 1;
  size_t j = 0;
  for (int k = std::max<int>(kN, static_cast<int>(key.size())); k > 0; --k) {
    mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1664525u)) + key[j] + static_cast<uint32_t>(j);
    ++i;
    ++j;
    if (i >= kN) {
      mt_[0] = mt_[kN - 1];
      i = 1;
    }
    if (j >= key.size()) j = 0;
  }
  for (int k = kN - 1; k > 0; --k) {
    mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1566083941u)) - static_cast<uint32_t>(i);
    ++i;
    if (i >= kN) {
      mt_[0] = mt_[kN - 1];
      i = 1;
    }
  }
  mt_[0] = 0x80000000u;
  mti_ = kN;
}

uint32_t PyRandom::next_u32() {
  constexpr uint32_t kUpper = 0x80000000u, kLower = 0x7fffffffu, kMatrix = 0x9908b0dfu;
  if (mti_ >= kN) {
    for (int k = 0; k < kN; ++k) {
      const uint32_t y = (mt_[k] & kUpper) | (mt_[(k + 1) % kN] & kLower);
      mt_[k] = mt_[(k + 397) % kN] ^ (y >> 1) ^ ((y & 1u) ? kMatrix : 0u);
    }
    mti_ = 0;
  }
  uint32_t y = mt_[mti_++];
  y ^= (y >> 11);
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= (y >> 18);
  return y;
}

uint64_t PyRandom::getrandbits(int k) {
  ARQ_ASSERT(k >= 1 && k <= 64, "getrandbits(", k, ")");
  if (k <= 32) return next_u32() >> (32 - k);
  // CPython fills 32-bit words from the least significant end; the last word keeps its top bits.
  const uint64_t lo = next_u32();
  const uint64_t hi = next_u32() >> (64 - k);
  return lo | (hi << 32);
}

uint64_t PyRandom::randbelow(uint64_t n) {
  ARQ_ASSERT(n >= 1, "randbelow(0)");
  int k = 0;
  while (k < 64 && (n >> k) != 0) ++k;  // n.bit_length()
  uint64_t r = getrandbits(k);
  while (r >= n) r = getrandbits(k);
  return r;
}

double PyRandom::random() {
  const uint32_t a = next_u32() >> 5, b = next_u32() >> 6;
  return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0);
}

void PyRandom::shuffle(std::vector<int64_t>& x) {
  for (size_t i = x.size(); i-- > 1;) {
    const size_t j = static_cast<size_t>(randbelow(i + 1));
    std::swap(x[i], x[j]);
  }
}

IndexSampler::IndexSampler(int64_t n, int64_t batch, PyRandom& rng) : perm_(static_cast<size_t>(n)), batch_(batch), rng_(rng) {
  ARQ_CHECK(n >= 1 && batch >= 1 && batch <= n, UsageError, "index sampler: batch ", batch, " must be in [1, ", n, "]");
  std::iota(perm_.begin(), perm_.end(), int64_t{0});
  rng_.shuffle(perm_);
}

std::vector<int64_t> IndexSampler::next() {
  if (pos_ + static_cast<size_t>(batch_) > perm_.size()) {
    rng_.shuffle(perm_);
    pos_ = 0;
  }
  std::vector<int64_t> out(perm_.begin() + static_cast<std::ptrdiff_t>(pos_), perm_.begin() + static_cast<std::ptrdiff_t>(pos_ + batch_));
  pos_ += static_cast<size_t>(batch_);
  return out;
}

}  // namespace arq::quant
