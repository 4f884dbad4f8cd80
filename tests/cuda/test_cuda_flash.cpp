// The CUDA flash attention kernels (kernels/cuda/cuda_flash_attention.cu) against the CPU
// reference kernels (f64 plain loops, themselves checked against ag::attention_composed in
// tests/autograd/test_attention_flash.cpp): O, lse, dQ, dK, dV for bf16 and f16, head_dim 64 and
// 128, GQA groups 1 and 4, full / causal / sliding-window attention, one query, odd lengths that
// leave partial 64- and 32-row tiles, queries after cached keys, sequence-major (strided) inputs.
//
// Tolerance, normwise ‖cuda − ref‖ / ‖ref‖ (the reference rounds only its outputs): the kernels
// round P to the activation dtype before P·V and dP − D's product dS before dS·K / dSᵀ·Q, each a
// relative 2^-8 (bf16) / 2^-11 (f16) per term, so errors of ~2^-9 / 2^-12 normwise; the bounds are
// 4× that for O and 8× for the gradients (sums of two rounded products). lse is f32 on both sides:
// exp2/log2 approximations and the order of the sums, 1e-5 relative.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "autograd/attention.h"
#include "autograd/autograd.h"
#include "engine/flash_attention.h"
#include "tests/attention_test_util.h"
#include "models/causal_lm.h"
#include "models/family.h"
#include "models/random_model.h"
#include "tests/cuda/cuda_test_util.h"

using namespace arq;
using namespace arq::cudatest;

TEST_CASE("cuda op flash attention: O, lse and the gradients match the CPU reference kernels") {
  const Device dev = device_under_test();
  struct Shape_ {
    int64_t b, s, past;
  };
  int cases = 0, passed = 0;
  double worst[2][5] = {};   // per dtype: the largest O, lse, dQ, dK, dV errors
  for (DType dt : {DType::bf16, DType::f16})
    for (int64_t hd : {64, 128})
      for (int64_t g : {1, 4})
        for (int kind = 0; kind < 3; ++kind)   // full, causal, causal + window 37
          for (Shape_ sh : {Shape_{2, 1, 0}, Shape_{2, 37, 0}, Shape_{1, 130, 0}, Shape_{1, 64, 64}, Shape_{1, 300, 5}}) {
            if (kind == 0 && sh.past > 0) continue;
            const int64_t nkv = 2, nh = nkv * g, skv = sh.s + sh.past;
            const FlashAttentionParams p{.scaling = 1.0 / std::sqrt(double(hd)), .causal = kind > 0,
                                         .window = kind == 2 ? 37 : 0};
            const uint64_t seed = uint64_t(100 * hd + 10 * g + kind) + uint64_t(sh.s);
            const Tensor q = test::seq_major_normal(sh.b, nh, sh.s, hd, seed, dt);
            const Tensor k = test::seq_major_normal(sh.b, nkv, skv, hd, seed + 1, dt);
            const Tensor v = rand_normal({sh.b, nkv, skv, hd}, seed + 2, 0, 1, dt);
            const Tensor dout = rand_normal({sh.b, nh, sh.s, hd}, seed + 3, 0, 1, dt);
            const FlashForward rf = flash_attention_forward(q, k, v, p);
            const FlashGrads rg = flash_attention_backward(q, k, v, rf.o, rf.lse, dout, p);
            const Tensor qd = q.to(dev), kd = k.to(dev), vd = v.to(dev), dd = dout.to(dev);
            const FlashForward f = flash_attention_forward(qd, kd, vd, p);
            // The device's own O and lse feed its backward (as in training); the reference's
            // gradients used the reference's O — within O's tolerance of each other.
            const FlashGrads gr = flash_attention_backward(qd, kd, vd, f.o, f.lse, dd, p);
            const double e16 = dt == DType::bf16 ? 0x1p-9 : 0x1p-12;
            const auto err = [](const Tensor& a, const Tensor& b) { return test::normwise_rel_err(a, b, 0.01); };
            const double e_o = err(f.o, rf.o), e_l = err(f.lse, rf.lse), e_q = err(gr.dq, rg.dq), e_k = err(gr.dk, rg.dk),
                         e_v = err(gr.dv, rg.dv);
            const bool ok = e_o <= 4 * e16 && e_l <= 1e-5 && e_q <= 8 * e16 && e_k <= 8 * e16 && e_v <= 8 * e16;
            const std::string ctx = cat(dtype_name(dt), " hd", hd, " g", g, " ",
                                        kind == 0 ? "full" : kind == 1 ? "causal" : "window37", " b", sh.b, " s", sh.s,
                                        " past", sh.past, ": rel err O ", e_o, " lse ", e_l, " dQ ", e_q, " dK ", e_k,
                                        " dV ", e_v);
            if (!ok) MESSAGE("FAILED " << ctx);
            CHECK(ok);
            double* w = worst[dt == DType::bf16 ? 0 : 1];
            const double e[5] = {e_o, e_l, e_q, e_k, e_v};
            for (int i = 0; i < 5; ++i) w[i] = std::max(w[i], e[i]);
            ++cases;
            passed += ok;
          }
  for (int i = 0; i < 2; ++i)
    MESSAGE(cat(i == 0 ? "bf16" : "f16", " worst rel err: O ", worst[i][0], " lse ", worst[i][1], " dQ ", worst[i][2],
                " dK ", worst[i][3], " dV ", worst[i][4]));
  MESSAGE(passed, " of ", cases, " flash attention cases match the CPU reference on ", dev.str());
  CHECK(passed == cases);
}

