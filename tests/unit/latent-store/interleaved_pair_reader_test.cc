// InterleavedPairReader over fake slice readers: the merged order is
// slice j's pairs at positions j, j + N, ..., any total count ends
// cleanly, a slice that outlives the others is DataLoss (the order changed
// between the slices' openings), and a slice's error comes in the place
// of the pair it failed to read. Plus the real slices: LatentStore::Scan
// with interleave_count, merged, equals the plain scan.
#include "latent-store/interleaved_pair_reader.h"

#include <memory>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "latent-store/latent_store.h"
#include "tests/unit/latent-store/test_util.h"

namespace lft {
namespace {

using testing_util::MakePair;
using testing_util::ScanAll;
using testing_util::StatusIs;
using testing_util::TempDir;

// Yields the given sequences, then false, or `error` once `fail_after`
// pairs were yielded.
class ListReader : public PairReader {
 public:
  explicit ListReader(std::vector<uint64_t> sequences, int fail_after = -1)
      : sequences_(std::move(sequences)), fail_after_(fail_after) {}
  absl::StatusOr<bool> Next(LatentPairRecord* pair) override {
    if (static_cast<int>(next_) == fail_after_) {
      return absl::UnavailableError("store went away");
    }
    if (next_ >= sequences_.size()) return false;
    pair->sequence = sequences_[next_++];
    return true;
  }

 private:
  std::vector<uint64_t> sequences_;
  const int fail_after_;
  size_t next_ = 0;
};

// Slices of 0..total-1 as the store cuts them.
std::vector<std::unique_ptr<PairReader>> Slices(uint64_t total, size_t n) {
  std::vector<std::unique_ptr<PairReader>> out;
  for (size_t j = 0; j < n; ++j) {
    std::vector<uint64_t> mine;
    for (uint64_t i = j; i < total; i += n) mine.push_back(i);
    out.push_back(std::make_unique<ListReader>(std::move(mine)));
  }
  return out;
}

std::vector<uint64_t> Drain(PairReader* r) {
  std::vector<uint64_t> out;
  LatentPairRecord p;
  while (true) {
    auto more = r->Next(&p);
    EXPECT_TRUE(more.ok()) << more.status();
    if (!more.ok() || !*more) break;
    out.push_back(p.sequence);
  }
  return out;
}

TEST(InterleavedPairReaderTest, MergesSlicesBackIntoTheOrderForAnyCount) {
  for (size_t n : {1u, 2u, 3u, 4u}) {
    for (uint64_t total : {0u, 1u, 2u, 3u, 7u, 8u, 13u}) {
      InterleavedPairReader r(Slices(total, n));
      std::vector<uint64_t> want;
      for (uint64_t i = 0; i < total; ++i) want.push_back(i);
      EXPECT_EQ(Drain(&r), want) << n << " slices, " << total << " pairs";
      LatentPairRecord p;
      auto again = r.Next(&p);  // stays finished
      ASSERT_TRUE(again.ok());
      EXPECT_FALSE(*again);
    }
  }
}

TEST(InterleavedPairReaderTest, SliceThatOutlivesTheOthersIsDataLoss) {
  std::vector<std::unique_ptr<PairReader>> slices;
  slices.push_back(std::make_unique<ListReader>(std::vector<uint64_t>{0, 2}));
  slices.push_back(
      std::make_unique<ListReader>(std::vector<uint64_t>{1, 3, 5}));
  InterleavedPairReader r(std::move(slices));
  LatentPairRecord p;
  for (uint64_t i = 0; i < 4; ++i) ASSERT_TRUE(*r.Next(&p));
  EXPECT_THAT(r.Next(&p).status(),
              StatusIs(absl::StatusCode::kDataLoss, "changed"));
  EXPECT_THAT(r.Next(&p).status(),
              StatusIs(absl::StatusCode::kDataLoss, "changed"));
}

TEST(InterleavedPairReaderTest, ErrorComesInThePlaceOfItsPair) {
  std::vector<std::unique_ptr<PairReader>> slices;
  slices.push_back(
      std::make_unique<ListReader>(std::vector<uint64_t>{0, 2, 4}));
  slices.push_back(
      std::make_unique<ListReader>(std::vector<uint64_t>{1, 3, 5}, 1));
  InterleavedPairReader r(std::move(slices));
  LatentPairRecord p;
  for (uint64_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(*r.Next(&p));
    EXPECT_EQ(p.sequence, i);
  }
  EXPECT_THAT(r.Next(&p).status(),
              StatusIs(absl::StatusCode::kUnavailable, "went away"));
  EXPECT_THAT(r.Next(&p).status(),
              StatusIs(absl::StatusCode::kUnavailable, "went away"));
}

TEST(InterleavedPairReaderTest, StoreSlicesMergeIntoThePlainScan) {
  TempDir dir;
  LatentStoreOptions o;
  o.sync = false;
  auto store = LatentStore::Open(dir.Sub("db"), o);
  ASSERT_TRUE(store.ok()) << store.status();
  JobConfig c;
  c.hidden = 8;
  ASSERT_TRUE((*store)->CreateJob("job", c).ok());
  std::vector<LatentPairRecord> batch;
  for (uint64_t s = 0; s < 23; ++s) batch.push_back(MakePair(0, s, 0, 4, 8));
  ASSERT_TRUE((*store)->PutPairs("job", batch, absl::InfiniteFuture()).ok());
  for (uint32_t n : {2u, 3u, 5u}) {
    for (uint64_t skip : {0u, 4u}) {
      ScanOptions plain;
      plain.partition = 1;
      plain.partitions = 2;
      plain.shuffle = true;
      plain.seed = 9;
      plain.block_pairs = 3;
      plain.skip_pairs = skip;
      std::vector<uint64_t> want;
      for (const LatentPairRecord& p : ScanAll(store->get(), "job", plain))
        want.push_back(p.sequence);
      ASSERT_FALSE(want.empty());
      std::vector<std::unique_ptr<PairReader>> slices;
      for (uint32_t j = 0; j < n; ++j) {
        ScanOptions slice = plain;
        slice.interleave_index = j;
        slice.interleave_count = n;
        auto r = (*store)->Scan("job", slice);
        ASSERT_TRUE(r.ok()) << r.status();
        slices.push_back(*std::move(r));
      }
      InterleavedPairReader merged(std::move(slices));
      EXPECT_EQ(Drain(&merged), want) << n << " slices, skip " << skip;
    }
  }
  ScanOptions bad;
  bad.interleave_index = 3;
  bad.interleave_count = 3;
  EXPECT_THAT((*store)->Scan("job", bad).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "interleave_index"));
}

}  // namespace
}  // namespace lft
