// Helpers shared by the worker/model tests.
#ifndef LFT_TESTS_UNIT_WORKER_TEST_UTIL_H_
#define LFT_TESTS_UNIT_WORKER_TEST_UTIL_H_

#include <cstdlib>
#include <filesystem>
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace lft {

// The project-wide matcher (tests/testing/status_matchers.h).
using ::lft::testing::StatusIs;

// A fresh directory under the test temp dir.
inline std::string MakeTempDir(const std::string& name) {
  const char* base = std::getenv("TEST_TMPDIR");
  std::filesystem::path p =
      std::filesystem::path(base ? base : "/tmp") /
      ("lft_model_test_" + std::to_string(::getpid()) + "_" + name);
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p.string();
}

inline std::string SourceDir() {
  const char* s = std::getenv("LFT_TEST_SRCDIR");
  return s ? s : ".";
}

}  // namespace lft

#endif  // LFT_TESTS_UNIT_WORKER_TEST_UTIL_H_
