// AutoRound's recipes (spec/autoround.md §2): the defaults behind `auto-round`,
// `auto-round-best`, `auto-round-light`, `auto-round-opt-rtn` and `auto-round-rtn`.
// A recipe fills only what the user did not set explicitly.
//
//   Recipe r = recipe_by_name("light");     // iters 50, lr 5e-3
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace arq::quant {

struct Recipe {
  std::string name;
  int64_t batch_size = 8;
  int64_t iters = 200;
  int64_t seqlen = 2048;
  int64_t nsamples = 128;
  double lr = 0;                         // 0: auto (1/iters, 2/iters for <= 3 bits from 1000 iters)
  std::optional<bool> disable_opt_rtn;   // unset: auto (opt-RTN for int_sym below 8 bits)
};

// "default" (also "auto-round"), "best", "light", "rtn", "opt-rtn" (with or without the
// "auto-round-" prefix). UsageError naming --recipe and the known names otherwise.
Recipe recipe_by_name(const std::string& name);

}  // namespace arq::quant
