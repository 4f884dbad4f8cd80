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
