// dispatch_dtype (engine/dtype.h) restricted to the floating dtypes, for kernels that exist only
// for them: fn(T{}) with T the C++ type of `t`, else UnsupportedError naming the op and device.
// Shared by the CPU and CUDA fused kernels (kernels/cpu/fused.cpp, kernels/cuda/cuda_fused.cu).
#pragma once

#include "engine/dtype.h"
#include "engine/error.h"

namespace arq {

template <class F>
void dispatch_float(DType t, const char* op, const char* device, F&& f) {
  switch (t) {
    case DType::f32: f(float{}); return;
    case DType::f64: f(double{}); return;
    case DType::f16: f(Half{}); return;
    case DType::bf16: f(BFloat16{}); return;
    default: throw UnsupportedError(cat("[", op, "] not implemented on ", device, " for ", dtype_name(t)));
  }
}

}  // namespace arq
