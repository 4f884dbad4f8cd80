// Reading HF-style quantized folders back (auto_round, auto_gptq, auto_awq): the
// `quantization_config` of config.json, and every packed Linear dequantized on load
// (w = scale · (q − zero), one f32 product, exactly what the quantizer's dequantize gives).
//
//   auto store = std::make_shared<WeightStore>(WeightStore::open(dir));
//   if (auto pc = PackedCheckpoint::open(store)) {
//     Tensor w = pc->get("model.layers.0.self_attn.q_proj.weight");   // f32 [out, in]
//   }
//
// Hooking it into a model loader: where the loader serves a tensor name from the WeightStore,
// ask `is_packed(name)` first and serve `get(name)` instead; list names through `names()`.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/json_util.h"
#include "io/pack.h"
#include "io/weight_store.h"

namespace arq::io {

struct HfQuantConfig {
  std::string quant_method;      // "gptq", "awq", "auto-round"
  std::string packing_format;    // auto-round: "auto_round:auto_gptq", "auto_round:auto_awq", "auto_round", ...
  std::string checkpoint_format; // gptq: "gptq" (zero − 1, default) or "gptq_v2"
  int bits = 4;
  int64_t group_size = 128;
  bool sym = true;
  JsonValue raw;                 // the whole quantization_config object

  // bits / group size of one module (extra_config for auto-round, dynamic for gptq; exact names
  // or regexes), nullopt when the module is kept unquantized there.
  struct LayerScheme {
    int bits;
    int64_t group_size;
    bool sym;
  };
  std::optional<LayerScheme> scheme_of(const std::string& module) const;
  HfPacking packing(bool layer_sym) const;
};

// config.json's quantization_config of `folder`, nullopt when it has none or its quant_method
// is not one of the three packed formats. IoError for a malformed one.
std::optional<HfQuantConfig> read_hf_quant_config(const std::string& folder);
HfQuantConfig parse_hf_quant_config(const JsonValue& quantization_config, const std::string& origin);

class PackedCheckpoint {
 public:
  // nullopt when the folder is not an HF-packed checkpoint.
  static std::optional<PackedCheckpoint> open(std::shared_ptr<const WeightStore> store);

  const HfQuantConfig& config() const { return config_; }
  // "X.weight" where X.qweight exists.
  bool is_packed(const std::string& weight_name) const;
  Shape shape(const std::string& weight_name) const;   // [out, in]
  Tensor get(const std::string& weight_name) const;    // f32 [out, in], fresh
  // The store's names with every X.qweight / qzeros / scales / g_idx replaced by X.weight.
  std::vector<std::string> names() const;

 private:
  struct Module {
    int bits;
    int64_t group_size;
    int64_t in, out;
    HfPacking packing;
  };
  const Module& module(const std::string& weight_name) const;
  std::shared_ptr<const WeightStore> store_;
  HfQuantConfig config_;
  std::map<std::string, Module> modules_;   // by weight name "X.weight"
};

// Every tensor of a packed folder with the packed Linears dequantized (f32) — the simple,
// memory-hungry path for small models and tests.
std::map<std::string, Tensor> dequantize_folder_tensors(const std::string& folder);

}  // namespace arq::io
