// ar-quant eval: perplexity of a model on a text file (models/perplexity.h has the protocol).
#include <chrono>
#include <cstdio>
#include <fstream>
#include <unistd.h>

#include "io/json_util.h"
#include "apps/commands.h"
#include "apps/flags.h"
#include "engine/ops.h"
#include "io/tokenizer.h"
#include "models/loader.h"
#include "models/perplexity.h"

namespace arq::app {

namespace {


// "gpu" is an alias of cuda:0; a malformed cuda:N is a usage error (Device::parse).
Device parse_device(const std::string& s) {
  const Device d = s == "gpu" ? Device::cuda(0) : Device::parse(s);
  if (d.is_cuda()) {
    ARQ_CHECK(cuda_compiled(), DeviceError, "--device ", d.str(),
              ": this ar-quant was built without CUDA (reconfigure with -Dcuda=enabled, or use --device cpu)");
    const int n = cuda_device_count();
    ARQ_CHECK(d.index < n, DeviceError, "--device ", d.str(), ": no such CUDA device (", n, " visible)");
  }
  return d;
}

std::optional<DType> parse_dtype(const std::string& s) {
  if (s.empty() || s == "auto") return std::nullopt;
  if (s == "f32" || s == "float32") return DType::f32;
  if (s == "bf16" || s == "bfloat16") return DType::bf16;
  if (s == "f16" || s == "float16") return DType::f16;
  throw UsageError(cat("--dtype must be auto, f32, bf16 or f16, got '", s, "'"));
}

}  // namespace

int cmd_eval(const Args& args) {
  Flags f("eval", {
                      {"model", true, "model folder (config.json + safetensors) or .gguf file", ""},
                      {"text", true, "text file to score", ""},
                      {"seqlen", true, "tokens per chunk including the BOS", "2048"},
                      {"max_chunks", true, "score at most this many chunks (0: all)", "0"},
                      {"json", false, "print {\"perplexity\", \"nll\", \"tokens\"} as JSON", ""},
                      {"dump_logits", true, "write the first chunk's logits as raw little-endian f32 [tokens, vocab]", ""},
                      {"device", true, "cpu, cuda or cuda:N", "cpu"},
                      {"dtype", true, "compute dtype: auto (as stored), f32, bf16, f16", "auto"},
                      {"help", false, "print this help", ""},
                  });
  f.parse(args);
  if (f.on("help")) {
    std::printf("%s", f.help().c_str());
    return 0;
  }
  const std::string model_path = f.require("model"), text_path = f.require("text");
  const int64_t seqlen = f.integer("seqlen"), max_chunks = f.integer("max_chunks");
  ARQ_CHECK(seqlen >= 2, UsageError, "--seqlen must be at least 2, got ", seqlen);
  ARQ_CHECK(max_chunks >= 0, UsageError, "--max_chunks must be >= 0, got ", max_chunks);

  models::LoadOptions lo;
  lo.device = parse_device(f.str("device"));
  lo.dtype = parse_dtype(f.str("dtype"));
  models::CausalLM lm = models::load_causal_lm(model_path, lo);
  auto tok = models::load_model_tokenizer(model_path);
  const std::vector<int32_t> ids = tok->encode(io::read_text_file(text_path), io::EncodeOptions{.add_bos = false, .add_eos = false});
  int64_t bos = tok->bos_id() >= 0 ? tok->bos_id() : lm.spec().bos_token_id;
  ARQ_CHECK(bos >= 0, UsageError, "the model has no BOS token (tokenizer and config.json bos_token_id are unset)");

  models::PerplexityOptions po;
  po.seqlen = seqlen;
  po.max_chunks = max_chunks;
  po.bos_id = bos;
  po.keep_first_logits = f.has("dump_logits");
  const bool tty = isatty(fileno(stderr)) != 0;
  const auto t0 = std::chrono::steady_clock::now();
  po.progress = [&](int64_t done, int64_t total) {
    if (!tty || total < 2) return;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const int width = 30, filled = static_cast<int>(width * done / total);
    std::fprintf(stderr, "\r[%.*s%*s] %lld/%lld chunks, %.1f s, eta %.0f s", filled, "==============================",
                 width - filled, "", static_cast<long long>(done), static_cast<long long>(total), secs,
                 secs / static_cast<double>(done) * static_cast<double>(total - done));
    if (done == total) std::fprintf(stderr, "\n");
  };
  models::PerplexityResult r = models::perplexity(lm, ids, po);

  if (f.has("dump_logits")) {
    const std::string out = f.str("dump_logits");
    Tensor l = r.first_logits.to(DType::f32).contiguous();   // [tokens, vocab]
    std::FILE* fp = std::fopen(out.c_str(), "wb");
    ARQ_CHECK(fp != nullptr, IoError, "cannot write '", out, "'");
    const size_t n = std::fwrite(l.data<float>(), sizeof(float), static_cast<size_t>(l.numel()), fp);
    const bool ok = n == static_cast<size_t>(l.numel()) && std::fclose(fp) == 0;
    ARQ_CHECK(ok, IoError, "short write to '", out, "'");
    std::fprintf(stderr, "wrote logits [%lld, %lld] to %s\n", static_cast<long long>(l.size(0)),
                 static_cast<long long>(l.size(1)), out.c_str());
  }
  if (f.on("json")) {
    std::printf("{\"perplexity\": %.6f, \"nll\": %.8f, \"tokens\": %lld}\n", r.perplexity(), r.mean_nll(),
                static_cast<long long>(r.tokens));
  } else {
    std::printf("perplexity: %.4f\n", r.perplexity());
    std::printf("mean nll: %.6f\n", r.mean_nll());
    std::printf("tokens: %lld (%lld chunks of up to %lld)\n", static_cast<long long>(r.tokens),
                static_cast<long long>(r.chunks), static_cast<long long>(seqlen));
  }
  return 0;
}

}  // namespace arq::app
