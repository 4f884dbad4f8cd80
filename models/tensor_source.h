// Where a model's tensors come from: an in-memory map (random models, tests), a Hugging Face
// folder (io::WeightStore, memory-mapped), or a GGUF file (names mapped to HF names).
//
// Models look tensors up by their checkpoint name ("model.layers.3.self_attn.q_proj.weight")
// and ask for shapes first, so a folder can be validated against its config before any byte
// is read, and a quantizer can load one block at a time.
//
//   auto src = std::make_shared<MapSource>();
//   src->put("model.norm.weight", ones({64}));
//   Tensor w = src->get("model.norm.weight");   // [64]
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace arq::models {

class TensorSource {
 public:
  virtual ~TensorSource() = default;
  // Shape of a tensor, nullopt when absent (cheap: no data is read).
  virtual std::optional<Shape> shape(const std::string& name) const = 0;
  // The tensor (CPU; possibly a read-only view of a mapping). Throws IoError naming the tensor
  // and origin() when absent.
  virtual Tensor get(const std::string& name) const = 0;
  virtual std::vector<std::string> names() const = 0;
  // Dtype of get(name) (a source whose get() computes its tensor overrides this to stay cheap).
  virtual DType dtype(const std::string& name) const { return get(name).dtype(); }
  // Where the tensors live, for error messages ("/models/x (model.safetensors)", "in memory").
  virtual std::string origin() const = 0;
  bool has(const std::string& name) const { return shape(name).has_value(); }
};

// Tensors held in memory, by name.
class MapSource : public TensorSource {
 public:
  void put(const std::string& name, Tensor t) { tensors_[name] = std::move(t); }
  void erase(const std::string& name) { tensors_.erase(name); }
  std::optional<Shape> shape(const std::string& name) const override;
  Tensor get(const std::string& name) const override;
  std::vector<std::string> names() const override;
  std::string origin() const override { return origin_; }
  void set_origin(std::string o) { origin_ = std::move(o); }
  const std::map<std::string, Tensor>& tensors() const { return tensors_; }

 private:
  std::map<std::string, Tensor> tensors_;
  std::string origin_ = "in-memory model";
};

}  // namespace arq::models
