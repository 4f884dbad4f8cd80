// Blocks and the block interface against independent references: RoPE frequency variants
// against the spec formulas in f64, attention masks element by element, a decoder block of
// every family against the f64 plain-loop block (reference_block.h), weight overrides and the
// gradient that flows into them against central finite differences.
#include <doctest/doctest.h>

#include <cmath>
#include <numbers>

#include "autograd/ops.h"
#include "engine/ops.h"
#include "models/blocks/attention.h"
#include "models/blocks/rope.h"
#include "models/causal_lm.h"
#include "models/family.h"
#include "models/random_model.h"
#include "tests/models/reference_block.h"

using namespace arq;
using namespace arq::models;

namespace {

RopeParams rope_params(const std::string& type, int64_t dim = 16) {
  RopeParams p;
  p.theta = 10000;
  p.dim = dim;
  p.max_position_embeddings = 64;
  p.scaling.rope_type = type;
  return p;
}

double base_freq(double theta, int64_t i, int64_t d) { return 1.0 / std::pow(theta, 2.0 * i / d); }

test::RefBlockWeights ref_weights(const CausalLM& lm, const BlockWeights& w) {
  test::RefBlockWeights r;
  const std::string p = lm.block_prefix(w.layer);
  for (const auto& [name, t] : w.tensors) r.w[name.substr(p.size())] = to_vector(t);
  return r;
}

// Largest |a − b| / (1 + |b|).
double max_rel(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]) / (1 + std::fabs(b[i])));
  return m;
}

}  // namespace

TEST_CASE("rope frequencies: default, linear, dynamic, llama3, yarn against the spec formulas") {
  // f32 inv_freq vs the f64 formula: relative error of powf plus one division, a few f32 ulps.
  const double tol = 1e-6;
  {
    RopeFrequencies f = rope_frequencies(rope_params("default"), 10);
    REQUIRE(f.inv_freq.size() == 8);
    for (int64_t i = 0; i < 8; ++i) CHECK(f.inv_freq[i] == doctest::Approx(base_freq(1e4, i, 16)).epsilon(tol));
    CHECK(f.attention_scaling == 1.0f);
  }
  {
    RopeParams p = rope_params("linear");
    p.scaling.factor = 4;
    RopeFrequencies f = rope_frequencies(p, 10);
    for (int64_t i = 0; i < 8; ++i) CHECK(f.inv_freq[i] == doctest::Approx(base_freq(1e4, i, 16) / 4).epsilon(tol));
  }
  {
    RopeParams p = rope_params("dynamic");
    p.scaling.factor = 2;
    // Within max_position_embeddings: unchanged.
    RopeFrequencies f0 = rope_frequencies(p, 64);
    for (int64_t i = 0; i < 8; ++i) CHECK(f0.inv_freq[i] == doctest::Approx(base_freq(1e4, i, 16)).epsilon(tol));
    // Longer: theta' = theta · (factor·s/max − (factor − 1))^(d/(d−2)).
    const double theta = 1e4 * std::pow(2.0 * 100 / 64 - 1, 16.0 / 14.0);
    RopeFrequencies f1 = rope_frequencies(p, 100);
    for (int64_t i = 0; i < 8; ++i) CHECK(f1.inv_freq[i] == doctest::Approx(base_freq(theta, i, 16)).epsilon(tol));
  }
  {
    RopeParams p = rope_params("llama3", 64);
    p.theta = 500000;
    p.scaling.factor = 8;
    p.scaling.low_freq_factor = 1;
    p.scaling.high_freq_factor = 4;
    p.scaling.original_max_position_embeddings = 8192;
    RopeFrequencies f = rope_frequencies(p, 10);
    int n_low = 0, n_mid = 0, n_high = 0;
    for (int64_t i = 0; i < 32; ++i) {
      const double b = base_freq(5e5, i, 64), lambda = 2 * std::numbers::pi / b;
      double want;
      if (lambda < 8192.0 / 4) want = b, ++n_high;
      else if (lambda > 8192.0 / 1) want = b / 8, ++n_low;
      else {
        const double sm = (8192.0 / lambda - 1) / (4 - 1);
        want = (1 - sm) * b / 8 + sm * b;
        ++n_mid;
      }
      CHECK(f.inv_freq[i] == doctest::Approx(want).epsilon(1e-5));
    }
    CHECK(n_low > 0);   // the case exercises all three bands
    CHECK(n_mid > 0);
    CHECK(n_high > 0);
  }
  {
    RopeParams p = rope_params("yarn", 64);
    p.scaling.factor = 4;
    p.scaling.original_max_position_embeddings = 32;
    RopeFrequencies f = rope_frequencies(p, 10);
    CHECK(f.attention_scaling == doctest::Approx(0.1 * std::log(4.0) + 1).epsilon(1e-6));
    auto cdim = [](double r) { return 64 * std::log(32 / (r * 2 * std::numbers::pi)) / (2 * std::log(1e4)); };
    const double lo = std::max(std::floor(cdim(32)), 0.0), hi = std::min(std::ceil(cdim(1)), 63.0);
    for (int64_t i = 0; i < 32; ++i) {
      const double ramp = std::clamp((i - lo) / (hi - lo), 0.0, 1.0), e = 1 - ramp, b = base_freq(1e4, i, 64);
      CHECK(f.inv_freq[i] == doctest::Approx(b / 4 * (1 - e) + b * e).epsilon(1e-5));
    }
    p.scaling.mscale = 0.707;
    p.scaling.mscale_all_dim = 0.707;
    CHECK(rope_frequencies(p, 10).attention_scaling == doctest::Approx(1.0));
    p.scaling.attention_factor = 1.5;
    CHECK(rope_frequencies(p, 10).attention_scaling == doctest::Approx(1.5));
  }
  {
    RopeParams p = rope_params("longrope");
    CHECK_THROWS_WITH_AS(rope_frequencies(p, 10), doctest::Contains("rope_scaling.rope_type 'longrope'"), ConfigError);
  }
}

