// The CUDA runtime pieces around the kernels: the caching allocator (reuse, peak bytes), host ↔
// device round trips of every dtype (bit-exact), host ↔ device copies through the pinned staging
// buffers (pageable, pinned, memory-mapped sources), and errors that name the failing statement.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "arq_config.h"
#include "engine/ops.h"
#include "engine/storage.h"
#include "io/mmap_file.h"
#include "kernels/cuda/cuda_api.h"
#include "kernels/cuda/cuda_staging.h"
#include "tests/cuda/cuda_test_util.h"

using namespace arq;
using namespace arq::cudatest;

#if ARQ_HAVE_CUDA
namespace arq::cudatest {
void failing_cuda_call();
void failing_cublas_call();
}  // namespace arq::cudatest
#endif

TEST_CASE("caching allocator: a freed block is reused, not re-allocated") {
  const Shape shape{1 << 18};  // 1 MiB of f32: a size no other test here uses
  { Tensor warm = Tensor::empty(shape, DType::f32, Device::cuda(0)); }
  const cuda::AllocatorStats before = cuda::allocator_stats();
  for (int i = 0; i < 5; ++i) {
    Tensor t = Tensor::empty(shape, DType::f32, Device::cuda(0));
    CHECK(t.data_ptr() != nullptr);
  }
  const cuda::AllocatorStats after = cuda::allocator_stats();
  CHECK(after.device_mallocs == before.device_mallocs);
  CHECK(after.cache_hits >= before.cache_hits + 5);
  CHECK(after.bytes_in_use == before.bytes_in_use);
}

TEST_CASE("caching allocator: peak bytes cover the largest live set") {
  Allocator& a = allocator_for(Device::cuda(0));
  a.reset_peak();
  const size_t base = a.bytes_in_use();
  CHECK(a.peak_bytes() == base);
  {
    Tensor x = Tensor::empty({16 << 20}, DType::f32, Device::cuda(0));  // 64 MiB
    Tensor y = Tensor::empty({8 << 20}, DType::f32, Device::cuda(0));   // 32 MiB
    CHECK(a.bytes_in_use() >= base + (96u << 20));
  }
  CHECK(a.bytes_in_use() == base);
  CHECK(a.peak_bytes() >= base + (96u << 20));
  CHECK(cuda::allocator_stats().peak_bytes == a.peak_bytes());
  // empty_cache hands the cached blocks back; the next allocation is a fresh cudaMalloc.
  cuda::empty_cache();
  CHECK(cuda::allocator_stats().bytes_cached == 0);
}

TEST_CASE("host <-> device round trip is bit-exact for every dtype") {
  const DType all[] = {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i8, DType::u8, DType::i32, DType::i64};
  for (DType dt : all) {
    CAPTURE(dtype_name(dt));
    Tensor h = make_values({13, 7, 5}, dt, is_integral(dt) ? Fill::uints : Fill::specials, 7);
    Tensor d = h.to(Device::cuda(0));
    CHECK(d.device().is_cuda());
    Tensor back = d.to(Device::cpu());
    REQUIRE(back.nbytes() == h.nbytes());
    CHECK(std::memcmp(back.data_ptr(), h.data_ptr(), h.nbytes()) == 0);
    // a strided device view comes back through a device-side gather
    Tensor v = d.transpose(0, 2).to(Device::cpu());
    CHECK(compare(h.transpose(0, 2).contiguous(), v, exact()).ok);
  }
}

