// Fused ops (engine/fused.h) on CUDA: against the CPU kernels (which tests/autograd/test_fused.cpp
// checks against f64 loops and the compositions) on odd shapes, long rows (both RMSNorm kernel
// shapes), many rows (several dw chunks) and non-contiguous views; and against the compositions
// on the device itself (autograd's composed VJPs run on CUDA through engine ops).
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "autograd/fused.h"
#include "autograd/ops.h"
#include "engine/fused.h"
#include "tests/cuda/cuda_test_util.h"

using namespace arq;
using namespace arq::cudatest;

namespace {

using FusedCase = OpCase;  // the table runner is cuda_test_util.h's run_op_table

const DType kFloats[] = {DType::f32, DType::f64, DType::f16, DType::bf16};

double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : to_vector(t)) m = std::max(m, std::fabs(v));
  return m;
}

// Tolerances (eps_C: the compute type's eps, f32 for 16-bit; eps_T: the dtype's, 0 for f32/f64):
//  swiglu h: CUDA expf and the CPU's exp differ by ≤ 2 ulp_C, the division adds one rounding (≤ 8
//    eps_C, libm()); silu rounded to a 16-bit T may then land one ulp_T apart, and the product
//    rounds again: rtol = 2·eps_T + 8·eps_C.
//  swiglu dup = g·silu: as h.
//  swiglu dgate: σ may differ by one ulp_T; 1 − σ turns that into an absolute error that the chain
//    σ·(1 + x(1 − σ)) carries with factors ≤ |x| + 2 (|x| ≤ 4 here), times |g·u| ≤ 1:
//    atol = 6·(4·eps_T + 16·eps_C), rtol as h.
//  rms_norm dx: only the order of the f64 sums differs, so Σx² and the mean may round one ulp_C
//    apart: r and r³·m are then ≤ 4 ulp_C apart; both terms are ≤ 4·max|dx|-ish at cancellation:
//    rtol = 2·eps_T + 8·eps_C, atol = (16·eps_C + 2·eps_T)·max|dx| (f64: + d·eps64 relative).
//  rms_norm dw: f64 sums over rows in another order, one rounding to C, one to T:
//    rtol = 2·eps_T + 2·eps_C, atol = rows·4·(2·eps_C) (|g·x·r| ≤ 4 here; f64: rows·4·rows·eps64).
void add_cases(std::vector<FusedCase>& cases) {
  const struct {
    Shape shape;
    View view;
  } ew[] = {{{13, 7}, View::contiguous}, {{5, 7, 13}, View::transposed}, {{7, 9}, View::sliced},
            {{3, 5, 13}, View::broadcast}, {{8, 4103}, View::contiguous}};
  for (DType dt : kFloats) {
    const double ec = eps_compute(dt), et = is16(dt) ? eps_of(dt) : 0.0;
    const Tol th{2 * et + 8 * ec, tiny_of(dt)};
    const Tol tdg{2 * et + 8 * ec, 6 * (4 * et + 16 * ec)};
    for (const auto& e : ew) {
      const std::string tail = cat(dtype_name(dt), " ", shape_str(e.shape), " ", view_name(e.view));
      cases.push_back({"swiglu " + tail,
                       {make_input(e.shape, dt, Fill::wide, e.view, 101), make_input(e.shape, dt, Fill::signed_unit, e.view, 102)},
                       [](const std::vector<Tensor>& x) { return Outputs{swiglu(x[0], x[1])}; },
                       {th}});
      cases.push_back({"swiglu_backward " + tail,
                       {make_input(e.shape, dt, Fill::wide, e.view, 103), make_input(e.shape, dt, Fill::signed_unit, e.view, 104),
                        make_input(e.shape, dt, Fill::signed_unit, e.view, 105)},
                       [](const std::vector<Tensor>& x) {
                         auto [dg, du] = swiglu_backward(x[0], x[1], x[2]);
                         return Outputs{dg, du};
                       },
                       {tdg, th}});
    }
    for (double lr : {1.0 / 200, 1.0 / 3})   // SignSGD's update: exact (sign, one product by ±1, one subtraction)
      for (const auto& e : ew)
        cases.push_back({cat("sign_sgd_step_ lr ", lr, " ", dtype_name(dt), " ", shape_str(e.shape), " ", view_name(e.view)),
                         {make_input(e.shape, dt, Fill::wide, e.view, 121), make_input(e.shape, dt, Fill::signed_unit, e.view, 122)},
                         [lr](const std::vector<Tensor>& x) {
                           Tensor p = x[0].clone();
                           sign_sgd_step_(p, x[1], lr);
                           return Outputs{p};
                         },
                         {exact()}});
    const struct {
      Shape shape;
      View view;
    } rows[] = {{{13, 7}, View::contiguous}, {{7, 13}, View::transposed}, {{5, 1000}, View::sliced},
                {{600, 7}, View::contiguous}, {{3, 4096}, View::contiguous}, {{300, 2000}, View::contiguous},
                {{2, 5, 13}, View::broadcast}};
    for (const auto& r : rows) {
      const int64_t d = r.shape.back(), n_rows = shape_numel(r.shape) / d;
      const double f64d = dt == DType::f64 ? static_cast<double>(d) * 0x1p-52 : 0.0;
      const double f64r = dt == DType::f64 ? static_cast<double>(n_rows) * 0x1p-52 : 0.0;
      const std::string tail = cat(dtype_name(dt), " ", shape_str(r.shape), " ", view_name(r.view));
      cases.push_back({"rms_norm_backward " + tail,
                       {make_input(r.shape, dt, Fill::wide, r.view, 111), make_input({d}, dt, Fill::signed_unit, View::sliced, 112),
                        make_input(r.shape, dt, Fill::signed_unit, r.view, 113)},
                       [](const std::vector<Tensor>& x) {
                         auto [dx, dw] = rms_norm_backward(x[0], x[1], x[2], 1e-6);
                         return Outputs{dx, dw};
                       },
                       {Tol{2 * et + 8 * ec + f64d, 0}, Tol{2 * et + 2 * ec + f64r, 4.0 * n_rows * (2 * ec + f64r)}},
                       // dx: cancellation between its two terms; the absolute part scales with max|dx|.
                       [ec, et](size_t i, const Tensor& want, Tol t) {
                         if (i == 0) t.atol = (16 * ec + 2 * et) * max_abs(want) + tiny_of(want.dtype());
                         return t;
                       }});
    }
  }
}

}  // namespace

