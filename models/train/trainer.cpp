#include "models/train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numbers>

#include "autograd/loss.h"
#include "autograd/ops.h"
#include "autograd/optim.h"
#include "engine/ops.h"
#include "io/dataset.h"
#include "models/blocks/layers.h"
#include "models/family.h"
#include "models/random_model.h"

namespace arq::models {

namespace {

bool ends_with(const std::string& s, const char* suffix) {
  const std::string x = suffix;
  return s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0;
}

}  // namespace

DecoderSpec demo_spec(const std::string& model_type, int64_t vocab_size, int64_t max_positions, DemoScale scale) {
  DecoderSpec s = tiny_spec(model_type);   // the family's flags (biases, q/k norm, tied embeddings)
  const bool small = scale == DemoScale::small;
  s.vocab_size = vocab_size;
  s.hidden_size = small ? 128 : 256;
  s.intermediate_size = small ? 384 : 768;
  s.num_hidden_layers = small ? 2 : 4;
  s.num_attention_heads = small ? 2 : 4;
  s.num_key_value_heads = small ? 1 : 2;
  s.head_dim = 64;
  s.rope.dim = 64;
  s.rope.max_position_embeddings = max_positions;
  s.bos_token_id = 1;
  s.eos_token_ids = {2};
  // Mistral's sliding window, scaled to the demo context so that the windowed path is used.
  s.sliding_window.assign(static_cast<size_t>(s.num_hidden_layers), model_type == "mistral" ? std::max<int64_t>(1, max_positions / 2) : 0);
  s.validate();
  return s;
}

double train_flops_per_token(const DecoderSpec& s, int64_t seqlen) {
  const double H = static_cast<double>(s.hidden_size), I = static_cast<double>(s.intermediate_size);
  const double per_layer_weights = H * static_cast<double>(s.q_dim() + 2 * s.kv_dim()) +
                                   static_cast<double>(s.q_dim()) * H + 3 * H * I;
  const double head = static_cast<double>(s.vocab_size) * H;   // lm_head GEMM (the embedding is a gather)
  // scores q·k and the weighted sum of v: 2 · nh·hd per key each, seqlen/2 keys on average (causal)
  const double attn = 2.0 * 2.0 * static_cast<double>(s.q_dim()) * static_cast<double>(seqlen) / 2.0;
  const double fwd = 2.0 * (static_cast<double>(s.num_hidden_layers) * per_layer_weights + head) +
                     static_cast<double>(s.num_hidden_layers) * attn;
  return 3.0 * fwd;
}

// ---- TrainableLM ------------------------------------------------------------------------------

TrainableLM::TrainableLM(DecoderSpec spec, const InitOptions& init) : spec_(std::move(spec)) {
  spec_.validate();
  source_ = random_weights(spec_, {.seed = init.seed, .dtype = DType::f32, .stddev = init.stddev});
  source_->set_origin(cat("demo ", spec_.model_type, " model (training)"));
  const double residual_scale = init.scale_residual ? 1.0 / std::sqrt(2.0 * static_cast<double>(spec_.num_hidden_layers)) : 1.0;
  for (const std::string& n : source_->names()) {
    Tensor t = source_->get(n);
    if (ends_with(n, ".bias")) fill_(t, 0.0);   // untrained constants: start (and stay) neutral
    else if (ends_with(n, "o_proj.weight") || ends_with(n, "down_proj.weight")) copy_(t, t * residual_scale);
  }
  lm_ = std::make_unique<CausalLM>(spec_, source_);

  // Leaves over the very tensors the source holds: the optimizer updates them in place, so the
  // source (and any CausalLM over it) always sees the current weights.
  embed_ = ag::Var(source_->get("model.embed_tokens.weight"), true);
  params_.push_back(embed_);
  if (spec_.tie_word_embeddings) {
    lm_head_ = embed_;
  } else {
    lm_head_ = ag::Var(source_->get("lm_head.weight"), true);
    params_.push_back(lm_head_);
  }
  for (int64_t i = 0; i < spec_.num_hidden_layers; ++i) {
    BlockWeights bw;
    bw.layer = i;
    for (const std::string& n : lm_->block_tensor_names(i)) bw.tensors.emplace(n, source_->get(n));
    WeightOverrides ov;
    for (const LinearInfo& l : lm_->block_linears(i)) {
      ag::Var w(source_->get(l.weight_name()), true);
      ov.emplace(l.name, w);
      params_.push_back(w);
    }
    blocks_.push_back(std::move(bw));
    linears_.push_back(std::move(ov));
  }
}

int64_t TrainableLM::num_parameters() const {
  int64_t n = 0;
  for (const std::string& name : source_->names()) n += shape_numel(*source_->shape(name));
  return n;
}

ag::Var TrainableLM::loss(const Tensor& inputs, const Tensor& targets) const {
  ARQ_CHECK(inputs.dim() == 2 && targets.shape() == inputs.shape(), ShapeError,
            "TrainableLM::loss: inputs and targets must both be [batch, seq], got ", inputs.str(), " and ",
            targets.str());
  const int64_t b = inputs.size(0), s = inputs.size(1);
  ARQ_CHECK(s <= spec_.rope.max_position_embeddings, ShapeError, "TrainableLM::loss: sequence length ", s,
            " exceeds max_position_embeddings ", spec_.rope.max_position_embeddings);
  if (b != inputs_batch_ || s != inputs_seq_) {
    inputs_ = lm_->block_inputs({.batch = b, .seq = s});
    inputs_batch_ = b;
    inputs_seq_ = s;
  }
  ag::Var x = ag::embedding(embed_, inputs.to(DType::i64));   // [b, s, H]
  for (int64_t i = 0; i < spec_.num_hidden_layers; ++i)
    x = lm_->block_forward(blocks_[static_cast<size_t>(i)], x, inputs_, linears_[static_cast<size_t>(i)]);
  ag::Var h = models::rms_norm(x, ag::Var(source_->get("model.norm.weight")), spec_.rms_norm_eps);   // [b, s, H]
  ag::Var logits = models::linear(ag::reshape(h, {b * s, spec_.hidden_size}), lm_head_);            // [b·s, V]
  return ag::cross_entropy(logits, targets.reshape({b * s}).to(DType::i64));
}

CausalLM TrainableLM::model() const { return CausalLM(spec_, source_); }

// ---- training loop -----------------------------------------------------------------------------

double warmup_cosine_lr(int64_t step, int64_t steps, int64_t warmup, double peak, double min_ratio) {
  if (warmup > 0 && step < warmup) return peak * static_cast<double>(step + 1) / static_cast<double>(warmup);
  const int64_t decay = std::max<int64_t>(1, steps - 1 - warmup);
  const double t = std::clamp(static_cast<double>(step - warmup) / static_cast<double>(decay), 0.0, 1.0);
  const double cosine = 0.5 * (1.0 + std::cos(std::numbers::pi * t));   // 1 -> 0
  return peak * (min_ratio + (1.0 - min_ratio) * cosine);
}

namespace {

// Rows of `seqlen` consecutive tokens; each epoch starts at a fresh offset and visits the rows
// in a new shuffled order.
class RowSampler {
 public:
  RowSampler(const std::vector<int32_t>& stream, int64_t seqlen, uint64_t seed)
      : stream_(stream), seqlen_(seqlen), state_(seed * 0x9E3779B97F4A7C15ULL + 0x2545F4914F6CDD1DULL) {
    new_epoch();
  }
  // Start of the next row.
  int64_t next() {
    if (pos_ >= rows_.size()) new_epoch();
    return rows_[pos_++];
  }

