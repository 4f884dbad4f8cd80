// An independent f64 plain-loop implementation of one Llama-family decoder block, written from
// spec/formats.md §2 (not from the models/ code): RMSNorm, q/k/v projections with optional
// biases, optional per-head q/k RMSNorm, rotate-half RoPE with default frequencies, grouped
// heads (query head h reads kv head h / (nh/nkv)), causal + sliding-window + padding masks,
// softmax, output projection, SwiGLU MLP, both residuals.
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/ops.h"
#include "models/decoder_spec.h"

namespace arq::test {

struct RefBlockWeights {
  std::map<std::string, std::vector<double>> w;   // leaf name ("self_attn.q_proj.weight") -> row-major values
  const std::vector<double>& at(const std::string& k) const { return w.at(k); }
  bool has(const std::string& k) const { return w.count(k) != 0; }
};

// y[r][o] = Σ_i x[r][i] · W[o][i] (+ b[o]); x [rows, in], W [out, in].
inline std::vector<double> ref_linear(const std::vector<double>& x, int64_t rows, int64_t in, const std::vector<double>& W,
                                      int64_t out, const std::vector<double>* b) {
  std::vector<double> y(static_cast<size_t>(rows * out));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double acc = b ? (*b)[static_cast<size_t>(o)] : 0.0;
      for (int64_t i = 0; i < in; ++i) acc += x[static_cast<size_t>(r * in + i)] * W[static_cast<size_t>(o * in + i)];
      y[static_cast<size_t>(r * out + o)] = acc;
    }
  return y;
}

// RMSNorm of every consecutive group of d values.
inline std::vector<double> ref_rms(const std::vector<double>& x, int64_t d, const std::vector<double>& w, double eps) {
  std::vector<double> y(x.size());
  for (size_t r = 0; r < x.size() / static_cast<size_t>(d); ++r) {
    double ss = 0;
    for (int64_t i = 0; i < d; ++i) ss += x[r * d + i] * x[r * d + i];
    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(d) + eps);
    for (int64_t i = 0; i < d; ++i) y[r * d + i] = x[r * d + i] * inv * w[static_cast<size_t>(i)];
  }
  return y;
}

// x [b, s, H] -> [b, s, H]. pos [b·s] position ids; pad [b·s] (1 real, 0 padding) or empty.
inline std::vector<double> ref_block(const models::DecoderSpec& c, int64_t layer, const RefBlockWeights& W,
                                     const std::vector<double>& x, int64_t b, int64_t s, const std::vector<int64_t>& pos,
                                     const std::vector<double>& pad = {}) {
  const int64_t H = c.hidden_size, nh = c.num_attention_heads, nkv = c.num_key_value_heads, hd = c.head_dim;
  const int64_t I = c.intermediate_size, rows = b * s, g = nh / nkv, win = c.window(layer);
  auto opt = [&](const std::string& k) { return W.has(k) ? &W.at(k) : nullptr; };
  std::vector<double> a = ref_rms(x, H, W.at("input_layernorm.weight"), c.rms_norm_eps);
  std::vector<double> q = ref_linear(a, rows, H, W.at("self_attn.q_proj.weight"), nh * hd, opt("self_attn.q_proj.bias"));
  std::vector<double> k = ref_linear(a, rows, H, W.at("self_attn.k_proj.weight"), nkv * hd, opt("self_attn.k_proj.bias"));
  std::vector<double> v = ref_linear(a, rows, H, W.at("self_attn.v_proj.weight"), nkv * hd, opt("self_attn.v_proj.bias"));
  if (c.qk_norm) {
    q = ref_rms(q, hd, W.at("self_attn.q_norm.weight"), c.rms_norm_eps);
    k = ref_rms(k, hd, W.at("self_attn.k_norm.weight"), c.rms_norm_eps);
  }
  // rotate_half RoPE over the first rot dims of each head: pair (i, i + rot/2).
  const int64_t rot = c.rope.dim, half = rot / 2;
  auto rope = [&](std::vector<double>& t, int64_t heads) {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t h = 0; h < heads; ++h) {
        double* e = &t[static_cast<size_t>((r * heads + h) * hd)];
        for (int64_t i = 0; i < half; ++i) {
          const double ang = static_cast<double>(pos[static_cast<size_t>(r)]) * std::pow(c.rope.theta, -2.0 * i / rot);
          const double x0 = e[i], x1 = e[i + half];
          e[i] = x0 * std::cos(ang) - x1 * std::sin(ang);
          e[i + half] = x1 * std::cos(ang) + x0 * std::sin(ang);
        }
      }
  };
  rope(q, nh);
  rope(k, nkv);
  std::vector<double> o(static_cast<size_t>(rows * nh * hd), 0.0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  for (int64_t n = 0; n < b; ++n)
    for (int64_t h = 0; h < nh; ++h) {
      const int64_t kh = h / g;
      for (int64_t i = 0; i < s; ++i) {
        std::vector<double> sc(static_cast<size_t>(s), -INFINITY);
        double mx = -INFINITY;
        for (int64_t j = 0; j <= i; ++j) {
          if (win > 0 && j <= i - win) continue;
          if (!pad.empty() && pad[static_cast<size_t>(n * s + j)] == 0) continue;
          double d = 0;
          for (int64_t e = 0; e < hd; ++e)
            d += q[static_cast<size_t>(((n * s + i) * nh + h) * hd + e)] * k[static_cast<size_t>(((n * s + j) * nkv + kh) * hd + e)];
          sc[static_cast<size_t>(j)] = d * scale;
          mx = std::max(mx, sc[static_cast<size_t>(j)]);
        }
        if (mx == -INFINITY) continue;   // every key masked: output row stays 0 (a padding query)
        double z = 0;
        for (int64_t j = 0; j < s; ++j) z += sc[static_cast<size_t>(j)] == -INFINITY ? 0 : std::exp(sc[static_cast<size_t>(j)] - mx);
        for (int64_t j = 0; j < s; ++j) {
          if (sc[static_cast<size_t>(j)] == -INFINITY) continue;
          const double p = std::exp(sc[static_cast<size_t>(j)] - mx) / z;
          for (int64_t e = 0; e < hd; ++e)
            o[static_cast<size_t>(((n * s + i) * nh + h) * hd + e)] += p * v[static_cast<size_t>(((n * s + j) * nkv + kh) * hd + e)];
        }
      }
    }
  std::vector<double> attn = ref_linear(o, rows, nh * hd, W.at("self_attn.o_proj.weight"), H, opt("self_attn.o_proj.bias"));
  std::vector<double> h(x.size());
  for (size_t i = 0; i < x.size(); ++i) h[i] = x[i] + attn[i];
  std::vector<double> m = ref_rms(h, H, W.at("post_attention_layernorm.weight"), c.rms_norm_eps);
  std::vector<double> gt = ref_linear(m, rows, H, W.at("mlp.gate_proj.weight"), I, opt("mlp.gate_proj.bias"));
  std::vector<double> up = ref_linear(m, rows, H, W.at("mlp.up_proj.weight"), I, opt("mlp.up_proj.bias"));
  for (size_t i = 0; i < gt.size(); ++i) gt[i] = gt[i] / (1.0 + std::exp(-gt[i])) * up[i];
  std::vector<double> dn = ref_linear(gt, rows, I, W.at("mlp.down_proj.weight"), H, opt("mlp.down_proj.bias"));
  for (size_t i = 0; i < h.size(); ++i) h[i] += dn[i];
  return h;
}

}  // namespace arq::test
