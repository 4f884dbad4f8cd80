// GPTQ / AWQ int32 packing (see pack.h for the layouts).
#include "io/pack.h"

#include <cstring>
#include <numeric>

#include "engine/error.h"

namespace arq::io {

namespace {

// Values of a 2-D integer tensor as i32, contiguous on the CPU.
Tensor as_i32(const Tensor& t, const char* what) {
  ARQ_CHECK(t.defined() && t.dim() == 2, ShapeError, "[pack] ", what, " must be 2-D, got ", t.defined() ? t.str() : "undefined");
  ARQ_CHECK(is_integral(t.dtype()), DTypeError, "[pack] ", what, " must be integer, got ", t.str());
  return t.to(Device::cpu()).to(DType::i32).contiguous();
}

void check_bits(int bits) {
  ARQ_CHECK(bits >= 1 && bits <= 8, UsageError, "[pack] bits must be 1..8, got ", bits);
}

inline uint32_t mask_of(int bits) { return (1u << bits) - 1u; }

// Put value v (b bits) at bit position p of a word stream; words[i] indexes with `stride`.
inline void put_bits(uint32_t* words, int64_t stride, int64_t p, int bits, uint32_t v) {
  const int64_t w = p / 32;
  const int s = static_cast<int>(p % 32);
  words[w * stride] |= v << s;
  if (s + bits > 32) words[(w + 1) * stride] |= v >> (32 - s);
}
inline uint32_t get_bits(const uint32_t* words, int64_t stride, int64_t p, int bits) {
  const int64_t w = p / 32;
  const int s = static_cast<int>(p % 32);
  uint32_t v = words[w * stride] >> s;
  if (s + bits > 32) v |= words[(w + 1) * stride] << (32 - s);
  return v & mask_of(bits);
}

// Pack along dim `dim` (0 or 1) of [R, C].
Tensor pack_stream(const Tensor& values, int bits, int dim) {
  check_bits(bits);
  const Tensor v = as_i32(values, "values");
  const int64_t R = v.size(0), C = v.size(1);
  const int64_t len = dim == 0 ? R : C;
  ARQ_CHECK(len * bits % 32 == 0, ShapeError, "[pack] ", len, " values of ", bits, " bits along dim ", dim, " of ",
            shape_str(v.shape()), " do not fill whole int32 words (need a multiple of ", 32 / std::gcd(32, bits), ")");
  const int64_t words = len * bits / 32;
  Tensor out = Tensor::empty(dim == 0 ? Shape{words, C} : Shape{R, words}, DType::i32);
  std::memset(out.data_ptr(), 0, out.nbytes());
  auto* o = reinterpret_cast<uint32_t*>(out.data<int32_t>());
  const int32_t* x = v.data<int32_t>();
  const uint32_t m = mask_of(bits);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < C; ++c) {
      const int32_t val = x[r * C + c];
      ARQ_ASSERT(val >= 0 && static_cast<uint32_t>(val) <= m, "[pack] value ", val, " at [", r, ", ", c, "] outside ", bits,
                 " bits");
      if (dim == 0) put_bits(o + c, C, r * bits, bits, static_cast<uint32_t>(val));
      else put_bits(o + r * words, 1, c * bits, bits, static_cast<uint32_t>(val));
    }
  return out;
}

Tensor unpack_stream(const Tensor& packed, int bits, int64_t len, int dim) {
  check_bits(bits);
  const Tensor p = as_i32(packed, "packed");
  const int64_t R = p.size(0), C = p.size(1);
  const int64_t words = dim == 0 ? R : C;
  ARQ_CHECK(len >= 0 && len * bits == words * 32, ShapeError, "[unpack] ", shape_str(p.shape()), " along dim ", dim, " holds ",
            words * 32 / bits, " values of ", bits, " bits, not ", len);
  Tensor out = Tensor::empty(dim == 0 ? Shape{len, C} : Shape{R, len}, DType::i32);
  const auto* w = reinterpret_cast<const uint32_t*>(p.data<int32_t>());
  int32_t* o = out.data<int32_t>();
  if (dim == 0) {
    for (int64_t r = 0; r < len; ++r)
      for (int64_t c = 0; c < C; ++c) o[r * C + c] = static_cast<int32_t>(get_bits(w + c, C, r * bits, bits));
  } else {
    for (int64_t r = 0; r < R; ++r)
      for (int64_t c = 0; c < len; ++c) o[r * len + c] = static_cast<int32_t>(get_bits(w + r * C, 1, c * bits, bits));
  }
  return out;
}

// AWQ: logical column 8c + j sits in nibble slot kAwqOrder[j] of word c.
constexpr int kAwqOrder[8] = {0, 4, 1, 5, 2, 6, 3, 7};

// Transposed copy of a 2-D tensor as i32/f32 etc. (contiguous).
Tensor transposed(const Tensor& t) { return t.to(Device::cpu()).t().contiguous(); }

int64_t n_groups(int64_t in, int64_t g) { return (in + g - 1) / g; }

}  // namespace

