// A small command-line parser shared by lft-coordinator, lftctl and
// lft-fake-worker: "--name=value", "--name value", boolean "--name", and
// positional arguments. Unknown flags are errors, so typos do not pass
// silently.
#ifndef LFT_COORDINATOR_FLAGS_H_
#define LFT_COORDINATOR_FLAGS_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace lft {

class Flags {
 public:
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
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

}  // namespace lft

#endif  // LFT_COORDINATOR_FLAGS_H_
