#include "latent-store/crc32c.h"

#include <string>

#include "gtest/gtest.h"

namespace lft {
namespace {

TEST(Crc32cTest, KnownCheckValue) {
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32cExtendPortable(0, "123456789", 9), 0xE3069283u);
  EXPECT_EQ(Crc32c(""), 0u);
  // RFC 3720 B.4: 32 bytes of zeros.
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);
}

TEST(Crc32cTest, ExtendEqualsWholeAndPathsAgree) {
  std::string data;
  for (int i = 0; i < 1000; ++i) data.push_back(static_cast<char>(i * 131 + 7));
  const uint32_t whole = Crc32c(data);
  for (size_t cut : {0, 1, 7, 8, 9, 500, 999, 1000}) {
    uint32_t c = Crc32cExtend(0, data.data(), cut);
    c = Crc32cExtend(c, data.data() + cut, data.size() - cut);
    EXPECT_EQ(c, whole) << cut;
    EXPECT_EQ(Crc32cExtendPortable(0, data.data() + cut, data.size() - cut),
              Crc32cExtend(0, data.data() + cut, data.size() - cut));
  }
}

}  // namespace
}  // namespace lft
