// CUDA reductions over one axis (sum, mean, sum_squares, max, min, argmax), mirroring
// kernels/cpu/reduce.cpp: sums accumulate in f64 for floating inputs and i64 for integers;
// max/min/argmax let the first NaN win and otherwise keep the first index of the extreme.
//
// Work split (all fixed by shapes, so a result never depends on timing):
//   - reduced axis contiguous, or few outputs: a group of TPO threads per output (TPO = 32 for
//     short rows, 256 for long ones); rows longer than kChunk are cut into chunks whose partial
//     states a second kernel combines in chunk order;
//   - strided axis with many outputs (e.g. a column sum of [n, d]): one thread per output walking
//     the axis serially, so neighbouring threads read neighbouring columns.
#include "kernels/cuda/cuda_device.cuh"

namespace arq::cuda {

namespace {

inline constexpr int64_t kChunk = 1 << 16;  // elements of one row reduced by one block

template <class T, bool kSquares, bool kMean>
struct SumPolicy {
  using W = std::conditional_t<is_float_acc<T>, double, int64_t>;
  using State = W;
  __device__ static State empty() { return W(0); }
  __device__ static State step(State s, T x, int64_t) {
    const W v = static_cast<W>(load(x));
    // f64: v·v rounded before the add (no FMA contraction), as the CPU's `acc += v * v`.
    if constexpr (kSquares && std::is_same_v<W, double>) return __dadd_rn(s, __dmul_rn(v, v));
    else if constexpr (kSquares) return s + v * v;
    else return s + v;
  }
  __device__ static State combine(State a, State b) { return a + b; }
  __device__ static State shfl(State s, int o) {
    if constexpr (std::is_same_v<W, double>) return __shfl_xor_sync(0xffffffffu, s, o);
    else return static_cast<W>(__shfl_xor_sync(0xffffffffu, static_cast<long long>(s), o));
  }
  __device__ static void write(void* out, int64_t o, State s, int64_t n) {
    if constexpr (kMean) {
      const double r = n > 0 ? static_cast<double>(s) / static_cast<double>(n) : __longlong_as_double(0x7ff8000000000000ll);
      static_cast<T*>(out)[o] = store<T>(r);
    } else {
      static_cast<T*>(out)[o] = store<T>(s);
    }
  }
};

// State of max/min/argmax: the best value and its index (i < 0: no element seen yet).
template <class C>
struct ArgState {
  C v;
  long long i;
};

template <class T, bool kMax, bool kArg>
struct ArgPolicy {
  using C = acc_of<T>;
  using State = ArgState<C>;
  // a ranks before b: NaN first (lowest index among NaNs), then the extreme, then the lower index.
  __device__ static bool before(const State& a, const State& b) {
    const bool na = is_nan(a.v), nb = is_nan(b.v);
    if (na || nb) return (na && nb) ? a.i < b.i : na;
    if (a.v != b.v) return kMax ? a.v > b.v : a.v < b.v;
    return a.i < b.i;
  }
  __device__ static State empty() { return State{C(0), -1}; }
  __device__ static State combine(State a, State b) {
    if (a.i < 0) return b;
    if (b.i < 0) return a;
    return before(a, b) ? a : b;
  }
  __device__ static State step(State s, T x, int64_t j) { return combine(s, State{load(x), static_cast<long long>(j)}); }
  __device__ static State shfl(State s, int o) {
    State r;
    if constexpr (std::is_same_v<C, int64_t>) r.v = static_cast<C>(__shfl_xor_sync(0xffffffffu, static_cast<long long>(s.v), o));
    else r.v = __shfl_xor_sync(0xffffffffu, s.v, o);
    r.i = __shfl_xor_sync(0xffffffffu, s.i, o);
    return r;
  }
  __device__ static void write(void* out, int64_t o, State s, int64_t) {
    if constexpr (kArg) static_cast<int64_t*>(out)[o] = s.i;
    else static_cast<T*>(out)[o] = store<T>(s.v);
  }
};

template <class P>
__device__ typename P::State warp_combine(typename P::State s) {
  // Fixed butterfly: the same shape for every launch, so results are reproducible.
  for (int o = 16; o > 0; o >>= 1) s = P::combine(s, P::shfl(s, o));
  return s;
}

// grid.x = n_out * n_chunks / (256 / TPO); TPO threads per (output, chunk).
template <class P, class T, int TPO>
__global__ void reduce_group_kernel(const T* x, Descs<2> L, int64_t n_out, int64_t n, int64_t sx, int64_t n_chunks,
                                    void* out, typename P::State* partial) {
  using State = typename P::State;
  constexpr int kGroups = kThreads / TPO;
  const int g = threadIdx.x / TPO, t = threadIdx.x % TPO;
  const int64_t item = static_cast<int64_t>(blockIdx.x) * kGroups + g;  // (output, chunk) pair
  const int64_t o = item / n_chunks, c = item % n_chunks;
  State s = P::empty();
  if (o < n_out) {
    int64_t off[2];
    offsets_of(L, o, off);
    const T* row = x + off[1];
    const int64_t begin = c * kChunk, end = min(n, begin + kChunk);
    for (int64_t j = begin + t; j < end; j += TPO) s = P::step(s, row[j * sx], j);
  }
  s = warp_combine<P>(s);
  if constexpr (TPO > 32) {
    __shared__ State warp_states[TPO / 32];
    if ((threadIdx.x & 31) == 0) warp_states[threadIdx.x >> 5] = s;
    __syncthreads();
    if (threadIdx.x != 0) return;
    s = warp_states[0];
    for (int w = 1; w < TPO / 32; ++w) s = P::combine(s, warp_states[w]);
  } else {
    if (t != 0) return;
  }
  if (o >= n_out) return;
  if (n_chunks == 1) P::write(out, o, s, n);
  else partial[item] = s;
}

template <class P>
__global__ void reduce_finish_kernel(const typename P::State* partial, int64_t n_out, int64_t n_chunks, int64_t n,
                                     void* out) {
  ARQ_GRID_STRIDE(o, n_out) {
    typename P::State s = partial[o * n_chunks];
    for (int64_t c = 1; c < n_chunks; ++c) s = P::combine(s, partial[o * n_chunks + c]);
    P::write(out, o, s, n);
  }
}

template <class P, class T>
__global__ void reduce_serial_kernel(const T* x, Descs<2> L, int64_t n_out, int64_t n, int64_t sx, void* out) {
  ARQ_GRID_STRIDE(o, n_out) {
    int64_t off[2];
    offsets_of(L, o, off);
    const T* row = x + off[1];
    typename P::State s = P::empty();
    for (int64_t j = 0; j < n; ++j) s = P::step(s, row[j * sx], j);
    P::write(out, o, s, n);
  }
}

template <class P, class T>
void launch_reduce(const Tensor& x, int64_t axis, Tensor& out) {
  const int64_t n = x.size(axis), sx = x.stride(axis), n_out = out.numel();
  if (n_out == 0) return;
  Tensor xv = x.narrow(axis, 0, 1);
  const Descs<2> L = make_descs<2>(out.shape(), {&out, &xv});
  cudaStream_t s = stream_for(out.device());
  const T* px = static_cast<const T*>(x.data_ptr());
  void* po = out.data_ptr();
  if (sx != 1 && n_out >= 2048 && n <= kChunk) {
    reduce_serial_kernel<P, T><<<blocks_for(n_out, kThreads), kThreads, 0, s>>>(px, L, n_out, n, sx, po);
    CUDA_CHECK_LAUNCH();
    return;
  }
  if (n <= 4096) {
    constexpr int kGroups = kThreads / 32;
    const int64_t grid = (n_out + kGroups - 1) / kGroups;
    reduce_group_kernel<P, T, 32><<<static_cast<unsigned>(grid), kThreads, 0, s>>>(px, L, n_out, n, sx, 1, po, nullptr);
    CUDA_CHECK_LAUNCH();
    return;
  }
  const int64_t n_chunks = (n + kChunk - 1) / kChunk;
  Tensor partial;
  typename P::State* pp = nullptr;
  if (n_chunks > 1) {
    partial = Tensor::empty({n_out * n_chunks * static_cast<int64_t>(sizeof(typename P::State))}, DType::u8, out.device());
    pp = static_cast<typename P::State*>(partial.data_ptr());
  }
  reduce_group_kernel<P, T, kThreads><<<static_cast<unsigned>(n_out * n_chunks), kThreads, 0, s>>>(px, L, n_out, n, sx,
                                                                                                  n_chunks, po, pp);
  CUDA_CHECK_LAUNCH();
  if (n_chunks > 1) {
    reduce_finish_kernel<P><<<blocks_for(n_out, kThreads), kThreads, 0, s>>>(pp, n_out, n_chunks, n, po);
    CUDA_CHECK_LAUNCH();
  }
  // `partial` returns to the caching allocator here; the stream orders its reuse after the kernel.
}

template <class Host>
void reduce_typed(ReduceOp op, const Tensor& x, int64_t axis, Tensor& out) {
  using T = dev_t<Host>;
  switch (op) {
    case ReduceOp::sum: launch_reduce<SumPolicy<T, false, false>, T>(x, axis, out); return;
    case ReduceOp::max: launch_reduce<ArgPolicy<T, true, false>, T>(x, axis, out); return;
    case ReduceOp::min: launch_reduce<ArgPolicy<T, false, false>, T>(x, axis, out); return;
    case ReduceOp::argmax: launch_reduce<ArgPolicy<T, true, true>, T>(x, axis, out); return;
    case ReduceOp::mean:
    case ReduceOp::sum_squares:
      if constexpr (is_float_acc<T>) {
        if (op == ReduceOp::mean) launch_reduce<SumPolicy<T, false, true>, T>(x, axis, out);
        else launch_reduce<SumPolicy<T, true, false>, T>(x, axis, out);
        return;
      }
      break;
  }
  throw UnsupportedError(cat("[", reduce_name(op), "] not implemented on cuda for ", x.str()));
}

}  // namespace

void reduce(ReduceOp op, const Tensor& x, int64_t axis, Tensor& out) {
  dispatch_dtype(x.dtype(), [&](auto tag) { reduce_typed<decltype(tag)>(op, x, axis, out); });
}

}  // namespace arq::cuda
