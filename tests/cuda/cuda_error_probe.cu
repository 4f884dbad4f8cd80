// Deliberately failing CUDA and cuBLAS calls, checked with the backend's own macros, so the
// suite can see what a user would see when a device call fails.
#include "kernels/cuda/cuda_common.cuh"

namespace arq::cudatest {

void failing_cuda_call() { CUDA_CHECK(cudaSetDevice(-1)); }

void failing_cublas_call() {
  // A null handle: cuBLAS answers CUBLAS_STATUS_NOT_INITIALIZED without touching the device.
  cublasHandle_t none = nullptr;
  CUBLAS_CHECK(cublasSetStream(none, nullptr));
}

}  // namespace arq::cudatest
