// Built without CUDA: the attention row kernels' CUDA entry point answers with a clear error (no
// CUDA tensor can exist in such a build, so this is only reached by a direct call).
#include "engine/attention_rows.h"

namespace arq {
namespace {

class CudaAttentionRowsStub final : public AttentionRowsKernels {
 public:
  void probs(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const AttentionRowsParams&,
             Tensor&, Tensor&) override {
    throw DeviceError("attention_probs: built without CUDA (reconfigure with -Dcuda=enabled)");
  }
};

}  // namespace

AttentionRowsKernels& cuda_attention_rows_kernels() {
  static CudaAttentionRowsStub k;
  return k;
}

}  // namespace arq
