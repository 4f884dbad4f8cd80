// `--device` and `--low_gpu_mem_usage` on the command line: a CUDA device that this build or this
// machine lacks is one clear error line before any work; --low_gpu_mem_usage is accepted on the
// CPU with one line saying it has no effect; the header names the device and compute dtype.
#include <doctest/doctest.h>

#include <algorithm>

#include "engine/backend.h"
#include "tests/apps/cli_test_util.h"

using namespace arq::cli_test;

namespace {

int64_t count_lines(const std::string& s) { return std::count(s.begin(), s.end(), '\n'); }

}  // namespace

TEST_CASE("quantize / eval --device cuda without a usable GPU: one error line naming the device, exit 1") {
  if (arq::cuda_device_count() > 0) {
    MESSAGE("a CUDA device is visible: the no-GPU error path is not reachable here");
    return;
  }
  TempDir dir("device");
  const RunResult made = run_arq({"make-model", "--output_dir", dir / "m", "--num_hidden_layers", "1"});
  REQUIRE_MESSAGE(made.status == 0, made.err);
  spit(dir.path / "t.txt", "hello");
  const std::string expect = arq::cuda_compiled() ? "no such CUDA device" : "built without CUDA";
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"quantize", "--model", dir / "m", "--iters", "0", "--output_dir", dir / "out", "--device", "cuda"},
        std::vector<std::string>{"quantize", "--model", dir / "m", "--iters", "0", "--output_dir", dir / "out", "--device", "cuda:1",
                                 "--low_gpu_mem_usage"},
        std::vector<std::string>{"eval", "--model", dir / "m", "--text", dir / "t.txt", "--device", "cuda"}}) {
    const RunResult r = run_arq(args);
    INFO(args[0], " ", args.back(), ": ", r.err);
    CHECK(r.status == 1);
    CHECK(count_lines(r.err) == 1);
    CHECK(r.err.find("--device cuda:") != std::string::npos);
    CHECK(r.err.find(expect) != std::string::npos);
    CHECK(r.out.find("quantize ") == std::string::npos);   // failed before the header: no work done
  }
  CHECK(!std::filesystem::exists(dir / "out"));
  const RunResult bad = run_arq({"quantize", "--model", dir / "m", "--iters", "0", "--device", "cuda:x"});
  CHECK(bad.status == 2);   // a malformed device is a usage error
  CHECK(bad.err.find("cuda:x") != std::string::npos);
}

TEST_CASE("quantize --low_gpu_mem_usage on the CPU: accepted, one line says it has no effect") {
  const std::string model = shared_path("models/stories260k");
  if (model.empty()) {
    MESSAGE("skipped: ../shared/models/stories260k not found (set ARQ_SHARED_DIR)");
    return;
  }
  TempDir dir("lowmem");
  const RunResult r = run_arq({"quantize", "--model", model, "--iters", "0", "--disable_opt_rtn", "--format", "fake",
                               "--output_dir", dir / "out", "--low_gpu_mem_usage"});
  REQUIRE_MESSAGE(r.status == 0, r.err);
  CHECK(line_with(r.out, "--low_gpu_mem_usage: no effect with --device cpu") != "");
  const std::string header = line_with(r.out, "quantize ");
  CHECK(header.find("device cpu, compute f32") != std::string::npos);   // stories260k is stored in f32
  CHECK(header.find("compute f32, caches f32") != std::string::npos);  // --cache_dtype auto: f32 on the CPU
  CHECK(header.find("autocast") == std::string::npos);                   // CPU: no autocast
  CHECK(line_with(r.out, "peak GPU memory") == "");
  CHECK(line_with(r.out, "peak RSS").find("activation caches") != std::string::npos);
}
