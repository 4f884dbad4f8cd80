// CPU reductions over one axis, softmax, RMSNorm.
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/softmax_row.h"
#include "kernels/cpu/strided.h"
#include "kernels/cpu/vec_math.h"

namespace arq::cpu {

namespace {

// Wide accumulator: f64 for every floating type (one f64 add per element costs little next to the
// load, and makes f32 sums independent of length-dependent rounding), i64 for integers.
template <class T> using wide_t = std::conditional_t<std::is_floating_point_v<acc_t<T>>, double, int64_t>;

template <class T>
void reduce_typed(ReduceOp op, const Tensor& x, int64_t axis, Tensor& out) {
  using W = wide_t<T>;
  const int64_t n = x.size(axis), sx = x.stride(axis);
  Tensor xv = x.narrow(axis, 0, 1);
  auto L = make_layout<2>(out.shape(), {&out, &xv});
  const T* px = static_cast<const T*>(x.data_ptr());
  char* po = static_cast<char*>(out.data_ptr());
  const int64_t grain = std::max<int64_t>(1, kElementwiseGrain / std::max<int64_t>(n, 1));
  parallel_rows(L, grain, [&](const std::array<int64_t, 2>& off, int64_t cnt) {
    for (int64_t r = 0; r < cnt; ++r) {
      const T* p = px + off[1] + r * L.inner(1);
      const int64_t o = off[0] + r * L.inner(0);
      switch (op) {
        case ReduceOp::sum:
        case ReduceOp::mean:
        case ReduceOp::sum_squares: {
          W acc = 0;
          if (op == ReduceOp::sum_squares) {
            for (int64_t j = 0; j < n; ++j) { const W v = static_cast<W>(load(p[j * sx])); acc += v * v; }
          } else {
            for (int64_t j = 0; j < n; ++j) acc += static_cast<W>(load(p[j * sx]));
          }
          if (op == ReduceOp::mean) acc = n > 0 ? acc / static_cast<W>(n) : std::numeric_limits<double>::quiet_NaN();
          reinterpret_cast<T*>(po)[o] = convert<T>(acc);
          break;
        }
        case ReduceOp::max:
        case ReduceOp::min:
        case ReduceOp::argmax: {
          auto best = load(p[0]);
          int64_t bi = 0;
          const bool want_max = op != ReduceOp::min;
          for (int64_t j = 1; j < n; ++j) {
            const auto v = load(p[j * sx]);
            if (best != best) break;  // NaN wins and stays
            if (v != v || (want_max ? v > best : v < best)) { best = v; bi = j; }
          }
          if (op == ReduceOp::argmax) reinterpret_cast<int64_t*>(po)[o] = bi;
          else reinterpret_cast<T*>(po)[o] = store<T>(best);
          break;
        }
      }
    }
  });
}

// softmax_row_core and kLanes: kernels/cpu/softmax_row.h.

template <class T>
void softmax_f32_rows(const Tensor& x, Tensor& out, bool log) {
  const int64_t n = x.size(-1), sx = x.stride(-1);
  Tensor xv = x.narrow(-1, 0, 1), ov = out.narrow(-1, 0, 1);
  auto L = make_layout<2>(ov.shape(), {&ov, &xv});
  const T* px = static_cast<const T*>(x.data_ptr());
  T* po = static_cast<T*>(out.data_ptr());
  constexpr bool f32 = std::is_same_v<T, float>;
  parallel_rows(L, std::max<int64_t>(1, 4096 / std::max<int64_t>(n, 1)), [&](const std::array<int64_t, 2>& off, int64_t cnt) {
    std::vector<float> xbuf, ebuf;
    if (!f32 || sx != 1) xbuf.resize(n);
    if (!f32) ebuf.resize(n);
    for (int64_t r = 0; r < cnt; ++r) {
      const T* p = px + off[1] + r * L.inner(1);
      T* o = po + off[0] + r * L.inner(0);  // out is contiguous: its last stride is 1
      const float* xr;
      if constexpr (f32) {
        if (sx == 1) {
          xr = p;
        } else {
          for (int64_t j = 0; j < n; ++j) xbuf[j] = p[j * sx];
          xr = xbuf.data();
        }
      } else {
        for (int64_t j = 0; j < n; ++j) xbuf[j] = load(p[j * sx]);
        xr = xbuf.data();
      }
      float* er;
      if constexpr (f32) er = o;  // exps land in the output, then scale in place
      else er = ebuf.data();
      float m = 0;
      double s = 0;
      for_isa([&](auto) ARQ_LAMBDA_INLINE { softmax_row_core(xr, er, n, m, s); });
      if (log) {
        const float ls = static_cast<float>(std::log(s));
        for (int64_t j = 0; j < n; ++j) o[j] = store<T>(float(xr[j] - m - ls));
      } else {
        const float inv = static_cast<float>(1.0 / s);
        if constexpr (f32) {
          for (int64_t j = 0; j < n; ++j) o[j] = er[j] * inv;
        } else {
          for (int64_t j = 0; j < n; ++j) o[j] = store<T>(float(er[j] * inv));
        }
      }
    }
  });
}

// f32 RMSNorm over contiguous rows with a contiguous weight: the f64 sum of squares keeps
// kLanes partial sums (fixed combine order), the rest is the generic path's arithmetic.
void rms_norm_f32_contiguous(const Tensor& x, const Tensor& weight, double eps, Tensor& out) {
  const int64_t n = x.size(-1);
  Tensor xv = x.narrow(-1, 0, 1), ov = out.narrow(-1, 0, 1);
  auto L = make_layout<2>(ov.shape(), {&ov, &xv});
  const float* px = x.data<float>();
  const float* pw = weight.data<float>();
  float* po = out.data<float>();
  parallel_rows(L, std::max<int64_t>(1, 4096 / std::max<int64_t>(n, 1)), [&](const std::array<int64_t, 2>& off, int64_t cnt) {
    for (int64_t r = 0; r < cnt; ++r) {
      const float* p = px + off[1] + r * L.inner(1);
      float* o = po + off[0] + r * L.inner(0);
      for_isa([&](auto) ARQ_LAMBDA_INLINE {
        double acc[kLanes] = {};
        const int64_t nb = n / kLanes * kLanes;
        for (int64_t j = 0; j < nb; j += kLanes)
          for (int l = 0; l < kLanes; ++l) {
            const double v = p[j + l];
            acc[l] += v * v;
          }
        for (int64_t j = nb; j < n; ++j) {
          const double v = p[j];
          acc[j - nb] += v * v;
        }
        const double ss = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
        const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
        // HF order: normalize in f32 (already the input dtype), then multiply by the weight.
        for (int64_t j = 0; j < n; ++j) o[j] = pw[j] * (p[j] * inv);
      });
    }
  });
}

}  // namespace

void reduce(ReduceOp op, const Tensor& x, int64_t axis, Tensor& out) {
  dispatch_dtype(x.dtype(), [&](auto tag) { reduce_typed<decltype(tag)>(op, x, axis, out); });
}

void softmax(const Tensor& x, Tensor& out, bool log) {
  dispatch_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<acc_t<T>, float>) {
      softmax_f32_rows<T>(x, out, log);
    } else if constexpr (std::is_floating_point_v<acc_t<T>>) {
      using C = acc_t<T>;
      const int64_t n = x.size(-1), sx = x.stride(-1);
      Tensor xv = x.narrow(-1, 0, 1), ov = out.narrow(-1, 0, 1);
      auto L = make_layout<2>(ov.shape(), {&ov, &xv});
      const T* px = static_cast<const T*>(x.data_ptr());
      T* po = static_cast<T*>(out.data_ptr());
      parallel_rows(L, std::max<int64_t>(1, 4096 / std::max<int64_t>(n, 1)), [&](const std::array<int64_t, 2>& off, int64_t cnt) {
        std::vector<C> buf(n);
        for (int64_t r = 0; r < cnt; ++r) {
          const T* p = px + off[1] + r * L.inner(1);
          T* o = po + off[0] + r * L.inner(0);
          C m = -std::numeric_limits<C>::infinity();
          for (int64_t j = 0; j < n; ++j) { buf[j] = load(p[j * sx]); m = buf[j] > m ? buf[j] : m; }
          if (m == -std::numeric_limits<C>::infinity()) m = 0;  // all -inf: avoid inf - inf
          double s = 0;
          for (int64_t j = 0; j < n; ++j) s += std::exp(static_cast<double>(buf[j] - m));
          if (log) {
            const C ls = static_cast<C>(std::log(s));
            for (int64_t j = 0; j < n; ++j) o[j] = store<T>(C(buf[j] - m - ls));
          } else {
            const C inv = static_cast<C>(1.0 / s);
            for (int64_t j = 0; j < n; ++j) o[j] = store<T>(C(std::exp(buf[j] - m) * inv));
          }
        }
      });
    }
  });
}

