// The kernel interface every device implements (kernels/cpu, kernels/cuda).
//
// Builders in engine/ops_*.cpp check shapes and dtypes, allocate the output and call one of
// these methods; a kernel may assume what the builder checked:
//   - `out` is freshly allocated and contiguous unless the method says otherwise;
//   - inputs are on the same device as `out`, and may be arbitrary strided views
//     (including stride-0 broadcast views) unless the method says "contiguous".
// A backend that lacks an op throws UnsupportedError("<op>: not implemented on <device>").
#pragma once

#include <cstdint>
#include <vector>

#include "engine/tensor.h"

namespace arq {

enum class UnaryOp : uint8_t {
  neg, abs, exp, log, sqrt, rsqrt, sigmoid, silu, tanh, sign, round, floor,
  // parameterized: pow (p0 = exponent), clamp (p0 = lo, p1 = hi), affine (p0 * x + p1)
  pow, clamp, affine,
};
const char* unary_name(UnaryOp op);

enum class BinaryOp : uint8_t {
  add, sub, mul, div, minimum, maximum, pow,
  eq, ne, lt, le, gt, ge,  // comparisons write u8 0/1
};
const char* binary_name(BinaryOp op);
inline bool is_comparison(BinaryOp op) { return op >= BinaryOp::eq; }

enum class ReduceOp : uint8_t { sum, mean, max, min, argmax, sum_squares };
const char* reduce_name(ReduceOp op);

enum class RopeStyle : uint8_t {
  rotate_half,  // pairs (x[j], x[j + D/2]) — HF Llama/Qwen/Mistral layout
  interleaved,  // pairs (x[2j], x[2j + 1]) — GGUF / GPT-J layout
};

enum class RandomKind : uint8_t { uniform, normal };

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;

  // dst[...] = cast(src[...]); same shape; dst may be a strided view; src may live on another
  // device (the backend of the non-CPU side performs cross-device copies).
  virtual void copy(const Tensor& src, Tensor& dst) = 0;
  // dst[...] = value (cast to dst's dtype); dst may be a strided view.
  virtual void fill(Tensor& dst, double value) = 0;

  // out = op(x) elementwise; x has out's shape (possibly strided); floating dtypes only except
  // neg/abs/sign/clamp which also accept integers.
  virtual void unary(UnaryOp op, const Tensor& x, Tensor& out, double p0, double p1) = 0;
  // out = a op b; a and b are already broadcast (expanded) to out's shape and share a dtype.
  virtual void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) = 0;
  // out = cond ? a : b; all three expanded to out's shape; cond is u8.
  virtual void where(const Tensor& cond, const Tensor& a, const Tensor& b, Tensor& out) = 0;

  // Reduce x over `axis`; out has x's shape with shape[axis] = 1 (keepdim layout, contiguous).
  // sum/mean/sum_squares accumulate in f64 for f64 inputs and f32 with f64 partials otherwise.
  virtual void reduce(ReduceOp op, const Tensor& x, int64_t axis, Tensor& out) = 0;

  // out[b] = a[b] · bm[b] for a [B, m, k], bm [B, k, n], out [B, m, n] (contiguous).
  // a and bm may be strided (any batch stride, row- or column-major matrices).
  virtual void matmul(const Tensor& a, const Tensor& bm, Tensor& out) = 0;

  // Softmax / log-softmax over the last axis of x [..., n].
  virtual void softmax(const Tensor& x, Tensor& out, bool log) = 0;
  // out = x * rsqrt(mean(x², -1) + eps) * weight; x [..., d], weight [d].
  virtual void rms_norm(const Tensor& x, const Tensor& weight, double eps, Tensor& out) = 0;
  // Rotary embedding: x [..., d]; cos/sin expanded to [..., d/2] (x's leading shape).
  virtual void rope(const Tensor& x, const Tensor& cos, const Tensor& sin, RopeStyle style,
                    Tensor& out) = 0;

  // out[i, :] = x.select(dim, index[i]) along `dim`: index is 1-D i64/i32; out contiguous.
  virtual void index_select(const Tensor& x, int64_t dim, const Tensor& index, Tensor& out) = 0;
  // out (already holding a copy of the base) += src scattered along dim at `index` (1-D):
  // out.select(dim, index[i]) += src.select(dim, i). Deterministic (serial over i per column).
  virtual void index_add(Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) = 0;
  // Top-k over the last axis, descending; ties keep the lower index first. values/indices [..., k].
  virtual void topk(const Tensor& x, int64_t k, Tensor& values, Tensor& indices) = 0;

  // out[i] = start + i * step.
  virtual void arange(double start, double step, Tensor& out) = 0;
  // Counter-based (Philox4x32-10) random numbers: element i of `out` depends only on (seed, i),
  // so every thread count and device gives the same stream.
  virtual void random(RandomKind kind, uint64_t seed, double a, double b, Tensor& out) = 0;

  virtual void synchronize() {}
};

// The backend of a device. CPU is always there; CUDA throws DeviceError when built without it.
Backend& backend_for(const Device& d);
Backend& cpu_backend();   // defined in kernels/cpu
Backend& cuda_backend();  // defined in kernels/cuda (real or stub)
// Test/benchmark only: while set, backend_for(any device of type `t`) returns `b` instead of the
// built-in backend (bench/quant/bench_iteration_model.cpp installs a tracer that forwards to
// cpu_backend()). nullptr restores the default. Not synchronized: set it while no op runs.
void set_backend_override(DeviceType t, Backend* b);

// Runtime facts about the CUDA build (false/0 when built without CUDA).
bool cuda_compiled();
int cuda_device_count();
std::string cuda_device_name(int index);
// Page-locked ("pinned") host memory, so host<->device copies run by DMA without the driver's
// staging copy (cudaHostAlloc). Freed blocks are kept for reuse (pinning costs ~0.2 s per GiB):
// cuda_pinned_release hands the cached ones back. nullptr when built without CUDA or when no
// device is visible; callers then use ordinary host memory.
void* cuda_pinned_alloc(size_t nbytes);
void cuda_pinned_free(void* p);   // p from cuda_pinned_alloc, back to the cache
void cuda_pinned_release();

// CPU threads used by kernels: ARQ_NUM_THREADS, else the machine's hardware concurrency.
int num_threads();
void set_num_threads(int n);

}  // namespace arq
