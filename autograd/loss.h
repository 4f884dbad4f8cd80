// Losses for block tuning (masked MSE) and language-model training (cross-entropy).
//
//   Var l = masked_mse(pred, ref, mask);            // pred, ref [b, s, h]; mask [b, s, 1]
//   Var ce = cross_entropy(logits, targets, -100);  // logits [n, v]; targets [n] i64
#pragma once

#include <cstdint>

#include "autograd/var.h"

namespace arq::ag {

enum class MseReduction : uint8_t {
  mean_valid,  // sum(mask·(p−t)²) / (number of valid elements = sum of mask broadcast to p)
  mean_all,    // sum(mask·(p−t)²) / p.numel() — torch mse_loss(p·mask, t·mask), as AutoRound
  sum,         // sum(mask·(p−t)²) — AutoRound with gradient accumulation
};

// Squared error between pred and target where mask != 0. mask is a floating 0/1 tensor
// broadcastable to pred (e.g. [b, s, 1] for [b, s, h]) or undefined (every position valid).
// target is a constant (no gradient). Computed in pred's dtype; pass f32 for AutoRound.
// A mask with no valid position gives 0 under mean_valid.
Var masked_mse(const Var& pred, const Tensor& target, const Tensor& mask = {},
               MseReduction reduction = MseReduction::mean_valid);

// Mean over non-ignored rows of −log softmax(logits)[i, targets[i]].
// logits [n, v] floating; targets [n] i32/i64; rows whose target equals ignore_index are
// skipped; every other target must lie in [0, v). All rows ignored gives 0.
Var cross_entropy(const Var& logits, const Tensor& targets, int64_t ignore_index = -100);

}  // namespace arq::ag
