#include "engine/error.h"

#include <cstdio>
#include <cstdlib>

namespace arq::detail {

void assert_fail(const char* file, int line, const char* cond, const std::string& msg) {
  std::fprintf(stderr, "ar-quant internal error at %s:%d: assertion `%s` failed: %s\n", file, line,
               cond, msg.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace arq::detail
