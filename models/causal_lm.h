// A Llama-family causal language model (Llama, Mistral, Qwen2, Qwen3): the block-level
// interface a quantizer drives, and the whole-model forward used by evaluation and generation.
//
// Weights keep their checkpoint names and stay in their TensorSource (a memory-mapped folder,
// a GGUF file, or memory) until asked for: `load_block(i)` brings one block's tensors to the
// compute device, so a quantizer holds one block at a time. Whole-model forwards keep the
// blocks they loaded (resident) unless `set_keep_resident(false)`.
//
// Block interface (what quant::tune_block uses):
//
//   CausalLM lm = load_causal_lm("models/stories260k");
//   for (const LinearInfo& l : lm.block_linears(3)) ...            // q/k/v/o/gate/up/down of block 3
//   BlockWeights w = lm.load_block(3);                              // only block 3 resident
//   BlockInputs in = lm.block_inputs({.batch = 8, .seq = 512});     // positions, RoPE tables, masks
//   WeightOverrides sub = {{"model.layers.3.self_attn.q_proj", qdq_weight}};   // ag::Var [out, in]
//   ag::Var y = lm.block_forward(w, x, in, sub);                    // x, y [8, 512, hidden]
//
// Whole model:
//
//   Tensor logits = lm.forward(ids);                 // ids [b, s] i64 -> f32 [b, s, vocab]
//   KvCache cache = lm.new_cache(1, 256);
//   Tensor l0 = lm.forward(prompt_ids, cache);       // then one token at a time
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "models/blocks/attention.h"
#include "models/decoder_spec.h"
#include "models/tensor_source.h"

namespace arq::models {

// One quantizable linear layer of a block.
struct LinearInfo {
  std::string name{};          // module name, "model.layers.3.self_attn.q_proj"
  int64_t in_features = 0;
  int64_t out_features = 0;
  bool has_bias = false;
  std::string weight_name() const { return name + ".weight"; }   // checkpoint tensor [out, in]
  std::string bias_name() const { return name + ".bias"; }
};

// Substitute weights, keyed by LinearInfo::name; each [out, in]. A Var that requires grad
// receives the gradient of whatever the caller computes from the block's output.
using WeightOverrides = std::map<std::string, ag::Var>;

// One block's tensors on the compute device, by full checkpoint name.
struct BlockWeights {
  int64_t layer = -1;
  std::map<std::string, Tensor> tensors{};
  const Tensor& at(const std::string& name) const;   // ARQ_ASSERT when absent (load_block filled it)
  const Tensor* find(const std::string& name) const;
  size_t nbytes() const;
};

struct LoadOptions {
  std::optional<DType> dtype{};   // compute dtype; unset: the stored dtype of the embedding table
  Device device = Device::cpu();
};

// What `block_inputs` needs to know about a batch.
struct InputSpec {
  int64_t batch = 1;
  int64_t seq = 0;
  Tensor position_ids{};   // [b, s] or [s] integers; undefined: 0..s−1 (restarting per segment)
  Tensor padding_mask{};   // [b, s], nonzero = real token; undefined: no padding
  Tensor segment_ids{};    // [b, s] integers for packed samples; undefined: one sample per row
};

// Per-batch tensors every block uses, computed once (the quantizer reuses them for all
// iterations of all blocks).
struct BlockInputs {
  int64_t batch = 0;
  int64_t seq = 0;
  Tensor position_ids{};              // [b, s] i64
  Tensor cos{};                       // [b, s, 1, rotary_dim/2] compute dtype, on the device
  Tensor sin{};
  std::map<int64_t, Tensor> masks{};  // window (0 = full) -> additive f32 [b|1, 1, s, s] on the device
  bool masks_structural = false;      // the masks are causal / window structure only (no padding, segments)
  const Tensor& mask_for(int64_t window) const;
};

// K/V for every layer, [b, nkv, capacity, hd] each.
struct KvCache {
  std::vector<KvCacheLayer> layers{};
  int64_t capacity = 0;
  int64_t length() const { return layers.empty() ? 0 : layers.front().length; }
};

class CausalLM {
 public:
  // Checks every tensor the spec implies (presence and shape) against the source, without
  // reading data: a missing layer or a config that disagrees with the tensors is a ConfigError
  // naming the tensor, both shapes and the config fields involved.
  CausalLM(DecoderSpec spec, std::shared_ptr<const TensorSource> source, LoadOptions options = {});

  const DecoderSpec& spec() const { return spec_; }
  const TensorSource& source() const { return *source_; }
  std::shared_ptr<const TensorSource> source_ptr() const { return source_; }
  DType dtype() const { return dtype_; }
  Device device() const { return options_.device; }

  // ---- block interface --------------------------------------------------------------------
  int64_t num_blocks() const { return spec_.num_hidden_layers; }
  std::string block_prefix(int64_t i) const;              // "model.layers.{i}."
  std::vector<LinearInfo> block_linears(int64_t i) const; // q, k, v, o, gate, up, down
  std::vector<std::string> block_tensor_names(int64_t i) const;
  BlockWeights load_block(int64_t i) const;
  BlockInputs block_inputs(const InputSpec& in) const;
  // hidden [b, s, H] (compute dtype) -> [b, s, H]. Overrides replace linear weights by name
  // (UsageError for a name that is not a linear of this block, ShapeError for a wrong shape;
  // a different dtype is cast, differentiably). With a cache, the block appends to it.
  // `observer` (may be null; no cost when null) sees every linear's input by full module name
  // (LinearInfo::name) — q/k/v share one input, o_proj gets the attention output, gate/up share
  // one, down_proj gets silu(gate)·up; each [b, s, in_features], before the linear runs.
  ag::Var block_forward(const BlockWeights& w, const ag::Var& hidden, const BlockInputs& in,
                        const WeightOverrides& overrides = {}, KvCacheLayer* cache = nullptr,
                        const LinearObserver* observer = nullptr) const;

  // ---- whole model (no gradients) -----------------------------------------------------------
  Tensor embed(const Tensor& ids) const;          // [b, s] -> [b, s, H] compute dtype
  Tensor head(const Tensor& hidden) const;        // final norm + lm_head: [b, s, H] -> f32 [b, s, V]
  Tensor final_norm(const Tensor& hidden) const;  // the final norm alone (lm_head's input): [b, s, H] -> [b, s, H]
  Tensor forward(const Tensor& ids) const;        // [b, s] -> f32 [b, s, V]
  KvCache new_cache(int64_t batch, int64_t capacity) const;
  // Appends ids [b, s_new] after the cached positions and returns their logits f32 [b, s_new, V].
  Tensor forward(const Tensor& ids, KvCache& cache) const;

  void set_keep_resident(bool on);   // whole-model forwards keep loaded blocks (default true)

 private:
  Tensor fetch(const std::string& name) const;    // source -> compute dtype, device
  std::shared_ptr<const BlockWeights> resident_block(int64_t i) const;
  void validate_tensors() const;

  DecoderSpec spec_;
  std::shared_ptr<const TensorSource> source_;
  LoadOptions options_;
  DType dtype_ = DType::f32;
  bool keep_resident_ = true;
  mutable std::vector<std::shared_ptr<BlockWeights>> resident_;   // [L]
  mutable Tensor embed_;     // [V, H]
  mutable Tensor norm_;      // [H]
  mutable Tensor lm_head_;   // [V, H]
};

}  // namespace arq::models
