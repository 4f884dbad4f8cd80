// Writing a quantized model in the formats engines load (spec/autoround.md §4.0–4c):
// `auto_round` (default), `auto_gptq`, `auto_awq`, several at once ("auto_round,auto_gptq": one
// subfolder each, named with ':' and '_' replaced by '-'), and `gguf:<preset>` (export_gguf.h).
//
// The output folder is written atomically: everything goes to a temporary sibling folder that
// is renamed into place when complete, so an interrupted or failed export leaves nothing
// half-written; an existing output folder is refused unless `overwrite` is set.
//
// The frozen layers come from a FrozenLayers (quant/frozen_store.h: spilled to disk by the
// quantize job, read back one layer at a time) or, for small callers and tests, a map. Every
// output tensor is produced when it is written, so an export holds one layer (plus the writer's
// buffers) at a time, whatever the model size.
//
//   ExportSource src{.model_folder = "models/stories260k", .tensors = lm.source_ptr(),
//                    .quantized = &result.quantized, .scheme = {.bits = 4, .group_size = 32}};
//   export_model(src, "auto_round,auto_gptq", {.output_folder = "out/stories-w4g32"});
//   src.quantized = nullptr;  src.frozen = &store;      // or: layers spilled by a FrozenStore
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/json_util.h"
#include "io/pack.h"
#include "models/tensor_source.h"
#include "quant/frozen_store.h"
#include "quant/quantized_linear.h"
#include "quant/scheme.h"

namespace arq::quant {

enum class ExportKind : uint8_t { auto_round, auto_gptq, auto_awq, gguf };

struct ExportFormat {
  ExportKind kind = ExportKind::auto_round;
  std::string spec;            // as given: "auto_round", "auto_round:auto_awq", "gguf:q4_k_m"
  std::string packing_format{};  // auto_round: "" (chosen from the scheme) or an explicit "auto_round:..."
  std::string gguf_preset{};     // gguf: "q4_k_m", ...
  std::string subfolder() const;   // spec with ':' and '_' → '-'
};

// "auto_round,auto_gptq" → formats, in order. UsageError naming the unknown entry and listing
// the known ones; duplicates are an error.
std::vector<ExportFormat> parse_export_formats(const std::string& spec);

// Tuning keys that go into quantization_config when they differ from AutoRound's defaults.
struct ExportTuning {
  int64_t iters = 200;
  int64_t nsamples = 128;
  int64_t seqlen = 2048;
  int64_t batch_size = 8;
  double lr = 0;          // 0: the default (1/iters)
  bool low_gpu_mem_usage = false;
};

struct ExportSource {
  std::string model_folder;   // source HF folder: config.json, tokenizer and generation files
  std::shared_ptr<const models::TensorSource> tensors;         // every original checkpoint tensor
  // The frozen layers by module name: `frozen` when set, else the map `quantized` (not owned).
  const std::map<std::string, QuantizedLinear>* quantized = nullptr;
  const FrozenLayers* frozen = nullptr;
  QuantScheme scheme;          // the global scheme
  ExportTuning tuning;
  std::string block_name_to_quantize = "model.layers";
  io::JsonValue config;        // config.json to start from; null: read model_folder/config.json
};

struct ExportOptions {
  std::string output_folder;
  bool overwrite = false;
  uint64_t max_shard_bytes = 5'000'000'000ULL;
  std::function<void(const std::string&)> log{};   // warnings and progress (may be empty)
};

struct ExportResult {
  std::vector<std::string> folders;   // one per format (the output folder itself for one format)
};

// The frozen layers of a source (`frozen`, or a view of the `quantized` map); UsageError when
// it has neither. The result refers to the source's objects: keep them alive while using it.
std::shared_ptr<const FrozenLayers> frozen_layers(const ExportSource& src);

// Checks (before anything is written) that every format can hold the scheme: UsageError for an
// AWQ export with bits ≠ 4, a GPTQ export with bits ∉ {2,3,4,8}, a per-tensor group size.
void validate_export(const ExportSource& src, const std::vector<ExportFormat>& formats);
ExportResult export_model(const ExportSource& src, const std::string& format_spec, const ExportOptions& options);

// The packing a format uses for a layer (auto_round picks by scheme, §4a).
io::HfPacking hf_packing_for(const ExportFormat& f, const std::string& resolved_packing_format, bool sym);
// auto_round's packing_format for a set of quantized layers (§4a table).
std::string auto_round_packing_format(const ExportFormat& f, const FrozenLayers& quantized, const QuantScheme& scheme);
// The quantization_config dict of one HF format.
io::JsonValue hf_quantization_config(const ExportSource& src, const ExportFormat& f, const std::string& packing_format,
                                     const std::vector<std::string>& fp_layers);

// A temporary sibling folder, renamed to `target` by commit(); removed when destroyed uncommitted.
class AtomicFolder {
 public:
  AtomicFolder(std::string target, bool overwrite);   // UsageError when target exists and !overwrite
  ~AtomicFolder();
  AtomicFolder(const AtomicFolder&) = delete;
  AtomicFolder& operator=(const AtomicFolder&) = delete;
  const std::string& path() const { return tmp_; }   // write here
  void commit();

 private:
  std::string target_, tmp_;
  bool overwrite_ = false, committed_ = false;
};

}  // namespace arq::quant
