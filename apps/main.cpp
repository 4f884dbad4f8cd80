// ar-quant command line. Thin: picks the subcommand, reports errors; the work is in the library.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

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
};

void print_usage(FILE* f) {
  std::fprintf(f, "ar-quant %s — SignRound (AutoRound) quantization for LLMs, in C++\n\n", ARQ_VERSION);
  std::fprintf(f, "usage: ar-quant <command> [flags]     (ar-quant <command> --help for its flags)\n\ncommands:\n");
  for (const Command& c : kCommands) std::fprintf(f, "  %-14s %s\n", c.name, c.summary);
  std::fprintf(f, "  %-14s %s\n  %-14s %s\n", "--version", "print the version", "--help", "print this help");
  std::fprintf(f, "\nenvironment:\n  ARQ_NUM_THREADS  CPU threads used by kernels (default: all cores)\n");
}

}  // namespace

int main(int argc, char** argv) {
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
