// Legacy ggml blocks (q4_0, q4_1, q5_0, q5_1, q8_0), f16/bf16/f32 rows, and the traits table.
// The k-quants live in ggml_kquants.cpp.
//
// Each encoder follows llama.cpp's reference quantizer operation by operation (spec
// formats.md §4.5): the float expressions are evaluated in the same order with one rounding per
// operation, so the bytes are identical. Contraction into FMA would change the last bit of
// products such as (x − min)·id, hence the pragmas.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "io/ggml_blocks.h"

#include <algorithm>
#include <cctype>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "engine/dtype.h"
#include "engine/error.h"
#include "kernels/cpu/thread_pool.h"

namespace arq::io {

// Defined in ggml_kquants.cpp.
void encode_q2_K(const float* x, void* blocks, int64_t n);
void decode_q2_K(const void* blocks, float* y, int64_t n);
void encode_q3_K(const float* x, void* blocks, int64_t n);
void decode_q3_K(const void* blocks, float* y, int64_t n);
void encode_q4_K(const float* x, void* blocks, int64_t n);
void decode_q4_K(const void* blocks, float* y, int64_t n);
void encode_q5_K(const float* x, void* blocks, int64_t n);
void decode_q5_K(const void* blocks, float* y, int64_t n);
void encode_q6_K(const float* x, void* blocks, int64_t n);
void decode_q6_K(const void* blocks, float* y, int64_t n);
void encode_q8_K(const float* x, void* blocks, int64_t n);
void decode_q8_K(const void* blocks, float* y, int64_t n);

namespace {

inline uint16_t h(float v) { return f32_to_f16_bits(v); }
inline float f(uint16_t v) { return f16_bits_to_f32(v); }

// The signed value of largest magnitude (first one on ties), as ggml's q4_0/q5_0 search.
inline float signed_absmax(const float* x, int64_t n) {
  float amax = 0.f, max = 0.f;
  for (int64_t j = 0; j < n; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  return max;
}

// C's float → int8_t conversion as ggml relies on it (truncation toward zero; the values are in
// range for the encoders below).
inline int to_i8(float v) { return static_cast<int8_t>(static_cast<int>(v)); }

// ---- q4_0 ------------------------------------------------------------------------------------
void encode_q4_0(const float* x, void* blocks, int64_t n) {
  auto* y = static_cast<BlockQ4_0*>(blocks);
  for (int64_t b = 0; b < n / kQK; ++b, x += kQK) {
    const float d = signed_absmax(x, kQK) / -8;
    const float id = d != 0.f ? 1.0f / d : 0.0f;
    y[b].d = h(d);
    for (int j = 0; j < kQK / 2; ++j) {
      const int lo = std::min(15, to_i8(x[j] * id + 8.5f));
      const int hi = std::min(15, to_i8(x[j + kQK / 2] * id + 8.5f));
      y[b].qs[j] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
}
void decode_q4_0(const void* blocks, float* y, int64_t n) {
  const auto* x = static_cast<const BlockQ4_0*>(blocks);
  for (int64_t b = 0; b < n / kQK; ++b, y += kQK) {
    const float d = f(x[b].d);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = static_cast<float>((x[b].qs[j] & 15) - 8) * d;
      y[j + kQK / 2] = static_cast<float>((x[b].qs[j] >> 4) - 8) * d;
    }
  }
}

// ---- q4_1 ------------------------------------------------------------------------------------
inline void min_max(const float* x, int64_t n, float& mn, float& mx) {
  mn = FLT_MAX;
  mx = -FLT_MAX;
  for (int64_t j = 0; j < n; ++j) {
    if (x[j] < mn) mn = x[j];
    if (x[j] > mx) mx = x[j];
  }
}

void encode_q4_1(const float* x, void* blocks, int64_t n) {
  auto* y = static_cast<BlockQ4_1*>(blocks);
  for (int64_t b = 0; b < n / kQK; ++b, x += kQK) {
    float mn, mx;
    min_max(x, kQK, mn, mx);
    const float d = (mx - mn) / 15;
    const float id = d != 0.f ? 1.0f / d : 0.0f;
    y[b].d = h(d);
    y[b].m = h(mn);
    for (int j = 0; j < kQK / 2; ++j) {
      const int lo = std::min(15, to_i8((x[j] - mn) * id + 0.5f));
      const int hi = std::min(15, to_i8((x[j + kQK / 2] - mn) * id + 0.5f));
      y[b].qs[j] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
}
void decode_q4_1(const void* blocks, float* y, int64_t n) {
  const auto* x = static_cast<const BlockQ4_1*>(blocks);
  for (int64_t b = 0; b < n / kQK; ++b, y += kQK) {
    const float d = f(x[b].d), m = f(x[b].m);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = static_cast<float>(x[b].qs[j] & 15) * d + m;
      y[j + kQK / 2] = static_cast<float>(x[b].qs[j] >> 4) * d + m;
    }
  }
}

// ---- q5_0 / q5_1 -----------------------------------------------------------------------------
// Low nibbles into qs as q4_*, the fifth bit of element j into bit j of the little-endian qh.
template <class Block>
inline void store5(Block& blk, const int* q) {
  uint32_t qh = 0;
  for (int j = 0; j < kQK / 2; ++j) {
    blk.qs[j] = static_cast<uint8_t>((q[j] & 15) | ((q[j + kQK / 2] & 15) << 4));
    qh |= static_cast<uint32_t>((q[j] >> 4) & 1) << j;
    qh |= static_cast<uint32_t>((q[j + kQK / 2] >> 4) & 1) << (j + kQK / 2);
  }
  for (int i = 0; i < 4; ++i) blk.qh[i] = static_cast<uint8_t>(qh >> (8 * i));
}
template <class Block>
inline void load5(const Block& blk, int* q) {
  const uint32_t qh = static_cast<uint32_t>(blk.qh[0]) | static_cast<uint32_t>(blk.qh[1]) << 8 |
                      static_cast<uint32_t>(blk.qh[2]) << 16 | static_cast<uint32_t>(blk.qh[3]) << 24;
  for (int j = 0; j < kQK / 2; ++j) {
    q[j] = (blk.qs[j] & 15) | static_cast<int>(((qh >> j) & 1) << 4);
    q[j + kQK / 2] = (blk.qs[j] >> 4) | static_cast<int>(((qh >> (j + kQK / 2)) & 1) << 4);
  }
}

void encode_q5_0(const float* x, void* blocks, int64_t n) {
  auto* y = static_cast<BlockQ5_0*>(blocks);
  int q[kQK];
  for (int64_t b = 0; b < n / kQK; ++b, x += kQK) {
    const float d = signed_absmax(x, kQK) / -16;
    const float id = d != 0.f ? 1.0f / d : 0.0f;
    y[b].d = h(d);
    for (int j = 0; j < kQK; ++j) q[j] = std::min(31, to_i8(x[j] * id + 16.5f));
    store5(y[b], q);
  }
}
void decode_q5_0(const void* blocks, float* y, int64_t n) {
  const auto* x = static_cast<const BlockQ5_0*>(blocks);
  int q[kQK];
  for (int64_t b = 0; b < n / kQK; ++b, y += kQK) {
    const float d = f(x[b].d);
    load5(x[b], q);
    for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(q[j] - 16) * d;
  }
}

void encode_q5_1(const float* x, void* blocks, int64_t n) {
  auto* y = static_cast<BlockQ5_1*>(blocks);
  int q[kQK];
  for (int64_t b = 0; b < n / kQK; ++b, x += kQK) {
    float mn, mx;
    min_max(x, kQK, mn, mx);
    const float d = (mx - mn) / 31;
    const float id = d != 0.f ? 1.0f / d : 0.0f;
    y[b].d = h(d);
    y[b].m = h(mn);
    // ggml converts to uint8 without a clamp; (x − min)·id + 0.5 ≤ 31.5 keeps it in range.
    for (int j = 0; j < kQK; ++j) q[j] = static_cast<uint8_t>(static_cast<int>((x[j] - mn) * id + 0.5f));
    store5(y[b], q);
  }
}
void decode_q5_1(const void* blocks, float* y, int64_t n) {
  const auto* x = static_cast<const BlockQ5_1*>(blocks);
  int q[kQK];
  for (int64_t b = 0; b < n / kQK; ++b, y += kQK) {
    const float d = f(x[b].d), m = f(x[b].m);
    load5(x[b], q);
    for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(q[j]) * d + m;
  }
}

// ---- q8_0 ------------------------------------------------------------------------------------
void encode_q8_0(const float* x, void* blocks, int64_t n) {
  auto* y = static_cast<BlockQ8_0*>(blocks);
  for (int64_t b = 0; b < n / kQK; ++b, x += kQK) {
    float amax = 0.f;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127;
    const float id = d != 0.f ? 1.0f / d : 0.0f;
    y[b].d = h(d);
    // roundf: half away from zero (the one place ggml does not round half to even).
    for (int j = 0; j < kQK; ++j) y[b].qs[j] = static_cast<int8_t>(std::roundf(x[j] * id));
  }
}
void decode_q8_0(const void* blocks, float* y, int64_t n) {
  const auto* x = static_cast<const BlockQ8_0*>(blocks);
  for (int64_t b = 0; b < n / kQK; ++b, y += kQK) {
    const float d = f(x[b].d);
    for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(x[b].qs[j]) * d;
  }
}

// ---- plain rows --------------------------------------------------------------------------------
void encode_f32(const float* x, void* dst, int64_t n) { std::memcpy(dst, x, static_cast<size_t>(n) * 4); }
void decode_f32(const void* src, float* y, int64_t n) { std::memcpy(y, src, static_cast<size_t>(n) * 4); }
void encode_f16(const float* x, void* dst, int64_t n) {
  auto* o = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t v = f32_to_f16_bits(x[i]);
    std::memcpy(o + 2 * i, &v, 2);
  }
}
void decode_f16(const void* src, float* y, int64_t n) {
  const auto* s = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; ++i) {
    uint16_t v;
    std::memcpy(&v, s + 2 * i, 2);
    y[i] = f16_bits_to_f32(v);
  }
}
void encode_bf16(const float* x, void* dst, int64_t n) {
  auto* o = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t v = f32_to_bf16_bits(x[i]);
    std::memcpy(o + 2 * i, &v, 2);
  }
}
void decode_bf16(const void* src, float* y, int64_t n) {
  const auto* s = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; ++i) {
    uint16_t v;
    std::memcpy(&v, s + 2 * i, 2);
    y[i] = bf16_bits_to_f32(v);
  }
}

const std::vector<GgmlTypeTraits>& table() {
  static const std::vector<GgmlTypeTraits> t = {
      {GgmlType::f32, "f32", 1, 4, false, encode_f32, decode_f32},
      {GgmlType::f16, "f16", 1, 2, false, encode_f16, decode_f16},
      {GgmlType::q4_0, "q4_0", kQK, sizeof(BlockQ4_0), true, encode_q4_0, decode_q4_0},
      {GgmlType::q4_1, "q4_1", kQK, sizeof(BlockQ4_1), true, encode_q4_1, decode_q4_1},
      {GgmlType::q5_0, "q5_0", kQK, sizeof(BlockQ5_0), true, encode_q5_0, decode_q5_0},
      {GgmlType::q5_1, "q5_1", kQK, sizeof(BlockQ5_1), true, encode_q5_1, decode_q5_1},
      {GgmlType::q8_0, "q8_0", kQK, sizeof(BlockQ8_0), true, encode_q8_0, decode_q8_0},
      {GgmlType::q2_K, "q2_K", kQK_K, sizeof(BlockQ2_K), true, encode_q2_K, decode_q2_K},
      {GgmlType::q3_K, "q3_K", kQK_K, sizeof(BlockQ3_K), true, encode_q3_K, decode_q3_K},
      {GgmlType::q4_K, "q4_K", kQK_K, sizeof(BlockQ4_K), true, encode_q4_K, decode_q4_K},
      {GgmlType::q5_K, "q5_K", kQK_K, sizeof(BlockQ5_K), true, encode_q5_K, decode_q5_K},
      {GgmlType::q6_K, "q6_K", kQK_K, sizeof(BlockQ6_K), true, encode_q6_K, decode_q6_K},
      {GgmlType::q8_K, "q8_K", kQK_K, sizeof(BlockQ8_K), true, encode_q8_K, decode_q8_K},
      {GgmlType::bf16, "bf16", 1, 2, false, encode_bf16, decode_bf16},
  };
  return t;
}

std::string lower(std::string_view s) {
  std::string o(s);
  for (char& c : o) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return o;
}

}  // namespace

