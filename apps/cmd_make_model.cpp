// ar-quant make-model: a model of any supported family with random weights, saved as an HF
// folder (the fixtures of tests and examples).
//
// With --config the config.json written is the one read (every field, unknown keys included,
// so transformers builds the same model), with torch_dtype set to the stored dtype and
// architectures filled in when the file had none. Without it, the size flags describe the model.
#include <cstdio>
#include <optional>

#include "apps/commands.h"
#include "apps/flags.h"
#include "io/config.h"
#include "models/family.h"
#include "models/random_model.h"

namespace arq::app {

int cmd_make_model(const Args& args) {
  Flags f("make-model",
          {
              {"config", true, "config.json to build from (else --arch and the size flags)", ""},
              {"arch", true, "llama, mistral, qwen2 or qwen3 (with --config: ignored)", "llama"},
              {"output_dir", true, "folder to write", ""},
              {"seed", true, "random seed", "0"},
              {"dtype", true, "stored dtype: f32, bf16 or f16", "f32"},
              {"tokenizer", true, "copy tokenizer files from this folder", ""},
              {"hidden_size", true, "", "64"},
              {"intermediate_size", true, "", "176"},
              {"num_hidden_layers", true, "", "2"},
              {"num_attention_heads", true, "", "4"},
              {"num_key_value_heads", true, "", "2"},
              {"head_dim", true, "0: hidden_size / num_attention_heads", "0"},
              {"vocab_size", true, "", "512"},
              {"max_position_embeddings", true, "", "2048"},
              {"rope_theta", true, "", "10000"},
              {"rms_norm_eps", true, "", "1e-5"},
              {"sliding_window", true, "mistral/qwen2/qwen3: window on every layer (0: none)", "0"},
              {"tie_word_embeddings", false, "share the embedding table with lm_head", ""},
              {"initializer_range", true, "std of the random weights", "0.02"},
              {"help", false, "print this help", ""},
          });
  f.parse(args);
  if (f.on("help")) {
    std::printf("%s", f.help().c_str());
    return 0;
  }
  const std::string out = f.require("output_dir");
  models::DecoderSpec spec;
  std::optional<io::ModelConfig> cfg;
  if (f.has("config")) {
    cfg = io::load_config(f.str("config"));
    spec = models::decoder_spec(*cfg, f.str("config"));
  } else {
    const std::string arch = f.str("arch");
    models::family_for(arch);   // UsageError-like ConfigError for an unknown family
    spec = models::tiny_spec(arch);
    spec.hidden_size = f.integer("hidden_size");
    spec.intermediate_size = f.integer("intermediate_size");
    spec.num_hidden_layers = f.integer("num_hidden_layers");
    spec.num_attention_heads = f.integer("num_attention_heads");
    spec.num_key_value_heads = f.integer("num_key_value_heads");
    const int64_t hd = f.integer("head_dim");
    ARQ_CHECK(hd > 0 || spec.hidden_size % spec.num_attention_heads == 0, UsageError, "--hidden_size ",
              spec.hidden_size, " is not divisible by --num_attention_heads ", spec.num_attention_heads,
              "; give --head_dim");
    spec.head_dim = hd > 0 ? hd : spec.hidden_size / spec.num_attention_heads;
    spec.rope.dim = spec.head_dim;
    spec.vocab_size = f.integer("vocab_size");
    spec.rope.max_position_embeddings = f.integer("max_position_embeddings");
    spec.rope.theta = f.number("rope_theta");
    spec.rms_norm_eps = f.number("rms_norm_eps");
    spec.initializer_range = f.number("initializer_range");
    spec.tie_word_embeddings = f.on("tie_word_embeddings");
    const int64_t w = f.integer("sliding_window");
    ARQ_CHECK(w == 0 || arch != "llama", UsageError, "--sliding_window: llama has no sliding window");
    spec.sliding_window.assign(static_cast<size_t>(spec.num_hidden_layers), w);
    spec.validate();
  }
  const std::string dt = f.str("dtype");
  DType dtype = DType::f32;
  if (dt == "bf16" || dt == "bfloat16") dtype = DType::bf16;
  else if (dt == "f16" || dt == "float16") dtype = DType::f16;
  else ARQ_CHECK(dt == "f32" || dt == "float32", UsageError, "--dtype must be f32, bf16 or f16, got '", dt, "'");
  models::CausalLM lm = models::random_causal_lm(spec, {.seed = static_cast<uint64_t>(f.integer("seed")), .dtype = dtype});
  models::SaveOptions so;
  so.tokenizer_dir = f.str("tokenizer");
  models::save_pretrained(lm, out, so);
  if (cfg) {
    io::DecoderConfig& d = io::decoder_config(*cfg);
    d.torch_dtype = dtype == DType::bf16 ? "bfloat16" : dtype == DType::f16 ? "float16" : "float32";
    if (d.architectures.empty()) d.architectures = io::decoder_config(models::model_config(spec)).architectures;
    io::save_config(out, *cfg);   // replaces the spec-derived config.json save_pretrained wrote
  }
  int64_t params = 0;
  for (const std::string& n : models::checkpoint_tensor_names(spec)) params += shape_numel(*lm.source().shape(n));
  std::printf("wrote %s model (%lld parameters, %s) to %s\n", spec.model_type.c_str(), static_cast<long long>(params),
              dtype_name(dtype), out.c_str());
  return 0;
}

}  // namespace arq::app
