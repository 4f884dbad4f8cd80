// The block-by-block quantization pipeline (ARCHITECTURE.md "Data flow of one quantization",
// spec/autoround.md §1.1, §1.4, §1.6, §3) and the whole job behind `ar-quant quantize`.
//
// quantize_blocks: given a model and calibration ids, caches the inputs of block 0, then for
// each block loads its weights, computes the FP reference, tunes (SignRound) or rounds (RTN /
// opt-RTN) its quantizable linears, freezes them, advances both activation chains and drops
// the block. Only one block's weights and the two activation caches are resident.
//
//   models::CausalLM lm = models::load_causal_lm("stories260k");
//   PipelineOptions o;  o.scheme = {.bits = 4, .group_size = 32};  o.iters = 200;
//   PipelineResult r = quantize_blocks(lm, ids, mask, o);   // ids/mask [n, seqlen]
//   r.weights["model.layers.0.self_attn.q_proj.weight"]    // dequantized [out, in]
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "models/causal_lm.h"
#include "quant/layer_config.h"
#include "quant/quantized_linear.h"
#include "quant/scheme.h"

namespace arq::quant {

struct PipelineOptions {
  QuantScheme scheme;                   // default scheme of every quantizable linear
  LayerConfig layer_config{};
  std::vector<std::string> fp_layers{};
  bool quant_lm_head = false;
  int64_t iters = 200;                  // 0: RTN / opt-RTN
  double lr = 0;                        // 0: auto per layer
  double minmax_lr = 0;                 // 0: follows lr
  int64_t batch_size = 8;
  int64_t gradient_accumulate_steps = 1;
  bool enable_minmax_tuning = true;
  bool enable_quanted_input = true;
  bool not_use_best_mse = false;
  std::optional<bool> disable_opt_rtn{};  // unset: opt-RTN wherever it applies (§3)
  uint64_t seed = 42;
  // Activation caches: f32 or bf16; unset (the default): resolved_cache_dtype below.
  std::optional<DType> cache_dtype{};
  // AutoRound's low_gpu_mem_usage (spec §1.12): with the model on a CUDA device, the activation
  // caches (both chains' block inputs, the FP reference outputs) stay in page-locked host memory
  // and each batch is copied to the device when a block runs on it or the tuner uses it. Only
  // the block, its tuning state and one batch's activations are on the device. No effect on the CPU.
  bool low_gpu_mem_usage = false;
  // Observers (may be empty): a finished block's log line; every tuning iteration.
  std::function<void(const std::string&)> log{};
  std::function<void(int64_t block, int64_t iter, int64_t iters, double loss)> on_iter{};
  // Streaming sink (may be empty): called once per finished block — and once more with
  // block = num_blocks for lm_head — with its frozen layers (by module name) and their
  // dequantized weights (by checkpoint tensor name, on the CPU). When set, the pipeline hands
  // them over and keeps nothing, so PipelineResult::quantized/weights stay empty and only one
  // block is resident; the caller writes them out.
  std::function<void(int64_t block, std::map<std::string, QuantizedLinear>&& quantized,
                     std::map<std::string, Tensor>&& weights)>
      on_block_frozen{};
  // Per-layer scheme (may be empty): when set, it replaces choose_layer(scheme, layer_config,
  // fp_layers) for the linears inside blocks — GGUF export sets it so each layer is tuned on
  // the data type of the ggml type it is written with (quant/export_gguf.h gguf_layer_chooser).
  std::function<LayerChoice(const std::string& layer, int64_t out_features, int64_t in_features)> choose_layer_fn{};
};

struct LayerLog {
  std::string name;
  std::string scheme;   // "W4G32 int_sym", "opt-rtn W4G32 int_sym", "opt-rtn+imatrix W4G32 int_sym", or "fp16 (<reason>)"
  bool quantized = false;
};

struct BlockLog {
  int64_t block = 0;
  std::vector<LayerLog> layers;
  int64_t n_quantized = 0;
  double loss_init = 0, loss_best = 0;  // tracked SignRound losses (0 for RTN)
  int64_t best_iter = 0;
  bool tuned = false;
  double seconds = 0;
};

struct PipelineResult {
  std::map<std::string, QuantizedLinear> quantized;  // by layer (module) name
  std::map<std::string, Tensor> weights;             // by checkpoint tensor name: dequantized [out, in]
  std::vector<BlockLog> blocks;
  size_t cache_bytes = 0;       // the two activation caches (+ reference outputs) at their peak
  Device cache_device = Device::cpu();  // where they lived: the model's device, or the host with low_gpu_mem_usage
  size_t max_block_bytes = 0;   // the largest block's weights
  size_t frozen_block_bytes = 0;  // the largest block's frozen layers + dequantized weights, handed over at once
  // Set by run_quantize_job: bytes of frozen layers spilled to its temporary store, and this
  // process's peak RSS (VmHWM) once quantization and export are done (before --eval_text).
  size_t spill_bytes = 0;
  size_t peak_rss_bytes = 0;
  // What the pipeline itself needs resident at once: one block + the caches + one frozen block.
  size_t expected_peak_bytes() const { return max_block_bytes + cache_bytes + frozen_block_bytes; }
};

// The activation caches' dtype of a run on `device` with blocks computed in `compute`: the
// option when set; else bf16 on CUDA under a 16-bit compute dtype (AutoRound keeps its caches
// in the AMP dtype there: half the bytes of f32), f32 otherwise (the CPU's published figures).
DType resolved_cache_dtype(const PipelineOptions& o, const Device& device, DType compute);

// Whether a run with these options needs calibration data (SignRound does; RTN does not).
bool needs_calibration(const PipelineOptions& o);
// Whether calibration data, when given, is used: SignRound needs it; iters 0 uses it for
// opt-RTN's importance matrix (§3) unless disable_opt_rtn (pure RTN needs none).
bool uses_calibration(const PipelineOptions& o);

// ids: i64 [n, seqlen] (may be undefined when !needs_calibration; with iters 0 they feed
// opt-RTN's importance matrix when given); loss_mask: [n, seqlen] 0/1
// or undefined. Throws UsageError for invalid options before any block is touched.
PipelineResult quantize_blocks(const models::CausalLM& lm, const Tensor& ids, const Tensor& loss_mask,
                               const PipelineOptions& o);

// "block 3/5: quantized 4/7 layers, loss iter 0: a -> iter k: b, 12.3 s"
std::string block_log_line(const BlockLog& b, int64_t n_blocks);

// Peak resident set size of this process (VmHWM), 0 where unknown.
size_t peak_rss_bytes();

// ---- the whole job ------------------------------------------------------------------------

struct QuantizeJob {
  std::string model;                    // HF folder (or .gguf)
  std::string output_dir = "./tmp_autoround";
  std::string format = "auto_round";   // export.h formats, comma-separated, or "fake"
  bool overwrite = false;               // replace an existing output folder
  std::string dataset;                  // io/dataset.h syntax; required when calibrating
  int64_t nsamples = 128;
  int64_t seqlen = 2048;
  Device device = Device::cpu();
  std::optional<DType> model_dtype;     // compute dtype; unset: the model's own
  std::string eval_text;                // perplexity of FP and quantized model on this file
  // Frozen layers go to a temporary folder beside the output (removed at the end, also on
  // error) and are read back one layer at a time by the export: peak memory stays one block.
  // false: kept in memory until the export (the pipeline's PipelineResult::quantized/weights).
  bool spill_frozen = true;
  int64_t eval_seqlen = 0;              // 0: seqlen
  PipelineOptions pipeline;
};

// The dtype the blocks run in (spec §1.1, §1.10, AutoRound's AMP): --model_dtype when given; on
// a CUDA device the model's 16-bit dtype, or bf16 for an f32 model (autocast: the loss and
// V/α/β stay f32); on the CPU the stored dtype. Reads only the model's metadata.
DType job_compute_dtype(const QuantizeJob& job);

struct QuantizeJobResult {
  std::string output_folder;
  PipelineResult pipeline;
  double fp_ppl = 0, q_ppl = 0;         // when eval_text is given
  int64_t eval_tokens = 0;
  int64_t n_quantized_layers = 0;
  size_t eval_peak_rss_bytes = 0;       // VmHWM during --eval_text (0 without it, or where unknown)
  DType compute_dtype = DType::f32;     // job_compute_dtype(job)
  // On a CUDA device: the caching allocator's peak bytes in use during quantization and export
  // (before --eval_text); 0 on the CPU.
  size_t device_peak_bytes = 0;
  double seconds = 0;
};

// Checks the job (UsageError naming the flag), then loads, calibrates, quantizes, writes
// `output_dir/<model>-w{bits}g{group}` and evaluates.
void validate_job(const QuantizeJob& job);
QuantizeJobResult run_quantize_job(const QuantizeJob& job);

}  // namespace arq::quant
