// CPU flash attention kernels (engine/flash_attention.h): the plain-loop reference. Every sum is
// in f64 over the visible keys of a row, with the exact softmax (no online rescaling), so the
// CUDA kernels' tiles, online softmax and 16-bit P / dS roundings are measured against exact
// arithmetic; only the outputs are rounded (to the activation dtype; lse to f32, f64 for f64).
// Parallel over (batch, kv head): each owns its rows of dK and dV.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "engine/flash_attention.h"
#include "kernels/cpu/strided.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/dispatch_float.h"

namespace arq::cpu {

namespace {

// Element (b, h, row, 0) of a [b, heads, rows, hd] view with a unit last stride.
template <class T>
struct Rows {
  T* p;
  int64_t sb, sh, sr;
  T* at(int64_t b, int64_t h, int64_t r) const { return p + b * sb + h * sh + r * sr; }
};
template <class T>
Rows<T> rows_of(const Tensor& t) {
  return {static_cast<T*>(t.data_ptr()), t.stride(0), t.stride(1), t.stride(2)};
}

// The keys [lo, hi) that query row i (absolute position past + i) sees.
struct Visible {
  int64_t past, skv, window;
  bool causal;
  void range(int64_t i, int64_t& lo, int64_t& hi) const {
    lo = 0;
    hi = skv;
    if (causal) {
      hi = std::min(skv, past + i + 1);
      if (window > 0) lo = std::max<int64_t>(0, past + i - window + 1);
    }
  }
};

template <class T>
double dot(const T* a, const T* b, int64_t n) {
  double s = 0;
  for (int64_t d = 0; d < n; ++d) s += double(load(a[d])) * double(load(b[d]));
  return s;
}

template <class T>
void forward_typed(const Tensor& q, const Tensor& k, const Tensor& v, const FlashAttentionParams& p, Tensor& o,
                   Tensor& lse) {
  using L = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const int64_t b = q.size(0), nh = q.size(1), s = q.size(2), hd = q.size(3), nkv = k.size(1), skv = k.size(2);
  const int64_t g = nh / nkv;
  const Rows<const T> Q = rows_of<const T>(q), K = rows_of<const T>(k), V = rows_of<const T>(v);
  const Rows<T> O = rows_of<T>(o);
  L* lse_p = static_cast<L*>(lse.data_ptr());   // [b, nh, s] contiguous
  const Visible vis{skv - s, skv, p.window, p.causal};
  parallel_for(b * nh, 1, [&](int64_t begin, int64_t end) {
    std::vector<double> x(static_cast<size_t>(skv)), acc(static_cast<size_t>(hd));
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t bi = bh / nh, h = bh % nh, hk = h / g;
      for (int64_t i = 0; i < s; ++i) {
        int64_t lo, hi;
        vis.range(i, lo, hi);
        const T* qi = Q.at(bi, h, i);
        double m = -std::numeric_limits<double>::infinity();
        for (int64_t j = lo; j < hi; ++j) {
          x[size_t(j)] = p.scaling * dot(qi, K.at(bi, hk, j), hd);
          m = std::max(m, x[size_t(j)]);
        }
        double sum = 0;
        for (int64_t j = lo; j < hi; ++j) sum += std::exp(x[size_t(j)] - m);
        const double l = m + std::log(sum);   // lo < hi always: key past + i is visible
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t j = lo; j < hi; ++j) {
          const double pj = std::exp(x[size_t(j)] - l);
          const T* vj = V.at(bi, hk, j);
          for (int64_t d = 0; d < hd; ++d) acc[size_t(d)] += pj * double(load(vj[d]));
        }
        T* oi = O.at(bi, h, i);
        for (int64_t d = 0; d < hd; ++d) oi[d] = store<T>(static_cast<acc_t<T>>(acc[size_t(d)]));
        lse_p[(bi * nh + h) * s + i] = static_cast<L>(l);
      }
    }
  });
}