Tensor pack_rows(const Tensor& values, int bits) { return pack_stream(values, bits, 0); }
Tensor unpack_rows(const Tensor& packed, int bits, int64_t rows) { return unpack_stream(packed, bits, rows, 0); }
Tensor pack_cols(const Tensor& values, int bits) { return pack_stream(values, bits, 1); }
Tensor unpack_cols(const Tensor& packed, int bits, int64_t cols) { return unpack_stream(packed, bits, cols, 1); }

Tensor pack_cols_awq(const Tensor& values) {
  const Tensor v = as_i32(values, "values");
  const int64_t R = v.size(0), C = v.size(1);
  ARQ_CHECK(C % 8 == 0, ShapeError, "[pack awq] ", C, " columns of ", shape_str(v.shape()), " are not a multiple of 8");
  Tensor out = Tensor::empty({R, C / 8}, DType::i32);
  auto* o = reinterpret_cast<uint32_t*>(out.data<int32_t>());
  const int32_t* x = v.data<int32_t>();
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < C / 8; ++c) {
      uint32_t word = 0;
      for (int j = 0; j < 8; ++j) {
        const int32_t val = x[r * C + 8 * c + j];
        ARQ_ASSERT(val >= 0 && val <= 15, "[pack awq] value ", val, " at [", r, ", ", 8 * c + j, "] outside 4 bits");
        word |= static_cast<uint32_t>(val) << (4 * kAwqOrder[j]);
      }
      o[r * (C / 8) + c] = word;
    }
  return out;
}

Tensor unpack_cols_awq(const Tensor& packed, int64_t cols) {
  const Tensor p = as_i32(packed, "packed");
  const int64_t R = p.size(0), W = p.size(1);
  ARQ_CHECK(cols == 8 * W, ShapeError, "[unpack awq] ", shape_str(p.shape()), " holds ", 8 * W, " columns, not ", cols);
  Tensor out = Tensor::empty({R, cols}, DType::i32);
  const auto* w = reinterpret_cast<const uint32_t*>(p.data<int32_t>());
  int32_t* o = out.data<int32_t>();
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < W; ++c)
      for (int j = 0; j < 8; ++j) o[r * cols + 8 * c + j] = static_cast<int32_t>((w[r * W + c] >> (4 * kAwqOrder[j])) & 15u);
  return out;
}

const char* hf_packing_name(HfPacking p) {
  switch (p) {
    case HfPacking::gptq_v1: return "gptq (zero − 1)";
    case HfPacking::gptq_raw: return "gptq (raw zero)";
    case HfPacking::awq: return "awq";
  }
  return "?";
}

