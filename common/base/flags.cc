#include "common/base/flags.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace lft {

absl::StatusOr<Flags> Flags::Parse(const std::vector<std::string>& args,
                                   const std::set<std::string>& value_flags,
                                   const std::set<std::string>& bool_flags) {
  Flags f;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.size() < 3 || a.compare(0, 2, "--") != 0) {
      f.positional_.push_back(a);
      continue;
    }
    std::string name = a.substr(2);
    std::string value;
    bool has_value = false;
    const size_t eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    std::replace(name.begin(), name.end(), '_', '-');
    if (bool_flags.count(name)) {
      f.values_[name] = has_value ? value : "true";
      continue;
    }
    if (!value_flags.count(name)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    }
    if (!has_value) {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("flag --", name, " needs a value"));
      }
      value = args[++i];
    }
    f.values_[name] = value;
  }
  return f;
}

absl::StatusOr<Flags> Flags::Parse(const std::vector<std::string>& args,
                                   const std::vector<FlagSpec>& specs) {
  std::set<std::string> value_flags;
  std::set<std::string> bool_flags;
  for (const FlagSpec& spec : specs) {
    (spec.value.empty() ? bool_flags : value_flags).insert(spec.name);
  }
  return Parse(args, value_flags, bool_flags);
}

std::string Flags::Usage(const std::string& synopsis,
                         const std::vector<FlagSpec>& specs) {
  std::vector<std::string> left;
  size_t width = 0;
  for (const FlagSpec& spec : specs) {
    left.push_back(
        absl::StrCat("  --", spec.name,
                     spec.value.empty() ? "" : absl::StrCat(" ", spec.value)));
    width = std::max(width, left.back().size());
  }
  std::string out = absl::StrCat("usage: ", synopsis, "\n\n");
  for (size_t i = 0; i < specs.size(); ++i) {
    absl::StrAppend(&out, left[i], std::string(width + 2 - left[i].size(), ' '),
                    specs[i].help, "\n");
  }
  return out;
}

std::string Flags::Get(const std::string& name, const std::string& def) const {
  auto it = values_.find(name);
  return it == values_.end() ? def : it->second;
}

absl::StatusOr<int64_t> Flags::GetInt(const std::string& name,
                                      int64_t def) const {
  auto it = values_.find(name);
  if (it == values_.end()) return def;
  int64_t v = 0;
  if (!absl::SimpleAtoi(it->second, &v)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "flag --", name, ": \"", it->second, "\" is not an integer"));
  }
  return v;
}

absl::StatusOr<double> Flags::GetDouble(const std::string& name,
                                        double def) const {
  auto it = values_.find(name);
  if (it == values_.end()) return def;
  double v = 0;
  if (!absl::SimpleAtod(it->second, &v)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "flag --", name, ": \"", it->second, "\" is not a number"));
  }
  return v;
}

}  // namespace lft
