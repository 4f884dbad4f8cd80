// Helpers of the CUDA suite: deterministic inputs, the same view built on both devices,
// dtype-derived tolerances, and one comparison that reports the first bad element.
//
// A CUDA result is compared with the CPU kernel's result for the same op on the same input
// view (the CPU kernels are themselves tested against f64 plain loops in tests/engine).
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <exception>
#include <functional>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/ops.h"

namespace arq::cudatest {

// ARQ_CUDA_TEST_ON_CPU=1: run the op table with the CPU as the "device" (checks the table itself
// on machines without a GPU); the runtime tests are skipped then.
inline bool on_cpu_selfcheck() {
  const char* e = std::getenv("ARQ_CUDA_TEST_ON_CPU");
  return e && std::string(e) == "1";
}

// ---- tolerances ----------------------------------------------------------------------------
// eps: the gap between 1 and the next value of the dtype (1 ulp at 1.0, so |ulp(y)| ≤ eps·|y|
// for normal y); tiny: the smallest subnormal (the ulp of values near 0).
inline double eps_of(DType t) {
  switch (t) {
    case DType::f32: return 0x1p-23;
    case DType::f64: return 0x1p-52;
    case DType::f16: return 0x1p-10;
    case DType::bf16: return 0x1p-7;
    default: return 0;
  }
}
inline double tiny_of(DType t) {
  switch (t) {
    case DType::f32: return 0x1p-149;
    case DType::f64: return 0x1p-1074;
    case DType::f16: return 0x1p-24;
    case DType::bf16: return 0x1p-133;
    default: return 0;
  }
}
inline bool is16(DType t) { return t == DType::f16 || t == DType::bf16; }
// eps of the type the kernels compute in: f64 for f64, f32 for every other floating dtype.
inline double eps_compute(DType t) { return t == DType::f64 ? 0x1p-52 : 0x1p-23; }

// |gpu − cpu| ≤ atol + rtol·|cpu|; NaN must meet NaN; equal infinities pass.
struct Tol {
  double rtol = 0, atol = 0;
};
inline Tol exact() { return {}; }
// One libm call (exp, log, tanh, pow): CUDA's f32 functions are within 4 ulp (powf; expf/logf
// 2 ulp), glibc's within 1, so the two f32 results differ by ≤ 5 ulp ≤ 5·eps32·|y|; 8 leaves room
// for the one extra rounded op of sigmoid/silu. f64: ≤ 2 + 1 ulp → 8·eps64. A 16-bit output can
// then round either way: + one eps of the output dtype.
inline Tol libm(DType t) { return {(is16(t) ? eps_of(t) : 0) + 8 * eps_compute(t), tiny_of(t)}; }
// A value computed by both sides through identical rounded steps except one accumulation in a
// different order: `ulps` steps of eps_compute, plus one rounding to a 16-bit output.
inline Tol rounding(DType t, double ulps, double atol = 0) {
  return {(is16(t) ? eps_of(t) : 0) + ulps * eps_compute(t), atol + tiny_of(t)};
}

// ---- inputs ----------------------------------------------------------------------------------
enum class Fill {
  signed_unit,  // uniform in [-1, 1)
  wide,         // uniform in [-4, 4)
  positive,     // uniform in [0.125, 4): log, sqrt, rsqrt, pow
  halves,       // multiples of 0.5 in [-4, 4]: rounding ties
  specials,     // uniform in [-4, 4) with NaN, ±inf, ±0 and ties sprinkled in
  ints,         // integers in [-50, 50] (fits every integer dtype but u8)
  uints,        // integers in [0, 200]
  big,          // uniform in [-300, 300]: casts that saturate
};

// A contiguous CPU tensor of `shape` and dtype, filled deterministically from `seed`.
inline Tensor make_values(const Shape& shape, DType dtype, Fill fill, uint64_t seed) {
  Tensor u;
  switch (fill) {
    case Fill::signed_unit: u = rand_uniform(shape, seed, -1, 1, DType::f64); break;
    case Fill::wide: case Fill::specials: u = rand_uniform(shape, seed, -4, 4, DType::f64); break;
    case Fill::positive: u = rand_uniform(shape, seed, 0.125, 4, DType::f64); break;
    case Fill::halves: u = arq::floor(rand_uniform(shape, seed, -8, 9, DType::f64)) * 0.5; break;
    case Fill::ints: u = arq::floor(rand_uniform(shape, seed, -50, 51, DType::f64)); break;
    case Fill::uints: u = arq::floor(rand_uniform(shape, seed, 0, 201, DType::f64)); break;
    case Fill::big: u = rand_uniform(shape, seed, -300, 300, DType::f64); break;
  }
  if (fill == Fill::specials) {
    std::vector<double> v = to_vector(u);
    const double sp[] = {NAN, INFINITY, -INFINITY, 0.0, -0.0, 0.5, -2.5, 1.5};
    for (size_t i = 0; i < v.size(); i += 3) v[i] = sp[(i / 3) % 8];
    u = from_vector(v, shape, DType::f64);
  }
  return u.to(dtype).contiguous();
}

// How an input is presented to the op: the base tensor is made (and copied to the GPU) as a
// contiguous block, and the same view function applied on both devices.
enum class View { contiguous, transposed, sliced, broadcast };
inline const char* view_name(View v) {
  switch (v) {
    case View::contiguous: return "contiguous";
    case View::transposed: return "transposed";
    case View::sliced: return "sliced";
    case View::broadcast: return "broadcast";
  }
  return "?";
}

struct Input {
  Tensor base;                                  // contiguous, on the CPU
  std::function<Tensor(const Tensor&)> view;    // base -> the operand (same on both devices)
};

// An operand of `shape` (≥ 1 dim) presented through `view`:
//   transposed: base has the last two dims swapped, operand = base.transpose(-2, -1);
//   sliced:     base has last dim 2·n + 1, operand = every second element from index 1;
//   broadcast:  base has leading dim 1, operand = base.expand(shape) (stride 0).
inline Input make_input(const Shape& shape, DType dtype, Fill fill, View view, uint64_t seed) {
  Shape bs = shape;
  switch (view) {
    case View::contiguous:
      return {make_values(bs, dtype, fill, seed), [](const Tensor& t) { return t; }};
    case View::transposed:
      if (bs.size() < 2) return make_input(shape, dtype, fill, View::sliced, seed);
      std::swap(bs[bs.size() - 1], bs[bs.size() - 2]);
      return {make_values(bs, dtype, fill, seed), [](const Tensor& t) { return t.transpose(-2, -1); }};
    case View::sliced: {
      const int64_t n = bs.back();
      bs.back() = 2 * n + 1;
      return {make_values(bs, dtype, fill, seed), [n](const Tensor& t) { return t.slice(-1, 1, 2 * n + 1, 2); }};
    }
    case View::broadcast: {
      bs[0] = 1;
      return {make_values(bs, dtype, fill, seed), [shape](const Tensor& t) { return t.expand(shape); }};
    }
  }
  return {};
}

// ---- comparison ------------------------------------------------------------------------------
struct Mismatch {
  bool ok = true;
  std::string what;  // first failure, with index and both values
};

inline Mismatch compare(const Tensor& cpu, const Tensor& gpu, Tol tol) {
  if (cpu.shape() != gpu.shape() || cpu.dtype() != gpu.dtype())
    return {false, cat("cpu ", cpu.str(), " vs cuda ", gpu.str())};
  const std::vector<double> c = to_vector(cpu), g = to_vector(gpu);
  size_t bad = 0, first = 0;
  double worst = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    const bool nc = std::isnan(c[i]), ng = std::isnan(g[i]);
    bool good;
    if (nc || ng) good = nc && ng;
    else if (c[i] == g[i]) good = true;
    else good = std::fabs(g[i] - c[i]) <= tol.atol + tol.rtol * std::fabs(c[i]);
    if (!good) {
      if (bad++ == 0) first = i;
      if (!(nc || ng)) worst = std::max(worst, std::fabs(g[i] - c[i]));
    }
  }
  if (bad == 0) return {};
  return {false, cat(bad, " of ", c.size(), " elements differ; first at flat index ", first, ": cpu ", c[first],
                     " cuda ", g[first], " (rtol ", tol.rtol, ", atol ", tol.atol, ", worst |diff| ", worst, ")")};
}

