#include "quant/frozen_store.h"

#include <cstdio>
#include <filesystem>

#include "engine/error.h"
#include "io/safetensors.h"

namespace arq::quant {

namespace fs = std::filesystem;

// ---- in memory --------------------------------------------------------------------------------

std::vector<std::string> MapFrozenLayers::names() const {
  std::vector<std::string> out;
  out.reserve(layers_.size());
  for (const auto& [n, q] : layers_) out.push_back(n);
  return out;
}

const QuantizedLinear* MapFrozenLayers::info(const std::string& name) const {
  auto it = layers_.find(name);
  return it == layers_.end() ? nullptr : &it->second;
}

QuantizedLinear MapFrozenLayers::load(const std::string& name) const {
  auto it = layers_.find(name);
  ARQ_CHECK(it != layers_.end(), IoError, "frozen layer '", name, "' is not among the ", layers_.size(), " quantized layers");
  QuantizedLinear q = it->second;
  if (!q.codes.device().is_cpu()) q.codes = q.codes.to(Device::cpu());
  if (!q.scales.device().is_cpu()) q.scales = q.scales.to(Device::cpu());
  if (!q.zeros.device().is_cpu()) q.zeros = q.zeros.to(Device::cpu());
  return q;
}

// ---- spilled to disk ----------------------------------------------------------------------------

FrozenStore::FrozenStore(std::string dir) : dir_(std::move(dir)) {
  std::error_code ec;
  fs::remove_all(dir_, ec);   // a leftover of a crashed run with the same pid
  fs::create_directories(dir_, ec);
  ARQ_CHECK(!ec, IoError, "cannot create the temporary folder '", dir_, "' for frozen layers: ", ec.message());
}

FrozenStore::~FrozenStore() {
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

size_t FrozenStore::add(int64_t block, std::map<std::string, QuantizedLinear>&& layers) {
  if (layers.empty()) return 0;
  char file[64];
  std::snprintf(file, sizeof file, "block-%05lld.safetensors", static_cast<long long>(block));
  const std::string path = (fs::path(dir_) / file).string();
  std::vector<io::StWriteTensor> tensors;
  for (auto& [name, q] : layers) {
    ARQ_CHECK(!entries_.count(name), UsageError, "frozen layer '", name, "' was stored twice (block ", block, ")");
    ARQ_CHECK(q.codes.defined() && q.scales.defined() && q.zeros.defined(), UsageError, "frozen layer '", name,
              "' has no codes, scales or zeros");
    tensors.push_back(io::StWriteTensor::from_tensor(name + ".codes", q.codes));
    tensors.push_back(io::StWriteTensor::from_tensor(name + ".scales", q.scales));
    tensors.push_back(io::StWriteTensor::from_tensor(name + ".zeros", q.zeros));
  }
  size_t written = 0;
  for (const io::StWriteTensor& t : tensors) written += t.nbytes;
  io::write_safetensors(path, std::move(tensors), {});
  for (auto& [name, q] : layers) {
    Entry e;
    e.file = path;
    e.info = std::move(q);
    e.info.codes = Tensor();
    e.info.scales = Tensor();
    e.info.zeros = Tensor();
    entries_.emplace(name, std::move(e));
  }
  layers.clear();
  bytes_ += written;
  return written;
}

std::vector<std::string> FrozenStore::names() const {
  std::vector<std::string> out;
  out.reserve(entries_.size());
  for (const auto& [n, e] : entries_) out.push_back(n);
  return out;
}

const QuantizedLinear* FrozenStore::info(const std::string& name) const {
  auto it = entries_.find(name);
  return it == entries_.end() ? nullptr : &it->second.info;
}

QuantizedLinear FrozenStore::load(const std::string& name) const {
  auto it = entries_.find(name);
  ARQ_CHECK(it != entries_.end(), IoError, "frozen layer '", name, "' is not among the ", entries_.size(),
            " layers spilled to ", dir_);
  // A fresh mapping per load: the views keep it alive, and it is unmapped (its pages leave the
  // resident set) as soon as the caller drops the layer.
  const io::SafetensorsFile f = io::SafetensorsFile::open(it->second.file);
  QuantizedLinear q = it->second.info;
  q.codes = f.view(name + ".codes");
  q.scales = f.view(name + ".scales");
  q.zeros = f.view(name + ".zeros");
  return q;
}

}  // namespace arq::quant
