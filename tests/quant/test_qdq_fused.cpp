// The fused qdq (engine/qdq_fused.h, ag::qdq_fused) against the composition it replaces
// (quant/qdq.cpp with QdqImpl::composed), which is the reference: on the CPU both compute the
// same f32 operations in the same order, so ŵ must be bit-identical and the gradients of V, α
// and β equal (the fused kernel sums each row in f64 in element order, as the CPU sum kernel
// does, and adds the scale's gradient contributions in the graph walk's order). The frozen
// codes are compared byte for byte with the host loop they replace (QdqImpl::composed).
#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "engine/ops.h"
#include "engine/qdq_fused.h"
#include "quant/qdq.h"

using namespace arq;
using namespace arq::quant;

namespace {

bool same_bits(const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined()) return a.defined() == b.defined();
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  const Tensor ca = a.to(Device::cpu()).contiguous(), cb = b.to(Device::cpu()).contiguous();
  return std::memcmp(ca.data_ptr(), cb.data_ptr(), ca.nbytes()) == 0;
}

// Values equal element by element (+0 == −0: the composition's masks produce either sign).
int64_t count_value_diff(const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined()) return a.defined() == b.defined() ? 0 : -1;
  if (a.numel() != b.numel()) return -1;
  const std::vector<double> x = to_vector(a), y = to_vector(b);
  int64_t n = 0;
  for (size_t i = 0; i < x.size(); ++i) n += x[i] != y[i];
  return n;
}

struct Case {
  QDataType type;
  int bits;
  int64_t group_size;
  int64_t out, in;
  DType weight_dtype, scale_dtype;
  bool minmax, with_v;

  std::string str() const {
    return cat(qdata_type_name(type), " W", bits, "G", group_size, " [", out, ", ", in, "] w ", dtype_name(weight_dtype),
               " scale ", dtype_name(scale_dtype), minmax ? " minmax" : "", with_v ? " V" : " no-V");
  }
};

// A weight with the awkward rows SignRound meets: an all-zero row (threshold scale), a row with
// a symmetric range (int_sym's tie), the rest normal.
Tensor make_weight(const Case& c, uint64_t seed) {
  Tensor w = rand_normal({c.out, c.in}, seed, 0, 0.05);
  if (c.out >= 3) {
    Tensor z = w.narrow(0, 1, 1);
    fill_(z, 0.0);
    Tensor row = w.narrow(0, 2, 1);
    Tensor hi = row.narrow(1, 0, 1), lo = row.narrow(1, c.in - 1, 1);
    fill_(hi, 0.2);
    fill_(lo, -0.2);
  }
  return w.to(c.weight_dtype);
}

struct Params {
  Tensor v, alpha, beta;  // values (V in ±0.5, α/β in [0, 1] with exact 0s and 1s)
};
Params make_params(const Case& c, const GroupLayout& g, uint64_t seed) {
  Params p;
  if (c.with_v) p.v = rand_uniform({g.n_rows(), g.group_len}, seed + 1, -0.5, 0.5);
  if (c.minmax) {
    p.alpha = clamp(rand_uniform({g.n_rows(), 1}, seed + 2, 0.3, 1.3), 0.0, 1.0);  // ~30 % exactly 1
    p.beta = clamp(rand_uniform({g.n_rows(), 1}, seed + 3, -0.1, 1.1), 0.0, 1.0);  // some exactly 0
  }
  return p;
}

QdqParams as_vars(const Params& p) {
  QdqParams q;
  if (p.v.defined()) q.v = ag::Var(p.v.clone(), true);
  if (p.alpha.defined()) q.alpha = ag::Var(p.alpha.clone(), true);
  if (p.beta.defined()) q.beta = ag::Var(p.beta.clone(), true);
  return q;
}

struct Tally {
  int cases = 0, fwd = 0, dv = 0, da = 0, db = 0, codes = 0, deq = 0;
  std::string first;
  void fail(int& counter, const Case& c, const char* what) {
    ++counter;
    if (first.empty()) first = cat(c.str(), ": ", what);
  }
};

