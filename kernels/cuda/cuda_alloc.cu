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
        throw DeviceError(cat("out of GPU memory allocating ", nbytes, " bytes on cuda:", dev, " (", in_use_,
                              " bytes in use, peak ", peak_, ")"));
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

  size_t bytes_in_use() const override { return in_use_; }
  size_t peak_bytes() const override { return peak_; }
  void reset_peak() override { peak_ = in_use_; }

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
  void release_cache_locked() {
    for (auto& [dev, pool] : free_) {
      cudaSetDevice(dev);
      for (auto& [size, ptrs] : pool)
        for (void* p : ptrs) {
          cudaFree(p);
          device_of_.erase(p);
        }
      pool.clear();
    }
    cached_ = 0;
  }

  std::mutex m_;
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

}  // namespace

void init_allocator() { (void)the_allocator(); }
AllocatorStats allocator_stats() { return the_allocator().stats(); }
void empty_cache() { the_allocator().empty_cache(); }

}  // namespace arq::cuda
