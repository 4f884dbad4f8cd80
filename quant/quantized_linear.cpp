#include "quant/quantized_linear.h"

#include "engine/ops.h"
#include "engine/qdq_fused.h"

namespace arq::quant {

GroupLayout make_group_layout(int64_t out, int64_t in, int64_t group_size) {
  ARQ_CHECK(out > 0 && in > 0, ShapeError, "[group layout] weight must be a non-empty [out, in], got [", out, ", ", in, "]");
  ARQ_CHECK(group_size >= -1, ShapeError, "[group layout] group_size must be >= -1, got ", group_size);
  GroupLayout g;
  g.out = out;
  g.in = in;
  g.group_size = group_size;
  if (group_size == 0) {
    g.per_tensor = true;
    g.group_len = out * in;
    g.groups_per_row = 1;
  } else if (group_size == -1 || in < group_size) {
    // AutoRound leaves rows shorter than a group unpadded: one group per row.
    g.group_len = in;
    g.groups_per_row = 1;
  } else {
    g.group_len = group_size;
    g.groups_per_row = (in + group_size - 1) / group_size;
  }
  return g;
}

Tensor to_groups(const Tensor& w, const GroupLayout& g) { return to_groups(w, g, Device::cpu()); }

Tensor to_groups(const Tensor& w, const GroupLayout& g, Device device) {
  ARQ_CHECK(w.dim() == 2 && w.size(0) == g.out && w.size(1) == g.in, ShapeError, "[to_groups] weight ", w.str(),
            " does not match the layout [", g.out, ", ", g.in, "]");
  Tensor wf = w.to(device).to(DType::f32);
  if (g.per_tensor) return wf.contiguous().reshape({1, g.out * g.in});
  if (g.padded_in() == g.in) return wf.contiguous().reshape({g.n_rows(), g.group_len});
  Tensor padded = zeros({g.out, g.padded_in()}, DType::f32, device);
  Tensor dst = padded.narrow(1, 0, g.in);
  copy_(dst, wf);
  return padded.reshape({g.n_rows(), g.group_len});
}

Tensor from_groups(const Tensor& wg, const GroupLayout& g) {
  ARQ_CHECK(wg.dim() == 2 && wg.size(0) == g.n_rows() && wg.size(1) == g.group_len, ShapeError, "[from_groups] ", wg.str(),
            " is not [", g.n_rows(), ", ", g.group_len, "]");
  if (g.per_tensor) return wg.contiguous().reshape({g.out, g.in});
  return wg.contiguous().reshape({g.out, g.padded_in()}).narrow(1, 0, g.in).contiguous();
}

Tensor dequantize(const QuantizedLinear& q) { return dequantize(q, q.weight_dtype); }

Tensor dequantize(const QuantizedLinear& q, DType dtype) {
  return dequantize(q, dtype, q.codes.defined() ? q.codes.device() : Device::cpu());
}

Tensor dequantize(const QuantizedLinear& q, DType dtype, Device device) {
  const GroupLayout& g = q.layout;
  ARQ_CHECK(q.codes.defined() && q.codes.shape() == Shape({g.out, g.in}), ShapeError, "[dequantize] ", q.name, ": codes ",
            q.codes.defined() ? q.codes.str() : "undefined", " do not match [", g.out, ", ", g.in, "]");
  const QdqSpec layout{.out = g.out,
                       .in = g.in,
                       .group_len = g.group_len,
                       .groups_per_row = g.groups_per_row,
                       .per_tensor = g.per_tensor};
  // GGUF asym types: ŵ = scale·u − min (their zeros are unused); else scale·(u − zp)
  const bool with_mins = q.mins.defined();
  return dequantize_codes(q.codes.to(device), q.scales.to(device), with_mins ? Tensor() : q.zeros.to(device),
                          with_mins ? q.mins.to(device) : Tensor(), layout, dtype);
}

}  // namespace arq::quant
