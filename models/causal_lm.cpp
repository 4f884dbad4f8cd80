#include "models/causal_lm.h"

#include <cmath>
#include <set>

#include "engine/ops.h"
#include "models/blocks/layers.h"
#include "models/blocks/rope.h"

namespace arq::models {

namespace {

struct Expected {
  std::string name;
  Shape shape;
  std::string why;   // config fields that imply the shape
};

std::string dims(const char* a, int64_t va) { return cat(a, " ", va); }

std::vector<Expected> expected_block(const DecoderSpec& s, const std::string& p) {
  const std::string H = dims("hidden_size", s.hidden_size);
  const std::string Q = cat("num_attention_heads ", s.num_attention_heads, " × head_dim ", s.head_dim);
  const std::string KV = cat("num_key_value_heads ", s.num_key_value_heads, " × head_dim ", s.head_dim);
  const std::string I = dims("intermediate_size", s.intermediate_size);
  std::vector<Expected> e = {
      {p + "input_layernorm.weight", {s.hidden_size}, H},
      {p + "self_attn.q_proj.weight", {s.q_dim(), s.hidden_size}, Q + ", " + H},
      {p + "self_attn.k_proj.weight", {s.kv_dim(), s.hidden_size}, KV + ", " + H},
      {p + "self_attn.v_proj.weight", {s.kv_dim(), s.hidden_size}, KV + ", " + H},
      {p + "self_attn.o_proj.weight", {s.hidden_size, s.q_dim()}, H + ", " + Q},
  };
  if (s.qkv_bias) {
    e.push_back({p + "self_attn.q_proj.bias", {s.q_dim()}, Q});
    e.push_back({p + "self_attn.k_proj.bias", {s.kv_dim()}, KV});
    e.push_back({p + "self_attn.v_proj.bias", {s.kv_dim()}, KV});
  }
  if (s.o_bias) e.push_back({p + "self_attn.o_proj.bias", {s.hidden_size}, H});
  if (s.qk_norm) {
    e.push_back({p + "self_attn.q_norm.weight", {s.head_dim}, dims("head_dim", s.head_dim)});
    e.push_back({p + "self_attn.k_norm.weight", {s.head_dim}, dims("head_dim", s.head_dim)});
  }
  e.push_back({p + "post_attention_layernorm.weight", {s.hidden_size}, H});
  e.push_back({p + "mlp.gate_proj.weight", {s.intermediate_size, s.hidden_size}, I + ", " + H});
  e.push_back({p + "mlp.up_proj.weight", {s.intermediate_size, s.hidden_size}, I + ", " + H});
  e.push_back({p + "mlp.down_proj.weight", {s.hidden_size, s.intermediate_size}, H + ", " + I});
  if (s.mlp_bias) {
    e.push_back({p + "mlp.gate_proj.bias", {s.intermediate_size}, I});
    e.push_back({p + "mlp.up_proj.bias", {s.intermediate_size}, I});
    e.push_back({p + "mlp.down_proj.bias", {s.hidden_size}, H});
  }
  return e;
}

std::vector<Expected> expected_globals(const DecoderSpec& s) {
  const std::string VH = cat("vocab_size ", s.vocab_size, ", hidden_size ", s.hidden_size);
  std::vector<Expected> e = {
      {"model.embed_tokens.weight", {s.vocab_size, s.hidden_size}, VH},
      {"model.norm.weight", {s.hidden_size}, dims("hidden_size", s.hidden_size)},
  };
  if (!s.tie_word_embeddings) e.push_back({"lm_head.weight", {s.vocab_size, s.hidden_size}, VH + ", tie_word_embeddings false"});
  return e;
}

// Position ids 0..s−1 per row, restarting at every change of segment id.
Tensor default_positions(const InputSpec& in) {
  Tensor pos = Tensor::empty({in.batch, in.seq}, DType::i64);
  int64_t* d = pos.data<int64_t>();
  std::vector<double> seg;
  if (in.segment_ids.defined()) seg = to_vector(in.segment_ids);
  for (int64_t b = 0; b < in.batch; ++b) {
    int64_t p = 0;
    for (int64_t t = 0; t < in.seq; ++t) {
      const size_t k = static_cast<size_t>(b * in.seq + t);
      if (!seg.empty() && t > 0 && seg[k] != seg[k - 1]) p = 0;
      d[b * in.seq + t] = p++;
    }
  }
  return pos;
}

std::set<int64_t> distinct_windows(const DecoderSpec& s) {
  std::set<int64_t> w;
  for (int64_t l = 0; l < s.num_hidden_layers; ++l) w.insert(s.window(l));
  return w;
}

}  // namespace

const Tensor& BlockWeights::at(const std::string& name) const {
  auto it = tensors.find(name);
  ARQ_ASSERT(it != tensors.end(), "block ", layer, " has no tensor ", name);
  return it->second;
}

const Tensor* BlockWeights::find(const std::string& name) const {
  auto it = tensors.find(name);
  return it == tensors.end() ? nullptr : &it->second;
}

size_t BlockWeights::nbytes() const {
  size_t n = 0;
  for (const auto& kv : tensors) n += kv.second.nbytes();
  return n;
}

const Tensor& BlockInputs::mask_for(int64_t window) const {
  auto it = masks.find(window);
  ARQ_CHECK(it != masks.end(), UsageError, "BlockInputs has no mask for sliding window ", window,
            " (built for another model?)");
  return it->second;
}

CausalLM::CausalLM(DecoderSpec spec, std::shared_ptr<const TensorSource> source, LoadOptions options)
    : spec_(std::move(spec)), source_(std::move(source)), options_(options) {
  ARQ_CHECK(source_ != nullptr, UsageError, "CausalLM needs a tensor source");
  spec_.validate();
  validate_tensors();
  if (options_.dtype) {
    dtype_ = *options_.dtype;
  } else {
    // The stored dtype of the embedding table; non-float storage computes in f32.
    dtype_ = source_->get("model.embed_tokens.weight").dtype();
    if (!is_floating(dtype_)) dtype_ = DType::f32;
  }
  ARQ_CHECK(dtype_ == DType::f32 || dtype_ == DType::bf16 || dtype_ == DType::f16 || dtype_ == DType::f64, DTypeError,
            "compute dtype must be f32, bf16, f16 or f64, got ", dtype_name(dtype_));
  resident_.resize(static_cast<size_t>(spec_.num_hidden_layers));
}

void CausalLM::validate_tensors() const {
  auto check = [&](const Expected& e, int64_t layer) {
    std::optional<Shape> got = source_->shape(e.name);
    if (!got) {
      if (layer >= 0)
        throw ConfigError(cat("layer ", layer, " is incomplete: tensor '", e.name, "' is missing from ", source_->origin(),
                              " (config: num_hidden_layers ", spec_.num_hidden_layers, ", model_type ", spec_.model_type,
                              ")"));
      throw ConfigError(cat("tensor '", e.name, "' is missing from ", source_->origin(), " (model_type ",
                            spec_.model_type, ")"));
    }
    if (*got != e.shape)
      throw ConfigError(cat("tensor '", e.name, "' in ", source_->origin(), " has shape ", shape_str(*got),
                            ", but the config implies ", shape_str(e.shape), " (", e.why, ")"));
  };
  for (const Expected& e : expected_globals(spec_)) check(e, -1);
  for (int64_t i = 0; i < spec_.num_hidden_layers; ++i)
    for (const Expected& e : expected_block(spec_, block_prefix(i))) check(e, i);
}

std::string CausalLM::block_prefix(int64_t i) const { return cat("model.layers.", i, "."); }

std::vector<LinearInfo> CausalLM::block_linears(int64_t i) const {
  ARQ_CHECK(i >= 0 && i < spec_.num_hidden_layers, UsageError, "block ", i, " out of range [0, ",
            spec_.num_hidden_layers, ")");
  const std::string p = block_prefix(i);
  const DecoderSpec& s = spec_;
  return {
      {p + "self_attn.q_proj", s.hidden_size, s.q_dim(), s.qkv_bias},
      {p + "self_attn.k_proj", s.hidden_size, s.kv_dim(), s.qkv_bias},
      {p + "self_attn.v_proj", s.hidden_size, s.kv_dim(), s.qkv_bias},
      {p + "self_attn.o_proj", s.q_dim(), s.hidden_size, s.o_bias},
      {p + "mlp.gate_proj", s.hidden_size, s.intermediate_size, s.mlp_bias},
      {p + "mlp.up_proj", s.hidden_size, s.intermediate_size, s.mlp_bias},
      {p + "mlp.down_proj", s.intermediate_size, s.hidden_size, s.mlp_bias},
  };
}

std::vector<std::string> CausalLM::block_tensor_names(int64_t i) const {
  ARQ_CHECK(i >= 0 && i < spec_.num_hidden_layers, UsageError, "block ", i, " out of range [0, ",
            spec_.num_hidden_layers, ")");
  std::vector<std::string> names;
  for (const Expected& e : expected_block(spec_, block_prefix(i))) names.push_back(e.name);
  return names;
}

Tensor CausalLM::fetch(const std::string& name) const {
  Tensor t = source_->get(name);
  if (t.dtype() != dtype_) t = t.to(dtype_);
  if (t.device() != options_.device) t = t.to(options_.device);
  return t;
}

BlockWeights CausalLM::load_block(int64_t i) const {
  BlockWeights w;
  w.layer = i;
  for (const std::string& n : block_tensor_names(i)) w.tensors.emplace(n, fetch(n));
  return w;
}

std::shared_ptr<const BlockWeights> CausalLM::resident_block(int64_t i) const {
  auto& slot = resident_[static_cast<size_t>(i)];
  if (slot) return slot;
  auto w = std::make_shared<BlockWeights>(load_block(i));
  if (keep_resident_) slot = w;
  return w;
}

void CausalLM::set_keep_resident(bool on) {
  keep_resident_ = on;
  if (!on)
    for (auto& r : resident_) r.reset();
}

BlockInputs CausalLM::block_inputs(const InputSpec& in) const {
  ARQ_CHECK(in.batch > 0 && in.seq > 0, ShapeError, "block_inputs: batch and seq must be positive, got batch ",
            in.batch, ", seq ", in.seq);
  auto check_bs = [&](const Tensor& t, const char* what) {
    ARQ_CHECK(!t.defined() || (t.dim() == 2 && t.size(0) == in.batch && t.size(1) == in.seq), ShapeError,
              "block_inputs: ", what, " must be [", in.batch, ", ", in.seq, "], got ", t.str());
  };
  check_bs(in.padding_mask, "padding_mask");
  check_bs(in.segment_ids, "segment_ids");
  BlockInputs out;
  out.batch = in.batch;
  out.seq = in.seq;
  if (in.position_ids.defined()) {
    Tensor p = in.position_ids.dim() == 1 ? in.position_ids.unsqueeze(0).expand({in.batch, in.seq}) : in.position_ids;
    check_bs(p, "position_ids");
    out.position_ids = p.to(Device::cpu()).to(DType::i64).contiguous();
  } else {
    out.position_ids = default_positions(in);
  }
  RopeTables t = rope_tables(spec_.rope, out.position_ids, dtype_, options_.device);
  out.cos = t.cos;
  out.sin = t.sin;
  for (int64_t w : distinct_windows(spec_)) {
    MaskSpec m{.q_len = in.seq, .kv_len = in.seq, .window = w, .key_padding = in.padding_mask,
               .segment_ids = in.segment_ids};
    out.masks[w] = attention_mask(m).to(options_.device);
  }
  // Without segments, and with no padded position, the masks are the causal structure alone.
  bool structural = !in.segment_ids.defined();
  if (structural && in.padding_mask.defined())
    for (double x : to_vector(in.padding_mask)) structural = structural && x != 0;
  out.masks_structural = structural;
  return out;
}

ag::Var CausalLM::block_forward(const BlockWeights& w, const ag::Var& hidden, const BlockInputs& in,
                                const WeightOverrides& overrides, KvCacheLayer* cache,
                                const LinearObserver* observer) const {
  const int64_t i = w.layer;
  ARQ_CHECK(i >= 0 && i < spec_.num_hidden_layers, UsageError, "block_forward: BlockWeights of layer ", i,
            " out of range [0, ", spec_.num_hidden_layers, ")");
  ARQ_CHECK(hidden.dim() == 3 && hidden.size(2) == spec_.hidden_size, ShapeError, "block_forward(", i,
            "): hidden states must be [batch, seq, ", spec_.hidden_size, "], got ", hidden.str());
  ARQ_CHECK(hidden.size(0) == in.batch && hidden.size(1) == in.seq, ShapeError, "block_forward(", i,
            "): hidden states ", hidden.str(), " do not match BlockInputs [", in.batch, ", ", in.seq, "]");
  const std::vector<LinearInfo> linears = block_linears(i);
  for (const auto& kv : overrides) {
    bool known = false;
    for (const LinearInfo& l : linears) known = known || l.name == kv.first;
    ARQ_CHECK(known, UsageError, "block_forward(", i, "): override '", kv.first, "' is not a linear layer of block ", i,
              " (expected a name like ", linears.front().name, ")");
  }
  auto weight = [&](const LinearInfo& l) -> ag::Var {
    auto it = overrides.find(l.name);
    if (it == overrides.end()) return ag::Var(w.at(l.weight_name()));
    const ag::Var& v = it->second;
    ARQ_CHECK(v.dim() == 2 && v.size(0) == l.out_features && v.size(1) == l.in_features, ShapeError,
              "block_forward(", i, "): override for ", l.name, " is ", v.str(), ", expected [", l.out_features, ", ",
              l.in_features, "]");
    return v.dtype() == hidden.dtype() ? v : ag::cast(v, hidden.dtype());
  };
  auto bias = [&](const LinearInfo& l) -> ag::Var { return l.has_bias ? ag::Var(w.at(l.bias_name())) : ag::Var(); };
  auto tensor = [&](const std::string& leaf) { return ag::Var(w.at(block_prefix(i) + leaf)); };

  AttentionWeights aw{.q = weight(linears[0]), .k = weight(linears[1]), .v = weight(linears[2]),
                      .o = weight(linears[3]), .q_bias = bias(linears[0]), .k_bias = bias(linears[1]),
                      .v_bias = bias(linears[2]), .o_bias = bias(linears[3])};
  if (spec_.qk_norm) {
    aw.q_norm = tensor("self_attn.q_norm.weight");
    aw.k_norm = tensor("self_attn.k_norm.weight");
  }
  AttentionParams ap{.n_head = spec_.num_attention_heads, .n_head_kv = spec_.num_key_value_heads,
                     .head_dim = spec_.head_dim, .rotary_dim = spec_.rope.dim, .rope_style = spec_.rope.style,
                     .scaling = 1.0 / std::sqrt(static_cast<double>(spec_.head_dim)), .norm_eps = spec_.rms_norm_eps};
  AttentionInputs ai{.cos = in.cos, .sin = in.sin, .mask = in.mask_for(spec_.window(i)),
                     .structural_mask = in.masks_structural, .window = spec_.window(i)};
  MlpWeights mw{.gate = weight(linears[4]), .up = weight(linears[5]), .down = weight(linears[6]),
                .gate_bias = bias(linears[4]), .up_bias = bias(linears[5]), .down_bias = bias(linears[6])};

  // The blocks name their linears locally ("q_proj"); the observer gets full module names.
  LinearObserver attn_obs, mlp_obs;
  if (observer) {
    const std::string p = block_prefix(i);
    attn_obs = [&, p](const std::string& local, const Tensor& x) { (*observer)(p + "self_attn." + local, x); };
    mlp_obs = [&, p](const std::string& local, const Tensor& x) { (*observer)(p + "mlp." + local, x); };
  }

  ag::Var a = models::rms_norm(hidden, tensor("input_layernorm.weight"), spec_.rms_norm_eps);
  ag::Var h = ag::add(hidden, attention(a, aw, ap, ai, cache, observer ? &attn_obs : nullptr));
  ag::Var m = models::rms_norm(h, tensor("post_attention_layernorm.weight"), spec_.rms_norm_eps);
  return ag::add(h, swiglu_mlp(m, mw, observer ? &mlp_obs : nullptr));
}

Tensor CausalLM::embed(const Tensor& ids) const {
  ARQ_CHECK(ids.dim() == 2 && is_integral(ids.dtype()), ShapeError, "embed: ids must be an integer [batch, seq] tensor, got ",
            ids.str());
  for (double v : to_vector(ids))
    ARQ_CHECK(v >= 0 && v < static_cast<double>(spec_.vocab_size), ShapeError, "embed: token id ", v,
              " out of range [0, ", spec_.vocab_size, ")");
  if (!embed_.defined()) embed_ = fetch("model.embed_tokens.weight");
  return embedding(embed_, ids.to(options_.device));   // [b, s, H]
}

Tensor CausalLM::final_norm(const Tensor& hidden) const {
  ARQ_CHECK(hidden.dim() == 3 && hidden.size(2) == spec_.hidden_size, ShapeError, "final_norm: hidden states must be [batch, seq, ",
            spec_.hidden_size, "], got ", hidden.str());
  if (!norm_.defined()) norm_ = fetch("model.norm.weight");
  ag::NoGrad ng;
  const Tensor x = hidden.dtype() == dtype_ ? hidden : hidden.to(dtype_);
  return models::rms_norm(ag::Var(x), ag::Var(norm_), spec_.rms_norm_eps).value();
}

Tensor CausalLM::head(const Tensor& hidden) const {
  if (!norm_.defined()) norm_ = fetch("model.norm.weight");
  if (!lm_head_.defined()) {
    if (spec_.tie_word_embeddings) {
      if (!embed_.defined()) embed_ = fetch("model.embed_tokens.weight");
      lm_head_ = embed_;
    } else {
      lm_head_ = fetch("lm_head.weight");
    }
  }
  ag::NoGrad ng;
  ag::Var h = models::rms_norm(ag::Var(hidden), ag::Var(norm_), spec_.rms_norm_eps);
  Tensor logits = linear(h, ag::Var(lm_head_)).value();   // [b, s, V]
  return logits.dtype() == DType::f32 ? logits : logits.to(DType::f32);
}

Tensor CausalLM::forward(const Tensor& ids) const {
  ag::NoGrad ng;
  Tensor h = embed(ids);
  const BlockInputs in = block_inputs({.batch = ids.size(0), .seq = ids.size(1)});
  for (int64_t i = 0; i < spec_.num_hidden_layers; ++i) h = block_forward(*resident_block(i), ag::Var(h), in).value();
  return head(h);
}

KvCache CausalLM::new_cache(int64_t batch, int64_t capacity) const {
  ARQ_CHECK(batch > 0 && capacity > 0, ShapeError, "new_cache: batch and capacity must be positive, got ", batch, ", ",
            capacity);
  KvCache c;
  c.capacity = capacity;
  for (int64_t i = 0; i < spec_.num_hidden_layers; ++i) {
    KvCacheLayer l;
    l.k = zeros({batch, spec_.num_key_value_heads, capacity, spec_.head_dim}, dtype_, options_.device);
    l.v = zeros({batch, spec_.num_key_value_heads, capacity, spec_.head_dim}, dtype_, options_.device);
    c.layers.push_back(std::move(l));
  }
  return c;
}

Tensor CausalLM::forward(const Tensor& ids, KvCache& cache) const {
  ARQ_CHECK(static_cast<int64_t>(cache.layers.size()) == spec_.num_hidden_layers, UsageError,
            "forward: KV cache has ", cache.layers.size(), " layers, model has ", spec_.num_hidden_layers);
  ag::NoGrad ng;
  const int64_t b = ids.size(0), s = ids.size(1), past = cache.length();
  ARQ_CHECK(past + s <= cache.capacity, ShapeError, "forward: KV cache full (", past, " cached + ", s, " new > capacity ",
            cache.capacity, ")");
  Tensor h = embed(ids);
  BlockInputs in;
  in.batch = b;
  in.seq = s;
  in.position_ids = arange(static_cast<double>(past), static_cast<double>(past + s)).unsqueeze(0);   // [1, s]
  RopeTables t = rope_tables(spec_.rope, in.position_ids, dtype_, options_.device);
  in.cos = t.cos;
  in.sin = t.sin;
  for (int64_t w : distinct_windows(spec_))
    in.masks[w] = attention_mask({.q_len = s, .kv_len = past + s, .window = w}).to(options_.device);
  in.masks_structural = true;
  for (int64_t i = 0; i < spec_.num_hidden_layers; ++i)
    h = block_forward(*resident_block(i), ag::Var(h), in, {}, &cache.layers[static_cast<size_t>(i)]).value();
  return head(h);
}

}  // namespace arq::models
