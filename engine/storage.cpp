#include "engine/storage.h"

#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <new>

#include "engine/backend.h"
#include "engine/error.h"

namespace arq {

Device Device::parse(const std::string& s) {
  if (s == "cpu") return cpu();
  if (s == "cuda") return cuda(0);
  if (s.rfind("cuda:", 0) == 0) {
    const std::string n = s.substr(5);
    bool digits = !n.empty() && n.size() < 4;
    for (char c : n) digits = digits && c >= '0' && c <= '9';
    if (digits) return cuda(std::stoi(n));
  }
  throw UsageError(cat("unknown device '", s, "' (expected cpu, cuda or cuda:N)"));
}

std::string Device::str() const {
  return is_cpu() ? std::string("cpu") : cat("cuda:", index);
}

namespace {

// Blocks of 1 MiB and more are kept when freed and handed out again for a request of the same
// rounded size (64 KiB steps), up to a cap (ARQ_CPU_CACHE_MB, default 1024; 0 turns it off).
// glibc maps and unmaps blocks that large on every call, so without this an op writing a fresh
// 64 MiB output pays ~16k first-touch page faults each time: 5-8x the time of the kernel itself
// on the engine benchmark (bench/README.md). bytes_in_use/peak count live storages only.
class CpuAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes) override {
    const size_t rounded = round_size(nbytes);
    void* p = rounded >= kCacheMin ? take_cached(rounded) : nullptr;
    if (!p) p = std::aligned_alloc(64, rounded);
    if (!p && release_cached()) p = std::aligned_alloc(64, rounded);
    if (!p) throw Error(cat("out of host memory allocating ", nbytes, " bytes"));
    const size_t now = in_use_.fetch_add(nbytes) + nbytes;
    size_t peak = peak_.load();
    while (now > peak && !peak_.compare_exchange_weak(peak, now)) {}
    return p;
  }
  void deallocate(void* p, size_t nbytes) override {
    in_use_.fetch_sub(nbytes);
    const size_t rounded = round_size(nbytes);
    if (rounded >= kCacheMin && put_cached(p, rounded)) return;
    std::free(p);
  }
  size_t bytes_in_use() const override { return in_use_.load(); }
  size_t peak_bytes() const override { return peak_.load(); }
  void reset_peak() override { peak_.store(in_use_.load()); }

 private:
  static constexpr size_t kCacheMin = size_t{1} << 20;
  static constexpr size_t kCacheStep = size_t{1} << 16;
  static size_t round_size(size_t nbytes) {
    if (nbytes >= kCacheMin) return (nbytes + kCacheStep - 1) / kCacheStep * kCacheStep;
    return nbytes == 0 ? 64 : (nbytes + 63) / 64 * 64;
  }
  static size_t cache_limit() {
    static const size_t limit = [] {
      const char* s = std::getenv("ARQ_CPU_CACHE_MB");
      const long long mb = s ? std::atoll(s) : 1024;
      return mb > 0 ? static_cast<size_t>(mb) << 20 : size_t{0};
    }();
    return limit;
  }
  void* take_cached(size_t rounded) {
    std::lock_guard<std::mutex> g(cache_mutex_);
    auto it = cache_.find(rounded);
    if (it == cache_.end()) return nullptr;
    void* p = it->second;
    cache_.erase(it);
    cached_bytes_ -= rounded;
    return p;
  }
  // Keeps p unless it alone exceeds the cap; evicts the smallest blocks to make room.
  bool put_cached(void* p, size_t rounded) {
    if (rounded > cache_limit()) return false;
    std::lock_guard<std::mutex> g(cache_mutex_);
    while (cached_bytes_ + rounded > cache_limit() && !cache_.empty()) {
      cached_bytes_ -= cache_.begin()->first;
      std::free(cache_.begin()->second);
      cache_.erase(cache_.begin());
    }
    cache_.emplace(rounded, p);
    cached_bytes_ += rounded;
    return true;
  }
  bool release_cached() {
    std::lock_guard<std::mutex> g(cache_mutex_);
    const bool any = !cache_.empty();
    for (auto& [size, p] : cache_) std::free(p);
    cache_.clear();
    cached_bytes_ = 0;
    return any;
  }

  std::atomic<size_t> in_use_{0};
  std::atomic<size_t> peak_{0};
  std::mutex cache_mutex_;
  std::multimap<size_t, void*> cache_;  // rounded size -> free block
  size_t cached_bytes_ = 0;
};

CpuAllocator& cpu_allocator() {
  // Never destroyed: tensors held in other statics may be freed after it would be.
  static CpuAllocator* a = new CpuAllocator;
  return *a;
}

Allocator* g_cuda_allocator = nullptr;

}  // namespace

Allocator& allocator_for(const Device& d) {
  if (d.is_cpu()) return cpu_allocator();
  if (!g_cuda_allocator) cuda_backend();  // the CUDA backend installs its allocator on first use
  if (!g_cuda_allocator) throw DeviceError(cat("cannot allocate on ", d.str(), ": built without CUDA"));
  return *g_cuda_allocator;
}

void set_allocator(DeviceType t, Allocator* a) {
  ARQ_ASSERT(t == DeviceType::cuda, "the CPU allocator is built in");
  g_cuda_allocator = a;
}

namespace cuda {
// kernels/cuda (or its stub): the stream of cuda:`device`; the call makes `device` the calling
// thread's current CUDA device (and checks that it exists).
void* stream_handle(int device);
}  // namespace cuda

std::shared_ptr<Storage> Storage::allocate(size_t nbytes, Device d) {
  std::shared_ptr<Storage> s(new Storage());
  s->allocator_ = &allocator_for(d);
  // The CUDA caching allocator allocates on the current device: make it d's, or a tensor for
  // cuda:1 would land on whichever device this thread used last.
  if (d.is_cuda()) (void)cuda::stream_handle(d.index);
  s->data_ = s->allocator_->allocate(nbytes);
  s->nbytes_ = nbytes;
  s->device_ = d;
  return s;
}

std::shared_ptr<Storage> Storage::wrap(void* data, size_t nbytes, Device d, std::shared_ptr<void> owner) {
  std::shared_ptr<Storage> s(new Storage());
  s->data_ = data;
  s->nbytes_ = nbytes;
  s->device_ = d;
  s->owner_ = std::move(owner);
  return s;
}

Storage::~Storage() {
  if (allocator_ && data_) allocator_->deallocate(data_, nbytes_);
}

}  // namespace arq
