// Caching device allocator: freed blocks go to per-size free lists and are reused, so the
// tuning loop never calls cudaMalloc once its working set has been seen. On an allocation
// failure the cache is released and the call retried once.
#include <map>
#include <mutex>
#include <vector>

#include "kernels/cuda/cuda_api.h"
#include "kernels/cuda/cuda_common.cuh"

namespace arq::cuda {
namespace {

class CachingAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes) override {
    const size_t size = round_size(nbytes);
    std::lock_guard<std::mutex> g(m_);
    int dev = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    auto& pool = free_[dev];
    auto it = pool.find(size);
    void* p = nullptr;
    if (it != pool.end() && !it->second.empty()) {
      p = it->second.back();
      it->second.pop_back();
      cached_ -= size;
      ++hits_;
    } else {
      cudaError_t e = cudaMalloc(&p, size);
      if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        release_cache_locked();
        e = cudaMalloc(&p, size);
      }
      if (e != cudaSuccess) {
        (void)cudaGetLastError();
        // Not every failure is a full device: a fault of an earlier kernel surfaces here too
        // (cudaErrorIllegalAddress, ...), so the message names the error.
        throw DeviceError(cat(e == cudaErrorMemoryAllocation ? "out of GPU memory" : "cudaMalloc failed",
                              " allocating ", nbytes, " bytes on cuda:", dev, ": ", cudaGetErrorName(e), " (",
                              in_use_, " bytes in use, peak ", peak_, ")"));
      }
      device_of_[p] = dev;
      ++mallocs_;
    }
    in_use_ += size;
    if (in_use_ > peak_) peak_ = in_use_;
    return p;
  }

  void deallocate(void* p, size_t nbytes) override {
    const size_t size = round_size(nbytes);
    std::lock_guard<std::mutex> g(m_);
    free_[device_of_[p]][size].push_back(p);
    in_use_ -= size;
    cached_ += size;
  }

  // Locked: the counters change under m_ on every allocation (storages die on any thread).
  size_t bytes_in_use() const override {
    std::lock_guard<std::mutex> g(m_);
    return in_use_;
  }
  size_t peak_bytes() const override {
    std::lock_guard<std::mutex> g(m_);
    return peak_;
  }
  void reset_peak() override {
    std::lock_guard<std::mutex> g(m_);
    peak_ = in_use_;
  }

  AllocatorStats stats() {
    std::lock_guard<std::mutex> g(m_);
    return AllocatorStats{in_use_, peak_, cached_, mallocs_, hits_};
  }
  void empty_cache() {
    std::lock_guard<std::mutex> g(m_);
    release_cache_locked();
  }

 private:
  // Small sizes round to 512 B; large ones to 2 MiB, so similar activations share blocks.
  static size_t round_size(size_t n) {
    if (n == 0) return 512;  // a real (tiny) block, so an empty tensor still has a unique pointer
    if (n < (1u << 20)) return (n + 511) / 512 * 512;
    return (n + (2u << 20) - 1) / (2u << 20) * (2u << 20);
  }
  // cudaFree on each block's own device; the caller's current device is restored afterwards
  // (allocate() retries its cudaMalloc on the device it started with).
  void release_cache_locked() {
    int current = 0;
    const bool have_current = cudaGetDevice(&current) == cudaSuccess;
    for (auto& [dev, pool] : free_) {
      if (pool.empty()) continue;
      (void)cudaSetDevice(dev);
      for (auto& [size, ptrs] : pool)
        for (void* p : ptrs) {
          (void)cudaFree(p);  // implicitly synchronizes: no queued kernel still uses p
          device_of_.erase(p);
        }
      pool.clear();
    }
    if (have_current) (void)cudaSetDevice(current);
    (void)cudaGetLastError();
    cached_ = 0;
  }

  mutable std::mutex m_;
  std::map<int, std::map<size_t, std::vector<void*>>> free_;
  std::map<void*, int> device_of_;
  size_t in_use_ = 0, peak_ = 0, cached_ = 0;
  uint64_t mallocs_ = 0, hits_ = 0;
};

CachingAllocator& the_allocator() {
  static CachingAllocator* a = [] {
    auto* p = new CachingAllocator();  // never destroyed: storages may outlive static teardown
    set_allocator(DeviceType::cuda, p);
    return p;
  }();
  return *a;
}

// Pinned host blocks for the activation caches of low_gpu_mem_usage: cudaHostAlloc'd, kept on
// per-size free lists when freed (each block's caches have one shape, so sizes repeat).
class PinnedHostCache {
 public:
  void* allocate(size_t nbytes) {
    const size_t size = round_size(nbytes);
    std::lock_guard<std::mutex> g(m_);
    auto it = free_.find(size);
    if (it != free_.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      return p;
    }
    void* p = nullptr;
    // Portable: the block may be used with any device and stream. Pinning is an optimization:
    // when the system refuses (locked-memory limits), the caller falls back to pageable memory.
    if (cudaHostAlloc(&p, size, cudaHostAllocPortable) != cudaSuccess) {
      (void)cudaGetLastError();
      return nullptr;
    }
    size_of_[p] = size;
    held_ += size;
    return p;
  }
  void deallocate(void* p) {
    std::lock_guard<std::mutex> g(m_);
    auto it = size_of_.find(p);
    ARQ_ASSERT(it != size_of_.end(), "cuda_pinned_free of a pointer not from cuda_pinned_alloc");
    free_[it->second].push_back(p);
  }
  void release() {
    std::lock_guard<std::mutex> g(m_);
    for (auto& [size, ptrs] : free_)
      for (void* p : ptrs) {
        CUDA_CHECK(cudaFreeHost(p));
        size_of_.erase(p);
        held_ -= size;
      }
    free_.clear();
  }
  size_t held() {
    std::lock_guard<std::mutex> g(m_);
    return held_;
  }

 private:
  static size_t round_size(size_t n) { return n == 0 ? 4096 : (n + 4095) / 4096 * 4096; }
  std::mutex m_;
  std::map<size_t, std::vector<void*>> free_;
  std::map<void*, size_t> size_of_;
  size_t held_ = 0;
};

PinnedHostCache& the_pinned_cache() {
  static PinnedHostCache* c = new PinnedHostCache();  // never destroyed, as the device allocator
  return *c;
}

}  // namespace

void init_allocator() { (void)the_allocator(); }
AllocatorStats allocator_stats() { return the_allocator().stats(); }
void empty_cache() { the_allocator().empty_cache(); }
size_t pinned_host_bytes() { return the_pinned_cache().held(); }

}  // namespace arq::cuda

namespace arq {

void* cuda_pinned_alloc(size_t nbytes) {
  if (cuda_device_count() == 0) return nullptr;
  return cuda::the_pinned_cache().allocate(nbytes);
}
void cuda_pinned_free(void* p) {
  if (p != nullptr) cuda::the_pinned_cache().deallocate(p);
}
void cuda_pinned_release() { cuda::the_pinned_cache().release(); }

}  // namespace arq
