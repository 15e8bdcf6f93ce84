// `promtool check metrics` (Debian package prometheus) on a /metrics body,
// for tests of every process that serves Prometheus metrics.
#ifndef LFT_TESTS_TESTING_PROMTOOL_H_
#define LFT_TESTS_TESTING_PROMTOOL_H_

#include <string>

#include "absl/status/status.h"

namespace lft::testing {

// True if promtool is on PATH (tests GTEST_SKIP otherwise).
bool HavePromtool();

// OK if promtool accepts `exposition` with no complaint (exit 0 and no
// output, so lint warnings fail too); FailedPrecondition with promtool's
// output otherwise; Internal if promtool cannot be run.
absl::Status PromtoolCheckMetrics(const std::string& exposition);

}  // namespace lft::testing

#endif  // LFT_TESTS_TESTING_PROMTOOL_H_
