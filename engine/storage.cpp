#include "engine/storage.h"

#include <atomic>
#include <cstdlib>
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

class CpuAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes) override {
    const size_t rounded = (nbytes + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
    if (!p) throw Error(cat("out of host memory allocating ", nbytes, " bytes"));
    const size_t now = in_use_.fetch_add(nbytes) + nbytes;
    size_t peak = peak_.load();
    while (now > peak && !peak_.compare_exchange_weak(peak, now)) {}
    return p;
  }
  void deallocate(void* p, size_t nbytes) override {
    std::free(p);
    in_use_.fetch_sub(nbytes);
  }
  size_t bytes_in_use() const override { return in_use_.load(); }
  size_t peak_bytes() const override { return peak_.load(); }
  void reset_peak() override { peak_.store(in_use_.load()); }

 private:
  std::atomic<size_t> in_use_{0};
  std::atomic<size_t> peak_{0};
};

CpuAllocator& cpu_allocator() {
  static CpuAllocator a;
  return a;
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

std::shared_ptr<Storage> Storage::allocate(size_t nbytes, Device d) {
  std::shared_ptr<Storage> s(new Storage());
  s->allocator_ = &allocator_for(d);
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
