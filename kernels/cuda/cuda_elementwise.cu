// CUDA copy/cast and fill over arbitrary strided views; host <-> device copies of large pageable
// buffers go through two pinned staging buffers (kernels/cuda/cuda_staging.h).
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "kernels/cpu/thread_pool.h"
#include "kernels/cuda/cuda_api.h"
#include "kernels/cuda/cuda_device.cuh"
#include "kernels/cuda/cuda_staging.h"

namespace arq::cuda {

namespace {

template <class S, class D>
__global__ void copy_kernel(const S* src, D* dst, Descs<2> L, int64_t n) {
  ARQ_GRID_STRIDE(i, n) {
    int64_t off[2];
    offsets_of(L, i, off);
    dst[off[0]] = dconvert<D>(src[off[1]]);
  }
}

// Contiguous cast: V elements per step (16-byte loads or stores of the wider type).
template <class S, class D, int V>
__global__ void copy_vec_kernel(const S* src, D* dst, int64_t n) {
  const int64_t nv = n / V;
  ARQ_GRID_STRIDE(i, nv) {
    const Vec<S, V> a = reinterpret_cast<const Vec<S, V>*>(src)[i];
    Vec<D, V> r;
#pragma unroll
    for (int k = 0; k < V; ++k) r.v[k] = dconvert<D>(a.v[k]);
    reinterpret_cast<Vec<D, V>*>(dst)[i] = r;
  }
  ARQ_GRID_STRIDE(i, n - nv * V) dst[nv * V + i] = dconvert<D>(src[nv * V + i]);
}

template <class D>
__global__ void fill_kernel(D* dst, Descs<1> L, D v, int64_t n) {
  ARQ_GRID_STRIDE(i, n) {
    int64_t off[1];
    offsets_of(L, i, off);
    dst[off[0]] = v;
  }
}

// ---- host <-> device through pinned staging ------------------------------------------------------
// Semantics are those of the plain path: the copy is synchronous. On return the bytes are at the
// destination (a host read after device -> host sees them), the host source may be freed or
// overwritten (host -> device), and all work queued earlier on the device's stream has finished.
//
// ARQ_CUDA_STAGED_COPY=0 switches the staged path off (every copy takes the plain cudaMemcpy).
bool staging_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("ARQ_CUDA_STAGED_COPY");
    return !(e && std::string(e) == "0");
  }();
  return on;
}

// Ordinary pageable host memory (malloc, a memory-mapped file), as opposed to page-locked memory
// (cuda_pinned_alloc, cudaHostRegister), which the DMA engine reads directly.
bool host_is_pageable(const void* p) {
  cudaPointerAttributes a{};
  CUDA_CHECK(cudaPointerGetAttributes(&a, p));
  return a.type == cudaMemoryTypeUnregistered;
}

// Host memcpy over the CPU thread pool: one core copies ~10 GB/s, less than the DMA engine moves
// over PCIe 4/5 (~25-50 GB/s), so a serial memcpy would cap the staged copy at the driver's speed.
void host_copy(char* dst, const char* src, size_t n) {
  cpu::parallel_for(static_cast<int64_t>(n), int64_t{2} << 20, [&](int64_t b, int64_t e) {
    std::memcpy(dst + b, src + b, static_cast<size_t>(e - b));
  });
}

// The two pinned buffers, allocated on first use from the pinned cache (cudaHostAllocPortable:
// valid with every device) and kept; one staged copy at a time uses them.
struct StagingBuffers {
  std::mutex m;
  char* buf[2] = {nullptr, nullptr};
  bool unavailable = false;  // pinning failed once: do not retry on every copy
};

StagingBuffers& staging_buffers() {
  static StagingBuffers* b = new StagingBuffers();  // never destroyed, as the pinned cache
  return *b;
}

