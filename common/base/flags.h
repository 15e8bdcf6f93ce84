// The command-line parser of every lft program: "--name=value",
// "--name value", boolean "--name", and positional arguments. Unknown flags
// are errors, so typos do not pass silently. Dashes and underscores in a
// flag's name are the same ("--metrics_port" is "--metrics-port"). Programs
// that declare their flags as FlagSpecs get `--help` text from them.
#ifndef LFT_COMMON_BASE_FLAGS_H_
#define LFT_COMMON_BASE_FLAGS_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace lft {

// One flag a program accepts. An empty `value` makes it a boolean.
struct FlagSpec {
  std::string name;   // without "--", with dashes: "metrics-port"
  std::string value;  // what the value is, for --help: "PORT"; "" = boolean
  std::string help;   // one line; include the default
};

// Thread-compatible (a value type).
class Flags {
 public:
  // Parses args (without the program name) against `specs`. InvalidArgument
  // naming the flag for an unknown flag or a value flag without value.
  static absl::StatusOr<Flags> Parse(const std::vector<std::string>& args,
                                     const std::vector<FlagSpec>& specs);
  // "usage: <synopsis>\n\n" followed by one aligned line per flag.
  static std::string Usage(const std::string& synopsis,
                           const std::vector<FlagSpec>& specs);

  // Parses args (without the program name). `value_flags` take a value,
  // `bool_flags` do not. InvalidArgument naming the flag for an unknown flag
  // or a value flag without value.
  static absl::StatusOr<Flags> Parse(const std::vector<std::string>& args,
                                     const std::set<std::string>& value_flags,
                                     const std::set<std::string>& bool_flags);

  bool Has(const std::string& name) const { return values_.count(name) > 0; }
  std::string Get(const std::string& name, const std::string& def = "") const;
  // InvalidArgument if the value is not an integer.
  absl::StatusOr<int64_t> GetInt(const std::string& name, int64_t def) const;
  // InvalidArgument if the value is not a number.
  absl::StatusOr<double> GetDouble(const std::string& name, double def) const;
  const std::vector<std::string>& positional() const { return positional_; }
  // Every flag given, by name (dashes), booleans as "true".
  const std::map<std::string, std::string>& values() const { return values_; }

 private:
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

}  // namespace lft

#endif  // LFT_COMMON_BASE_FLAGS_H_
