// The ar-quant subcommands. Each lives in apps/cmd_<name>.cpp and takes the arguments after
// its name; it returns the process exit code and throws arq::Error for user mistakes.
// To add one: write the file, declare it here, add a row to kCommands in main.cpp.
#pragma once

#include <string>
#include <vector>

namespace arq::app {

using Args = std::vector<std::string>;

int cmd_selftest(const Args& args);
int cmd_demo(const Args& args);
int cmd_eval(const Args& args);
int cmd_generate(const Args& args);
int cmd_make_model(const Args& args);
int cmd_quantize(const Args& args);
int cmd_tokenize(const Args& args);
int cmd_inspect(const Args& args);

}  // namespace arq::app