 private:
  void new_epoch() {
    const auto n = static_cast<int64_t>(stream_.size());
    const int64_t span = std::min(seqlen_, n - seqlen_ + 1);   // offsets that leave at least one row
    const auto offset = static_cast<int64_t>(io::seeded_below(state_, static_cast<uint64_t>(span)));
    rows_.clear();
    for (int64_t o = offset; o + seqlen_ <= n; o += seqlen_) rows_.push_back(o);
    io::seeded_shuffle(rows_, io::seeded_below(state_, ~0ULL));
    pos_ = 0;
  }
  const std::vector<int32_t>& stream_;
  int64_t seqlen_;
  uint64_t state_;
  std::vector<int64_t> rows_;
  size_t pos_ = 0;
};

}  // namespace

TrainResult train_lm(TrainableLM& model, const std::vector<int32_t>& stream, int32_t bos, const TrainOptions& o) {
  const DecoderSpec& spec = model.spec();
  ARQ_CHECK(o.steps >= 1 && o.batch_size >= 1 && o.seqlen >= 2, UsageError, "train_lm: steps (", o.steps,
            "), batch_size (", o.batch_size, ") must be >= 1 and seqlen (", o.seqlen, ") >= 2");
  ARQ_CHECK(static_cast<int64_t>(stream.size()) >= o.seqlen, UsageError, "train_lm: the training text has ",
            stream.size(), " tokens, fewer than one row of seqlen ", o.seqlen);
  ARQ_CHECK(bos >= 0 && bos < spec.vocab_size, UsageError, "train_lm: bos id ", bos, " outside the vocabulary of ",
            spec.vocab_size);
  for (int32_t t : stream)
    ARQ_CHECK(t >= 0 && t < spec.vocab_size, UsageError, "train_lm: token id ", t, " outside the vocabulary of ",
              spec.vocab_size);

  const int64_t warmup = o.warmup_steps >= 0 ? o.warmup_steps : std::min<int64_t>(100, o.steps / 10);
  ag::AdamW opt(model.parameters(), o.lr,
                {.beta1 = o.beta1, .beta2 = o.beta2, .eps = 1e-8, .weight_decay = o.weight_decay});
  RowSampler rows(stream, o.seqlen, o.seed);
  TrainResult r;
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t b = o.batch_size, s = o.seqlen;
  for (int64_t step = 0; step < o.steps; ++step) {
    Tensor inputs = Tensor::empty({b, s}, DType::i64);    // [b, s]: BOS, t0 … t(s−2)
    Tensor targets = Tensor::empty({b, s}, DType::i64);   // [b, s]: t0 … t(s−1)
    int64_t* in = inputs.data<int64_t>();
    int64_t* tg = targets.data<int64_t>();
    for (int64_t i = 0; i < b; ++i) {
      const int64_t start = rows.next();
      in[i * s] = bos;
      for (int64_t j = 0; j < s; ++j) {
        tg[i * s + j] = stream[static_cast<size_t>(start + j)];
        if (j + 1 < s) in[i * s + j + 1] = stream[static_cast<size_t>(start + j)];
      }
    }
    const double lr = warmup_cosine_lr(step, o.steps, warmup, o.lr, o.min_lr_ratio);
    for (ag::ParamGroup& g : opt.groups()) g.lr = lr;

    double loss_value = 0;
    {
      ag::Var loss = model.loss(inputs, targets);
      loss_value = loss.value().item();
      ARQ_CHECK(std::isfinite(loss_value), Error, "train_lm: loss became ", loss_value, " at step ", step + 1,
                " (lr ", lr, "); lower --lr");
      ag::backward(loss);
    }
    const double gnorm = o.grad_clip > 0 ? ag::clip_grad_norm(model.parameters(), o.grad_clip) : 0.0;
    opt.step();
    opt.zero_grad();

    r.losses.push_back(loss_value);
    r.tokens += b * s;
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (o.on_step)
      o.on_step({.step = step + 1, .steps = o.steps, .loss = loss_value, .lr = lr, .grad_norm = gnorm,
                 .tokens = r.tokens, .seconds = r.seconds});
  }
  return r;
}

double unigram_perplexity(const std::vector<int32_t>& train, const std::vector<int32_t>& eval, int64_t vocab_size) {
  ARQ_CHECK(vocab_size > 0 && !eval.empty(), UsageError, "unigram_perplexity: needs a vocabulary and eval tokens");
  std::vector<double> count(static_cast<size_t>(vocab_size), 1.0);   // add-one smoothing
  for (int32_t t : train) {
    ARQ_CHECK(t >= 0 && t < vocab_size, UsageError, "unigram_perplexity: token ", t, " outside the vocabulary of ", vocab_size);
    count[static_cast<size_t>(t)] += 1.0;
  }
  const double total = static_cast<double>(train.size()) + static_cast<double>(vocab_size);
  double nll = 0;
  for (int32_t t : eval) {
    ARQ_CHECK(t >= 0 && t < vocab_size, UsageError, "unigram_perplexity: token ", t, " outside the vocabulary of ", vocab_size);
    nll -= std::log(count[static_cast<size_t>(t)] / total);
  }
  return std::exp(nll / static_cast<double>(eval.size()));
}

}  // namespace arq::models
