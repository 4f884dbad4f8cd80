// ar-quant quantize (also `ar-quant --model …` with no subcommand, like `auto-round --model …`):
// AutoRound's flag names over quant::run_quantize_job. Every flag is checked before any work.
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "apps/commands.h"
#include "apps/flags.h"
#include "engine/backend.h"
#include "engine/error.h"
#include "quant/pipeline.h"
#include "quant/recipe.h"

namespace arq::app {

namespace {

std::vector<FlagSpec> quantize_flags() {
  return {
      {"model", true, "Hugging Face model folder (or .gguf file); may also be given positionally"},
      {"recipe", true, "default | best | light | rtn | opt-rtn (explicit flags override it)", "default"},
      {"bits", true, "weight bits, 2..8", "4"},
      {"group_size", true, "group size; -1 per channel, 0 per tensor", "128"},
      {"sym", false, "symmetric quantization (the default)"},
      {"asym", false, "asymmetric quantization (zero point)"},
      {"data_type", true, "int | int_sym | int_asym | int_sym_gptq", "int"},
      {"scale_dtype", true, "dtype scales are rounded to: fp16 | bf16 | fp32", "fp16"},
      {"iters", true, "SignRound iterations per block; 0 = RTN (recipe: 200)"},
      {"lr", true, "learning rate (default 1/iters; 2/iters for <=3-bit layers when iters >= 1000)"},
      {"minmax_lr", true, "learning rate of the min/max scales (default: lr)"},
      {"nsamples", true, "calibration samples (recipe: 128)"},
      {"seqlen", true, "calibration sequence length (recipe: 2048)"},
      {"batch_size", true, "samples per micro-batch (recipe: 8)"},
      {"gradient_accumulate_steps", true, "micro-batches per optimizer step", "1"},
      {"dataset", true, "calibration text: FILE[:concat=true][:num=K], comma-separated"},
      {"seed", true, "random seed", "42"},
      {"layer_config", true, "per-layer settings: JSON (or JSON-like) text or a file, e.g. \"{k_proj:{bits:8}}\""},
      {"fp_layers", true, "comma-separated layer names (or patterns) kept in 16 bits"},
      {"ignore_layers", true, "alias of --fp_layers"},
      {"quant_lm_head", false, "also quantize lm_head (only with untied embeddings)"},
      {"disable_minmax_tuning", false, "do not tune the min/max scales (alpha, beta)"},
      {"disable_quanted_input", false, "train every block on the FP inputs instead of the quantized chain"},
      {"not_use_best_mse", false, "keep the last iteration instead of the best one"},
      {"disable_opt_rtn", false, "iters 0: plain RTN instead of the optimized scale search"},
      {"enable_opt_rtn", false, "iters 0: force the optimized RTN scale search"},
      {"cache_dtype", true, "activation caches: f32 | bf16 | auto (bf16 on CUDA under 16-bit compute, as AutoRound caches in the AMP dtype; else f32)", "auto"},
      {"model_dtype", true, "compute dtype (default: the model's)"},
      {"format", true, "auto_round | auto_gptq | auto_awq | gguf:<type> | fake; several comma-separated", "auto_round"},
      {"overwrite", false, "replace an existing output folder"},
      {"output_dir", true, "output folder (the model goes to <output_dir>/<name>-w<bits>g<group>)", "./tmp_autoround"},
      {"eval_text", true, "after quantizing, print FP and quantized perplexity on this text file"},
      {"eval_seqlen", true, "sequence length for --eval_text (default: --seqlen)"},
      {"device", true, "cpu | cuda | cuda:N", "cpu"},
      {"low_gpu_mem_usage", false, "with --device cuda: keep the activation caches in (pinned) host memory, streamed per batch"},
      {"threads", true, "CPU threads (default: ARQ_NUM_THREADS or all cores)"},
      {"help", false, "print this help"},
  };
}

DType parse_dtype_flag(const std::string& v, const char* flag) {
  if (v == "fp16" || v == "float16" || v == "f16" || v == "half") return DType::f16;
  if (v == "bf16" || v == "bfloat16") return DType::bf16;
  if (v == "fp32" || v == "float32" || v == "f32" || v == "float") return DType::f32;
  throw UsageError(cat("--", flag, ": unknown dtype '", v, "' (fp16, bf16, fp32)"));
}

// A text progress bar on stderr, redrawn in place (only on a terminal).
struct Progress {
  bool tty = isatty(2) != 0;
  void update(int64_t block, int64_t it, int64_t iters, double loss) const {
    if (!tty) return;
    const int width = 30;
    const int filled = static_cast<int>(width * (it + 1) / iters);
    std::fprintf(stderr, "\r  block %lld [%s%s] %lld/%lld loss %.4g   ", static_cast<long long>(block + 1), std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(),
                 static_cast<long long>(it + 1), static_cast<long long>(iters), loss);
    if (it + 1 == iters) std::fprintf(stderr, "\r%*s\r", 80, "");
  }
};

}  // namespace

int cmd_quantize(const Args& args) {
  Flags f("quantize", quantize_flags());
  f.parse(args);
  if (f.on("help")) {
    std::printf("%s", f.help().c_str());
    return 0;
  }
  quant::QuantizeJob job;
  if (f.has("model")) job.model = f.str("model");
  else if (!f.positional().empty()) job.model = f.positional().front();
  ARQ_CHECK(!job.model.empty(), UsageError, "quantize: --model is required");
  ARQ_CHECK(f.positional().size() <= (f.has("model") ? 0u : 1u), UsageError, "quantize: unexpected argument '",
            f.positional().back(), "'");
  ARQ_CHECK(!(f.on("sym") && f.on("asym")), UsageError, "quantize: --sym and --asym are mutually exclusive");
  ARQ_CHECK(!(f.on("disable_opt_rtn") && f.on("enable_opt_rtn")), UsageError,
            "quantize: --disable_opt_rtn and --enable_opt_rtn are mutually exclusive");
  ARQ_CHECK(!(f.has("fp_layers") && f.has("ignore_layers")), UsageError, "quantize: give --fp_layers or --ignore_layers, not both");

  const quant::Recipe rc = quant::recipe_by_name(f.str("recipe"));
  quant::PipelineOptions& o = job.pipeline;
  o.scheme.bits = static_cast<int>(f.integer("bits"));
  o.scheme.group_size = f.integer("group_size");
  o.scheme.sym = !f.on("asym");
  o.scheme.data_type = f.str("data_type");
  o.scheme.scale_dtype = parse_dtype_flag(f.str("scale_dtype"), "scale_dtype");
  quant::validate_scheme(o.scheme, "--bits/--group_size/--data_type");
  o.iters = f.has("iters") ? f.integer("iters") : rc.iters;
  o.lr = f.has("lr") ? f.number("lr") : rc.lr;
  if (f.has("lr")) ARQ_CHECK(o.lr > 0, UsageError, "--lr must be > 0, got ", f.str("lr"));
  o.minmax_lr = f.has("minmax_lr") ? f.number("minmax_lr") : 0.0;
  if (f.has("minmax_lr")) ARQ_CHECK(o.minmax_lr > 0, UsageError, "--minmax_lr must be > 0, got ", f.str("minmax_lr"));
  o.batch_size = f.has("batch_size") ? f.integer("batch_size") : rc.batch_size;
  o.gradient_accumulate_steps = f.integer("gradient_accumulate_steps");
  const int64_t seed = f.integer("seed");
  ARQ_CHECK(seed >= 0, UsageError, "--seed must be >= 0, got ", seed);
  o.seed = static_cast<uint64_t>(seed);
  if (f.has("layer_config")) o.layer_config = quant::LayerConfig::parse(f.str("layer_config"), "--layer_config");
  if (f.has("fp_layers")) o.fp_layers = quant::split_layer_list(f.str("fp_layers"));
  if (f.has("ignore_layers")) o.fp_layers = quant::split_layer_list(f.str("ignore_layers"));
  o.quant_lm_head = f.on("quant_lm_head");
  o.enable_minmax_tuning = !f.on("disable_minmax_tuning");
  o.enable_quanted_input = !f.on("disable_quanted_input");
  o.not_use_best_mse = f.on("not_use_best_mse");
  if (f.on("disable_opt_rtn")) o.disable_opt_rtn = true;
  else if (f.on("enable_opt_rtn")) o.disable_opt_rtn = false;
  else o.disable_opt_rtn = rc.disable_opt_rtn;
  if (f.str("cache_dtype") != "auto") {   // auto: quant::resolved_cache_dtype
    o.cache_dtype = parse_dtype_flag(f.str("cache_dtype"), "cache_dtype");
    ARQ_CHECK(*o.cache_dtype != DType::f16, UsageError, "--cache_dtype must be f32, bf16 or auto");
  }

  job.nsamples = f.has("nsamples") ? f.integer("nsamples") : rc.nsamples;
  job.seqlen = f.has("seqlen") ? f.integer("seqlen") : rc.seqlen;
  job.dataset = f.str("dataset");
  job.format = f.str("format");
  job.overwrite = f.on("overwrite");
  job.output_dir = f.str("output_dir");
  job.eval_text = f.str("eval_text");
  job.eval_seqlen = f.has("eval_seqlen") ? f.integer("eval_seqlen") : 0;
  job.device = Device::parse(f.str("device"));
  if (f.has("model_dtype")) job.model_dtype = parse_dtype_flag(f.str("model_dtype"), "model_dtype");
  o.low_gpu_mem_usage = f.on("low_gpu_mem_usage");
  if (f.has("threads")) {
    const int64_t t = f.integer("threads");
    ARQ_CHECK(t >= 1, UsageError, "--threads must be >= 1, got ", t);
    set_num_threads(static_cast<int>(t));
  }
  quant::validate_job(job);  // before any work: model path, format, dataset, sizes, device
  if (o.low_gpu_mem_usage && job.device.is_cpu())
    std::printf("--low_gpu_mem_usage: no effect with --device cpu (the activation caches are in host memory already)\n");
  // AutoRound's autocast on CUDA: the blocks run in bf16 (a 16-bit model as stored); loss and V/α/β in f32.
  const DType compute = quant::job_compute_dtype(job);
  const std::string compute_str =
      cat(dtype_name(compute), job.device.is_cuda() && !job.model_dtype ? " (autocast; loss and V/alpha/beta f32)" : "");

  Progress bar;
  o.log = [](const std::string& line) { std::printf("%s\n", line.c_str()); std::fflush(stdout); };
  o.on_iter = [&bar](int64_t b, int64_t it, int64_t n, double l) { bar.update(b, it, n, l); };
  // A gguf:<preset> export takes each tensor's scheme from the preset's type mix.
  const bool gguf_only = job.format.rfind("gguf:", 0) == 0 && job.format.find(',') == std::string::npos;
  std::printf("quantize %s: %s, iters %lld, nsamples %lld, seqlen %lld, batch %lld, recipe %s, device %s, compute %s, caches %s%s\n",
              job.model.c_str(), gguf_only ? (job.format + " (per-tensor types)").c_str() : o.scheme.str().c_str(),
              static_cast<long long>(o.iters), static_cast<long long>(job.nsamples), static_cast<long long>(job.seqlen),
              static_cast<long long>(o.batch_size), rc.name.c_str(), job.device.str().c_str(), compute_str.c_str(),
              dtype_name(quant::resolved_cache_dtype(o, job.device, compute)), o.low_gpu_mem_usage && job.device.is_cuda() ? ", low_gpu_mem_usage" : "");
  const quant::QuantizeJobResult r = quant::run_quantize_job(job);
  if (gguf_only && o.iters == 0)
    std::printf("wrote %s (format %s, encoded by llama.cpp's searches)\n", r.output_folder.c_str(), job.format.c_str());
  else
    std::printf("wrote %s (format %s, %lld quantized layers)\n", r.output_folder.c_str(), job.format.c_str(),
                static_cast<long long>(r.n_quantized_layers));
  if (!job.eval_text.empty())
    std::printf("perplexity on %s (%lld tokens): fp %.4f, quantized %.4f\n", job.eval_text.c_str(),
                static_cast<long long>(r.eval_tokens), r.fp_ppl, r.q_ppl);
  const double mib = 1048576.0;
  if (r.eval_peak_rss_bytes > 0) std::printf("evaluation: peak RSS %.1f MiB\n", r.eval_peak_rss_bytes / mib);
  if (job.device.is_cuda())
    std::printf("peak GPU memory %.1f MiB (%s caching allocator, quantization and export)\n", r.device_peak_bytes / mib,
                job.device.str().c_str());
  // With --device cuda the caches are on the GPU, or on the host with --low_gpu_mem_usage.
  char caches[128];
  const double cache_mib = static_cast<double>(r.pipeline.cache_bytes) / mib;
  if (job.device.is_cuda()) {
    const bool host = r.pipeline.cache_device.is_cpu();
    std::snprintf(caches, sizeof caches, "%.2f MiB on the host + %.2f MiB on %s", host ? cache_mib : 0.0, host ? 0.0 : cache_mib,
                  job.device.str().c_str());
  } else {
    std::snprintf(caches, sizeof caches, "%.2f MiB", cache_mib);
  }
  std::printf("peak RSS %.1f MiB (block weights %.2f MiB, activation caches %s, frozen block %.2f MiB; "
              "%.1f MiB spilled to disk); %.1f s\n",
              r.pipeline.peak_rss_bytes / mib, r.pipeline.max_block_bytes / mib, caches, r.pipeline.frozen_block_bytes / mib,
              r.pipeline.spill_bytes / mib, r.seconds);
  return 0;
}

}  // namespace arq::app
