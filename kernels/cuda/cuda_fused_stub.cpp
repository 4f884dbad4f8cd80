// Built without CUDA: the fused ops' CUDA entry points answer with a clear error (no CUDA
// tensor can exist in such a build, so this is only reached by a direct call).
#include "engine/fused.h"

namespace arq {
namespace {

[[noreturn]] void no_cuda(const char* op) { throw DeviceError(cat(op, ": built without CUDA (reconfigure with -Dcuda=enabled)")); }

class CudaFusedStub final : public FusedKernels {
 public:
  void swiglu(const Tensor&, const Tensor&, Tensor&) override { no_cuda("swiglu"); }
  void swiglu_backward(const Tensor&, const Tensor&, const Tensor&, Tensor&, Tensor&) override {
    no_cuda("swiglu_backward");
  }
  void rms_norm_backward(const Tensor&, const Tensor&, const Tensor&, double, Tensor&, Tensor&) override {
    no_cuda("rms_norm_backward");
  }
  void sign_step(Tensor&, const Tensor&, double) override { no_cuda("sign_sgd_step_"); }
};

}  // namespace

FusedKernels& cuda_fused_kernels() {
  static CudaFusedStub k;
  return k;
}

}  // namespace arq
