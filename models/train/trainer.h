// Training small causal language models from scratch with the project's autograd and AdamW:
// the demo model of `ar-quant demo`, and realistic test models of any supported family.
//
// The forward pass is the model's own: the embedding and the head are autograd ops here, and
// every decoder block runs through CausalLM::block_forward with its seven linear weights passed
// as trainable overrides, so a trained model is exactly what evaluation, quantization and export
// later load. Norm weights (and Qwen2 q/k/v biases, Qwen3 q/k norms) stay at their initial
// values (ones, zeros): block_forward takes substitutes for linear weights only, and a decoder
// trains fine with unit norm gains (the linears absorb the scale).
//
// Data: a token stream (no BOS) is cut into rows of `seqlen` tokens at a random offset per
// epoch, rows are visited in a seeded shuffled order, and each row is fed as
// [BOS, t0 … t(s−2)] predicting [t0 … t(s−1)] — the same BOS-prefixed windows that
// models::perplexity scores. Everything is deterministic for a given seed and thread count.
//
//   DecoderSpec spec = demo_spec("llama", 1024);
//   TrainableLM m(spec, {.seed = 1});
//   TrainResult r = train_lm(m, ids, /*bos=*/1, {.steps = 400, .batch_size = 8, .seqlen = 256});
//   CausalLM lm = m.model();                 // shares the trained tensors
//   save_pretrained(lm, "out");
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "autograd/var.h"
#include "models/causal_lm.h"
#include "models/tensor_source.h"

namespace arq::models {

// Sizes of the demo model. Every linear input dimension is a multiple of 128, so W4G128 and
// Q4_K groups tile every row.
enum class DemoScale : uint8_t {
  standard,  // hidden 256, intermediate 768, 4 layers, 4 heads of 64, 2 kv heads (3.7 M parameters at vocab 1024)
  small,     // hidden 128, intermediate 384, 2 layers, 2 heads of 64, 1 kv head (tests, quick looks)
};

// The demo shape of a family: RoPE theta of the family, max positions `max_positions`, the
// family's flags (biases, q/k norm, sliding window, tied embeddings) as in a real release.
// ConfigError for an unknown family.
DecoderSpec demo_spec(const std::string& model_type, int64_t vocab_size, int64_t max_positions = 256,
                      DemoScale scale = DemoScale::standard);

// Multiply-adds of one training token (forward + backward ≈ 3 × forward; forward = 2 FLOP per
// weight per token plus attention scores and values over `seqlen / 2` keys on average): used to
// size the token budget and to report FLOP/s.
double train_flops_per_token(const DecoderSpec& spec, int64_t seqlen);

struct InitOptions {
  uint64_t seed = 0;
  double stddev = 0.02;   // N(0, std) for linears and embeddings
  // o_proj and down_proj are scaled by 1/sqrt(2·layers) (GPT-2), so the residual stream's
  // variance does not grow with depth at initialization.
  bool scale_residual = true;
};

class TrainableLM {
 public:
  TrainableLM(DecoderSpec spec, const InitOptions& init = {});

  const DecoderSpec& spec() const { return spec_; }
  // The trainable leaves: embeddings, lm_head (unless tied), every block's seven linears.
  const std::vector<ag::Var>& parameters() const { return params_; }
  int64_t num_parameters() const;   // every tensor of the checkpoint, trained or not

  // Mean next-token cross-entropy of a batch: inputs, targets [b, s] integer tensors.
  ag::Var loss(const Tensor& inputs, const Tensor& targets) const;

  // A model over the same tensors (shared storage): evaluation, generation, saving.
  CausalLM model() const;
  std::shared_ptr<const MapSource> source() const { return source_; }

 private:
  DecoderSpec spec_;
  std::shared_ptr<MapSource> source_;
  std::unique_ptr<CausalLM> lm_;          // block_forward / block_inputs over source_
  std::vector<ag::Var> params_;
  ag::Var embed_, lm_head_;               // [V, H] (lm_head_ = embed_ when tied)
  std::vector<BlockWeights> blocks_;      // constants of each block (norms, biases)
  std::vector<WeightOverrides> linears_;  // trainable linears of each block, by module name
  mutable int64_t inputs_batch_ = 0, inputs_seq_ = 0;
  mutable BlockInputs inputs_;            // RoPE tables and masks of the last batch shape
};

// lr at step t (0-based) of `steps`: linear warm-up from peak/warmup to peak over `warmup`
// steps, then a half cosine from peak down to peak·min_ratio at the last step.
double warmup_cosine_lr(int64_t step, int64_t steps, int64_t warmup, double peak, double min_ratio);

struct TrainStep {
  int64_t step = 0;       // 1-based, after the update
  int64_t steps = 0;
  double loss = 0;        // of this step's batch, before the update
  double lr = 0;
  double grad_norm = 0;   // before clipping
  int64_t tokens = 0;     // trained so far
  double seconds = 0;     // since train_lm started
};

struct TrainOptions {
  int64_t steps = 100;          // optimizer steps; tokens = steps · batch_size · seqlen
  int64_t batch_size = 8;
  int64_t seqlen = 256;         // positions per row (BOS included)
  double lr = 3e-3;             // peak
  double min_lr_ratio = 0.1;
  int64_t warmup_steps = -1;    // −1: min(100, steps / 10)
  double weight_decay = 0.1;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double grad_clip = 1.0;       // global L2 norm; 0 = off
  uint64_t seed = 0;            // batch order
  std::function<void(const TrainStep&)> on_step{};
};

struct TrainResult {
  std::vector<double> losses;   // per step
  int64_t tokens = 0;
  double seconds = 0;
};

// Trains in place. `stream` must hold at least seqlen tokens (UsageError otherwise) with ids
// below the vocabulary size; `bos` is prepended to every row.
TrainResult train_lm(TrainableLM& model, const std::vector<int32_t>& stream, int32_t bos, const TrainOptions& options);

// Perplexity of an add-one-smoothed unigram model counted on `train`, scored on `eval`: the
// baseline a trained model must beat by a wide margin.
double unigram_perplexity(const std::vector<int32_t>& train, const std::vector<int32_t>& eval, int64_t vocab_size);

}  // namespace arq::models
