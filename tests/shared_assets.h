// Test assets from ../shared/ (ARQ_SHARED_DIR, set by tests/meson.build). Tests that need one
// call shared_file() and skip, saying which file is missing, when it returns "".
#pragma once

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace arq::test {

// Path of a file under $ARQ_SHARED_DIR, or "" (with a MESSAGE) when it is absent.
inline std::string shared_file(const std::string& rel) {
  const char* dir = std::getenv("ARQ_SHARED_DIR");
  if (!dir) {
    MESSAGE("ARQ_SHARED_DIR is not set: skipping the test that needs " << rel);
    return "";
  }
  const std::string p = std::string(dir) + "/" + rel;
  if (!std::filesystem::exists(p)) {
    MESSAGE("shared asset " << p << " is absent: skipping");
    return "";
  }
  return p;
}

}  // namespace arq::test
