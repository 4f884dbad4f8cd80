// The fused SignRound qdq (engine/qdq_fused.h) on CUDA against the CPU kernel, which
// tests/quant/test_qdq_fused.cpp checks bit for bit against the autograd composition and the
// host freezing loop. Both kernels run the same scalar steps (kernels/cpu/qdq_math.h, _rn
// intrinsics on the device), so the forward ŵ, the frozen codes/scales/zeros, the decoded weight
// and dV (one product and one mask per element) must be bit-identical; dα and dβ come from f64
// row sums that CUDA adds in another order (tolerance below). Also the SignRound path on the
// device end to end: the fused autograd op against the composition on the device, and freezing a
// device weight against freezing it on the host.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "autograd/ops.h"
#include "engine/qdq_fused.h"
#include "quant/qdq.h"
#include "tests/cuda/cuda_test_util.h"

using namespace arq;
using namespace arq::cudatest;
using namespace arq::quant;

namespace {

double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : to_vector(t)) m = std::max(m, std::fabs(v));
  return m;
}

struct Case {
  QDataType type;
  int bits;
  int64_t group_size;
  int64_t out, in;
  DType weight_dtype, scale_dtype;
  std::string str() const {
    return cat(qdata_type_name(type), " W", bits, "G", group_size, " [", out, ", ", in, "] w ", dtype_name(weight_dtype),
               " scale ", dtype_name(scale_dtype));
  }
};

// Tolerance of dα, dβ. Per row, the CPU and CUDA differ only in the order of the f64 sums of A =
// Σ g·t, B = Σ −(g'/sc)·z (and asym's Z1, Z2), each rounded once to f32: ≤ 1 ulp32 each, so the
// scale's gradient dsc differs by ≤ 4·2⁻²⁴·T, T the sum of the magnitudes of all terms. Inside the
// level clamp |t|, |z| ≤ 2·2^bits + 2 (|zp| ≤ maxq), and asym's third term |C| ≤ 2·G·gmax·(maxq+1),
// so T ≤ G·gmax·(8·2^bits + 8). dsc is then rounded to the scale dtype (one ulp_sdt either way:
// rtol eps_sdt, twice for margin) and scaled by ≤ 2·|w|max/qmax into dα, dβ.
Tol grad_tol(const Case& c, int64_t G, double gmax, double wmax) {
  const double qmax = c.type == QDataType::int_sym ? std::ldexp(1.0, c.bits - 1) : std::ldexp(1.0, c.bits) - 1;
  const double T = static_cast<double>(G) * gmax * (8 * std::ldexp(1.0, c.bits) + 8);
  const double esdt = c.scale_dtype == DType::f32 ? 0x1p-23 : eps_of(c.scale_dtype);
  return {2 * esdt + 4 * 0x1p-23, 4 * 0x1p-24 * T * 2 * wmax / qmax + 0x1p-149};
}

void check(const Mismatch& m, const std::string& what) { CHECK_MESSAGE(m.ok, what, ": ", m.what); }

void run_case(const Case& c, uint64_t seed) {
  const Device dev = device_under_test();
  const QuantScheme s{.bits = c.bits, .group_size = c.group_size, .data_type = qdata_type_name(c.type), .scale_dtype = c.scale_dtype};
  const GroupLayout g = make_group_layout(c.out, c.in, c.group_size);
  const QdqSpec spec = qdq_spec(s, g);
  const Tensor w = rand_normal({c.out, c.in}, seed, 0, 0.05).to(c.weight_dtype);
  const Tensor wg = to_groups(w, g);
  const GroupRange r = group_range(wg);
  const int64_t R = g.n_rows();
  const Tensor v = rand_uniform({R, g.group_len}, seed + 1, -0.5, 0.5);
  const Tensor a = clamp(rand_uniform({R, 1}, seed + 2, 0.3, 1.3), 0.0, 1.0);
  const Tensor b = clamp(rand_uniform({R, 1}, seed + 3, 0.3, 1.1), 0.0, 1.0);
  const Tensor gout = rand_normal({c.out, c.in}, seed + 4).to(c.weight_dtype);
  const QdqInputs hc{.wg = wg, .wmin = r.wmin, .wmax = r.wmax, .v = v, .alpha = a, .beta = b};
  const QdqInputs dc{.wg = wg.to(dev), .wmin = r.wmin.to(dev), .wmax = r.wmax.to(dev), .v = v.to(dev),
                     .alpha = a.to(dev), .beta = b.to(dev)};
  const std::string name = c.str();

  check(compare(qdq_fused(hc, spec, c.weight_dtype), qdq_fused(dc, spec, c.weight_dtype).to(Device::cpu()), exact()),
        name + " forward");
  const QdqCodes ch = qdq_fused_codes(hc, spec), cd = qdq_fused_codes(dc, spec);
  check(compare(ch.codes, cd.codes.to(Device::cpu()), exact()), name + " codes");
  check(compare(ch.scales, cd.scales.to(Device::cpu()), exact()), name + " scales");
  check(compare(ch.zeros, cd.zeros.to(Device::cpu()), exact()), name + " zeros");
  check(compare(dequantize_codes(ch.codes, ch.scales, ch.zeros, Tensor(), spec, c.weight_dtype),
                dequantize_codes(cd.codes, cd.scales, cd.zeros, Tensor(), spec, c.weight_dtype).to(Device::cpu()), exact()),
        name + " dequantize");

  const QdqGrads gh = qdq_fused_backward(hc, spec, gout, true, true, true);
  const QdqGrads gd = qdq_fused_backward(dc, spec, gout.to(dev), true, true, true);
  check(compare(gh.dv, gd.dv.to(Device::cpu()), exact()), name + " dV");
  const Tol t = grad_tol(c, g.group_len, max_abs(gout), max_abs(w));
  check(compare(gh.dalpha, gd.dalpha.to(Device::cpu()), t), name + " dα");
  check(compare(gh.dbeta, gd.dbeta.to(Device::cpu()), t), name + " dβ");
}

}  // namespace