TEST_CASE("rope tables: cos/sin of position · inv_freq, per batch row") {
  RopeParams p = rope_params("default", 8);
  Tensor pos = from_vector({0, 1, 2, 5, 3, 9, 0, 7}, {2, 4}, DType::i64);
  RopeTables t = rope_tables(p, pos, DType::f32, Device::cpu());
  REQUIRE(t.cos.shape() == Shape{2, 4, 1, 4});
  std::vector<double> c = to_vector(t.cos), s = to_vector(t.sin), pv = to_vector(pos);
  for (int64_t r = 0; r < 8; ++r)
    for (int64_t i = 0; i < 4; ++i) {
      const double ang = pv[r] * base_freq(1e4, i, 8);
      // f32 angle (position < 10, inv_freq rounded) and f32 cos: a few 1e-7 absolute.
      CHECK(c[r * 4 + i] == doctest::Approx(std::cos(ang)).epsilon(2e-6));
      CHECK(s[r * 4 + i] == doctest::Approx(std::sin(ang)).epsilon(2e-6));
    }
}

TEST_CASE("attention masks: causal, window, padding, segments") {
  auto allowed = [](const Tensor& m, int64_t n, int64_t i, int64_t j) { return m.at({n, 0, i, j}) == 0.0; };
  Tensor causal = attention_mask({.q_len = 4, .kv_len = 4});
  REQUIRE(causal.shape() == Shape{1, 1, 4, 4});
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t j = 0; j < 4; ++j) CHECK(allowed(causal, 0, i, j) == (j <= i));
  Tensor win = attention_mask({.q_len = 6, .kv_len = 6, .window = 3});
  for (int64_t i = 0; i < 6; ++i)
    for (int64_t j = 0; j < 6; ++j) CHECK(allowed(win, 0, i, j) == (j <= i && j > i - 3));
  // Cached decoding: 2 queries at absolute positions 4 and 5 over 6 keys.
  Tensor dec = attention_mask({.q_len = 2, .kv_len = 6, .window = 3});
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 6; ++j) CHECK(allowed(dec, 0, i, j) == (j <= i + 4 && j > i + 4 - 3));
  Tensor pad = from_vector({1, 1, 1, 0, 0, 1, 1, 1}, {2, 4}, DType::i64);
  Tensor pm = attention_mask({.q_len = 4, .kv_len = 4, .key_padding = pad});
  REQUIRE(pm.shape() == Shape{2, 1, 4, 4});
  CHECK(!allowed(pm, 0, 3, 3));
  CHECK(allowed(pm, 0, 3, 2));
  CHECK(!allowed(pm, 1, 2, 0));
  CHECK(allowed(pm, 1, 2, 1));
  Tensor seg = from_vector({0, 0, 1, 1}, {1, 4}, DType::i64);
  Tensor sm = attention_mask({.q_len = 4, .kv_len = 4, .segment_ids = seg});
  CHECK(allowed(sm, 0, 1, 0));
  CHECK(!allowed(sm, 0, 2, 1));
  CHECK(allowed(sm, 0, 3, 2));
  CHECK(sm.at({0, 0, 2, 1}) == doctest::Approx(static_cast<double>(kMaskedScore)));
}

