// The CUDA Backend. Ops without a CUDA kernel yet answer UnsupportedError, naming the op, so
// callers (and the table-driven CUDA tests) can tell "not yet" from "wrong".
#include <mutex>
#include <vector>

#include "kernels/cuda/cuda_common.cuh"

namespace arq {

namespace cuda {
namespace {

struct PerDevice {
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
};

std::mutex g_mutex;
std::vector<PerDevice> g_devices;

PerDevice& per_device(const Device& d) {
  ARQ_CHECK(d.is_cuda(), DeviceError, "expected a cuda device, got ", d.str());
  const int n = cuda_device_count();
  ARQ_CHECK(d.index >= 0 && d.index < n, DeviceError, "device ", d.str(), " not present (", n, " CUDA device(s) visible)");
  std::lock_guard<std::mutex> g(g_mutex);
  if (g_devices.empty()) g_devices.resize(n);
  CUDA_CHECK(cudaSetDevice(d.index));
  PerDevice& p = g_devices[d.index];
  if (!p.stream) {
    CUDA_CHECK(cudaStreamCreateWithFlags(&p.stream, cudaStreamNonBlocking));
    CUBLAS_CHECK(cublasCreate(&p.cublas));
    CUBLAS_CHECK(cublasSetStream(p.cublas, p.stream));
  }
  return p;
}

}  // namespace

cudaStream_t stream_for(const Device& d) { return per_device(d).stream; }
cublasHandle_t cublas_for(const Device& d) { return per_device(d).cublas; }

}  // namespace cuda

namespace {

[[noreturn]] void not_yet(const char* op) {
  throw UnsupportedError(cat(op, ": not implemented on cuda yet"));
}

class CudaBackend final : public Backend {
 public:
  const char* name() const override { return "cuda"; }
  void copy(const Tensor& src, Tensor& dst) override { cuda::copy(src, dst); }
  void fill(Tensor& dst, double value) override { cuda::fill(dst, value); }
  void unary(UnaryOp op, const Tensor&, Tensor&, double, double) override { not_yet(unary_name(op)); }
  void binary(BinaryOp op, const Tensor&, const Tensor&, Tensor&) override { not_yet(binary_name(op)); }
  void where(const Tensor&, const Tensor&, const Tensor&, Tensor&) override { not_yet("where"); }
  void reduce(ReduceOp op, const Tensor&, int64_t, Tensor&) override { not_yet(reduce_name(op)); }
  void matmul(const Tensor& a, const Tensor& b, Tensor& out) override { cuda::matmul(a, b, out); }
  void softmax(const Tensor&, Tensor&, bool) override { not_yet("softmax"); }
  void rms_norm(const Tensor&, const Tensor&, double, Tensor&) override { not_yet("rms_norm"); }
  void rope(const Tensor&, const Tensor&, const Tensor&, RopeStyle, Tensor&) override { not_yet("rope"); }
  void index_select(const Tensor&, int64_t, const Tensor&, Tensor&) override { not_yet("index_select"); }
  void index_add(Tensor&, int64_t, const Tensor&, const Tensor&) override { not_yet("scatter_add"); }
  void topk(const Tensor&, int64_t, Tensor&, Tensor&) override { not_yet("topk"); }
  void arange(double, double, Tensor&) override { not_yet("arange"); }
  void random(RandomKind, uint64_t, double, double, Tensor&) override { not_yet("random"); }
  void synchronize() override { CUDA_CHECK(cudaDeviceSynchronize()); }
};

}  // namespace

Backend& cuda_backend() {
  static CudaBackend b;
  cuda::init_allocator();
  return b;
}

bool cuda_compiled() { return true; }

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

std::string cuda_device_name(int index) {
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, index) != cudaSuccess) return "";
  return p.name;
}

}  // namespace arq
