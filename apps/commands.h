// The ar-quant subcommands. Each lives in apps/cmd_<name>.cpp and takes the arguments after
// its name; it returns the process exit code and throws arq::Error for user mistakes.
// To add one: write the file, declare it here, add a row to kCommands in main.cpp.
#pragma once

#include <string>
#include <vector>

namespace arq::app {

using Args = std::vector<std::string>;

int cmd_selftest(const Args& args);

}  // namespace arq::app
