// Export throughput (issue 7 "Benchmarks"): GB/s of input weights for RTN to each format on a
// random Llama with 1B shapes (hidden 2048, intermediate 5632, 16 heads, 8 kv heads, head_dim
// 128), 2 decoder blocks plus a 4096-token embedding and lm_head so it fits a 2-core VM's memory
// and time: 111.2 M parameters, 222.3 MB of bf16 input weights. The baseline, measured in the same
// run, is a plain read()/write() copy of the model's own safetensors file (the same bytes).
//
// What is timed:
//   - `export/<format>`: quant::export_model of the RTN results prepared once in setup (HF
//     formats: packing + safetensors + config; the source tensors come from the mmap'ed saved
//     model, as in `ar-quant quantize`). GGUF has no prepared results: its writer encodes the
//     FP weights with llama.cpp's RTN scale searches itself (export_gguf.h), so for GGUF the
//     export *is* RTN + export.
//   - `rtn`: quant::quantize_rtn of the 14 block linears (W4G128 sym), nothing written.
//   - `rtn+export/auto_round/W4G128sym`: both together.
//   - `copy/safetensors`: the baseline.
// Every output folder is removed outside the timed region. GB/s = input bytes (the safetensors
// data of the source model, 222.3 MB) / seconds, for every benchmark alike, so the figures compare.
//
// Validation before timing (once per benchmark): the exported folder read back through the
// project's loader (PackedCheckpoint) gives the quantizer's own dequantized weights exactly for
// q_proj and down_proj of block 1; a GGUF's blk.1.ffn_down bytes equal ggml_quantize of the
// source rows with the type the file declares; the copy equals the source byte for byte.
//
//   ninja -C build bench/export/bench_export && ./build/bench/export/bench_export
//   (defaults: 3 repetitions, aggregates only, interleaved; the end prints each median's
//   ratio to the copy's median.)
#include <benchmark/benchmark.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench/llama_specs.h"
#include "engine/ops.h"
#include "io/ggml_blocks.h"
#include "io/gguf.h"
#include "io/pack_load.h"
#include "io/weight_store.h"
#include "models/loader.h"
#include "models/random_model.h"
#include "quant/export.h"
#include "quant/qdq.h"

using namespace arq;
namespace fs = std::filesystem;

namespace {

using QuantMap = std::map<std::string, quant::QuantizedLinear>;

// The one place that knows how ExportSource holds the quantized layers (a map pointer today;
// a lazy interface may replace it — then only this line changes).
void attach_quantized(quant::ExportSource& src, const QuantMap& q) { src.quantized = &q; }

// 2 blocks, a 4096-token vocabulary, untied lm_head.
models::DecoderSpec spec_1b() { return bench::llama_1b_spec(2, 4096); }

// The saved random model, its mmap'ed tensors and the RTN results, made once per process.
struct Fixture {
  fs::path root;
  std::string model_dir, model_file;
  std::shared_ptr<const models::TensorSource> tensors;
  QuantMap q_sym, q_asym;   // W4G128 sym / asym, by module name
  double input_bytes = 0;   // safetensors data of every tensor

  Fixture() {
    std::random_device rd;
    root = fs::temp_directory_path() / ("arq-bench-export-" + std::to_string(getpid()) + "-" + std::to_string(rd()));
    fs::create_directories(root);
    model_dir = (root / "random-1b-2blk").string();
    {
      const models::CausalLM lm = models::random_causal_lm(spec_1b(), {.seed = 1, .dtype = DType::bf16});
      models::save_pretrained(lm, model_dir);
    }
    model_file = (fs::path(model_dir) / "model.safetensors").string();
    tensors = models::load_causal_lm(model_dir).source_ptr();
    for (const std::string& n : tensors->names()) {
      const Shape s = *tensors->shape(n);
      input_bytes += static_cast<double>(shape_numel(s)) * 2;   // bf16
    }
    q_sym = rtn(true);
    q_asym = rtn(false);
    std::fprintf(stderr, "bench_export: model %s: %zu tensors, %.1f MB of bf16 weights, %zu quantized linears\n",
                 model_dir.c_str(), tensors->names().size(), input_bytes * 1e-6, q_sym.size());
  }
  ~Fixture() {
    std::error_code ec;
    fs::remove_all(root, ec);
  }