TEST_CASE("device errors are arq::DeviceError naming the failing statement") {
#if ARQ_HAVE_CUDA
  try {
    cudatest::failing_cuda_call();
    FAIL("expected a DeviceError");
  } catch (const DeviceError& e) {
    const std::string m = e.what();
    CHECK(m.find("cudaSetDevice(-1)") != std::string::npos);
    CHECK(m.find("cudaErrorInvalidDevice") != std::string::npos);
  }
  try {
    cudatest::failing_cublas_call();
    FAIL("expected a DeviceError");
  } catch (const DeviceError& e) {
    const std::string m = e.what();
    CHECK(m.find("cublasSetStream") != std::string::npos);
    CHECK(m.find("cuBLAS error") != std::string::npos);
  }
#endif
  // A device index that is not there.
  CHECK_THROWS_AS(Tensor::empty({4}, DType::f32, Device::cuda(0)).to(Device::cuda(cuda_device_count())), DeviceError);
  // The backend is usable after the failures (errors above are not sticky).
  Tensor x = ones({3}, DType::f32, Device::cuda(0));
  CHECK(to_vector(x) == std::vector<double>{1, 1, 1});
}

// Past 2^31 elements (an 8B model's [16384, 14336] activations are 2^27.8; attention scores of
// [8·32, 2048, 2048] are 2^30): the 64-bit index paths of fill, a broadcast binary op, a chunked
// reduction with an i64 argmax index beyond 2^31 and a strided-axis reduction with many outputs.
// Integer-valued data keep every expected value exact. ~15 GB of device memory, milliseconds.
TEST_CASE("cuda large tensors: index math past 2^31 elements") {
  const int64_t L = (int64_t{1} << 30) + 7;  // [3, L]: 3.2e9 elements, L % 8 != 0 (no vector path)
  const Device dev = Device::cuda(0);
  try {
    Tensor y;
    {
      Tensor a = ones({3, L}, DType::bf16, dev);
      Tensor col = from_vector({1, 2, 3}, {3, 1}, DType::bf16).to(dev);
      y = mul(a, col);  // row k holds k + 1
    }
    Tensor mark = y.select(0, 2).narrow(0, L - 2, 1);
    fill_(mark, 7.0);  // y[2, L - 2] = 7
    CHECK(to_vector(y.narrow(1, L - 3, 3)) == std::vector<double>{1, 1, 1, 2, 2, 2, 3, 7, 3});
    CHECK(to_vector(y.narrow(1, 0, 2)) == std::vector<double>{1, 1, 2, 2, 3, 3});
    // row sums: f64 accumulation is exact here; the bf16 result is the rounding of the exact sum
    const double Ld = static_cast<double>(L);
    const std::vector<double> want_rows = to_vector(from_vector({Ld, 2 * Ld, 3 * Ld - 3 + 7}, {3}, DType::bf16));
    CHECK(to_vector(sum(y, 1)) == want_rows);
    // argmax over all 3.2e9 elements: the marker's flat index 3L − 2 > 2^31
    const Tensor am = argmax(y.view({-1}), 0);
    CHECK(am.item() == static_cast<double>(3 * L - 2));
    // column sums (a strided axis with L outputs): 1 + 2 + 3, and 1 + 2 + 7 at the marker
    const Tensor cs = sum(y, 0);
    CHECK(to_vector(cs.narrow(0, L - 3, 3)) == std::vector<double>{6, 10, 6});
  } catch (const DeviceError& e) {
    if (std::string(e.what()).find("out of GPU memory") == std::string::npos) throw;
    MESSAGE("skipped: ", e.what());
  }
  cuda::empty_cache();  // ~15 GB of freed blocks: not kept cached for the tests that follow
}

