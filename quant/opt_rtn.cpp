#include "quant/opt_rtn.h"

#include <cmath>
#include <vector>

#include "engine/ops.h"
#include "quant/qdq.h"

namespace arq::quant {

bool opt_rtn_applies(const QuantScheme& s) { return !s.keep_fp() && s.qtype() == QDataType::int_sym && s.bits < 8; }

namespace {

// Importance weights of one group (n valid elements). Zero entries mean "unseen channel": if
// more than half are zero the group falls back to |x| (|x| + sqrt(Σx²/32) above 3 bits, the
// llama.cpp weighting); otherwise the zeros take the mean of the non-zero entries.
void group_weights(const float* x, const float* imat, int64_t n, int bits, std::vector<float>& w) {
  w.assign(static_cast<size_t>(n), 1.0f);
  if (!imat) return;
  int64_t n_zero = 0;
  double sum_nz = 0;
  for (int64_t j = 0; j < n; ++j) {
    if (imat[j] == 0) ++n_zero;
    else sum_nz += imat[j];
  }
  if (2 * n_zero > n) {
    float add = 0;
    if (bits > 3) {
      double sx2 = 0;
      for (int64_t j = 0; j < n; ++j) sx2 += static_cast<double>(x[j]) * x[j];
      add = static_cast<float>(std::sqrt(sx2 / 32.0));
    }
    for (int64_t j = 0; j < n; ++j) w[j] = std::fabs(x[j]) + add;
    return;
  }
  const float mean_nz = n_zero < n ? static_cast<float>(sum_nz / static_cast<double>(n - n_zero)) : 1.0f;
  for (int64_t j = 0; j < n; ++j) w[j] = imat[j] == 0 ? mean_nz : imat[j];
}

// Σ w·(s·L − x)² with L = clamp(round(iscale·x), −Q, Q−1), accumulated in f32 as AutoRound.
float weighted_loss(const float* x, const float* w, int64_t n, float iscale, float scale, float Q) {
  float loss = 0;
  for (int64_t j = 0; j < n; ++j) {
    float l = std::nearbyint(iscale * x[j]);
    l = l < -Q ? -Q : (l > Q - 1 ? Q - 1 : l);
    const float d = scale * l - x[j];
    loss += w[j] * d * d;
  }
  return loss;
}

float search_row(const float* x, const float* imat, int64_t n, int bits, std::vector<float>& w) {
  const float Q = static_cast<float>(int64_t{1} << (bits - 1));
  // g: the signed absolute maximum (first element of largest |x|).
  float g = 0;
  for (int64_t j = 0; j < n; ++j)
    if (std::fabs(x[j]) > std::fabs(g)) g = x[j];
  if (g == 0) return 0.0f;  // all-zero group: the threshold makes it +thr
  group_weights(x, imat, n, bits, w);
  float best_scale = -g / Q;
  float best = weighted_loss(x, w.data(), n, -Q / g, best_scale, Q);
  // Candidates Q' = Q − step·k: bits ≠ 2: step 0.0075·Q, k ∈ [−100, 100] \ {0} (Q' ∈ [0.25Q, 1.75Q]);
  // bits = 2: step 0.01, k ∈ [−90, 90] \ {0} (Q' ∈ [1.1, 2.9]).
  const double search_min = 0.75 * Q;
  const double step = bits == 2 ? 0.01 : search_min / 200.0 * 2.0;
  const int K = bits == 2 ? 90 : static_cast<int>(search_min / step + 1e-9);
  for (int k = -K; k <= K; ++k) {
    if (k == 0) continue;
    const float qc = static_cast<float>(Q - step * k);
    const float scale = -g / qc;
    const float loss = weighted_loss(x, w.data(), n, -qc / g, scale, Q);
    if (loss < best) {
      best = loss;
      best_scale = scale;
    }
  }
  return best_scale;
}

}  // namespace

Tensor opt_rtn_scales(const Tensor& w, const QuantScheme& s, const Tensor& imatrix) {
  ARQ_CHECK(opt_rtn_applies(s), UsageError, "[opt-rtn] needs int_sym with bits < 8, got ", s.str());
  ARQ_CHECK(w.dim() == 2, ShapeError, "[opt-rtn] expects a [out, in] weight, got ", w.str());
  const GroupLayout g = make_group_layout(w.size(0), w.size(1), s.group_size);
  const Tensor wg = to_groups(w, g);
  Tensor imat_g;  // importance per grouped element, [n_rows, G]
  if (imatrix.defined()) {
    ARQ_CHECK(imatrix.numel() == g.in, ShapeError, "[opt-rtn] imatrix ", imatrix.str(), " must have in = ", g.in, " elements");
    const Tensor row = imatrix.to(Device::cpu()).to(DType::f32).reshape({1, g.in});
    imat_g = to_groups(row.expand({g.out, g.in}), g);
  }
  Tensor scales = Tensor::empty({g.n_rows()}, DType::f32);
  float* sp = scales.data<float>();
  const float* x = wg.data<float>();
  const float* im = imat_g.defined() ? imat_g.data<float>() : nullptr;
  std::vector<float> wbuf;
  for (int64_t r = 0; r < g.n_rows(); ++r) {
    int64_t n = g.group_len;
    if (!g.per_tensor) {
      const int64_t k = r % g.groups_per_row;
      n = std::min(g.in, (k + 1) * g.group_len) - k * g.group_len;  // the padding is not searched
    }
    sp[r] = search_row(x + r * g.group_len, im ? im + r * g.group_len : nullptr, n, s.bits, wbuf);
  }
  return scales;
}

QuantizedLinear quantize_opt_rtn(const Tensor& w, const QuantScheme& s, const Tensor& imatrix) {
  return quantize_sym_with_scales(w, s, opt_rtn_scales(w, s, imatrix), /*round_scale_first=*/false);
}

}  // namespace arq::quant
