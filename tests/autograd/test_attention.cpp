// attention_core (chunked, recomputing backward) against the composition it replaces and
// against a plain f64 loop (suite grad): forward and the gradients of q, k, v for GQA groups
// 1/2/4, causal, sliding window, padding masks with fully masked query rows, odd sizes, chunks
// of 1, 3 and more than s rows; f64 finite differences on a tiny case; peak memory.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "autograd/attention.h"
#include "autograd/autograd.h"
#include "engine/storage.h"
#include "models/blocks/attention.h"
#include "tests/autograd/grad_helpers.h"

namespace arq::ag {
namespace {

enum class MaskKind { none, causal, window, padding, padding_causal_flag };

const char* mask_name(MaskKind m) {
  switch (m) {
    case MaskKind::none: return "none";
    case MaskKind::causal: return "causal";
    case MaskKind::window: return "window3";
    case MaskKind::padding: return "padding-mask";
    case MaskKind::padding_causal_flag: return "padding-mask+causal-flag";
  }
  return "?";
}

// Additive f32 mask [b, 1, s, skv] as models::attention_mask builds it: causal, and batch element n
// has its first `n + 1` keys padded (left padding), so its first queries see no key at all.
Tensor padding_mask(int64_t b, int64_t s, int64_t skv, bool causal) {
  std::vector<double> m;
  const int64_t past = skv - s;
  for (int64_t n = 0; n < b; ++n)
    for (int64_t i = 0; i < s; ++i)
      for (int64_t j = 0; j < skv; ++j) {
        const bool ok = (!causal || j <= past + i) && j > n;
        m.push_back(ok ? 0.0 : double(kAttentionMaskedScore));
      }
  return from_vector(m, {b, 1, s, skv}, DType::f32);
}

AttentionOptions options(MaskKind mk, int64_t b, int64_t s, int64_t skv, int64_t hd, int64_t chunk) {
  AttentionOptions o;
  o.scaling = 1.0 / std::sqrt(double(hd));
  o.chunk_rows = chunk;
  if (mk == MaskKind::causal || mk == MaskKind::window || mk == MaskKind::padding_causal_flag) o.causal = true;
  if (mk == MaskKind::window) o.window = 3;
  if (mk == MaskKind::padding) o.mask = padding_mask(b, s, skv, true);
  if (mk == MaskKind::padding_causal_flag) o.mask = padding_mask(b, s, skv, false);
  return o;
}

struct Result {
  Tensor out, dq, dk, dv;  // f64 copies
};

// Forward and the gradients of sum(out ⊙ w) for a fixed random w.
Result run(bool core, const Tensor& q0, const Tensor& k0, const Tensor& v0, const AttentionOptions& o) {
  Var q(q0, true), k(k0, true), v(v0, true);
  Var out = core ? attention_core(q, k, v, o) : attention_composed(q, k, v, o);
  Tensor w = rand_normal(out.shape(), 99, 0, 1, out.dtype());
  backward(sum_all(out * Var(w)));
  auto f = [](const Tensor& t) { return t.to(DType::f64).contiguous(); };
  return {f(out.value()), f(q.grad()), f(k.grad()), f(v.grad())};
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (double x : to_vector(t)) m = std::max(m, std::fabs(x));
  return m;
}

// max |a − b| ≤ tol · max(max |b|, 1): normwise, because near-zero elements of a sum carry the
// absolute error of its terms, which are O(1) here (unit normal inputs, probabilities ≤ 1).
void check_close(const char* what, const Tensor& a, const Tensor& b, double tol, const std::string& ctx) {
  REQUIRE(a.shape() == b.shape());
  const std::vector<double> x = to_vector(a), y = to_vector(b);
  double err = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    REQUIRE_MESSAGE(std::isfinite(x[i]), ctx, " ", std::string(what), " not finite at ", i);
    err = std::max(err, std::fabs(x[i] - y[i]));
  }
  const double scale = std::max(max_abs(b), 1.0);
  CHECK_MESSAGE(err <= tol * scale, ctx, " ", std::string(what), ": max err ", err, " > ", tol, " · ", scale);
}

// Tolerances (normwise, relative to the largest reference value):
//  f64: both sides differ only in summation order and exp(S − L) vs softmax: a few ulp times the
//   reduction lengths (hd, s_kv ≤ 40): 1e-12 leaves a factor > 10.
//  f32: the same with eps32 = 2^-23: the score error hd·eps·|q||k| becomes a relative error of P,
//   and the gradients chain three GEMMs: 2^-23·(16 + 40)·8 ≈ 5e-5 → 1e-4.
//  bf16: P, dS and the GEMM outputs are rounded to bf16 (eps 2^-8 relative) on both sides at
//   different points; dK/dV partial sums are rounded once per chunk (up to 33 chunks, a random
//   walk: √33·2^-9 ≈ 0.011) before the f32 accumulation: 2^-5 ≈ 0.031.
double tol_of(DType t) { return t == DType::f64 ? 1e-12 : t == DType::f32 ? 1e-4 : 0x1p-5; }

void compare(DType dt, int64_t b, int64_t nh, int64_t nkv, int64_t s, int64_t skv, int64_t hd, MaskKind mk,
             int64_t chunk) {
  const Tensor q = rand_normal({b, nh, s, hd}, 1 + uint64_t(s * 7 + hd), 0, 1, dt);
  const Tensor k = rand_normal({b, nkv, skv, hd}, 2 + uint64_t(s), 0, 1, dt);
  const Tensor v = rand_normal({b, nkv, skv, hd}, 3 + uint64_t(hd), 0, 1, dt);
  const AttentionOptions o = options(mk, b, s, skv, hd, chunk);
  const Result a = run(true, q, k, v, o), r = run(false, q, k, v, o);
  const std::string ctx = std::string(dtype_name(dt)) + " b" + std::to_string(b) + " nh" + std::to_string(nh) + " nkv" +
                          std::to_string(nkv) + " s" + std::to_string(s) + " skv" + std::to_string(skv) + " hd" +
                          std::to_string(hd) + " " + mask_name(mk) + " chunk" + std::to_string(chunk);
  const double tol = tol_of(dt);
  check_close("out", a.out, r.out, tol, ctx);
  check_close("dq", a.dq, r.dq, tol, ctx);
  check_close("dk", a.dk, r.dk, tol, ctx);
  check_close("dv", a.dv, r.dv, tol, ctx);
}

TEST_CASE("attention_core: matches the composition (f64, f32) on GQA, masks, odd sizes, chunk sizes") {
  const MaskKind masks[] = {MaskKind::none, MaskKind::causal, MaskKind::window, MaskKind::padding,
                            MaskKind::padding_causal_flag};
  for (DType dt : {DType::f64, DType::f32})
    for (int64_t g : {1, 2, 4})
      for (int64_t s : {1, 7, 33})
        for (MaskKind mk : masks)
          for (int64_t chunk : {int64_t{1}, int64_t{3}, s + 5}) {
            const int64_t hd = (s == 7) ? 16 : 8, nkv = 2;
            compare(dt, 2, nkv * g, nkv, s, s, hd, mk, chunk);
          }
}

TEST_CASE("attention_core: matches the composition in bf16") {
  for (int64_t g : {1, 4})
    for (MaskKind mk : {MaskKind::causal, MaskKind::window, MaskKind::padding})
      for (int64_t chunk : {int64_t{1}, int64_t{3}, int64_t{64}})
        compare(DType::bf16, 2, 2 * g, 2, 33, 33, 16, mk, chunk);
}

TEST_CASE("attention_core: queries after a past (s < s_kv) with causal flag and mask") {
  for (MaskKind mk : {MaskKind::causal, MaskKind::window, MaskKind::padding})
    for (int64_t chunk : {1, 2, 9}) compare(DType::f64, 2, 4, 2, 5, 9, 8, mk, chunk);
}

// Independent reference: plain f64 loops over (b, h, i, j) with the composition's semantics
// (masked pairs score −FLT_MAX exactly, a fully masked row is uniform over all keys).
TEST_CASE("attention_core: forward equals a plain f64 loop, fully masked rows uniform") {
  const int64_t b = 2, nh = 4, nkv = 2, s = 6, hd = 4, g = nh / nkv;
  const Tensor q = rand_normal({b, nh, s, hd}, 11, 0, 1, DType::f64);
  const Tensor k = rand_normal({b, nkv, s, hd}, 12, 0, 1, DType::f64);
  const Tensor v = rand_normal({b, nkv, s, hd}, 13, 0, 1, DType::f64);
  for (MaskKind mk : {MaskKind::window, MaskKind::padding})
    for (int64_t chunk : {1, 4}) {
      const AttentionOptions o = options(mk, b, s, s, hd, chunk);
      const Tensor out = attention_core(Var(q), Var(k), Var(v), o).value();
      int dead_rows = 0;
      for (int64_t n = 0; n < b; ++n)
        for (int64_t h = 0; h < nh; ++h)
          for (int64_t i = 0; i < s; ++i) {
            std::vector<double> sc(static_cast<size_t>(s));
            double mx = -INFINITY;
            for (int64_t j = 0; j < s; ++j) {
              double dot = 0;
              for (int64_t c = 0; c < hd; ++c) dot += q.at({n, h, i, c}) * o.scaling * k.at({n, h / g, j, c});
              bool masked = (o.causal && j > i) || (o.window > 0 && j <= i - o.window);
              if (o.mask.defined()) masked = masked || o.mask.at({n, 0, i, j}) <= double(kAttentionMaskedScore);
              sc[size_t(j)] = masked ? double(kAttentionMaskedScore) : dot;
              mx = std::max(mx, sc[size_t(j)]);
            }
            dead_rows += mx == double(kAttentionMaskedScore);
            double z = 0;
            for (double& x : sc) z += (x = std::exp(x - mx));
            for (int64_t c = 0; c < hd; ++c) {
              double y = 0;
              for (int64_t j = 0; j < s; ++j) y += sc[size_t(j)] / z * v.at({n, h / g, j, c});
              CHECK(out.at({n, h, i, c}) == doctest::Approx(y).epsilon(1e-12));
            }
          }
      if (mk == MaskKind::padding) CHECK(dead_rows == nh * (1 + 2));   // element n has n + 1 padded keys
    }
}

TEST_CASE("attention_core: f64 gradients equal central differences (GQA, window, padding, chunks of 2)") {
  const int64_t b = 2, nh = 4, nkv = 2, s = 5, hd = 3;
  const std::vector<Tensor> in = {test::randn({b, nh, s, hd}, 21), test::randn({b, nkv, s, hd}, 22),
                                  test::randn({b, nkv, s, hd}, 23)};
  for (MaskKind mk : {MaskKind::none, MaskKind::window, MaskKind::padding}) {
    const AttentionOptions o = options(mk, b, s, s, hd, 2);
    GradCheckOptions gc;
    // A fully masked row's output is mean(V) whatever q and k are (−FLT_MAX + q·k rounds to
    // −FLT_MAX), so its numeric q/k derivative is 0, while the composition — and attention_core,
    // which matches it — back-propagates the softmax Jacobian of the equal scores. With padding,
    // only v is checked by differences (q and k are checked against the composition above).
    if (mk == MaskKind::padding) gc.wrt = {false, false, true};
    const GradCheckResult r =
        check_gradients([o](const std::vector<Var>& x) { return attention_core(x[0], x[1], x[2], o); }, in, gc);
    INFO(mask_name(mk));
    CHECK_MESSAGE(r.ok, r.report);
  }
  // Right padding (the last key of element 1 masked): no row is fully masked, every input checked.
  std::vector<double> m(static_cast<size_t>(b * s * s), 0.0);
  for (int64_t i = 0; i < s; ++i) m[static_cast<size_t>((s + i) * s + s - 1)] = double(kAttentionMaskedScore);
  const AttentionOptions o{.scaling = 0.5, .causal = true, .mask = from_vector(m, {b, 1, s, s}), .chunk_rows = 2};
  const GradCheckResult r =
      check_gradients([o](const std::vector<Var>& x) { return attention_core(x[0], x[1], x[2], o); }, in);
  CHECK_MESSAGE(r.ok, r.report);
}

TEST_CASE("attention_core: no gradient work for inputs that need none; errors name the shapes") {
  const Tensor q = rand_normal({1, 2, 4, 8}, 1), k = rand_normal({1, 1, 4, 8}, 2), v = rand_normal({1, 1, 4, 8}, 3);
  Var qv(q, true), kv(k), vv(v, true);
  backward(sum_all(attention_core(qv, kv, vv, {.causal = true, .chunk_rows = 3})));
  CHECK(qv.grad().defined());
  CHECK(vv.grad().defined());
  CHECK(!kv.grad().defined());
  CHECK_THROWS_AS(attention_core(Var(q), Var(rand_normal({1, 3, 4, 8}, 2)), Var(v), {}), ShapeError);
  CHECK_THROWS_AS(attention_core(Var(q), Var(k), Var(v), {.mask = zeros({1, 1, 4, 5})}), ShapeError);
  CHECK_THROWS_AS(attention_core(Var(q), Var(k), Var(v), {.window = 2}), UsageError);
}

TEST_CASE("attention_core: chunk rows from the budget and the environment") {
  AttentionOptions o;
  o.score_budget_bytes = 64 * 2048 * 4 * 8;   // 8 rows of f32 scores for b·nh = 64, s_kv = 2048
  CHECK(attention_chunk_rows(o, 2, 32, 2048, 2048, DType::bf16) == 8);
  CHECK(attention_chunk_rows(o, 2, 32, 2048, 2048, DType::f64) == 4);
  CHECK(attention_chunk_rows(o, 2, 32, 5, 2048, DType::bf16) == 5);   // clamped to s
  o.score_budget_bytes = size_t{32} << 20;
  CHECK(attention_chunk_rows(o, 2, 32, 2048, 2048, DType::bf16) == 64);    // 32 MiB / (64·2048·4 B)
  o.causal = true;                                                        // ≥ 8 chunks to skip tiles...
  CHECK(attention_chunk_rows(o, 2, 32, 2048, 2048, DType::bf16) == 64);
  CHECK(attention_chunk_rows(o, 1, 4, 2048, 2048, DType::bf16) == 256);
  CHECK(attention_chunk_rows(o, 1, 4, 256, 256, DType::bf16) == 128);     // ...of at least 128 rows
  o.chunk_rows = 3;
  CHECK(attention_chunk_rows(o, 2, 32, 2048, 2048, DType::bf16) == 3);
}

// The tiles skipped, counted independently: chunk c of 16 rows needs the keys its rows may see.
TEST_CASE("attention_core: computes only the visible key range of each chunk (causal, window, mask)") {
  const int64_t s = 256, rows = 16, n_chunks = s / rows;
  const Tensor q = zeros({1, 2, s, 8}), k = zeros({1, 1, s, 8});
  auto count = [&](int64_t window, int64_t pad) {   // Σ rows·keys over chunks, by hand
    int64_t n = 0;
    for (int64_t c = 0; c < n_chunks; ++c) {
      const int64_t r0 = c * rows, r1 = r0 + rows;
      int64_t k0 = window > 0 ? std::max<int64_t>(0, r0 - window + 1) : 0, k1 = r1;
      k0 = std::max(k0, pad);                      // keys [0, pad) padded
      if (r1 - 1 < pad) continue;                  // every row dead: nothing computed
      n += rows * (k1 - k0);
    }
    return 2 * n;                                  // b·nh = 2
  };
  auto elements = [&](bool causal, int64_t window, const Tensor& mask) {
    AttentionOptions o{.causal = causal, .window = window, .mask = mask, .chunk_rows = rows};
    return attention_score_elements(q, k, o);
  };
  auto mask_of = [&](int64_t window, int64_t pad) {
    std::vector<double> m;
    for (int64_t i = 0; i < s; ++i)
      for (int64_t j = 0; j < s; ++j)
        m.push_back(j <= i && (window == 0 || j > i - window) && j >= pad ? 0.0 : double(kAttentionMaskedScore));
    return from_vector(m, {1, 1, s, s});
  };
  CHECK(elements(false, 0, {}) == 2 * s * s);
  CHECK(elements(true, 0, {}) == count(0, 0));                 // (s + 16)/(2s) = 53 % of the square
  CHECK(count(0, 0) == 2 * rows * rows * n_chunks * (n_chunks + 1) / 2);
  CHECK(elements(false, 0, mask_of(0, 0)) == count(0, 0));     // the same, found from the mask
  CHECK(elements(true, 32, {}) == count(32, 0));
  CHECK(elements(false, 0, mask_of(32, 0)) == count(32, 0));
  CHECK(elements(false, 0, mask_of(0, 40)) == count(0, 40));   // left padding: dead chunks skipped
  CHECK(elements(true, 0, mask_of(0, 40)) == count(0, 40));
}

// Saved bytes and backward peak: the composition keeps [b, nh, s, s] scores alive (f32 softmax
// output among them); attention_core keeps q, k, v, O and L only, and its transient peak is a few
// chunk-sized score tiles.
TEST_CASE("attention_core: forward keeps no score matrix; peak far below the composition") {
  const int64_t b = 1, nh = 4, nkv = 2, s = 256, hd = 16;
  const Tensor q = rand_normal({b, nh, s, hd}, 1);
  const Tensor k = rand_normal({b, nkv, s, hd}, 2), v = rand_normal({b, nkv, s, hd}, 3);
  Allocator& alloc = allocator_for(Device::cpu());
  auto measure = [&](bool core, size_t& saved, size_t& peak) {
    Var qv(q, true), kv(k, true), vv(v, true);
    const size_t before = alloc.bytes_in_use();
    alloc.reset_peak();
    Var loss;
    {
      const AttentionOptions o{.scaling = 0.25, .causal = true, .chunk_rows = 16};
      Var out = core ? attention_core(qv, kv, vv, o) : attention_composed(qv, kv, vv, o);
      loss = sum_all(out);
    }
    saved = alloc.bytes_in_use() - before;
    backward(loss);
    peak = alloc.peak_bytes() - before;
  };
  size_t saved_core = 0, peak_core = 0, saved_comp = 0, peak_comp = 0;
  measure(true, saved_core, peak_core);
  measure(false, saved_comp, peak_comp);
  const size_t scores = size_t(b * nh * s * s) * 4;   // one f32 score matrix: 1 MiB
  MESSAGE("saved: core ", saved_core, " B, composed ", saved_comp, " B; peak: core ", peak_core, " B, composed ",
          peak_comp, " B (one score matrix ", scores, " B)");
  CHECK(saved_comp >= scores);
  CHECK(saved_core < scores / 4);
  CHECK(peak_core < peak_comp / 4);
}

// The masks the models pass (models::attention_mask: causal + window + padding + packed segments,
// no structure flags): attention_core finds the visible key range of each chunk from the mask
// alone; block-diagonal segments and left padding (fully masked rows) included.
TEST_CASE("attention_core: models::attention_mask masks (window, padding, segments) match the composition") {
  const int64_t b = 3, s = 13;
  std::vector<double> pad, seg;
  for (int64_t n = 0; n < b; ++n)
    for (int64_t j = 0; j < s; ++j) {
      pad.push_back(j >= 2 * n ? 1 : 0);                 // element n: 2n left-padding positions
      seg.push_back(j < 5 ? 0 : j < 9 + n ? 1 : 2);      // three packed samples
    }
  const Tensor padding = from_vector(pad, {b, s}, DType::i64), segments = from_vector(seg, {b, s}, DType::i64);
  const models::MaskSpec specs[] = {
      {.q_len = s, .kv_len = s},
      {.q_len = s, .kv_len = s, .window = 4},
      {.q_len = s, .kv_len = s, .key_padding = padding},
      {.q_len = s, .kv_len = s, .window = 3, .key_padding = padding, .segment_ids = segments},
      {.q_len = s, .kv_len = s, .segment_ids = segments},
  };
  int i = 0;
  for (const models::MaskSpec& spec : specs) {
    const Tensor mask = models::attention_mask(spec);
    for (int64_t chunk : {1, 4, 20})
      for (DType dt : {DType::f64, DType::f32}) {
        const Tensor q = rand_normal({b, 4, s, 8}, 31, 0, 1, dt), k = rand_normal({b, 2, s, 8}, 32, 0, 1, dt),
                     v = rand_normal({b, 2, s, 8}, 33, 0, 1, dt);
        const AttentionOptions o{.scaling = 0.35, .mask = mask, .chunk_rows = chunk};
        const Result a = run(true, q, k, v, o), r = run(false, q, k, v, o);
        const std::string ctx =
            "mask spec " + std::to_string(i) + " chunk " + std::to_string(chunk) + " " + dtype_name(dt);
        check_close("out", a.out, r.out, tol_of(dt), ctx);
        check_close("dq", a.dq, r.dq, tol_of(dt), ctx);
        check_close("dk", a.dk, r.dk, tol_of(dt), ctx);
        check_close("dv", a.dv, r.dv, tol_of(dt), ctx);
      }
    ++i;
  }
}

}  // namespace
}  // namespace arq::ag
