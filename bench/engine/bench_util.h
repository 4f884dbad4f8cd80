// Shared pieces of the engine benchmarks: input caching, the "validate once" guard, and the
// list of (ours, baseline) pairs whose median ratio the custom main prints at the end.
//
// Every benchmark checks its result against an independent reference once, on the same shape,
// before its first timing loop; a mismatch ends it with state.SkipWithError and no timing.
#pragma once

#include <benchmark/benchmark.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "engine/ops.h"

namespace arq::bench {

// A benchmark of ours compared with a baseline measured in the same run, on one counter
// (e.g. "GFLOP/s" or "GB/s"): ratio = median(ours) / median(baseline).
//
// A pair that also carries `run_ours` / `run_base` (one call each, already validated by the
// benchmarks of the same names) is measured a second way after the benchmarks: ours and the
// baseline timed alternately, call by call, for a few seconds, so load from other processes
// hits both alike; the summary prints the median of the per-round ratios.
struct RatioPair {
  std::string ours;      // benchmark name, e.g. "matmul/f32/2048^3"
  std::string baseline;  // e.g. "raw_sgemm/f32/2048^3"
  std::string counter;
  double target = 0;     // 0 when the issue sets no target for this pair
  std::function<void()> run_ours, run_base;
  // units of the counter per call of ours / per call of the baseline (1 when both do the same
  // work, e.g. the same matmul; bytes_op / bytes_memcpy for an op against memcpy).
  double base_scale = 1;
};
std::vector<RatioPair>& ratio_pairs();

// Tensors built once per process and shared by every repetition (random inputs of 64 MiB take
// longer to make than to time).
Tensor cached(const std::string& key, const std::function<Tensor()>& make);

// Runs `check` the first time `name` asks; returns the error message (empty when it passed),
// remembered for later calls so a failed benchmark fails every repetition without re-checking.
const std::string& validate_once(const std::string& name, const std::function<std::string()>& check);

// Counter reported as a rate: `per_iteration` units per iteration, divided by the elapsed time.
inline benchmark::Counter rate(double per_iteration) {
  return benchmark::Counter(per_iteration, benchmark::Counter::kIsIterationInvariantRate);
}

void register_matmul_benchmarks();
void register_elementwise_benchmarks();

}  // namespace arq::bench
