// QuantizedLinear → io::IntLinearParts.
#include "quant/export_hf.h"

#include "engine/error.h"

namespace arq::quant {

io::IntLinearParts int_parts(const QuantizedLinear& q) {
  ARQ_CHECK(!q.layout.per_tensor, UsageError, "layer '", q.name,
            "': a per-tensor scale (group_size 0) cannot be packed in the GPTQ/AWQ layouts; use a group size > 0 or -1");
  io::IntLinearParts p;
  p.codes = q.codes;
  p.zeros = q.zeros;
  p.scales = q.scales;
  p.bits = q.bits;
  p.group_size = q.layout.group_len;
  return p;
}

}  // namespace arq::quant
