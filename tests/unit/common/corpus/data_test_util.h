// Helpers shared by the data-pipeline tests: a per-test temporary directory.
#ifndef LFT_TESTS_UNIT_COMMON_CORPUS_DATA_TEST_UTIL_H_
#define LFT_TESTS_UNIT_COMMON_CORPUS_DATA_TEST_UTIL_H_

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "gtest/gtest.h"

namespace lft {

// A fresh directory under TEST_TMPDIR (or /tmp), removed on destruction.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TEST_TMPDIR");
    const ::testing::TestInfo* info =
        ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = std::string(base != nullptr ? base : "/tmp") + "/lft_data_" +
            info->test_suite_name() + "_" + info->name() + "_" +
            std::to_string(getpid());
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline std::string ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in),
                     std::istreambuf_iterator<char>());
}

inline void WriteFileBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace lft

#endif  // LFT_TESTS_UNIT_COMMON_CORPUS_DATA_TEST_UTIL_H_
