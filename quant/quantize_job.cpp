// The whole `ar-quant quantize` job: check → load (mmap) → calibrate → quantize block by block
// (each frozen block spilled to a temporary FrozenStore) → export from the store (or write the
// fake-quantized HF folder) and quantization_log.json → evaluate.
//
// Memory: the pipeline holds one block and the two activation caches; frozen layers go to disk
// as each block finishes, dequantized weights are never kept (recomputed from the codes when a
// writer asks for them), and the model's mapped pages are dropped after each block. So the peak
// is one block + caches + one frozen block, whatever the model size.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/backend.h"
#include "engine/ops.h"
#include "io/dataset.h"
#include "io/json_util.h"
#include "io/mmap_file.h"
#include "io/tokenizer.h"
#include "io/tokenizer_gguf.h"
#include "models/loader.h"
#include "models/perplexity.h"
#include "models/random_model.h"
#include "quant/export.h"
#include "quant/export_gguf.h"
#include "quant/frozen_store.h"
#include "quant/pipeline.h"

namespace arq::quant {

namespace fs = std::filesystem;

namespace {

// The original tensors, with the quantized linears' weights replaced by their dequantized
// values (what the fake format writes): from a map of dequantized weights held in memory, or
// computed on get() from the frozen layers (one layer resident at a time).
class OverlaySource : public models::TensorSource {
 public:
  OverlaySource(std::shared_ptr<const models::TensorSource> base, const std::map<std::string, Tensor>& over)
      : base_(std::move(base)), over_(&over) {}
  OverlaySource(std::shared_ptr<const models::TensorSource> base, const FrozenLayers& frozen)
      : base_(std::move(base)), frozen_(&frozen) {}
  std::optional<Shape> shape(const std::string& name) const override { return base_->shape(name); }
  DType dtype(const std::string& name) const override { return base_->dtype(name); }
  Tensor get(const std::string& name) const override {
    // dequantized weights come in the compute dtype; store them in the checkpoint's dtype
    if (over_) {
      auto it = over_->find(name);
      if (it != over_->end()) return it->second.to(base_->dtype(name));
    } else if (name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0) {
      const std::string mod = name.substr(0, name.size() - 7);
      if (frozen_->has(mod)) return dequantize(frozen_->load(mod)).to(Device::cpu()).to(base_->dtype(name));
    }
    io::release_mapped_pages();   // tensors written before are on disk: drop their mapped pages
    return base_->get(name);
  }
  std::vector<std::string> names() const override { return base_->names(); }
  std::string origin() const override { return base_->origin() + " (quantized)"; }