// One copy's events (event k: the last DMA queued on buffer k). The destructor waits for the
// stream before the buffers go to the next copy: after an exception mid-copy a DMA may still be
// reading or writing one of them. Events are made in create(), after construction, so the
// destructor also frees the first one when making the second throws.
struct StagingEvents {
  cudaStream_t s;
  cudaEvent_t ev[2] = {nullptr, nullptr};
  explicit StagingEvents(cudaStream_t stream) : s(stream) {}
  void create() {
    for (cudaEvent_t& e : ev) CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  }
  ~StagingEvents() {
    (void)cudaStreamSynchronize(s);  // success already checked on the normal path
    for (cudaEvent_t e : ev)
      if (e) (void)cudaEventDestroy(e);
    (void)cudaGetLastError();  // a failure here must not surface in an unrelated launch check
  }
  StagingEvents(const StagingEvents&) = delete;
  StagingEvents& operator=(const StagingEvents&) = delete;
};

// Copies nbytes between pageable host memory and the device on stream s (the device current), as
// the staged pipeline; false, with nothing done, when it does not apply (small, pinned host side,
// switched off, no pinned buffers), and the caller takes the plain path.
bool staged_copy(void* dst, const void* src, size_t nbytes, bool to_device, cudaStream_t s) {
  // Size and switch first: the pointer query is a driver call, not worth making for every small
  // copy (a loss read back with item(), an index moved to the device).
  if (!staging_applies(nbytes, /*host_is_pageable=*/true, staging_enabled())) return false;
  if (!host_is_pageable(to_device ? src : dst)) return false;
  StagingBuffers& sb = staging_buffers();
  // Another thread's staged copy holds the buffers: take the plain path rather than wait (so no
  // thread ever blocks on this lock, whatever locks it holds: the thread pool's, say).
  std::unique_lock<std::mutex> g(sb.m, std::try_to_lock);
  if (!g.owns_lock() || sb.unavailable) return false;
  if (sb.buf[0] == nullptr) {
    void* a = cuda_pinned_alloc(kStagingChunkBytes);
    void* b = cuda_pinned_alloc(kStagingChunkBytes);
    if (a == nullptr || b == nullptr) {
      cuda_pinned_free(a);  // no-op for nullptr
      cuda_pinned_free(b);
      sb.unavailable = true;
      return false;
    }
    sb.buf[0] = static_cast<char*>(a);
    sb.buf[1] = static_cast<char*>(b);
  }
  const std::vector<StagingChunk> chunks = staging_schedule(nbytes, kStagingChunkBytes);
  StagingEvents e(s);
  e.create();
  if (to_device) {
    // Fill buffer k with chunk i while the DMA of chunk i − 1 runs from the other buffer.
    const char* h = static_cast<const char*>(src);
    char* d = static_cast<char*>(dst);
    for (const StagingChunk& c : chunks) {
      // The DMA of chunk i − 2 read this buffer: wait for it before refilling (an event not yet
      // recorded counts as complete).
      CUDA_CHECK(cudaEventSynchronize(e.ev[c.buffer]));
      host_copy(sb.buf[c.buffer], h + c.offset, c.size);
      CUDA_CHECK(cudaMemcpyAsync(d + c.offset, sb.buf[c.buffer], c.size, cudaMemcpyHostToDevice, s));
      CUDA_CHECK(cudaEventRecord(e.ev[c.buffer], s));
    }
  } else {
    // DMA chunk i + 1 into one buffer while chunk i is copied out of the other on the host.
    const char* d = static_cast<const char*>(src);
    char* h = static_cast<char*>(dst);
    auto enqueue = [&](const StagingChunk& c) {
      CUDA_CHECK(cudaMemcpyAsync(sb.buf[c.buffer], d + c.offset, c.size, cudaMemcpyDeviceToHost, s));
      CUDA_CHECK(cudaEventRecord(e.ev[c.buffer], s));
    };
    enqueue(chunks[0]);
    for (size_t i = 0; i < chunks.size(); ++i) {
      // chunk i + 1 goes to the buffer chunk i − 1 was copied out of in the previous iteration
      if (i + 1 < chunks.size()) enqueue(chunks[i + 1]);
      const StagingChunk& c = chunks[i];
      CUDA_CHECK(cudaEventSynchronize(e.ev[c.buffer]));
      host_copy(h + c.offset, sb.buf[c.buffer], c.size);
    }
  }
  CUDA_CHECK(cudaStreamSynchronize(s));
  return true;
}

}  // namespace

