// The importance matrix of opt-RTN (spec/autoround.md §3) on a random tiny Llama: the collector
// against a plain-loop f64 sum over independently captured linear inputs, its effect on the
// importance-weighted error, the zero-entry rules on hand-built groups, and the pipeline's
// iters-0 path with calibration data against a reference FP chain.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <vector>

#include "autograd/ops.h"
#include "engine/ops.h"
#include "models/family.h"
#include "models/random_model.h"
#include "quant/imatrix.h"
#include "quant/opt_rtn.h"
#include "quant/pipeline.h"
#include "tests/quant/quant_test_util.h"
#include "quant/qdq.h"

using namespace arq;
using namespace arq::quant;
using namespace arq::quant_test;

namespace {

// Every linear's input of one block forward on all of x at once (one batch).
std::map<std::string, Tensor> capture_inputs(const models::CausalLM& lm, const models::BlockWeights& w, const Tensor& x) {
  std::map<std::string, Tensor> seen;
  const models::LinearObserver obs = [&](const std::string& name, const Tensor& t) { seen[name] = t.clone(); };
  ag::NoGrad ng;
  const models::BlockInputs in = lm.block_inputs({.batch = x.size(0), .seq = x.size(1)});
  lm.block_forward(w, ag::Var(x), in, {}, nullptr, &obs);
  return seen;
}

// Plain loop: per channel Σ over all rows of x² in f64, divided by the sample count n.
std::vector<double> ref_imatrix(const Tensor& x, int64_t n) {
  const std::vector<double> v = to_vector(x);
  const int64_t in = x.size(-1), rows = x.numel() / in;
  std::vector<double> s(static_cast<size_t>(in), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < in; ++j) s[j] += v[r * in + j] * v[r * in + j];
  for (double& e : s) e /= static_cast<double>(n);
  return s;
}

// Σ_j imatrix[j] · Σ_rows (ŵ − w)²: the error opt-RTN's search weighs.
double weighted_error(const Tensor& w, const QuantizedLinear& q, const std::vector<double>& imat) {
  const std::vector<double> a = to_vector(dequantize(q, DType::f32)), b = to_vector(w);
  const size_t in = imat.size();
  double e = 0;
  for (size_t k = 0; k < a.size(); ++k) e += imat[k % in] * (a[k] - b[k]) * (a[k] - b[k]);
  return e;
}

}  // namespace

TEST_CASE("imatrix: Σx² per channel over all tokens / samples, batched, equals a plain f64 loop") {
  for (DType dt : {DType::f64, DType::f32}) {
    CAPTURE(dtype_name(dt));
    const models::CausalLM lm =
        models::random_causal_lm(spec_all_quantizable(), {.seed = 5, .dtype = dt, .stddev = 0.2, .norm_jitter = 0.5});
    const int64_t n = 5, seq = 7;
    const Tensor x = rand_normal({n, seq, lm.spec().hidden_size}, 12, 0, 1, dt);
    const models::BlockWeights bw = lm.load_block(1);
    ImatrixCollector c;
    const ObservedBlockFn fn = [&](const ag::Var& xb, const models::LinearObserver& obs) {
      return lm.block_forward(bw, xb, lm.block_inputs({.batch = xb.size(0), .seq = xb.size(1)}), {}, nullptr, &obs);
    };
    // batches of 2, 2, 1: the count is samples (5), not tokens or batches
    const Tensor y = run_block_with_imatrix(fn, x, 2, dt, dt, c);
    const std::map<std::string, Tensor> im = c.result();
    const std::map<std::string, Tensor> inputs = capture_inputs(lm, bw, x);
    REQUIRE(im.size() == 7);
    for (const models::LinearInfo& l : lm.block_linears(1)) {
      CAPTURE(l.name);
      CHECK(c.samples(l.name) == n);
      const std::vector<double> got = to_vector(im.at(l.name)), want = ref_imatrix(inputs.at(l.name), n);
      REQUIRE(got.size() == static_cast<size_t>(l.in_features));
      // f64 model: the inputs of batches of 2 and of 5 differ by GEMM rounding (~1e-16); the
      // result is stored in f32 (2^-24 relative). f32 model: the inputs differ by f32 GEMM
      // rounding across batch shapes (~k·2^-24 with k ≤ 64, doubled by the square): 1e-5.
      const double tol = dt == DType::f64 ? 1e-7 : 1e-5;
      for (size_t j = 0; j < got.size(); ++j) CHECK(std::fabs(got[j] - want[j]) <= tol * std::fabs(want[j]) + 1e-30);
    }
    // the observed pass is the FP reference pass: same outputs as a plain forward
    const std::vector<double> yv = to_vector(y);
    ag::NoGrad ng;
    const std::vector<double> plain =
        to_vector(lm.block_forward(bw, ag::Var(x), lm.block_inputs({.batch = n, .seq = seq})).value());
    double m = 0;
    for (size_t k = 0; k < yv.size(); ++k) m = std::max(m, std::fabs(yv[k] - plain[k]));
    CHECK(m < (dt == DType::f64 ? 1e-12 : 1e-5));
  }
}

