// Errors, in two tiers (STYLE.md §13).
//
//   ARQ_ASSERT(cond, parts...)  an invariant of the code itself is broken: prints file:line
//                               and the message, then aborts. Always on, also in release.
//   ARQ_CHECK(cond, Kind, parts...)  something a user can cause (bad shape, bad file, bad flag):
//                               throws arq::Kind (a subclass of arq::Error) whose message names
//                               the op or file and every shape involved.
//
//   ARQ_CHECK(a.dim() == 2, ShapeError, "[matmul] expects 2-D, got ", shape_str(a.shape()));
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace arq {

// Concatenate anything streamable into a string: cat("x has ", 3, " dims").
template <class... Args>
std::string cat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}

// Base of every user-facing error. Catch this one to report any failure.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

class ShapeError : public Error { using Error::Error; };     // shapes do not fit an op
class DTypeError : public Error { using Error::Error; };     // dtype not accepted by an op
class DeviceError : public Error { using Error::Error; };    // device missing/mismatched/not built
class IoError : public Error { using Error::Error; };        // file missing, truncated, malformed
class ConfigError : public Error { using Error::Error; };    // config.json field wrong/unsupported
class UsageError : public Error { using Error::Error; };     // bad CLI flag or flag combination
class UnsupportedError : public Error { using Error::Error; };// valid request a backend cannot do

namespace detail {
[[noreturn]] void assert_fail(const char* file, int line, const char* cond, const std::string& msg);
}  // namespace detail

}  // namespace arq

#define ARQ_ASSERT(cond, ...)                                                              \
  do {                                                                                     \
    if (!(cond)) ::arq::detail::assert_fail(__FILE__, __LINE__, #cond, ::arq::cat(__VA_ARGS__)); \
  } while (0)

#define ARQ_CHECK(cond, Kind, ...)                                  \
  do {                                                              \
    if (!(cond)) throw ::arq::Kind(::arq::cat(__VA_ARGS__));        \
  } while (0)