// ---- the op table ----------------------------------------------------------------------------
// One case: named inputs, the op (run once on CPU inputs, once on device inputs), a tolerance per
// output (the last one repeats), and optionally a hook that refines an output's tolerance from
// the CPU result (an atol that scales with max|y| where two terms cancel).
using Outputs = std::vector<Tensor>;
using OpFn = std::function<Outputs(const std::vector<Tensor>&)>;
using TolFn = std::function<Tol(size_t output, const Tensor& want, Tol tol)>;
struct OpCase {
  std::string name;
  std::vector<Input> inputs;
  OpFn op;
  std::vector<Tol> tols;
  TolFn refine = nullptr;
};

// The device under test: cuda:0, or the CPU itself when ARQ_CUDA_TEST_ON_CPU=1 (a self-check of
// the tables on machines without a GPU: every case must then match exactly).
inline Device device_under_test() { return on_cpu_selfcheck() ? Device::cpu() : Device::cuda(0); }

// Runs one case on both devices; false (after reporting the first bad element) on any mismatch
// or exception.
inline bool run_op_case(const OpCase& c) {
  std::vector<Tensor> cin, gin;
  for (const Input& in : c.inputs) {
    cin.push_back(in.view(in.base));
    gin.push_back(in.view(in.base.clone().to(device_under_test())));
  }
  Outputs want, got;
  try {
    want = c.op(cin);
  } catch (const std::exception& e) {
    FAIL_CHECK(cat(c.name, ": the CPU kernel threw: ", e.what()));
    return false;
  }
  try {
    got = c.op(gin);
    backend_for(device_under_test()).synchronize();
  } catch (const std::exception& e) {
    FAIL_CHECK(cat(c.name, ": cuda threw: ", e.what()));
    return false;
  }
  bool ok = want.size() == got.size();
  if (!ok) FAIL_CHECK(cat(c.name, ": ", want.size(), " outputs on the CPU, ", got.size(), " on cuda"));
  for (size_t i = 0; ok && i < want.size(); ++i) {
    CHECK_MESSAGE(got[i].device() == device_under_test(), cat(c.name, ": output ", i, " is on ", got[i].device().str()));
    Tol t = c.tols[std::min(i, c.tols.size() - 1)];
    if (c.refine) t = c.refine(i, want[i], t);
    const Mismatch m = compare(want[i], got[i], t);
    CHECK_MESSAGE(m.ok, cat(c.name, ": output ", i, ": ", m.what));
    ok = ok && m.ok;
  }
  return ok;
}

// Runs every case (one failing case does not stop the others) and reports "<k> of <n> <what>
// match the CPU", the line scripts/gpu-check puts in its table.
inline void run_op_table(const std::vector<OpCase>& cases, const char* what) {
  int passed = 0;
  for (const OpCase& c : cases) passed += run_op_case(c) ? 1 : 0;
  MESSAGE(cat(passed, " of ", cases.size(), " ", what, " match the CPU"));
  CHECK(passed == static_cast<int>(cases.size()));
}

}  // namespace arq::cudatest
