#include "models/tensor_source.h"

namespace arq::models {

std::optional<Shape> MapSource::shape(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) return std::nullopt;
  return it->second.shape();
}

Tensor MapSource::get(const std::string& name) const {
  auto it = tensors_.find(name);
  ARQ_CHECK(it != tensors_.end(), IoError, "tensor '", name, "' not found in ", origin_);
  return it->second;
}

std::vector<std::string> MapSource::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& kv : tensors_) out.push_back(kv.first);
  return out;
}

}  // namespace arq::models
