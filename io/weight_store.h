// WeightStore: every tensor of a Hugging Face model folder, by checkpoint name.
//
// Opens `model.safetensors.index.json` when present (its `weight_map` decides which shard holds
// which tensor), otherwise every `*.safetensors` in the folder (a name in two files is an
// error). All files are memory-mapped and validated up front; no tensor bytes are read until
// asked for. `view` is zero-copy and read-only; `load` always returns fresh memory in the
// requested dtype on the requested device, so a decoder block can be loaded, tuned and freed
// while the rest of the model stays on disk.
//
//   auto ws = WeightStore::open("models/stories260k");
//   Tensor emb = ws.load("model.embed_tokens.weight", DType::f32, Device::cpu());
//   auto block = ws.load_block(3, DType::bf16, Device::cuda());   // model.layers.3.*
#pragma once

#include <map>
#include <string>
#include <vector>

#include "io/safetensors.h"

namespace arq::io {

class WeightStore {
 public:
  // `path` is a model folder or a single .safetensors file. Throws IoError.
  static WeightStore open(const std::string& path);

  const std::string& folder() const { return folder_; }
  std::vector<std::string> files() const;                  // paths of the files opened
  bool has(const std::string& name) const { return where_.count(name) != 0; }
  size_t size() const { return where_.size(); }
  // Names starting with `prefix`, sorted.
  std::vector<std::string> names(const std::string& prefix = "") const;

  const StTensorInfo& info(const std::string& name) const;        // IoError when missing
  const SafetensorsFile& file_of(const std::string& name) const;  // IoError when missing
  RawTensor raw(const std::string& name) const;
  Tensor view(const std::string& name) const;   // zero-copy when the dtype allows, else decoded (CPU)

  // Fresh tensor converted to `dtype` and copied to `device`.
  Tensor load(const std::string& name, DType dtype, Device device = Device::cpu()) const;
  // Fresh CPU tensor in the stored dtype (non-engine dtypes decoded as decode_raw does).
  Tensor load(const std::string& name) const;

  // Every tensor whose name starts with `prefix`, loaded as above, keyed by full name.
  std::map<std::string, Tensor> load_prefix(const std::string& prefix, DType dtype,
                                            Device device = Device::cpu()) const;
  // One decoder block: prefix "<layers_prefix><i>." (default "model.layers.").
  std::map<std::string, Tensor> load_block(int64_t i, DType dtype, Device device = Device::cpu(),
                                           const std::string& layers_prefix = "model.layers.") const;

 private:
  [[noreturn]] void missing(const std::string& name) const;
  std::string folder_;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, size_t> where_;   // tensor name -> index in files_
};

}  // namespace arq::io
