// The fused attention row kernels (engine/attention_rows.h) on the CPU against the engine-op
// chain they replace in attention_core (suite grad): the kernels promise the chain's float
// operations in the chain's order, so every comparison here is BIT for bit (memcmp), over f32,
// bf16, f16, f64; row lengths 1, 7, 33, 1000; additive masks with fully masked rows, a mask
// batch of 1 (broadcast), causal / window structure at offsets, dead rows. Then attention_core
// with fused rows against attention_core with the chain (AttentionOptions::fused_rows = false):
// output and q/k/v gradients bit-identical. An f64 plain loop checks the probabilities' values.
#include <doctest/doctest.h>

#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "autograd/attention.h"
#include "autograd/autograd.h"
#include "engine/attention_rows.h"
#include "engine/ops.h"

namespace arq {
namespace {

DType soft_of(DType t) { return t == DType::f64 ? DType::f64 : DType::f32; }

// Byte-equal contiguous tensors of one shape and dtype.
bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  const Tensor x = a.contiguous(), y = b.contiguous();
  return std::memcmp(x.data_ptr(), y.data_ptr(), size_t(x.numel()) * dtype_size(x.dtype())) == 0;
}

// First differing element, for the failure message.
std::string first_diff(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = to_vector(a), y = to_vector(b);
  for (size_t i = 0; i < x.size(); ++i)
    if (!(x[i] == y[i]) || std::signbit(x[i]) != std::signbit(y[i]))
    {
      char buf[96];
      std::snprintf(buf, sizeof buf, "at %zu: %.17g vs %.17g", i, x[i], y[i]);
      return buf;
    }
  return "none by value (NaN or sizes)";
}

// The structure mask [r, 1, k] u8 of a tile (1 = causal / window masked), or undefined.
Tensor structure_u8(const AttentionRowsParams& p, int64_t r, int64_t k) {
  if (!p.causal) return {};
  std::vector<double> m;
  for (int64_t i = 0; i < r; ++i)
    for (int64_t j = 0; j < k; ++j) {
      const int64_t qpos = p.q_first + i, key = p.k_first + j;
      m.push_back(key > qpos || (p.window > 0 && key <= qpos - p.window) ? 1.0 : 0.0);
    }
  return from_vector(m, {r, 1, k}, DType::u8);
}

// attention_core's chain: cast → + mask → where(structure) → softmax → where(dead, 0) → cast, and
// for the backward cast(dP) − D → · p → cast.
std::pair<Tensor, Tensor> chain(const Tensor& s, const Tensor& mask, const Tensor& dead, const Tensor& dp,
                                const Tensor& d_row, const AttentionRowsParams& prm) {
  const DType act = s.dtype(), soft = soft_of(act);
  const int64_t r = s.size(2), k = s.size(4);
  Tensor x = s.dtype() == soft ? s : cast(s, soft);
  if (mask.defined()) x = add(x, mask.view({mask.size(0), 1, r, 1, k}));
  const Tensor st = structure_u8(prm, r, k);
  if (st.defined()) x = where(st, scalar_tensor(-FLT_MAX, soft, s.device()), x);
  Tensor p = softmax(x, -1);
  if (dead.defined()) p = where(dead.view({dead.size(0), 1, r, 1, 1}), scalar_tensor(0.0, soft, s.device()), p);
  const Tensor pa = act == soft ? p : cast(p, act);
  if (!dp.defined()) return {pa, {}};
  const Tensor dps = act == soft ? dp : cast(dp, soft);
  const Tensor ds = mul(p, sub(dps, d_row.unsqueeze(-1)));
  return {pa, act == soft ? ds : cast(ds, act)};
}

enum class Mk { none, padding, padding_b1, causal, window_padding };

const char* mk_name(Mk m) {
  switch (m) {
    case Mk::none: return "none";
    case Mk::padding: return "padding";
    case Mk::padding_b1: return "padding-b1";
    case Mk::causal: return "causal";
    case Mk::window_padding: return "window+padding";
  }
  return "?";
}

// An additive mask [mb, r, k]: −FLT_MAX on hidden keys, −0.5·(j mod 3) elsewhere (finite values
// are added as they are); batch element n hides its first min(k − 1, n) keys and, for n ≥ 1, all
// of row 1 (a fully masked row). Returns also the dead rows [mb, r] u8 (rows with every key masked).
std::pair<Tensor, Tensor> make_mask(int64_t mb, int64_t r, int64_t k) {
  std::vector<double> m, dead;
  for (int64_t n = 0; n < mb; ++n)
    for (int64_t i = 0; i < r; ++i) {
      const bool row_dead = n >= 1 && i == 1;
      for (int64_t j = 0; j < k; ++j) {
        const bool hidden = row_dead || j < std::min<int64_t>(k - 1, n);
        m.push_back(hidden ? double(-FLT_MAX) : -0.5 * double(j % 3));
      }
      dead.push_back(row_dead ? 1.0 : 0.0);
    }
  return {from_vector(m, {mb, r, k}, DType::f32), from_vector(dead, {mb, r}, DType::u8)};
}

void check_tile(DType dt, int64_t k, Mk mk) {
  const int64_t b = 2, h = 2, r = 5, g = 2;
  const std::string ctx = std::string(dtype_name(dt)) + " k" + std::to_string(k) + " " + mk_name(mk);
  // Scores with a wide range (×4 so exp spans many binades), rounded to the activation dtype.
  const Tensor s = rand_normal({b, h, r, g, k}, 11 + uint64_t(k), 0, 4, dt);
  const Tensor dp = rand_normal({b, h, r, g, k}, 12 + uint64_t(k), 0, 1, dt);
  const Tensor d_row = rand_normal({b, h, r, g}, 13, 0, 1, soft_of(dt));
  Tensor mask, dead;
  AttentionRowsParams prm;
  if (mk == Mk::padding || mk == Mk::padding_b1 || mk == Mk::window_padding) {
    auto [m, dd] = make_mask(mk == Mk::padding_b1 ? 1 : b, r, k);
    mask = m.to(soft_of(dt));
    dead = dd;
  }
  if (mk == Mk::causal) prm = {.q_first = k - r + 1, .k_first = 2, .causal = true, .window = 0};
  if (mk == Mk::window_padding) prm = {.q_first = k / 2, .k_first = 1, .causal = true, .window = 4};
  const auto [pr, dsr] = chain(s, mask, dead, dp, d_row, prm);
  const Tensor pf = attention_probs(s, mask, dead, prm);
  CHECK_MESSAGE(same_bits(pf, pr), ctx, " forward P differs ", first_diff(pf, pr));
  const auto [pb, dsb] = attention_probs_backward(s, mask, dead, dp, d_row, prm);
  CHECK_MESSAGE(same_bits(pb, pr), ctx, " backward P differs ", first_diff(pb, pr));
  CHECK_MESSAGE(same_bits(dsb, dsr), ctx, " dS differs ", first_diff(dsb, dsr));
  // A non-contiguous mask (every other column of a wider one) and a mask slice with strides take
  // the builder's layout path; same bits.
  if (mask.defined() && k > 1) {
    const Tensor wide = concat({mask.unsqueeze(-1), mask.unsqueeze(-1)}, -1).reshape({mask.size(0), r, 2 * k});
    const Tensor strided = wide.view({mask.size(0), r, k, 2}).select(3, 0);
    CHECK_MESSAGE(same_bits(attention_probs(s, strided, dead, prm), pr), ctx, " strided mask");
  }
}

TEST_CASE("attention_probs / attention_probs_backward: bit-identical to the engine-op chain") {
  for (DType dt : {DType::f32, DType::bf16, DType::f16, DType::f64})
    for (int64_t k : {1, 7, 33, 1000})
      for (Mk mk : {Mk::none, Mk::padding, Mk::padding_b1, Mk::causal, Mk::window_padding}) check_tile(dt, k, mk);
}

TEST_CASE("attention_probs: values equal a plain f64 softmax loop; masked keys exactly 0, dead rows 0") {
  // f64 scores: the kernel's f64 softmax against exp / sum in long double, relative 1e-14
  // (two roundings of exp and one of 1/s: a few ulp of 2^-52 ≈ 2.2e-16, with margin).
  const int64_t b = 2, h = 1, r = 5, g = 2, k = 33;
  const Tensor s = rand_normal({b, h, r, g, k}, 5, 0, 3, DType::f64);
  auto [mask, dead] = make_mask(b, r, k);
  mask = mask.to(DType::f64);
  const AttentionRowsParams prm{.q_first = 20, .k_first = 0, .causal = true, .window = 6};
  const std::vector<double> p = to_vector(attention_probs(s, mask, dead, prm));
  const std::vector<double> sv = to_vector(s), mv = to_vector(mask), dv = to_vector(dead);
  for (int64_t n = 0; n < b; ++n)
    for (int64_t i = 0; i < r; ++i)
      for (int64_t gi = 0; gi < g; ++gi) {
        const size_t row = size_t(((n * h) * r + i) * g + gi) * size_t(k);
        const int64_t qpos = prm.q_first + i;
        std::vector<long double> x(static_cast<size_t>(k));
        long double mx = -INFINITY;
        std::vector<bool> vis(static_cast<size_t>(k));
        for (int64_t j = 0; j < k; ++j) {
          const double mj = mv[size_t((n * r + i) * k + j)];
          vis[size_t(j)] = j <= qpos && j > qpos - prm.window && mj != double(-FLT_MAX);
          x[size_t(j)] = sv[row + size_t(j)] + mj;
          if (vis[size_t(j)]) mx = std::max(mx, x[size_t(j)]);
        }
        long double sum = 0;
        for (int64_t j = 0; j < k; ++j)
          if (vis[size_t(j)]) sum += std::exp(x[size_t(j)] - mx);
        const bool is_dead = dv[size_t(n * r + i)] != 0;
        for (int64_t j = 0; j < k; ++j) {
          const double got = p[row + size_t(j)];
          if (is_dead || !vis[size_t(j)]) {
            REQUIRE_MESSAGE(got == 0.0, "row ", row / size_t(k), " key ", j, " should be 0, got ", got);
          } else {
            const double want = double(std::exp(x[size_t(j)] - mx) / sum);
            REQUIRE_MESSAGE(std::fabs(got - want) <= 1e-14 * want, "row ", row / size_t(k), " key ", j, ": ", got,
                            " vs ", want);
          }
        }
      }
}

TEST_CASE("attention_probs: errors name the operands' shapes") {
  const Tensor s = zeros({1, 2, 3, 1, 4}, DType::f32);
  CHECK_THROWS_AS(attention_probs(zeros({2, 3, 4}, DType::f32), {}, {}, {}), ShapeError);
  CHECK_THROWS_AS(attention_probs(s, zeros({1, 3, 5}, DType::f32), {}, {}), ShapeError);
  CHECK_THROWS_AS(attention_probs(s, zeros({1, 3, 4}, DType::bf16), {}, {}), DTypeError);
  CHECK_THROWS_AS(attention_probs(s, {}, zeros({1, 3}, DType::f32), {}), ShapeError);
  CHECK_THROWS_AS(attention_probs_backward(s, {}, {}, zeros({1, 2, 3, 1, 4}, DType::f32), zeros({1, 2, 3}, DType::f32), {}),
                  ShapeError);
  try {
    attention_probs(s, zeros({1, 3, 5}, DType::f32), {}, {});
  } catch (const ShapeError& e) {
    CHECK(std::string(e.what()).find("[1, 3, 5]") != std::string::npos);
  }
}

// attention_core with fused rows vs with the chain: the same tensors bit for bit.
void check_core(DType dt, int64_t b, int64_t nh, int64_t nkv, int64_t s, int64_t skv, int64_t hd, int mode,
                int64_t chunk) {
  const Tensor q0 = rand_normal({b, nh, s, hd}, 21 + uint64_t(s), 0, 1, dt);
  const Tensor k0 = rand_normal({b, nkv, skv, hd}, 22 + uint64_t(skv), 0, 1, dt);
  const Tensor v0 = rand_normal({b, nkv, skv, hd}, 23 + uint64_t(hd), 0, 1, dt);
  ag::AttentionOptions o;
  o.scaling = 1.0 / std::sqrt(double(hd));
  o.chunk_rows = chunk;
  o.causal = mode >= 1;
  if (mode == 2) o.window = 3;
  if (mode == 3) {   // left padding: batch n hides its first n + 1 keys, so early queries see none
    std::vector<double> m;
    for (int64_t n = 0; n < b; ++n)
      for (int64_t i = 0; i < s; ++i)
        for (int64_t j = 0; j < skv; ++j) m.push_back(j > n ? 0.0 : double(-FLT_MAX));
    o.mask = from_vector(m, {b, 1, s, skv}, DType::f32);
  }
  Tensor w = rand_normal({b, nh, s, hd}, 99, 0, 1, dt);
  std::vector<Tensor> res[2];
  for (int fused = 0; fused < 2; ++fused) {
    o.fused_rows = fused == 1;
    ag::Var q(q0, true), k(k0, true), v(v0, true);
    ag::Var out = ag::attention_core(q, k, v, o);
    ag::backward(ag::sum_all(out * ag::Var(w)));
    res[fused] = {out.value().contiguous(), q.grad(), k.grad(), v.grad()};
  }
  const char* names[] = {"out", "dq", "dk", "dv"};
  const std::string ctx = std::string(dtype_name(dt)) + " b" + std::to_string(b) + " nh" + std::to_string(nh) + " nkv" +
                          std::to_string(nkv) + " s" + std::to_string(s) + " skv" + std::to_string(skv) + " mode" +
                          std::to_string(mode) + " chunk" + std::to_string(chunk);
  for (int i = 0; i < 4; ++i)
    CHECK_MESSAGE(same_bits(res[1][size_t(i)], res[0][size_t(i)]), ctx, " ", names[i], " differs ",
                  first_diff(res[1][size_t(i)], res[0][size_t(i)]));
}

TEST_CASE("attention_core: fused rows bit-identical to the op chain (out, dq, dk, dv)") {
  for (DType dt : {DType::f32, DType::bf16, DType::f16, DType::f64})
    for (int mode : {0, 1, 2, 3}) {
      check_core(dt, 2, 4, 2, 7, 7, 8, mode, 3);
      check_core(dt, 3, 2, 1, 5, 9, 4, mode == 0 ? 0 : mode, 0);   // queries after a past
    }
  check_core(DType::bf16, 1, 8, 2, 33, 33, 16, 1, 0);
}

}  // namespace
}  // namespace arq
