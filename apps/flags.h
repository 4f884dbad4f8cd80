// A small flag parser for the ar-quant subcommands, AutoRound style:
//   --name value   --name=value   --switch   (and --no-switch is NOT special)
// Each command declares its flags up front, so an unknown or misspelled flag is a UsageError
// naming it (and the closest known flag), before any work starts.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace arq::app {

struct FlagSpec {
  std::string name;        // without the leading dashes
  bool takes_value = true; // false: a boolean switch
  std::string help;
  std::string default_value{};  // shown in help; "" for none
};

class Flags {
 public:
  Flags(std::string command, std::vector<FlagSpec> specs);
  // Parses args (everything after the command name). Throws UsageError.
  void parse(const std::vector<std::string>& args);

  bool has(const std::string& name) const;           // given on the command line
  std::string str(const std::string& name) const;    // value or the declared default
  std::optional<std::string> opt(const std::string& name) const;
  int64_t integer(const std::string& name) const;    // UsageError naming the flag if not an integer
  double number(const std::string& name) const;
  bool on(const std::string& name) const;            // a switch that was given
  std::string require(const std::string& name) const;  // UsageError "--name is required"
  const std::vector<std::string>& positional() const { return positional_; }
  std::string help() const;

 private:
  const FlagSpec* find(const std::string& name) const;
  std::string command_;
  std::vector<FlagSpec> specs_;
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

}  // namespace arq::app
