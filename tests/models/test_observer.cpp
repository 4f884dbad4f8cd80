// The LinearObserver of CausalLM::block_forward: each linear's input, by full module name, as
// the linear receives it. Checked against an independent f64 plain-loop recomputation of the
// block from the observed inputs (tests/models/reference_block.h): the q/k/v input is the
// input RMSNorm of x; the residual after o_proj(observed o input) normed is the gate/up input;
// silu(gate)·up of that is the down input; and h + down(observed down input) is the block's
// output. An observer must not change the output.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <set>

#include "autograd/ops.h"
#include "engine/ops.h"
#include "models/causal_lm.h"
#include "models/family.h"
#include "models/random_model.h"
#include "tests/models/reference_block.h"

using namespace arq;
using namespace arq::models;

namespace {

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

}  // namespace

TEST_CASE("block_forward observer: every linear's input, reproducing the block output") {
  DecoderSpec spec = tiny_spec("llama");
  spec.qkv_bias = spec.o_bias = spec.mlp_bias = true;   // the observed input is before the bias
  CausalLM lm = random_causal_lm(spec, {.seed = 21, .dtype = DType::f64, .stddev = 0.2, .norm_jitter = 0.3});
  const int64_t b = 2, s = 6, H = spec.hidden_size, I = spec.intermediate_size, rows = b * s;
  const Tensor x = rand_normal({b, s, H}, 8, 0, 1, DType::f64);
  const BlockInputs in = lm.block_inputs({.batch = b, .seq = s});
  const int64_t layer = 1;
  const BlockWeights w = lm.load_block(layer);
  const std::string p = lm.block_prefix(layer);

  std::map<std::string, Tensor> seen;   // name -> input
  std::map<std::string, int> calls;
  const LinearObserver obs = [&](const std::string& name, const Tensor& t) {
    seen[name] = t.clone();
    ++calls[name];
  };
  ag::NoGrad ng;
  const Tensor plain = lm.block_forward(w, ag::Var(x), in).value();
  const Tensor observed = lm.block_forward(w, ag::Var(x), in, {}, nullptr, &obs).value();
  CHECK(max_abs_diff(to_vector(observed), to_vector(plain)) == 0.0);

  // One call per linear, with the full module names of block_linears, each [b, s, in_features].
  std::set<std::string> want_names;
  for (const LinearInfo& l : lm.block_linears(layer)) {
    want_names.insert(l.name);
    REQUIRE(seen.count(l.name) == 1);
    CHECK(calls[l.name] == 1);
    CHECK(seen[l.name].shape() == Shape({b, s, l.in_features}));
  }
  CHECK(seen.size() == want_names.size());

  auto v = [&](const std::string& leaf) { return to_vector(w.at(p + leaf)); };
  auto in_of = [&](const std::string& leaf) { return to_vector(seen.at(p + leaf)); };
  // f64 throughout: differences are rounding of ~60-term sums, ~1e-14; 1e-10 leaves margin and
  // still catches any wrong tensor (those differ by O(0.1)).
  const double tol = 1e-10;

  // q/k/v: the input RMSNorm of x, one shared tensor.
  const std::vector<double> a = test::ref_rms(to_vector(x), H, v("input_layernorm.weight"), spec.rms_norm_eps);
  CHECK(max_abs_diff(in_of("self_attn.q_proj"), a) < tol);
  CHECK(in_of("self_attn.k_proj") == in_of("self_attn.q_proj"));
  CHECK(in_of("self_attn.v_proj") == in_of("self_attn.q_proj"));

  // o_proj: h = x + o(observed) + b_o; gate/up see rms(h).
  const std::vector<double> bo = v("self_attn.o_proj.bias");
  std::vector<double> h = test::ref_linear(in_of("self_attn.o_proj"), rows, spec.q_dim(), v("self_attn.o_proj.weight"), H, &bo);
  const std::vector<double> xv = to_vector(x);
  for (size_t k = 0; k < h.size(); ++k) h[k] += xv[k];
  const std::vector<double> m = test::ref_rms(h, H, v("post_attention_layernorm.weight"), spec.rms_norm_eps);
  CHECK(max_abs_diff(in_of("mlp.gate_proj"), m) < tol);
  CHECK(in_of("mlp.up_proj") == in_of("mlp.gate_proj"));

  // down_proj: silu(gate m + b_g) · (up m + b_u).
  const std::vector<double> bg = v("mlp.gate_proj.bias"), bu = v("mlp.up_proj.bias"), bd = v("mlp.down_proj.bias");
  const std::vector<double> g = test::ref_linear(m, rows, H, v("mlp.gate_proj.weight"), I, &bg);
  const std::vector<double> u = test::ref_linear(m, rows, H, v("mlp.up_proj.weight"), I, &bu);
  std::vector<double> d(g.size());
  for (size_t k = 0; k < d.size(); ++k) d[k] = g[k] / (1 + std::exp(-g[k])) * u[k];
  CHECK(max_abs_diff(in_of("mlp.down_proj"), d) < tol);

  // The block output from the observed down input: y = h + down(observed) + b_d.
  std::vector<double> y = test::ref_linear(in_of("mlp.down_proj"), rows, I, v("mlp.down_proj.weight"), H, &bd);
  for (size_t k = 0; k < y.size(); ++k) y[k] += h[k];
  CHECK(max_abs_diff(to_vector(plain), y) < tol);
}

TEST_CASE("final_norm is the head's input: head(x) = final_norm(x) · lm_headᵀ") {
  DecoderSpec spec = tiny_spec("llama");   // untied
  REQUIRE_FALSE(spec.tie_word_embeddings);
  CausalLM lm = random_causal_lm(spec, {.seed = 22, .dtype = DType::f64, .stddev = 0.2, .norm_jitter = 0.3});
  const Tensor x = rand_normal({2, 3, spec.hidden_size}, 9, 0, 1, DType::f64);
  const std::vector<double> n = to_vector(lm.final_norm(x));
  CHECK(max_abs_diff(n, test::ref_rms(to_vector(x), spec.hidden_size, to_vector(lm.source().get("model.norm.weight")),
                                      spec.rms_norm_eps)) < 1e-12);
  const std::vector<double> logits =
      test::ref_linear(n, 6, spec.hidden_size, to_vector(lm.source().get("lm_head.weight")), spec.vocab_size, nullptr);
  // head() returns f32 logits: one rounding of |logit| ≲ 4 is ≤ 4·2^-24 ≈ 2.4e-7
  CHECK(max_abs_diff(to_vector(lm.head(x)), logits) < 1e-6);
}
