// main of the CUDA suite: without a visible GPU the whole suite is skipped with one message and
// exit code 77, which meson reports as SKIP.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "engine/backend.h"
#include "tests/cuda/cuda_test_util.h"

int main(int argc, char** argv) {
  if (arq::cudatest::on_cpu_selfcheck()) {
    std::printf("ARQ_CUDA_TEST_ON_CPU=1: running the op table with the CPU as the device under test\n");
    doctest::Context ctx;
    ctx.applyCommandLine(argc, argv);
    ctx.addFilter("test-case", "cuda op*");
    return ctx.run();
  }
  if (arq::cuda_device_count() == 0) {
    std::printf("no CUDA GPU visible: cuda suite skipped (%s)\n",
                arq::cuda_compiled() ? "CUDA compiled in, no device" : "built without CUDA");
    return 77;
  }
  std::printf("cuda suite on cuda:0 = %s\n", arq::cuda_device_name(0).c_str());
  doctest::Context ctx;
  ctx.applyCommandLine(argc, argv);
  return ctx.run();
}
