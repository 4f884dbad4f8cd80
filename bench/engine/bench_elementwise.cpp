// Memory-bound benchmarks on a [4096, 4096] f32 tensor (64 MiB, far above any cache):
// add, silu, a broadcast row mul, a cast to bf16, softmax and rms_norm over the last axis.
// GB/s counts bytes read + bytes written once each (the least traffic the op needs).
//
// Each op runs two ways:
//   op/...      the builder as a caller uses it (allocates a fresh output every call, so the
//               time includes the allocator and the first-touch page faults of 64 MiB);
//   kernel/...  the CPU backend kernel into an output allocated and touched once beforehand,
//               which is what the memcpy baseline does too.
// Baselines in the same run: `memcpy` (one std::memcpy, one thread, the baseline) and
// `memcpy_threads` (the same bytes split over the pool's threads with memcpy per chunk).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "bench/engine/bench_util.h"
#include "kernels/cpu/thread_pool.h"

namespace arq::bench {
namespace {

constexpr int64_t kRows = 4096, kCols = 4096;
constexpr double kF32 = 4.0;
const double kNumel = static_cast<double>(kRows * kCols);
const double u = std::ldexp(1.0, -24);  // unit roundoff of f32

Tensor input_x() { return cached("ew_x", [] { return rand_normal({kRows, kCols}, 21, 0, 2); }); }
Tensor input_y() { return cached("ew_y", [] { return rand_normal({kRows, kCols}, 22, 0, 2); }); }
Tensor input_row() { return cached("ew_row", [] { return rand_normal({kCols}, 23, 0, 1); }); }

// First mismatch of out against ref(i) (row-major index) with tolerance tol(ref), or "".
template <class Ref, class Tol>
std::string compare(const Tensor& out, Ref ref, Tol tol) {
  const int64_t n = out.numel();
  for (int64_t i = 0; i < n; ++i) {
    const double r = ref(i);
    const double g = out.dtype() == DType::bf16 ? bf16_bits_to_f32(out.data<BFloat16>()[i].bits) : out.data<float>()[i];
    if (!(std::fabs(g - r) <= tol(r, i))) {
      char msg[160];
      std::snprintf(msg, sizeof msg, "mismatch at flat index %lld: got %.9g, reference %.9g", static_cast<long long>(i), g, r);
      return msg;
    }
  }
  return {};
}

// Bytes read + written by one call (the least traffic the op needs).
double case_bytes(const std::string& id) {
  const double big = 2 * kF32 * kNumel;  // one f32 tensor read, one written
  if (id == "add") return 3 * kF32 * kNumel;
  if (id == "cast_bf16") return kF32 * kNumel + 2 * kNumel;
  if (id == "mul_bcast_row" || id == "rms_norm") return big + kF32 * kCols;  // + the row
  return big;                                                               // silu, softmax
}

struct EwCase {
  double bytes;                                // read + written per call
  DType out_dtype;
  std::function<Tensor()> op;                  // the builder
  std::function<void(Tensor&)> kernel;         // the backend kernel into a given output
  std::function<std::string(const Tensor&)> check;
};

EwCase make_case(const std::string& id) {
  const Tensor x = input_x();
  const float* px = x.data<float>();
  const double bytes = case_bytes(id);
  if (id == "add") {
    const Tensor y = input_y();
    const float* py = y.data<float>();
    // One rounding of the exact sum: |err| <= u·|ref|.
    return {bytes, DType::f32, [x, y] { return add(x, y); },
            [x, y](Tensor& o) { cpu_backend().binary(BinaryOp::add, x, y, o); },
            [px, py](const Tensor& o) {
              return compare(o, [&](int64_t i) { return double(px[i]) + double(py[i]); },
                             [](double r, int64_t) { return u * std::fabs(r); });
            }};
  }
  if (id == "silu") {
    // expf (<= 2u relative), 1 + e (u), the division (u); silu's sensitivity to the relative
    // error of e is e / (1 + e) <= 1, so 4u bounds it; 8u leaves room for a vector exp.
    return {bytes, DType::f32, [x] { return silu(x); }, [x](Tensor& o) { cpu_backend().unary(UnaryOp::silu, x, o, 0, 0); },
            [px](const Tensor& o) {
              return compare(o, [&](int64_t i) { return px[i] / (1.0 + std::exp(-double(px[i]))); },
                             [](double r, int64_t) { return 8 * u * std::fabs(r) + 1e-38; });
            }};
  }
  if (id == "mul_bcast_row") {
    const Tensor w = input_row();
    const float* pw = w.data<float>();
    return {bytes, DType::f32, [x, w] { return mul(x, w); },
            [x, w](Tensor& o) { cpu_backend().binary(BinaryOp::mul, x, w.expand(x.shape()), o); },
            [px, pw](const Tensor& o) {
              return compare(o, [&](int64_t i) { return double(px[i]) * double(pw[i % kCols]); },
                             [](double r, int64_t) { return u * std::fabs(r); });
            }};
  }
  if (id == "cast_bf16") {
    // Exact: the f64 -> bf16 conversion is a separate code path from the kernel's f32 -> bf16.
    return {bytes, DType::bf16, [x] { return x.to(DType::bf16); },
            [x](Tensor& o) { cpu_backend().copy(x, o); },
            [px](const Tensor& o) {
              return compare(o, [&](int64_t i) { return double(bf16_bits_to_f32(f64_to_bf16_bits(px[i]))); },
                             [](double, int64_t) { return 0.0; });
            }};
  }
  if (id == "softmax") {
    // Per element: x - m rounds by u·|x - m|, which exp turns into a relative error of the same
    // size; exp, the 1/sum and the product add <= 4u more (the sum is in f64). Tolerance
    // u·(|x - m| + 8)·|ref| per element, with |x - m| bounded by the row's range.
    return {bytes, DType::f32, [x] { return softmax(x, -1); }, [x](Tensor& o) { cpu_backend().softmax(x, o, false); },
            [px](const Tensor& o) {
              std::vector<double> ref(kCols);
              for (int64_t r = 0; r < kRows; ++r) {
                const float* row = px + r * kCols;
                double m = row[0], lo = row[0];
                for (int64_t j = 0; j < kCols; ++j) m = std::max(m, double(row[j])), lo = std::min(lo, double(row[j]));
                double s = 0;
                for (int64_t j = 0; j < kCols; ++j) s += ref[j] = std::exp(row[j] - m);
                for (int64_t j = 0; j < kCols; ++j) {
                  const double want = ref[j] / s, got = o.data<float>()[r * kCols + j];
                  if (!(std::fabs(got - want) <= u * (m - lo + 8) * want))
                    return std::string("softmax mismatch in row ") + std::to_string(r) + " col " + std::to_string(j);
                }
              }
              return std::string();
            }};
  }
  if (id == "rms_norm") {
    // The mean of squares is in f64; the f32 1/rms, x·(1/rms) and weight·(...) round once
    // each: <= 3u relative, tolerance 4u·|ref|.
    const Tensor w = input_row();
    const float* pw = w.data<float>();
    constexpr double eps = 1e-6;
    return {bytes, DType::f32, [x, w] { return rms_norm(x, w, eps); },
            [x, w](Tensor& o) { cpu_backend().rms_norm(x, w, eps, o); },
            [px, pw](const Tensor& o) {
              for (int64_t r = 0; r < kRows; ++r) {
                const float* row = px + r * kCols;
                double ss = 0;
                for (int64_t j = 0; j < kCols; ++j) ss += double(row[j]) * row[j];
                const double inv = 1 / std::sqrt(ss / kCols + eps);
                for (int64_t j = 0; j < kCols; ++j) {
                  const double want = double(pw[j]) * row[j] * inv, got = o.data<float>()[r * kCols + j];
                  if (!(std::fabs(got - want) <= 4 * u * std::fabs(want) + 1e-38))
                    return std::string("rms_norm mismatch in row ") + std::to_string(r) + " col " + std::to_string(j);
                }
              }
              return std::string();
            }};
  }
  return {};
}

void bm_op(benchmark::State& state, std::string id, std::string name) {
  const EwCase c = make_case(id);
  const std::string& err = validate_once(name, [&] { return c.check(c.op()); });
  if (!err.empty()) {
    state.SkipWithError(err.c_str());
    return;
  }
  for (auto _ : state) {
    Tensor o = c.op();
    benchmark::DoNotOptimize(o.data_ptr());
  }
  state.counters["GB/s"] = rate(c.bytes * 1e-9);
}

void bm_kernel(benchmark::State& state, std::string id, std::string name) {
  const EwCase c = make_case(id);
  Tensor out = zeros({kRows, kCols}, c.out_dtype);  // allocated and touched once
  const std::string& err = validate_once(name, [&] {
    c.kernel(out);
    return c.check(out);
  });
  if (!err.empty()) {
    state.SkipWithError(err.c_str());
    return;
  }
  for (auto _ : state) {
    c.kernel(out);
    benchmark::DoNotOptimize(out.data_ptr());
  }
  state.counters["GB/s"] = rate(c.bytes * 1e-9);
}

// memcpy of one [4096, 4096] f32 tensor: 64 MiB read + 64 MiB written.
void bm_memcpy(benchmark::State& state, bool threads, std::string name) {
  const Tensor x = input_x();
  Tensor out = zeros({kRows, kCols});
  const size_t n = x.nbytes();
  const char* src = static_cast<const char*>(x.data_ptr());
  char* dst = static_cast<char*>(out.data_ptr());
  auto run = [&] {
    if (!threads) {
      std::memcpy(dst, src, n);
      return;
    }
    cpu::parallel_for(static_cast<int64_t>(n), 1 << 20, [&](int64_t b, int64_t e) { std::memcpy(dst + b, src + b, e - b); });
  };
  const std::string& err = validate_once(name, [&] {
    run();
    return std::memcmp(dst, src, n) == 0 ? std::string() : std::string("memcpy copy differs");
  });
  if (!err.empty()) {
    state.SkipWithError(err.c_str());
    return;
  }
  for (auto _ : state) {
    run();
    benchmark::DoNotOptimize(dst);
  }
  state.counters["GB/s"] = rate(2 * static_cast<double>(n) * 1e-9);
}

}  // namespace

void register_elementwise_benchmarks() {
  const std::string memcpy1 = "memcpy/f32/4096x4096", memcpy_t = "memcpy_threads/f32/4096x4096";
  benchmark::RegisterBenchmark(memcpy1.c_str(), bm_memcpy, false, memcpy1)->Unit(benchmark::kMillisecond)->UseRealTime();
  benchmark::RegisterBenchmark(memcpy_t.c_str(), bm_memcpy, true, memcpy_t)->Unit(benchmark::kMillisecond)->UseRealTime();
  for (const char* id : {"add", "silu", "mul_bcast_row", "cast_bf16", "softmax", "rms_norm"}) {
    const std::string op = std::string("op/") + id + "/f32/4096x4096";
    const std::string kn = std::string("kernel/") + id + "/f32/4096x4096";
    benchmark::RegisterBenchmark(op.c_str(), bm_op, id, op)->Unit(benchmark::kMillisecond)->UseRealTime();
    benchmark::RegisterBenchmark(kn.c_str(), bm_kernel, id, kn)->Unit(benchmark::kMillisecond)->UseRealTime();
    // The target (>= 50% of memcpy) is for elementwise ops; softmax and rms_norm are
    // reported against the same baseline without one.
    const bool ew = std::string(id) != "softmax" && std::string(id) != "rms_norm";
    // Alternating runs compare time per call, so the baseline's time is scaled to the op's
    // bytes: memcpy moves 2·64 MiB, the op `bytes`; ratio of rates = (t_memcpy·bytes/128 MiB) / t_op.
    auto memcpy_scaled = [id = std::string(id), out = Tensor()]() mutable {
      const Tensor x = input_x();
      if (!out.defined()) out = zeros({kRows, kCols});
      std::memcpy(out.data_ptr(), x.data_ptr(), x.nbytes());
      benchmark::DoNotOptimize(out.data_ptr());
    };
    const double scale = case_bytes(id) / (2 * kF32 * kNumel);
    RatioPair pop{op, memcpy1, "GB/s", ew ? 0.5 : 0.0, {}, {}};
    pop.run_ours = [id = std::string(id)] {
      Tensor o = make_case(id).op();
      benchmark::DoNotOptimize(o.data_ptr());
    };
    pop.run_base = memcpy_scaled;
    pop.base_scale = scale;
    RatioPair pkn{kn, memcpy1, "GB/s", ew ? 0.5 : 0.0, {}, {}};
    pkn.run_ours = [id = std::string(id), out = Tensor()]() mutable {
      const EwCase c = make_case(id);
      if (!out.defined()) out = zeros({kRows, kCols}, c.out_dtype);
      c.kernel(out);
      benchmark::DoNotOptimize(out.data_ptr());
    };
    pkn.run_base = memcpy_scaled;
    pkn.base_scale = scale;
    ratio_pairs().push_back(std::move(pop));
    ratio_pairs().push_back(std::move(pkn));
    ratio_pairs().push_back({kn, memcpy_t, "GB/s", 0.0, {}, {}});
  }
}

}  // namespace arq::bench
