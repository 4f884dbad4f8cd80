// Model families: config.json (io::ModelConfig) <-> DecoderSpec, one file per family
// (llama.cpp, mistral.cpp, qwen2.cpp, qwen3.cpp) over shared conversion code (family.cpp).
//
//   io::ModelConfig cfg = io::load_config(dir);
//   DecoderSpec spec = decoder_spec(cfg, dir + "/config.json");   // ConfigError when unsupported
//   io::ModelConfig back = model_config(spec);                     // for writing config.json
#pragma once

#include <string>
#include <vector>

#include "io/config.h"
#include "models/decoder_spec.h"

namespace arq::models {

struct Family {
  const char* model_type;     // config.json model_type
  const char* architecture;   // config.json architectures[0]
  // Family-specific fields of the typed config onto a spec whose shared fields are filled.
  void (*read)(const io::ModelConfig& cfg, DecoderSpec& spec, const std::string& origin);
  // The reverse, onto a typed config whose shared fields are filled.
  void (*write)(const DecoderSpec& spec, io::ModelConfig& cfg);
};

// The families this build runs, in a stable order (llama, mistral, qwen2, qwen3).
const std::vector<Family>& families();
// ConfigError naming model_type and listing the supported ones.
const Family& family_for(const std::string& model_type);

DecoderSpec decoder_spec(const io::ModelConfig& cfg, const std::string& origin = "config.json");
io::ModelConfig model_config(const DecoderSpec& spec);

// A small spec of a family for tests and examples (random weights fit it); fields can be
// changed afterwards (call validate()).
DecoderSpec tiny_spec(const std::string& model_type);

// Per-family hooks (defined in the family files).
void llama_read(const io::ModelConfig& cfg, DecoderSpec& spec, const std::string& origin);
void llama_write(const DecoderSpec& spec, io::ModelConfig& cfg);
void mistral_read(const io::ModelConfig& cfg, DecoderSpec& spec, const std::string& origin);
void mistral_write(const DecoderSpec& spec, io::ModelConfig& cfg);
void qwen2_read(const io::ModelConfig& cfg, DecoderSpec& spec, const std::string& origin);
void qwen2_write(const DecoderSpec& spec, io::ModelConfig& cfg);
void qwen3_read(const io::ModelConfig& cfg, DecoderSpec& spec, const std::string& origin);
void qwen3_write(const DecoderSpec& spec, io::ModelConfig& cfg);

}  // namespace arq::models
