#include "models/blocks/attention.h"

#include <string>
#include <vector>

#include "autograd/attention.h"
#include "models/blocks/layers.h"

namespace arq::models {

namespace {

// RoPE over the first `rot` dims of x [b, s, heads, hd]; the rest passes through.
ag::Var apply_rope(const ag::Var& x, const AttentionParams& p, const AttentionInputs& in) {
  const int64_t hd = p.head_dim, rot = p.rotary_dim;
  if (rot == hd) return ag::rope(x, in.cos, in.sin, p.rope_style);
  ag::Var x_rot = ag::narrow(x, -1, 0, rot);
  ag::Var x_pass = ag::narrow(x, -1, rot, hd - rot);
  return ag::concat({ag::rope(x_rot, in.cos, in.sin, p.rope_style), x_pass}, -1);
}

// Below this many bytes of f32 scores [b, nh, s, s_kv] the composition is used: the whole
// score matrix is small, and the chunked op's extra launches and its recomputing backward cost
// more than they save (stories260k's SignRound blocks, 16 MiB of scores, ran 1.6x slower chunked).
constexpr double kChunkedFromScoreBytes = 32.0 * (1 << 20);

// ARQ_ATTENTION=composed / =chunked: that path everywhere (A/B runs of whole models); the
// chunked one also when ARQ_ATTENTION_CHUNK_ROWS forces a chunk size; else by the score bytes.
bool use_composed_attention(int64_t b, int64_t nh, int64_t s, int64_t skv) {
  const ag::AttentionEnv& env = ag::attention_env();
  if (env.composed) return true;
  if (env.chunked || env.chunk_rows_set) return false;
  return 4.0 * static_cast<double>(b) * static_cast<double>(nh) * static_cast<double>(s) * static_cast<double>(skv) <
         kChunkedFromScoreBytes;
}

}  // namespace

static_assert(kMaskedScore == ag::kAttentionMaskedScore, "attention_mask and attention_core: one masked value");

ag::Var attention(const ag::Var& x, const AttentionWeights& w, const AttentionParams& p, const AttentionInputs& in,
                  KvCacheLayer* cache, const LinearObserver* observe) {
  ARQ_CHECK(x.dim() == 3, ShapeError, "[attention] hidden states must be [batch, seq, hidden], got ", x.str());
  const int64_t b = x.size(0), s = x.size(1);
  const int64_t nh = p.n_head, nkv = p.n_head_kv, hd = p.head_dim;
  ARQ_ASSERT(nh > 0 && nkv > 0 && nh % nkv == 0, "n_head ", nh, " is not a multiple of n_head_kv ", nkv);
  ARQ_ASSERT(p.rotary_dim > 0 && p.rotary_dim <= hd && p.rotary_dim % 2 == 0, "bad rotary_dim ", p.rotary_dim);

  if (observe)
    for (const char* name : {"q_proj", "k_proj", "v_proj"}) (*observe)(name, x.value());
  ag::Var q = ag::reshape(linear(x, w.q, w.q_bias), {b, s, nh, hd});    // [b, s, nh, hd]
  ag::Var k = ag::reshape(linear(x, w.k, w.k_bias), {b, s, nkv, hd});   // [b, s, nkv, hd]
  ag::Var v = ag::reshape(linear(x, w.v, w.v_bias), {b, s, nkv, hd});   // [b, s, nkv, hd]
  if (w.q_norm.defined()) q = models::rms_norm(q, w.q_norm, p.norm_eps);        // Qwen3: per head, before RoPE
  if (w.k_norm.defined()) k = models::rms_norm(k, w.k_norm, p.norm_eps);
  q = apply_rope(q, p, in);
  k = apply_rope(k, p, in);

  q = ag::permute(q, {0, 2, 1, 3});   // [b, nh, s, hd]
  k = ag::permute(k, {0, 2, 1, 3});   // [b, nkv, s, hd]
  v = ag::permute(v, {0, 2, 1, 3});   // [b, nkv, s, hd]

  if (cache) {
    ARQ_CHECK(!ag::grad_enabled() || !(k.requires_grad() || v.requires_grad()), UsageError,
              "[attention] the KV cache is for generation; disable gradients (ag::NoGrad)");
    ARQ_CHECK(cache->k.defined() && cache->k.size(0) == b && cache->k.size(1) == nkv && cache->k.size(3) == hd,
              ShapeError, "[attention] KV cache ", cache->k.str(), " does not fit batch ", b, ", kv heads ", nkv,
              ", head_dim ", hd);
    const int64_t past = cache->length;
    ARQ_CHECK(past + s <= cache->k.size(2), ShapeError, "[attention] KV cache full: ", past, " + ", s,
              " positions > capacity ", cache->k.size(2));
    Tensor kdst = cache->k.narrow(2, past, s), vdst = cache->v.narrow(2, past, s);
    copy_(kdst, k.value());
    copy_(vdst, v.value());
    cache->length = past + s;
    k = ag::Var(cache->k.narrow(2, 0, past + s));   // [b, nkv, s_kv, hd]
    v = ag::Var(cache->v.narrow(2, 0, past + s));
  }
  const int64_t skv = k.size(2);
  if (in.mask.defined())
    ARQ_CHECK(in.mask.dim() == 4 && in.mask.size(2) == s && in.mask.size(3) == skv &&
                  (in.mask.size(0) == b || in.mask.size(0) == 1),
              ShapeError, "[attention] mask ", in.mask.str(), " does not fit batch ", b, ", queries ", s, ", keys ", skv);

  // Without a cache (calibration, tuning, evaluation, training) and with 32 MiB of scores or
  // more, the chunked attention: it never holds the [b, nh, s, s_kv] scores and skips the tiles
  // the mask hides (the future half of a causal mask). Generation (with a cache) and small
  // problems keep the composition. Both return [b, nh, s, hd];
  // attention_core's is a view of [b, s, nh, hd] memory, so o_proj's input costs no copy.
  const ag::AttentionOptions ao{.scaling = p.scaling, .mask = in.mask};
  const ag::AttentionOptions flash{.scaling = p.scaling, .causal = true, .window = in.window};
  ag::Var o;
  if (!cache && in.structural_mask && ag::attention_flash_applies(q, k, v, flash))
    o = ag::attention_flash(q, k, v, flash);
  else
    o = (cache || use_composed_attention(b, nh, s, skv)) ? ag::attention_composed(q, k, v, ao)
                                                         : ag::attention_core(q, k, v, ao);
  o = ag::reshape(ag::permute(o, {0, 2, 1, 3}), {b, s, nh * hd});
  if (observe) (*observe)("o_proj", o.value());
  return linear(o, w.o, w.o_bias);                                  // [b, s, H]
}

Tensor attention_mask(const MaskSpec& spec) {
  const int64_t sq = spec.q_len, skv = spec.kv_len;
  ARQ_CHECK(sq > 0 && skv >= sq, ShapeError, "[attention_mask] need 0 < q_len <= kv_len, got q_len ", sq, ", kv_len ",
            skv);
  int64_t b = 1;
  std::vector<double> pad, seg;
  if (spec.key_padding.defined()) {
    ARQ_CHECK(spec.key_padding.dim() == 2 && spec.key_padding.size(1) == skv, ShapeError,
              "[attention_mask] key_padding must be [batch, ", skv, "], got ", spec.key_padding.str());
    b = spec.key_padding.size(0);
    pad = to_vector(spec.key_padding);
  }
  if (spec.segment_ids.defined()) {
    ARQ_CHECK(spec.segment_ids.dim() == 2 && spec.segment_ids.size(1) == skv &&
                  (b == 1 || spec.segment_ids.size(0) == b),
              ShapeError, "[attention_mask] segment_ids must be [batch, ", skv, "], got ", spec.segment_ids.str());
    b = spec.segment_ids.size(0);
    seg = to_vector(spec.segment_ids);
  }
  const int64_t pb = spec.key_padding.defined() ? spec.key_padding.size(0) : 0;
  Tensor m = Tensor::empty({b, 1, sq, skv}, DType::f32);
  float* d = m.data<float>();
  const int64_t past = skv - sq;
  for (int64_t n = 0; n < b; ++n)
    for (int64_t i = 0; i < sq; ++i) {
      const int64_t qi = past + i;   // absolute position of query i
      float* row = d + (n * sq + i) * skv;
      for (int64_t j = 0; j < skv; ++j) {
        bool ok = j <= qi;
        if (spec.window > 0) ok = ok && j > qi - spec.window;
        if (!pad.empty()) ok = ok && pad[static_cast<size_t>((pb == 1 ? 0 : n) * skv + j)] != 0;
        if (!seg.empty()) ok = ok && seg[static_cast<size_t>(n * skv + j)] == seg[static_cast<size_t>(n * skv + qi)];
        row[j] = ok ? 0.0f : kMaskedScore;
      }
    }
  return m;
}

}  // namespace arq::models
