// The CUDA Backend: every method of engine/backend.h, each forwarding to its op-family file.
// All work of a device runs on one non-blocking stream, so buffers the caching allocator hands
// back are reused in stream order; host reads (Tensor::to(cpu)) synchronize that stream.
#include <mutex>
#include <vector>

#include "kernels/cuda/cuda_api.h"
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
void* stream_handle(int device) { return static_cast<void*>(stream_for(Device::cuda(device))); }

}  // namespace cuda

namespace {

class CudaBackend final : public Backend {
 public:
  const char* name() const override { return "cuda"; }
  void copy(const Tensor& src, Tensor& dst) override { cuda::copy(src, dst); }
  void fill(Tensor& dst, double value) override { cuda::fill(dst, value); }
  void unary(UnaryOp op, const Tensor& x, Tensor& out, double p0, double p1) override { cuda::unary(op, x, out, p0, p1); }
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) override { cuda::binary(op, a, b, out); }
  void where(const Tensor& c, const Tensor& a, const Tensor& b, Tensor& out) override { cuda::where(c, a, b, out); }
  void reduce(ReduceOp op, const Tensor& x, int64_t axis, Tensor& out) override { cuda::reduce(op, x, axis, out); }
  void matmul(const Tensor& a, const Tensor& b, Tensor& out) override { cuda::matmul(a, b, out); }
  void softmax(const Tensor& x, Tensor& out, bool log) override { cuda::softmax(x, out, log); }
  void rms_norm(const Tensor& x, const Tensor& w, double eps, Tensor& out) override { cuda::rms_norm(x, w, eps, out); }
  void rope(const Tensor& x, const Tensor& cos, const Tensor& sin, RopeStyle style, Tensor& out) override {
    cuda::rope(x, cos, sin, style, out);
  }
  void index_select(const Tensor& x, int64_t dim, const Tensor& index, Tensor& out) override {
    cuda::index_select(x, dim, index, out);
  }
  void index_add(Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) override {
    cuda::index_add(out, dim, index, src);
  }
  void topk(const Tensor& x, int64_t k, Tensor& values, Tensor& indices) override { cuda::topk(x, k, values, indices); }
  void arange(double start, double step, Tensor& out) override { cuda::arange(start, step, out); }
  void random(RandomKind kind, uint64_t seed, double a, double b, Tensor& out) override {
    cuda::random(kind, seed, a, b, out);
  }
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
  if (cudaGetDeviceProperties(&p, index) != cudaSuccess) {
    (void)cudaGetLastError();  // not left for the next launch check to report
    return "";
  }
  return p.name;
}

}  // namespace arq
