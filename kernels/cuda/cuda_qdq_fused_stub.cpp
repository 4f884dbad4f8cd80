// Built without CUDA: the fused qdq's CUDA entry points answer with a clear error (no CUDA
// tensor can exist in such a build, so this is only reached by a direct call).
#include "engine/qdq_fused.h"

namespace arq {
namespace {

[[noreturn]] void no_cuda(const char* op) { throw DeviceError(cat(op, ": built without CUDA (reconfigure with -Dcuda=enabled)")); }

class CudaQdqStub final : public QdqKernels {
 public:
  void forward(const QdqInputs&, const QdqSpec&, Tensor&, QdqCodes&) override { no_cuda("qdq_fused"); }
  void backward(const QdqInputs&, const QdqSpec&, const Tensor&, QdqGrads&) override { no_cuda("qdq_fused_backward"); }
  void dequantize(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const QdqSpec&, Tensor&) override {
    no_cuda("dequantize");
  }
};

}  // namespace

QdqKernels& cuda_qdq_kernels() {
  static CudaQdqStub k;
  return k;
}

}  // namespace arq