size_t staging_host_bytes() {
  StagingBuffers& sb = staging_buffers();
  std::lock_guard<std::mutex> g(sb.m);
  return sb.buf[0] != nullptr ? 2 * kStagingChunkBytes : 0;
}

void copy(const Tensor& src, Tensor& dst) {
  const Device dev = dst.device().is_cuda() ? dst.device() : src.device();
  const bool same_layout = src.dtype() == dst.dtype() && src.is_contiguous() && dst.is_contiguous();
  if (src.device() != dst.device()) {
    // Host <-> device (or device <-> device): bytes move as they are; the caller made both
    // contiguous and of one dtype.
    ARQ_CHECK(same_layout, DeviceError, "[copy] cross-device copy needs contiguous tensors of one dtype: ", src.str(),
              " -> ", dst.str());
    if (dst.numel() == 0) return;
    // cuda:A -> cuda:B runs on B's stream, which does not wait for the kernels on A's stream that
    // may still be writing src: finish A's work first.
    if (src.device().is_cuda() && dst.device().is_cuda()) CUDA_CHECK(cudaStreamSynchronize(stream_for(src.device())));
    cudaStream_t s = stream_for(dev);
    // Host <-> device: large pageable buffers through the pinned staging buffers (as synchronous
    // as the plain path below).
    if (src.device().is_cpu() != dst.device().is_cpu() &&
        staged_copy(dst.data_ptr(), src.data_ptr(), dst.nbytes(), src.device().is_cpu(), s))
      return;
    CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), dst.nbytes(), cudaMemcpyDefault, s));
    CUDA_CHECK(cudaStreamSynchronize(s));
    return;
  }
  if (dst.numel() == 0) return;
  cudaStream_t s = stream_for(dev);
  if (same_layout) {
    CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), dst.nbytes(), cudaMemcpyDeviceToDevice, s));
    return;
  }
  const Descs<2> L = make_descs<2>(dst.shape(), {&dst, &src});
  const int64_t n = dst.numel();
  dispatch_dtype(src.dtype(), [&](auto st) {
    using S = dev_t<decltype(st)>;
    dispatch_dtype(dst.dtype(), [&](auto dt) {
      using D = dev_t<decltype(dt)>;
      const S* ps = static_cast<const S*>(src.data_ptr());
      D* pd = static_cast<D*>(dst.data_ptr());
      constexpr int V = 16 / (sizeof(S) > sizeof(D) ? sizeof(S) : sizeof(D));
      if (L.contiguous && aligned_to(ps, V * sizeof(S)) && aligned_to(pd, V * sizeof(D)))
        copy_vec_kernel<S, D, V><<<blocks_for(n / V + 1, kThreads), kThreads, 0, s>>>(ps, pd, n);
      else
        copy_kernel<S, D><<<blocks_for(n, kThreads), kThreads, 0, s>>>(ps, pd, L, n);
      CUDA_CHECK_LAUNCH();
    });
  });
}

void fill(Tensor& dst, double value) {
  if (dst.numel() == 0) return;
  cudaStream_t s = stream_for(dst.device());
  const Descs<1> L = make_descs<1>(dst.shape(), {&dst});
  const int64_t n = dst.numel();
  dispatch_dtype(dst.dtype(), [&](auto dt) {
    using T = decltype(dt);
    using D = dev_t<T>;
    const T hv = convert<T>(value);  // host-side exact rounding, then reinterpret
    D v;
    static_assert(sizeof(T) == sizeof(D));
    std::memcpy(static_cast<void*>(&v), &hv, sizeof(T));
    fill_kernel<D><<<blocks_for(n, kThreads), kThreads, 0, s>>>(static_cast<D*>(dst.data_ptr()), L, v, n);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace arq::cuda
