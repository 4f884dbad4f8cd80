// attention_core (chunked forward and recomputing backward) and the reference composition.
//
// Layout inside attention_core: the scaled queries are copied once into "chunk layout"
// [b, nkv, s, g, hd] (position-major inside each kv head), so the queries of a chunk of
// positions and of all g heads of a group are ONE contiguous [cq·g, hd] matrix per (b, kv head):
// every GEMM of a chunk is a plain strided-batched GEMM over b·nkv. Scores of a chunk are
// [b, nkv, cq, g, kr] with kr the chunk's visible key range.
#include "autograd/attention.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <tuple>
#include <vector>

#include "autograd/graph.h"
#include "autograd/ops.h"
#include "engine/attention_rows.h"
#include "engine/flash_attention.h"

namespace arq::ag {

namespace {

struct Dims {
  int64_t b, nh, nkv, g, s, skv, hd;
  int64_t past() const { return skv - s; }  // absolute position of query 0
};

// One chunk of query rows [r0, r1) and the keys [k0, k1) any of its rows may see.
struct Chunk {
  int64_t r0, r1, k0, k1;
  bool has_dead = false;   // some row of the chunk has every key masked
  int64_t rows() const { return r1 - r0; }
  int64_t keys() const { return k1 - k0; }
};

DType soft_dtype(DType act) { return act == DType::f64 ? DType::f64 : DType::f32; }

Tensor to_dtype(const Tensor& t, DType dt) { return t.dtype() == dt ? t : arq::cast(t, dt); }

Dims check_dims(const Var& q, const Var& k, const Var& v, const AttentionOptions& o, const char* op) {
  const auto value = [](const Var& x) { return x.defined() ? x.value() : Tensor(); };
  check_attention_inputs(op, value(q), value(k), value(v), o.causal, o.window);
  Dims d{q.size(0), q.size(1), k.size(1), 0, q.size(2), k.size(2), q.size(3)};
  if (o.mask.defined())
    ARQ_CHECK(o.mask.dim() == 4 && o.mask.size(1) == 1 && o.mask.size(2) == d.s && o.mask.size(3) == d.skv &&
                  (o.mask.size(0) == d.b || o.mask.size(0) == 1) && is_floating(o.mask.dtype()) &&
                  o.mask.device() == q.device(),
              ShapeError, "[", op, "] mask ", o.mask.str(), " does not fit batch ", d.b, ", queries ", d.s, ", keys ",
              d.skv, " on ", q.str());
  d.g = d.nh / d.nkv;
  return d;
}

// u8 [s_q, 1, s_k] (broadcast over the g heads): 1 where causality / the window masks the pair
// of query rows [r0, r1) and keys [k0, k1); undefined when nothing in the tile is masked.
Tensor structure_masked(const AttentionOptions& o, const Dims& d, int64_t r0, int64_t r1, int64_t k0, int64_t k1,
                        Device dev) {
  if (!o.causal) return {};
  const int64_t q_first = d.past() + r0, q_last = d.past() + r1 - 1;
  const bool future = k1 - 1 > q_first;                        // some key after some query
  const bool old = o.window > 0 && k0 <= q_last - o.window;    // some key before some window
  if (!future && !old) return {};
  // Positions as f32 (exact below 2^24) so the compares run on every backend.
  Tensor qpos = arange(double(q_first), double(q_last + 1), 1, DType::f32, dev).view({r1 - r0, 1, 1});
  Tensor kpos = arange(double(k0), double(k1), 1, DType::f32, dev).view({1, 1, k1 - k0});
  Tensor m;
  if (future) m = arq::gt(kpos, qpos);
  if (old) {
    Tensor o_m = arq::le(kpos, arq::affine(qpos, 1.0, -double(o.window)));
    m = m.defined() ? arq::where(m, m, o_m) : o_m;             // m | o_m on u8
  }
  return m;
}


// The chunks, their key ranges and the fully masked ("dead") rows.
struct Plan {
  std::vector<Chunk> chunks;
  Tensor dead;   // [b|1, 1, s, 1] soft, 1 on rows with every key masked; undefined when none
};

// A chunk's key range is the span of keys that the structure and the mask leave visible to at
// least one of its rows (for any batch element); keys outside it are masked for every row, so
// their probabilities are exactly 0. A row is dead when the mask hides every key the structure
// leaves (the composition then gives it uniform probabilities over all s_kv keys; handled in
// closed form). Both come from the mask alone — [b|1, 1, s, s_kv], nh·g times smaller than the
// scores — in one pass and one host sync; without a mask there is no pass and no sync.
Plan plan_chunks(const AttentionOptions& o, const Dims& d, const Tensor& mask_s, int64_t rows, Device dev) {
  Plan plan;
  for (int64_t r0 = 0; r0 < d.s; r0 += rows) {
    const int64_t r1 = std::min(d.s, r0 + rows);
    int64_t k0 = 0, k1 = d.skv;
    if (o.causal) {
      k1 = d.past() + r1;
      if (o.window > 0) k0 = std::max<int64_t>(0, d.past() + r0 - o.window + 1);
    }
    plan.chunks.push_back({r0, r1, k0, k1});
  }
  if (!mask_s.defined()) return plan;
  const int64_t mb = mask_s.size(0);
  const Tensor masked = scalar_tensor(kAttentionMaskedScore, mask_s.dtype(), dev);
  std::vector<Tensor> key_max, row_max;   // per chunk: [1, kr] over rows and batch; [mb, cq] over keys
  for (const Chunk& c : plan.chunks) {
    Tensor t = mask_s.narrow(2, c.r0, c.rows()).narrow(3, c.k0, c.keys()).squeeze(1);   // [mb, cq, kr]
    const Tensor st = structure_masked(o, d, c.r0, c.r1, c.k0, c.k1, dev);              // [cq, 1, kr]
    if (st.defined()) t = arq::where(st.squeeze(1), masked, t);
    key_max.push_back(arq::max(arq::max(t, 1, false), 0, false));                       // [kr]
    row_max.push_back(arq::max(t, 2, false));                                           // [mb, cq]
  }
  const double masked_v = double(kAttentionMaskedScore);
  const std::vector<double> keys = to_vector(arq::binary(BinaryOp::gt, arq::concat(key_max, 0), masked_v));
  const Tensor dead_dev = arq::binary(BinaryOp::le, arq::concat(row_max, 1), masked_v);   // [mb, s]
  const std::vector<double> dead = to_vector(dead_dev);
  size_t at = 0;
  bool any_dead = false;
  for (Chunk& c : plan.chunks) {
    int64_t lo = c.keys(), hi = 0;
    for (int64_t j = 0; j < c.keys(); ++j)
      if (keys[at + size_t(j)] != 0) {
        lo = std::min(lo, j);
        hi = j + 1;
      }
    at += size_t(c.keys());
    for (int64_t n = 0; n < mb && !c.has_dead; ++n)
      for (int64_t i = c.r0; i < c.r1; ++i) c.has_dead = c.has_dead || dead[size_t(n * d.s + i)] != 0;
    any_dead = any_dead || c.has_dead;
    const int64_t k0 = c.k0;
    c.k0 = k0 + std::min(lo, hi);   // empty when every row of the chunk is dead
    c.k1 = k0 + hi;
  }
  if (any_dead) plan.dead = to_dtype(dead_dev, mask_s.dtype()).view({mb, 1, d.s, 1});
  return plan;
}

// Everything the chunk loops of forward and backward share.
struct Ctx {
  Dims d;
  AttentionOptions o;     // mask replaced by mask_s
  DType act, soft;
  Device dev;
  Tensor qc;      // [b, nkv, s, g, hd] act, scaled queries in chunk layout
  Tensor kc, vc;  // [b, nkv, s_kv, hd] act, contiguous
  Tensor mask_s;  // [b|1, 1, s, s_kv] soft or undefined
  std::vector<Chunk> chunks;
  Tensor dead;    // [b|1, 1, s, 1] soft 0/1, or undefined when no row is fully masked
  Tensor dead_u8; // the same as u8
  bool fused = true;   // fused row kernels (engine/attention_rows.h) rather than the op chain

