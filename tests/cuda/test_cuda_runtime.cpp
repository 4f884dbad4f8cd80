// The CUDA runtime pieces around the kernels: the caching allocator (reuse, peak bytes), host ↔
// device round trips of every dtype (bit-exact), and errors that name the failing statement.
#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

#include "arq_config.h"
#include "engine/ops.h"
#include "kernels/cuda/cuda_api.h"
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
