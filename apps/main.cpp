// ar-quant command line. Thin: picks the subcommand, reports errors; the work is in the library.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <unistd.h>

#include "apps/commands.h"
#include "arq_config.h"
#include "engine/error.h"

namespace {

struct Command {
  const char* name;
  const char* summary;
  int (*run)(const arq::app::Args&);
};

const Command kCommands[] = {
    {"selftest", "run one matmul on every available device and print the compiled backends", arq::app::cmd_selftest},
    {"demo", "train a small model on the fortunes corpus, quantize it (RTN, SignRound) and compare", arq::app::cmd_demo},
    {"eval", "perplexity of a model on a text file (chunks of --seqlen, BOS-prefixed)", arq::app::cmd_eval},
    {"generate", "greedy or sampled text from a prompt", arq::app::cmd_generate},
    {"make-model", "a random-weight model of any supported family, saved as an HF folder", arq::app::cmd_make_model},
    {"quantize", "quantize a model with SignRound / RTN (AutoRound flags; also: ar-quant --model ...)", arq::app::cmd_quantize},
    {"tokenize", "text on stdin -> token ids (or ids -> text with --decode) with a model's tokenizer", arq::app::cmd_tokenize},
    {"inspect", "architecture, parameter count, dtypes and tensors of a model folder, safetensors or GGUF file", arq::app::cmd_inspect},
};

void print_usage(FILE* f) {
  std::fprintf(f, "ar-quant %s — SignRound (AutoRound) quantization for LLMs, in C++\n\n", ARQ_VERSION);
  std::fprintf(f, "usage: ar-quant <command> [flags]     (ar-quant <command> --help for its flags)\n\ncommands:\n");
  for (const Command& c : kCommands) std::fprintf(f, "  %-14s %s\n", c.name, c.summary);
  std::fprintf(f, "  %-14s %s\n  %-14s %s\n", "--version", "print the version", "--help", "print this help");
  std::fprintf(f, "\nenvironment:\n  ARQ_NUM_THREADS  CPU threads used by kernels (default: all cores)\n");
}

}  // namespace

// oneDNN (Debian's build) runs GEMMs on OpenMP threads, which by default spin for a while after
// each parallel region. Between GEMMs the engine's own thread pool runs the other ops, and on a
// busy machine the spinning workers starve it (training the demo model on 2 busy cores: ~1,000
// tokens/s spinning against ~25,000 passive). libgomp reads OMP_WAIT_POLICY once, when it is
// loaded, before main (a setenv in .preinit_array is lost: libc resets environ after it), so
// when the user has not chosen a policy the binary re-executes itself once with "passive".
namespace {
void ensure_passive_openmp(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  setenv("OMP_WAIT_POLICY", "passive", 1);
  execv("/proc/self/exe", argv);   // returns only on failure: then run on as we are
}
}  // namespace

int main(int argc, char** argv) {
  ensure_passive_openmp(argv);
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    if (args.empty()) {
      print_usage(stderr);
      return 2;
    }
    if (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
      print_usage(stdout);
      return 0;
    }
    if (args[0] == "--version" || args[0] == "version") {
      std::printf("ar-quant %s\n", ARQ_VERSION);
      return 0;
    }
    // `ar-quant --model …` (flags with no subcommand) quantizes, like `auto-round --model …`.
    if (args[0].rfind("--", 0) == 0) return arq::app::cmd_quantize(args);
    for (const Command& c : kCommands) {
      if (args[0] == c.name) return c.run(std::vector<std::string>(args.begin() + 1, args.end()));
    }
    std::fprintf(stderr, "ar-quant: unknown command '%s' (see ar-quant --help)\n", args[0].c_str());
    return 2;
  } catch (const arq::UsageError& e) {
    std::fprintf(stderr, "ar-quant: %s\n", e.what());
    return 2;
  } catch (const arq::Error& e) {
    std::fprintf(stderr, "ar-quant: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "ar-quant: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ar-quant: internal error: %s\n", e.what());
    return 1;
  }
}
