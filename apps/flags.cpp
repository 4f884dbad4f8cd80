#include "apps/flags.h"

#include <algorithm>
#include <cstdlib>

#include "engine/error.h"

namespace arq::app {

namespace {
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}
}  // namespace

Flags::Flags(std::string command, std::vector<FlagSpec> specs) : command_(std::move(command)), specs_(std::move(specs)) {}

const FlagSpec* Flags::find(const std::string& name) const {
  for (const auto& s : specs_)
    if (s.name == name) return &s;
  return nullptr;
}

void Flags::parse(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.rfind("--", 0) != 0 || a.size() == 2) {
      positional_.push_back(a);
      continue;
    }
    std::string name = a.substr(2), value;
    bool inline_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      inline_value = true;
    }
    const FlagSpec* spec = find(name);
    if (!spec) {
      std::string best;
      size_t best_d = 4;
      for (const auto& s : specs_) {
        const size_t d = edit_distance(name, s.name);
        if (d < best_d) { best_d = d; best = s.name; }
      }
      throw UsageError(cat(command_, ": unknown flag --", name, best.empty() ? "" : cat(" (did you mean --", best, "?)"),
                           "; see ar-quant ", command_, " --help"));
    }
    if (spec->takes_value) {
      if (!inline_value) {
        if (i + 1 >= args.size()) throw UsageError(cat(command_, ": --", name, " needs a value"));
        value = args[++i];
      }
    } else if (inline_value) {
      throw UsageError(cat(command_, ": --", name, " is a switch and takes no value"));
    } else {
      value = "1";
    }
    values_[name] = value;
  }
}

bool Flags::has(const std::string& name) const { return values_.count(name) > 0; }

std::optional<std::string> Flags::opt(const std::string& name) const {
  auto it = values_.find(name);
  if (it != values_.end()) return it->second;
  const FlagSpec* s = find(name);
  ARQ_ASSERT(s, "flag --", name, " was not declared for ", command_);
  if (!s->default_value.empty()) return s->default_value;
  return std::nullopt;
}

std::string Flags::str(const std::string& name) const { return opt(name).value_or(""); }

std::string Flags::require(const std::string& name) const {
  auto v = opt(name);
  if (!v || v->empty()) throw UsageError(cat(command_, ": --", name, " is required"));
  return *v;
}

int64_t Flags::integer(const std::string& name) const {
  const std::string v = require(name);
  char* end = nullptr;
  const long long r = std::strtoll(v.c_str(), &end, 10);
  if (end == v.c_str() || *end != '\0') throw UsageError(cat(command_, ": --", name, " expects an integer, got '", v, "'"));
  return r;
}

double Flags::number(const std::string& name) const {
  const std::string v = require(name);
  char* end = nullptr;
  const double r = std::strtod(v.c_str(), &end);
  if (end == v.c_str() || *end != '\0') throw UsageError(cat(command_, ": --", name, " expects a number, got '", v, "'"));
  return r;
}

bool Flags::on(const std::string& name) const { return has(name); }

std::string Flags::help() const {
  std::string h = cat("usage: ar-quant ", command_, " [flags]\n\nflags:\n");
  for (const auto& s : specs_) {
    std::string left = "  --" + s.name + (s.takes_value ? " VALUE" : "");
    if (left.size() < 28) left.resize(28, ' ');
    h += left + " " + s.help + (s.default_value.empty() ? "" : " (default " + s.default_value + ")") + "\n";
  }
  return h;
}

}  // namespace arq::app
