#include "tests/testing/promtool.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace lft::testing {

bool HavePromtool() {
  return std::system("command -v promtool >/dev/null 2>&1") == 0;
}

absl::Status PromtoolCheckMetrics(const std::string& exposition) {
  std::string path =
      (std::filesystem::temp_directory_path() / "lft-metrics-XXXXXX").string();
  const int fd = mkstemp(path.data());
  if (fd < 0) return absl::InternalError("mkstemp failed");
  close(fd);
  std::ofstream(path, std::ios::binary) << exposition;
  const std::string cmd =
      absl::StrCat("promtool check metrics < ", path, " 2>&1");
  FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) {
    unlink(path.c_str());
    return absl::InternalError("cannot run promtool");
  }
  std::string output;
  char buf[256];
  while (fgets(buf, sizeof(buf), pipe) != nullptr) output += buf;
  const int rc = pclose(pipe);
  unlink(path.c_str());
  if (rc != 0 || !output.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("promtool check metrics (exit ", rc, "): ", output));
  }
  return absl::OkStatus();
}

}  // namespace lft::testing