template <class T>
void backward_typed(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o, const Tensor& lse,
                    const Tensor& dout, const FlashAttentionParams& p, Tensor& dq, Tensor& dk, Tensor& dv) {
  using L = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const int64_t b = q.size(0), nh = q.size(1), s = q.size(2), hd = q.size(3), nkv = k.size(1), skv = k.size(2);
  const int64_t g = nh / nkv;
  const Rows<const T> Q = rows_of<const T>(q), K = rows_of<const T>(k), V = rows_of<const T>(v);
  const Rows<const T> O = rows_of<const T>(o), DO = rows_of<const T>(dout);
  const Rows<T> DQ = rows_of<T>(dq), DK = rows_of<T>(dk), DV = rows_of<T>(dv);
  const L* lse_p = static_cast<const L*>(lse.data_ptr());
  const Visible vis{skv - s, skv, p.window, p.causal};
  parallel_for(b * nkv, 1, [&](int64_t begin, int64_t end) {
    std::vector<double> dkv(static_cast<size_t>(2 * skv * hd)), dqi(static_cast<size_t>(hd));
    for (int64_t bk = begin; bk < end; ++bk) {
      const int64_t bi = bk / nkv, hk = bk % nkv;
      std::fill(dkv.begin(), dkv.end(), 0.0);
      double* dkj = dkv.data();                  // [skv, hd]
      double* dvj = dkv.data() + skv * hd;       // [skv, hd]
      for (int64_t h = hk * g; h < (hk + 1) * g; ++h)
        for (int64_t i = 0; i < s; ++i) {
          int64_t lo, hi;
          vis.range(i, lo, hi);
          const T *qi = Q.at(bi, h, i), *doi = DO.at(bi, h, i);
          const double l = double(lse_p[(bi * nh + h) * s + i]);
          const double D = dot(doi, O.at(bi, h, i), hd);
          std::fill(dqi.begin(), dqi.end(), 0.0);
          for (int64_t j = lo; j < hi; ++j) {
            const T *kj = K.at(bi, hk, j), *vj = V.at(bi, hk, j);
            const double pj = std::exp(p.scaling * dot(qi, kj, hd) - l);
            const double ds = pj * (dot(doi, vj, hd) - D);
            for (int64_t d = 0; d < hd; ++d) {
              dqi[size_t(d)] += ds * double(load(kj[d]));
              dkj[j * hd + d] += ds * double(load(qi[d]));
              dvj[j * hd + d] += pj * double(load(doi[d]));
            }
          }
          T* out = DQ.at(bi, h, i);
          for (int64_t d = 0; d < hd; ++d) out[d] = store<T>(static_cast<acc_t<T>>(p.scaling * dqi[size_t(d)]));
        }
      for (int64_t j = 0; j < skv; ++j) {
        T *ok = DK.at(bi, hk, j), *ov = DV.at(bi, hk, j);
        for (int64_t d = 0; d < hd; ++d) {
          ok[d] = store<T>(static_cast<acc_t<T>>(p.scaling * dkj[j * hd + d]));
          ov[d] = store<T>(static_cast<acc_t<T>>(dvj[j * hd + d]));
        }
      }
    }
  });
}

class CpuFlashAttention final : public FlashAttentionKernels {
 public:
  bool supports(DType dt, int64_t head_dim) const override { return is_floating(dt) && head_dim > 0; }
  void forward(const Tensor& q, const Tensor& k, const Tensor& v, const FlashAttentionParams& p, Tensor& o,
               Tensor& lse) override {
    dispatch_float(q.dtype(), "flash_attention_forward", "cpu",
                   [&](auto tag) { forward_typed<decltype(tag)>(q, k, v, p, o, lse); });
  }
  void backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o, const Tensor& lse,
                const Tensor& dout, const FlashAttentionParams& p, Tensor& dq, Tensor& dk, Tensor& dv) override {
    dispatch_float(q.dtype(), "flash_attention_backward", "cpu",
                   [&](auto tag) { backward_typed<decltype(tag)>(q, k, v, o, lse, dout, p, dq, dk, dv); });
  }
};

}  // namespace

}  // namespace arq::cpu

namespace arq {

FlashAttentionKernels& cpu_flash_attention_kernels() {
  static cpu::CpuFlashAttention k;
  return k;
}

}  // namespace arq