TEST_CASE("block forward of every family agrees with the f64 plain-loop reference") {
  for (const Family& fam : families()) {
    SUBCASE(fam.model_type) {
      DecoderSpec spec = tiny_spec(fam.model_type);
      spec.mlp_bias = fam.model_type == std::string("llama");   // exercise every bias flag somewhere
      if (fam.model_type == std::string("llama")) spec.qkv_bias = spec.o_bias = true;
      // std 0.15 and jittered norms: attention far from uniform, norm weights not the identity.
      for (DType dt : {DType::f64, DType::f32}) {
        CAPTURE(dtype_name(dt));
        CausalLM lm = random_causal_lm(spec, {.seed = 11, .dtype = dt, .stddev = 0.15, .norm_jitter = 0.3});
        const int64_t b = 2, s = 9;   // s > mistral's window 5
        Tensor x = rand_normal({b, s, spec.hidden_size}, 5, 0, 1, dt);
        Tensor pad = from_vector({1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0}, {b, s}, DType::i64);
        for (bool padded : {false, true}) {
          CAPTURE(padded);
          InputSpec is{.batch = b, .seq = s};
          if (padded) is.padding_mask = pad;
          BlockInputs in = lm.block_inputs(is);
          for (int64_t layer = 0; layer < spec.num_hidden_layers; ++layer) {
            BlockWeights w = lm.load_block(layer);
            ag::NoGrad ng;
            std::vector<double> got = to_vector(lm.block_forward(w, ag::Var(x), in).value());
            std::vector<int64_t> pos;
            for (int64_t n = 0; n < b; ++n)
              for (int64_t t = 0; t < s; ++t) pos.push_back(t);
            std::vector<double> want =
                test::ref_block(spec, layer, ref_weights(lm, w), to_vector(x), b, s, pos, padded ? to_vector(pad) : std::vector<double>{});
            if (padded) {   // padding queries are garbage by definition; compare real positions only
              for (int64_t t = 6; t < s; ++t)
                for (int64_t e = 0; e < spec.hidden_size; ++e) got[(s + t) * spec.hidden_size + e] = want[(s + t) * spec.hidden_size + e];
            }
            // f64: RoPE tables are built in f32 as transformers builds them (angle error ~2^-23 relative at
            // positions < 9), so ~1e-7; everything else is f64 rounding. f32: matmuls of length ≤ 56 and a softmax over ≤ 9 keys, ~10 chained
            // ops of a few K·2^-24 each, plus RoPE angles in f32: 2e-5 relative to (1 + |y|) with margin.
            CHECK(max_rel(got, want) < (dt == DType::f64 ? 1e-6 : 2e-5));
          }
        }
      }
    }
  }
}