TEST_CASE("cuda op qdq fused: forward, codes, dequantize and gradients on CUDA match the CPU kernel") {
  uint64_t seed = 700;
  int k = 0;
  // odd shapes (ragged last group, in < G, one row), then warp rows (G32/G128) and block rows
  // (per channel 1100 > 1024; per tensor: one row of out·in)
  const struct {
    int64_t out, in;
  } shapes[] = {{5, 70}, {3, 33}, {1, 40}, {37, 300}};
  for (QDataType type : {QDataType::int_sym, QDataType::int_asym, QDataType::int_sym_gptq})
    for (int bits : {2, 3, 4, 8})
      for (int64_t gs : {32, 128, -1, 0})
        for (DType wdt : {DType::bf16, DType::f32, DType::f16}) {
          const DType sdt = (k % 3 == 0) ? DType::f16 : (k % 3 == 1 ? DType::bf16 : DType::f32);
          const auto sh = shapes[k++ % 4];
          run_case({type, bits, gs, sh.out, sh.in, wdt, sdt}, seed++);
        }
  for (QDataType type : {QDataType::int_sym, QDataType::int_asym, QDataType::int_sym_gptq}) {
    run_case({type, 4, 128, 256, 4096, DType::bf16, DType::f16}, seed++);  // 8192 warp rows
    // groups tiling the rows exactly: the forward's warp-per-row kernel, every weight dtype
    run_case({type, 3, 32, 7, 96, DType::f16, DType::bf16}, seed++);
    run_case({type, 8, 32, 5, 64, DType::f32, DType::f32}, seed++);
    run_case({type, 2, 128, 3, 384, DType::bf16, DType::f16}, seed++);
    run_case({type, 4, -1, 24, 1100, DType::bf16, DType::f16}, seed++);    // block rows
    run_case({type, 2, 0, 33, 70, DType::f32, DType::f16}, seed++);        // per tensor
  }
}

TEST_CASE("cuda op qdq fused: the SignRound path on the device (autograd op vs composition, freezing)") {
  const Device dev = device_under_test();
  for (QDataType type : {QDataType::int_sym, QDataType::int_asym, QDataType::int_sym_gptq}) {
    const Case c{type, 4, 32, 64, 200, DType::bf16, DType::f16};
    INFO(c.str());
    const QuantScheme s{.bits = 4, .group_size = 32, .data_type = qdata_type_name(type)};
    const GroupLayout g = make_group_layout(c.out, c.in, 32);
    const Tensor w = rand_normal({c.out, c.in}, 31, 0, 0.05).to(DType::bf16).to(dev);
    const Tensor wg = to_groups(w, g, dev);
    const GroupRange r = group_range(wg);
    QdqParams p1 = make_qdq_params(g, true, dev), p2 = make_qdq_params(g, true, dev);
    for (QdqParams* p : {&p1, &p2}) {
      Tensor vv = p->v.value();
      copy_(vv, rand_uniform(vv.shape(), 32, -0.5, 0.5).to(dev));
      Tensor aa = p->alpha.value();
      copy_(aa, rand_uniform(aa.shape(), 33, 0.5, 1.0).to(dev));
    }
    const ag::Var wf = qdq_weight(wg, r, p1, s, g, DType::bf16, QdqImpl::fused);
    const ag::Var wc = qdq_weight(wg, r, p2, s, g, DType::bf16, QdqImpl::composed);
    CHECK(wf.device() == dev);
    check(compare(wc.value().to(Device::cpu()), wf.value().to(Device::cpu()), exact()), "forward vs composition");
    const Tensor gout = rand_normal({c.out, c.in}, 34).to(DType::bf16).to(dev);
    ag::backward(wf, gout);
    ag::backward(wc, gout);
    check(compare(p2.v.grad().to(Device::cpu()), p1.v.grad().to(Device::cpu()), exact()), "dV vs composition");
    const Tol t = grad_tol(c, g.group_len, max_abs(gout), max_abs(w));
    check(compare(p2.alpha.grad().to(Device::cpu()), p1.alpha.grad().to(Device::cpu()), t), "dα vs composition");
    check(compare(p2.beta.grad().to(Device::cpu()), p1.beta.grad().to(Device::cpu()), t), "dβ vs composition");
    // freezing a device weight = freezing it on the host, byte for byte; decoding on the device too
    const Tensor vb = p1.v.value(), ab = p1.alpha.value();
    const QuantizedLinear qd = quantize_with_params(w, s, vb, ab, Tensor());
    const QuantizedLinear qh = quantize_with_params(w.to(Device::cpu()), s, vb.to(Device::cpu()), ab.to(Device::cpu()),
                                                    Tensor(), QdqImpl::composed);
    CHECK(qd.codes.device().is_cpu());
    check(compare(qh.codes, qd.codes, exact()), "frozen codes");
    check(compare(qh.scales, qd.scales, exact()), "frozen scales");
    check(compare(qh.zeros, qd.zeros, exact()), "frozen zeros");
    const Tensor on_dev = dequantize(qd, DType::bf16, dev);
    CHECK(on_dev.device() == dev);
    check(compare(dequantize(qh), on_dev.to(Device::cpu()), exact()), "dequantize on the device");
  }
}
