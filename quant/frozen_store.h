// Frozen layers (QuantizedLinear: u8 codes [out, in], scales, zero points) as the exporters read
// them: by module name, metadata first, tensors only when asked for.
//
// The quantizer freezes a block's layers and moves on; holding every frozen layer of a large
// model until the export would keep ~1 byte per weight resident (plus the dequantized weights,
// which are never kept: `dequantize(load(name))` recomputes them). `FrozenStore` spills each
// finished block to a safetensors file in a temporary folder and maps it back per layer, so the
// resident part is one layer at a time; `MapFrozenLayers` serves layers held in memory (tests,
// small callers).
//
//   FrozenStore store(out_dir + ".arq-spill-" + pid);          // removed by the destructor
//   store.add(3, std::move(block_layers));                     // on_block_frozen
//   for (const std::string& n : store.names()) {
//     const QuantizedLinear* info = store.info(n);             // bits, layout, ... (no tensors)
//     QuantizedLinear q = store.load(n);                       // codes/scales/zeros, read-only CPU views
//   }
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "quant/quantized_linear.h"

namespace arq::quant {

class FrozenLayers {
 public:
  virtual ~FrozenLayers() = default;
  // Module names ("model.layers.0.self_attn.q_proj"), sorted.
  virtual std::vector<std::string> names() const = 0;
  // Name, layout, bits, data type, sym and weight dtype of a layer; null when absent. The codes,
  // scales and zeros of the returned value may be undefined: use load() for them. The pointer
  // stays valid as long as this object.
  virtual const QuantizedLinear* info(const std::string& name) const = 0;
  // The whole layer, tensors on the CPU (possibly read-only views of a mapping). IoError when absent.
  virtual QuantizedLinear load(const std::string& name) const = 0;

  bool has(const std::string& name) const { return info(name) != nullptr; }
};

// Layers held in a map (not owned: the map must outlive this view).
class MapFrozenLayers : public FrozenLayers {
 public:
  explicit MapFrozenLayers(const std::map<std::string, QuantizedLinear>& layers) : layers_(layers) {}
  std::vector<std::string> names() const override;
  const QuantizedLinear* info(const std::string& name) const override;
  QuantizedLinear load(const std::string& name) const override;

 private:
  const std::map<std::string, QuantizedLinear>& layers_;
};

// Layers spilled to disk block by block: `<dir>/block-00003.safetensors` holds
// `<module>.codes` (U8 [out, in]), `<module>.scales` (scale dtype, [out, n_g]) and
// `<module>.zeros` (I32 [out, n_g]); the scheme of each layer stays in memory (a few hundred
// bytes per layer). The folder is created by the constructor and removed with everything in it
// by the destructor — also when an exception unwinds through the owner.
class FrozenStore : public FrozenLayers {
 public:
  // IoError naming `dir` when it cannot be created (e.g. an unwritable output location).
  explicit FrozenStore(std::string dir);
  ~FrozenStore() override;
  FrozenStore(const FrozenStore&) = delete;
  FrozenStore& operator=(const FrozenStore&) = delete;

  // Writes one block's frozen layers (tensors on any device) and keeps only their scheme.
  // UsageError for a layer name already stored. Returns the bytes written.
  size_t add(int64_t block, std::map<std::string, QuantizedLinear>&& layers);

  std::vector<std::string> names() const override;
  const QuantizedLinear* info(const std::string& name) const override;
  QuantizedLinear load(const std::string& name) const override;

  const std::string& dir() const { return dir_; }
  size_t bytes_on_disk() const { return bytes_; }

 private:
  struct Entry {
    QuantizedLinear info;   // tensors undefined
    std::string file;
  };
  std::string dir_;
  std::map<std::string, Entry> entries_;
  size_t bytes_ = 0;
};

}  // namespace arq::quant
