// The chunk schedule of host <-> device copies staged through pinned memory, as plain C++ so a
// CPU unit test (tests/cuda/test_cuda_staging.cpp, suite unit) checks the very code the CUDA
// copy (kernels/cuda/cuda_elementwise.cu) runs.
//
// Why: a cudaMemcpy from pageable memory (a memory-mapped checkpoint, a std::vector) is copied by
// the driver through its own small staging buffers, synchronously. The staged path instead
// copies chunk i+1 into one of two pinned buffers on the host while the DMA of chunk i runs from
// the other (and the reverse for device -> host). The staged copy is as synchronous as the plain
// one: on return the bytes are at the destination, the host source may be freed, and the device
// stream's earlier work has finished. Pinned host memory, copies below kStagingMinBytes, device <->
// device copies and ARQ_CUDA_STAGED_COPY=0 take the plain cudaMemcpy.
//
//   for (const StagingChunk& c : staging_schedule(nbytes, kStagingChunkBytes))
//     ... bytes [c.offset, c.offset + c.size) go through pinned buffer c.buffer ...
#pragma once

#include <cstddef>
#include <vector>

#include "engine/error.h"

namespace arq::cuda {

// Each of the two pinned staging buffers (held for the process's lifetime once used: 64 MiB).
inline constexpr size_t kStagingChunkBytes = size_t{32} << 20;
// Copies below this size take the plain cudaMemcpy: the driver's own staging is as good there,
// and the pinned buffers are not worth allocating.
inline constexpr size_t kStagingMinBytes = size_t{1} << 20;

struct StagingChunk {
  size_t offset = 0;  // byte offset into the source and the destination
  size_t size = 0;    // bytes, in [1, chunk_bytes]
  int buffer = 0;     // pinned buffer 0 or 1: chunk i uses buffer i % 2
};

// The chunks of an nbytes copy, in order: [0, c), [c, 2c), ..., the last one shorter when c does
// not divide nbytes; empty for nbytes == 0.
inline std::vector<StagingChunk> staging_schedule(size_t nbytes, size_t chunk_bytes) {
  ARQ_ASSERT(chunk_bytes > 0, "staging_schedule: chunk size 0");
  std::vector<StagingChunk> chunks;
  chunks.reserve(nbytes / chunk_bytes + 1);
  for (size_t off = 0; off < nbytes; off += chunk_bytes) {
    const size_t left = nbytes - off;
    chunks.push_back({off, left < chunk_bytes ? left : chunk_bytes, static_cast<int>(chunks.size() % 2)});
  }
  return chunks;
}

// Whether a host <-> device copy of nbytes takes the staged path: large enough, and the host side
// is ordinary pageable memory (pinned memory is DMA'd directly, faster than any staging).
inline bool staging_applies(size_t nbytes, bool host_is_pageable, bool enabled) {
  return enabled && host_is_pageable && nbytes >= kStagingMinBytes;
}

}  // namespace arq::cuda
