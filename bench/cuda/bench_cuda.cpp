// CUDA kernel benchmarks: bf16 GEMM at a Llama-3-8B block's shapes (TFLOP/s) and the
// memory-bound kernels (GB/s) next to a device-to-device cudaMemcpy measured in the same run.
//
// Every entry validates before it times (a few output rows against the CPU kernel), then runs
// warm-up calls and reports the median of timed repeats (cudaEvents on the backend's stream).
// Memory-bound buffers are ≥ 128 MiB, several times the L2 (50 MiB on H100), so no flush is
// needed. Output: progress lines, `BENCH ...` lines for scripts/gpu-check, a table last.
//
//   build-x/bench/cuda/bench_cuda [--quick]      (--quick: fewer repeats, smaller GEMMs)
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "engine/fused.h"
#include "engine/ops.h"
#include "kernels/cuda/cuda_api.h"

using namespace arq;

namespace {

#define BENCH_CUDA(stmt)                                                                    \
  do {                                                                                      \
    cudaError_t e__ = (stmt);                                                               \
    if (e__ != cudaSuccess) throw DeviceError(cat("bench: ", #stmt, ": ", cudaGetErrorString(e__))); \
  } while (0)

struct Row {
  std::string name, shape;
  double ms = 0, tflops = 0, gbps = 0, ratio = 0;
  bool valid = true;
};

int g_warmup = 3, g_repeats = 15;

// Median milliseconds of `fn` over g_repeats timed calls, after g_warmup untimed ones.
double time_ms(const std::function<void()>& fn) {
  cudaStream_t s = static_cast<cudaStream_t>(cuda::stream_handle(0));
  for (int i = 0; i < g_warmup; ++i) fn();
  cuda_backend().synchronize();
  cudaEvent_t a, b;
  BENCH_CUDA(cudaEventCreate(&a));
  BENCH_CUDA(cudaEventCreate(&b));
  std::vector<double> ms;
  for (int i = 0; i < g_repeats; ++i) {
    BENCH_CUDA(cudaEventRecord(a, s));
    fn();
    BENCH_CUDA(cudaEventRecord(b, s));
    BENCH_CUDA(cudaEventSynchronize(b));
    float t = 0;
    BENCH_CUDA(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// Max |gpu − cpu| / (atol + rtol·|cpu|) over all elements (≤ 1 passes).
double worst_ratio(const Tensor& cpu, const Tensor& gpu, double rtol, double atol) {
  const std::vector<double> c = to_vector(cpu), g = to_vector(gpu);
  double w = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    if (std::isnan(c[i]) && std::isnan(g[i])) continue;
    w = std::max(w, std::fabs(g[i] - c[i]) / (atol + rtol * std::fabs(c[i])));
    if (std::isnan(g[i]) || std::isnan(c[i])) w = INFINITY;
  }
  return w;
}

// ---- GEMM ---------------------------------------------------------------------------------------
// y[m, n] = x[m, k] · w[n, k]ᵀ (a linear layer), bf16 in and out, f32 accumulation.
Row bench_gemm(const std::string& name, int64_t m, int64_t n, int64_t k) {
  Row r{name, cat("[", m, ",", k, "]x[", n, ",", k, "]^T")};
  const Device dev = Device::cuda(0);
  Tensor x = rand_uniform({m, k}, 1, -1, 1, DType::bf16, dev);
  Tensor w = rand_uniform({n, k}, 2, -1, 1, DType::bf16, dev);
  Tensor y = matmul(x, w.t());
  // Validate 4 sampled rows against the CPU (f32 accumulation on both sides; |x|,|w| ≤ 1 so the
  // two results differ by ≤ 2k·eps32·k plus one bf16 rounding).
  const int64_t rows[] = {0, m / 3, m / 2 + 1, m - 1};
  const Tensor w_host = w.to(Device::cpu());
  for (int64_t i : rows) {
    Tensor want = matmul(x.narrow(0, i, 1).to(Device::cpu()), w_host.t());
    Tensor got = y.narrow(0, i, 1).to(Device::cpu());
    const double kk = static_cast<double>(k);
    if (worst_ratio(want, got, 0x1p-7, 2 * kk * kk * 0x1p-23) > 1) r.valid = false;
  }
  r.ms = time_ms([&] { Tensor t = matmul(x, w.t()); });
  r.tflops = 2.0 * m * n * k / (r.ms * 1e-3) / 1e12;
  std::printf("BENCH gemm %s %.3f ms %.1f TFLOP/s%s\n", name.c_str(), r.ms, r.tflops, r.valid ? "" : " INVALID");
  std::fflush(stdout);
  return r;
}

// ---- memory-bound kernels ------------------------------------------------------------------------
struct BwCase {
  std::string name, shape;
  std::vector<Tensor> inputs;                                  // on the GPU
  std::function<Tensor(const std::vector<Tensor>&)> op;
  double bytes;                                                // read + written per call
  double rtol;                                                 // validation tolerance
  double atol = 1e-6;                                          // (absolute part)
};

Row bench_bw(const BwCase& c, double memcpy_gbps) {
  Row r{c.name, c.shape};
  // Validate the first 4 rows (every op here is row-independent) against the CPU kernel; inputs
  // that are not row-shaped (a norm weight, a broadcast row) go over whole.
  const int64_t rows = c.inputs[0].size(0);
  std::vector<Tensor> head;
  for (const Tensor& t : c.inputs)
    head.push_back((t.dim() >= 2 && t.size(0) == rows ? t.narrow(0, 0, std::min<int64_t>(4, rows)) : t).to(Device::cpu()));
  Tensor want = c.op(head);
  Tensor got = c.op(c.inputs);
  got = got.narrow(0, 0, std::min<int64_t>(4, got.size(0))).to(Device::cpu());
  r.valid = worst_ratio(want, got, c.rtol, c.atol) <= 1;
  r.ms = time_ms([&] { Tensor t = c.op(c.inputs); });
  r.gbps = c.bytes / (r.ms * 1e-3) / 1e9;
  r.ratio = r.gbps / memcpy_gbps;
  std::printf("BENCH bw %s %.3f ms %.0f GB/s %.2f of memcpy%s\n", c.name.c_str(), r.ms, r.gbps, r.ratio,
              r.valid ? "" : " INVALID");
  std::fflush(stdout);
  return r;
}

double bench_memcpy(size_t bytes, Row& row) {
  void *src = nullptr, *dst = nullptr;
  BENCH_CUDA(cudaMalloc(&src, bytes));
  BENCH_CUDA(cudaMalloc(&dst, bytes));
  BENCH_CUDA(cudaMemset(src, 1, bytes));
  cudaStream_t s = static_cast<cudaStream_t>(cuda::stream_handle(0));
  const double ms = time_ms([&] { BENCH_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s)); });
  cudaFree(src);
  cudaFree(dst);
  row = Row{"memcpy d2d", cat(bytes >> 20, " MiB")};
  row.ms = ms;
  row.gbps = 2.0 * static_cast<double>(bytes) / (ms * 1e-3) / 1e9;  // read + write
  row.ratio = 1;
  std::printf("BENCH memcpy %.3f ms %.0f GB/s\n", ms, row.gbps);
  std::fflush(stdout);
  return row.gbps;
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  if (cuda_device_count() == 0) {
    std::printf("no CUDA GPU visible: CUDA benchmarks skipped\n");
    return 0;
  }
  if (quick) g_warmup = 1, g_repeats = 5;
  const std::string device = cuda_device_name(0);
  std::printf("bench_cuda on %s\n", device.c_str());
  std::vector<Row> rows;
  try {
    // A Llama-3-8B block at batch 8 × seqlen 2048 (16384 tokens): q/o projections, gate/up, down.
    const int64_t t = quick ? 4096 : 16384;
    rows.push_back(bench_gemm("q/o proj", t, 4096, 4096));
    rows.push_back(bench_gemm("gate/up proj", t, 14336, 4096));
    rows.push_back(bench_gemm("down proj", t, 4096, 14336));
    rows.push_back(bench_gemm("square 8192", 8192, 8192, 8192));

    const size_t copy_bytes = size_t{256} << 20;
    Row mc;
    const double memcpy_gbps = bench_memcpy(copy_bytes, mc);
    rows.push_back(mc);

    const Device dev = Device::cuda(0);
    const int64_t tok = 16384, hid = 4096;  // [16384, 4096] bf16 = 128 MiB
    const double act = static_cast<double>(tok * hid) * 2;  // bytes of one bf16 activation
    Tensor xa = rand_uniform({tok, hid}, 3, -4, 4, DType::bf16, dev);
    Tensor xb = rand_uniform({tok, hid}, 4, -4, 4, DType::bf16, dev);
    Tensor xf = rand_uniform({tok, hid}, 5, -4, 4, DType::f32, dev);
    Tensor wn = rand_uniform({hid}, 6, 0.5, 1.5, DType::bf16, dev);
    Tensor att = rand_uniform({32 * 2048, 2048}, 7, -8, 8, DType::bf16, dev);  // 256 MiB of scores
    const double att_bytes = static_cast<double>(att.numel()) * 2;
    const std::string sh = "[16384,4096]";
    const std::vector<BwCase> cases = {
        {"add bf16", sh, {xa, xb}, [](const std::vector<Tensor>& x) { return add(x[0], x[1]); }, 3 * act, 0x1p-7},
        {"silu bf16", sh, {xa}, [](const std::vector<Tensor>& x) { return silu(x[0]); }, 2 * act, 0x1p-6},
        {"mul bf16 by row [4096]", sh, {xa, wn.unsqueeze(0)},
         [](const std::vector<Tensor>& x) { return mul(x[0], x[1]); }, 2 * act, 0x1p-7},
        {"cast f32->bf16", sh, {xf}, [](const std::vector<Tensor>& x) { return cast(x[0], DType::bf16); }, 3 * act, 0x1p-8},
        {"sum bf16 last axis", sh, {xa}, [](const std::vector<Tensor>& x) { return sum(x[0], -1); }, act, 0x1p-7},
        {"rms_norm bf16", sh, {xa, wn}, [](const std::vector<Tensor>& x) { return rms_norm(x[0], x[1], 1e-6); }, 2 * act,
         0x1p-6},
        {"softmax bf16", "[65536,2048]", {att}, [](const std::vector<Tensor>& x) { return softmax(x[0], -1); },
         2 * att_bytes, 0x1p-6},
        {"log_softmax bf16", "[65536,2048]", {att}, [](const std::vector<Tensor>& x) { return log_softmax(x[0], -1); },
         2 * att_bytes, 0x1p-6},
        // Fused ops (engine/fused.h): bytes are the compulsory traffic (each input read once, each
        // output written once). The backward entries validate their well-conditioned output (d up;
        // dx with an atol for values that cancel: |dx| terms are ≤ ~6 here, f32 sums differ by ulps).
        {"swiglu bf16 (fused)", sh, {xa, xb}, [](const std::vector<Tensor>& x) { return swiglu(x[0], x[1]); }, 3 * act,
         0x1p-6},
        {"swiglu_backward bf16", sh, {xa, xb, xa},
         [](const std::vector<Tensor>& x) { return swiglu_backward(x[0], x[1], x[2]).second; }, 5 * act, 0x1p-6, 1e-3},
        {"rms_norm_backward bf16 dx", sh, {xa, wn, xb},
         [](const std::vector<Tensor>& x) { return rms_norm_backward(x[0], x[1], x[2], 1e-6, true, false).first; }, 3 * act,
         0x1p-6, 1e-3},
    };
    for (const BwCase& c : cases) rows.push_back(bench_bw(c, memcpy_gbps));
  } catch (const std::exception& e) {
    std::printf("bench_cuda: FAILED: %s\n", e.what());
    rows.push_back(Row{"error", e.what()});
    rows.back().valid = false;
  }

  const cuda::AllocatorStats st = cuda::allocator_stats();
  std::printf("\n== bench_cuda summary: %s (median of %d after %d warm-up) ==\n", device.c_str(), g_repeats, g_warmup);
  std::printf("%-24s %-30s %9s %9s %9s %7s %s\n", "kernel", "shape", "ms", "TFLOP/s", "GB/s", "/memcpy", "check");
  bool all_valid = true;
  for (const Row& r : rows) {
    all_valid = all_valid && r.valid;
    std::printf("%-24s %-30s %9.3f %9s %9s %7s %s\n", r.name.c_str(), r.shape.c_str(), r.ms,
                r.tflops > 0 ? cat(static_cast<int>(r.tflops + 0.5)).c_str() : "-",
                r.gbps > 0 ? cat(static_cast<int>(r.gbps + 0.5)).c_str() : "-",
                r.ratio > 0 ? cat(static_cast<int>(r.ratio * 100 + 0.5), "%").c_str() : "-", r.valid ? "ok" : "INVALID");
  }
  std::printf("peak GPU memory (caching allocator): %.2f GiB\n", static_cast<double>(st.peak_bytes) / (1 << 30));
  return all_valid ? 0 : 1;
}
