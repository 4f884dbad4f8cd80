// Bit layouts of the ggml blocks from given parameters; the layouts are those of the reference
// encoders in ggml_blocks.cpp / ggml_kquants.cpp (same bytes for the same levels and scales).
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "io/ggml_encode_params.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/dtype.h"
#include "engine/error.h"

namespace arq::io {

namespace {

// fp16 bits of d, refusing a value fp16 does not hold exactly.
uint16_t exact_f16(float v, GgmlType t, const char* what, int64_t block) {
  const uint16_t b = f32_to_f16_bits(v);
  ARQ_CHECK(f16_bits_to_f32(b) == v || (std::isnan(v) && std::isnan(f16_bits_to_f32(b))), ShapeError, "[ggml_pack ",
            ggml_type_name(t), "] block ", block, ": ", what, " = ", v, " is not an fp16 value");
  return b;
}

void check_range(int v, int lo, int hi, GgmlType t, const char* what, int64_t index) {
  ARQ_CHECK(v >= lo && v <= hi, ShapeError, "[ggml_pack ", ggml_type_name(t), "] ", what, " ", index, " = ", v,
            " is outside ", lo, "..", hi);
}

int level_max(GgmlType t) {
  switch (t) {
    case GgmlType::q4_0: case GgmlType::q4_1: case GgmlType::q4_K: return 15;
    case GgmlType::q5_0: case GgmlType::q5_1: case GgmlType::q5_K: return 31;
    case GgmlType::q8_0: return 255;
    case GgmlType::q2_K: return 3;
    case GgmlType::q3_K: return 7;
    case GgmlType::q6_K: return 63;
    default: return -1;
  }
}

void pack_2bit(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < kQK_K; j += 128)
    for (int l = 0; l < 32; ++l)
      qs[j / 4 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

// q4_K / q5_K: 6-bit scale and min of the 8 sub-blocks in 12 bytes.
void pack_scales_k4(const int32_t* sc, const int32_t* mn, uint8_t* q) {
  std::memset(q, 0, 12);
  for (int j = 0; j < 8; ++j) {
    const auto ls = static_cast<uint8_t>(sc[j]), lm = static_cast<uint8_t>(mn[j]);
    if (j < 4) {
      q[j] |= ls;
      q[j + 4] |= lm;
    } else {
      q[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
      q[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
      q[j] |= static_cast<uint8_t>((lm >> 4) << 6);
    }
  }
}

template <class Block>
void store5(Block& blk, const uint8_t* q) {
  uint32_t qh = 0;
  for (int j = 0; j < kQK / 2; ++j) {
    blk.qs[j] = static_cast<uint8_t>((q[j] & 15) | ((q[j + kQK / 2] & 15) << 4));
    qh |= static_cast<uint32_t>((q[j] >> 4) & 1) << j;
    qh |= static_cast<uint32_t>((q[j + kQK / 2] >> 4) & 1) << (j + kQK / 2);
  }
  for (int i = 0; i < 4; ++i) blk.qh[i] = static_cast<uint8_t>(qh >> (8 * i));
}

// Sub-block scale d·sc (and min dmin·m) as f32 products, the decoders' values.
float sub_scale(GgmlType t, const GgmlBlockParams& p, int64_t b, int64_t j) {
  (void)t;
  return p.d[b] * static_cast<float>(p.sub_scales[j]);
}

}  // namespace

int64_t ggml_sub_block(GgmlType t) {
  switch (t) {
    case GgmlType::q2_K: case GgmlType::q3_K: case GgmlType::q6_K: return 16;
    case GgmlType::q4_K: case GgmlType::q5_K: return 32;
    default: return 0;
  }
}

void ggml_pack_row(GgmlType t, const GgmlBlockParams& p, void* dst, int64_t n) {
  const GgmlTypeTraits& tr = ggml_traits(t);
  const int lmax = level_max(t);
  ARQ_CHECK(lmax > 0, ShapeError, "[ggml_pack] cannot pack ", tr.name, " from parameters");
  ARQ_CHECK(n % tr.block_size == 0, ShapeError, "[ggml_pack ", tr.name, "] ", n, " elements are not whole blocks of ",
            tr.block_size);
  const bool kq = ggml_sub_block(t) > 0;
  const bool with_min = t == GgmlType::q4_1 || t == GgmlType::q5_1 || t == GgmlType::q2_K || t == GgmlType::q4_K ||
                        t == GgmlType::q5_K;
  ARQ_CHECK(p.levels && p.d && (!kq || p.sub_scales) && (!with_min || p.m) && (!kq || !with_min || p.sub_mins), ShapeError,
            "[ggml_pack ", tr.name, "] missing levels, d, sub-block scales or mins");
  for (int64_t i = 0; i < n; ++i) check_range(p.levels[i], 0, lmax, t, "level", i);
  const int64_t nb = n / tr.block_size, sub = ggml_sub_block(t);
  if (kq) {
    int lo = 0, hi = 63;
    if (t == GgmlType::q2_K) hi = 15;
    else if (t == GgmlType::q3_K) lo = -32, hi = 31;
    else if (t == GgmlType::q6_K) lo = -128, hi = 127;
    for (int64_t j = 0; j < n / sub; ++j) {
      check_range(p.sub_scales[j], lo, hi, t, "sub-block scale", j);
      if (with_min) check_range(p.sub_mins[j], 0, hi, t, "sub-block min", j);
    }
  }
  auto* out = static_cast<uint8_t*>(dst);
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* L = p.levels + b * tr.block_size;
    uint8_t* blk = out + b * tr.type_size;
    const uint16_t d16 = exact_f16(p.d[b], t, "d", b);
    const uint16_t m16 = with_min ? exact_f16(p.m[b], t, kq ? "dmin" : "m", b) : 0;
    switch (t) {
      case GgmlType::q4_0: case GgmlType::q4_1: {
        uint8_t* qs = t == GgmlType::q4_0 ? reinterpret_cast<BlockQ4_0*>(blk)->qs : reinterpret_cast<BlockQ4_1*>(blk)->qs;
        if (t == GgmlType::q4_0) reinterpret_cast<BlockQ4_0*>(blk)->d = d16;
        else reinterpret_cast<BlockQ4_1*>(blk)->d = d16, reinterpret_cast<BlockQ4_1*>(blk)->m = m16;
        for (int j = 0; j < kQK / 2; ++j) qs[j] = static_cast<uint8_t>(L[j] | (L[j + kQK / 2] << 4));
        break;
      }
      case GgmlType::q5_0: {
        auto& y = *reinterpret_cast<BlockQ5_0*>(blk);
        y.d = d16;
        store5(y, L);
        break;
      }
      case GgmlType::q5_1: {
        auto& y = *reinterpret_cast<BlockQ5_1*>(blk);
        y.d = d16;
        y.m = m16;
        store5(y, L);
        break;
      }
      case GgmlType::q8_0: {
        auto& y = *reinterpret_cast<BlockQ8_0*>(blk);
        y.d = d16;
        for (int j = 0; j < kQK; ++j) y.qs[j] = static_cast<int8_t>(static_cast<int>(L[j]) - 128);
        break;
      }
      case GgmlType::q2_K: {
        auto& y = *reinterpret_cast<BlockQ2_K*>(blk);
        const int32_t* sc = p.sub_scales + b * 16;
        const int32_t* mn = p.sub_mins + b * 16;
        for (int j = 0; j < 16; ++j) y.scales[j] = static_cast<uint8_t>(sc[j] | (mn[j] << 4));
        pack_2bit(L, y.qs);
        y.d = d16;
        y.dmin = m16;
        break;
      }
      case GgmlType::q3_K: {
        auto& y = *reinterpret_cast<BlockQ3_K*>(blk);
        const int32_t* sc = p.sub_scales + b * 16;
        std::memset(y.scales, 0, 12);
        for (int j = 0; j < 16; ++j) {
          const int l = sc[j] + 32;
          if (j < 8) y.scales[j] |= static_cast<uint8_t>(l & 0xF);
          else y.scales[j - 8] |= static_cast<uint8_t>((l & 0xF) << 4);
          y.scales[j % 4 + 8] |= static_cast<uint8_t>((l >> 4) << (2 * (j / 4)));
        }
        std::memset(y.hmask, 0, sizeof(y.hmask));
        uint8_t low[kQK_K];
        for (int e = 0; e < kQK_K; ++e) {
          int l = L[e];
          if (l > 3) {
            y.hmask[e % 32] |= static_cast<uint8_t>(1u << (e / 32));
            l -= 4;
          }
          low[e] = static_cast<uint8_t>(l);
        }
        pack_2bit(low, y.qs);
        y.d = d16;
        break;
      }
      case GgmlType::q4_K: {
        auto& y = *reinterpret_cast<BlockQ4_K*>(blk);
        y.d = d16;
        y.dmin = m16;
        pack_scales_k4(p.sub_scales + b * 8, p.sub_mins + b * 8, y.scales);
        for (int c = 0; c < 4; ++c)
          for (int l = 0; l < 32; ++l) y.qs[32 * c + l] = static_cast<uint8_t>(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
        break;
      }
      case GgmlType::q5_K: {
        auto& y = *reinterpret_cast<BlockQ5_K*>(blk);
        y.d = d16;
        y.dmin = m16;
        pack_scales_k4(p.sub_scales + b * 8, p.sub_mins + b * 8, y.scales);
        std::memset(y.qh, 0, sizeof(y.qh));
        for (int c = 0; c < 4; ++c)
          for (int l = 0; l < 32; ++l) {
            const int l1 = L[64 * c + l], l2 = L[64 * c + 32 + l];
            y.qh[l] |= static_cast<uint8_t>(((l1 >> 4) & 1) << (2 * c));
            y.qh[l] |= static_cast<uint8_t>(((l2 >> 4) & 1) << (2 * c + 1));
            y.qs[32 * c + l] = static_cast<uint8_t>((l1 & 15) | ((l2 & 15) << 4));  // ggml's masked layout (§4d caveat)
          }
        break;
      }
      case GgmlType::q6_K: {
        auto& y = *reinterpret_cast<BlockQ6_K*>(blk);
        for (int j = 0; j < 16; ++j) y.scales[j] = static_cast<int8_t>(p.sub_scales[b * 16 + j]);
        for (int half = 0; half < 2; ++half) {
          const uint8_t* Lh = L + 128 * half;
          uint8_t* ql = y.ql + 64 * half;
          uint8_t* qh = y.qh + 32 * half;
          for (int l = 0; l < 32; ++l) {
            ql[l] = static_cast<uint8_t>((Lh[l] & 0xF) | ((Lh[l + 64] & 0xF) << 4));
            ql[l + 32] = static_cast<uint8_t>((Lh[l + 32] & 0xF) | ((Lh[l + 96] & 0xF) << 4));
            qh[l] = static_cast<uint8_t>((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) | ((Lh[l + 96] >> 4) << 6));
          }
        }
        y.d = d16;
        break;
      }
      default: break;
    }
  }
}

void ggml_levels_from_params(GgmlType t, const float* x, const GgmlBlockParams& p, uint8_t* levels, int64_t n) {
  const GgmlTypeTraits& tr = ggml_traits(t);
  const int lmax = level_max(t);
  ARQ_CHECK(lmax > 0 && n % tr.block_size == 0, ShapeError, "[ggml_levels] cannot derive ", tr.name, " levels of ", n,
            " elements");
  const int64_t sub = ggml_sub_block(t);
  auto clampi = [](int v, int lo, int hi) { return std::max(lo, std::min(hi, v)); };
  for (int64_t i = 0; i < n; ++i) {
    const int64_t b = i / tr.block_size;
    const float d = p.d[b];
    int l = 0;
    switch (t) {
      case GgmlType::q4_0: l = d == 0.f ? 8 : clampi(static_cast<int>(x[i] / d + 8.5f), 0, 15); break;
      case GgmlType::q5_0: l = d == 0.f ? 16 : clampi(static_cast<int>(x[i] / d + 16.5f), 0, 31); break;
      case GgmlType::q8_0: l = d == 0.f ? 128 : clampi(static_cast<int>(std::roundf(x[i] / d)), -128, 127) + 128; break;
      case GgmlType::q4_1: case GgmlType::q5_1:
        l = d == 0.f ? 0 : clampi(static_cast<int>((x[i] - p.m[b]) / d + 0.5f), 0, lmax);
        break;
      case GgmlType::q3_K: case GgmlType::q6_K: {
        const float s = sub_scale(t, p, b, i / sub);
        const int half = (lmax + 1) / 2;
        l = s == 0.f ? half : clampi(ggml_nearest_int(x[i] / s), -half, half - 1) + half;
        break;
      }
      default: {  // q2_K, q4_K, q5_K
        const float s = sub_scale(t, p, b, i / sub);
        const float mn = p.m[b] * static_cast<float>(p.sub_mins[i / sub]);
        l = s == 0.f ? 0 : clampi(ggml_nearest_int((x[i] + mn) / s), 0, lmax);
        break;
      }
    }
    levels[i] = static_cast<uint8_t>(l);
  }
}

}  // namespace arq::io
