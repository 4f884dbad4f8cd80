// bench_engine: Google Benchmark harness for the engine's CPU kernels.
//
// Defaults (each can be overridden on the command line, later flags win):
//   --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
//   --benchmark_enable_random_interleaving=true
// Random interleaving shuffles the repetitions of all benchmarks, so a burst of load from other
// processes spreads over ours and the baseline alike instead of landing on one of them.
// After the run a summary prints, for each (ours, baseline) pair, the ratio of the medians
// and the spread (coefficient of variation of the time) of both; then the target pairs are
// timed once more alternately, call by call (ARQ_BENCH_PAIRED_S seconds each, default 3,
// 0 to skip), which cancels most of the load drift of a shared machine.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "arq_config.h"
#include "bench/engine/bench_util.h"

#if ARQ_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#endif

namespace arq::bench {

std::vector<RatioPair>& ratio_pairs() {
  static std::vector<RatioPair> v;
  return v;
}

Tensor cached(const std::string& key, const std::function<Tensor()>& make) {
  static std::map<std::string, Tensor> cache;
  auto it = cache.find(key);
  if (it == cache.end()) it = cache.emplace(key, make()).first;
  return it->second;
}

const std::string& validate_once(const std::string& name, const std::function<std::string()>& check) {
  static std::map<std::string, std::string> done;
  auto it = done.find(name);
  if (it == done.end()) it = done.emplace(name, check()).first;
  return it->second;
}

namespace {

struct Stats {
  std::map<std::string, double> median_counters;
  double median_time = 0;  // in the benchmark's time unit
  double cv_time = -1;     // fraction; -1 when there were no repetitions
  std::string error;
};

// Prints like the console reporter and keeps the medians (and the spread) per benchmark.
class CollectingReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) {
      Stats& s = stats[r.run_name.function_name];  // the registered name, without "/real_time"
      if (r.error_occurred) s.error = r.error_message;
      const bool median = r.run_type == Run::RT_Aggregate && r.aggregate_name == "median";
      const bool single = r.run_type == Run::RT_Iteration && r.repetitions <= 1;
      if (median || single) {
        s.median_time = r.GetAdjustedRealTime();
        for (const auto& [k, c] : r.counters) s.median_counters[k] = c.value;
      }
      if (r.run_type == Run::RT_Aggregate && r.aggregate_name == "cv") s.cv_time = r.real_accumulated_time;
    }
    ConsoleReporter::ReportRuns(runs);
  }
  std::map<std::string, Stats> stats;
};

std::string cv_str(const Stats& s) {
  if (s.cv_time < 0) return "   -  ";
  char b[32];
  std::snprintf(b, sizeof b, "%5.1f%%", 100 * s.cv_time);
  return b;
}

