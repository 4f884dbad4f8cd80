// Built without CUDA: every CUDA entry point answers with a clear error.
#include "engine/backend.h"
#include "kernels/cuda/cuda_api.h"

namespace arq {
namespace {

[[noreturn]] void no_cuda(const char* op) { throw DeviceError(cat(op, ": built without CUDA (reconfigure with -Dcuda=enabled)")); }

class CudaStub final : public Backend {
 public:
  const char* name() const override { return "cuda (not built)"; }
  void copy(const Tensor&, Tensor&) override { no_cuda("copy"); }
  void fill(Tensor&, double) override { no_cuda("fill"); }
  void unary(UnaryOp op, const Tensor&, Tensor&, double, double) override { no_cuda(unary_name(op)); }
  void binary(BinaryOp op, const Tensor&, const Tensor&, Tensor&) override { no_cuda(binary_name(op)); }
  void where(const Tensor&, const Tensor&, const Tensor&, Tensor&) override { no_cuda("where"); }
  void reduce(ReduceOp op, const Tensor&, int64_t, Tensor&) override { no_cuda(reduce_name(op)); }
  void matmul(const Tensor&, const Tensor&, Tensor&) override { no_cuda("matmul"); }
  void softmax(const Tensor&, Tensor&, bool) override { no_cuda("softmax"); }
  void rms_norm(const Tensor&, const Tensor&, double, Tensor&) override { no_cuda("rms_norm"); }
  void rope(const Tensor&, const Tensor&, const Tensor&, RopeStyle, Tensor&) override { no_cuda("rope"); }
  void index_select(const Tensor&, int64_t, const Tensor&, Tensor&) override { no_cuda("index_select"); }
  void index_add(Tensor&, int64_t, const Tensor&, const Tensor&) override { no_cuda("scatter_add"); }
  void topk(const Tensor&, int64_t, Tensor&, Tensor&) override { no_cuda("topk"); }
  void arange(double, double, Tensor&) override { no_cuda("arange"); }
  void random(RandomKind, uint64_t, double, double, Tensor&) override { no_cuda("random"); }
};

}  // namespace

Backend& cuda_backend() {
  static CudaStub b;
  return b;
}
bool cuda_compiled() { return false; }
int cuda_device_count() { return 0; }
std::string cuda_device_name(int) { return ""; }
void* cuda_pinned_alloc(size_t) { return nullptr; }   // callers fall back to ordinary host memory
void cuda_pinned_free(void*) {}
void cuda_pinned_release() {}

namespace cuda {
AllocatorStats allocator_stats() { return {}; }
void empty_cache() {}
void* stream_handle(int) { return nullptr; }
size_t pinned_host_bytes() { return 0; }
size_t staging_host_bytes() { return 0; }
}  // namespace cuda

}  // namespace arq
