// Every engine op on CUDA against the CPU kernel, in one table (ggml test-backend-ops style).
//
// Each case names the op and its parameters ("exp f32 [13, 7, 5] transposed"); it builds its
// inputs on the CPU as contiguous blocks, copies the blocks to the GPU, presents them through the
// same view on both devices (contiguous, transposed, sliced with step 2, stride-0 broadcast),
// runs the op through the engine builders on both, and compares with a tolerance derived from
// the dtype (cuda_test_util.h; each family's derivation is at its table below). Shapes are odd
// (5, 7, 13) plus the long rows that select the kernels' other code paths.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "engine/ops.h"
#include "tests/cuda/cuda_test_util.h"

using namespace arq;
using namespace arq::cudatest;

namespace {

using Case = OpCase;  // the table runner is cuda_test_util.h's run_op_table

const DType kFloats[] = {DType::f32, DType::f64, DType::f16, DType::bf16};
const View kViews[] = {View::transposed, View::sliced, View::broadcast};

std::string shape_name(const Shape& s) { return shape_str(s); }

Tensor unary_op(UnaryOp op, const Tensor& x, double p0, double p1) {
  switch (op) {
    case UnaryOp::neg: return neg(x);
    case UnaryOp::abs: return arq::abs(x);
    case UnaryOp::exp: return arq::exp(x);
    case UnaryOp::log: return arq::log(x);
    case UnaryOp::sqrt: return arq::sqrt(x);
    case UnaryOp::rsqrt: return rsqrt(x);
    case UnaryOp::sigmoid: return sigmoid(x);
    case UnaryOp::silu: return silu(x);
    case UnaryOp::tanh: return arq::tanh(x);
    case UnaryOp::sign: return sign(x);
    case UnaryOp::round: return arq::round(x);
    case UnaryOp::floor: return arq::floor(x);
    case UnaryOp::pow: return arq::pow(x, p0);
    case UnaryOp::clamp: return clamp(x, p0, p1);
    case UnaryOp::affine: return affine(x, p0, p1);
  }
  return x;
}

// ---- unary -------------------------------------------------------------------------------
// Exact (bit-identical) where both sides do the same IEEE-rounded steps: neg, abs, sign, round
// (rint = half to even), floor, clamp, affine (two roundings, no FMA on either side), sqrt and
// rsqrt (correctly rounded sqrt and division), pow(x, 2) = x·x. libm ops: Tol libm().
void add_unary(std::vector<Case>& cases) {
  const UnaryOp all[] = {UnaryOp::neg, UnaryOp::abs, UnaryOp::exp, UnaryOp::log, UnaryOp::sqrt,
                         UnaryOp::rsqrt, UnaryOp::sigmoid, UnaryOp::silu, UnaryOp::tanh, UnaryOp::sign,
                         UnaryOp::round, UnaryOp::floor, UnaryOp::pow, UnaryOp::clamp, UnaryOp::affine};
  for (UnaryOp op : all) {
    const bool int_ok = op == UnaryOp::neg || op == UnaryOp::abs || op == UnaryOp::sign || op == UnaryOp::clamp ||
                        op == UnaryOp::affine;
    const bool uses_libm = op == UnaryOp::exp || op == UnaryOp::log || op == UnaryOp::sigmoid ||
                           op == UnaryOp::silu || op == UnaryOp::tanh || op == UnaryOp::pow;
    Fill fill = Fill::wide;
    if (op == UnaryOp::log || op == UnaryOp::sqrt || op == UnaryOp::rsqrt || op == UnaryOp::pow) fill = Fill::positive;
    if (op == UnaryOp::sign || op == UnaryOp::round || op == UnaryOp::floor || op == UnaryOp::clamp ||
        op == UnaryOp::abs || op == UnaryOp::neg)
      fill = Fill::specials;
    double p0 = 0, p1 = 0;
    if (op == UnaryOp::pow) p0 = 1.5;
    if (op == UnaryOp::clamp) p0 = -1.5, p1 = 2.25;
    if (op == UnaryOp::affine) p0 = 0.75, p1 = -0.3;
    std::vector<DType> dtypes(std::begin(kFloats), std::end(kFloats));
    if (int_ok) dtypes.insert(dtypes.end(), {DType::i8, DType::u8, DType::i32, DType::i64});
    int vi = 0;
    for (DType dt : dtypes) {
      const bool is_int = is_integral(dt);
      const Fill f = is_int ? (dt == DType::u8 ? Fill::uints : Fill::ints) : fill;
      const Tol tol = uses_libm ? libm(dt) : exact();
      const std::pair<Shape, View> layouts[] = {{{5, 7}, View::contiguous}, {{13, 7, 5}, kViews[vi++ % 3]}};
      for (const auto& [shape, view] : layouts) {
        cases.push_back({cat(unary_name(op), " ", dtype_name(dt), " ", shape_name(shape), " ", view_name(view)),
                         {make_input(shape, dt, f, view, 11 + vi)},
                         [op, p0, p1](const std::vector<Tensor>& x) { return Outputs{unary_op(op, x[0], p0, p1)}; },
                         {tol}});
      }
    }
  }
  // pow(x, 2) takes the x·x path: exact.
  for (DType dt : kFloats)
    cases.push_back({cat("pow2 ", dtype_name(dt), " [13, 7] sliced"), {make_input({13, 7}, dt, Fill::wide, View::sliced, 5)},
                     [](const std::vector<Tensor>& x) { return Outputs{arq::pow(x[0], 2.0)}; }, {exact()}});
}

// ---- binary, comparisons, where -----------------------------------------------------------------
// + − × ÷ are single IEEE operations on both sides, min/max and comparisons select: exact.
// pow(a, b) is one libm call: libm().
void add_binary(std::vector<Case>& cases) {
  const BinaryOp all[] = {BinaryOp::add, BinaryOp::sub, BinaryOp::mul, BinaryOp::div, BinaryOp::minimum,
                          BinaryOp::maximum, BinaryOp::pow, BinaryOp::eq, BinaryOp::ne, BinaryOp::lt,
                          BinaryOp::le, BinaryOp::gt, BinaryOp::ge};
  for (BinaryOp op : all) {
    std::vector<DType> dtypes(std::begin(kFloats), std::end(kFloats));
    if (op != BinaryOp::pow) dtypes.insert(dtypes.end(), {DType::i8, DType::i32, DType::i64, DType::u8});
    int vi = 0;
    for (DType dt : dtypes) {
      const bool is_int = is_integral(dt);
      const Fill fa = is_int ? (dt == DType::u8 ? Fill::uints : Fill::ints) : (op == BinaryOp::pow ? Fill::positive : Fill::specials);
      const Fill fb = is_int ? (dt == DType::u8 ? Fill::uints : Fill::ints) : (op == BinaryOp::pow ? Fill::wide : Fill::halves);
      const Tol tol = op == BinaryOp::pow ? libm(dt) : exact();
      auto fn = [op](const std::vector<Tensor>& x) { return Outputs{binary(op, x[0], x[1])}; };
      const std::string base = cat(binary_name(op), " ", dtype_name(dt), " ");
      // same shapes, one transposed
      cases.push_back({base + "[5, 7] contiguous · [5, 7] transposed",
                       {make_input({5, 7}, dt, fa, View::contiguous, 21), make_input({5, 7}, dt, fb, View::transposed, 22)},
                       fn, {tol}});
      // engine broadcasting: [13, 7, 5] view with a [7, 1] column
      const View v = kViews[vi++ % 3];
      cases.push_back({base + cat("[13, 7, 5] ", view_name(v), " · [7, 1]"),
                       {make_input({13, 7, 5}, dt, fa, v, 23), make_input({7, 1}, dt, fb, View::contiguous, 24)},
                       fn, {tol}});
      // row / column broadcasts with an inner dim of 16 (the kernel's vectorized broadcast path)
      cases.push_back({base + "[13, 16] · [16] row",
                       {make_input({13, 16}, dt, fa, View::contiguous, 26), make_input({16}, dt, fb, View::contiguous, 27)},
                       fn, {tol}});
      cases.push_back({base + "[7, 32] · [7, 1] column",
                       {make_input({7, 32}, dt, fa, View::contiguous, 28), make_input({7, 1}, dt, fb, View::contiguous, 29)},
                       fn, {tol}});
      // a scalar operand (0-d, stride 0 everywhere)
      cases.push_back({base + "[7, 13] · scalar 2.5", {make_input({7, 13}, dt, fa, View::sliced, 25)},
                       [op](const std::vector<Tensor>& x) { return Outputs{binary(op, x[0], 2.5)}; }, {tol}});
    }
  }
  const DType all_types[] = {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i8, DType::u8, DType::i32, DType::i64};
  for (DType dt : all_types) {
    const Fill f = is_integral(dt) ? Fill::uints : Fill::specials;
    cases.push_back({cat("where ", dtype_name(dt), " cond [13, 7, 5] · a [7, 5] transposed · b [5]"),
                     {make_input({13, 7, 5}, DType::f32, Fill::wide, View::contiguous, 31),
                      make_input({7, 5}, dt, f, View::transposed, 32), make_input({5}, dt, f, View::contiguous, 33)},
                     [](const std::vector<Tensor>& x) { return Outputs{where(gt(x[0], zeros({}, DType::f32, x[0].device())), x[1], x[2])}; },
                     {exact()}});
  }
}

// ---- reductions -------------------------------------------------------------------------------
// sum/mean/sum_squares: inputs |x| ≤ 1, so Σ|x| ≤ n. Each side accumulates in f64 (in different
// orders) with error ≤ (n − 1)·eps64·Σ|x| ≤ n²·eps64, so the two f64 sums differ by ≤ 2n²·eps64;
// the final rounding to the output dtype may then go either way: + eps_T·|y| (not for f64).
// Integer sums (i64 accumulation) and max/min/argmax (selection): exact.
Tol sum_tol(DType dt, int64_t n) {
  if (is_integral(dt)) return exact();
  const double e64 = 0x1p-52;
  return {dt == DType::f64 ? 0.0 : eps_of(dt), 2.0 * static_cast<double>(n) * static_cast<double>(n) * e64 + tiny_of(dt)};
}

void add_reduce(std::vector<Case>& cases) {
  const ReduceOp all[] = {ReduceOp::sum, ReduceOp::mean, ReduceOp::max, ReduceOp::min, ReduceOp::argmax,
                          ReduceOp::sum_squares};
  for (ReduceOp op : all) {
    const bool floats_only = op == ReduceOp::mean || op == ReduceOp::sum_squares;
    const bool selects = op == ReduceOp::max || op == ReduceOp::min || op == ReduceOp::argmax;
    std::vector<DType> dtypes(std::begin(kFloats), std::end(kFloats));
    if (!floats_only) dtypes.insert(dtypes.end(), {DType::i8, DType::u8, DType::i32, DType::i64});
    int vi = 0;
    for (DType dt : dtypes) {
      const Fill f = is_integral(dt) ? (dt == DType::u8 ? Fill::uints : Fill::ints)
                                     : (selects ? (op == ReduceOp::argmax && vi % 2 ? Fill::halves : Fill::specials)
                                                : Fill::signed_unit);
      for (int64_t axis = 0; axis < 3; ++axis) {
        const Shape shape{13, 7, 5};
        const View v = axis == 1 ? View::contiguous : kViews[vi++ % 3];
        cases.push_back({cat(reduce_name(op), " ", dtype_name(dt), " ", shape_name(shape), " ", view_name(v), " axis ", axis),
                         {make_input(shape, dt, f, v, 41 + axis)},
                         [op, axis](const std::vector<Tensor>& x) { return Outputs{reduce(op, x[0], axis, false)}; },
                         {selects ? exact() : sum_tol(dt, shape[axis])}});
      }
    }
    // The kernels' other paths: long rows (one 256-thread group per row; two chunks past 65536),
    // a strided axis with many outputs (one thread per output, serial).
    const struct {
      Shape shape;
      int64_t axis;
      DType dt;
      View view;
    } paths[] = {{{5, 3001}, 1, DType::f32, View::contiguous},  {{3, 10007}, 1, DType::bf16, View::sliced},
                 {{2, 70001}, 1, DType::f32, View::contiguous}, {{7, 4099}, 0, DType::f32, View::contiguous},
                 {{4099, 13}, 1, DType::f16, View::transposed}, {{2, 70001}, 1, DType::i32, View::contiguous}};
    for (const auto& p : paths) {
      if (floats_only && is_integral(p.dt)) continue;
      const Fill f = is_integral(p.dt) ? Fill::ints : (selects ? Fill::specials : Fill::signed_unit);
      const int64_t ax = p.axis;
      cases.push_back({cat(reduce_name(op), " ", dtype_name(p.dt), " ", shape_name(p.shape), " ", view_name(p.view), " axis ", ax),
                       {make_input(p.shape, p.dt, f, p.view, 51)},
                       [op, ax](const std::vector<Tensor>& x) { return Outputs{reduce(op, x[0], ax, true)}; },
                       {selects ? exact() : sum_tol(p.dt, p.shape[ax])}});
    }
  }
}

// ---- softmax, log-softmax, rms_norm ----------------------------------------------------------------
// softmax: out = exp(x − m)·(1/s): x − m is exact on both sides; exp is one libm call; 1/s comes
// from f64 sums in different orders (≤ 1 ulp_C after rounding); the product one more rounding:
// within libm()'s 8 ulp. log-softmax: (x − m) − log(s): log(s) may differ by 1 ulp_C of |log s|
// and the subtraction rounds once more: atol = 2·eps_C·(|x − m| + |log s|) with inputs in
// [−4, 4] (|x − m| ≤ 8) and |log s| ≤ 8 + log n; f64: add n·eps64 for the sums' order. The f64
// sum order also enters softmax itself: 1/s differs by ≤ 2n·eps64 relative.
// rms_norm: inv = 1/sqrt(Σx²/n + eps) may differ by 1 ulp_C (sum order); x·inv then ≤ 2 ulp_C,
// rounding to T and the product with w add one eps_T each: rtol = 2·eps_T + 4·eps_C (f64: + n·eps64).
void add_softmax_norm(std::vector<Case>& cases) {
  const struct {
    Shape shape;
    View view;
  } rows[] = {{{13, 7}, View::contiguous}, {{5, 1000}, View::sliced}, {{3, 3000}, View::contiguous},
              {{2, 10007}, View::contiguous}, {{7, 13}, View::transposed}, {{2, 5, 13}, View::broadcast}};
  for (DType dt : kFloats) {
    for (const auto& r : rows) {
      const int64_t n = r.shape.back();
      const double ec = eps_compute(dt), et = is16(dt) ? eps_of(dt) : 0.0;
      const double nd = static_cast<double>(n);
      // the f64 sums s differ by ≤ 2n·eps64 relative (n positive terms, two orders): + 2n·eps64
      const Tol tsm{libm(dt).rtol + 2 * nd * 0x1p-52, libm(dt).atol};
      const Tol tlsm{libm(dt).rtol, 2 * ec * (8 + 8 + std::log(nd)) + (dt == DType::f64 ? nd * ec : 0.0)};
      const Tol trms{2 * et + 4 * ec + (dt == DType::f64 ? nd * ec : 0.0), tiny_of(dt)};
      const std::string tail = cat(dtype_name(dt), " ", shape_name(r.shape), " ", view_name(r.view));
      cases.push_back({"softmax " + tail, {make_input(r.shape, dt, Fill::wide, r.view, 61)},
                       [](const std::vector<Tensor>& x) { return Outputs{softmax(x[0], -1)}; }, {tsm}});
      cases.push_back({"log_softmax " + tail, {make_input(r.shape, dt, Fill::wide, r.view, 62)},
                       [](const std::vector<Tensor>& x) { return Outputs{log_softmax(x[0], -1)}; }, {tlsm}});
      cases.push_back({"rms_norm " + tail,
                       {make_input(r.shape, dt, Fill::wide, r.view, 63), make_input({n}, dt, Fill::wide, View::sliced, 64)},
                       [](const std::vector<Tensor>& x) { return Outputs{rms_norm(x[0], x[1], 1e-6)}; }, {trms}});
    }
    // Softmax over a non-last axis (the builder hands the kernel a strided row) and NaN/±inf rows.
    cases.push_back({cat("softmax ", dtype_name(dt), " [13, 7] axis 0"), {make_input({13, 7}, dt, Fill::wide, View::contiguous, 65)},
                     [](const std::vector<Tensor>& x) { return Outputs{softmax(x[0], 0)}; }, {libm(dt)}});
    cases.push_back({cat("softmax ", dtype_name(dt), " [13, 7] specials"), {make_input({13, 7}, dt, Fill::specials, View::contiguous, 66)},
                     [](const std::vector<Tensor>& x) { return Outputs{softmax(x[0], -1)}; }, {libm(dt)}});
  }
}

// ---- rope ----------------------------------------------------------------------------------------
// Both sides compute a·c − b·s and b·c + a·s with the products rounded separately: identical
// steps, but allow 2 ulp_C of the operands' scale in case a compiler fuses on one side:
// atol = 2·eps_C·(|a c| + |b s|) ≤ 4·eps_C for |x|, |cos|, |sin| ≤ 1.
void add_rope(std::vector<Case>& cases) {
  for (DType dt : kFloats) {
    for (RopeStyle style : {RopeStyle::rotate_half, RopeStyle::interleaved}) {
      const char* sname = style == RopeStyle::rotate_half ? "rotate_half" : "interleaved";
      const Tol tol = rounding(dt, 2, 4 * eps_compute(dt));
      // x [2, 3, 5, 8] given as a [2, 5, 3, 8] block with heads and positions swapped (a
      // transposed attention layout); cos/sin [5, 4] broadcast over batch and heads.
      cases.push_back({cat("rope ", sname, " ", dtype_name(dt), " x [2, 3, 5, 8] permuted, cos/sin [5, 4]"),
                       {{make_values({2, 5, 3, 8}, dt, Fill::signed_unit, 71), [](const Tensor& t) { return t.transpose(1, 2); }},
                        make_input({5, 4}, dt, Fill::signed_unit, View::contiguous, 72),
                        make_input({5, 4}, dt, Fill::signed_unit, View::sliced, 73)},
                       [style](const std::vector<Tensor>& x) { return Outputs{rope(x[0], x[1], x[2], style)}; }, {tol}});
      cases.push_back({cat("rope ", sname, " ", dtype_name(dt), " x [7, 13, 6] contiguous, cos/sin [13, 3]"),
                       {make_input({7, 13, 6}, dt, Fill::signed_unit, View::contiguous, 74),
                        make_input({13, 3}, dt, Fill::signed_unit, View::transposed, 75),
                        make_input({13, 3}, dt, Fill::signed_unit, View::contiguous, 76)},
                       [style](const std::vector<Tensor>& x) { return Outputs{rope(x[0], x[1], x[2], style)}; }, {tol}});
    }
  }
}

// ---- matmul --------------------------------------------------------------------------------------
// |a|, |b| ≤ 1 so Σ_p |a_ip b_pj| ≤ k. Each side's f32 (f64 for f64) accumulation errs by at most
// k·eps_acc·Σ|ab| ≤ k²·eps_acc (γ_k bound, any summation order): atol = 2k²·eps_acc; the final
// rounding to a 16-bit output may go either way: rtol = eps_T.
void add_matmul(std::vector<Case>& cases) {
  const struct {
    Shape a, b;
    View va, vb;
  } shapes[] = {{{5, 7}, {7, 13}, View::contiguous, View::contiguous},
                {{3, 5, 7}, {3, 7, 13}, View::transposed, View::contiguous},
                {{2, 3, 5, 7}, {7, 13}, View::contiguous, View::transposed},
                {{5, 7}, {7, 13}, View::sliced, View::sliced},
                {{4, 5, 7}, {4, 7, 13}, View::broadcast, View::contiguous},
                {{65, 301}, {301, 129}, View::transposed, View::transposed}};
  for (DType dt : kFloats) {
    for (const auto& s : shapes) {
      const double k = static_cast<double>(s.a.back());
      const Tol tol{is16(dt) ? eps_of(dt) : 0.0, 2 * k * k * eps_compute(dt) + tiny_of(dt)};
      cases.push_back({cat("matmul ", dtype_name(dt), " ", shape_name(s.a), " ", view_name(s.va), " · ", shape_name(s.b), " ",
                           view_name(s.vb)),
                       {make_input(s.a, dt, Fill::signed_unit, s.va, 81), make_input(s.b, dt, Fill::signed_unit, s.vb, 82)},
                       [](const std::vector<Tensor>& x) { return Outputs{matmul(x[0], x[1])}; }, {tol}});
    }
  }
}

// ---- gathers, scatters, top-k (exact: copies, and additions in the same serial order) -------------
void add_index(std::vector<Case>& cases) {
  const DType types[] = {DType::f32, DType::bf16, DType::f64, DType::u8, DType::i64, DType::f16, DType::i32};
  for (DType dt : types) {
    const Fill f = is_integral(dt) ? Fill::uints : Fill::wide;
    for (DType it : {DType::i64, DType::i32}) {
      const Tensor idx0 = from_vector({4, 0, 12, 4, 7, 12}, {6}, it);
      const Tensor idx1 = from_vector({6, 1, 1, 0}, {4}, it);
      cases.push_back({cat("index_select ", dtype_name(dt), " [13, 7] transposed dim 0 index ", dtype_name(it), " [6]"),
                       {make_input({13, 7}, dt, f, View::transposed, 91), {idx0, [](const Tensor& t) { return t; }}},
                       [](const std::vector<Tensor>& x) { return Outputs{index_select(x[0], 0, x[1])}; }, {exact()}});
      // contiguous rows of 16-byte multiples: the 16-byte row-copy kernel
      cases.push_back({cat("index_select ", dtype_name(dt), " [3, 7, 16] contiguous dim 1 index ", dtype_name(it), " [4]"),
                       {make_input({3, 7, 16}, dt, f, View::contiguous, 93), {idx1, [](const Tensor& t) { return t; }}},
                       [](const std::vector<Tensor>& x) { return Outputs{index_select(x[0], 1, x[1])}; }, {exact()}});
      cases.push_back({cat("index_select ", dtype_name(dt), " [5, 7, 3] sliced dim 1 index ", dtype_name(it), " [4]"),
                       {make_input({5, 7, 3}, dt, f, View::sliced, 92), {idx1, [](const Tensor& t) { return t; }}},
                       [](const std::vector<Tensor>& x) { return Outputs{index_select(x[0], 1, x[1])}; }, {exact()}});
      // scatter_add with repeated indices: the GPU walks the index serially per column, so the
      // sums round in the same order as the CPU's loop.
      const Tensor sidx = from_vector({3, 0, 6, 3, 3, 1, 6, 0, 2}, {9}, it);
      cases.push_back({cat("scatter_add ", dtype_name(dt), " base [7, 5] dim 0 index ", dtype_name(it), " [9] repeated"),
                       {make_input({7, 5}, dt, f, View::contiguous, 93), {sidx, [](const Tensor& t) { return t; }},
                        make_input({9, 5}, dt, f, View::transposed, 94)},
                       [](const std::vector<Tensor>& x) { return Outputs{scatter_add(x[0], 0, x[1], x[2])}; }, {exact()}});
      const Tensor sidx1 = from_vector({4, 4, 0, 2, 4, 1}, {6}, it);
      cases.push_back({cat("scatter_add ", dtype_name(dt), " base [7, 5] sliced dim 1 index ", dtype_name(it), " [6] repeated"),
                       {make_input({7, 5}, dt, f, View::sliced, 95), {sidx1, [](const Tensor& t) { return t; }},
                        make_input({7, 6}, dt, f, View::contiguous, 96)},
                       [](const std::vector<Tensor>& x) { return Outputs{scatter_add(x[0], 1, x[1], x[2])}; }, {exact()}});
    }
  }
  const struct {
    Shape shape;
    int64_t k;
    Fill fill;
    View view;
  } tk[] = {{{13, 7}, 3, Fill::specials, View::contiguous},
            {{5, 1000}, 10, Fill::wide, View::sliced},
            {{4, 9}, 9, Fill::halves, View::transposed},
            {{3, 5, 13}, 1, Fill::halves, View::broadcast}};
  for (DType dt : {DType::f32, DType::bf16, DType::f64, DType::i32, DType::f16}) {
    for (const auto& t : tk) {
      const Fill f = is_integral(dt) ? Fill::ints : t.fill;
      const int64_t k = t.k;
      cases.push_back({cat("topk ", dtype_name(dt), " ", shape_name(t.shape), " ", view_name(t.view), " k ", k),
                       {make_input(t.shape, dt, f, t.view, 97)},
                       [k](const std::vector<Tensor>& x) {
                         auto [v, i] = topk(x[0], k);
                         return Outputs{v, i};
                       },
                       {exact(), exact()}});
    }
  }
}

// ---- casts, fill, arange, random --------------------------------------------------------------------
// Casts round once (nearest even) or truncate-and-saturate: exact. arange: start + i·step in f64
// with two roundings on both sides: exact. Uniform random: exact. Normal random goes through
// f64 log/sqrt/cos, where CUDA and glibc may differ in the last bits of z = r·cos θ (|z| ≤ 8.6 for
// 53-bit uniforms); mean + stddev·z then carries an absolute error of a few ulp of the operands'
// scale, even where the sum nearly cancels: atol = 8·eps64·(|mean| + 9·|stddev|), rtol 8·eps64
// for f64; narrower outputs round either way: one eps_T (+ eps32).
void add_create(std::vector<Case>& cases) {
  const DType all_types[] = {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i8, DType::u8, DType::i32, DType::i64};
  for (DType from : all_types) {
    for (DType to : all_types) {
      const Fill f = is_integral(from) ? (from == DType::u8 ? Fill::uints : Fill::ints) : Fill::big;
      cases.push_back({cat("cast ", dtype_name(from), " -> ", dtype_name(to), " [7, 5] transposed"),
                       {make_input({7, 5}, from, f, View::transposed, 101)},
                       [to](const std::vector<Tensor>& x) { return Outputs{cast(x[0], to)}; }, {exact()}});
    }
    cases.push_back({cat("contiguous ", dtype_name(from), " [13, 7, 5] sliced"),
                     {make_input({13, 7, 5}, from, is_integral(from) ? Fill::uints : Fill::specials, View::sliced, 102)},
                     [](const std::vector<Tensor>& x) { return Outputs{x[0].contiguous()}; }, {exact()}});
    cases.push_back({cat("fill_ ", dtype_name(from), " 2.7 into [13, 7] transposed view"),
                     {make_input({13, 7}, from, Fill::uints, View::transposed, 103)},
                     [](const std::vector<Tensor>& x) {
                       Tensor base = x[0].transpose(-2, -1).clone();  // a fresh block on x's device
                       Tensor v = base.transpose(-2, -1).slice(0, 1, 13, 3);
                       fill_(v, 2.7);
                       return Outputs{base};
                     },
                     {exact()}});
  }
  const struct {
    double start, end, step;
    DType dt;
  } ar[] = {{0, 13, 1, DType::i64},   {0.5, 7.3, 0.7, DType::f32}, {0.5, 7.3, 0.7, DType::f64},
            {-3, 4, 0.25, DType::f16}, {-3, 4, 0.37, DType::bf16}, {5, -8, -1, DType::i32}};
  for (const auto& a : ar) {
    cases.push_back({cat("arange ", dtype_name(a.dt), " ", a.start, " .. ", a.end, " step ", a.step),
                     {make_input({1}, DType::f32, Fill::wide, View::contiguous, 1)},  // carries the device
                     [a](const std::vector<Tensor>& x) { return Outputs{arange(a.start, a.end, a.step, a.dt, x[0].device())}; },
                     {exact()}});
  }
  for (DType dt : kFloats) {
    for (uint64_t seed : {uint64_t{0}, uint64_t{0x9E3779B97F4A7C15ull}}) {
      cases.push_back({cat("rand_uniform ", dtype_name(dt), " [13, 7, 5] seed ", seed),
                       {make_input({1}, DType::f32, Fill::wide, View::contiguous, 1)},
                       [dt, seed](const std::vector<Tensor>& x) {
                         return Outputs{rand_uniform({13, 7, 5}, seed, -2, 3, dt, x[0].device())};
                       },
                       {exact()}});
      cases.push_back({cat("rand_normal ", dtype_name(dt), " [13, 7, 5] seed ", seed),
                       {make_input({1}, DType::f32, Fill::wide, View::contiguous, 1)},
                       [dt, seed](const std::vector<Tensor>& x) {
                         return Outputs{rand_normal({13, 7, 5}, seed, 0.5, 2, dt, x[0].device())};
                       },
                       {Tol{dt == DType::f64 ? 8 * 0x1p-52 : rounding(dt, 1).rtol, 8 * 0x1p-52 * (0.5 + 9 * 2)}}});
    }
  }
}

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  add_unary(cases);
  add_binary(cases);
  add_reduce(cases);
  add_softmax_norm(cases);
  add_rope(cases);
  add_matmul(cases);
  add_index(cases);
  add_create(cases);
  return cases;
}

}  // namespace

TEST_CASE("cuda op table: every op on CUDA matches the CPU kernel") { run_op_table(all_cases(), "op cases"); }

TEST_CASE("cuda op errors match the CPU's") {
  if (on_cpu_selfcheck()) return;
  Tensor x = rand_uniform({5, 7}, 1, -1, 1, DType::f32, Device::cuda(0));
  Tensor bad = from_vector({1, 5}, {2}, DType::i64).to(Device::cuda(0));
  CHECK_THROWS_AS(index_select(x, 0, bad), ShapeError);
  CHECK_THROWS_AS(scatter_add(x, 0, bad, rand_uniform({2, 7}, 2, -1, 1, DType::f32, Device::cuda(0))), ShapeError);
  CHECK_THROWS_AS(softmax(from_vector({1, 2}, {2}, DType::i32).to(Device::cuda(0))), DTypeError);
}