double seconds_of(const std::function<void()>& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Alternating measurement of the pairs that carry functions and whose benchmarks ran cleanly:
// rounds of (ours, baseline) calls, the order flipped every round, for about `budget_s`
// seconds per pair (at least 7 rounds, at most 101).
void print_paired(const CollectingReporter& rep, double budget_s) {
  bool header = false;
  for (const RatioPair& p : ratio_pairs()) {
    if (!p.run_ours || !p.run_base) continue;
    auto a = rep.stats.find(p.ours), b = rep.stats.find(p.baseline);
    if (a == rep.stats.end() || b == rep.stats.end() || !a->second.error.empty() || !b->second.error.empty()) continue;
    if (!header) {
      std::printf("\nAlternating measurement (ours and baseline timed call by call, order flipped each round)\n");
      std::printf("%-44s %-34s %6s %10s %10s %13s  %s\n", "ours", "baseline", "rounds", "ours ms", "base ms",
                  "median ratio", "target");
      header = true;
    }
    p.run_ours();  // warm-up (caches, allocator, oneDNN kernels)
    p.run_base();
    const double per_round = seconds_of(p.run_ours) + seconds_of(p.run_base);
    const int rounds = static_cast<int>(std::clamp(budget_s / std::max(per_round, 1e-9), 7.0, 101.0));
    std::vector<double> to, tb, ratio;  // ratio of rates, ours / baseline
    for (int r = 0; r < rounds; ++r) {
      double x, y;
      if (r % 2 == 0) {
        x = seconds_of(p.run_ours);
        y = seconds_of(p.run_base);
      } else {
        y = seconds_of(p.run_base);
        x = seconds_of(p.run_ours);
      }
      to.push_back(x);
      tb.push_back(y);
      ratio.push_back(p.base_scale * y / x);  // (ours units / x) / (base units / y)
    }
    const double med = median(ratio);
    std::string target = "-";
    if (p.target > 0) {
      char t[48];
      std::snprintf(t, sizeof t, ">= %.0f%%: %s", 100 * p.target, med >= p.target ? "met" : "MISSED");
      target = t;
    }
    std::printf("%-44s %-34s %6d %10.3f %10.3f %12.1f%%  %s\n", p.ours.c_str(), p.baseline.c_str(), rounds,
                1e3 * median(to), 1e3 * median(tb), 100 * med, target.c_str());
  }
}

void print_summary(const CollectingReporter& rep) {
  std::printf("\nRatios of medians (ours / baseline, same run); cv = spread of the time over repetitions\n");
  std::printf("%-44s %-34s %9s %9s %7s %7s %7s  %s\n", "ours", "baseline", "ours", "base", "ratio", "cv ours",
              "cv base", "target");
  for (const RatioPair& p : ratio_pairs()) {
    auto a = rep.stats.find(p.ours), b = rep.stats.find(p.baseline);
    if (a == rep.stats.end() || b == rep.stats.end()) continue;  // filtered out
    if (!a->second.error.empty() || !b->second.error.empty()) {
      std::printf("%-44s %-34s  error: %s\n", p.ours.c_str(), p.baseline.c_str(),
                  (a->second.error + b->second.error).c_str());
      continue;
    }
    auto ca = a->second.median_counters.find(p.counter), cb = b->second.median_counters.find(p.counter);
    if (ca == a->second.median_counters.end() || cb == b->second.median_counters.end()) continue;
    const double ratio = ca->second / cb->second;
    std::string target = "-";
    if (p.target > 0) {
      char t[48];
      std::snprintf(t, sizeof t, ">= %.0f%%: %s", 100 * p.target, ratio >= p.target ? "met" : "MISSED");
      target = t;
    }
    std::printf("%-44s %-34s %9.2f %9.2f %6.1f%% %7s %7s  %s  [%s]\n", p.ours.c_str(), p.baseline.c_str(), ca->second,
                cb->second, 100 * ratio, cv_str(a->second).c_str(), cv_str(b->second).c_str(), target.c_str(),
                p.counter.c_str());
  }
}

}  // namespace
}  // namespace arq::bench

int main(int argc, char** argv) {
  using namespace arq::bench;
  std::vector<char*> args{argv[0]};
  std::string d1 = "--benchmark_repetitions=5", d2 = "--benchmark_report_aggregates_only=true",
              d3 = "--benchmark_enable_random_interleaving=true";
  args.push_back(d1.data());
  args.push_back(d2.data());
  args.push_back(d3.data());
  for (int i = 1; i < argc; ++i) args.push_back(argv[i]);
  int n = static_cast<int>(args.size());
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 1;

  benchmark::AddCustomContext("arq_threads", std::to_string(arq::num_threads()));
#if ARQ_HAVE_ONEDNN
  const dnnl_version_t* v = dnnl_version();
  benchmark::AddCustomContext("onednn", std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
                                            std::to_string(v->patch) + " isa=" +
                                            std::to_string(static_cast<int>(dnnl_get_effective_cpu_isa())));
#endif
  register_matmul_benchmarks();
  register_elementwise_benchmarks();

  CollectingReporter rep;
  benchmark::RunSpecifiedBenchmarks(&rep);
  print_summary(rep);
  // ARQ_BENCH_PAIRED_S: seconds per pair for the alternating measurement (default 3, 0 = off).
  const char* ps = std::getenv("ARQ_BENCH_PAIRED_S");
  const double paired_s = ps ? std::atof(ps) : 3.0;
  if (paired_s > 0) print_paired(rep, paired_s);
  std::fflush(stdout);
  benchmark::Shutdown();
  return 0;
}