const std::vector<GgmlTypeTraits>& ggml_all_traits() { return table(); }

const GgmlTypeTraits* ggml_traits_or_null(uint32_t id) {
  for (const auto& t : table())
    if (static_cast<uint32_t>(t.type) == id) return &t;
  return nullptr;
}

const GgmlTypeTraits& ggml_traits(GgmlType type) {
  const GgmlTypeTraits* t = ggml_traits_or_null(static_cast<uint32_t>(type));
  ARQ_CHECK(t, UnsupportedError, "ggml type id ", static_cast<uint32_t>(type), " has no encoder/decoder in ar-quant");
  return *t;
}

const char* ggml_type_name(GgmlType t) { return ggml_traits(t).name; }

GgmlType ggml_type_from_name(std::string_view name) {
  const std::string want = lower(name);
  std::string known;
  for (const auto& t : table()) {
    if (lower(t.name) == want) return t.type;
    known += known.empty() ? "" : ", ";
    known += t.name;
  }
  throw UsageError(cat("unknown ggml type '", name, "' (known: ", known, ")"));
}

size_t ggml_row_bytes(GgmlType type, int64_t n) {
  const GgmlTypeTraits& t = ggml_traits(type);
  ARQ_CHECK(n >= 0 && n % t.block_size == 0, ShapeError, "ggml type ", t.name, ": row length ", n,
            " is not a multiple of the block size ", t.block_size);
  return static_cast<size_t>(n / t.block_size) * t.type_size;
}

