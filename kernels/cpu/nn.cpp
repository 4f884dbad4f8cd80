// CPU kernels: rotary embedding, gathers/scatters, top-k, arange, random.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "engine/philox.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/strided.h"

namespace arq::cpu {

namespace {
int64_t index_at(const Tensor& index, int64_t i) {
  const int64_t s = index.stride(0);
  if (index.dtype() == DType::i64) return static_cast<const int64_t*>(index.data_ptr())[i * s];
  return static_cast<const int32_t*>(index.data_ptr())[i * s];
}

void check_indices(const char* op, const Tensor& index, int64_t limit) {
  for (int64_t i = 0; i < index.size(0); ++i) {
    const int64_t v = index_at(index, i);
    ARQ_CHECK(v >= 0 && v < limit, ShapeError, "[", op, "] index ", v, " at position ", i, " out of range [0, ", limit, ")");
  }
}
}  // namespace

void rope(const Tensor& x, const Tensor& cos, const Tensor& sin, RopeStyle style, Tensor& out) {
  dispatch_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_floating_point_v<acc_t<T>>) {
      using C = acc_t<T>;
      const int64_t d = x.size(-1), h = d / 2;
      // Iterate over pair positions: x viewed as [..., h] through the first half (or even lanes).
      Tensor xa = style == RopeStyle::rotate_half ? x.narrow(-1, 0, h) : x.slice(-1, 0, d, 2);
      Tensor oa = style == RopeStyle::rotate_half ? out.narrow(-1, 0, h) : out.slice(-1, 0, d, 2);
      const int64_t xoff = style == RopeStyle::rotate_half ? h * x.stride(-1) : x.stride(-1);
      const int64_t ooff = style == RopeStyle::rotate_half ? h * out.stride(-1) : out.stride(-1);
      auto L = make_layout<4>(xa.shape(), {&oa, &xa, &cos, &sin});
      T* po = static_cast<T*>(out.data_ptr());
      const T* px = static_cast<const T*>(x.data_ptr());
      const T* pc = static_cast<const T*>(cos.data_ptr());
      const T* ps = static_cast<const T*>(sin.data_ptr());
      parallel_rows(L, kElementwiseGrain, [&](const std::array<int64_t, 4>& off, int64_t n) {
        for (int64_t i = 0; i < n; ++i) {
          const int64_t io = off[0] + i * L.inner(0), ix = off[1] + i * L.inner(1);
          const C a = load(px[ix]), b = load(px[ix + xoff]);
          const C c = load(pc[off[2] + i * L.inner(2)]), s = load(ps[off[3] + i * L.inner(3)]);
          po[io] = store<T>(C(a * c - b * s));
          po[io + ooff] = store<T>(C(b * c + a * s));
        }
      });
    }
  });
}

void index_select(const Tensor& x, int64_t dim, const Tensor& index, Tensor& out) {
  check_indices("index_select", index, x.size(dim));
  const int64_t n = index.size(0);
  parallel_for(n, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      Tensor dst = out.select(dim, i);
      copy(x.select(dim, index_at(index, i)), dst);
    }
  });
}

void index_add(Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  check_indices("scatter_add", index, out.size(dim));
  dispatch_dtype(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    // Serial over i, so repeated indices accumulate in a fixed order (deterministic).
    for (int64_t i = 0; i < index.size(0); ++i) {
      Tensor dst = out.select(dim, index_at(index, i));
      Tensor s = src.select(dim, i);
      auto L = make_layout<2>(dst.shape(), {&dst, &s});
      T* pd = static_cast<T*>(dst.data_ptr());
      const T* ps = static_cast<const T*>(s.data_ptr());
      parallel_rows(L, kElementwiseGrain, [&](const std::array<int64_t, 2>& off, int64_t cnt) {
        for (int64_t j = 0; j < cnt; ++j) {
          T& o = pd[off[0] + j * L.inner(0)];
          o = store<T>(load(o) + load(ps[off[1] + j * L.inner(1)]));
        }
      });
    }
  });
}

void topk(const Tensor& x, int64_t k, Tensor& values, Tensor& indices) {
  dispatch_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const int64_t n = x.size(-1), sx = x.stride(-1);
    Tensor xv = x.narrow(-1, 0, 1), vv = values.narrow(-1, 0, 1), iv = indices.narrow(-1, 0, 1);
    auto L = make_layout<3>(xv.shape(), {&xv, &vv, &iv});
    const T* px = static_cast<const T*>(x.data_ptr());
    T* pv = static_cast<T*>(values.data_ptr());
    int64_t* pi = static_cast<int64_t*>(indices.data_ptr());
    parallel_rows(L, 1, [&](const std::array<int64_t, 3>& off, int64_t cnt) {
      std::vector<int64_t> order(n);
      for (int64_t r = 0; r < cnt; ++r) {
        const T* p = px + off[0] + r * L.inner(0);
        std::iota(order.begin(), order.end(), 0);
        auto greater = [&](int64_t a, int64_t b) {
          const auto va = load(p[a * sx]), vb = load(p[b * sx]);
          const bool na = va != va, nb = vb != vb;  // NaN ranks above everything
          if (na != nb) return na;
          if (!na && va != vb) return va > vb;
          return a < b;
        };
        std::partial_sort(order.begin(), order.begin() + k, order.end(), greater);
        for (int64_t j = 0; j < k; ++j) {
          pv[off[1] + r * L.inner(1) + j] = p[order[j] * sx];
          pi[off[2] + r * L.inner(2) + j] = order[j];
        }
      }
    });
  });
}

void arange(double start, double step, Tensor& out) {
  dispatch_dtype(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* p = static_cast<T*>(out.data_ptr());
    parallel_for(out.numel(), kElementwiseGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) p[i] = convert<T>(start + static_cast<double>(i) * step);
    });
  });
}

void random(RandomKind kind, uint64_t seed, double a, double b, Tensor& out) {
  dispatch_dtype(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* p = static_cast<T*>(out.data_ptr());
    const bool f64 = out.dtype() == DType::f64;
    parallel_for(out.numel(), 4096, [&](int64_t bgn, int64_t end) {
      for (int64_t i = bgn; i < end; ++i) {
        const Philox4 r = philox4x32_10(static_cast<uint64_t>(i), seed);
        double v;
        if (kind == RandomKind::uniform) {
          const double u = f64 ? philox_uniform01_f64(r.v[0], r.v[1]) : philox_uniform01(r.v[0]);
          v = a + (b - a) * u;
        } else {
          // Box-Muller on two 53-bit uniforms; 1 - u1 is in (0, 1], so the log is finite.
          const double u1 = philox_uniform01_f64(r.v[0], r.v[1]), u2 = philox_uniform01_f64(r.v[2], r.v[3]);
          v = a + b * std::sqrt(-2.0 * std::log(1.0 - u1)) * std::cos(6.283185307179586 * u2);
        }
        p[i] = convert<T>(v);
      }
    });
  });
}

}  // namespace arq::cpu
