#include "models/blocks/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "engine/ops.h"

namespace arq::models {

namespace {

// Default inverse frequencies in f32: 1 / theta^(float(2i) / float(d)), as transformers does.
std::vector<float> base_inv_freq(double theta, int64_t dim) {
  std::vector<float> f(static_cast<size_t>(dim / 2));
  const float base = static_cast<float>(theta);
  for (int64_t i = 0; i < dim / 2; ++i) {
    const float e = static_cast<float>(2 * i) / static_cast<float>(dim);
    f[static_cast<size_t>(i)] = 1.0f / std::pow(base, e);
  }
  return f;
}

// YaRN's attention multiplier g(s, m) (spec §2.5).
double yarn_mscale(double s, double m) { return s <= 1 ? 1.0 : 0.1 * m * std::log(s) + 1.0; }

}  // namespace

bool rope_type_supported(const std::string& t) {
  return t == "default" || t == "linear" || t == "dynamic" || t == "llama3" || t == "yarn" || t == "mrope";
}

RopeFrequencies rope_frequencies(const RopeParams& p, int64_t seq_len) {
  const RopeScaling& s = p.scaling;
  const int64_t d = p.dim;
  ARQ_CHECK(d > 0 && d % 2 == 0, ConfigError, "rotary dim must be a positive even number, got ", d);
  ARQ_CHECK(p.theta > 0, ConfigError, "rope_theta must be positive, got ", p.theta);
  ARQ_CHECK(rope_type_supported(s.rope_type), ConfigError, "rope_scaling.rope_type '", s.rope_type,
            "' is not supported (supported: default, linear, dynamic, llama3, yarn)");
  RopeFrequencies out;
  const std::string& t = s.rope_type;
  if (t == "default" || t == "mrope") {
    out.inv_freq = base_inv_freq(p.theta, d);
  } else if (t == "linear") {
    ARQ_CHECK(s.factor > 0, ConfigError, "rope_scaling.factor must be positive for linear, got ", s.factor);
    out.inv_freq = base_inv_freq(p.theta, d);
    for (float& f : out.inv_freq) f = f / static_cast<float>(s.factor);
  } else if (t == "dynamic") {
    // NTK-aware: theta grows only once the input is longer than max_position_embeddings.
    ARQ_CHECK(s.factor > 0, ConfigError, "rope_scaling.factor must be positive for dynamic, got ", s.factor);
    const double max_pos = static_cast<double>(p.max_position_embeddings);
    const double len = std::max(static_cast<double>(seq_len), max_pos);
    const double theta = p.theta * std::pow(s.factor * len / max_pos - (s.factor - 1), static_cast<double>(d) / (d - 2));
    out.inv_freq = base_inv_freq(theta, d);
  } else if (t == "llama3") {
    ARQ_CHECK(s.factor > 0 && s.high_freq_factor != s.low_freq_factor, ConfigError,
              "rope_scaling for llama3 needs factor > 0 and high_freq_factor != low_freq_factor, got factor ", s.factor,
              ", low_freq_factor ", s.low_freq_factor, ", high_freq_factor ", s.high_freq_factor);
    const double orig = static_cast<double>(s.original_max_position_embeddings > 0 ? s.original_max_position_embeddings
                                                                                   : p.max_position_embeddings);
    const double low_wavelen = orig / s.low_freq_factor, high_wavelen = orig / s.high_freq_factor;
    out.inv_freq = base_inv_freq(p.theta, d);
    const float factor = static_cast<float>(s.factor);
    for (float& f : out.inv_freq) {
      const double wavelen = 2 * std::numbers::pi / static_cast<double>(f);
      if (wavelen < high_wavelen) continue;            // high frequencies: unchanged
      if (wavelen > low_wavelen) {                     // low frequencies: interpolated
        f = f / factor;
        continue;
      }
      const float smooth = static_cast<float>((orig / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor));
      f = (1 - smooth) * f / factor + smooth * f;
    }
  } else {  // yarn
    ARQ_CHECK(s.factor > 0, ConfigError, "rope_scaling.factor must be positive for yarn, got ", s.factor);
    const double orig = static_cast<double>(s.original_max_position_embeddings > 0 ? s.original_max_position_embeddings
                                                                                   : p.max_position_embeddings);
    if (s.attention_factor) out.attention_scaling = static_cast<float>(*s.attention_factor);
    else if (s.mscale != 0 && s.mscale_all_dim != 0)
      out.attention_scaling = static_cast<float>(yarn_mscale(s.factor, s.mscale) / yarn_mscale(s.factor, s.mscale_all_dim));
    else out.attention_scaling = static_cast<float>(yarn_mscale(s.factor, 1.0));
    auto correction_dim = [&](double rotations) {
      return static_cast<double>(d) * std::log(orig / (rotations * 2 * std::numbers::pi)) / (2 * std::log(p.theta));
    };
    double low = correction_dim(s.beta_fast), high = correction_dim(s.beta_slow);
    if (s.truncate) {
      low = std::floor(low);
      high = std::ceil(high);
    }
    low = std::max(low, 0.0);
    high = std::min(high, static_cast<double>(d - 1));
    if (low == high) high += 0.001;
    const std::vector<float> base = base_inv_freq(p.theta, d);
    out.inv_freq.resize(base.size());
    const float factor = static_cast<float>(s.factor);
    for (size_t i = 0; i < base.size(); ++i) {
      const float ramp = std::clamp(static_cast<float>((static_cast<double>(i) - low) / (high - low)), 0.0f, 1.0f);
      const float extrap = 1 - ramp;  // weight of the unscaled (extrapolated) frequency
      // transformers computes 1/(factor·θ^e) and 1/θ^e from θ^e; dividing base by factor is the same in f32 up to
      // one rounding.
      out.inv_freq[i] = (base[i] / factor) * (1 - extrap) + base[i] * extrap;
    }
  }
  return out;
}

RopeTables rope_tables(const RopeParams& p, const Tensor& position_ids, DType dtype, Device device) {
  ARQ_CHECK(position_ids.dim() == 1 || position_ids.dim() == 2, ShapeError,
            "[rope_tables] position_ids must be [s] or [b, s], got ", position_ids.str());
  ARQ_CHECK(is_integral(position_ids.dtype()), DTypeError, "[rope_tables] position_ids must be integers, got ",
            position_ids.str());
  Tensor pos = position_ids.dim() == 1 ? position_ids.unsqueeze(0) : position_ids;
  const int64_t b = pos.size(0), s = pos.size(1), half = p.dim / 2;
  std::vector<double> ids = to_vector(pos);
  double max_pos = 0;
  for (double v : ids) max_pos = std::max(max_pos, v);
  const RopeFrequencies fr = rope_frequencies(p, static_cast<int64_t>(max_pos) + 1);
  Tensor cos = Tensor::empty({b, s, 1, half}, DType::f32), sin = Tensor::empty({b, s, 1, half}, DType::f32);
  float* c = cos.data<float>();
  float* sn = sin.data<float>();
  for (int64_t i = 0; i < b * s; ++i) {
    const float pf = static_cast<float>(ids[static_cast<size_t>(i)]);
    for (int64_t j = 0; j < half; ++j) {
      const float angle = pf * fr.inv_freq[static_cast<size_t>(j)];   // f32, as transformers' f32 matmul
      c[i * half + j] = std::cos(angle) * fr.attention_scaling;
      sn[i * half + j] = std::sin(angle) * fr.attention_scaling;
    }
  }
  return {cos.to(dtype).to(device), sin.to(dtype).to(device)};
}

}  // namespace arq::models
