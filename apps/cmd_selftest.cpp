// ar-quant selftest: one matmul on every available device, checked against a plain loop.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "apps/commands.h"
#include "arq_config.h"
#include "engine/ops.h"

namespace arq::app {

namespace {

// A 64x96 · 96x80 product checked against a plain double loop on the same inputs.
double matmul_check(arq::Device dev, double* seconds) {
  using namespace arq;
  const int64_t m = 64, k = 96, n = 80;
  Tensor a = rand_normal({m, k}, 1), b = rand_normal({k, n}, 2);
  const auto t0 = std::chrono::steady_clock::now();
  Tensor c = matmul(a.to(dev), b.to(dev)).to(Device::cpu());
  *seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::vector<double> av = to_vector(a), bv = to_vector(b), cv = to_vector(c);
  double max_rel = 0;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double ref = 0, mag = 0;
      for (int64_t p = 0; p < k; ++p) {
        ref += av[i * k + p] * bv[p * n + j];
        mag += std::fabs(av[i * k + p] * bv[p * n + j]);
      }
      max_rel = std::max(max_rel, std::fabs(cv[i * n + j] - ref) / (mag + 1e-30));
    }
  return max_rel;
}

}  // namespace

int cmd_selftest(const Args&) {
  using namespace arq;
  std::printf("ar-quant %s selftest\n", ARQ_VERSION);
  std::printf("backends compiled in: cpu (%s)%s\n", ARQ_HAVE_ONEDNN ? "oneDNN" : "Eigen",
              cuda_compiled() ? ", cuda (cuBLAS)" : "");
  std::printf("cpu threads: %d\n", num_threads());
  // main() re-executes with "passive" unless the user chose a policy (apps/main.cpp).
  const char* omp_wait = std::getenv("OMP_WAIT_POLICY");
  std::printf("openmp wait policy: %s\n", omp_wait ? omp_wait : "(unset)");
  bool ok = true;
  // f32 accumulation error is bounded by about k·eps relative to Σ|a·b| (k = 96, eps = 2^-24);
  // TF32 is off, so the same bound holds on CUDA.
  const double tol = 96 * 6e-8 * 4;
  std::vector<Device> devices = {Device::cpu()};
  const int ncuda = cuda_device_count();
  for (int i = 0; i < ncuda; ++i) devices.push_back(Device::cuda(i));
  if (cuda_compiled() && ncuda == 0) std::printf("cuda: compiled in, but no GPU is visible — skipped\n");
  for (const Device& d : devices) {
    double secs = 0;
    try {
      const double err = matmul_check(d, &secs);
      const bool pass = err <= tol;
      ok = ok && pass;
      std::string name = d.is_cuda() ? " (" + cuda_device_name(d.index) + ")" : "";
      std::printf("matmul f32 [64,96]x[96,80] on %s%s: max rel error %.2e (tol %.1e) %s, %.3f ms\n", d.str().c_str(),
                  name.c_str(), err, tol, pass ? "ok" : "FAILED", secs * 1e3);
    } catch (const Error& e) {
      ok = false;
      std::printf("matmul on %s: FAILED: %s\n", d.str().c_str(), e.what());
    }
  }
  std::printf("selftest %s\n", ok ? "passed" : "FAILED");
  return ok ? 0 : 1;
}

}  // namespace arq::app
