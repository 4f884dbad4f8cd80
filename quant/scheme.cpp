#include "quant/scheme.h"

#include "engine/error.h"

namespace arq::quant {

const char* qdata_type_name(QDataType t) {
  switch (t) {
    case QDataType::int_sym: return "int_sym";
    case QDataType::int_asym: return "int_asym";
    case QDataType::int_sym_gptq: return "int_sym_gptq";
    case QDataType::int_asym_dq: return "int_asym_dq";
    case QDataType::int_sym_dq: return "int_sym_dq";
    case QDataType::int_asym_float_zp: return "int_asym_float_zp";
  }
  return "?";
}

QDataType resolve_data_type(const std::string& data_type, bool sym, const std::string& where) {
  if (data_type == "int") return sym ? QDataType::int_sym : QDataType::int_asym;
  if (data_type == "int_sym") return QDataType::int_sym;
  if (data_type == "int_asym") return QDataType::int_asym;
  if (data_type == "int_sym_gptq") return QDataType::int_sym_gptq;
  if (data_type == "int_asym_dq") return QDataType::int_asym_dq;
  if (data_type == "int_sym_dq") return QDataType::int_sym_dq;
  if (data_type == "int_asym_float_zp") return QDataType::int_asym_float_zp;
  throw UsageError(cat(where, ": unknown data type '", data_type,
                       "' (supported: int, int_sym, int_asym, int_sym_gptq, int_asym_dq, int_sym_dq, int_asym_float_zp)"));
}

std::string QuantScheme::str() const {
  if (keep_fp()) return "fp16";
  if (is_double_quant(qtype())) return cat("W", bits, "G", group_size, " ", qdata_type_name(qtype()), " S", super_bits, "x", super_group_size);
  return cat("W", bits, "G", group_size, " ", qdata_type_name(qtype()));
}

void validate_scheme(const QuantScheme& s, const std::string& where) {
  ARQ_CHECK((s.bits >= 2 && s.bits <= 8) || s.bits == 16, UsageError, where, ": bits must be 2..8 (or 16 to keep a layer in 16 bits), got ",
            s.bits);
  ARQ_CHECK(s.group_size >= -1, UsageError, where, ": group_size must be a positive size, -1 (per channel) or 0 (per tensor), got ",
            s.group_size);
  const QDataType t = resolve_data_type(s.data_type, s.sym, where);
  if (is_double_quant(t) && !s.keep_fp()) {
    ARQ_CHECK(s.super_bits >= 2 && s.super_bits <= 8, UsageError, where, ": ", s.data_type, " needs super_bits in 2..8, got ", s.super_bits);
    ARQ_CHECK(s.super_group_size >= 1, UsageError, where, ": ", s.data_type, " needs super_group_size >= 1, got ", s.super_group_size);
    ARQ_CHECK(s.group_size > 0, UsageError, where, ": ", s.data_type, " needs a positive group size, got ", s.group_size);
  }
  ARQ_CHECK(s.scale_dtype == DType::f16 || s.scale_dtype == DType::bf16 || s.scale_dtype == DType::f32, UsageError, where,
            ": scale dtype must be f16, bf16 or f32, got ", dtype_name(s.scale_dtype));
}

double q_scale_thresh(DType scale_dtype) { return scale_dtype == DType::f32 ? 1e-8 : 1e-5; }

}  // namespace arq::quant