  // The fused kernels' view of a chunk: its mask slice [b|1, cq, kr] soft (or undefined), its dead
  // rows [b|1, cq] u8 (or undefined) and the positions of its first row and key.
  Tensor mask_tile(const Chunk& c) const {
    return mask_s.defined() ? mask_s.narrow(2, c.r0, c.rows()).narrow(3, c.k0, c.keys()).squeeze(1) : Tensor();
  }
  Tensor dead_tile(const Chunk& c) const {
    return c.has_dead ? dead_u8.narrow(2, c.r0, c.rows()).reshape({dead_u8.size(0), c.rows()}) : Tensor();
  }
  AttentionRowsParams rows_params(const Chunk& c) const {
    return {.q_first = d.past() + c.r0, .k_first = c.k0, .causal = o.causal, .window = o.window};
  }
  // q_s·kᵀ of one chunk in the activation dtype: [b, nkv, cq, g, kr].
  Tensor raw_scores(const Chunk& c) const {
    return arq::matmul(q_rows(c), k_keys(c).t()).view({d.b, d.nkv, c.rows(), d.g, c.keys()});
  }

  // [b|1, 1, cq, 1, 1]: a chunk's dead rows, broadcast over kv heads, group heads and columns
  Tensor dead_rows(const Chunk& c) const { return dead_u8.narrow(2, c.r0, c.rows()).unsqueeze(-1); }

