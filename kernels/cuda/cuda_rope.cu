// CUDA rotary embedding, mirroring kernels/cpu/nn.cpp rope: one thread per rotated pair.
//   rotate_half: pairs (x[j], x[j + d/2]);  interleaved: pairs (x[2j], x[2j + 1]);
//   out_a = a·cos − b·sin,  out_b = b·cos + a·sin   (each product rounded, no FMA, as on the CPU).
#include "kernels/cuda/cuda_device.cuh"

namespace arq::cuda {

namespace {

template <class T>
__global__ void rope_kernel(const T* x, const T* cs, const T* sn, T* out, Descs<4> L, int64_t n, int64_t xoff,
                            int64_t ooff) {
  using C = acc_of<T>;
  ARQ_GRID_STRIDE(i, n) {
    int64_t off[4];  // out pair, x pair, cos, sin
    offsets_of(L, i, off);
    const C a = load(x[off[1]]), b = load(x[off[1] + xoff]);
    const C c = load(cs[off[2]]), s = load(sn[off[3]]);
    out[off[0]] = store<T>(sub_rn(mul_rn(a, c), mul_rn(b, s)));
    out[off[0] + ooff] = store<T>(add_rn(mul_rn(b, c), mul_rn(a, s)));
  }
}

}  // namespace

void rope(const Tensor& x, const Tensor& cos, const Tensor& sin, RopeStyle style, Tensor& out) {
  const int64_t d = x.size(-1), h = d / 2;
  const bool half = style == RopeStyle::rotate_half;
  // Iterate over pair positions: x viewed as [..., h] through the first half (or the even lanes).
  Tensor xa = half ? x.narrow(-1, 0, h) : x.slice(-1, 0, d, 2);
  Tensor oa = half ? out.narrow(-1, 0, h) : out.slice(-1, 0, d, 2);
  const int64_t xoff = half ? h * x.stride(-1) : x.stride(-1);
  const int64_t ooff = half ? h * out.stride(-1) : out.stride(-1);
  const int64_t n = xa.numel();
  if (n == 0) return;
  const Descs<4> L = make_descs<4>(xa.shape(), {&oa, &xa, &cos, &sin});
  cudaStream_t s = stream_for(out.device());
  dispatch_dtype(x.dtype(), [&](auto tag) {
    using T = dev_t<decltype(tag)>;
    if constexpr (is_float_acc<T>) {
      rope_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, s>>>(
          static_cast<const T*>(x.data_ptr()), static_cast<const T*>(cos.data_ptr()),
          static_cast<const T*>(sin.data_ptr()), static_cast<T*>(out.data_ptr()), L, n, xoff, ooff);
      CUDA_CHECK_LAUNCH();
    } else {
      throw UnsupportedError(cat("[rope] not implemented on cuda for ", x.str()));
    }
  });
}

}  // namespace arq::cuda