std::string packing_unsupported_reason(HfPacking p, int bits, int64_t in, int64_t out, int64_t group_size) {
  if (group_size <= 0) return cat("group size ", group_size, " (", hf_packing_name(p), " needs groups of the input dim; use -1 only as G = in)");
  if (p == HfPacking::awq) {
    if (bits != 4) return cat("AWQ holds 4-bit weights only, not ", bits, "-bit");
    if (out % 8 != 0) return cat("AWQ needs out_features % 8 == 0, got ", out);
    if (in % group_size != 0) return cat("AWQ needs in_features % group_size == 0, got ", in, " % ", group_size);
    return "";
  }
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8) return cat("GPTQ packing holds 2, 3, 4 or 8 bits, not ", bits);
  const int64_t need = 32 / std::gcd(32, bits);
  if (in % need != 0) return cat("GPTQ ", bits, "-bit packing needs in_features % ", need, " == 0, got ", in);
  if (out % need != 0) return cat("GPTQ ", bits, "-bit zero packing needs out_features % ", need, " == 0, got ", out);
  return "";
}

PackedLinear pack_linear(const IntLinearParts& parts, HfPacking p, bool with_g_idx, int64_t* n_unrepresentable) {
  ARQ_CHECK(parts.codes.defined() && parts.codes.dim() == 2, ShapeError, "[pack_linear] codes must be [out, in]");
  const int64_t N = parts.codes.size(0), K = parts.codes.size(1);
  const int64_t G = parts.group_size;
  const std::string why = packing_unsupported_reason(p, parts.bits, K, N, G);
  ARQ_CHECK(why.empty(), UsageError, "[pack_linear] ", hf_packing_name(p), " cannot hold a [", N, ", ", K, "] layer with ",
            parts.bits, " bits, group size ", G, ": ", why);
  const int64_t ng = n_groups(K, G);
  ARQ_CHECK(parts.zeros.defined() && parts.zeros.shape() == Shape({N, ng}), ShapeError, "[pack_linear] zeros ",
            parts.zeros.defined() ? parts.zeros.str() : "undefined", " must be [", N, ", ", ng, "]");
  ARQ_CHECK(parts.scales.defined() && parts.scales.shape() == Shape({N, ng}), ShapeError, "[pack_linear] scales ",
            parts.scales.defined() ? parts.scales.str() : "undefined", " must be [", N, ", ", ng, "]");
  ARQ_CHECK(is_floating(parts.scales.dtype()), DTypeError, "[pack_linear] scales must be floating, got ", parts.scales.str());

  PackedLinear out;
  const Tensor codes_t = transposed(as_i32(parts.codes, "codes"));   // [K, N]
  Tensor zeros_t = transposed(as_i32(parts.zeros, "zeros")).clone(); // [n_g, N]; clone: modified below
  out.scales = transposed(parts.scales).to(DType::f16).contiguous(); // [n_g, N]
  const uint32_t m = mask_of(parts.bits);
  if (p == HfPacking::gptq_v1) {
    int64_t bad = 0;
    int32_t* z = zeros_t.data<int32_t>();
    for (int64_t i = 0; i < zeros_t.numel(); ++i) {
      if (z[i] == 0) ++bad;
      z[i] = static_cast<int32_t>(static_cast<uint32_t>(z[i] - 1) & m);
    }
    if (n_unrepresentable) *n_unrepresentable = bad;
  } else if (n_unrepresentable) {
    *n_unrepresentable = 0;
  }
  if (p == HfPacking::awq) {
    out.qweight = pack_cols_awq(codes_t);    // [K, N/8]
    out.qzeros = pack_cols_awq(zeros_t);     // [n_g, N/8]
  } else {
    out.qweight = pack_rows(codes_t, parts.bits);   // [K·b/32, N]
    out.qzeros = pack_cols(zeros_t, parts.bits);    // [n_g, N·b/32]
  }
  if (with_g_idx) {
    out.g_idx = Tensor::empty({K}, DType::i32);
    for (int64_t k = 0; k < K; ++k) out.g_idx.data<int32_t>()[k] = static_cast<int32_t>(k / G);
  }
  return out;
}

