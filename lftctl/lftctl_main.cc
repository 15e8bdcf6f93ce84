// lftctl: submit, watch, list, get, cancel and pull lft jobs; `analyze` and
// `export` run the LibTorch tools lft-analyze / lft-export (lftctl itself
// links no torch). `lftctl --help`.
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "lftctl/lftctl.h"

namespace {

// The tool next to lftctl (an install), in the build tree's
// worker/evaluator/, in $LFT_TOOLS_DIR, or on PATH (returned bare).
std::string FindTool(const std::string& name) {
  namespace fs = std::filesystem;
  std::vector<fs::path> dirs;
  if (const char* d = std::getenv("LFT_TOOLS_DIR")) dirs.emplace_back(d);
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    dirs.push_back(self.parent_path());
    dirs.push_back(self.parent_path().parent_path() / "worker" / "evaluator");
  }
  for (const fs::path& d : dirs) {
    const fs::path p = d / name;
    if (::access(p.c_str(), X_OK) == 0) return p.string();
  }
  return name;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && (args[0] == "analyze" || args[0] == "export")) {
    const std::string tool = FindTool("lft-" + args[0]);
    std::vector<char*> cargv = {const_cast<char*>(tool.c_str())};
    for (size_t i = 1; i < args.size(); ++i)
      cargv.push_back(const_cast<char*>(args[i].c_str()));
    cargv.push_back(nullptr);
    ::execvp(tool.c_str(), cargv.data());
    std::cerr << "lftctl " << args[0] << ": cannot run " << tool << ": "
              << std::strerror(errno)
              << " (build the worker tools, or set LFT_TOOLS_DIR)\n";
    return lft::kExitUsage;
  }
  return lft::LftctlMain(args, std::cout, std::cerr,
                         isatty(STDOUT_FILENO) == 1);
}
