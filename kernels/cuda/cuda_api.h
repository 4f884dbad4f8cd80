// Host-side extras of the CUDA backend beyond engine/backend.h, for tests, benchmarks and the
// CLI. Plain C++ (no CUDA headers); with CUDA off the stub answers zeros / no-ops.
//
//   auto before = arq::cuda::allocator_stats();
//   { Tensor t = Tensor::empty({1024}, DType::f32, Device::cuda()); }
//   // a second allocation of the same size is served from the cache:
//   // allocator_stats().device_mallocs == before.device_mallocs + 1 at most.
#pragma once

#include <cstddef>
#include <cstdint>

namespace arq::cuda {

struct AllocatorStats {
  size_t bytes_in_use = 0;     // held by live storages (rounded block sizes)
  size_t peak_bytes = 0;       // high-water mark of bytes_in_use since the last reset_peak()
  size_t bytes_cached = 0;     // freed blocks kept for reuse
  uint64_t device_mallocs = 0; // cudaMalloc calls made so far (grows only on a cache miss)
  uint64_t cache_hits = 0;     // allocations served from the cache
};

AllocatorStats allocator_stats();
// Hand every cached (free) block back to the driver.
void empty_cache();
// The cudaStream_t (as void*) that every kernel of cuda:`device` runs on, so benchmarks can
// record cudaEvents in the same stream; nullptr when built without CUDA.
void* stream_handle(int device);
// Page-locked host bytes held by the pinned cache behind arq::cuda_pinned_alloc (in use and
// cached); 0 when built without CUDA.
size_t pinned_host_bytes();
// The part of pinned_host_bytes() that the staged host<->device copies keep for the life of the
// process (two chunk buffers, taken at the first large pageable copy); 0 before that.
size_t staging_host_bytes();

}  // namespace arq::cuda
