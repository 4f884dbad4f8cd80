// CUDA gathers, scatters and top-k, mirroring kernels/cpu/nn.cpp.
//   index_select: one thread per output element (a raw copy, so any dtype by its byte width);
//   index_add:    one thread per column of out.select(dim, ·), walking the index serially, so
//                 repeated indices accumulate in index order with no float atomics: the result is
//                 bit-identical to the CPU's serial loop;
//   topk:         one warp per row, k selection passes over the row (k is small in practice:
//                 router top-k, sampling); order NaN first, then larger values, ties → lower index.
// index_select of contiguous rows of 16-byte multiples copies 16 bytes per thread instead.
// Index tensors are validated on the host (they are short: token ids, expert ids) so that an
// out-of-range index is a ShapeError naming the value and position, exactly as on the CPU.
#include <vector>

#include "kernels/cuda/cuda_device.cuh"

namespace arq::cuda {

namespace {

std::vector<int64_t> host_indices(const Tensor& index) {
  Tensor h = index.to(Device::cpu()).contiguous();
  std::vector<int64_t> v(static_cast<size_t>(h.numel()));
  for (int64_t i = 0; i < h.numel(); ++i)
    v[i] = h.dtype() == DType::i64 ? h.data<int64_t>()[i] : static_cast<int64_t>(h.data<int32_t>()[i]);
  return v;
}

void check_indices(const char* op, const Tensor& index, int64_t limit) {
  const std::vector<int64_t> v = host_indices(index);
  for (size_t i = 0; i < v.size(); ++i)
    ARQ_CHECK(v[i] >= 0 && v[i] < limit, ShapeError, "[", op, "] index ", v[i], " at position ", i,
              " out of range [0, ", limit, ")");
}

template <class I>
__device__ __forceinline__ int64_t index_at(const I* idx, int64_t s, int64_t i) {
  return static_cast<int64_t>(idx[i * s]);
}

// out is contiguous; `inner` = elements of out after `dim`, `n_idx` = out.size(dim).
template <class E, class I>
__global__ void index_select_kernel(const E* x, E* out, Descs<2> L, int64_t n, const I* idx, int64_t sidx,
                                    int64_t inner, int64_t n_idx, int64_t sdim) {
  ARQ_GRID_STRIDE(o, n) {
    int64_t off[2];  // out, x with the `dim` stride zeroed
    offsets_of(L, o, off);
    const int64_t i = (o / inner) % n_idx;
    out[off[0]] = x[off[1] + index_at(idx, sidx, i) * sdim];
  }
}

// The common case of a contiguous x and out whose selected slices are whole rows of 16-byte
// units (the sample gathers of SignRound: [n, s, H] -> [batch, s, H]): x [outer, x_dim, units],
// out [outer, n_idx, units], one uint4 per thread and one index load per unit.
template <class I>
__global__ void index_select_rows_kernel(const uint4* x, uint4* out, int64_t n, const I* idx, int64_t sidx,
                                         int64_t units, int64_t n_idx, int64_t x_dim) {
  ARQ_GRID_STRIDE(u, n) {
    const int64_t row = u / units, c = u - row * units;
    const int64_t o = row / n_idx, i = row - o * n_idx;
    out[u] = x[((o * x_dim) + index_at(idx, sidx, i)) * units + c];
  }
}

template <class T, class I>
__global__ void index_add_kernel(T* out, const T* src, Descs<2> L, int64_t n_cols, const I* idx, int64_t sidx,
                                 int64_t n_idx, int64_t so, int64_t ss) {
  ARQ_GRID_STRIDE(c, n_cols) {
    int64_t off[2];  // column base in out (dim coordinate 0), in src
    offsets_of(L, c, off);
    for (int64_t i = 0; i < n_idx; ++i) {
      T& o = out[off[0] + index_at(idx, sidx, i) * so];
      o = store<T>(load(o) + load(src[off[1] + i * ss]));
    }
  }
}

template <class C>
struct Pick {
  C v;
  long long i;  // < 0: none
};

// a ranks before b in top-k order.
template <class C>
__device__ __forceinline__ bool ranks_before(const Pick<C>& a, const Pick<C>& b) {
  if (b.i < 0) return a.i >= 0;
  if (a.i < 0) return false;
  const bool na = is_nan(a.v), nb = is_nan(b.v);
  if (na != nb) return na;
  if (!na && a.v != b.v) return a.v > b.v;
  return a.i < b.i;
}

template <class T>
__global__ void topk_kernel(const T* x, T* values, int64_t* indices, Descs<3> L, int64_t rows, int64_t n, int64_t sx,
                            int64_t k) {
  using C = acc_of<T>;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * (kThreads / 32) + threadIdx.x / 32;
  if (r >= rows) return;  // whole warps leave together
  const int lane = threadIdx.x & 31;
  int64_t off[3];  // x row, values row, indices row
  offsets_of(L, r, off);
  const T* row = x + off[0];
  Pick<C> prev{C(0), -1};
  for (int64_t p = 0; p < k; ++p) {
    Pick<C> best{C(0), -1};
    for (int64_t j = lane; j < n; j += 32) {
      const Pick<C> cand{load(row[j * sx]), static_cast<long long>(j)};
      if (prev.i >= 0 && !ranks_before(prev, cand)) continue;  // already taken
      if (ranks_before(cand, best)) best = cand;
    }
    for (int o = 16; o > 0; o >>= 1) {
      Pick<C> other;
      if constexpr (std::is_same_v<C, int64_t>)
        other.v = static_cast<C>(__shfl_xor_sync(0xffffffffu, static_cast<long long>(best.v), o));
      else
        other.v = __shfl_xor_sync(0xffffffffu, best.v, o);
      other.i = __shfl_xor_sync(0xffffffffu, best.i, o);
      if (ranks_before(other, best)) best = other;
    }
    if (lane == 0) {
      values[off[1] + p] = row[best.i * sx];
      indices[off[2] + p] = best.i;
    }
    prev = best;
  }
}

template <class Fn>
void dispatch_index(const Tensor& index, Fn&& fn) {
  if (index.dtype() == DType::i64) fn(static_cast<const int64_t*>(index.data_ptr()));
  else fn(static_cast<const int32_t*>(index.data_ptr()));
}

template <class Fn>
void dispatch_width(size_t bytes, Fn&& fn) {
  switch (bytes) {
    case 1: fn(uint8_t{}); return;
    case 2: fn(uint16_t{}); return;
    case 4: fn(uint32_t{}); return;
    default: fn(uint64_t{}); return;
  }
}

}  // namespace

void index_select(const Tensor& x, int64_t dim, const Tensor& index, Tensor& out) {
  check_indices("index_select", index, x.size(dim));
  const int64_t n = out.numel();
  if (n == 0) return;
  // x seen through out's shape with a zero stride along `dim`; the kernel adds index[i] * stride.
  Shape xs = x.strides();
  xs[dim] = 0;
  Tensor xb(x.storage(), out.shape(), xs, x.offset(), x.dtype());
  const Descs<2> L = make_descs<2>(out.shape(), {&out, &xb});
  int64_t inner = 1;
  for (int64_t d = dim + 1; d < out.dim(); ++d) inner *= out.size(d);
  cudaStream_t s = stream_for(out.device());
  const int64_t row_bytes = inner * static_cast<int64_t>(x.itemsize());
  if (x.is_contiguous() && out.is_contiguous() && row_bytes % 16 == 0 && aligned_to(x.data_ptr(), 16) &&
      aligned_to(out.data_ptr(), 16)) {
    const int64_t units = row_bytes / 16, n_units = n / inner * units;
    dispatch_index(index, [&](auto pidx) {
      using I = std::remove_const_t<std::remove_pointer_t<decltype(pidx)>>;
      index_select_rows_kernel<I><<<blocks_for(n_units, kThreads), kThreads, 0, s>>>(
          static_cast<const uint4*>(x.data_ptr()), static_cast<uint4*>(out.data_ptr()), n_units, pidx,
          index.stride(0), units, out.size(dim), x.size(dim));
      CUDA_CHECK_LAUNCH();
    });
    return;
  }
  dispatch_width(x.itemsize(), [&](auto wtag) {
    using E = decltype(wtag);
    dispatch_index(index, [&](auto pidx) {
      using I = std::remove_const_t<std::remove_pointer_t<decltype(pidx)>>;
      index_select_kernel<E, I><<<blocks_for(n, kThreads), kThreads, 0, s>>>(
          static_cast<const E*>(x.data_ptr()), static_cast<E*>(out.data_ptr()), L, n, pidx, index.stride(0),
          std::max<int64_t>(inner, 1), out.size(dim), x.stride(dim));
      CUDA_CHECK_LAUNCH();
    });
  });
}

void index_add(Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  check_indices("scatter_add", index, out.size(dim));
  const int64_t n_idx = index.size(0);
  if (n_idx == 0 || out.numel() == 0) return;
  Tensor ob = out.select(dim, 0), sb = src.select(dim, 0);
  const int64_t n_cols = ob.numel();
  if (n_cols == 0) return;
  const Descs<2> L = make_descs<2>(ob.shape(), {&ob, &sb});
  cudaStream_t s = stream_for(out.device());
  dispatch_dtype(out.dtype(), [&](auto tag) {
    using T = dev_t<decltype(tag)>;
    dispatch_index(index, [&](auto pidx) {
      using I = std::remove_const_t<std::remove_pointer_t<decltype(pidx)>>;
      index_add_kernel<T, I><<<blocks_for(n_cols, kThreads), kThreads, 0, s>>>(
          static_cast<T*>(out.data_ptr()), static_cast<const T*>(src.data_ptr()), L, n_cols, pidx, index.stride(0),
          n_idx, out.stride(dim), src.stride(dim));
      CUDA_CHECK_LAUNCH();
    });
  });
}

void topk(const Tensor& x, int64_t k, Tensor& values, Tensor& indices) {
  Tensor xv = x.narrow(-1, 0, 1), vv = values.narrow(-1, 0, 1), iv = indices.narrow(-1, 0, 1);
  const int64_t rows = xv.numel(), n = x.size(-1);
  if (rows == 0 || k == 0) return;
  const Descs<3> L = make_descs<3>(xv.shape(), {&xv, &vv, &iv});
  cudaStream_t s = stream_for(x.device());
  const unsigned grid = static_cast<unsigned>((rows + kThreads / 32 - 1) / (kThreads / 32));
  dispatch_dtype(x.dtype(), [&](auto tag) {
    using T = dev_t<decltype(tag)>;
    topk_kernel<T><<<grid, kThreads, 0, s>>>(static_cast<const T*>(x.data_ptr()), static_cast<T*>(values.data_ptr()),
                                             static_cast<int64_t*>(indices.data_ptr()), L, rows, n, x.stride(-1), k);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace arq::cuda
