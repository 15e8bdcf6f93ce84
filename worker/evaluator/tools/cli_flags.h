// Flag parsing shared by the evaluator's command-line tools: "--name value"
// or "--name=value"; booleans are "--name" alone. Torch-free, header-only.
#ifndef LFT_WORKER_EVALUATOR_TOOLS_CLI_FLAGS_H_
#define LFT_WORKER_EVALUATOR_TOOLS_CLI_FLAGS_H_

#include <map>
#include <set>
#include <string>

namespace lft {

// Parses argv into *values (every flag named in `with_value`, each taking a
// value) and *switches (flags in `booleans`). Returns "" on success or the
// usage problem.
inline std::string ParseCliFlags(int argc, char** argv,
                                 const std::set<std::string>& with_value,
                                 const std::set<std::string>& booleans,
                                 std::map<std::string, std::string>* values,
                                 std::set<std::string>* switches) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0) return "unexpected argument \"" + a + "\"";
    std::string name = a.substr(2), value;
    const size_t eq = name.find('=');
    const bool has_eq = eq != std::string::npos;
    if (has_eq) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    if (booleans.count(name)) {
      if (has_eq) return "--" + name + " takes no value";
      switches->insert(name);
      continue;
    }
    if (!with_value.count(name)) return "unknown flag --" + name;
    if (!has_eq) {
      if (i + 1 >= argc) return "--" + name + " needs a value";
      value = argv[++i];
    }
    (*values)[name] = value;
  }
  return "";
}

}  // namespace lft

#endif  // LFT_WORKER_EVALUATOR_TOOLS_CLI_FLAGS_H_
