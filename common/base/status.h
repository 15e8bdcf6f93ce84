// Status helpers shared by every lft library.
//
// Errors cross library boundaries as absl::Status / absl::StatusOr<T>; these
// macros keep the propagation short. Nothing here aborts the process.
#ifndef LFT_COMMON_BASE_STATUS_H_
#define LFT_COMMON_BASE_STATUS_H_

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

#define LFT_STATUS_CONCAT_INNER_(a, b) a##b
#define LFT_STATUS_CONCAT_(a, b) LFT_STATUS_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define LFT_RETURN_IF_ERROR(expr)              \
  do {                                         \
    ::absl::Status lft_status_ = (expr);       \
    if (!lft_status_.ok()) return lft_status_; \
  } while (false)

// `LFT_ASSIGN_OR_RETURN(auto x, F());` assigns the value of an
// absl::StatusOr<T> or returns its error from the enclosing function.
#define LFT_ASSIGN_OR_RETURN(lhs, expr)                                        \
  LFT_ASSIGN_OR_RETURN_IMPL_(LFT_STATUS_CONCAT_(lft_statusor_, __LINE__), lhs, \
                             expr)
#define LFT_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr)    \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = *std::move(statusor)

namespace lft {

// Returns `status` with `context` prepended to its message ("context: msg"),
// keeping the code. OK stays OK.
absl::Status Annotate(const absl::Status& status, absl::string_view context);

// An errno value as a Status whose message names the failed operation.
absl::Status ErrnoToStatus(int errno_value, absl::string_view what);

}  // namespace lft

#endif  // LFT_COMMON_BASE_STATUS_H_
