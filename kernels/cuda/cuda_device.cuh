// Device-side helpers shared by the CUDA kernel files: element types, the compute type of each
// dtype, conversions that round exactly like engine/dtype.h, IEEE arithmetic that nvcc may not
// contract into FMAs, multi-operand strided addressing, and warp reductions.
//
// Every kernel mirrors its CPU twin in kernels/cpu/ operation by operation, so that results are
// bit-identical where the CPU result is itself exactly rounded (copies, casts, + - * /, sqrt,
// comparisons, rounding, gathers, scatters, RMSNorm's scaling) and within a few ulp where it
// calls a libm function (exp, log, tanh, pow, which CUDA evaluates with ≤ 4 ulp error).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <array>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_descs.h"

namespace arq::cuda {

// ---- element and compute types ----------------------------------------------------------
// Storage type on the device: Half/BFloat16 map to CUDA's own 16-bit types (same bits).
template <class T> struct DevType { using type = T; };
template <> struct DevType<Half> { using type = __half; };
template <> struct DevType<BFloat16> { using type = __nv_bfloat16; };
template <class T> using dev_t = typename DevType<T>::type;

// The type kernels compute in, as kernels/cpu/strided.h's acc_t: f32 for f32/f16/bf16, f64 for
// f64, i64 for every integer type.
template <class T> struct DevAcc { using type = int64_t; };
template <> struct DevAcc<float> { using type = float; };
template <> struct DevAcc<__half> { using type = float; };
template <> struct DevAcc<__nv_bfloat16> { using type = float; };
template <> struct DevAcc<double> { using type = double; };
template <class T> using acc_of = typename DevAcc<T>::type;
template <class T> inline constexpr bool is_float_acc = std::is_floating_point_v<acc_of<T>>;

// Widen to double / narrow to float like to_double / to_float in engine/dtype.h.
template <class S> __device__ __forceinline__ double widen(S v) {
  if constexpr (std::is_same_v<S, __half>) return __half2float(v);
  else if constexpr (std::is_same_v<S, __nv_bfloat16>) return __bfloat162float(v);
  else return static_cast<double>(v);
}
template <class S> __device__ __forceinline__ float narrow_f32(S v) {
  if constexpr (std::is_same_v<S, __half>) return __half2float(v);
  else if constexpr (std::is_same_v<S, __nv_bfloat16>) return __bfloat162float(v);
  else return static_cast<float>(v);  // double and i64 -> f32 round to nearest even
}

template <class I> __device__ __forceinline__ I saturate(double v) {
  if (v != v) return I(0);
  const double lo = static_cast<double>(std::numeric_limits<I>::min());
  const double hi = static_cast<double>(std::numeric_limits<I>::max());
  if (v <= lo) return std::numeric_limits<I>::min();
  if (v >= hi) return std::numeric_limits<I>::max();
  return static_cast<I>(v);  // truncation toward zero
}

// convert<D>(S) with the rules of engine/dtype.h's Converter: round to nearest even, integers
// truncate and saturate, and 16-bit targets round once from the source (no double rounding).
template <class D, class S> __device__ __forceinline__ D dconvert(S v) {
  if constexpr (std::is_same_v<D, S>) {
    return v;
  } else if constexpr (std::is_same_v<D, float>) {
    return narrow_f32(v);
  } else if constexpr (std::is_same_v<D, double>) {
    return widen(v);
  } else if constexpr (std::is_same_v<D, __half>) {
    if constexpr (std::is_same_v<S, float>) return __float2half_rn(v);
    else if constexpr (std::is_same_v<S, __nv_bfloat16>) return __float2half_rn(__bfloat162float(v));
    else return __double2half(static_cast<double>(v));
  } else if constexpr (std::is_same_v<D, __nv_bfloat16>) {
    if constexpr (std::is_same_v<S, float>) return __float2bfloat16_rn(v);
    else if constexpr (std::is_same_v<S, __half>) return __float2bfloat16_rn(__half2float(v));
    else return __double2bfloat16(static_cast<double>(v));
  } else {
    return saturate<D>(widen(v));  // integer target (from an integer: exact below 2^53)
  }
}

template <class T> __device__ __forceinline__ acc_of<T> load(T v) { return dconvert<acc_of<T>>(v); }
template <class T, class C> __device__ __forceinline__ T store(C v) { return dconvert<T>(v); }

template <class C> __device__ __forceinline__ bool is_nan(C v) {
  if constexpr (std::is_floating_point_v<C>) return v != v;
  else return false;
}

// IEEE round-to-nearest arithmetic that nvcc never fuses into an FMA, so that `a * b + c`
// rounds twice as on the CPU (whose x86-64 baseline has no FMA).
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ float sub_rn(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ double sub_rn(double a, double b) { return __dsub_rn(a, b); }

// ---- strided addressing of N operands over one iteration shape ------------------------------
// Descs<N>, make_descs, offsets_of: cuda_descs.h (host + device, unit-tested on the CPU).

// V consecutive elements moved as one aligned load/store (16 bytes for the widest operand):
// contiguous elementwise kernels use it when every pointer is aligned, which a fresh allocation
// always is.
template <class T, int V>
struct alignas(sizeof(T) * V) Vec {
  T v[V];
};
inline bool aligned_to(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

#define ARQ_GRID_STRIDE(i, n)                                                                 \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

inline constexpr int kThreads = 256;

// ---- warp / block reductions ------------------------------------------------------------
template <class C> __device__ __forceinline__ C warp_sum(C v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
// NaN-ignoring max, like the CPU softmax's `buf[j] > m ? buf[j] : m`.
template <class C> __device__ __forceinline__ C warp_max(C v) {
  for (int o = 16; o > 0; o >>= 1) {
    const C w = __shfl_xor_sync(0xffffffffu, v, o);
    v = w > v ? w : v;
  }
  return v;
}

// Sum/max over a whole block (blockDim.x a multiple of 32, ≤ 1024); every thread gets the result.
// `scratch` holds 32 values of C in shared memory.
template <class C> __device__ C block_sum(C v, C* scratch) {
  v = warp_sum(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < nw ? scratch[lane] : C(0);
  return warp_sum(v);
}
template <class C> __device__ C block_max(C v, C* scratch, C lowest) {
  v = warp_max(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < nw ? scratch[lane] : lowest;
  return warp_max(v);
}

// exp in the accumulation type (expf for f32: ≤ 2 ulp; exp for f64), as the row softmaxes use it.
__device__ __forceinline__ float acc_exp(float v) { return expf(v); }
__device__ __forceinline__ double acc_exp(double v) { return exp(v); }

// Reduction over the TPR threads of one row: a warp (TPR = 32), or TPR / 32 consecutive warps of
// the block combined through shared memory in a fixed order (deterministic). Every thread of the
// block must call it (rows past the end take part with neutral values). Used by the row softmax /
// RMSNorm (cuda_softmax_norm.cu) and the fused attention rows (cuda_attention_rows.cu).
template <int TPR, class C, class Op>
__device__ C row_reduce(C v, Op op) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  if constexpr (TPR > 32) {
    constexpr int W = TPR / 32;
    __shared__ C scratch[32];
    const int warp = threadIdx.x >> 5, first = warp / W * W;
    __syncthreads();  // scratch may still be read by an earlier reduction
    if ((threadIdx.x & 31) == 0) scratch[warp] = v;
    __syncthreads();
    v = scratch[first];
    for (int w = 1; w < W; ++w) v = op(v, scratch[first + w]);
  }
  return v;
}
struct SumOp {
  template <class C> __device__ C operator()(C a, C b) const { return a + b; }
};
struct MaxOp {  // NaN-ignoring, like the CPU's `x > m ? x : m`
  template <class C> __device__ C operator()(C a, C b) const { return b > a ? b : a; }
};

}  // namespace arq::cuda
