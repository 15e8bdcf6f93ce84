#include "common/base/db_directory.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace lft {

absl::Status CheckDbDirectory(const std::string& path, absl::string_view flag) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrCat(
        flag, " ", path, " cannot be examined: ", std::strerror(errno)));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, " ", path,
        " is not a directory; name a directory (it is created if missing)"));
  }
  // access() reports a read-only mount (EROFS) even to root.
  if (access(path.c_str(), W_OK | X_OK) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        flag, " ", path, " is not writable: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace lft
