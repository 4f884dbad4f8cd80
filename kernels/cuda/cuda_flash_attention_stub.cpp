// Built without CUDA: no flash attention kernel on CUDA (supports() is false, so attention_core
// never asks; a direct call gets a clear error).
#include "engine/flash_attention.h"

namespace arq {
namespace {

class CudaFlashAttentionStub final : public FlashAttentionKernels {
 public:
  bool supports(DType, int64_t) const override { return false; }
  void forward(const Tensor&, const Tensor&, const Tensor&, const FlashAttentionParams&, Tensor&, Tensor&) override {
    throw DeviceError("flash_attention_forward: built without CUDA (reconfigure with -Dcuda=enabled)");
  }
  void backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                const FlashAttentionParams&, Tensor&, Tensor&, Tensor&) override {
    throw DeviceError("flash_attention_backward: built without CUDA (reconfigure with -Dcuda=enabled)");
  }
};

}  // namespace

FlashAttentionKernels& cuda_flash_attention_kernels() {
  static CudaFlashAttentionStub k;
  return k;
}

}  // namespace arq
