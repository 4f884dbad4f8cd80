// CPU kernels of the fused ops (engine/fused.h). Each mirrors the composition it replaces
// operation by operation (same f32/f64 steps, same roundings to the storage dtype, f64 sums in
// the same sequential order), so the fused results equal the composed ones bit for bit; what is
// saved is the memory traffic and the temporaries of the composition.
#include <cmath>
#include <vector>

#include "engine/fused.h"
#include "kernels/cpu/strided.h"
#include "kernels/cpu/vec_math.h"
#include "kernels/dispatch_float.h"

namespace arq::cpu {

namespace {

// exp as the CPU unary kernels evaluate it: exp_for_f32 for f32 compute, std::exp for f64.
template <class C>
ARQ_INLINE C exp_c(C v) {
  if constexpr (std::is_same_v<C, float>) return exp_for_f32(v);
  else return std::exp(v);
}

// Round a compute value to the storage type T and back (identity for f32 and f64): the
// composition stores every intermediate tensor in T.
template <class T, class C>
ARQ_INLINE C rt(C v) {
  if constexpr (std::is_same_v<acc_t<T>, T>) return v;
  else return load(store<T>(v));
}

// Elements per parallel chunk: exp-bound work.
constexpr int64_t kGrain = 1 << 13;

template <class T>
void swiglu_typed(const Tensor& gate, const Tensor& up, Tensor& h) {
  using C = acc_t<T>;
  const T* pg = static_cast<const T*>(gate.data_ptr());
  const T* pu = static_cast<const T*>(up.data_ptr());
  T* ph = static_cast<T*>(h.data_ptr());
  parallel_for(h.numel(), kGrain, [&](int64_t b, int64_t e) {
    for_isa([&](auto) ARQ_LAMBDA_INLINE {
      for (int64_t i = b; i < e; ++i) {
        const C x = load(pg[i]);
        const C s = rt<T>(C(x / (C(1) + exp_c(C(-x)))));  // silu(gate), stored in T by the composition
        ph[i] = store<T>(C(s * load(pu[i])));
      }
    });
  });
}

template <class T>
void swiglu_backward_typed(const Tensor& gate, const Tensor& up, const Tensor& g, Tensor& dgate, Tensor& dup) {
  using C = acc_t<T>;
  const T* pg = static_cast<const T*>(gate.data_ptr());
  const T* pu = static_cast<const T*>(up.data_ptr());
  const T* pd = static_cast<const T*>(g.data_ptr());
  T* pdg = static_cast<T*>(dgate.data_ptr());
  T* pdu = static_cast<T*>(dup.data_ptr());
  parallel_for(gate.numel(), kGrain, [&](int64_t b, int64_t e) {
    for_isa([&](auto) ARQ_LAMBDA_INLINE {
      for (int64_t i = b; i < e; ++i) {
        const C x = load(pg[i]), u = load(pu[i]), gi = load(pd[i]);
        const C ex = exp_c(C(-x));
        const C silu = rt<T>(C(x / (C(1) + ex)));        // forward value saved by ag::mul
        pdu[i] = store<T>(C(gi * silu));                 // ag::mul: d up = g ⊙ silu
        const C dsilu = rt<T>(C(gi * u));                // ag::mul: d silu = g ⊙ up
        // ag::silu: σ·(1 + x(1 − σ)), one stored tensor per engine op
        const C s = rt<T>(C(C(1) / (C(1) + ex)));
        const C a1 = rt<T>(C(C(1) - s));
        const C a2 = rt<T>(C(x * a1));
        const C a3 = rt<T>(C(a2 + C(1)));
        const C a4 = rt<T>(C(s * a3));
        pdg[i] = store<T>(C(dsilu * a4));
      }
    });
  });
}

// RMSNorm backward over rows of d, computing in C (f32; f64 for f64) as autograd's composed VJP
// does (autograd/ops_nn.cpp rms_norm): r = 1/sqrt(f32(1/d)·f32(Σx²) + f32(eps)),
// dx = (g·w)·r − x·(((r·r)·r)·m) with m = f32(Σ f32(g·w·x) / d), dw = f32(Σ_rows g·(x·r)); the
// sums run in f64, sequentially, as the CPU sum/mean/sum_squares kernels do.
template <class T>
void rms_norm_backward_typed(const Tensor& x, const Tensor& w, const Tensor& g, double eps, Tensor& dx, Tensor& dw) {
  using C = acc_t<T>;
  const int64_t rows = x.size(0), d = x.size(1);
  const T* px = static_cast<const T*>(x.data_ptr());
  const T* pw = static_cast<const T*>(w.data_ptr());
  const T* pg = static_cast<const T*>(g.data_ptr());
  T* pdx = dx.defined() ? static_cast<T*>(dx.data_ptr()) : nullptr;
  const C inv_d = static_cast<C>(1 / static_cast<double>(d)), eps_c = static_cast<C>(eps);
  std::vector<C> r_of(static_cast<size_t>(rows));  // [rows] r per row, for dw
  // Grains in elements as the elementwise kernels use (kElementwiseGrain): small chunks hand
  // work to pool threads that, on a busy machine, wait behind spinning OpenMP workers.
  parallel_for(rows, std::max<int64_t>(1, kElementwiseGrain / std::max<int64_t>(d, 1)), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const T* xr = px + r * d;
      const T* gr = pg + r * d;
      double ss = 0;
      for (int64_t j = 0; j < d; ++j) {
        const double v = static_cast<double>(load(xr[j]));
        ss += v * v;
      }
      const C a = C(inv_d * static_cast<C>(ss)) + eps_c;
      const C rr = C(1) / std::sqrt(a);
      r_of[static_cast<size_t>(r)] = rr;
      if (!pdx) continue;
      double macc = 0;
      for (int64_t j = 0; j < d; ++j) {
        const C gw = C(load(gr[j]) * load(pw[j]));
        macc += static_cast<double>(C(gw * load(xr[j])));
      }
      const C m = static_cast<C>(macc / static_cast<double>(d));
      const C r3m = C(C(C(rr * rr) * rr) * m);
      T* o = pdx + r * d;
      for (int64_t j = 0; j < d; ++j) {
        const C xv = load(xr[j]);
        const C gw = C(load(gr[j]) * load(pw[j]));
        o[j] = store<T>(C(C(gw * rr) - C(xv * r3m)));
      }
    }
  });
  if (!dw.defined()) return;
  T* pdw = static_cast<T*>(dw.data_ptr());
  // Columns in parallel, rows in order within a column: every dw[j] is one sequential f64 sum.
  parallel_for(d, std::max<int64_t>(64, kElementwiseGrain / std::max<int64_t>(rows, 1)), [&](int64_t j0, int64_t j1) {
    std::vector<double> acc(static_cast<size_t>(j1 - j0), 0.0);
    for (int64_t r = 0; r < rows; ++r) {
      const C rr = r_of[static_cast<size_t>(r)];
      const T* xr = px + r * d;
      const T* gr = pg + r * d;
      for (int64_t j = j0; j < j1; ++j)
        acc[static_cast<size_t>(j - j0)] += static_cast<double>(C(load(gr[j]) * C(load(xr[j]) * rr)));
    }
    for (int64_t j = j0; j < j1; ++j) pdw[j] = store<T>(static_cast<C>(acc[static_cast<size_t>(j - j0)]));
  });
}

