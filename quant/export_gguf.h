// GGUF export (`--format gguf:<preset>`, spec/autoround.md §4d, formats.md §4.6–4.8):
// architecture and tokenizer metadata, HF → GGUF tensor names, the llama Q/K row permutation,
// and llama.cpp's per-tensor type mix for the `_k_s` / `_k_m` presets.
//
// Weights are encoded from the source (FP) checkpoint with llama.cpp's reference quantizers —
// the RTN path (`--iters 0`) AutoRound recommends for GGUF except 3-bit. Re-encoding SignRound-
// tuned scales into the super-block layout is not implemented yet.
#pragma once

#include <cstdint>
#include <string>

#include "engine/tensor.h"
#include "io/ggml_blocks.h"
#include "quant/export.h"

namespace arq::quant {

// Base ggml type of a preset ("q4_k_m" → q4_K); UsageError listing the presets when unknown.
io::GgmlType gguf_preset_base_type(const std::string& preset);
// llama_ftype of a preset (general.file_type).
uint32_t gguf_preset_ftype(const std::string& preset);

struct GgufTypeContext {
  std::string preset;     // "q4_k_m"
  int64_t layer = -1;     // block index of the tensor (−1 outside blocks)
  int64_t n_layer = 0;
  int64_t n_gqa = 1;      // n_head / n_head_kv
  bool tied_embeddings = false;
};
// llama.cpp's llama_tensor_get_type rules for a GGUF tensor name and its row-major shape.
io::GgmlType gguf_tensor_type(const std::string& gguf_name, const Shape& shape, const GgufTypeContext& ctx);

// Rows of a q_proj/k_proj weight [n_head·hd, in] (or bias [n_head·hd]) in llama.cpp's
// interleaved-RoPE order: inside each head, new row 2i = old i, new 2i+1 = old i + hd/2.
Tensor permute_qk_rows(const Tensor& w, int64_t n_head);

// Writes `<dir>/<name>-<PRESET>.gguf` (through the GGUF writer's temp-and-rename).
void export_gguf(const ExportSource& src, const ExportFormat& f, const std::string& dir, const ExportOptions& options);

}  // namespace arq::quant