TEST_CASE("imatrix collector: shared inputs reduced once, shapes checked, samples counted per call") {
  ImatrixCollector c;
  const Tensor a = from_vector({1, 2, 3, 4, 5, 6}, {1, 2, 3});   // [b=1, s=2, in=3]
  c.add("q", a);
  c.add("k", a);
  c.add("q", a.clone());   // a different tensor with the same values
  const std::map<std::string, Tensor> r = c.result();
  CHECK(to_vector(r.at("q")) == std::vector<double>{17.0, 29.0, 45.0});   // 2·(1+16, 4+25, 9+36) / 2
  CHECK(to_vector(r.at("k")) == std::vector<double>{17.0, 29.0, 45.0});
  CHECK(c.samples("q") == 2);
  CHECK(c.samples("k") == 1);
  CHECK(c.samples("v") == 0);
  CHECK_THROWS_AS(c.add("q", from_vector({1, 2}, {1, 1, 2})), ShapeError);
}

TEST_CASE("opt-RTN with the collected imatrix lowers the importance-weighted error") {
  const models::CausalLM lm = models::random_causal_lm(spec_all_quantizable(), {.seed = 6, .stddev = 0.1, .norm_jitter = 0.8});
  const Tensor x = rand_normal({4, 16, lm.spec().hidden_size}, 13);
  const models::BlockWeights bw = lm.load_block(0);
  const std::map<std::string, Tensor> inputs = capture_inputs(lm, bw, x);
  for (int bits : {2, 3, 4}) {
    CAPTURE(bits);
    const QuantScheme s{.bits = bits, .group_size = 32};
    double e_imat = 0, e_plain = 0;
    for (const models::LinearInfo& l : lm.block_linears(0)) {
      const Tensor w = bw.at(l.weight_name());
      const std::vector<double> im = ref_imatrix(inputs.at(l.name), 4);
      const Tensor imt = from_vector(im, {l.in_features});
      const double a = weighted_error(w, quantize_opt_rtn(w, s, imt), im), b = weighted_error(w, quantize_opt_rtn(w, s, Tensor()), im);
      // per group the weighted search takes the best of the same candidates the unweighted one
      // chooses from; the f32 loss accumulation may swap near-ties (1e-5 relative)
      CHECK(a <= b * (1 + 1e-5));
      e_imat += a;
      e_plain += b;
    }
    CHECK(e_imat < e_plain);
  }
}

// The zero-entry rules of §3, per group: "If more than half a group is zero, the group falls back
// to |w|, or to |w| + sqrt(Σw²/32) for > 3 bits. Otherwise the zero entries are filled with the
// group's mean" (the mean of its non-zero entries). Each case is the imatrix with the rule
// applied by hand, so equal scales mean the rule was applied — and a wrong rule changes them.
TEST_CASE("opt-RTN zero imatrix entries: the rules of spec §3, group by group") {
  const int64_t gs = 8, in = 32;   // one row, four groups
  const Tensor w = rand_normal({1, in}, 71, 0, 0.5);
  const std::vector<double> wv = to_vector(w);
  // group 0: 5 of 8 zero (more than half) -> fallback; group 1: 4 of 8 zero (exactly half) -> mean;
  // group 2: 2 zeros -> mean; group 3: no zeros; (group 0 of a second case: all zero -> fallback)
  const std::vector<double> im = {0, 0, 0, 0, 0, 1, 2, 3,          //
                                  0, 5, 0, 1, 0, 2, 0, 4,          //
                                  1, 0, 3, 2, 2, 0, 1, 1,          //
                                  0.5, 1, 2, 3, 4, 5, 6, 7};
  for (int bits : {2, 3, 4, 5}) {
    CAPTURE(bits);
    const QuantScheme s{.bits = bits, .group_size = gs};
    std::vector<double> fixed = im;
    auto fallback = [&](int64_t g) {
      double sx2 = 0;
      for (int64_t j = g * gs; j < (g + 1) * gs; ++j) sx2 += static_cast<float>(wv[j]) * static_cast<float>(wv[j]);
      for (int64_t j = g * gs; j < (g + 1) * gs; ++j)
        fixed[j] = std::fabs(static_cast<float>(wv[j])) + (bits > 3 ? std::sqrt(sx2 / 32.0) : 0.0);
    };
    fallback(0);
    for (int64_t j = 8; j < 16; ++j)
      if (fixed[j] == 0) fixed[j] = (5.0 + 1 + 2 + 4) / 4;
    for (int64_t j = 16; j < 24; ++j)
      if (fixed[j] == 0) fixed[j] = (1.0 + 3 + 2 + 2 + 1 + 1) / 6;
    CHECK(to_vector(opt_rtn_scales(w, s, from_vector(im, {in}))) == to_vector(opt_rtn_scales(w, s, from_vector(fixed, {in}))));

    std::vector<double> all_zero = im, all_zero_fixed = fixed;
    for (int64_t j = 0; j < gs; ++j) all_zero[j] = 0;
    CHECK(to_vector(opt_rtn_scales(w, s, from_vector(all_zero, {in}))) ==
          to_vector(opt_rtn_scales(w, s, from_vector(all_zero_fixed, {in}))));
  }
  // The rule is not a no-op on these weights: using the raw zeros (as tiny positive weights)
  // changes some group's scale at 2 bits.
  std::vector<double> tiny = im;
  for (double& e : tiny)
    if (e == 0) e = 1e-30;
  const QuantScheme s2{.bits = 2, .group_size = gs};
  CHECK(to_vector(opt_rtn_scales(w, s2, from_vector(tiny, {in}))) != to_vector(opt_rtn_scales(w, s2, from_vector(im, {in}))));
}

