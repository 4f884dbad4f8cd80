// Matmul benchmarks: ours (arq::matmul, allocating its output as callers do) against raw oneDNN
// in the same process: dnnl_sgemm for f32, a oneDNN matmul primitive built once for bf16.
//
// Shapes: 1024³, 2048³, and a transformer linear layer x [2048, 4096] · Wᵀ with W [4096, 4096]
// given as a transposed view of the row-major [out, in] weight (no copy; dnnl_sgemm transb='T').
#include <cmath>
#include <cstdio>
#include <string>

#include "arq_config.h"
#include "bench/engine/bench_util.h"

#if ARQ_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace arq::bench {
namespace {

struct MatShape {
  const char* name;
  int64_t m, n, k;
  bool weight_t;  // B = W.t() with W [n, k] row-major, as a linear layer uses it
};

constexpr MatShape kShapes[] = {
    {"1024^3", 1024, 1024, 1024, false},
    {"2048^3", 2048, 2048, 2048, false},
    {"block_x2048x4096_wT4096x4096", 2048, 4096, 4096, true},
};

double flops(const MatShape& s) { return 2.0 * static_cast<double>(s.m) * static_cast<double>(s.n) * static_cast<double>(s.k); }

// Inputs, values in [-1, 1): A [m, k], B [k, n] (a transposed view of W [n, k] for weight_t).
Tensor input_a(const MatShape& s, DType dt) {
  return cached(std::string("mm_a_") + s.name + dtype_name(dt),
                [&] { return rand_uniform({s.m, s.k}, 11, -1, 1, DType::f32).to(dt); });
}
Tensor input_b(const MatShape& s, DType dt) {
  Tensor w = cached(std::string("mm_b_") + s.name + dtype_name(dt), [&] {
    const Shape shape = s.weight_t ? Shape{s.n, s.k} : Shape{s.k, s.n};
    return rand_uniform(shape, 12, -1, 1, DType::f32).to(dt);
  });
  return s.weight_t ? w.t() : w;
}

double elem(const Tensor& t, int64_t i, int64_t j) {
  const int64_t off = i * t.stride(0) + j * t.stride(1);
  if (t.dtype() == DType::bf16) return bf16_bits_to_f32(t.data<BFloat16>()[off].bits);
  return t.data<float>()[off];
}

// Checks 256 sampled entries (and the four corners) of out = a · b against f64 dot products.
// Bound: any f32 summation order of k products errs by at most k·u·Σ|a||b| (u = 2^-24; the
// products of f32 or bf16 inputs are exact in f32 fma or add one more u each, covered by the
// (k + 1) factor), plus rounding the output once: u_out·|ref| with u_out = 2^-24 (f32) or
// 2^-8 (bf16, 8 significant bits). A wrong index or a missing block gives errors of order |ref| ~ √k, far above.
std::string check_matmul(const Tensor& a, const Tensor& b, const Tensor& out) {
  const int64_t m = a.size(0), k = a.size(1), n = b.size(1);
  const double u = std::ldexp(1.0, -24);
  const double u_out = out.dtype() == DType::bf16 ? std::ldexp(1.0, -8) : u;
  uint64_t state = 0x9e3779b97f4a7c15ull;
  for (int t = 0; t < 260; ++t) {
    int64_t i, j;
    if (t < 4) {
      i = (t & 1) ? m - 1 : 0;
      j = (t & 2) ? n - 1 : 0;
    } else {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      i = static_cast<int64_t>((state >> 33) % static_cast<uint64_t>(m));
      j = static_cast<int64_t>((state >> 13) % static_cast<uint64_t>(n));
    }
    double ref = 0, mag = 0;
    for (int64_t p = 0; p < k; ++p) {
      const double prod = elem(a, i, p) * elem(b, p, j);
      ref += prod;
      mag += std::fabs(prod);
    }
    const double got = elem(out, i, j);
    const double tol = static_cast<double>(k + 1) * u * mag + u_out * std::fabs(ref);
    if (!(std::fabs(got - ref) <= tol)) {
      char msg[200];
      std::snprintf(msg, sizeof msg, "mismatch at [%lld, %lld]: got %.9g, reference %.9g, tolerance %.3g",
                    static_cast<long long>(i), static_cast<long long>(j), got, ref, tol);
      return msg;
    }
  }
  return {};
}

void bm_ours(benchmark::State& state, MatShape s, DType dt, std::string name) {
  const Tensor a = input_a(s, dt), b = input_b(s, dt);
  const std::string& err = validate_once(name, [&] { return check_matmul(a, b, matmul(a, b)); });
  if (!err.empty()) {
    state.SkipWithError(err.c_str());
    return;
  }
  for (auto _ : state) {
    Tensor c = matmul(a, b);
    benchmark::DoNotOptimize(c.data_ptr());
  }
  state.counters["GFLOP/s"] = rate(flops(s) * 1e-9);
}

#if ARQ_HAVE_ONEDNN
// The baseline: one dnnl_sgemm call into a preallocated C, the same transposes as ours.
void bm_raw_sgemm(benchmark::State& state, MatShape s, std::string name) {
  const Tensor a = input_a(s, DType::f32), b = input_b(s, DType::f32);
  Tensor c = zeros({s.m, s.n});
  const char tb = s.weight_t ? 'T' : 'N';
  const int64_t ldb = s.weight_t ? s.k : s.n;
  auto run = [&] {
    return dnnl_sgemm('N', tb, s.m, s.n, s.k, 1.0f, a.data<float>(), s.k, b.data<float>(), ldb, 0.0f, c.data<float>(), s.n);
  };
  const std::string& err = validate_once(name, [&] {
    if (run() != dnnl_success) return std::string("dnnl_sgemm failed");
    return check_matmul(a, b, c);
  });
  if (!err.empty()) {
    state.SkipWithError(err.c_str());
    return;
  }
  for (auto _ : state) {
    run();
    benchmark::DoNotOptimize(c.data_ptr());
  }
  state.counters["GFLOP/s"] = rate(flops(s) * 1e-9);
}

// The bf16 baseline: a oneDNN matmul primitive created once outside the loop.
void bm_raw_dnnl_bf16(benchmark::State& state, MatShape s, std::string name) {
  using dt = dnnl::memory::data_type;
  const Tensor a = input_a(s, DType::bf16), b = input_b(s, DType::bf16);
  Tensor c = zeros({s.m, s.n}, DType::bf16);
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream strm(eng);
  dnnl::memory::desc ad({s.m, s.k}, dt::bf16, {s.k, 1});
  dnnl::memory::desc bd({s.k, s.n}, dt::bf16, {b.stride(0), b.stride(1)});
  dnnl::memory::desc cd({s.m, s.n}, dt::bf16, {s.n, 1});
  dnnl::matmul prim(dnnl::matmul::primitive_desc(dnnl::matmul::desc(ad, bd, cd), eng));
  dnnl::memory am(ad, eng, a.data_ptr()), bm(bd, eng, b.data_ptr()), cm(cd, eng, c.data_ptr());
  auto run = [&] {
    prim.execute(strm, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
    strm.wait();
  };
  const std::string& err = validate_once(name, [&] {
    run();
    return check_matmul(a, b, c);
  });
  if (!err.empty()) {
    state.SkipWithError(err.c_str());
    return;
  }
  for (auto _ : state) {
    run();
    benchmark::DoNotOptimize(c.data_ptr());
  }
  state.counters["GFLOP/s"] = rate(flops(s) * 1e-9);
}
#endif

void reg(const std::string& name, void (*fn)(benchmark::State&, MatShape, DType, std::string), MatShape s, DType dt) {
  benchmark::RegisterBenchmark(name.c_str(), fn, s, dt, name)->Unit(benchmark::kMillisecond)->UseRealTime();
}

}  // namespace

void register_matmul_benchmarks() {
  for (const MatShape& s : kShapes) {
    const std::string f32 = std::string("matmul/f32/") + s.name, bf16 = std::string("matmul/bf16/") + s.name;
    reg(f32, bm_ours, s, DType::f32);
    reg(bf16, bm_ours, s, DType::bf16);
#if ARQ_HAVE_ONEDNN
    const std::string raw = std::string("raw_sgemm/f32/") + s.name, rawbf = std::string("raw_dnnl_matmul/bf16/") + s.name;
    benchmark::RegisterBenchmark(raw.c_str(), bm_raw_sgemm, s, raw)->Unit(benchmark::kMillisecond)->UseRealTime();
    benchmark::RegisterBenchmark(rawbf.c_str(), bm_raw_dnnl_bf16, s, rawbf)->Unit(benchmark::kMillisecond)->UseRealTime();
    // The target is f32 at 2048³; the other shapes are reported without one.
    RatioPair pair{f32, raw, "GFLOP/s", std::string(s.name) == "2048^3" ? 0.9 : 0.0, {}, {}};
    pair.run_ours = [s] {
      Tensor c = matmul(input_a(s, DType::f32), input_b(s, DType::f32));
      benchmark::DoNotOptimize(c.data_ptr());
    };
    pair.run_base = [s, c = Tensor()]() mutable {
      const Tensor a = input_a(s, DType::f32), b = input_b(s, DType::f32);
      if (!c.defined()) c = zeros({s.m, s.n});
      dnnl_sgemm('N', s.weight_t ? 'T' : 'N', s.m, s.n, s.k, 1.0f, a.data<float>(), s.k, b.data<float>(),
                 s.weight_t ? s.k : s.n, 0.0f, c.data<float>(), s.n);
      benchmark::DoNotOptimize(c.data_ptr());
    };
    ratio_pairs().push_back(std::move(pair));
    ratio_pairs().push_back({bf16, rawbf, "GFLOP/s", 0.0, {}, {}});
#endif
  }
}

}  // namespace arq::bench
