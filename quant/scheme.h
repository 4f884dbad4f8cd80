// Weight quantization schemes: bits, group size, symmetry and data type of one linear layer
// (spec/autoround.md §1.7, §1.8, §1.14).
//
//   QuantScheme s{.bits = 4, .group_size = 32};        // AutoRound's W4G32, full-range sym
//   QDataType t = s.qtype();                             // QDataType::int_sym
//   validate_scheme(s, "--layer_config k_proj");         // UsageError naming the source
//
// bits = 16 means "keep this layer in 16 bits" (AutoRound's "fp" layers).
#pragma once

#include <cstdint>
#include <string>

#include "engine/dtype.h"

namespace arq::quant {

// The integer qdq flavours of spec §1.8.
enum class QDataType : uint8_t {
  int_sym,       // full-range symmetric, signed scale, levels [−Q, Q−1], Q = 2^(b−1) (default)
  int_asym,      // min/max with a rounded zero point, levels [0, 2^b − 1]
  int_sym_gptq,  // range [−max|w|, max|w|] over 2^b − 1 steps, zero point 2^(b−1)
  // GGUF data types (§4d "Scheme facts"; formulas in quant/qdq_gguf.h):
  int_asym_dq,        // k-quant asym (q2_K, q4_K, q5_K): scales and mins double-quantized per super-group
  int_sym_dq,         // k-quant sym (q3_K, q6_K): signed scales double-quantized per super-group
  int_asym_float_zp,  // q4_1 / q5_1: ŵ = s·u + m with a float minimum m (no rounded zero point)
};
// Whether a flavour double-quantizes its group scales (needs super_bits / super_group_size).
inline bool is_double_quant(QDataType t) { return t == QDataType::int_asym_dq || t == QDataType::int_sym_dq; }
const char* qdata_type_name(QDataType t);

// AutoRound data_type string + sym flag → flavour: "int" follows `sym`; "int_sym",
// "int_asym" and "int_sym_gptq" name one directly. Throws UsageError naming `where`.
QDataType resolve_data_type(const std::string& data_type, bool sym, const std::string& where = "--data_type");

struct QuantScheme {
  int bits = 4;                   // 2..8, or 16 = keep in 16 bits
  int64_t group_size = 128;       // >0: elements per group; −1: per output channel; 0: per tensor
  bool sym = true;
  std::string data_type = "int";  // "int", "int_sym", "int_asym", "int_sym_gptq", "int_asym_dq", "int_sym_dq", "int_asym_float_zp"
  DType scale_dtype = DType::f16; // scales are rounded to this during quantization (§1.10)
  // Double quantization (int_*_dq only, §1.14): each run of super_group_size consecutive group
  // scales (and mins) shares one super-scale, and the group scales become super_bits-bit ints.
  int super_bits = 0;
  int64_t super_group_size = 0;

  bool keep_fp() const { return bits >= 16; }
  QDataType qtype() const { return resolve_data_type(data_type, sym); }
  // "W4G32 int_sym" — used in logs.
  std::string str() const;
};

// Throws UsageError naming `where` (a flag or a layer_config key) when bits are outside 2..8
// (and not 16), the group size is below −1, or the data type is unknown; for the *_dq types
// also when super_bits is outside 2..8, super_group_size < 1 or the group size is not > 0.
void validate_scheme(const QuantScheme& s, const std::string& where);

// AutoRound's q_scale_thresh: 1e-5, or 1e-8 when scales are kept in fp32 (§1.7).
double q_scale_thresh(DType scale_dtype);

// The largest level of a flavour: 2^(b−1) − 1 for int_sym (levels −Q..Q−1 are stored as
// unsigned codes u = q + Q), 2^b − 1 otherwise. All codes lie in [0, 2^b − 1].
inline int64_t max_code(int bits) { return (int64_t{1} << bits) - 1; }

}  // namespace arq::quant
