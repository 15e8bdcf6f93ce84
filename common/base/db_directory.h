// The check lft-coordinator and lft-store make on their --db before RocksDB
// opens it, so that a wrong path fails with the flag's name and the reason
// instead of a RocksDB I/O error deep in the open.
#ifndef LFT_COMMON_BASE_DB_DIRECTORY_H_
#define LFT_COMMON_BASE_DB_DIRECTORY_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace lft {

// OK if `path` is a writable directory, or does not exist yet (RocksDB
// creates it; its errors then name the parent). InvalidArgument "FLAG PATH
// is not a directory" for a regular file (or anything else);
// FailedPrecondition "FLAG PATH is not writable: <reason>" for a read-only
// directory or file system (as root too: a read-only mount is refused).
absl::Status CheckDbDirectory(const std::string& path, absl::string_view flag);

}  // namespace lft

#endif  // LFT_COMMON_BASE_DB_DIRECTORY_H_