  Tensor q_rows(const Chunk& c) const {   // [b, nkv, cq·g, hd], a view
    return qc.narrow(2, c.r0, c.rows()).reshape({d.b, d.nkv, c.rows() * d.g, d.hd});
  }
  Tensor k_keys(const Chunk& c) const { return kc.narrow(2, c.k0, c.keys()); }   // [b, nkv, kr, hd]
  Tensor v_keys(const Chunk& c) const { return vc.narrow(2, c.k0, c.keys()); }

  // S = q_s·kᵀ (+ mask, structure) of one chunk: [b, nkv, cq, g, kr] soft.
  Tensor scores(const Chunk& c) const {
    Tensor sc = to_dtype(arq::matmul(q_rows(c), k_keys(c).t()), soft).view({d.b, d.nkv, c.rows(), d.g, c.keys()});
    if (mask_s.defined())
      sc = arq::add(sc, mask_s.narrow(2, c.r0, c.rows()).narrow(3, c.k0, c.keys()).unsqueeze(3));  // [B,1,cq,1,kr]
    Tensor st = structure_masked(o, d, c.r0, c.r1, c.k0, c.k1, dev);
    if (st.defined()) sc = arq::where(st, scalar_tensor(kAttentionMaskedScore, soft, dev), sc);
    return sc;
  }
};

Ctx make_ctx(const Var& q, const Var& k, const Var& v, const AttentionOptions& opt) {
  Ctx c{check_dims(q, k, v, opt, "attention_core"), opt, q.dtype(), soft_dtype(q.dtype()), q.device(),
        {}, {}, {}, {}, {}, {}, {}, opt.fused_rows && !attention_env().rows_chain};
  const Dims& d = c.d;
  c.o.mask = Tensor();
  // [b, nh, s, hd] -> [b, nkv, g, s, hd] (a split: always a view) -> [b, nkv, s, g, hd], scaled in
  // q's dtype like the composition (one pass that also makes the chunk layout contiguous).
  c.qc = arq::affine(q.value().reshape({d.b, d.nkv, d.g, d.s, d.hd}).permute({0, 1, 3, 2, 4}), opt.scaling, 0.0);
  c.kc = k.value().contiguous();
  c.vc = v.value().contiguous();
  if (opt.mask.defined()) c.mask_s = to_dtype(opt.mask, c.soft);
  Plan plan = plan_chunks(opt, d, c.mask_s, attention_chunk_rows(opt, d.b, d.nh, d.s, d.skv, q.dtype()), c.dev);
  c.chunks = std::move(plan.chunks);
  c.dead = plan.dead;
  if (c.dead.defined()) c.dead_u8 = arq::binary(BinaryOp::ne, c.dead, 0.0);
  return c;
}

// 1/s_kv as the composition's probabilities of a fully masked row: `soft` in its softmax
// backward, rounded to the activation dtype in its P·V and dV GEMMs.
double uniform_p(int64_t skv, DType dt) { return from_vector({1.0 / double(skv)}, {1}, dt).item(); }

// Closed-form gradients of the fully masked rows (c.dead), whose probabilities are 1/s_kv over
// ALL keys: dS_ij = p(dO_i·v_j − D_i), so
//   dQ_s,i = p(dO_i·VᵀK − D_i·Σ_j k_j),  dK_j = p(v_j·Σ_i dO_i q_iᵀ − Σ_i D_i q_i),
//   dV_j = p_act·Σ_i dO_i,
// each a few [hd, hd] products instead of the s_kv-long rows the chunks skipped.
void add_dead_row_grads(const Ctx& c, const Tensor& doc_s, const Tensor& dsum, Tensor& dqc, Tensor& dk, Tensor& dv,
                        const std::vector<bool>& need) {
  const Dims& d = c.d;
  const Tensor dod = arq::mul(doc_s, c.dead.unsqueeze(-1)).reshape({d.b, d.nkv, d.s * d.g, d.hd});  // dead rows' dO
  const Tensor dd = arq::mul(dsum, c.dead).reshape({d.b, d.nkv, d.s * d.g, 1});                      // dead rows' D
  const double p = uniform_p(d.skv, c.soft), p_act = uniform_p(d.skv, c.act);
  const Tensor ks = to_dtype(c.kc, c.soft), vs = to_dtype(c.vc, c.soft);   // [b, nkv, s_kv, hd]
  if (need[0]) {
    Tensor t = arq::sub(arq::matmul(dod, arq::matmul(vs.t(), ks)), arq::mul(dd, arq::sum(ks, 2, true)));
    dqc = arq::add(dqc, to_dtype(arq::affine(t, p * c.o.scaling, 0.0), c.act).view(dqc.shape()));
  }
  if (need[1]) {
    const Tensor qs = to_dtype(c.qc, c.soft).reshape({d.b, d.nkv, d.s * d.g, d.hd});
    Tensor t = arq::sub(arq::matmul(vs, arq::matmul(dod.t(), qs)), arq::matmul(dd.t(), qs));  // [b, nkv, s_kv, hd]
    dk = arq::add(dk, arq::affine(t, p, 0.0));
  }
  if (need[2]) dv = arq::add(dv, arq::affine(arq::sum(dod, 2, true), p_act, 0.0));   // broadcast over keys
}

// dk_range += part (part in act dtype, accumulator in soft).
void accumulate(Tensor& acc, const Chunk& c, const Tensor& part, DType soft) {
  Tensor dst = acc.narrow(2, c.k0, c.keys());
  copy_(dst, arq::add(dst, to_dtype(part, soft)));
}

}  // namespace

int64_t attention_chunk_rows(const AttentionOptions& opt, int64_t batch, int64_t n_head, int64_t q_len, int64_t kv_len,
                             DType dtype) {
  int64_t rows = opt.chunk_rows > 0 ? opt.chunk_rows : attention_env().chunk_rows;
  if (rows <= 0) {
    const size_t row_bytes = static_cast<size_t>(std::max<int64_t>(1, batch * n_head * kv_len)) *
                             dtype_size(soft_dtype(dtype));
    rows = static_cast<int64_t>(std::max<size_t>(1, opt.score_budget_bytes / row_bytes));
    // With a causal structure or a mask, tiles can be skipped only between chunks: at least ~8
    // chunks (computing (1 + 1/8)/2 ≈ 56% of a causal score matrix), but no fewer than 128 rows,
    // so the per-chunk op overhead stays small next to the GEMMs.
    if (opt.causal || opt.mask.defined()) rows = std::min(rows, std::max<int64_t>(128, (q_len + 7) / 8));
  }
  return std::clamp<int64_t>(rows, 1, std::max<int64_t>(1, q_len));
}

int64_t attention_score_elements(const Tensor& q, const Tensor& k, const AttentionOptions& opt) {
  const Dims d = check_dims(Var(q), Var(k), Var(k), opt, "attention_score_elements");
  const Tensor mask_s = opt.mask.defined() ? to_dtype(opt.mask, soft_dtype(q.dtype())) : Tensor();
  const Plan plan =
      plan_chunks(opt, d, mask_s, attention_chunk_rows(opt, d.b, d.nh, d.s, d.skv, q.dtype()), q.device());
  int64_t n = 0;
  for (const Chunk& c : plan.chunks) n += c.rows() * c.keys();
  return n * d.b * d.nh;
}

const AttentionEnv& attention_env() {
  static const AttentionEnv env = [] {
    AttentionEnv a;
    const char* e = std::getenv("ARQ_ATTENTION");
    a.composed = e && std::string(e) == "composed";
    a.chunked = e && std::string(e) == "chunked";
    const char* c = std::getenv("ARQ_ATTENTION_CHUNK_ROWS");
    a.chunk_rows_set = c != nullptr;
    if (c && *c) a.chunk_rows = std::max<int64_t>(0, std::strtoll(c, nullptr, 10));
    const char* r = std::getenv("ARQ_ATTENTION_ROWS");
    a.rows_chain = r && std::string(r) == "chain";
    return a;
  }();
  return env;
}

bool attention_flash_applies(const Var& q, const Var& k, const Var& v, const AttentionOptions& opt) {
  if (!opt.flash || opt.mask.defined() || !q.defined() || q.device().is_cpu()) return false;
  if (attention_env().chunked || attention_env().composed) return false;
  return flash_attention_supported(q.value(), k.value(), v.value());
}

Var attention_flash(const Var& q, const Var& k, const Var& v, const AttentionOptions& opt) {
  check_dims(q, k, v, opt, "attention_flash");
  ARQ_CHECK(!opt.mask.defined(), UsageError, "[attention_flash] takes no mask (causal and window only), got ",
            opt.mask.str());
  const FlashAttentionParams p{.scaling = opt.scaling, .causal = opt.causal, .window = opt.window};
  FlashForward f = flash_attention_forward(q.value(), k.value(), v.value(), p);
  return record("attention_flash", f.o, {&q, &k, &v},
                [qv = q.value(), kv = k.value(), vv = v.value(), o = f.o, lse = f.lse, p](
                    const Tensor& g, const std::vector<bool>& need) {
                  const FlashGrads d = flash_attention_backward(qv, kv, vv, o, lse, to_dtype(g, qv.dtype()), p);
                  std::vector<Tensor> grads(3);
                  if (need[0]) grads[0] = d.dq;
                  if (need[1]) grads[1] = d.dk;
                  if (need[2]) grads[2] = d.dv;
                  return grads;
                });
}

Var attention_core(const Var& q, const Var& k, const Var& v, const AttentionOptions& opt) {
  if (attention_flash_applies(q, k, v, opt)) return attention_flash(q, k, v, opt);
  Ctx c = make_ctx(q, k, v, opt);
  const Dims& d = c.d;
  // Output memory is [b, s, nkv, g, hd] = [b, s, nh, hd]; oc is its chunk-layout view.
  Tensor out = Tensor::empty({d.b, d.s, d.nkv, d.g, d.hd}, c.act, c.dev);
  Tensor oc = out.permute({0, 2, 1, 3, 4});                                   // [b, nkv, s, g, hd]
  // Dead rows: uniform probabilities over all s_kv keys, so O = p_act·Σ_j v_j.
  Tensor vmean;   // [b, nkv, 1, 1, hd] act
  if (c.dead.defined())
    vmean = to_dtype(arq::affine(arq::sum(to_dtype(c.vc, c.soft), 2, true), uniform_p(d.skv, c.act), 0.0), c.act)
                .unsqueeze(2);
  for (const Chunk& ch : c.chunks) {
    const int64_t cq = ch.rows();
    Tensor o_dst = oc.narrow(2, ch.r0, cq);
    if (ch.keys() == 0) {   // every row of the chunk is dead
      copy_(o_dst, vmean);
      continue;
    }
    // P [b, nkv, cq, g, kr] in the activation dtype (dead rows are replaced below)
    const Tensor pa = c.fused ? attention_probs(c.raw_scores(ch), c.mask_tile(ch), Tensor(), c.rows_params(ch))
                              : to_dtype(arq::softmax(c.scores(ch), -1), c.act);
    Tensor o = arq::matmul(pa.view({d.b, d.nkv, cq * d.g, ch.keys()}), c.v_keys(ch)).view({d.b, d.nkv, cq, d.g, d.hd});
    if (ch.has_dead) o = arq::where(c.dead_rows(ch), vmean, o);
    copy_(o_dst, o);
  }
  Tensor result = out.view({d.b, d.s, d.nh, d.hd}).permute({0, 2, 1, 3});      // [b, nh, s, hd]

  return record("attention", result, {&q, &k, &v},
                [c = std::move(c), oc](const Tensor& g, const std::vector<bool>& need) {
                  const Dims& d = c.d;
                  // dO in chunk layout [b, nkv, s, g, hd] and D = rowsum(dO ⊙ O) [b, nkv, s, g] soft.
                  const Tensor doc = to_dtype(g, c.act).reshape({d.b, d.nkv, d.g, d.s, d.hd})
                                         .permute({0, 1, 3, 2, 4}).contiguous();
                  const Tensor doc_s = to_dtype(doc, c.soft);
                  const Tensor dsum = arq::sum(arq::mul(doc_s, to_dtype(oc, c.soft)), -1);
                  Tensor dqc = zeros({d.b, d.nkv, d.s, d.g, d.hd}, c.act, c.dev);
                  Tensor dk = zeros({d.b, d.nkv, d.skv, d.hd}, c.soft, c.dev);
                  Tensor dv = zeros({d.b, d.nkv, d.skv, d.hd}, c.soft, c.dev);
                  for (const Chunk& ch : c.chunks) {
                    if (ch.keys() == 0) continue;
                    const int64_t cq = ch.rows(), kr = ch.keys();
                    // P recomputed as in the forward (a chunk holds whole rows, so its softmax
                    // needs no saved statistics): the same values bit for bit. Dead rows get
                    // P = 0 here; their gradients are added in closed form below.
                    const Tensor doch = doc.narrow(2, ch.r0, cq).reshape({d.b, d.nkv, cq * d.g, d.hd});
                    const bool want_ds = need[0] || need[1];
                    Tensor pa, dsa;   // [b, nkv, cq·g, kr] act: P and dS = P ⊙ (dP − D)
                    if (c.fused) {
                      const Tensor s = c.raw_scores(ch);
                      if (want_ds) {
                        const Tensor dp = arq::matmul(doch, c.v_keys(ch).t()).view(s.shape());   // dP = dO·Vᵀ
                        std::tie(pa, dsa) = attention_probs_backward(s, c.mask_tile(ch), c.dead_tile(ch), dp,
                                                                     dsum.narrow(2, ch.r0, cq), c.rows_params(ch));
                        dsa = dsa.view({d.b, d.nkv, cq * d.g, kr});
                      } else {
                        pa = attention_probs(s, c.mask_tile(ch), c.dead_tile(ch), c.rows_params(ch));
                      }
                      pa = pa.view({d.b, d.nkv, cq * d.g, kr});
                    } else {
                      Tensor p = arq::softmax(c.scores(ch), -1);
                      if (ch.has_dead) p = arq::where(c.dead_rows(ch), scalar_tensor(0.0, c.soft, c.dev), p);
                      pa = to_dtype(p, c.act).view({d.b, d.nkv, cq * d.g, kr});
                      if (want_ds) {
                        const Tensor dp = to_dtype(arq::matmul(doch, c.v_keys(ch).t()), c.soft)
                                              .view({d.b, d.nkv, cq, d.g, kr});                    // dP = dO·Vᵀ
                        const Tensor ds = arq::mul(p, arq::sub(dp, dsum.narrow(2, ch.r0, cq).unsqueeze(-1)));
                        dsa = to_dtype(ds, c.act).view({d.b, d.nkv, cq * d.g, kr});
                      }
                    }
                    if (need[2]) accumulate(dv, ch, arq::matmul(pa.t(), doch), c.soft);         // dV += Pᵀ·dO
                    if (!want_ds) continue;
                    if (need[0]) {   // dQ = scaling·dS·K (rows of one chunk are complete: no accumulation)
                      Tensor dst = dqc.narrow(2, ch.r0, cq);
                      copy_(dst, arq::affine(arq::matmul(dsa, c.k_keys(ch)), c.o.scaling, 0.0)
                                     .view({d.b, d.nkv, cq, d.g, d.hd}));
                    }
                    if (need[1]) accumulate(dk, ch, arq::matmul(dsa.t(), c.q_rows(ch)), c.soft);  // dK += dSᵀ·Q_s
                  }
                  if (c.dead.defined()) add_dead_row_grads(c, doc_s, dsum, dqc, dk, dv, need);
                  std::vector<Tensor> grads(3);
                  if (need[0]) grads[0] = dqc.permute({0, 1, 3, 2, 4}).reshape({d.b, d.nh, d.s, d.hd});
                  if (need[1]) grads[1] = to_dtype(dk, c.act);
                  if (need[2]) grads[2] = to_dtype(dv, c.act);
                  return grads;
                });
}

Var attention_composed(const Var& q, const Var& k, const Var& v, const AttentionOptions& opt) {
  const Dims d = check_dims(q, k, v, opt, "attention_composed");
  // Scale q (s·hd values) rather than the scores (s·s_kv values); same product up to one rounding.
  Var qg = reshape(affine(q, opt.scaling, 0.0), {d.b, d.nkv, d.g * d.s, d.hd});  // query heads of one kv head, stacked
  Var scores = matmul(qg, transpose(k, 2, 3));                                    // [b, nkv, g·s, s_kv]
  const DType act = scores.dtype(), soft = soft_dtype(act);
  // Softmax in f32 for 16-bit activations (as transformers); f32 and f64 stay as they are.
  if (act != soft) scores = cast(scores, soft);
  scores = reshape(scores, {d.b, d.nkv, d.g, d.s, d.skv});
  // Causality and the window enter as mask entries (a constant), so every masked pair is treated
  // alike — also by the softmax VJP of a row with every key masked.
  Tensor mask = opt.mask.defined() ? opt.mask.to(soft) : Tensor();                      // [b|1, 1, s, s_kv]
  const Tensor st = structure_masked(opt, d, 0, d.s, 0, d.skv, q.device());            // [s, 1, s_kv]
  if (st.defined())
    mask = arq::where(st.view({d.s, d.skv}), scalar_tensor(kAttentionMaskedScore, soft, q.device()),
                      mask.defined() ? mask : zeros({1, 1, d.s, d.skv}, soft, q.device()));
  if (mask.defined()) scores = add(scores, Var(mask.unsqueeze(1)));                     // [b|1, 1, 1, s, s_kv]
  Var probs = softmax(reshape(scores, {d.b, d.nkv, d.g * d.s, d.skv}), -1);
  if (act != soft) probs = cast(probs, act);
  return reshape(matmul(probs, v), {d.b, d.nh, d.s, d.hd});                        // [b, nh, s, hd]
}

}  // namespace arq::ag