IntLinearParts unpack_linear(const PackedLinear& packed, HfPacking p, int bits, int64_t group_size, int64_t in_features) {
  ARQ_CHECK(packed.scales.defined() && packed.scales.dim() == 2, ShapeError, "[unpack_linear] scales must be [n_g, out]");
  const int64_t N = packed.scales.size(1), K = in_features, ng = packed.scales.size(0);
  const std::string why = packing_unsupported_reason(p, bits, K, N, group_size);
  ARQ_CHECK(why.empty(), IoError, "[unpack_linear] ", hf_packing_name(p), ": ", why);
  ARQ_CHECK(ng == n_groups(K, group_size), ShapeError, "[unpack_linear] scales ", packed.scales.str(), " have ", ng,
            " groups; in_features ", K, " with group size ", group_size, " needs ", n_groups(K, group_size));
  Tensor codes_t, zeros_t;   // [K, N], [n_g, N]
  if (p == HfPacking::awq) {
    codes_t = unpack_cols_awq(packed.qweight, N);
    zeros_t = unpack_cols_awq(packed.qzeros, N);
  } else {
    codes_t = unpack_rows(packed.qweight, bits, K);
    zeros_t = unpack_cols(packed.qzeros, bits, N);
  }
  ARQ_CHECK(codes_t.shape() == Shape({K, N}) && zeros_t.shape() == Shape({ng, N}), ShapeError, "[unpack_linear] qweight ",
            packed.qweight.str(), " / qzeros ", packed.qzeros.str(), " do not match scales ", packed.scales.str());
  if (p == HfPacking::gptq_v1) {
    int32_t* z = zeros_t.data<int32_t>();
    for (int64_t i = 0; i < zeros_t.numel(); ++i) z[i] += 1;   // as GPTQ kernels read v1 zeros
  }
  IntLinearParts parts;
  parts.bits = bits;
  parts.group_size = group_size;
  parts.codes = transposed(codes_t).to(DType::u8);
  parts.zeros = transposed(zeros_t);
  parts.scales = transposed(packed.scales).to(DType::f16).contiguous();
  return parts;
}

Tensor dequantize_packed(const PackedLinear& packed, HfPacking p, int bits, int64_t group_size, int64_t in_features,
                         DType dtype) {
  const IntLinearParts parts = unpack_linear(packed, p, bits, group_size, in_features);
  const int64_t N = parts.codes.size(0), K = parts.codes.size(1), ng = parts.zeros.size(1);
  Tensor gidx;
  if (packed.g_idx.defined()) {
    gidx = packed.g_idx.to(Device::cpu()).to(DType::i32).contiguous();
    ARQ_CHECK(gidx.numel() == K, ShapeError, "[dequantize_packed] g_idx ", gidx.str(), " does not match in_features ", K);
  }
  const Tensor sc = parts.scales.to(DType::f32).contiguous();
  const uint8_t* c = parts.codes.data<uint8_t>();
  const int32_t* z = parts.zeros.data<int32_t>();
  const float* s = sc.data<float>();
  Tensor out = Tensor::empty({N, K}, DType::f32);
  float* o = out.data<float>();
  for (int64_t k = 0; k < K; ++k) {
    const int64_t g = gidx.defined() ? gidx.data<int32_t>()[k] : k / group_size;
    ARQ_CHECK(g >= 0 && g < ng, IoError, "[dequantize_packed] g_idx[", k, "] = ", g, " outside [0, ", ng, ")");
    for (int64_t n = 0; n < N; ++n)
      o[n * K + k] = s[n * ng + g] * static_cast<float>(static_cast<int32_t>(c[n * K + k]) - z[n * ng + g]);
  }
  return dtype == DType::f32 ? out : out.to(dtype);
}

}  // namespace arq::io
