// A fixed pool of worker threads for CPU kernels.
//
// parallel_for(n, grain, fn) splits [0, n) into contiguous chunks of at least `grain` items and
// calls fn(begin, end) on each, the caller's thread taking a share. Kernels must make each
// output element's value independent of the split (no cross-chunk accumulation), so results
// are identical for every thread count.
#pragma once

#include <cstdint>
#include <functional>

namespace arq::cpu {

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace arq::cpu
