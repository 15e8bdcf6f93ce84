#include "latent-store/record_format.h"

#include <algorithm>
#include <vector>

#include "gtest/gtest.h"
#include "tests/unit/latent-store/test_util.h"

namespace lft {
namespace {

namespace sf = store_format;
using testing_util::MakePair;
using testing_util::StatusIs;

TEST(PairKeyTest, BytewiseOrderIsNumericOrder) {
  std::vector<std::string> keys = {
      sf::PairKey("job", 0, 0, 0),   sf::PairKey("job", 0, 0, 1),
      sf::PairKey("job", 0, 1, 0),   sf::PairKey("job", 0, 255, 0),
      sf::PairKey("job", 0, 256, 0), sf::PairKey("job", 0, 1ull << 40, 0),
      sf::PairKey("job", 1, 0, 0),   sf::PairKey("job", 70000, 0, 0)};
  std::vector<std::string> sorted = keys;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, keys);
}

TEST(PairKeyTest, JobIsLengthPrefixedSoNoJobPrefixesAnother) {
  const std::string a = sf::PairKey("ab", 0, 0, 0);
  const std::string b = sf::PairKey("abc", 0, 0, 0);
  EXPECT_NE(b.compare(0, a.size() - 16, a.substr(0, a.size() - 16)), 0);
  EXPECT_EQ(a.size(), 1 + 2 + 16u);
  EXPECT_EQ(sf::PairKey("j", 1, 2, 3),
            std::string("\x01j\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x02"
                        "\x00\x00\x00\x03",
                        18));
  uint32_t shard, chunk;
  uint64_t seq;
  ASSERT_TRUE(sf::ParsePairAddress(sf::PairKey("j", 1, 2, 3).substr(2), &shard,
                                   &seq, &chunk)
                  .ok());
  EXPECT_EQ(shard, 1u);
  EXPECT_EQ(seq, 2u);
  EXPECT_EQ(chunk, 3u);
}

TEST(PrefixSuccessorTest, IsGreaterThanEveryExtension) {
  const std::string p =
      "\x03"
      "abc";
  const std::string s = sf::PrefixSuccessor(p);
  EXPECT_GT(s, p + std::string(20, '\xff'));
  EXPECT_LT(p, s);
}

TEST(RecordTest, RoundTrip) {
  LatentPairRecord p = MakePair(3, 9, 1, 5, 8, TensorCodec::kFp8E4M3);
  std::string value;
  sf::EncodeRecord(p, &value);
  EXPECT_EQ(value.size(), sf::kRecordHeaderBytes + 5 * 4 + 2 * p.x0.size());
  LatentPairRecord q;
  ASSERT_TRUE(sf::DecodeRecord(value, "k", &q).ok());
  EXPECT_EQ(q.x0, p.x0);
  EXPECT_EQ(q.x1, p.x1);
  EXPECT_EQ(q.token_ids, p.token_ids);
  EXPECT_EQ(q.tokens, 5u);
  EXPECT_EQ(q.hidden, 8u);
  EXPECT_EQ(q.codec, TensorCodec::kFp8E4M3);
}

TEST(RecordTest, EveryFlippedByteIsDetected) {
  LatentPairRecord p = MakePair(0, 1, 0, 2, 4);
  std::string value;
  sf::EncodeRecord(p, &value);
  for (size_t i = 0; i < value.size(); ++i) {
    std::string bad = value;
    bad[i] = static_cast<char>(bad[i] ^ 0x10);
    LatentPairRecord q;
    EXPECT_EQ(sf::DecodeRecord(bad, "key", &q).code(),
              absl::StatusCode::kDataLoss)
        << "byte " << i;
  }
  LatentPairRecord q;
  EXPECT_THAT(sf::DecodeRecord(value.substr(0, 10), "key", &q),
              StatusIs(absl::StatusCode::kDataLoss, "shorter than the header"));
  EXPECT_THAT(sf::DecodeRecord(value.substr(0, value.size() - 1), "key", &q),
              StatusIs(absl::StatusCode::kDataLoss, "header says"));
  std::string flipped = value;
  flipped.back() = static_cast<char>(flipped.back() ^ 1);
  EXPECT_THAT(sf::DecodeRecord(flipped, "key", &q),
              StatusIs(absl::StatusCode::kDataLoss, "crc32c mismatch"));
}

}  // namespace
}  // namespace lft
