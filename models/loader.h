// Opening a model from disk: a Hugging Face folder (config.json + safetensors, through
// io::WeightStore, memory-mapped) or a GGUF file (metadata → DecoderSpec, GGUF tensor names
// → HF names, llama-arch Q/K rows un-permuted back to HF's rotate-half order).
//
//   CausalLM lm = load_causal_lm("models/stories260k");        // or "stories260k.gguf"
//   Tensor logits = lm.forward(ids);
#pragma once

#include <memory>
#include <string>

#include "io/gguf.h"
#include "io/tokenizer.h"
#include "io/weight_store.h"
#include "models/causal_lm.h"
#include "models/tensor_source.h"

namespace arq::models {

// Tensors of a Hugging Face folder.
class StoreSource : public TensorSource {
 public:
  explicit StoreSource(io::WeightStore store) : store_(std::move(store)) {}
  std::optional<Shape> shape(const std::string& name) const override;
  Tensor get(const std::string& name) const override;   // zero-copy view when possible
  std::vector<std::string> names() const override { return store_.names(); }
  std::string origin() const override { return store_.folder(); }
  const io::WeightStore& store() const { return store_; }

 private:
  io::WeightStore store_;
};

// Tensors of a GGUF file (F32/F16/BF16 tensors; quantized ggml types are an UnsupportedError
// until a dequantizer is wired in), under their HF names.
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
// or the `tokenizer.ggml.*` metadata of a .gguf file.
std::unique_ptr<io::Tokenizer> load_model_tokenizer(const std::string& path);

// The `tokenizer.ggml.*` keys of a GGUF file as an io::GgufVocab.
io::GgufVocab gguf_vocab(const io::GgufFile& file);

}  // namespace arq::models