TEST_CASE("pipeline iters 0 with calibration data: opt-RTN uses each block's imatrix on the FP chain") {
  const models::CausalLM lm = models::random_causal_lm(spec_all_quantizable(), {.seed = 7, .stddev = 0.1, .norm_jitter = 0.5});
  const int64_t n = 6, seq = 10;
  const Tensor ids = calib_ids(n, seq, lm.spec().vocab_size);
  PipelineOptions o;
  o.scheme = {.bits = 3, .group_size = 32};
  o.iters = 0;
  o.batch_size = n;   // one batch: the reference chain below runs the same GEMM shapes
  std::vector<std::string> lines;
  o.log = [&](const std::string& l) { lines.push_back(l); };
  const PipelineResult r = quantize_blocks(lm, ids, Tensor(), o);
  REQUIRE(r.quantized.size() == 14);
  CHECK(r.blocks[0].layers[0].scheme.rfind("opt-rtn+imatrix ", 0) == 0);

  // Reference: the FP chain X_{i+1} = block_i(X_i) from the embeddings, each block's linear
  // inputs captured and reduced by a plain f64 loop (rounded once to f32 per batch as the
  // collector's f32 reduction output, then divided by n).
  Tensor x = lm.embed(ids);
  int64_t differ = 0;
  for (int64_t bi = 0; bi < lm.num_blocks(); ++bi) {
    const models::BlockWeights bw = lm.load_block(bi);
    const std::map<std::string, Tensor> inputs = capture_inputs(lm, bw, x);
    for (const models::LinearInfo& l : lm.block_linears(bi)) {
      CAPTURE(l.name);
      std::vector<double> im = ref_imatrix(inputs.at(l.name), 1);
      for (double& e : im) e = static_cast<float>(e) / static_cast<double>(n);
      const Tensor w = bw.at(l.weight_name());
      const QuantizedLinear want = quantize_opt_rtn(w, o.scheme, from_vector(im, {l.in_features}));
      CHECK(to_vector(r.quantized.at(l.name).codes) == to_vector(want.codes));
      CHECK(to_vector(r.quantized.at(l.name).scales) == to_vector(want.scales));
      differ += to_vector(want.codes) != to_vector(quantize_opt_rtn(w, o.scheme, Tensor()).codes);
    }
    ag::NoGrad ng;
    x = lm.block_forward(bw, ag::Var(x), lm.block_inputs({.batch = n, .seq = seq})).value();
  }
  CHECK(differ > 0);   // the imatrix changed something: the comparison above can fail

  // Without data: unweighted opt-RTN and one line saying the imatrix needs --dataset.
  lines.clear();
  const PipelineResult r0 = quantize_blocks(lm, Tensor(), Tensor(), o);
  bool said = false;
  for (const std::string& l : lines) said = said || l.find("pass --dataset") != std::string::npos;
  CHECK(said);
  CHECK(r0.blocks[0].layers[0].scheme.rfind("opt-rtn W3", 0) == 0);
  // disable_opt_rtn: pure RTN, the data are not used, no such line
  o.disable_opt_rtn = true;
  lines.clear();
  const PipelineResult rr = quantize_blocks(lm, ids, Tensor(), o);
  for (const auto& [name, q] : rr.quantized)
    CHECK(to_vector(q.codes) == to_vector(quantize_rtn(lm.source().get(name + ".weight"), o.scheme).codes));
  CHECK(lines.size() == 2);
}
