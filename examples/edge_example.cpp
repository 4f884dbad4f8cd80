// How an edge deployment build links libarquant: only the installed headers and the static
// library (see tests/install_static.sh, which builds this against `meson install` output
// through pkg-config). Computes a tiny RMSNorm + linear + SiLU and checks it.
#include <cmath>
#include <cstdio>

#include <engine/ops.h>

int main() {
  using namespace arq;
  Tensor x = from_vector({1, 2, 3, 4, -1, 0.5, 2, -3}, {2, 4});
  Tensor w = from_vector({1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1}, {3, 4});
  Tensor y = silu(matmul(rms_norm(x, ones({4}), 1e-6), w.t()));  // [2, 3]
  // Row 0: rms = sqrt(30/4); normalized [1,2,3,4]/rms; y0 = silu(x/rms) etc.
  const double rms = std::sqrt(30.0 / 4.0);
  const double v = 1.0 / rms, expect = v / (1.0 + std::exp(-v));
  const double got = y.at({0, 0});
  std::printf("edge example: y[0,0] = %.6f (expected %.6f)\n", got, expect);
  return std::fabs(got - expect) < 1e-5 ? 0 : 1;
}
