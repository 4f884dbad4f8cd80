#include "quant/recipe.h"

#include "engine/error.h"

namespace arq::quant {

Recipe recipe_by_name(const std::string& name_in) {
  std::string name = name_in;
  if (name.rfind("auto-round-", 0) == 0) name = name.substr(11);
  if (name == "auto-round" || name == "auto_round") name = "default";
  Recipe r;
  r.name = name;
  if (name == "default") return r;
  if (name == "best") {
    r.iters = 1000;
    r.nsamples = 512;
    return r;
  }
  if (name == "light") {
    r.iters = 50;
    r.lr = 5e-3;  // not 1/50
    return r;
  }
  if (name == "opt-rtn" || name == "opt_rtn") {
    r.name = "opt-rtn";
    r.iters = 0;
    r.disable_opt_rtn = false;
    return r;
  }
  if (name == "rtn") {
    r.iters = 0;
    r.nsamples = 1;
    r.disable_opt_rtn = true;
    return r;
  }
  throw UsageError(cat("--recipe: unknown recipe '", name_in, "' (known: default, best, light, rtn, opt-rtn)"));
}

}  // namespace arq::quant
