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
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "autograd/attention.h"
#include "engine/attention_rows.h"
#include "autograd/autograd.h"
#include "engine/fused.h"
#include "engine/ops.h"
#include "engine/qdq_fused.h"
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

// ---- host <-> device copies ---------------------------------------------------------------------
// A 256 MiB block-weight-sized copy each way, three ways in the same run: a plain cudaMemcpy from
// pageable memory (what the backend did before, the driver staging it), the backend's copy
// (copy_ / Tensor::to, which stages large pageable copies through two pinned 32 MiB buffers,
// kernels/cuda/cuda_staging.h), and a plain cudaMemcpy from pinned memory (the DMA ceiling).
// Every copy is synchronous, so wall-clock time (median of repeats) is the measure. The backend's
// copies are validated bit-exact both ways first. GB/s counts the bytes moved once.
std::vector<Row> bench_host_copies(size_t bytes) {
  using clock = std::chrono::steady_clock;
  const Device dev = Device::cuda(0);
  cudaStream_t s = static_cast<cudaStream_t>(cuda::stream_handle(0));
  const int64_t n = static_cast<int64_t>(bytes);
  Tensor pageable = Tensor::empty({n}, DType::u8, Device::cpu());  // ordinary (malloc'd) host memory
  Tensor back = Tensor::empty({n}, DType::u8, Device::cpu());
  Tensor d = Tensor::empty({n}, DType::u8, dev);
  uint8_t* hp = static_cast<uint8_t*>(pageable.data_ptr());
  for (size_t i = 0; i < bytes; ++i) hp[i] = static_cast<uint8_t>((i * 0x9E3779B97F4A7C15ull) >> 56);  // pages touched
  std::memset(back.data_ptr(), 0, bytes);
  void* pinned = cuda_pinned_alloc(bytes);
  auto wall_ms = [&](const std::function<void()>& fn) {
    for (int i = 0; i < g_warmup; ++i) fn();
    std::vector<double> ms;
    for (int i = 0; i < g_repeats; ++i) {
      const auto t0 = clock::now();
      fn();
      ms.push_back(std::chrono::duration<double, std::milli>(clock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
  };
  auto plain = [&](void* dst, const void* src, cudaMemcpyKind kind) {
    BENCH_CUDA(cudaMemcpyAsync(dst, src, bytes, kind, s));
    BENCH_CUDA(cudaStreamSynchronize(s));
  };
  copy_(d, pageable);
  copy_(back, d);
  const bool valid = std::memcmp(back.data_ptr(), hp, bytes) == 0;
  std::vector<Row> rows;
  auto add = [&](const char* name, double ms) {
    Row r{name, cat(bytes >> 20, " MiB")};
    r.ms = ms;
    r.gbps = static_cast<double>(bytes) / (ms * 1e-3) / 1e9;
    r.valid = valid;
    std::printf("BENCH copy %s %.3f ms %.1f GB/s%s\n", name, ms, r.gbps, valid ? "" : " INVALID");
    std::fflush(stdout);
    rows.push_back(r);
  };
  add("h2d pageable cudaMemcpy", wall_ms([&] { plain(d.data_ptr(), hp, cudaMemcpyHostToDevice); }));
  add("h2d staged (backend)", wall_ms([&] { copy_(d, pageable); }));
  if (pinned) add("h2d pinned cudaMemcpy", wall_ms([&] { plain(d.data_ptr(), pinned, cudaMemcpyHostToDevice); }));
  add("d2h pageable cudaMemcpy", wall_ms([&] { plain(back.data_ptr(), d.data_ptr(), cudaMemcpyDeviceToHost); }));
  add("d2h staged (backend)", wall_ms([&] { copy_(back, d); }));
  if (pinned) add("d2h pinned cudaMemcpy", wall_ms([&] { plain(pinned, d.data_ptr(), cudaMemcpyDeviceToHost); }));
  if (!pinned) std::printf("BENCH copy: pinned host memory unavailable, pinned rows skipped\n");
  cuda_pinned_free(pinned);
  cuda_pinned_release();
  return rows;
}

// ---- the fused SignRound qdq (engine/qdq_fused.h) ----------------------------------------------
// Llama-3-8B gate_proj [14336, 4096], W4G128 int_sym, bf16 weight, fp16 scales, V and α/β as
// tune_block passes them. Compulsory bytes per weight: forward reads wg and V (f32) and writes ŵ
// (bf16): 10 B; backward reads wg, V and dŵ (bf16) and writes dV (f32): 14 B (the per-group
// α, β, wmin, wmax, dα, dβ add 1/128 of that). Validated on output row 0 (32 groups) against the
// CPU kernel: ŵ and dV exact, dα within the fp16 rounding of the scale's gradient (rtol 2·2⁻¹⁰)
// plus the f32 rounding of its f64 row sums added in another order (tests/cuda/test_cuda_qdq_fused
// .cpp: ≤ 4·2⁻²⁴·G·|g|max·(8·2^bits + 8)·2·|w|max/Q = 5.2e-8 here).
std::vector<Row> bench_qdq(double memcpy_gbps) {
  const Device dev = Device::cuda(0);
  const int64_t out = 14336, in = 4096, G = 128, ng = in / G, R = out * ng;
  const QdqSpec spec{.kind = QdqKind::int_sym, .bits = 4, .scale_dtype = DType::f16, .scale_thresh = 1e-5,
                     .out = out, .in = in, .group_len = G, .groups_per_row = ng};
  const Tensor wg = rand_uniform({R, G}, 11, -0.05, 0.05, DType::f32, dev);
  const QdqInputs x{.wg = wg,
                    .wmin = clamp(min(wg, 1, true), -INFINITY, 0.0),
                    .wmax = clamp(max(wg, 1, true), 0.0, INFINITY),
                    .v = rand_uniform({R, G}, 12, -0.5, 0.5, DType::f32, dev),
                    .alpha = rand_uniform({R, 1}, 13, 0.5, 1.0, DType::f32, dev),
                    .beta = rand_uniform({R, 1}, 14, 0.5, 1.0, DType::f32, dev)};
  const Tensor g = rand_uniform({out, in}, 15, -1e-3, 1e-3, DType::bf16, dev);
  // row 0 on the CPU: a [1, 4096] weight made of the first 32 group rows
  QdqSpec one = spec;
  one.out = 1;
  auto head = [&](const Tensor& t) { return t.defined() ? t.narrow(0, 0, ng).to(Device::cpu()) : t; };
  const QdqInputs xh{head(x.wg), head(x.wmin), head(x.wmax), head(x.v), head(x.alpha), head(x.beta)};
  const Tensor gh = g.narrow(0, 0, 1).to(Device::cpu());
  std::vector<Row> rows;
  const double n = static_cast<double>(out * in);
  const std::string shape = "[14336,4096] W4G128";
  {
    Row r{"qdq fwd bf16 (fused)", shape};
    const Tensor want = qdq_fused(xh, one, DType::bf16);
    const Tensor got = qdq_fused(x, spec, DType::bf16).narrow(0, 0, 1).to(Device::cpu());
    r.valid = worst_ratio(want, got, 0, 1e-30) == 0;
    r.ms = time_ms([&] { Tensor t = qdq_fused(x, spec, DType::bf16); });
    r.gbps = 10 * n / (r.ms * 1e-3) / 1e9;
    r.ratio = r.gbps / memcpy_gbps;
    rows.push_back(r);
  }
  {
    Row r{"qdq bwd dV,da,db (fused)", shape};
    const QdqGrads want = qdq_fused_backward(xh, one, gh, true, true, true);
    const QdqGrads got = qdq_fused_backward(x, spec, g, true, true, true);
    r.valid = worst_ratio(want.dv, got.dv.narrow(0, 0, ng).to(Device::cpu()), 0, 1e-30) == 0 &&
              worst_ratio(want.dalpha, got.dalpha.narrow(0, 0, ng).to(Device::cpu()), 0x1p-9, 6e-8) <= 1;
    r.ms = time_ms([&] { QdqGrads t = qdq_fused_backward(x, spec, g, true, true, true); });
    r.gbps = 14 * n / (r.ms * 1e-3) / 1e9;
    r.ratio = r.gbps / memcpy_gbps;
    rows.push_back(r);
  }
  for (const Row& r : rows)
    std::printf("BENCH bw %s %.3f ms %.0f GB/s %.2f of memcpy%s\n", r.name.c_str(), r.ms, r.gbps, r.ratio,
                r.valid ? "" : " INVALID");
  std::fflush(stdout);
  return rows;
}

// ---- attention forward + backward (autograd/attention.h) -----------------------------------------
// Llama-3-8B attention at batch 8 × seqlen 2048 (32 heads, 8 kv heads, head_dim 128), bf16, with
// the causal f32 mask the models pass: attention_core (chunked, recomputing, masked tiles skipped)
// against attention_composed (the [8, 8, 8192, 2048] scores materialized, as before). Each row is
// one forward + backward; `shape` also carries the caching allocator's peak above the inputs.
// TFLOP/s counts the useful causal FLOPs (half of 2 GEMMs forward + 4 backward) for both rows.
// Validated first at batch 1 × 256: the device result (output, dq, dk, dv) against the CPU's
// attention_core, normwise within 2^-4 (tests/cuda/test_cuda_attention.cpp's bf16 bound).
std::vector<Row> bench_attention(bool quick) {
  const Device dev = Device::cuda(0);
  const int64_t nh = 32, nkv = 8, hd = 128;
  auto causal = [](int64_t s) {
    std::vector<double> m(static_cast<size_t>(s * s));
    for (int64_t i = 0; i < s; ++i)
      for (int64_t j = i + 1; j < s; ++j) m[static_cast<size_t>(i * s + j)] = double(ag::kAttentionMaskedScore);
    return from_vector(m, {1, 1, s, s});
  };
  // forward + backward of sum(out ⊙ w); returns the four results on the CPU when asked
  // core: ag::attention_core (flash kernels when o has no mask and they run, else the chunks)
  auto step = [&](bool core, const Tensor& q0, const Tensor& k0, const Tensor& v0, const Tensor& w0,
                  const ag::AttentionOptions& o, std::vector<Tensor>* keep) {
    ag::Var q(q0, true), k(k0, true), v(v0, true);
    ag::Var out = core ? ag::attention_core(q, k, v, o) : ag::attention_composed(q, k, v, o);
    ag::backward(ag::sum_all(out * ag::Var(w0)));
    if (keep) *keep = {out.value().to(Device::cpu()), q.grad().to(Device::cpu()), k.grad().to(Device::cpu()),
                       v.grad().to(Device::cpu())};
  };
  auto inputs = [&](int64_t b, int64_t s, Device d) {
    return std::vector<Tensor>{rand_uniform({b, nh, s, hd}, 21, -2, 2, DType::bf16, d),
                               rand_uniform({b, nkv, s, hd}, 22, -1, 1, DType::bf16, d),
                               rand_uniform({b, nkv, s, hd}, 23, -2, 2, DType::bf16, d),
                               rand_uniform({b, nh, s, hd}, 24, -1, 1, DType::bf16, d)};
  };
  bool valid = true, valid_flash = true;
  {
    const int64_t s = 256;
    const std::vector<Tensor> h = inputs(1, s, Device::cpu());
    ag::AttentionOptions oc{.scaling = 1 / std::sqrt(double(hd)), .mask = causal(s), .chunk_rows = 48};
    ag::AttentionOptions og = oc;
    og.mask = oc.mask.to(dev);
    const ag::AttentionOptions of{.scaling = oc.scaling, .causal = true};
    std::vector<Tensor> want, got, got_flash;
    step(true, h[0], h[1], h[2], h[3], oc, &want);
    step(true, h[0].to(dev), h[1].to(dev), h[2].to(dev), h[3].to(dev), og, &got);
    step(true, h[0].to(dev), h[1].to(dev), h[2].to(dev), h[3].to(dev), of, &got_flash);
    auto close = [&](const std::vector<Tensor>& g) {
      bool ok = true;
      for (size_t i = 0; i < want.size(); ++i) {
        double err = 0, scale = 1;
        const std::vector<double> a = to_vector(g[i]), b = to_vector(want[i]);
        for (size_t j = 0; j < a.size(); ++j) {
          err = std::max(err, std::fabs(a[j] - b[j]));
          scale = std::max(scale, std::fabs(b[j]));
        }
        ok = ok && std::isfinite(err) && err <= 0x1p-4 * scale;
      }
      return ok;
    };
    valid = close(got);
    valid_flash = close(got_flash);
  }
  const int64_t b = quick ? 2 : 8, s = 2048;
  const std::vector<Tensor> x = inputs(b, s, dev);
  const ag::AttentionOptions o{.scaling = 1 / std::sqrt(double(hd)), .mask = causal(s).to(dev)};
  const ag::AttentionOptions o_flash{.scaling = o.scaling, .causal = true};   // no mask: the flash kernels
  const double flops = 6.0 * double(b * nh) * double(s) * double(s) * double(hd);   // = 3·(4·b·nh·s²·hd)/2
  std::vector<Row> rows;
  for (int variant = 0; variant < 3; ++variant) {   // flash, chunked core (causal mask), composed
    const bool core = variant < 2;
    const ag::AttentionOptions& ov = variant == 0 ? o_flash : o;
    const char* name = variant == 0 ? "flash" : variant == 1 ? "core" : "composed";
    Allocator& alloc = allocator_for(dev);
    cuda_backend().synchronize();
    const size_t base = alloc.bytes_in_use();
    alloc.reset_peak();
    step(core, x[0], x[1], x[2], x[3], ov, nullptr);
    cuda_backend().synchronize();
    const double peak_gib = static_cast<double>(alloc.peak_bytes() - base) / (1 << 30);
    Row r{cat("attn fwd+bwd ", name),
          cat("b", b, " s", s, " 32/8h peak ", static_cast<int>(peak_gib * 100 + 0.5) / 100.0, " GiB")};
    r.valid = variant == 0 ? valid_flash : valid;
    r.ms = time_ms([&] { step(core, x[0], x[1], x[2], x[3], ov, nullptr); });
    r.tflops = flops / (r.ms * 1e-3) / 1e12;
    std::printf("BENCH attention %s %.3f ms %.1f TFLOP/s peak %.2f GiB%s\n", name, r.ms, r.tflops, peak_gib,
                r.valid ? "" : " INVALID");
    std::fflush(stdout);
    rows.push_back(r);
    cuda::empty_cache();
  }
  return rows;
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
    for (const Row& r : bench_host_copies(copy_bytes)) rows.push_back(r);

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
    {
      // attention_core's fused row kernels (engine/attention_rows.h) on one 8B chunk tile: the same
      // 256 MiB of bf16 scores as [b 8, kv heads 2, rows 1024, group 4, keys 2048] with the causal
      // f32 mask slice [1, 1024, 2048] the models pass (queries 1024..2047). Bytes: scores (and dP)
      // read once, P (and dS) written once, the mask and D counted once.
      const Tensor tile = att.view({8, 2, 1024, 4, 2048});
      std::vector<double> mv(size_t{1024} * 2048);
      for (int64_t i = 0; i < 1024; ++i)
        for (int64_t j = 1024 + i + 1; j < 2048; ++j) mv[size_t(i * 2048 + j)] = double(ag::kAttentionMaskedScore);
      const Tensor mask = from_vector(mv, {1, 1024, 2048}).to(dev);
      const Tensor dp = rand_uniform({8, 2, 1024, 4, 2048}, 8, -1, 1, DType::bf16, dev);
      const Tensor d_row = rand_uniform({8, 2, 1024, 4}, 9, -0.5, 0.5, DType::f32, dev);
      const double mask_bytes = 1024.0 * 2048 * 4, d_bytes = 8.0 * 2 * 1024 * 4 * 4;
      const std::vector<BwCase> rows_cases = {
          {"attention_probs bf16 (fused rows)", "[8,2,1024,4,2048]", {tile, mask},
           [](const std::vector<Tensor>& x) { return attention_probs(x[0], x[1], Tensor(), {}); },
           2 * att_bytes + mask_bytes, 0x1p-6},
          {"attention_probs_backward bf16 dS", "[8,2,1024,4,2048]", {tile, dp, d_row, mask},
           [](const std::vector<Tensor>& x) { return attention_probs_backward(x[0], x[3], Tensor(), x[1], x[2], {}).second; },
           4 * att_bytes + mask_bytes + d_bytes, 0x1p-6, 1e-3},
      };
      for (const BwCase& c : rows_cases) rows.push_back(bench_bw(c, memcpy_gbps));
    }
    for (const Row& r : bench_qdq(memcpy_gbps)) rows.push_back(r);
    for (const Row& r : bench_attention(quick)) rows.push_back(r);
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