  std::vector<std::string> block_linears() const {
    std::vector<std::string> out;
    for (const std::string& n : tensors->names())
      if (n.rfind("model.layers.", 0) == 0 && n.find("_proj.weight") != std::string::npos) out.push_back(n);
    return out;
  }
  QuantMap rtn(bool sym) const {
    QuantMap m;
    for (const std::string& n : block_linears()) {
      quant::QuantizedLinear q = quant::quantize_rtn(tensors->get(n), {.bits = 4, .group_size = 128, .sym = sym});
      q.name = n.substr(0, n.size() - 7);
      m[q.name] = std::move(q);
    }
    return m;
  }
  quant::ExportSource source(const QuantMap& q, bool sym) const {
    quant::ExportSource src;
    src.model_folder = model_dir;
    src.tensors = tensors;
    attach_quantized(src, q);
    src.scheme = {.bits = 4, .group_size = 128, .sym = sym};
    src.tuning.iters = 0;
    return src;
  }
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

std::string out_dir(const std::string& tag) { return (fixture().root / ("out-" + tag)).string(); }

void remove_out(const std::string& dir) {
  std::error_code ec;
  fs::remove_all(dir, ec);
}

// ---- validation -----------------------------------------------------------------------------

std::string check_hf(const std::string& dir, const QuantMap& q) {
  auto store = std::make_shared<const io::WeightStore>(io::WeightStore::open(dir));
  std::optional<io::PackedCheckpoint> pc = io::PackedCheckpoint::open(store);
  if (!pc) return "no quantization_config in " + dir;
  for (const std::string mod : {"model.layers.1.self_attn.q_proj", "model.layers.1.mlp.down_proj"}) {
    if (!pc->is_packed(mod + ".weight")) return mod + " is not packed in " + dir;
    const std::vector<double> got = to_vector(pc->get(mod + ".weight"));
    const std::vector<double> want = to_vector(quant::dequantize(q.at(mod), DType::f32));
    if (got != want) return mod + ": read-back weights differ from the quantizer's dequantized weights in " + dir;
  }
  return "";
}

std::string check_gguf(const std::string& dir) {
  std::string path;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".gguf") path = e.path().string();
  if (path.empty()) return "no .gguf file in " + dir;
  const io::GgufFile g = io::GgufFile::open(path);
  const io::GgufRawTensor raw = g.raw("blk.1.ffn_down.weight");
  const auto t = static_cast<io::GgmlType>(raw.info->ggml_type);
  const std::vector<uint8_t> want = io::ggml_quantize(fixture().tensors->get("model.layers.1.mlp.down_proj.weight"), t);
  if (want.size() != raw.nbytes || std::memcmp(want.data(), raw.data, raw.nbytes) != 0)
    return "blk.1.ffn_down (" + std::string(io::ggml_type_name(t)) + ") bytes differ from ggml_quantize of the source rows";
  return "";
}

// Plain read()/write() copy with a 4 MiB buffer (no copy_file_range / reflink shortcuts).
void copy_file_plain(const std::string& from, const std::string& to) {
  const int in = ::open(from.c_str(), O_RDONLY);
  const int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (in < 0 || out < 0) throw IoError(cat("copy ", from, " -> ", to, ": cannot open"));
  std::vector<char> buf(4 << 20);
  for (;;) {
    const ssize_t n = ::read(in, buf.data(), buf.size());
    if (n < 0) throw IoError(cat("copy: read ", from, " failed"));
    if (n == 0) break;
    for (ssize_t done = 0; done < n;) {
      const ssize_t w = ::write(out, buf.data() + done, static_cast<size_t>(n - done));
      if (w < 0) throw IoError(cat("copy: write ", to, " failed"));
      done += w;
    }
  }
  ::close(in);
  ::close(out);
}

bool files_equal(const std::string& a, const std::string& b) {
  std::ifstream fa(a, std::ios::binary), fb(b, std::ios::binary);
  std::vector<char> ba(4 << 20), bb(4 << 20);
  while (fa && fb) {
    fa.read(ba.data(), static_cast<std::streamsize>(ba.size()));
    fb.read(bb.data(), static_cast<std::streamsize>(bb.size()));
    if (fa.gcount() != fb.gcount() || std::memcmp(ba.data(), bb.data(), static_cast<size_t>(fa.gcount())) != 0) return false;
  }
  return fa.eof() && fb.eof();
}

std::map<std::string, std::string>& validated() {
  static std::map<std::string, std::string> v;
  return v;
}

// Runs `check` the first time `name` asks; the error (empty when it passed) is remembered.
const std::string& validate_once(const std::string& name, const std::function<std::string()>& check) {
  auto it = validated().find(name);
  if (it == validated().end()) it = validated().emplace(name, check()).first;
  return it->second;
}

void set_rate(benchmark::State& state) {
  state.counters["GB/s"] = benchmark::Counter(fixture().input_bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// ---- benchmarks -----------------------------------------------------------------------------

void BM_copy(benchmark::State& state) {
  Fixture& fx = fixture();
  const std::string dst = out_dir("copy.safetensors");
  const std::string& err = validate_once("copy", [&] {
    copy_file_plain(fx.model_file, dst);
    const bool same = files_equal(dst, fx.model_file);
    remove_out(dst);
    return same ? std::string() : std::string("the copy differs from the source");
  });
  if (!err.empty()) {
    state.SkipWithError(err.c_str());
    return;
  }
  for (auto _ : state) {
    copy_file_plain(fx.model_file, dst);
    state.PauseTiming();
    remove_out(dst);
    state.ResumeTiming();
  }
  set_rate(state);
}

void BM_export(benchmark::State& state, const std::string& format, bool sym) {
  Fixture& fx = fixture();
  const QuantMap& q = sym ? fx.q_sym : fx.q_asym;
  const quant::ExportSource src = fx.source(q, sym);
  const std::string dir = out_dir(format + (sym ? "-sym" : "-asym"));
  const bool gguf = format.rfind("gguf:", 0) == 0;
  const std::string& err = validate_once(format + (sym ? "/sym" : "/asym"), [&] {
    quant::export_model(src, format, {.output_folder = dir});
    std::string e = gguf ? check_gguf(dir) : check_hf(dir, q);
    remove_out(dir);
    return e;
  });
  if (!err.empty()) {
    state.SkipWithError(err.c_str());
    return;
  }
  for (auto _ : state) {
    quant::export_model(src, format, {.output_folder = dir});
    state.PauseTiming();
    remove_out(dir);
    state.ResumeTiming();
  }
  set_rate(state);
}

void BM_rtn(benchmark::State& state) {
  Fixture& fx = fixture();
  const std::string& err = validate_once("rtn", [&] {
    const QuantMap m = fx.rtn(true);
    for (const auto& [n, ql] : m)
      if (to_vector(ql.codes) != to_vector(fx.q_sym.at(n).codes)) return std::string("RTN is not deterministic: ") + n;
    return std::string();
  });
  if (!err.empty()) {
    state.SkipWithError(err.c_str());
    return;
  }
  for (auto _ : state) benchmark::DoNotOptimize(fx.rtn(true));
  set_rate(state);
}

void BM_rtn_export(benchmark::State& state) {
  Fixture& fx = fixture();
  const std::string dir = out_dir("rtn-auto_round");
  for (auto _ : state) {
    const QuantMap m = fx.rtn(true);
    quant::export_model(fx.source(m, true), "auto_round", {.output_folder = dir});
    state.PauseTiming();
    remove_out(dir);
    state.ResumeTiming();
  }
  set_rate(state);
}

// Console output plus, at the end, each benchmark's median GB/s over the copy's median.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  // Colours only on a terminal (a custom reporter does not get --benchmark_color).
  RatioReporter() : ConsoleReporter(isatty(STDOUT_FILENO) ? OO_Defaults : OO_None) {}
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      if (r.run_type != Run::RT_Aggregate || r.aggregate_name != "median" || r.error_occurred) continue;
      auto it = r.counters.find("GB/s");
      if (it != r.counters.end()) medians_.emplace_back(r.run_name.function_name, it->second.value);
    }
  }
  void Finalize() override {
    ConsoleReporter::Finalize();
    double copy = 0;
    for (const auto& [n, v] : medians_)
      if (n.find("copy") != std::string::npos) copy = v;
    if (copy <= 0) return;
    std::printf("\nmedian GB/s of input weights (%.1f MB bf16) and ratio to the plain file copy:\n", fixture().input_bytes * 1e-6);
    std::sort(medians_.begin(), medians_.end());
    for (const auto& [n, v] : medians_) std::printf("  %-44s %8.3f GB/s  %6.1f%%\n", n.c_str(), v, 100.0 * v / copy);
  }

