// Opening a model from disk: a Hugging Face folder (config.json + safetensors, through
// io::WeightStore, memory-mapped; auto_round / GPTQ / AWQ packed Linears dequantized on load)
// or a GGUF file (metadata → DecoderSpec, GGUF tensor names → HF names, llama-arch Q/K rows
// un-permuted back to HF's rotate-half order, quantized ggml types dequantized on load).
//
//   CausalLM lm = load_causal_lm("models/stories260k");        // or "stories260k.gguf"
//   Tensor logits = lm.forward(ids);
#pragma once

#include <memory>
#include <string>

#include "io/gguf.h"
#include "io/pack_load.h"
#include "io/tokenizer.h"
#include "io/weight_store.h"
#include "models/causal_lm.h"
#include "models/tensor_source.h"

namespace arq::models {

// Tensors of a Hugging Face folder. When config.json has an auto_round / gptq / awq
// quantization_config (io::PackedCheckpoint), every packed Linear X (X.qweight, X.qzeros,
// X.scales, X.g_idx) is served as X.weight, dequantized to f32 [out, in] on each get().
class StoreSource : public TensorSource {
 public:
  explicit StoreSource(io::WeightStore store);
  explicit StoreSource(std::shared_ptr<const io::WeightStore> store);
  std::optional<Shape> shape(const std::string& name) const override;
  Tensor get(const std::string& name) const override;   // zero-copy view when possible
  std::vector<std::string> names() const override;
  std::string origin() const override { return store_->folder(); }
  const io::WeightStore& store() const { return *store_; }
  // The packed-checkpoint reader, null for a plain (unquantized) folder.
  const io::PackedCheckpoint* packed() const { return packed_ ? &*packed_ : nullptr; }

 private:
  std::shared_ptr<const io::WeightStore> store_;
  std::optional<io::PackedCheckpoint> packed_;
};

// Tensors of a GGUF file under their HF names: F32/F16/BF16 as zero-copy views, quantized ggml
// types (q8_0, q4_K, …) dequantized to f32 on each get().
class GgufSource : public TensorSource {
 public:
  // `unpermute_qk`: llama-arch files store Q/K rows in interleaved-RoPE order (§4.8).
  GgufSource(std::shared_ptr<const io::GgufFile> file, int64_t n_head, int64_t n_head_kv, bool unpermute_qk);
  std::optional<Shape> shape(const std::string& name) const override;
  Tensor get(const std::string& name) const override;
  std::vector<std::string> names() const override;
  std::string origin() const override { return file_->path(); }

  // HF checkpoint name -> GGUF tensor name ("" when the name has no GGUF form).
  static std::string gguf_name(const std::string& hf_name);

 private:
  std::shared_ptr<const io::GgufFile> file_;
  int64_t n_head_ = 0, n_head_kv_ = 0;
  bool unpermute_qk_ = false;
};

// The DecoderSpec a GGUF file describes (general.architecture llama, qwen2 or qwen3).
DecoderSpec gguf_decoder_spec(const io::GgufFile& file);

bool is_gguf_path(const std::string& path);

// A folder with config.json and safetensors, or a .gguf file.
CausalLM load_causal_lm(const std::string& path, const LoadOptions& options = {});

// The tokenizer that goes with a model path: the folder's tokenizer files (io::load_tokenizer),
// or the `tokenizer.ggml.*` metadata of a .gguf file (io::gguf_vocab_from_metadata).
std::unique_ptr<io::Tokenizer> load_model_tokenizer(const std::string& path);

}  // namespace arq::models
