// Which layers are quantized and how (spec/autoround.md §1.5, §1.14, §2).
//
// A LayerConfig maps layer names to scheme overrides, AutoRound style: a key is an exact layer
// name or a regular expression searched in the name ("k_proj", ".*mlp.down_proj"); a value is
// a dict of {bits, group_size, sym, data_type, scale_dtype} or a preset name ("W8A16",
// "W2A16G32", "BF16"/"FP16" = keep 16-bit). The text may be strict JSON or AutoRound's
// JSON-like form with bare words: {k_proj:{bits:8}, "model.layers.0.mlp.down_proj": W8A16}.
//
//   LayerConfig lc = LayerConfig::parse("{k_proj:{bits:8}}", "--layer_config");
//   LayerChoice c = choose_layer("model.layers.0.self_attn.k_proj", 64, 64, base, lc, {});
//   // c.scheme.bits == 8, c.reason == ""
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "quant/scheme.h"

namespace arq::quant {

struct SchemeOverride {
  std::optional<int> bits{};
  std::optional<int64_t> group_size{};
  std::optional<bool> sym{};
  std::optional<std::string> data_type{};
  std::optional<DType> scale_dtype{};
  void apply(QuantScheme& s) const;
};

// Preset schemes of §1.14 (W2A16, W2A16G64, W2A16G32, W3A16, W4A16, W8A16, ..., BF16/FP16);
// nullopt for an unknown name. Case-insensitive.
std::optional<SchemeOverride> preset_scheme(const std::string& name);

class LayerConfig {
 public:
  struct Entry {
    std::string key;
    SchemeOverride value;
  };
  // `text` is the JSON(-like) text, or a path to a file holding it. UsageError naming `flag`
  // and the offending key/value for anything malformed or unknown.
  static LayerConfig parse(const std::string& text, const std::string& flag = "--layer_config");
  bool empty() const { return entries_.empty(); }
  const std::vector<Entry>& entries() const { return entries_; }
  // Applies every matching entry in order (regex entries first, in file order, then an exact
  // name match, which wins). Returns true when any entry matched.
  bool apply(const std::string& layer, QuantScheme& s) const;

 private:
  std::vector<Entry> entries_;
};

// Comma-separated names for --fp_layers / --ignore_layers; a layer matches a pattern when the
// name equals it, contains it, or the pattern (as a regex) is found in it.
std::vector<std::string> split_layer_list(const std::string& list);
bool matches_layer_pattern(const std::string& layer, const std::string& pattern);

struct LayerChoice {
  QuantScheme scheme;   // keep_fp() when the layer stays in 16 bits
  std::string reason;   // why it stays 16-bit ("fp_layers", "shape 172 not divisible by 32", ...)
};

// AutoRound's rules for a linear inside a decoder block: --fp_layers keep it; MoE routers
// ("….gate") and vision modules stay FP; layer_config overrides the default scheme; then any
// int layer whose in or out dimension is not divisible by 32 is demoted to 16 bits.
LayerChoice choose_layer(const std::string& name, int64_t out_features, int64_t in_features, const QuantScheme& base,
                         const LayerConfig& config, const std::vector<std::string>& fp_layers);

}  // namespace arq::quant
