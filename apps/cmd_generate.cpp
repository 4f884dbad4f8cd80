// ar-quant generate: greedy or sampled continuation of a prompt.
#include <cstdio>

#include "apps/commands.h"
#include "apps/flags.h"
#include "io/tokenizer.h"
#include "models/generate.h"
#include "models/loader.h"

namespace arq::app {

int cmd_generate(const Args& args) {
  Flags f("generate", {
                          {"model", true, "model folder or .gguf file", ""},
                          {"prompt", true, "prompt text (BOS is added as the tokenizer says)", ""},
                          {"max_new_tokens", true, "tokens to generate", "64"},
                          {"temperature", true, "0: greedy; > 0: sampling temperature", "0"},
                          {"top_p", true, "nucleus sampling mass", "1.0"},
                          {"seed", true, "sampling seed", "0"},
                          {"ids", false, "also print the generated token ids", ""},
                          {"help", false, "print this help", ""},
                      });
  f.parse(args);
  if (f.on("help")) {
    std::printf("%s", f.help().c_str());
    return 0;
  }
  const std::string model_path = f.require("model");
  models::CausalLM lm = models::load_causal_lm(model_path);
  auto tok = models::load_model_tokenizer(model_path);
  std::vector<int32_t> p = tok->encode(f.str("prompt"));
  if (p.empty() || (tok->bos_id() >= 0 && p.front() != tok->bos_id())) {
    const int64_t bos = tok->bos_id() >= 0 ? tok->bos_id() : lm.spec().bos_token_id;
    if (bos >= 0) p.insert(p.begin(), static_cast<int32_t>(bos));
  }
  ARQ_CHECK(!p.empty(), UsageError, "empty prompt and no BOS token to start from");
  models::GenerateOptions o;
  o.max_new_tokens = f.integer("max_new_tokens");
  o.sampling.temperature = f.number("temperature");
  o.sampling.top_p = f.number("top_p");
  o.sampling.seed = static_cast<uint64_t>(f.integer("seed"));
  for (int32_t e : tok->special_tokens().eos_ids) o.stop_ids.push_back(e);
  if (o.stop_ids.empty() && tok->eos_id() >= 0) o.stop_ids.push_back(tok->eos_id());
  std::vector<int64_t> prompt(p.begin(), p.end());
  std::vector<int64_t> out = models::generate(lm, prompt, o);
  std::vector<int32_t> all(p.begin(), p.end());
  all.insert(all.end(), out.begin(), out.end());
  std::printf("%s\n", tok->decode(all, /*skip_special=*/true).c_str());
  if (f.on("ids")) {
    for (size_t i = 0; i < out.size(); ++i) std::printf("%s%lld", i ? " " : "", static_cast<long long>(out[i]));
    std::printf("\n");
  }
  return 0;
}

}  // namespace arq::app
