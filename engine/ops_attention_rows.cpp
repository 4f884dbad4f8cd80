// Builders of the attention row kernels (engine/attention_rows.h): checks, layouts, one call.
#include "engine/attention_rows.h"

#include "engine/ops.h"

namespace arq {

namespace {
AttentionRowsKernels* g_rows_override[2] = {nullptr, nullptr};   // by DeviceType; test/benchmark only
}  // namespace

void set_attention_rows_kernels_override(DeviceType t, AttentionRowsKernels* k) {
  g_rows_override[static_cast<int>(t)] = k;
}

AttentionRowsKernels& attention_rows_kernels_for(const Device& d) {
  if (AttentionRowsKernels* o = g_rows_override[static_cast<int>(d.type)]) return *o;
  if (d.is_cpu()) return cpu_attention_rows_kernels();
  return cuda_attention_rows_kernels();
}

namespace {

DType compute_dtype(DType t) { return t == DType::f64 ? DType::f64 : DType::f32; }

// A last stride of 1 for mask / dead (their leading strides are handed to the kernel as they are).
Tensor row_major_last(const Tensor& t) { return !t.defined() || t.stride(-1) == 1 || t.size(-1) <= 1 ? t : t.contiguous(); }

void check_tile(const char* op, const Tensor& s, const Tensor& mask, const Tensor& dead, const AttentionRowsParams& prm) {
  ARQ_CHECK(s.defined() && s.dim() == 5, ShapeError, "[", op, "] scores must be [b, h, r, g, k], got ",
            s.defined() ? s.str() : std::string("undefined"));
  ARQ_CHECK(is_floating(s.dtype()), DTypeError, "[", op, "] scores need a floating dtype, got ", s.str());
  const int64_t b = s.size(0), r = s.size(2), k = s.size(4);
  if (mask.defined()) {
    ARQ_CHECK(mask.dim() == 3 && (mask.size(0) == b || mask.size(0) == 1) && mask.size(1) == r && mask.size(2) == k,
              ShapeError, "[", op, "] mask ", mask.str(), " does not fit scores ", s.str(), " (want [", b, " or 1, ", r,
              ", ", k, "])");
    ARQ_CHECK(mask.dtype() == compute_dtype(s.dtype()), DTypeError, "[", op, "] mask ", mask.str(), " must be ",
              dtype_name(compute_dtype(s.dtype())), " for scores ", s.str());
    ARQ_CHECK(mask.device() == s.device(), DeviceError, "[", op, "] mask ", mask.str(), " and scores ", s.str(),
              " on different devices");
  }
  if (dead.defined()) {
    ARQ_CHECK(dead.dim() == 2 && (dead.size(0) == b || dead.size(0) == 1) && dead.size(1) == r &&
                  dead.dtype() == DType::u8 && dead.device() == s.device(),
              ShapeError, "[", op, "] dead rows ", dead.str(), " must be u8 [", b, " or 1, ", r, "] on ",
              s.device().str());
  }
  ARQ_CHECK(prm.window >= 0 && (prm.window == 0 || prm.causal), UsageError, "[", op, "] window ", prm.window,
            " needs causal = true");
}

}  // namespace

Tensor attention_probs(const Tensor& scores, const Tensor& mask, const Tensor& dead, const AttentionRowsParams& prm) {
  check_tile("attention_probs", scores, mask, dead, prm);
  Tensor p = Tensor::empty(scores.shape(), scores.dtype(), scores.device());
  Tensor ds;
  if (p.numel() > 0)
    attention_rows_kernels_for(scores.device())
        .probs(scores.contiguous(), row_major_last(mask), row_major_last(dead), Tensor(), Tensor(), prm, p, ds);
  return p;
}

std::pair<Tensor, Tensor> attention_probs_backward(const Tensor& scores, const Tensor& mask, const Tensor& dead,
                                                   const Tensor& dp, const Tensor& d_row,
                                                   const AttentionRowsParams& prm) {
  check_tile("attention_probs_backward", scores, mask, dead, prm);
  ARQ_CHECK(dp.defined() && dp.shape() == scores.shape() && dp.dtype() == scores.dtype() &&
                dp.device() == scores.device(),
            ShapeError, "[attention_probs_backward] dP ", dp.defined() ? dp.str() : std::string("undefined"),
            " must match scores ", scores.str());
  const Shape row_shape{scores.size(0), scores.size(1), scores.size(2), scores.size(3)};
  ARQ_CHECK(d_row.defined() && d_row.shape() == row_shape && d_row.dtype() == compute_dtype(scores.dtype()) &&
                d_row.device() == scores.device(),
            ShapeError, "[attention_probs_backward] D ", d_row.defined() ? d_row.str() : std::string("undefined"),
            " must be ", dtype_name(compute_dtype(scores.dtype())), " [b, h, r, g] of scores ", scores.str());
  Tensor p = Tensor::empty(scores.shape(), scores.dtype(), scores.device());
  Tensor ds = Tensor::empty(scores.shape(), scores.dtype(), scores.device());
  if (p.numel() > 0)
    attention_rows_kernels_for(scores.device())
        .probs(scores.contiguous(), row_major_last(mask), row_major_last(dead), dp.contiguous(), d_row.contiguous(),
               prm, p, ds);
  return {p, ds};
}

}  // namespace arq
