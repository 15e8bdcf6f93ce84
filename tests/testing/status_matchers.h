// StatusIs(code, substring): the matcher every lft test uses to assert a
// specific error, for absl::Status and absl::StatusOr<T> alike.
#ifndef LFT_TESTS_TESTING_STATUS_MATCHERS_H_
#define LFT_TESTS_TESTING_STATUS_MATCHERS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"

namespace lft::testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

MATCHER_P2(StatusIs, code, substring,
           std::string("has code ") + absl::StatusCodeToString(code) +
               " and a message containing \"" + substring + "\"") {
  const absl::Status& s = GetStatus(arg);
  *result_listener << "status is " << s;
  return s.code() == code &&
         s.message().find(substring) != absl::string_view::npos;
}

MATCHER(IsOk, "is OK") {
  const absl::Status& s = GetStatus(arg);
  *result_listener << "status is " << s;
  return s.ok();
}

}  // namespace lft::testing

#endif  // LFT_TESTS_TESTING_STATUS_MATCHERS_H_
