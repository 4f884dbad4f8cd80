// Backward frees saved tensors as it goes (suite unit): for a chain of N layers the live bytes
// after the forward pass grow with N (the saved activations) while the extra peak during
// backward stays a constant number of activations, independent of N.
#include <doctest/doctest.h>

#include "autograd/autograd.h"
#include "engine/storage.h"

namespace arq::ag {
namespace {

struct ChainBytes {
  size_t saved;     // live after forward − live before forward (saved activations + loss)
  size_t backward;  // peak during backward − live before backward
  size_t after;     // live after backward − live before forward (the weight gradients)
};

ChainBytes run_chain(int n_layers, int64_t d, bool retain_graph = false) {
  Allocator& alloc = allocator_for(Device::cpu());
  std::vector<Var> ws;
  for (int i = 0; i < n_layers; ++i) ws.emplace_back(rand_normal({d, d}, 100 + i, 0, 0.1), true);  // [d, d]
  Var x(rand_normal({d, d}, 1));                                                                 // [n, d]
  const size_t before = alloc.bytes_in_use();
  Var loss;
  {
    Var h = x;
    for (int i = 0; i < n_layers; ++i) h = tanh(matmul(h, ws[i]));  // saves h_in (= previous tanh output)
    loss = sum_all(h);
  }
  const size_t after_fwd = alloc.bytes_in_use();
  alloc.reset_peak();
  backward(loss, {}, retain_graph);
  const size_t peak = alloc.peak_bytes();
  loss = Var();
  const size_t after_bwd = alloc.bytes_in_use();
  return {after_fwd - before, peak - after_fwd, after_bwd - before};
}

TEST_CASE("memory: backward peak does not grow with depth beyond the saved activations") {
  const int64_t d = 64;
  const size_t act = static_cast<size_t>(d * d) * sizeof(float);  // one activation = one weight = 16 KiB
  ChainBytes small = run_chain(4, d), big = run_chain(32, d);
  MESSAGE("N=4: saved ", small.saved, " B, backward extra ", small.backward, " B; N=32: saved ", big.saved,
          " B, backward extra ", big.backward, " B (activation ", act, " B)");
  // One saved activation per layer (the tanh output, also the next matmul's saved input).
  CHECK(small.saved <= 4 * act + 1024);
  CHECK(big.saved <= 32 * act + 1024);
  CHECK(big.saved >= 31 * act);
  // During backward each step frees one saved activation and creates one weight gradient; the
  // transient is a handful of activation-sized temporaries (cotangent, 1 − y², products),
  // the same for N = 4 and N = 32. Without freeing, N = 32 would need ~32 activations more.
  CHECK(small.backward <= 6 * act);
  CHECK(big.backward <= 6 * act);
  // After backward only the N weight gradients remain.
  CHECK(big.after <= 32 * act + 1024);
  // The check can fail: keeping the graph (retain_graph) keeps every saved activation while the
  // 32 weight gradients are created, so the extra peak is the gradients themselves.
  ChainBytes kept = run_chain(32, d, /*retain_graph=*/true);
  CHECK(kept.backward >= 30 * act);
}

}  // namespace
}  // namespace arq::ag
