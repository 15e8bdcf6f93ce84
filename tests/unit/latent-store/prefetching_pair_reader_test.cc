// PrefetchingPairReader over a scripted fake reader: the same pairs in the
// same order, an error after the pairs before it, at most `depth` pairs
// read ahead of the consumer, and destruction mid-stream (the thread
// stops; nothing hangs). Plus one pass over a real LatentStore scan.
#include "latent-store/prefetching_pair_reader.h"

#include <atomic>
#include <memory>
#include <utility>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "latent-store/latent_store.h"
#include "tests/testing/status_matchers.h"
#include "tests/unit/latent-store/test_util.h"

namespace lft {
namespace {

using ::lft::testing::StatusIs;
using testing_util::MakePair;
using testing_util::TempDir;

// Pairs with sequence 0..count-1, then false, or `error` at `error_at`.
class ScriptedReader : public PairReader {
 public:
  ScriptedReader(uint64_t count, std::atomic<uint64_t>* calls,
                 int64_t error_at = -1)
      : count_(count), calls_(calls), error_at_(error_at) {}
  absl::StatusOr<bool> Next(LatentPairRecord* pair) override {
    const uint64_t i = calls_->fetch_add(1);
    if (static_cast<int64_t>(i) == error_at_) {
      return absl::DataLossError("pair 3 failed its crc32c");
    }
    if (i >= count_) return false;
    pair->shard = 1;
    pair->sequence = i;
    pair->x0 = std::string(64, static_cast<char>(i));
    return true;
  }

 private:
  const uint64_t count_;
  std::atomic<uint64_t>* const calls_;
  const int64_t error_at_;
};

TEST(PrefetchingPairReaderTest, SamePairsInTheSameOrderThenEnd) {
  std::atomic<uint64_t> calls{0};
  PrefetchingPairReader r(std::make_unique<ScriptedReader>(100, &calls), 4);
  LatentPairRecord p;
  for (uint64_t i = 0; i < 100; ++i) {
    auto more = r.Next(&p);
    ASSERT_TRUE(more.ok()) << more.status();
    ASSERT_TRUE(*more) << i;
    EXPECT_EQ(p.sequence, i);
    EXPECT_EQ(p.x0, std::string(64, static_cast<char>(i)));
  }
  auto end = r.Next(&p);
  ASSERT_TRUE(end.ok());
  EXPECT_FALSE(*end);
  end = r.Next(&p);  // still finished
  ASSERT_TRUE(end.ok());
  EXPECT_FALSE(*end);
}

TEST(PrefetchingPairReaderTest, ErrorComesAfterThePairsBeforeIt) {
  std::atomic<uint64_t> calls{0};
  PrefetchingPairReader r(std::make_unique<ScriptedReader>(100, &calls, 3), 8);
  LatentPairRecord p;
  for (uint64_t i = 0; i < 3; ++i) {
    auto more = r.Next(&p);
    ASSERT_TRUE(more.ok()) << more.status();
    EXPECT_EQ(p.sequence, i);
  }
  EXPECT_THAT(r.Next(&p).status(),
              StatusIs(absl::StatusCode::kDataLoss, "crc32c"));
  EXPECT_THAT(r.Next(&p).status(),
              StatusIs(absl::StatusCode::kDataLoss, "crc32c"));
  EXPECT_EQ(calls.load(), 4u);  // nothing read past the error
}

TEST(PrefetchingPairReaderTest, ReadsAtMostDepthAhead) {
  std::atomic<uint64_t> calls{0};
  PrefetchingPairReader r(std::make_unique<ScriptedReader>(1000, &calls), 5);
  // Unconsumed: the thread fills 5 and then waits for room (one more Next
  // may be in flight only once room is made).
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (calls.load() < 5 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(calls.load(), 5u);
  LatentPairRecord p;
  ASSERT_TRUE(r.Next(&p).ok());
  EXPECT_EQ(p.sequence, 0u);
  while (calls.load() < 6 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(calls.load(), 6u);
}

TEST(PrefetchingPairReaderTest, DestroyedMidStreamStopsItsThread) {
  std::atomic<uint64_t> calls{0};
  {
    PrefetchingPairReader r(std::make_unique<ScriptedReader>(1 << 20, &calls),
                            3);
    LatentPairRecord p;
    ASSERT_TRUE(r.Next(&p).ok());
  }  // joins: a hang here fails by the test's timeout
  const uint64_t after = calls.load();
  absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ(calls.load(), after);
  EXPECT_LE(after, 5u);
}

TEST(PrefetchingPairReaderTest, WrapsAStoreScanUnchanged) {
  TempDir dir;
  auto store = LatentStore::Open(dir.Sub("db"), {});
  ASSERT_TRUE(store.ok()) << store.status();
  JobConfig config;
  config.hidden = 16;
  ASSERT_TRUE((*store)->CreateJob("j", config).ok());
  std::vector<LatentPairRecord> pairs;
  for (uint64_t s = 0; s < 40; ++s) pairs.push_back(MakePair(0, s, 0, 8, 16));
  ASSERT_TRUE((*store)->PutPairs("j", pairs, absl::InfiniteFuture()).ok());
  ScanOptions so;
  so.shuffle = true;
  so.seed = 7;
  so.partition = 1;
  so.partitions = 3;
  so.block_pairs = 1;
  auto plain = (*store)->Scan("j", so);
  auto wrapped_inner = (*store)->Scan("j", so);
  ASSERT_TRUE(plain.ok() && wrapped_inner.ok());
  PrefetchingPairReader wrapped(std::move(*wrapped_inner), 2);
  LatentPairRecord a, b;
  uint64_t n = 0;
  while (true) {
    auto ma = (*plain)->Next(&a);
    auto mb = wrapped.Next(&b);
    ASSERT_TRUE(ma.ok() && mb.ok());
    ASSERT_EQ(*ma, *mb);
    if (!*ma) break;
    EXPECT_EQ(a.sequence, b.sequence);
    EXPECT_EQ(a.x1, b.x1);
    ++n;
  }
  EXPECT_GT(n, 10u);
}

}  // namespace
}  // namespace lft