void run_case(const Case& c, uint64_t seed, Tally& t) {
  ++t.cases;
  QuantScheme s{.bits = c.bits, .group_size = c.group_size, .data_type = qdata_type_name(c.type), .scale_dtype = c.scale_dtype};
  const GroupLayout g = make_group_layout(c.out, c.in, c.group_size);
  const Tensor w = make_weight(c, seed);
  const Tensor wg = to_groups(w, g);
  const GroupRange r = group_range(wg);
  const Params pv = make_params(c, g, seed);
  QdqParams pc = as_vars(pv), pf = as_vars(pv);
  const ag::Var wc = qdq_weight(wg, r, pc, s, g, c.weight_dtype, QdqImpl::composed);
  const ag::Var wf = qdq_weight(wg, r, pf, s, g, c.weight_dtype, QdqImpl::fused);
  if (!same_bits(wc.value(), wf.value())) t.fail(t.fwd, c, "forward bits differ");
  if (c.with_v || c.minmax) {
    const Tensor gout = rand_normal({c.out, c.in}, seed + 9).to(c.weight_dtype);
    ag::backward(wc, gout);
    ag::backward(wf, gout);
    if (c.with_v && count_value_diff(pc.v.grad(), pf.v.grad()) != 0) t.fail(t.dv, c, "dV differs");
    if (c.minmax && count_value_diff(pc.alpha.grad(), pf.alpha.grad()) != 0) t.fail(t.da, c, "dα differs");
    if (c.minmax && count_value_diff(pc.beta.grad(), pf.beta.grad()) != 0) t.fail(t.db, c, "dβ differs");
  }
  // freezing: the fused kernel's codes against the host loop, byte for byte
  const QuantizedLinear qf = quantize_with_params(w, s, pv.v, pv.alpha, pv.beta, QdqImpl::fused);
  const QuantizedLinear ql = quantize_with_params(w, s, pv.v, pv.alpha, pv.beta, QdqImpl::composed);
  if (!same_bits(qf.codes, ql.codes) || !same_bits(qf.scales, ql.scales) || !same_bits(qf.zeros, ql.zeros))
    t.fail(t.codes, c, "frozen codes/scales/zeros differ from the host loop");
  // and they decode to the tuned forward exactly (one f32 product, then the weight dtype); by
  // value: an int_sym level round(−0.3) = −0 gives ŵ = −0 where the code decodes to +0
  const Tensor deq = dequantize(qf);
  if (deq.dtype() != c.weight_dtype || count_value_diff(deq, wf.value()) != 0)
    t.fail(t.deq, c, "dequantize(codes) differs from the fused forward");
}

void check_tally(const Tally& t) {
  MESSAGE(t.cases, " cases");
  CHECK_MESSAGE(t.fwd == 0, t.fwd, " forward mismatches; first: ", t.first);
  CHECK_MESSAGE(t.dv == 0, t.dv, " dV mismatches; first: ", t.first);
  CHECK_MESSAGE(t.da == 0, t.da, " dα mismatches; first: ", t.first);
  CHECK_MESSAGE(t.db == 0, t.db, " dβ mismatches; first: ", t.first);
  CHECK_MESSAGE(t.codes == 0, t.codes, " frozen mismatches; first: ", t.first);
  CHECK_MESSAGE(t.deq == 0, t.deq, " dequantize mismatches; first: ", t.first);
}

struct Shape2 {
  int64_t out, in;
};

}  // namespace

TEST_CASE("fused qdq = composition: forward bits, gradients and codes over types, bits, groups, dtypes") {
  // shapes: ragged last group at G32 (70 = 2·32 + 6; one valid element: 33), per channel at G128
  // (in < 128), an aligned one, a single row
  const Shape2 shapes[] = {{5, 70}, {3, 33}, {6, 256}, {1, 40}};
  Tally t;
  uint64_t seed = 100;
  int k = 0;
  for (QDataType type : {QDataType::int_sym, QDataType::int_asym, QDataType::int_sym_gptq})
    for (int bits : {2, 3, 4, 8})
      for (int64_t gs : {32, 128, -1, 0})
        for (DType wdt : {DType::f32, DType::bf16, DType::f16})
          for (DType sdt : {DType::f16, DType::bf16, DType::f32})
            for (int mode = 0; mode < 3; ++mode) {  // V + minmax, V only, neither
              const Shape2 sh = shapes[k++ % 4];
              run_case({type, bits, gs, sh.out, sh.in, wdt, sdt, mode == 0, mode <= 1}, seed++, t);
            }
  check_tally(t);
}