// ---- host <-> device copies through the pinned staging buffers (kernels/cuda/cuda_staging.h) ----
// Large pageable copies go through two pinned 32 MiB buffers in chunks; small ones (< 1 MiB) and
// pinned host memory take the plain cudaMemcpy. Each device tensor is checked through windows of
// 512 KiB copied back one by one (the plain path), so the staged host -> device copy is checked
// independently of the staged device -> host copy, which is then checked against the source.
namespace {

// A byte pattern that depends on the position (a chunk landing at the wrong offset, or a stale
// buffer, shows up): the top byte of a multiplicative hash of (index + seed).
void fill_pattern(uint8_t* p, size_t n, uint64_t seed) {
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(((i + seed) * 0x9E3779B97F4A7C15ull) >> 56);
}

Tensor host_pattern(int64_t numel, DType dt, uint64_t seed) {
  Tensor h = Tensor::empty({numel}, dt, Device::cpu());
  fill_pattern(static_cast<uint8_t*>(h.data_ptr()), h.nbytes(), seed);
  return h;
}

// The bytes of a contiguous device tensor, read back in windows below the staging threshold.
std::vector<uint8_t> device_bytes_plain(const Tensor& d) {
  const Tensor flat = d.view({-1});
  const int64_t es = static_cast<int64_t>(dtype_size(d.dtype()));
  const int64_t win = static_cast<int64_t>(cuda::kStagingMinBytes / 2) / es;  // elements per window
  std::vector<uint8_t> out(d.nbytes());
  for (int64_t off = 0; off < flat.numel(); off += win) {
    const Tensor part = flat.narrow(0, off, std::min(win, flat.numel() - off)).to(Device::cpu());
    std::memcpy(out.data() + off * es, part.data_ptr(), part.nbytes());
  }
  return out;
}

// Index of the first differing byte, or -1.
int64_t first_diff(const void* a, const void* b, size_t n) {
  const uint8_t* x = static_cast<const uint8_t*>(a);
  const uint8_t* y = static_cast<const uint8_t*>(b);
  for (size_t i = 0; i < n; ++i)
    if (x[i] != y[i]) return static_cast<int64_t>(i);
  return -1;
}

// h -> device (staged when large and pageable), checked by windows; device -> host (staged when
// large), checked against h; device -> pinned host (plain), checked against h.
void check_round_trip(const Tensor& h) {
  CAPTURE(h.str());
  const Tensor d = h.to(Device::cuda(0));
  const std::vector<uint8_t> via_windows = device_bytes_plain(d);
  CHECK(first_diff(via_windows.data(), h.data_ptr(), h.nbytes()) == -1);
  const Tensor back = d.to(Device::cpu());
  REQUIRE(back.nbytes() == h.nbytes());
  CHECK(first_diff(back.data_ptr(), h.data_ptr(), h.nbytes()) == -1);
}

const size_t kChunk = cuda::kStagingChunkBytes, kMin = cuda::kStagingMinBytes;

}  // namespace

TEST_CASE("staged host <-> device copies: sizes around the threshold and chunk boundaries, bit-exact") {
  // u8: odd byte counts on both sides of the threshold and of one and five chunks
  for (size_t n : {kMin - 1, kMin, kMin + 1, kChunk - 1, kChunk, kChunk + 1, 2 * kChunk, 5 * kChunk + 3})
    check_round_trip(host_pattern(static_cast<int64_t>(n), DType::u8, n));
  // f32 / bf16 with odd element counts (the byte patterns include NaN payloads: bits must survive)
  for (int64_t n : {int64_t(kMin / 4) - 1, int64_t(kMin / 4) + 1, int64_t(kChunk / 4) + 3, int64_t(2 * kChunk / 4) + 1})
    check_round_trip(host_pattern(n, DType::f32, static_cast<uint64_t>(n)));
  for (int64_t n : {int64_t(kMin / 2) + 1, int64_t(kChunk / 2) - 1, int64_t(3 * kChunk / 2) + 5})
    check_round_trip(host_pattern(n, DType::bf16, static_cast<uint64_t>(n)));
  // a host source at an odd address: a view one byte into a larger buffer
  const Tensor big = host_pattern(static_cast<int64_t>(kChunk + 9), DType::u8, 3);
  check_round_trip(big.narrow(0, 1, static_cast<int64_t>(kChunk + 5)));
  // a large strided device view goes through a device-side gather, then the staged copy
  const Tensor h2 = host_pattern(int64_t{2049} * 1025, DType::bf16, 5).view({2049, 1025});
  const Tensor t = h2.to(Device::cuda(0)).transpose(0, 1).to(Device::cpu());
  CHECK(compare(h2.transpose(0, 1).contiguous(), t, exact()).ok);
  // the staged path was taken (two 32 MiB pinned buffers held from now on), unless switched off
  const char* env = std::getenv("ARQ_CUDA_STAGED_COPY");
  if (!(env && std::string(env) == "0")) CHECK(cuda::pinned_host_bytes() >= 2 * kChunk);
}

