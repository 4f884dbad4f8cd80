// k-quant super-blocks (q2_K, q3_K, q4_K, q5_K, q6_K, q8_K): llama.cpp's reference encoders
// without an importance matrix, and ggml's decoders (spec formats.md §4.4–4.5).
//
// Each super-block of 256 elements is fitted in sub-blocks (16 or 32 elements) by a small
// least-squares search, then the sub-block scales (and mins) are themselves quantized to 4, 6 or
// 8 bits against one fp16 super-scale, and every element is requantized with the stored values.
// Bit-exactness with llama-quantize needs the searches to do the same float operations in the
// same order (left-to-right products, sequential sums, no FMA), so they are written out plainly.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/dtype.h"
#include "io/ggml_blocks.h"

namespace arq::io {

namespace {

// Blocks whose largest value is below this are written as zeros (ggml's GROUP_MAX_EPS).
constexpr float kGroupMaxEps = 1e-15f;

inline uint16_t h(float v) { return f32_to_f16_bits(v); }
inline float f(uint16_t v) { return f16_bits_to_f32(v); }
inline int nint(float v) { return ggml_nearest_int(v); }
inline int clampi(int v, int lo, int hi) { return std::max(lo, std::min(hi, v)); }

// Signed fit q = round(x / s) with q ∈ [−nmax, nmax−1], weights x² (ggml `make_qx_quants` with
// rmse_type 1 and no importance weights). Tries 19 scales around −nmax/max and keeps the one with
// the best weighted least-squares fit. Writes L = q + nmax; returns the scale.
float fit_signed_rmse(int n, int nmax, const float* x, int8_t* L) {
  float amax = 0.f, max = 0.f;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    std::fill(L, L + n, int8_t{0});
    return 0.f;
  }
  float iscale = static_cast<float>(-nmax) / max;
  float sumlx = 0.f, suml2 = 0.f;
  for (int i = 0; i < n; ++i) {
    const int l = clampi(nint(iscale * x[i]), -nmax, nmax - 1);
    L[i] = static_cast<int8_t>(l + nmax);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * static_cast<float>(l);
    suml2 += w * static_cast<float>(l) * static_cast<float>(l);
  }
  float scale = suml2 != 0.f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max;
    sumlx = suml2 = 0.f;
    for (int i = 0; i < n; ++i) {
      const int l = clampi(nint(iscale * x[i]), -nmax, nmax - 1);
      const float w = x[i] * x[i];
      sumlx += w * x[i] * static_cast<float>(l);
      suml2 += w * static_cast<float>(l) * static_cast<float>(l);
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(nmax + clampi(nint(iscale * x[i]), -nmax, nmax - 1));
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// Signed fit for q3_K (ggml `make_q3_quants` with do_rmse): start from round(−nmax·x/max), then
// up to 5 sweeps of coordinate descent, each level moved to its best value given the others
// when that improves the weighted (x²) least-squares fit. Writes L = q + nmax; returns the scale.
float fit_signed_coordinate(int n, int nmax, const float* x, int8_t* L) {
  float amax = 0.f, max = 0.f;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    std::fill(L, L + n, int8_t{0});
    return 0.f;
  }
  const float iscale = static_cast<float>(-nmax) / max;
  float sumlx = 0.f, suml2 = 0.f;
  for (int i = 0; i < n; ++i) {
    const int l = clampi(nint(iscale * x[i]), -nmax, nmax - 1);
    L[i] = static_cast<int8_t>(l);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * static_cast<float>(l);
    suml2 += w * static_cast<float>(l) * static_cast<float>(l);
  }
  for (int sweep = 0; sweep < 5; ++sweep) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      const float li = static_cast<float>(L[i]);
      float slx = sumlx - w * x[i] * li;
      if (slx > 0) {
        float sl2 = suml2 - w * li * li;
        const int new_l = clampi(nint(x[i] * sl2 / slx), -nmax, nmax - 1);
        if (new_l != L[i]) {
          const float nl = static_cast<float>(new_l);
          slx += w * x[i] * nl;
          sl2 += w * nl * nl;
          if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = static_cast<int8_t>(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (n_changed == 0) break;
  }
  for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(L[i] + nmax);
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

struct AsymSearch {
  float rmin, rdelta;
  int nstep;
  bool use_mad;   // weighted |error| instead of squared error
};

// Asymmetric fit x ≈ scale·q − min_out, q ∈ [0, nmax], with min ≤ 0 (ggml `make_qkx2_quants`):
// tries nstep + 1 inverse scales (rmin + rdelta·is + nmax)/(max − min), solves the weighted
// least-squares scale/offset for each rounding, keeps the lowest weighted error.
float fit_asym(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* min_out,
               const AsymSearch& p) {
  uint8_t Laux[32];
  float min = x[0], max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    std::fill(L, L + n, uint8_t{0});
    *min_out = -min;
    return 0.f;
  }
  const float nm = static_cast<float>(nmax);
  float iscale = nm / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    L[i] = static_cast<uint8_t>(clampi(nint(iscale * (x[i] - min)), 0, nmax));
    float diff = scale * static_cast<float>(L[i]) + min - x[i];
    diff = p.use_mad ? std::fabs(diff) : diff * diff;
    best_error += weights[i] * diff;
  }
  for (int is = 0; is <= p.nstep; ++is) {
    iscale = (p.rmin + p.rdelta * static_cast<float>(is) + nm) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = clampi(nint(iscale * (x[i] - min)), 0, nmax);
      Laux[i] = static_cast<uint8_t>(l);
      const float w = weights[i];
      const float lf = static_cast<float>(l);
      sum_l += w * lf;
      sum_l2 += w * lf * lf;
      sum_xl += w * lf * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * static_cast<float>(Laux[i]) + this_min - x[i];
        diff = p.use_mad ? std::fabs(diff) : diff * diff;
        cur_error += weights[i] * diff;
      }
      if (cur_error < best_error) {
        std::copy(Laux, Laux + n, L);
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *min_out = -min;
  return scale;
}

// The 6-bit scale/min of sub-block j from the 12 packed bytes of q4_K/q5_K.
inline void scale_min_k4(int j, const uint8_t* q, uint8_t& sc, uint8_t& mn) {
  if (j < 4) {
    sc = q[j] & 63;
    mn = q[j + 4] & 63;
  } else {
    sc = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    mn = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// Pack 6-bit scale ls and min lm of sub-block j (inverse of scale_min_k4). `q` starts zeroed
// for j < 4 entries, which are written before j ≥ 4 ORs their top bits in.
inline void pack_scale_min_k4(int j, uint8_t ls, uint8_t lm, uint8_t* q) {
  if (j < 4) {
    q[j] = ls;
    q[j + 4] = lm;
  } else {
    q[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
    q[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
    q[j] |= static_cast<uint8_t>((lm >> 4) << 6);
  }
}

// 2-bit levels L[256] → qs[64]: in each 128-element half, byte t holds L[t], L[t+32], L[t+64],
// L[t+96] at bits 0, 2, 4, 6.
inline void pack_2bit(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < kQK_K; j += 128)
    for (int l = 0; l < 32; ++l)
      qs[j / 4 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

// 6-bit signed scale s (stored + 32) of sub-block j in q3_K's 12 scale bytes.
inline int q3_scale(const uint8_t* sc, int j) {
  const int lo = j < 8 ? (sc[j] & 0xF) : (sc[j - 8] >> 4);
  const int hi = (sc[8 + j % 4] >> (2 * (j / 4))) & 3;
  return (lo | (hi << 4)) - 32;
}

// Asymmetric k-quants with 6-bit scales (q4_K: nmax 15; q5_K: nmax 31).
template <int kNmax>
void fit_k4_superblock(const float* x, uint16_t& d_out, uint16_t& dmin_out, uint8_t* scales, uint8_t* L,
                       const AsymSearch& search) {
  float weights[32];
  float mins[kQK_K / 32], sub_scales[kQK_K / 32];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < kQK_K / 32; ++j) {
    const float* xs = x + 32 * j;
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += xs[l] * xs[l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(xs[l]);
    sub_scales[j] = fit_asym(32, kNmax, xs, weights, L + 32 * j, &mins[j], search);
    if (sub_scales[j] > max_scale) max_scale = sub_scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  std::memset(scales, 0, 12);
  for (int j = 0; j < kQK_K / 32; ++j) {
    const auto ls = static_cast<uint8_t>(std::min(63, static_cast<int>(static_cast<uint8_t>(nint(inv_scale * sub_scales[j])))));
    const auto lm = static_cast<uint8_t>(std::min(63, static_cast<int>(static_cast<uint8_t>(nint(inv_min * mins[j])))));
    pack_scale_min_k4(j, ls, lm, scales);
  }
  d_out = h(max_scale / 63.f);
  dmin_out = h(max_min / 63.f);
  for (int j = 0; j < kQK_K / 32; ++j) {
    uint8_t sc, m;
    scale_min_k4(j, scales, sc, m);
    const float d = f(d_out) * static_cast<float>(sc);
    if (d == 0.f) continue;  // keeps the levels of the sub-block search, as ggml does
    const float dm = f(dmin_out) * static_cast<float>(m);
    for (int ii = 0; ii < 32; ++ii) L[32 * j + ii] = static_cast<uint8_t>(clampi(nint((x[32 * j + ii] + dm) / d), 0, kNmax));
  }
}

}  // namespace

// ---- q2_K ------------------------------------------------------------------------------------
void encode_q2_K(const float* x, void* blocks, int64_t n) {
  auto* y = static_cast<BlockQ2_K*>(blocks);
  uint8_t L[kQK_K];
  float weights[16], mins[kQK_K / 16], scales[kQK_K / 16];
  const float q4scale = 15.f;
  const AsymSearch search{-0.5f, 0.1f, 15, true};
  for (int64_t b = 0; b < n / kQK_K; ++b, x += kQK_K) {
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < kQK_K / 16; ++j) {
      for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
      scales[j] = fit_asym(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], search);
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    if (max_scale > 0) {
      const float iscale = q4scale / max_scale;
      for (int j = 0; j < kQK_K / 16; ++j) y[b].scales[j] = static_cast<uint8_t>(nint(iscale * scales[j]));
      y[b].d = h(max_scale / q4scale);
    } else {
      std::memset(y[b].scales, 0, sizeof(y[b].scales));
      y[b].d = h(0.f);
    }
    if (max_min > 0) {
      const float iscale = q4scale / max_min;
      for (int j = 0; j < kQK_K / 16; ++j) y[b].scales[j] |= static_cast<uint8_t>(nint(iscale * mins[j]) << 4);
      y[b].dmin = h(max_min / q4scale);
    } else {
      y[b].dmin = h(0.f);
    }
    for (int j = 0; j < kQK_K / 16; ++j) {
      const float d = f(y[b].d) * static_cast<float>(y[b].scales[j] & 0xF);
      if (d == 0.f) continue;
      const float dm = f(y[b].dmin) * static_cast<float>(y[b].scales[j] >> 4);
      for (int ii = 0; ii < 16; ++ii) L[16 * j + ii] = static_cast<uint8_t>(clampi(nint((x[16 * j + ii] + dm) / d), 0, 3));
    }
    pack_2bit(L, y[b].qs);
  }
}

void decode_q2_K(const void* blocks, float* y, int64_t n) {
  const auto* x = static_cast<const BlockQ2_K*>(blocks);
  for (int64_t b = 0; b < n / kQK_K; ++b, y += kQK_K) {
    const float d = f(x[b].d), dmin = f(x[b].dmin);
    for (int e = 0; e < kQK_K; ++e) {
      const int half = e / 128, shift = 2 * ((e % 128) / 32), l = e % 32;
      const uint8_t sc = x[b].scales[e / 16];
      const float dl = d * static_cast<float>(sc & 0xF);
      const float ml = dmin * static_cast<float>(sc >> 4);
      const int q = (x[b].qs[32 * half + l] >> shift) & 3;
      y[e] = dl * static_cast<float>(q) - ml;
    }
  }
}

// ---- q3_K ------------------------------------------------------------------------------------
void encode_q3_K(const float* x, void* blocks, int64_t n) {
  auto* y = static_cast<BlockQ3_K*>(blocks);
  int8_t L[kQK_K];
  float scales[kQK_K / 16];
  for (int64_t b = 0; b < n / kQK_K; ++b, x += kQK_K) {
    float max_scale = 0, amax = 0;
    for (int j = 0; j < kQK_K / 16; ++j) {
      scales[j] = fit_signed_coordinate(16, 4, x + 16 * j, L + 16 * j);
      const float a = std::fabs(scales[j]);
      if (a > amax) {
        amax = a;
        max_scale = scales[j];
      }
    }
    std::memset(y[b].scales, 0, 12);
    if (max_scale != 0.f) {
      const float iscale = -32.f / max_scale;
      for (int j = 0; j < kQK_K / 16; ++j) {
        // ggml narrows to int8 before clamping; |iscale·s| ≤ 32 so nothing wraps.
        int l = static_cast<int8_t>(nint(iscale * scales[j]));
        l = clampi(l, -32, 31) + 32;
        if (j < 8) y[b].scales[j] = static_cast<uint8_t>(l & 0xF);
        else y[b].scales[j - 8] |= static_cast<uint8_t>((l & 0xF) << 4);
        y[b].scales[j % 4 + 8] |= static_cast<uint8_t>((l >> 4) << (2 * (j / 4)));
      }
      y[b].d = h(1 / iscale);
    } else {
      y[b].d = h(0.f);
    }
    for (int j = 0; j < kQK_K / 16; ++j) {
      const float d = f(y[b].d) * static_cast<float>(q3_scale(y[b].scales, j));
      if (d == 0.f) continue;
      for (int ii = 0; ii < 16; ++ii) L[16 * j + ii] = static_cast<int8_t>(clampi(nint(x[16 * j + ii] / d), -4, 3) + 4);
    }
    // High bit of element e goes to bit e/32 of hmask[e % 32]; the low two bits stay in L.
    std::memset(y[b].hmask, 0, sizeof(y[b].hmask));
    uint8_t low[kQK_K];
    for (int e = 0; e < kQK_K; ++e) {
      int l = L[e];
      if (l > 3) {
        y[b].hmask[e % 32] |= static_cast<uint8_t>(1u << (e / 32));
        l -= 4;
      }
      low[e] = static_cast<uint8_t>(l);
    }
    pack_2bit(low, y[b].qs);
  }
}

void decode_q3_K(const void* blocks, float* y, int64_t n) {
  const auto* x = static_cast<const BlockQ3_K*>(blocks);
  for (int64_t b = 0; b < n / kQK_K; ++b, y += kQK_K) {
    const float d_all = f(x[b].d);
    for (int e = 0; e < kQK_K; ++e) {
      const int half = e / 128, g = (e % 128) / 32, l = e % 32;
      const float dl = d_all * static_cast<float>(q3_scale(x[b].scales, e / 16));
      const int low = (x[b].qs[32 * half + l] >> (2 * g)) & 3;
      const int high = (x[b].hmask[l] >> (4 * half + g)) & 1;
      y[e] = dl * static_cast<float>(low - (high ? 0 : 4));
    }
  }
}

// ---- q4_K ------------------------------------------------------------------------------------
void encode_q4_K(const float* x, void* blocks, int64_t n) {
  auto* y = static_cast<BlockQ4_K*>(blocks);
  uint8_t L[kQK_K];
  for (int64_t b = 0; b < n / kQK_K; ++b, x += kQK_K) {
    fit_k4_superblock<15>(x, y[b].d, y[b].dmin, y[b].scales, L, AsymSearch{-1.f, 0.1f, 20, false});
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l) y[b].qs[32 * c + l] = static_cast<uint8_t>(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
  }
}

void decode_q4_K(const void* blocks, float* y, int64_t n) {
  const auto* x = static_cast<const BlockQ4_K*>(blocks);
  for (int64_t b = 0; b < n / kQK_K; ++b, y += kQK_K) {
    const float d = f(x[b].d), dmin = f(x[b].dmin);
    for (int c = 0; c < 4; ++c) {
      for (int part = 0; part < 2; ++part) {
        uint8_t sc, m;
        scale_min_k4(2 * c + part, x[b].scales, sc, m);
        const float d1 = d * static_cast<float>(sc);
        const float m1 = dmin * static_cast<float>(m);
        for (int l = 0; l < 32; ++l) {
          const int q = part == 0 ? (x[b].qs[32 * c + l] & 0xF) : (x[b].qs[32 * c + l] >> 4);
          y[64 * c + 32 * part + l] = d1 * static_cast<float>(q) - m1;
        }
      }
    }
  }
}

// ---- q5_K ------------------------------------------------------------------------------------
void encode_q5_K(const float* x, void* blocks, int64_t n) {
  auto* y = static_cast<BlockQ5_K*>(blocks);
  uint8_t L[kQK_K];
  for (int64_t b = 0; b < n / kQK_K; ++b, x += kQK_K) {
    fit_k4_superblock<31>(x, y[b].d, y[b].dmin, y[b].scales, L, AsymSearch{-0.5f, 0.1f, 15, false});
    std::memset(y[b].qh, 0, sizeof(y[b].qh));
    for (int c = 0; c < 4; ++c) {
      for (int l = 0; l < 32; ++l) {
        const int l1 = L[64 * c + l], l2 = L[64 * c + 32 + l];
        y[b].qh[l] |= static_cast<uint8_t>(((l1 >> 4) & 1) << (2 * c));
        y[b].qh[l] |= static_cast<uint8_t>(((l2 >> 4) & 1) << (2 * c + 1));
        y[b].qs[32 * c + l] = static_cast<uint8_t>((l1 & 15) | ((l2 & 15) << 4));
      }
    }
  }
}

void decode_q5_K(const void* blocks, float* y, int64_t n) {
  const auto* x = static_cast<const BlockQ5_K*>(blocks);
  for (int64_t b = 0; b < n / kQK_K; ++b, y += kQK_K) {
    const float d = f(x[b].d), dmin = f(x[b].dmin);
    for (int c = 0; c < 4; ++c) {
      for (int part = 0; part < 2; ++part) {
        uint8_t sc, m;
        scale_min_k4(2 * c + part, x[b].scales, sc, m);
        const float d1 = d * static_cast<float>(sc);
        const float m1 = dmin * static_cast<float>(m);
        for (int l = 0; l < 32; ++l) {
          const int nib = part == 0 ? (x[b].qs[32 * c + l] & 0xF) : (x[b].qs[32 * c + l] >> 4);
          const int hi = (x[b].qh[l] >> (2 * c + part)) & 1;
          y[64 * c + 32 * part + l] = d1 * static_cast<float>(nib + 16 * hi) - m1;
        }
      }
    }
  }
}

// ---- q6_K ------------------------------------------------------------------------------------
void encode_q6_K(const float* x, void* blocks, int64_t n) {
  auto* y = static_cast<BlockQ6_K*>(blocks);
  int8_t L[kQK_K];
  float scales[kQK_K / 16];
  for (int64_t b = 0; b < n / kQK_K; ++b, x += kQK_K) {
    float max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < kQK_K / 16; ++ib) {
      scales[ib] = fit_signed_rmse(16, 32, x + 16 * ib, L + 16 * ib);
      const float a = std::fabs(scales[ib]);
      if (a > max_abs_scale) {
        max_abs_scale = a;
        max_scale = scales[ib];
      }
    }
    if (max_abs_scale < kGroupMaxEps) {
      std::memset(&y[b], 0, sizeof(BlockQ6_K));
      continue;
    }
    const float iscale = -128.f / max_scale;
    y[b].d = h(1 / iscale);
    for (int ib = 0; ib < kQK_K / 16; ++ib) y[b].scales[ib] = static_cast<int8_t>(std::min(127, nint(iscale * scales[ib])));
    for (int j = 0; j < kQK_K / 16; ++j) {
      const float d = f(y[b].d) * static_cast<float>(y[b].scales[j]);
      if (d == 0.f) continue;
      for (int ii = 0; ii < 16; ++ii) L[16 * j + ii] = static_cast<int8_t>(clampi(nint(x[16 * j + ii] / d), -32, 31) + 32);
    }
    for (int half = 0; half < 2; ++half) {
      const int8_t* Lh = L + 128 * half;
      uint8_t* ql = y[b].ql + 64 * half;
      uint8_t* qh = y[b].qh + 32 * half;
      for (int l = 0; l < 32; ++l) {
        ql[l] = static_cast<uint8_t>((Lh[l] & 0xF) | ((Lh[l + 64] & 0xF) << 4));
        ql[l + 32] = static_cast<uint8_t>((Lh[l + 32] & 0xF) | ((Lh[l + 96] & 0xF) << 4));
        qh[l] = static_cast<uint8_t>((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) | ((Lh[l + 96] >> 4) << 6));
      }
    }
  }
}

void decode_q6_K(const void* blocks, float* y, int64_t n) {
  const auto* x = static_cast<const BlockQ6_K*>(blocks);
  for (int64_t b = 0; b < n / kQK_K; ++b, y += kQK_K) {
    const float d = f(x[b].d);
    for (int half = 0; half < 2; ++half) {
      const uint8_t* ql = x[b].ql + 64 * half;
      const uint8_t* qh = x[b].qh + 32 * half;
      const int8_t* sc = x[b].scales + 8 * half;
      float* yh = y + 128 * half;
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        // (d·sc)·q, left to right as ggml evaluates d * sc[is] * q.
        yh[l] = d * static_cast<float>(sc[is]) * static_cast<float>(q1);
        yh[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
        yh[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
        yh[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
      }
    }
  }
}

// ---- q8_K (activation intermediate; kept for completeness of the table) -----------------------
void encode_q8_K(const float* x, void* blocks, int64_t n) {
  auto* y = static_cast<BlockQ8_K*>(blocks);
  for (int64_t b = 0; b < n / kQK_K; ++b, x += kQK_K) {
    float amax = 0, max = 0;
    for (int j = 0; j < kQK_K; ++j) {
      const float ax = std::fabs(x[j]);
      if (ax > amax) {
        amax = ax;
        max = x[j];
      }
    }
    if (amax == 0.f) {
      std::memset(&y[b], 0, sizeof(BlockQ8_K));
      continue;
    }
    const float iscale = -127.f / max;
    for (int j = 0; j < kQK_K; ++j) y[b].qs[j] = static_cast<int8_t>(std::min(127, nint(iscale * x[j])));
    for (int j = 0; j < kQK_K / 16; ++j) {
      int sum = 0;
      for (int ii = 0; ii < 16; ++ii) sum += y[b].qs[16 * j + ii];
      y[b].bsums[j] = static_cast<int16_t>(sum);
    }
    y[b].d = 1 / iscale;
  }
}

void decode_q8_K(const void* blocks, float* y, int64_t n) {
  const auto* x = static_cast<const BlockQ8_K*>(blocks);
  for (int64_t b = 0; b < n / kQK_K; ++b, y += kQK_K)
    for (int j = 0; j < kQK_K; ++j) y[j] = x[b].d * static_cast<float>(x[b].qs[j]);
}

}  // namespace arq::io