void rms_norm(const Tensor& x, const Tensor& weight, double eps, Tensor& out) {
  dispatch_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, float>) {
      if (x.stride(-1) == 1 && weight.stride(0) == 1) {
        rms_norm_f32_contiguous(x, weight, eps, out);
        return;
      }
    }
    if constexpr (std::is_floating_point_v<acc_t<T>>) {
      using C = acc_t<T>;
      const int64_t n = x.size(-1), sx = x.stride(-1), sw = weight.stride(0);
      Tensor xv = x.narrow(-1, 0, 1), ov = out.narrow(-1, 0, 1);
      auto L = make_layout<2>(ov.shape(), {&ov, &xv});
      const T* px = static_cast<const T*>(x.data_ptr());
      const T* pw = static_cast<const T*>(weight.data_ptr());
      T* po = static_cast<T*>(out.data_ptr());
      parallel_rows(L, std::max<int64_t>(1, 4096 / std::max<int64_t>(n, 1)), [&](const std::array<int64_t, 2>& off, int64_t cnt) {
        for (int64_t r = 0; r < cnt; ++r) {
          const T* p = px + off[1] + r * L.inner(1);
          T* o = po + off[0] + r * L.inner(0);
          double ss = 0;
          for (int64_t j = 0; j < n; ++j) { const double v = load(p[j * sx]); ss += v * v; }
          const C inv = static_cast<C>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
          // HF order: normalize in f32, round to the input dtype, then multiply by the weight.
          for (int64_t j = 0; j < n; ++j) {
            const C normed = load(store<T>(C(load(p[j * sx]) * inv)));
            o[j] = store<T>(C(load(pw[j * sw]) * normed));
          }
        }
      });
    }
  });
}

}  // namespace arq::cpu