void ggml_quantize_row(GgmlType type, const float* x, void* dst, int64_t n) {
  ggml_row_bytes(type, n);  // checks n
  ggml_traits(type).encode(x, dst, n);
}

void ggml_dequantize_row(GgmlType type, const void* src, float* y, int64_t n) {
  ggml_row_bytes(type, n);
  ggml_traits(type).decode(src, y, n);
}

std::vector<uint8_t> ggml_quantize(const Tensor& w, GgmlType type) {
  ARQ_CHECK(w.defined() && w.dim() >= 1, ShapeError, "ggml_quantize: expects a tensor with at least 1 dim");
  ARQ_CHECK(is_floating(w.dtype()), DTypeError, "ggml_quantize to ", ggml_type_name(type), ": expects a floating tensor, got ",
            w.str());
  const Tensor x = w.to(Device::cpu()).to(DType::f32).contiguous();
  const int64_t cols = x.shape().back();
  const int64_t rows = cols > 0 ? x.numel() / cols : 0;
  const size_t row_bytes = ggml_row_bytes(type, cols);
  std::vector<uint8_t> out(row_bytes * static_cast<size_t>(rows));
  const float* src = x.data<float>();
  // Rows are independent and each encoder is a pure function of its row, so the bytes do not
  // depend on the split; the k-quant scale searches are what make GGUF export slow.
  const GgmlTypeTraits& tr = ggml_traits(type);
  cpu::parallel_for(rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) tr.encode(src + r * cols, out.data() + static_cast<size_t>(r) * row_bytes, cols);
  });
  return out;
}

Tensor ggml_dequantize(const uint8_t* data, size_t nbytes, GgmlType type, const Shape& shape) {
  ARQ_CHECK(!shape.empty(), ShapeError, "ggml_dequantize: empty shape");
  const int64_t cols = shape.back();
  const int64_t rows = cols > 0 ? shape_numel(shape) / cols : 0;
  const size_t row_bytes = ggml_row_bytes(type, cols);
  ARQ_CHECK(nbytes == row_bytes * static_cast<size_t>(rows), IoError, "ggml_dequantize: ", ggml_type_name(type), " tensor ",
            shape_str(shape), " needs ", row_bytes * static_cast<size_t>(rows), " bytes, got ", nbytes);
  Tensor y = Tensor::empty(shape, DType::f32);
  float* dst = y.data<float>();
  const GgmlTypeTraits& tr = ggml_traits(type);
  cpu::parallel_for(rows, std::max<int64_t>(1, 65536 / std::max<int64_t>(cols, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) tr.decode(data + static_cast<size_t>(r) * row_bytes, dst + r * cols, cols);
  });
  return y;
}

}  // namespace arq::io
