// PairMessageEncoder writes what protobuf's serialiser writes for the same
// message, byte for byte, while lending the payloads instead of copying them;
// LentPayloads counts the lent slices back.
#include "latent-store/pair_message_encoder.h"

#include <limits>
#include <memory>
#include <thread>

#include "gtest/gtest.h"
#include "latent-store/store_service.h"
#include "lft/v1/store.pb.h"
#include "tests/unit/latent-store/test_util.h"

namespace lft {
namespace {

using testing_util::MakePair;

std::string Flatten(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(buffer.Dump(&slices).ok());
  std::string out;
  for (const grpc::Slice& s : slices) {
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return out;
}

// Pairs that touch every field's edge: zero (left out), the largest values,
// negative token ids (ten-byte varints), no token ids, each codec.
std::vector<LatentPairRecord> EdgePairs() {
  std::vector<LatentPairRecord> pairs;
  pairs.push_back(MakePair(0, 0, 0, 3, 8));
  LatentPairRecord big = MakePair(7, 1, 2, 5, 16, TensorCodec::kFp8E4M3);
  big.shard = std::numeric_limits<uint32_t>::max();
  big.sequence = std::numeric_limits<uint64_t>::max();
  big.chunk = 300;
  big.token_ids = {0,
                   -1,
                   std::numeric_limits<int32_t>::min(),
                   std::numeric_limits<int32_t>::max(),
                   127,
                   128};
  pairs.push_back(big);
  LatentPairRecord no_ids = MakePair(1, 129, 0, 2, 4, TensorCodec::kF32);
  no_ids.token_ids.clear();
  pairs.push_back(no_ids);
  pairs.push_back(MakePair(2, 3, 0, 200, 64, TensorCodec::kF16));
  return pairs;
}

TEST(PairMessageEncoderTest, PutPairsRequestMatchesProtobufByteForByte) {
  LentPayloads lent;
  for (size_t n = 0; n <= 4; ++n) {
    std::vector<LatentPairRecord> pairs = EdgePairs();
    pairs.resize(n);
    lft::v1::PutPairsRequest want;
    want.set_job_id("job-1");
    PairMessageEncoder encoder(&lent);
    encoder.AddString(1, "job-1");
    for (const LatentPairRecord& p : pairs) {
      PairToProto(p, want.add_pairs());
      encoder.AddPair(2, p);
    }
    const std::string expected = want.SerializeAsString();
    EXPECT_EQ(encoder.bytes(), expected.size()) << n << " pairs";
    grpc::ByteBuffer buffer = encoder.Finish();
    EXPECT_EQ(buffer.Length(), expected.size());
    EXPECT_EQ(Flatten(buffer), expected) << n << " pairs";
    EXPECT_TRUE(encoder.empty());
    // And the server's parser reads it back as the same pairs.
    lft::v1::PutPairsRequest parsed;
    ASSERT_TRUE(parsed.ParseFromString(Flatten(buffer)));
    ASSERT_EQ(parsed.pairs_size(), static_cast<int>(n));
    for (size_t i = 0; i < n; ++i) {
      LatentPairRecord back;
      ASSERT_TRUE(PairFromProto(parsed.pairs(static_cast<int>(i)), &back).ok());
      EXPECT_EQ(back.shard, pairs[i].shard);
      EXPECT_EQ(back.sequence, pairs[i].sequence);
      EXPECT_EQ(back.chunk, pairs[i].chunk);
      EXPECT_EQ(back.codec, pairs[i].codec);
      EXPECT_EQ(back.x0, pairs[i].x0);
      EXPECT_EQ(back.x1, pairs[i].x1);
      EXPECT_EQ(back.token_ids, pairs[i].token_ids);
    }
  }
}

TEST(PairMessageEncoderTest, SingularPairFieldMatchesProtobuf) {
  LentPayloads lent;
  const LatentPairRecord pair = EdgePairs()[1];
  lft::v1::PutPairsRequest want;
  want.set_job_id("j");
  PairToProto(pair, want.mutable_pair_part());
  PairMessageEncoder encoder(&lent);
  encoder.AddString(1, "j");
  encoder.AddPair(3, pair);  // PutPairsRequest.pair_part
  EXPECT_EQ(Flatten(encoder.Finish()), want.SerializeAsString());
  // An empty job id is left out, as proto3 does.
  encoder.AddString(1, "");
  EXPECT_TRUE(encoder.empty());
  EXPECT_EQ(Flatten(encoder.Finish()), "");
}

TEST(PairMessageEncoderTest, PayloadsAreLentNotCopiedAndCountedBack) {
  LentPayloads lent;
  const LatentPairRecord pair = MakePair(0, 1, 0, 64, 32);
  auto buffer = std::make_unique<grpc::ByteBuffer>();
  {
    PairMessageEncoder encoder(&lent);
    encoder.AddString(1, "job");
    encoder.AddPair(2, pair);
    *buffer = encoder.Finish();
  }
  EXPECT_EQ(lent.outstanding(), 2);  // x0 and x1
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(buffer->Dump(&slices).ok());
  bool x0_lent = false, x1_lent = false;
  for (const grpc::Slice& s : slices) {
    const char* p = reinterpret_cast<const char*>(s.begin());
    x0_lent |= p == pair.x0.data() && s.size() == pair.x0.size();
    x1_lent |= p == pair.x1.data() && s.size() == pair.x1.size();
  }
  EXPECT_TRUE(x0_lent && x1_lent);
  EXPECT_FALSE(lent.AwaitReturned(absl::Milliseconds(10)));
  slices.clear();
  // Dropped on another thread, as gRPC's transport does.
  std::thread drop([&] { buffer.reset(); });
  EXPECT_TRUE(lent.AwaitReturned(absl::Seconds(10)));
  drop.join();
  EXPECT_EQ(lent.outstanding(), 0);
}

}  // namespace
}  // namespace lft