 private:
  std::shared_ptr<const models::TensorSource> base_;
  const std::map<std::string, Tensor>* over_ = nullptr;
  const FrozenLayers* frozen_ = nullptr;
};

// Peak RSS from here on: VmHWM restarts at the current RSS ("5" to clear_refs, Linux ≥ 4.0).
void reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  if (f) f << "5";
}

std::unique_ptr<io::Tokenizer> open_tokenizer(const std::string& model) {
  return models::is_gguf_path(model) ? io::load_tokenizer_gguf(model) : io::load_tokenizer(model);
}

std::string read_text(const std::string& path, const char* flag) {
  std::ifstream f(path, std::ios::binary);
  ARQ_CHECK(f.good(), UsageError, flag, ": cannot read '", path, "'");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string output_folder(const QuantizeJob& job) {
  std::string base = fs::path(job.model).filename().string();
  if (base.empty()) base = fs::path(job.model).parent_path().filename().string();
  if (models::is_gguf_path(job.model)) base = fs::path(job.model).stem().string();
  const QuantScheme& s = job.pipeline.scheme;
  std::string suffix = s.group_size > 0 ? cat("-w", s.bits, "g", s.group_size) : cat("-w", s.bits, "a16");
  // GGUF presets decide every tensor's type, so the global scheme would misname the folder.
  if (job.format != "fake") {
    const std::vector<ExportFormat> fs = parse_export_formats(job.format);
    if (fs.size() == 1 && fs[0].kind == ExportKind::gguf) suffix = "-gguf-" + fs[0].gguf_preset;
  }
  return (fs::path(job.output_dir) / (base + suffix)).string();
}

io::JsonValue log_json(const QuantizeJob& job, const QuantizeJobResult& r, const models::CausalLM& lm) {
  using io::JsonValue;
  JsonValue root = JsonValue::object();
  const PipelineOptions& o = job.pipeline;
  JsonValue cfg = JsonValue::object();
  cfg.set("bits", o.scheme.bits)
      .set("group_size", o.scheme.group_size)
      .set("sym", o.scheme.sym)
      .set("data_type", o.scheme.data_type)
      .set("scale_dtype", dtype_name(o.scheme.scale_dtype))
      .set("iters", o.iters)
      .set("lr", o.lr)
      .set("minmax_lr", o.minmax_lr)
      .set("nsamples", job.nsamples)
      .set("seqlen", job.seqlen)
      .set("batch_size", o.batch_size)
      .set("gradient_accumulate_steps", o.gradient_accumulate_steps)
      .set("enable_minmax_tuning", o.enable_minmax_tuning)
      .set("enable_quanted_input", o.enable_quanted_input)
      .set("not_use_best_mse", o.not_use_best_mse)
      .set("seed", static_cast<int64_t>(o.seed))
      .set("dataset", job.dataset)
      .set("cache_dtype", dtype_name(resolved_cache_dtype(o, job.device, r.compute_dtype)))
      .set("device", job.device.str())
      .set("compute_dtype", dtype_name(r.compute_dtype))
      .set("low_gpu_mem_usage", o.low_gpu_mem_usage);
  root.set("model", job.model).set("config", cfg);
  JsonValue blocks = JsonValue::array();
  for (const BlockLog& b : r.pipeline.blocks) {
    JsonValue layers = JsonValue::array();
    for (const LayerLog& l : b.layers)
      layers.push(JsonValue::object().set("name", l.name).set("scheme", l.scheme).set("quantized", l.quantized));
    JsonValue jb = JsonValue::object();
    jb.set("block", b.block).set("layers", layers).set("quantized_layers", b.n_quantized);
    if (b.tuned) jb.set("loss_iter0", b.loss_init).set("best_iter", b.best_iter).set("loss_best", b.loss_best);
    jb.set("seconds", b.seconds);
    blocks.push(jb);
  }
  root.set("blocks", blocks);
  root.set("num_blocks", lm.num_blocks());
  return root;
}

}  // namespace

DType job_compute_dtype(const QuantizeJob& job) {
  if (job.model_dtype) return *job.model_dtype;
  // The stored dtype (of the embedding table, as LoadOptions' default); nothing is read but
  // config.json and the tensor headers.
  const DType stored = models::load_causal_lm(job.model, {.dtype = std::nullopt, .device = Device::cpu()}).dtype();
  // AutoRound's AMP on an accelerator: a 16-bit model runs as stored, an f32 one under bf16
  // autocast (every CUDA architecture we build for, sm_80+, has bf16 tensor cores).
  if (job.device.is_cuda() && stored == DType::f32) return DType::bf16;
  return stored;
}

void validate_job(const QuantizeJob& job) {
  ARQ_CHECK(!job.model.empty(), UsageError, "--model is required");
  ARQ_CHECK(fs::exists(job.model), UsageError, "--model: '", job.model, "' does not exist");
  if (job.device.is_cuda()) {
    ARQ_CHECK(cuda_compiled(), DeviceError, "--device ", job.device.str(),
              ": this ar-quant was built without CUDA (reconfigure with -Dcuda=enabled, or use --device cpu)");
    const int n = cuda_device_count();
    ARQ_CHECK(job.device.index >= 0 && job.device.index < n, DeviceError, "--device ", job.device.str(),
              ": no such CUDA device (", n, " visible)");
  }
  // Unknown or duplicate format names fail here, before any work (UsageError listing the known ones).
  if (job.format != "fake") parse_export_formats(job.format);
  ARQ_CHECK(job.nsamples >= 1, UsageError, "--nsamples must be >= 1, got ", job.nsamples);
  ARQ_CHECK(job.seqlen >= 2, UsageError, "--seqlen must be >= 2, got ", job.seqlen);
  ARQ_CHECK(job.eval_seqlen >= 0, UsageError, "--eval_seqlen must be >= 0, got ", job.eval_seqlen);
  if (needs_calibration(job.pipeline))
    ARQ_CHECK(!job.dataset.empty(), UsageError,
              "--dataset is required for SignRound tuning (AutoRound's default NeelNanda/pile-10k is not reachable offline); "
              "give a text/jsonl file, e.g. --dataset calib.txt:concat=true, or use --iters 0 / --recipe rtn");
  if (!job.eval_text.empty()) ARQ_CHECK(fs::exists(job.eval_text), UsageError, "--eval_text: '", job.eval_text, "' does not exist");
  ARQ_CHECK(!job.output_dir.empty(), UsageError, "--output_dir must not be empty");
}

QuantizeJobResult run_quantize_job(const QuantizeJob& job) {
  const auto t0 = std::chrono::steady_clock::now();
  validate_job(job);
  QuantizeJobResult r;
  models::LoadOptions lo;
  lo.dtype = job.model_dtype;
  lo.device = job.device;
  // On CUDA the blocks run under AutoRound's autocast dtype; on the CPU as stored (or --model_dtype).
  if (job.device.is_cuda()) lo.dtype = job_compute_dtype(job);
  models::CausalLM lm = models::load_causal_lm(job.model, lo);
  r.compute_dtype = lm.dtype();
  if (job.device.is_cuda()) allocator_for(job.device).reset_peak();
  lm.set_keep_resident(false);
  std::unique_ptr<io::Tokenizer> tok = open_tokenizer(job.model);

  Tensor ids, mask;
  // iters 0: the data, when given, feed opt-RTN's importance matrix (§3)
  if (needs_calibration(job.pipeline) || (!job.dataset.empty() && uses_calibration(job.pipeline))) {
    io::CalibSamples cs =
        io::build_calibration(*tok, {.dataset = job.dataset, .nsamples = job.nsamples, .seqlen = job.seqlen, .seed = job.pipeline.seed});
    ids = cs.ids_tensor();
    mask = cs.mask_tensor();
  }
  r.output_folder = output_folder(job);
  const bool fake = job.format == "fake";
  ExportSource src;
  if (!fake) {
    ARQ_CHECK(!models::is_gguf_path(job.model), UsageError, "--format ", job.format,
              ": exporting needs an HF model folder as --model (use --format fake for a .gguf input)");
    ARQ_CHECK(job.overwrite || !fs::exists(r.output_folder), UsageError, "--output_dir: '", r.output_folder,
              "' already exists (pass --overwrite to replace it)");
    src.model_folder = job.model;
    src.tensors = lm.source_ptr();
    src.scheme = job.pipeline.scheme;
    src.tuning = {.iters = job.pipeline.iters, .nsamples = job.nsamples, .seqlen = job.seqlen,
                  .batch_size = job.pipeline.batch_size, .lr = job.pipeline.lr};
    // e.g. AWQ with 3 bits: checked on the scheme before tuning, and again on the real layers.
    const std::map<std::string, QuantizedLinear> none;
    src.quantized = &none;
    validate_export(src, parse_export_formats(job.format));
    src.quantized = nullptr;
  }
  // Frozen layers spill to a folder beside the output; the store's destructor removes it, also
  // when anything below throws.
  std::unique_ptr<FrozenStore> store;
  PipelineOptions popts = job.pipeline;
  // gguf:<preset> with iters > 0: each linear is tuned on the data type of its GGUF type (§4d).
  apply_gguf_schemes(job.format, lm.spec(), popts);
  size_t spilled = 0;
  if (job.spill_frozen) {
    ARQ_ASSERT(!popts.on_block_frozen, "run_quantize_job installs its own on_block_frozen");
    store = std::make_unique<FrozenStore>(r.output_folder + ".arq-spill-" + std::to_string(::getpid()));
    popts.on_block_frozen = [&](int64_t block, std::map<std::string, QuantizedLinear>&& q, std::map<std::string, Tensor>&& w) {
      w.clear();   // dequantized weights: recomputed from the codes when a writer needs them
      spilled += store->add(block, std::move(q));
      io::release_mapped_pages();   // this block's pages of the checkpoint leave the resident set
    };
  }
  r.pipeline = quantize_blocks(lm, ids, mask, popts);
  r.pipeline.spill_bytes = spilled;
  cuda_pinned_release();   // the pipeline's host caches are gone; hand their pinned pages back
  const FrozenLayers* frozen = store.get();
  const MapFrozenLayers in_memory(r.pipeline.quantized);
  if (!frozen) frozen = &in_memory;
  r.n_quantized_layers = static_cast<int64_t>(frozen->names().size());

  std::string eval_folder = r.output_folder;
  if (fake) {
    // An HF folder with dequantized weights in the original dtype.
    auto overlay = store ? std::make_shared<OverlaySource>(lm.source_ptr(), *store)
                         : std::make_shared<OverlaySource>(lm.source_ptr(), r.pipeline.weights);
    models::CausalLM qlm(lm.spec(), overlay, lo);
    models::SaveOptions so;
    if (!models::is_gguf_path(job.model)) so.tokenizer_dir = job.model;
    models::save_pretrained(qlm, r.output_folder, so);
    io::write_text_file_atomic((fs::path(r.output_folder) / "quantization_log.json").string(), log_json(job, r, lm).dump(2) + "\n");
  } else {
    src.quantized = nullptr;
    src.frozen = frozen;
    ExportOptions eo;
    eo.output_folder = r.output_folder;
    eo.overwrite = job.overwrite;
    eo.log = [](const std::string& line) { std::fprintf(stderr, "export: %s\n", line.c_str()); };
    const ExportResult er = export_model(src, job.format, eo);
    // The log goes beside the exported model(s); each format's folder gets a copy.
    const std::string log = log_json(job, r, lm).dump(2) + "\n";
    for (const std::string& folder : er.folders)
      io::write_text_file_atomic((fs::path(folder) / "quantization_log.json").string(), log);
    if (!er.folders.empty()) eval_folder = er.folders.front();
    if (!fs::exists(fs::path(eval_folder) / "config.json")) {  // a GGUF export: evaluate the file
      for (const auto& e : fs::directory_iterator(eval_folder))
        if (e.path().extension() == ".gguf") eval_folder = e.path().string();
    }
  }

  io::release_mapped_pages();
  r.pipeline.peak_rss_bytes = peak_rss_bytes();
  if (job.device.is_cuda()) r.device_peak_bytes = allocator_for(job.device).peak_bytes();
  store.reset();   // the spill folder is no longer needed

  if (!job.eval_text.empty()) {
    reset_peak_rss();
    const std::string text = read_text(job.eval_text, "--eval_text");
    const std::vector<int32_t> eids = tok->encode(text, /*add_bos=*/false);
    models::PerplexityOptions po;
    po.seqlen = job.eval_seqlen > 0 ? job.eval_seqlen : job.seqlen;
    po.bos_id = tok->bos_id();
    ARQ_CHECK(po.bos_id >= 0, UsageError, "--eval_text: the tokenizer has no BOS id");
    lm.set_keep_resident(true);
    const models::PerplexityResult fp = models::perplexity(lm, eids, po);
    // One model resident at a time, as `ar-quant eval` of a folder holds one.
    lm.set_keep_resident(false);
    io::release_mapped_pages();
    // the written folder, read back: what any loader of the output sees
    models::CausalLM back = models::load_causal_lm(eval_folder, lo);
    const models::PerplexityResult qp = models::perplexity(back, eids, po);
    r.fp_ppl = fp.perplexity();
    r.q_ppl = qp.perplexity();
    r.eval_tokens = fp.tokens;
    r.eval_peak_rss_bytes = peak_rss_bytes();
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace arq::quant