TEST_CASE("cuda op table (fused): swiglu, swiglu_backward, rms_norm_backward, sign_sgd_step_ on CUDA match the CPU") {
  std::vector<FusedCase> cases;
  add_cases(cases);
  run_op_table(cases, "fused op cases");
}

// On the device itself: the fused SwiGLU equals mul(silu(g), u) and its composed VJPs bit for bit
// (the CUDA unary/binary kernels and cuda_fused.cu make the same _rn steps); the fused RMSNorm
// backward equals the composed VJP within the sum-order tolerance above.
TEST_CASE("cuda op fused: the fused ops equal their compositions on the device") {
  const Device dev = device_under_test();
  for (DType dt : kFloats) {
    INFO(dtype_name(dt));
    const Shape shape = {4, 33, 257};
    Tensor g0 = make_values(shape, dt, Fill::wide, 121).to(dev), u0 = make_values(shape, dt, Fill::signed_unit, 122).to(dev);
    Tensor seed = make_values(shape, dt, Fill::signed_unit, 123).to(dev);
    ag::Var g1(g0, true), u1(u0, true), g2(g0, true), u2(u0, true);
    ag::Var h1 = ag::swiglu(g1, u1), h2 = ag::mul(ag::silu(g2), u2);
    CHECK(compare(h2.value(), h1.value(), exact()).ok);
    ag::backward(h1, seed);
    ag::backward(h2, seed);
    const Mismatch mg = compare(g2.grad(), g1.grad(), exact()), mu = compare(u2.grad(), u1.grad(), exact());
    CHECK_MESSAGE(mg.ok, "d gate: ", mg.what);
    CHECK_MESSAGE(mu.ok, "d up: ", mu.what);

    const Shape rs = {64, 2048};
    Tensor x0 = make_values(rs, dt, Fill::wide, 124).to(dev), w0 = make_values({2048}, dt, Fill::signed_unit, 125).to(dev);
    Tensor rseed = make_values(rs, dt, Fill::signed_unit, 126).to(dev);
    ag::Var x1(x0, true), w1(w0, true), x2(x0, true), w2(w0, true);
    ag::backward(ag::rms_norm_fused(x1, w1, 1e-6), rseed);
    ag::backward(ag::rms_norm(x2, w2, 1e-6), rseed);
    const double ec = eps_compute(dt), et = is16(dt) ? eps_of(dt) : 0.0;
    const double f64d = dt == DType::f64 ? 2048 * 0x1p-52 : 0.0;
    const Tol tdx{2 * et + 8 * ec + f64d, (16 * ec + 2 * et + f64d) * max_abs(x2.grad()) + tiny_of(dt)};
    const Mismatch mx = compare(x2.grad(), x1.grad(), tdx);
    CHECK_MESSAGE(mx.ok, "rms_norm dx: ", mx.what);
    const Tol tdw{2 * et + 2 * ec, 4.0 * 64 * (2 * ec + (dt == DType::f64 ? 64 * 0x1p-52 : 0.0))};
    const Mismatch mw = compare(w2.grad(), w1.grad(), tdw);
    CHECK_MESSAGE(mw.ok, "rms_norm dw: ", mw.what);
  }
}
