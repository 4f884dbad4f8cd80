// CUDA arange and counter-based random numbers, mirroring kernels/cpu/nn.cpp.
//
// random: element i is Philox4x32-10(counter = i, key = seed) from engine/philox.h, turned into
// a double exactly as on the CPU (no FMA contraction), then rounded once to the output dtype.
// Uniform draws are therefore bit-identical to the CPU's; normal draws go through log/sqrt/cos,
// where CUDA's f64 log and cos may differ from glibc in the last bit of the double, which
// survives rounding to f32/f16/bf16 only when the double lies within 1 ulp of a rounding boundary.
#include "engine/philox.h"
#include "kernels/cuda/cuda_device.cuh"

namespace arq::cuda {

namespace {

template <class T>
__global__ void arange_kernel(T* out, int64_t n, double start, double step) {
  ARQ_GRID_STRIDE(i, n) { out[i] = dconvert<T>(__dadd_rn(start, __dmul_rn(static_cast<double>(i), step))); }
}

template <class T>
__global__ void random_kernel(T* out, Descs<1> L, int64_t n, uint64_t seed, double a, double b, bool normal,
                              bool f64) {
  ARQ_GRID_STRIDE(i, n) {
    const Philox4 r = philox4x32_10(static_cast<uint64_t>(i), seed);
    double v;
    if (!normal) {
      const double u = f64 ? philox_uniform01_f64(r.v[0], r.v[1]) : static_cast<double>(philox_uniform01(r.v[0]));
      v = __dadd_rn(a, __dmul_rn(__dsub_rn(b, a), u));
    } else {
      // Box-Muller on two 53-bit uniforms; 1 - u1 is in (0, 1], so the log is finite.
      const double u1 = philox_uniform01_f64(r.v[0], r.v[1]), u2 = philox_uniform01_f64(r.v[2], r.v[3]);
      const double radius = __dsqrt_rn(__dmul_rn(-2.0, log(__dsub_rn(1.0, u1))));
      const double angle = cos(__dmul_rn(6.283185307179586, u2));
      v = __dadd_rn(a, __dmul_rn(__dmul_rn(b, radius), angle));
    }
    int64_t off[1];
    offsets_of(L, i, off);
    out[off[0]] = dconvert<T>(v);
  }
}

}  // namespace

void arange(double start, double step, Tensor& out) {
  const int64_t n = out.numel();
  if (n == 0) return;
  cudaStream_t s = stream_for(out.device());
  dispatch_dtype(out.dtype(), [&](auto tag) {
    using T = dev_t<decltype(tag)>;
    arange_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, s>>>(static_cast<T*>(out.data_ptr()), n, start, step);
    CUDA_CHECK_LAUNCH();
  });
}

void random(RandomKind kind, uint64_t seed, double a, double b, Tensor& out) {
  const int64_t n = out.numel();
  if (n == 0) return;
  const Descs<1> L = make_descs<1>(out.shape(), {&out});
  cudaStream_t s = stream_for(out.device());
  dispatch_dtype(out.dtype(), [&](auto tag) {
    using T = dev_t<decltype(tag)>;
    random_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, s>>>(static_cast<T*>(out.data_ptr()), L, n, seed, a, b,
                                                                   kind == RandomKind::normal,
                                                                   out.dtype() == DType::f64);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace arq::cuda
