// PyRandom against values printed by CPython 3 (`random.seed(n)` then the call shown).
#include <doctest/doctest.h>

#include <numeric>

#include "quant/py_random.h"

using arq::quant::IndexSampler;
using arq::quant::PyRandom;

TEST_CASE("PyRandom matches CPython's random module") {
  PyRandom r(42);
  // random.seed(42); [random.getrandbits(32) for _ in range(3)]
  CHECK(r.getrandbits(32) == 2746317213u);
  CHECK(r.getrandbits(32) == 478163327u);
  CHECK(r.getrandbits(32) == 107420369u);
  r.seed_(42);
  CHECK(r.random() == 0.6394267984578837);  // exact: both sides build it from the same 53 bits
  r.seed_((uint64_t{1} << 40) + 5);          // a two-word key
  CHECK(r.random() == 0.5043802970418443);
  r.seed_(0);
  CHECK(r.getrandbits(64) == 7106521602475165645ull);
}

TEST_CASE("PyRandom shuffle matches random.shuffle") {
  PyRandom r(42);
  std::vector<int64_t> x(10);
  std::iota(x.begin(), x.end(), 0);
  r.shuffle(x);
  CHECK(x == std::vector<int64_t>{7, 3, 2, 8, 5, 6, 9, 4, 0, 1});
  r.seed_(42);
  std::vector<int64_t> y(128);
  std::iota(y.begin(), y.end(), 0);
  r.shuffle(y);
  CHECK(std::vector<int64_t>(y.begin(), y.begin() + 16) ==
        std::vector<int64_t>{9, 92, 102, 76, 49, 16, 62, 103, 104, 82, 47, 21, 30, 118, 32, 50});
}

TEST_CASE("IndexSampler hands out slices and reshuffles, dropping the tail") {
  PyRandom r(42);
  IndexSampler s(10, 4, r);
  // the first permutation is random.shuffle(range(10)) with seed 42
  CHECK(s.next() == std::vector<int64_t>{7, 3, 2, 8});
  CHECK(s.next() == std::vector<int64_t>{5, 6, 9, 4});
  std::vector<int64_t> third = s.next();  // 2 left < 4: reshuffle
  CHECK(third.size() == 4);
  PyRandom r2(42);
  std::vector<int64_t> p(10);
  std::iota(p.begin(), p.end(), 0);
  r2.shuffle(p);
  r2.shuffle(p);  // the sampler reshuffles its current permutation in place
  CHECK(third == std::vector<int64_t>(p.begin(), p.begin() + 4));
}
