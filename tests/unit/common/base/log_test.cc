#include "common/base/log.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace lft {
namespace {

TEST(LogTest, FormatsKeyValueFieldsAndQuotesWhereNeeded) {
  EXPECT_EQ(FormatLogLine(
                LogLevel::kInfo, "coordinator", "task leased",
                {{"job", "j-1"}, {"task", 7}, {"why", "lease \"expired\""}}),
            "INFO coordinator task leased job=j-1 task=7 why=\"lease "
            "\\\"expired\\\"\"");
  EXPECT_EQ(FormatLogLine(LogLevel::kError, "store", "x",
                          {{"empty", ""}, {"nl", "a\nb"}}),
            "ERROR store x empty=\"\" nl=\"a\\nb\"");
}

TEST(LogTest, LevelFiltersLowerLevels) {
  SetLogLevel(LogLevel::kWarning);
  EXPECT_FALSE(LogEnabled(LogLevel::kInfo));
  EXPECT_TRUE(LogEnabled(LogLevel::kError));
  SetLogLevel(LogLevel::kInfo);
  EXPECT_TRUE(LogEnabled(LogLevel::kInfo));
}

}  // namespace
}  // namespace lft