TEST_CASE("staged copies: pinned host memory (direct DMA) both ways, bit-exact") {
  for (size_t n : {kMin - 1, kChunk + 3}) {
    CAPTURE(n);
    void* p = cuda_pinned_alloc(n);
    if (p == nullptr) {
      MESSAGE("skipped: pinned host memory unavailable");
      return;
    }
    std::shared_ptr<void> owner(p, [](void* q) { cuda_pinned_free(q); });
    Tensor pinned(Storage::wrap(p, n, Device::cpu(), owner), {static_cast<int64_t>(n)}, {1}, 0, DType::u8);
    fill_pattern(static_cast<uint8_t*>(p), n, 11);
    const std::vector<uint8_t> want(static_cast<uint8_t*>(p), static_cast<uint8_t*>(p) + n);
    const Tensor d = pinned.to(Device::cuda(0));
    CHECK(first_diff(device_bytes_plain(d).data(), want.data(), n) == -1);
    // device -> pinned host through copy_ (the --low_gpu_mem_usage caches' path)
    std::memset(p, 0, n);
    copy_(pinned, d);
    CHECK(first_diff(p, want.data(), n) == -1);
  }
}

TEST_CASE("staged copies: from a memory-mapped file, at an odd offset, bit-exact") {
  namespace fs = std::filesystem;
  const size_t n = kChunk + 4097;  // past one chunk, odd
  const fs::path path = fs::temp_directory_path() / cat("arq_staging_", static_cast<long>(::getpid()), ".bin");
  {
    std::vector<uint8_t> bytes(n + 3);
    fill_pattern(bytes.data(), bytes.size(), 17);
    std::FILE* f = std::fopen(path.c_str(), "wb");
    REQUIRE(f != nullptr);
    REQUIRE(std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size());
    std::fclose(f);
  }
  {
    auto file = io::MappedFile::open(path.string());
    REQUIRE(file->size() == n + 3);
    // a tensor 3 bytes into the mapping (odd address), as a checkpoint's tensors sit at any offset
    auto storage = Storage::wrap(const_cast<uint8_t*>(file->data()), file->size(), Device::cpu(), file);
    const Tensor mapped(storage, {static_cast<int64_t>(n)}, {1}, 3, DType::u8);
    const Tensor d = mapped.to(Device::cuda(0));
    CHECK(first_diff(device_bytes_plain(d).data(), file->data() + 3, n) == -1);
    const Tensor back = d.to(Device::cpu());
    CHECK(first_diff(back.data_ptr(), file->data() + 3, n) == -1);
  }
  fs::remove(path);
}

TEST_CASE("staged copies: repeated copies grow neither the pinned cache nor the device cache") {
  const Tensor h = host_pattern(static_cast<int64_t>(3 * kChunk + 1), DType::u8, 23);
  { Tensor warm = h.to(Device::cuda(0)).to(Device::cpu()); }  // staging buffers and device block exist now
  const size_t pinned_before = cuda::pinned_host_bytes();
  const cuda::AllocatorStats before = cuda::allocator_stats();
  for (int i = 0; i < 4; ++i) {
    const Tensor d = h.to(Device::cuda(0));
    const Tensor back = d.to(Device::cpu());
    CHECK(first_diff(back.data_ptr(), h.data_ptr(), h.nbytes()) == -1);
  }
  CHECK(cuda::pinned_host_bytes() == pinned_before);
  const cuda::AllocatorStats after = cuda::allocator_stats();
  CHECK(after.device_mallocs == before.device_mallocs);
  CHECK(after.bytes_in_use == before.bytes_in_use);
}
