// Builders of the flash attention kernels (engine/flash_attention.h): checks, layouts, one call.
#include "engine/flash_attention.h"

#include <cstdint>

#include "engine/ops.h"

namespace arq {

namespace {
FlashAttentionKernels* g_flash_override[2] = {nullptr, nullptr};   // by DeviceType; test/benchmark only
}  // namespace

void set_flash_attention_kernels_override(DeviceType t, FlashAttentionKernels* k) {
  g_flash_override[static_cast<int>(t)] = k;
}

FlashAttentionKernels& flash_attention_kernels_for(const Device& d) {
  if (FlashAttentionKernels* o = g_flash_override[static_cast<int>(d.type)]) return *o;
  if (d.is_cpu()) return cpu_flash_attention_kernels();
  return cuda_flash_attention_kernels();
}

namespace {

DType lse_dtype(DType act) { return act == DType::f64 ? DType::f64 : DType::f32; }

struct Dims {
  int64_t b, nh, nkv, s, skv, hd;
};

Dims check_qkv(const char* op, const Tensor& q, const Tensor& k, const Tensor& v, const FlashAttentionParams& p) {
  check_attention_inputs(op, q, k, v, p.causal, p.window);
  const Dims d{q.size(0), q.size(1), k.size(1), q.size(2), k.size(2), q.size(3)};
  ARQ_CHECK(flash_attention_kernels_for(q.device()).supports(q.dtype(), d.hd), UnsupportedError, "[", op,
            "] no flash attention kernel on ", q.device().str(), " for ", q.str(),
            " (CUDA: bf16 or f16, head_dim 64 or 128); use ag::attention_core's chunked path");
  return d;
}

// A view the kernels can read: unit last stride, other strides multiples of 8 elements and a
// 16-byte aligned start (the CUDA kernels load 16 bytes at a time); else a contiguous copy.
Tensor kernel_view(const Tensor& t) {
  bool ok = t.stride(3) == 1 || t.size(3) <= 1;
  for (int64_t i = 0; i < 3 && ok; ++i) ok = t.size(i) <= 1 || t.stride(i) % 8 == 0;
  ok = ok && reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0;
  return ok ? t : t.contiguous();
}

// [b, h, n, hd] view of fresh [b, n, h, hd] memory (the layout the linears produce and consume).
Tensor seq_major(int64_t b, int64_t h, int64_t n, int64_t hd, DType dt, Device dev) {
  return Tensor::empty({b, n, h, hd}, dt, dev).permute({0, 2, 1, 3});
}

}  // namespace

void check_attention_inputs(const char* op, const Tensor& q, const Tensor& k, const Tensor& v, bool causal,
                            int64_t window) {
  ARQ_CHECK(q.defined() && k.defined() && v.defined(), ShapeError, "[", op, "] undefined q, k or v");
  ARQ_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, ShapeError, "[", op,
            "] q, k, v must be [b, heads, seq, head_dim], got ", q.str(), ", ", k.str(), ", ", v.str());
  const int64_t b = q.size(0), nh = q.size(1), nkv = k.size(1), s = q.size(2), skv = k.size(2), hd = q.size(3);
  ARQ_CHECK(k.shape() == v.shape() && k.size(0) == b && k.size(3) == hd && nkv > 0 && nh % nkv == 0, ShapeError, "[",
            op, "] q ", q.str(), ", k ", k.str(), ", v ", v.str(),
            " do not fit (k and v alike, same batch and head_dim, kv heads dividing query heads)");
  ARQ_CHECK(q.dtype() == k.dtype() && q.dtype() == v.dtype() && is_floating(q.dtype()), DTypeError, "[", op,
            "] q, k, v need one floating dtype, got ", q.str(), ", ", k.str(), ", ", v.str());
  ARQ_CHECK(q.device() == k.device() && q.device() == v.device(), DeviceError, "[", op,
            "] q, k, v on different devices: ", q.str(), ", ", k.str(), ", ", v.str());
  ARQ_CHECK(!causal || s <= skv, ShapeError, "[", op, "] causal attention needs queries (", s, ") <= keys (", skv,
            ")");
  ARQ_CHECK(window >= 0 && (window == 0 || causal), UsageError, "[", op, "] window ", window, " needs causal = true");
}

bool flash_attention_supported(const Tensor& q, const Tensor& k, const Tensor& v) {
  if (!q.defined() || !k.defined() || !v.defined() || q.dim() != 4 || k.dim() != 4 || k.shape() != v.shape())
    return false;
  if (q.dtype() != k.dtype() || q.dtype() != v.dtype() || q.device() != k.device() || q.device() != v.device())
    return false;
  if (k.size(3) != q.size(3) || k.size(1) == 0 || q.size(1) % k.size(1) != 0) return false;
  return flash_attention_kernels_for(q.device()).supports(q.dtype(), q.size(3));
}

FlashForward flash_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const FlashAttentionParams& p) {
  const Dims d = check_qkv("flash_attention_forward", q, k, v, p);
  FlashForward r;
  r.o = seq_major(d.b, d.nh, d.s, d.hd, q.dtype(), q.device());
  r.lse = Tensor::empty({d.b, d.nh, d.s}, lse_dtype(q.dtype()), q.device());
  if (r.o.numel() == 0) return r;
  ARQ_CHECK(d.skv > 0, ShapeError, "[flash_attention_forward] no keys: k ", k.str());
  flash_attention_kernels_for(q.device()).forward(kernel_view(q), kernel_view(k), kernel_view(v), p, r.o, r.lse);
  return r;
}

FlashGrads flash_attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                                    const Tensor& lse, const Tensor& dout, const FlashAttentionParams& p) {
  const Dims d = check_qkv("flash_attention_backward", q, k, v, p);
  for (const Tensor* t : {&o, &dout})
    ARQ_CHECK(t->defined() && t->shape() == q.shape() && t->dtype() == q.dtype() && t->device() == q.device(),
              ShapeError, "[flash_attention_backward] O and dO must match q ", q.str(), ", got ",
              t->defined() ? t->str() : std::string("undefined"));
  ARQ_CHECK(lse.defined() && lse.shape() == Shape({d.b, d.nh, d.s}) && lse.dtype() == lse_dtype(q.dtype()) &&
                lse.device() == q.device(),
            ShapeError, "[flash_attention_backward] lse must be ", dtype_name(lse_dtype(q.dtype())), " [", d.b, ", ",
            d.nh, ", ", d.s, "] on ", q.device().str(), ", got ", lse.defined() ? lse.str() : std::string("undefined"));
  FlashGrads g;
  g.dq = seq_major(d.b, d.nh, d.s, d.hd, q.dtype(), q.device());
  g.dk = seq_major(d.b, d.nkv, d.skv, d.hd, q.dtype(), q.device());
  g.dv = seq_major(d.b, d.nkv, d.skv, d.hd, q.dtype(), q.device());
  if (g.dq.numel() == 0 && g.dk.numel() == 0) return g;
  if (d.s == 0 || d.nh == 0) {   // no queries: nothing flows to k and v
    fill_(g.dk, 0.0);
    fill_(g.dv, 0.0);
    return g;
  }
  flash_attention_kernels_for(q.device())
      .backward(kernel_view(q), kernel_view(k), kernel_view(v), kernel_view(o), lse.contiguous(), kernel_view(dout),
                p, g.dq, g.dk, g.dv);
  return g;
}

}  // namespace arq