TEST_CASE("block interface: linears, overrides, gradients into a substituted weight") {
  DecoderSpec spec = tiny_spec("qwen2");
  CausalLM lm = random_causal_lm(spec, {.seed = 3, .dtype = DType::f64, .stddev = 0.2, .norm_jitter = 0.2});
  std::vector<LinearInfo> ls = lm.block_linears(1);
  REQUIRE(ls.size() == 7);
  CHECK(ls[0].name == "model.layers.1.self_attn.q_proj");
  CHECK(ls[0].weight_name() == "model.layers.1.self_attn.q_proj.weight");
  CHECK(ls[0].in_features == spec.hidden_size);
  CHECK(ls[0].out_features == spec.q_dim());
  CHECK(ls[0].has_bias);
  CHECK(ls[3].name == "model.layers.1.self_attn.o_proj");
  CHECK(!ls[3].has_bias);
  CHECK(ls[6].name == "model.layers.1.mlp.down_proj");
  CHECK(ls[6].in_features == spec.intermediate_size);
  CHECK(ls[6].out_features == spec.hidden_size);

  BlockWeights w = lm.load_block(1);
  CHECK(w.tensors.size() == lm.block_tensor_names(1).size());
  const int64_t b = 1, s = 5;
  Tensor x = rand_normal({b, s, spec.hidden_size}, 9, 0, 1, DType::f64);
  BlockInputs in = lm.block_inputs({.batch = b, .seq = s});
  Tensor base;
  {
    ag::NoGrad ng;
    base = lm.block_forward(w, ag::Var(x), in).value();
    // Override with the stored weight itself: identical output.
    WeightOverrides same = {{ls[2].name, ag::Var(w.at(ls[2].weight_name()))}};
    CHECK(max_rel(to_vector(lm.block_forward(w, ag::Var(x), in, same).value()), to_vector(base)) == 0.0);
  }
  // Bad overrides.
  CHECK_THROWS_WITH_AS(lm.block_forward(w, ag::Var(x), in, {{"model.layers.1.self_attn.qproj", ag::Var(w.at(ls[0].weight_name()))}}),
                       doctest::Contains("not a linear layer of block 1"), UsageError);
  CHECK_THROWS_AS(lm.block_forward(w, ag::Var(x), in, {{ls[0].name, ag::Var(w.at(ls[6].weight_name()))}}), ShapeError);

  // Gradient of L = Σ y² w.r.t. the down_proj weight and q_proj weight vs central differences (f64).
  for (int which : {0, 6}) {
    const LinearInfo& l = ls[which];
    Tensor W0 = w.at(l.weight_name()).clone();
    ag::Var Wv(W0, true);
    ag::Var y = lm.block_forward(w, ag::Var(x), in, {{l.name, Wv}});
    ag::backward(ag::sum_all(ag::mul(y, y)));
    REQUIRE(Wv.grad().defined());
    std::vector<double> g = to_vector(Wv.grad());
    const double h = 1e-6;
    for (int64_t k : {int64_t{0}, l.in_features + 3, l.out_features * l.in_features - 1}) {
      auto loss_at = [&](double delta) {
        ag::NoGrad ng;
        Tensor Wp = W0.clone();
        std::vector<double> v = to_vector(Wp);
        v[k] += delta;
        Tensor Wd = from_vector(v, W0.shape(), DType::f64);
        std::vector<double> yy = to_vector(lm.block_forward(w, ag::Var(x), in, {{l.name, ag::Var(Wd)}}).value());
        double acc = 0;
        for (double e : yy) acc += e * e;
        return acc;
      };
      const double fd = (loss_at(h) - loss_at(-h)) / (2 * h);
      // Central difference error O(h²·f''') plus rounding ~1e-16·|L|/h: ~1e-8 here, relative 1e-6 is safe.
      CAPTURE(l.name);
      CAPTURE(k);
      CHECK(g[k] == doctest::Approx(fd).epsilon(1e-6));
    }
  }
}

TEST_CASE("block inputs: packed samples restart positions and stay within their segment") {
  DecoderSpec spec = tiny_spec("llama");
  CausalLM lm = random_causal_lm(spec, {.seed = 4, .dtype = DType::f64, .stddev = 0.2});
  // Two samples of lengths 3 and 4 packed in one row must give what each gives alone.
  Tensor x = rand_normal({1, 7, spec.hidden_size}, 8, 0, 1, DType::f64);
  Tensor seg = from_vector({0, 0, 0, 1, 1, 1, 1}, {1, 7}, DType::i64);
  BlockInputs packed = lm.block_inputs({.batch = 1, .seq = 7, .segment_ids = seg});
  CHECK(to_vector(packed.position_ids) == std::vector<double>{0, 1, 2, 0, 1, 2, 3});
  BlockWeights w = lm.load_block(0);
  ag::NoGrad ng;
  std::vector<double> y = to_vector(lm.block_forward(w, ag::Var(x), packed).value());
  Tensor x1 = x.narrow(1, 0, 3).contiguous(), x2 = x.narrow(1, 3, 4).contiguous();
  std::vector<double> y1 = to_vector(lm.block_forward(w, ag::Var(x1), lm.block_inputs({.batch = 1, .seq = 3})).value());
  std::vector<double> y2 = to_vector(lm.block_forward(w, ag::Var(x2), lm.block_inputs({.batch = 1, .seq = 4})).value());
  y1.insert(y1.end(), y2.begin(), y2.end());
  CHECK(max_rel(y, y1) < 1e-12);
}
