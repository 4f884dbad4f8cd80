// The chunk schedule of the pinned-staging host <-> device copy (kernels/cuda/cuda_staging.h, the
// code the CUDA copy runs) on the CPU (suite unit): every byte covered exactly once, in order,
// chunks of the full size but the last, the two buffers alternating; and when staging applies.
#include <doctest/doctest.h>

#include <cstddef>
#include <vector>

#include "kernels/cuda/cuda_staging.h"

using namespace arq;
using arq::cuda::StagingChunk;
using arq::cuda::staging_schedule;

namespace {

// Checks a schedule against an independent per-byte walk: a counter per byte (not per chunk),
// so a gap or an overlap anywhere shows up.
void check_schedule(size_t nbytes, size_t chunk) {
  CAPTURE(nbytes);
  CAPTURE(chunk);
  const std::vector<StagingChunk> s = staging_schedule(nbytes, chunk);
  CHECK(s.size() == (nbytes + chunk - 1) / chunk);  // ceil: the fewest chunks of ≤ chunk bytes
  std::vector<int> seen(nbytes, 0);
  size_t next = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    CAPTURE(i);
    CHECK(s[i].offset == next);  // in order, no gap
    CHECK(s[i].size >= 1);
    CHECK(s[i].size <= chunk);
    if (i + 1 < s.size()) CHECK(s[i].size == chunk);  // only the last one may be short
    CHECK(s[i].buffer == static_cast<int>(i % 2));
    if (i > 0) CHECK(s[i].buffer != s[i - 1].buffer);  // a buffer is never used twice in a row
    REQUIRE(s[i].offset + s[i].size <= nbytes);
    for (size_t b = s[i].offset; b < s[i].offset + s[i].size; ++b) ++seen[b];
    next = s[i].offset + s[i].size;
  }
  CHECK(next == nbytes);
  size_t bad = 0;
  for (int c : seen) bad += c != 1;
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE("staging schedule covers every byte once, in order, alternating buffers") {
  for (size_t chunk : {size_t{1}, size_t{7}, size_t{64}, size_t{4096}}) {
    // (for chunk 1, chunk − 1 is the empty copy again)
    for (size_t n : {size_t{0}, size_t{1}, chunk - 1, chunk, chunk + 1, 2 * chunk, 5 * chunk + 3}) check_schedule(n, chunk);
  }
  // sizes 0 and 1 give no chunk and one 1-byte chunk
  CHECK(staging_schedule(0, 64).empty());
  const std::vector<StagingChunk> one = staging_schedule(1, 64);
  REQUIRE(one.size() == 1);
  CHECK(one[0].offset == 0);
  CHECK(one[0].size == 1);
  CHECK(one[0].buffer == 0);
}

TEST_CASE("staging schedule at the real chunk size (32 MiB)") {
  const size_t c = cuda::kStagingChunkBytes;
  CHECK(c == size_t{32} << 20);
  for (size_t n : {c - 1, c, c + 1, 5 * c + 3}) {
    CAPTURE(n);
    const std::vector<StagingChunk> s = staging_schedule(n, c);
    REQUIRE(s.size() == (n + c - 1) / c);
    size_t next = 0;
    for (size_t i = 0; i < s.size(); ++i) {
      CHECK(s[i].offset == next);
      CHECK(s[i].buffer == static_cast<int>(i % 2));
      next += s[i].size;
    }
    CHECK(next == n);
    CHECK(s.back().size == n - (s.size() - 1) * c);
  }
  // 5·chunk + 3: five full chunks then a 3-byte tail, in buffer 1 (the sixth chunk)
  const std::vector<StagingChunk> s = staging_schedule(5 * c + 3, c);
  REQUIRE(s.size() == 6);
  CHECK(s[5].offset == 5 * c);
  CHECK(s[5].size == 3);
  CHECK(s[5].buffer == 1);
}

TEST_CASE("staging applies to large pageable copies only") {
  const size_t m = cuda::kStagingMinBytes;
  CHECK(m == size_t{1} << 20);
  CHECK(cuda::staging_applies(m, true, true));
  CHECK(cuda::staging_applies(size_t{256} << 20, true, true));
  CHECK_FALSE(cuda::staging_applies(m - 1, true, true));      // small: plain cudaMemcpy
  CHECK_FALSE(cuda::staging_applies(0, true, true));
  CHECK_FALSE(cuda::staging_applies(size_t{256} << 20, false, true));  // already pinned: direct DMA
  CHECK_FALSE(cuda::staging_applies(size_t{256} << 20, true, false));  // switched off
}