// p − lr·sign(d): sign as arq::sign (NaN stays NaN), lr·s + 0 in C rounded to T as
// affine(sign(d), lr, 0) stores it, then the difference as arq::sub computes it.
template <class T>
void sign_step_typed(Tensor& p, const Tensor& d, double lr) {
  using C = acc_t<T>;
  T* pp = static_cast<T*>(p.data_ptr());
  const T* pd = static_cast<const T*>(d.data_ptr());
  const C s = static_cast<C>(lr);
  parallel_for(p.numel(), kElementwiseGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const C v = load(pd[i]);
      const C sg = v != v ? v : static_cast<C>((v > C(0)) - (v < C(0)));
      const C step = load(store<T>(C(s * sg + C(0))));
      pp[i] = store<T>(C(load(pp[i]) - step));
    }
  });
}

class CpuFused final : public FusedKernels {
 public:
  void swiglu(const Tensor& gate, const Tensor& up, Tensor& h) override {
    dispatch_float(gate.dtype(), "swiglu", "cpu", [&](auto tag) { swiglu_typed<decltype(tag)>(gate, up, h); });
  }
  void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& g, Tensor& dgate, Tensor& dup) override {
    dispatch_float(gate.dtype(), "swiglu_backward", "cpu",
                   [&](auto tag) { swiglu_backward_typed<decltype(tag)>(gate, up, g, dgate, dup); });
  }
  void rms_norm_backward(const Tensor& x, const Tensor& w, const Tensor& g, double eps, Tensor& dx, Tensor& dw) override {
    dispatch_float(x.dtype(), "rms_norm_backward", "cpu",
                   [&](auto tag) { rms_norm_backward_typed<decltype(tag)>(x, w, g, eps, dx, dw); });
  }
  void sign_step(Tensor& p, const Tensor& d, double lr) override {
    dispatch_float(p.dtype(), "sign_sgd_step_", "cpu", [&](auto tag) { sign_step_typed<decltype(tag)>(p, d, lr); });
  }
};

}  // namespace

}  // namespace arq::cpu

namespace arq {
FusedKernels& cpu_fused_kernels() {
  static cpu::CpuFused k;
  return k;
}
}  // namespace arq