TEST_CASE("fused qdq: minmax without V, and long rows (per channel, per tensor)") {
  Tally t;
  uint64_t seed = 5000;
  for (QDataType type : {QDataType::int_sym, QDataType::int_asym, QDataType::int_sym_gptq})
    for (int bits : {2, 4, 8}) {
      run_case({type, bits, 32, 9, 100, DType::bf16, DType::f16, true, false}, seed++, t);
      run_case({type, bits, -1, 4, 1000, DType::f32, DType::f16, true, true}, seed++, t);
      run_case({type, bits, 0, 13, 77, DType::bf16, DType::bf16, true, true}, seed++, t);
      // rows longer than the CPU kernel's 4096-element term blocks (per tensor, per channel)
      run_case({type, bits, 0, 37, 300, DType::bf16, DType::f16, true, true}, seed++, t);
      run_case({type, bits, -1, 3, 5000, DType::f32, DType::f32, true, false}, seed++, t);
    }
  check_tally(t);
}

TEST_CASE("fused qdq engine ops: shapes, optional parameters and errors") {
  const QdqSpec s{.kind = QdqKind::int_asym, .bits = 4, .scale_dtype = DType::f16, .scale_thresh = 1e-5,
                  .out = 4, .in = 40, .group_len = 32, .groups_per_row = 2};
  const Tensor w = rand_normal({4, 40}, 3, 0, 0.1);
  const GroupLayout g = make_group_layout(4, 40, 32);
  const Tensor wg = to_groups(w, g);
  const GroupRange r = group_range(wg);
  const QdqInputs in{.wg = wg, .wmin = r.wmin, .wmax = r.wmax};
  const Tensor w_hat = qdq_fused(in, s, DType::bf16);
  CHECK(w_hat.shape() == Shape({4, 40}));
  CHECK(w_hat.dtype() == DType::bf16);
  const QdqCodes c = qdq_fused_codes(in, s);
  CHECK(c.codes.shape() == Shape({4, 40}));
  CHECK(c.scales.numel() == 8);
  // dequantize_codes of the frozen form is the forward
  CHECK(same_bits(dequantize_codes(c.codes, c.scales, c.zeros, Tensor(), s, DType::bf16), w_hat));
  // dV is zero in the padding (columns 40..63 of each row's second group)
  const QdqGrads d = qdq_fused_backward({.wg = wg, .wmin = r.wmin, .wmax = r.wmax, .v = zeros({8, 32})}, s,
                                        ones({4, 40}), true, false, false);
  CHECK(d.dv.shape() == Shape({8, 32}));
  CHECK(sum_all(abs(d.dv.narrow(0, 1, 1).narrow(1, 8, 24))).item() == 0.0);
  CHECK_FALSE(d.dalpha.defined());
  // errors name the op and the shapes
  CHECK_THROWS_AS(qdq_fused({.wg = wg.narrow(0, 0, 7), .wmin = r.wmin, .wmax = r.wmax}, s, DType::f32), ShapeError);
  CHECK_THROWS_AS(qdq_fused(in, s, DType::i32), DTypeError);
  CHECK_THROWS_AS(qdq_fused_backward(in, s, ones({4, 40}), false, true, false), UsageError);
  CHECK_THROWS_AS(qdq_fused_backward(in, s, ones({4, 41}), true, false, false), ShapeError);
}

TEST_CASE("to_groups on a device and dequantize on a device agree with the host forms") {
  const Tensor w = rand_normal({6, 50}, 11, 0, 0.1).to(DType::bf16);
  const GroupLayout g = make_group_layout(6, 50, 32);
  CHECK(same_bits(to_groups(w, g, Device::cpu()), to_groups(w, g)));
  const QuantScheme s{.bits = 3, .group_size = 32};
  const QuantizedLinear q = quantize_rtn(w, s);
  CHECK(same_bits(dequantize(q, DType::f32, Device::cpu()), dequantize(q, DType::f32)));
  CHECK(dequantize(q).dtype() == DType::bf16);
}
