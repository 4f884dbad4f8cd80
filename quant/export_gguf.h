// GGUF export (`--format gguf:<preset>`, spec/autoround.md §4d, formats.md §4.6–4.8):
// architecture and tokenizer metadata, HF → GGUF tensor names, the llama Q/K row permutation,
// and llama.cpp's per-tensor type mix for the `_k_s` / `_k_m` presets.
//
// Two ways in (§4d):
//  - `--iters 0` (AutoRound's recommendation except 3-bit): every weight is encoded from the
//    source (FP) checkpoint with llama.cpp's reference quantizers, byte-exact with llama-quantize.
//  - tuned (`iters > 0`): the pipeline tunes each linear on the data type of the GGUF type it is
//    written with (gguf_type_scheme: int_asym_dq, int_sym_dq, ...), and the frozen layer's own
//    levels, sub-block scales and d/dmin are laid into the ggml blocks (io/ggml_encode_params.h),
//    so the file decodes to exactly the tuned weights. Embeddings, lm_head and layers without a
//    frozen layer of the matching scheme still take llama.cpp's searches.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>
#include <string>

#include "engine/tensor.h"
#include "io/ggml_blocks.h"
#include "quant/export.h"
#include "quant/pipeline.h"

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

// The scheme of a ggml type (§4d "Scheme facts"): q4_0/q5_0/q8_0 int_sym G32, q4_1/q5_1
// int_asym_float_zp G32, q2_K/q4_K/q5_K int_asym_dq, q3_K/q6_K int_sym_dq (super_bits /
// super_group_size from the table; scale dtype f32, or f16 for the legacy types whose block
// holds the scale itself as fp16). bits = 16 (keep) for f32/f16/bf16.
QuantScheme gguf_type_scheme(io::GgmlType t);
// The ggml type the exporter gives an HF checkpoint weight ("model.layers.3.mlp.down_proj.weight")
// of `shape`; ctx.layer is taken from the name. f32 for names without a GGUF form.
io::GgmlType gguf_checkpoint_type(const std::string& hf_name, const Shape& shape, GgufTypeContext ctx);

// The ggml bytes of a layer frozen with gguf_type_scheme(t) (levels, sub-block scales and d/dmin
// laid out as they are, so the rows decode to exactly dequantize(q)), rows in GGUF order:
// permute_heads > 0 applies llama's Q/K row interleave for that many heads. UsageError when q's
// scheme is not t's.
std::vector<uint8_t> gguf_pack_layer(const QuantizedLinear& q, io::GgmlType t, int64_t permute_heads = 0);

// For PipelineOptions::choose_layer_fn: each linear gets the scheme of the ggml type its weight
// has in gguf:<preset> (keep in 16 bits where that is f32/bf16), --fp_layers kept in 16 bits.
std::function<LayerChoice(const std::string&, int64_t, int64_t)> gguf_layer_chooser(const std::string& preset,
                                                                                    const models::DecoderSpec& spec,
                                                                                    std::vector<std::string> fp_layers);
// When `format_spec` holds a gguf:<preset> and o.iters > 0, installs gguf_layer_chooser in `o`.
// The preset wins over the global scheme (--bits/--group_size/--sym/--data_type, as in
// AutoRound), with a log line when that scheme is not the default. UsageError when the GGUF
// format is combined with other formats (each layer has one tuned data type) or with
// --layer_config (not supported for GGUF yet). iters 0: the export encodes from the FP weights
// with llama.cpp's searches, so when every format is GGUF each layer is kept as it is (no RTN or
// opt-RTN work whose result would be dropped); with an HF format beside it `o` is left alone.
void apply_gguf_schemes(const std::string& format_spec, const models::DecoderSpec& spec, PipelineOptions& o);

// Rows of a q_proj/k_proj weight [n_head·hd, in] (or bias [n_head·hd]) in llama.cpp's
// interleaved-RoPE order: inside each head, new row 2i = old i, new 2i+1 = old i + hd/2.
Tensor permute_qk_rows(const Tensor& w, int64_t n_head);

// Writes `<dir>/<name>-<PRESET>.gguf` (through the GGUF writer's temp-and-rename).
void export_gguf(const ExportSource& src, const ExportFormat& f, const std::string& dir, const ExportOptions& options);

}  // namespace arq::quant