TEST_CASE("cuda op flash attention: attention_core takes the flash path on CUDA and agrees with its chunked path") {
  const Device dev = device_under_test();
  const int64_t b = 2, nkv = 2, nh = 8, s = 200, hd = 128;
  const Tensor q = test::seq_major_normal(b, nh, s, hd, 51, DType::bf16).to(dev);
  const Tensor k = test::seq_major_normal(b, nkv, s, hd, 52, DType::bf16).to(dev);
  const Tensor v = test::seq_major_normal(b, nkv, s, hd, 53, DType::bf16).to(dev);
  const Tensor w = rand_normal({b, nh, s, hd}, 54, 0, 1, DType::bf16).to(dev);
  ag::AttentionOptions o{.scaling = 1 / std::sqrt(double(hd)), .causal = true};
  CHECK(ag::attention_flash_applies(ag::Var(q), ag::Var(k), ag::Var(v), o) == dev.is_cuda());
  auto run = [&](bool flash) {
    o.flash = flash;
    ag::Var qv(q, true), kv(k, true), vv(v, true);
    ag::Var out = ag::attention_core(qv, kv, vv, o);
    ag::backward(ag::sum_all(out * ag::Var(w)));
    return std::vector<Tensor>{out.value(), qv.grad(), kv.grad(), vv.grad()};
  };
  const std::vector<Tensor> fl = run(true), ch = run(false);
  const char* names[] = {"out", "dq", "dk", "dv"};
  for (size_t i = 0; i < fl.size(); ++i) {
    INFO(names[i]);
    CHECK(fl[i].shape() == ch[i].shape());
    // both paths round P (and dS) to bf16, at different points: 2·8·2^-9 normwise
    CHECK(test::normwise_rel_err(fl[i], ch[i], 0.01) <= 16 * 0x1p-9);
  }
}

TEST_CASE("cuda op flash attention: a Mistral-style block (window 5, head_dim 64, bf16) on the device matches the CPU") {
  // The model path: block_inputs marks its masks structural, so on CUDA the block's attention takes
  // the flash kernels with causal = true and window = 5 (the mask is not read); the CPU block runs
  // the composition with the additive mask. Output and the gradient of the block input agree to
  // bf16 rounding (every GEMM of the block rounds its output to bf16 on both devices).
  const Device dev = device_under_test();
  models::DecoderSpec spec = models::tiny_spec("mistral");
  spec.hidden_size = 128;
  spec.intermediate_size = 160;
  spec.head_dim = 64;
  spec.rope.dim = 64;
  const int64_t b = 2, s = 70;
  auto run = [&](Device d) {
    const models::CausalLM lm = models::random_causal_lm(spec, {.seed = 3, .dtype = DType::bf16}, {.device = d});
    const models::BlockWeights bw = lm.load_block(0);
    const models::BlockInputs in = lm.block_inputs({.batch = b, .seq = s});
    CHECK(in.masks_structural);
    ag::Var x(rand_normal({b, s, spec.hidden_size}, 9, 0, 1, DType::bf16).to(d), true);
    const ag::Var y = lm.block_forward(bw, x, in);
    ag::backward(ag::sum_all(y * ag::Var(rand_normal({b, s, spec.hidden_size}, 10, 0, 1, DType::bf16).to(d))));
    return std::vector<Tensor>{y.value(), x.grad()};
  };
  const std::vector<Tensor> cpu = run(Device::cpu()), got = run(dev);
  const double e_y = test::normwise_rel_err(got[0], cpu[0], 0.01), e_g = test::normwise_rel_err(got[1], cpu[1], 0.01);
  MESSAGE(cat("mistral-style block on ", dev.str(), ": rel err output ", e_y, ", input gradient ", e_g));
  CHECK(e_y <= 5e-3);   // H100: 5.6e-4
  CHECK(e_g <= 5e-3);   // H100: 4.8e-4
}
