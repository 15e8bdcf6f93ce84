// The bulk-transfer HTTP/2 settings: the 16 MiB window and largest frames
// by default, LFT_GRPC_STREAM_WINDOW_MIB=0 for gRPC's own defaults, and a
// value that is not a window in MiB (text, negative, over 1 GiB) ignored
// rather than turned into a broken connection.
#include "common/rpc/channel.h"

#include <cstdlib>

#include "gtest/gtest.h"

namespace lft {
namespace {

class BulkTransferSettingsTest : public ::testing::Test {
 protected:
  void TearDown() override { unsetenv("LFT_GRPC_STREAM_WINDOW_MIB"); }
};

TEST_F(BulkTransferSettingsTest, DefaultIsALargeWindowAndLargestFrames) {
  unsetenv("LFT_GRPC_STREAM_WINDOW_MIB");
  const BulkTransferSettings s = BulkTransferSettingsFromEnv();
  EXPECT_EQ(s.stream_window_bytes, 16 << 20);
  EXPECT_EQ(s.max_frame_bytes, (1 << 24) - 1);
}

TEST_F(BulkTransferSettingsTest, EnvironmentSetsOrTurnsOffTheWindow) {
  setenv("LFT_GRPC_STREAM_WINDOW_MIB", "64", 1);
  EXPECT_EQ(BulkTransferSettingsFromEnv().stream_window_bytes, 64 << 20);
  setenv("LFT_GRPC_STREAM_WINDOW_MIB", "0", 1);
  const BulkTransferSettings off = BulkTransferSettingsFromEnv();
  EXPECT_EQ(off.stream_window_bytes, 0);
  EXPECT_EQ(off.max_frame_bytes, 0);
}

TEST_F(BulkTransferSettingsTest, ValuesThatAreNotAWindowAreIgnored) {
  for (const char* bad : {"lots", "-4", "4096", ""}) {
    setenv("LFT_GRPC_STREAM_WINDOW_MIB", bad, 1);
    EXPECT_EQ(BulkTransferSettingsFromEnv().stream_window_bytes, 16 << 20)
        << "'" << bad << "'";
  }
}

}  // namespace
}  // namespace lft
