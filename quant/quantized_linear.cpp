#include "quant/quantized_linear.h"

#include "engine/ops.h"

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

Tensor to_groups(const Tensor& w, const GroupLayout& g) {
  ARQ_CHECK(w.dim() == 2 && w.size(0) == g.out && w.size(1) == g.in, ShapeError, "[to_groups] weight ", w.str(),
            " does not match the layout [", g.out, ", ", g.in, "]");
  Tensor wf = w.to(Device::cpu()).to(DType::f32);
  if (g.per_tensor) return wf.contiguous().reshape({1, g.out * g.in});
  if (g.padded_in() == g.in) return wf.contiguous().reshape({g.n_rows(), g.group_len});
  Tensor padded = zeros({g.out, g.padded_in()}, DType::f32);
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
  const GroupLayout& g = q.layout;
  ARQ_CHECK(q.codes.defined() && q.codes.shape() == Shape({g.out, g.in}), ShapeError, "[dequantize] ", q.name, ": codes ",
            q.codes.defined() ? q.codes.str() : "undefined", " do not match [", g.out, ", ", g.in, "]");
  const Tensor codes = q.codes.to(Device::cpu()).contiguous();
  const Tensor sc = q.scales.to(Device::cpu()).to(DType::f32).contiguous();
  const Tensor zp = q.zeros.to(Device::cpu()).contiguous();
  Tensor out = Tensor::empty({g.out, g.in}, DType::f32);
  const uint8_t* c = codes.data<uint8_t>();
  const float* s = sc.data<float>();
  const int32_t* z = zp.data<int32_t>();
  float* o = out.data<float>();
  if (q.mins.defined()) {
    // GGUF asym types: ŵ = scale·u − min, two f32 roundings in ggml's decode order.
    const Tensor mn = q.mins.to(Device::cpu()).to(DType::f32).contiguous();
    const float* m = mn.data<float>();
    for (int64_t i = 0; i < g.out; ++i)
      for (int64_t j = 0; j < g.in; ++j) {
        const int64_t r = g.per_tensor ? 0 : i * g.groups_per_row + j / g.group_len;
        o[i * g.in + j] = s[r] * static_cast<float>(c[i * g.in + j]) - m[r];
      }
    return dtype == DType::f32 ? out : out.to(dtype);
  }
  for (int64_t i = 0; i < g.out; ++i) {
    for (int64_t j = 0; j < g.in; ++j) {
      const int64_t r = g.per_tensor ? 0 : i * g.groups_per_row + j / g.group_len;
      // (u − zp) is the exact integer level; one f32 product, as in the qdq forward.
      o[i * g.in + j] = s[r] * static_cast<float>(static_cast<int32_t>(c[i * g.in + j]) - z[r]);
    }
  }
  return dtype == DType::f32 ? out : out.to(dtype);
}

}  // namespace arq::quant