 private:
  std::vector<std::pair<std::string, double>> medians_;
};

}  // namespace

int main(int argc, char** argv) {
  // Each export takes seconds: one iteration per repetition, the median over repetitions.
  auto cfg = [](benchmark::internal::Benchmark* b, int iters) { b->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(iters); };
  cfg(benchmark::RegisterBenchmark("copy/safetensors", BM_copy), 5);   // ~0.1 s each: 5 per repetition
  const std::vector<std::pair<std::string, bool>> formats = {
      {"auto_round", true}, {"auto_round", false}, {"auto_gptq", true}, {"auto_awq", true},
      {"gguf:q4_0", true},  {"gguf:q4_k_m", true}, {"gguf:q8_0", true}};
  for (const auto& [f, sym] : formats) {
    const std::string name = "export/" + f + (f.rfind("gguf:", 0) == 0 ? "" : sym ? "/W4G128sym" : "/W4G128asym");
    cfg(benchmark::RegisterBenchmark(name.c_str(), BM_export, f, sym), 1);
  }
  cfg(benchmark::RegisterBenchmark("rtn/W4G128sym", BM_rtn), 1);
  cfg(benchmark::RegisterBenchmark("rtn+export/auto_round/W4G128sym", BM_rtn_export), 1);

  // Defaults, overridable on the command line (later flags win).
  std::vector<std::string> defaults = {"--benchmark_repetitions=3", "--benchmark_report_aggregates_only=true",
                                       "--benchmark_enable_random_interleaving=true"};
  std::vector<char*> args{argv[0]};
  for (std::string& d : defaults) args.push_back(d.data());
  for (int i = 1; i < argc; ++i) args.push_back(argv[i]);
  int n = static_cast<int>(args.size());
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 1;
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
