// RetryingPairStore over an embedded LatentStore behind a fault-injecting
// decorator: Unavailable is waited out with growing waits, other errors pass
// through at once, a broken scan resumes where it stopped, cancellation and
// the give-up bound end the wait with errors that name the store.
#include "latent-store/retrying_pair_store.h"

#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/base/status.h"
#include "latent-store/latent_store.h"
#include "tests/unit/latent-store/test_util.h"

namespace lft {
namespace {

using testing_util::MakePair;
using testing_util::StatusIs;
using testing_util::TempDir;

constexpr uint32_t kHidden = 8;

// Fails the next `fail_calls` calls with Unavailable, and readers once after
// `reader_fail_after` pairs (when >= 0); everything else goes to `base`.
class FlakyPairStore : public PairStore {
 public:
  explicit FlakyPairStore(PairStore* base) : base_(base) {}

  std::atomic<int> fail_calls{0};
  std::atomic<int> calls{0};
  int reader_fail_after = -1;

  absl::Status Gate() {
    ++calls;
    if (fail_calls.load() > 0) {
      --fail_calls;
      return absl::UnavailableError("failed to connect: Connection refused");
    }
    return absl::OkStatus();
  }

  absl::Status CreateJob(absl::string_view job, const JobConfig& c) override {
    LFT_RETURN_IF_ERROR(Gate());
    return base_->CreateJob(job, c);
  }
  absl::Status PutPairs(absl::string_view job,
                        absl::Span<const LatentPairRecord> pairs,
                        absl::Time deadline) override {
    LFT_RETURN_IF_ERROR(Gate());
    return base_->PutPairs(job, pairs, deadline);
  }
  absl::StatusOr<std::string> WriteSession() override {
    LFT_RETURN_IF_ERROR(Gate());
    return base_->WriteSession();
  }
  absl::Status SyncPairs(absl::string_view job,
                         absl::string_view session) override {
    LFT_RETURN_IF_ERROR(Gate());
    return base_->SyncPairs(job, session);
  }
  absl::Status AckConsumed(absl::string_view job, uint64_t pairs) override {
    LFT_RETURN_IF_ERROR(Gate());
    return base_->AckConsumed(job, pairs);
  }
  absl::Status SealShard(absl::string_view job, uint32_t shard,
                         uint64_t pairs) override {
    LFT_RETURN_IF_ERROR(Gate());
    return base_->SealShard(job, shard, pairs);
  }
  absl::StatusOr<std::unique_ptr<PairReader>> Scan(
      absl::string_view job, const ScanOptions& options) override {
    LFT_RETURN_IF_ERROR(Gate());
    LFT_ASSIGN_OR_RETURN(std::unique_ptr<PairReader> r,
                         base_->Scan(job, options));
    if (reader_fail_after < 0) return r;
    const int after = reader_fail_after;
    reader_fail_after = -1;  // once
    return std::unique_ptr<PairReader>(new BreakingReader(std::move(r), after));
  }
  absl::StatusOr<JobStats> Stats(absl::string_view job) override {
    LFT_RETURN_IF_ERROR(Gate());
    return base_->Stats(job);
  }
  absl::StatusOr<CheckpointInfo> PutCheckpoint(absl::string_view job,
                                               absl::string_view name,
                                               absl::string_view data,
                                               absl::string_view sha) override {
    LFT_RETURN_IF_ERROR(Gate());
    return base_->PutCheckpoint(job, name, data, sha);
  }
  absl::StatusOr<std::string> GetCheckpoint(absl::string_view job,
                                            absl::string_view name) override {
    LFT_RETURN_IF_ERROR(Gate());
    return base_->GetCheckpoint(job, name);
  }
  absl::StatusOr<std::vector<CheckpointInfo>> ListCheckpoints(
      absl::string_view job) override {
    LFT_RETURN_IF_ERROR(Gate());
    return base_->ListCheckpoints(job);
  }
  absl::Status DeleteCheckpoint(absl::string_view job,
                                absl::string_view name) override {
    LFT_RETURN_IF_ERROR(Gate());
    return base_->DeleteCheckpoint(job, name);
  }
  absl::StatusOr<uint64_t> KeepLastCheckpoints(absl::string_view job,
                                               uint64_t keep) override {
    LFT_RETURN_IF_ERROR(Gate());
    return base_->KeepLastCheckpoints(job, keep);
  }
  absl::Status DeleteJob(absl::string_view job) override {
    LFT_RETURN_IF_ERROR(Gate());
    return base_->DeleteJob(job);
  }
  absl::Status DeletePairs(absl::string_view job) override {
    LFT_RETURN_IF_ERROR(Gate());
    return base_->DeletePairs(job);
  }
  // With read_break_after_chunks >= 0, one read breaks (Unavailable) after
  // passing that many chunks on.
  int read_break_after_chunks = -1;
  absl::StatusOr<CheckpointInfo> ReadCheckpoint(
      absl::string_view job, absl::string_view name, uint64_t offset,
      const CheckpointSink& sink) override {
    LFT_RETURN_IF_ERROR(Gate());
    int left = read_break_after_chunks;
    read_break_after_chunks = -1;  // once
    return base_->ReadCheckpoint(
        job, name, offset,
        [&](const CheckpointInfo& info, absl::string_view chunk) {
          if (left == 0) return absl::UnavailableError("connection reset");
          if (left > 0) --left;
          return sink(info, chunk);
        });
  }

 private:
  class BreakingReader : public PairReader {
   public:
    BreakingReader(std::unique_ptr<PairReader> base, int after)
        : base_(std::move(base)), left_(after) {}
    absl::StatusOr<bool> Next(LatentPairRecord* pair) override {
      if (left_-- == 0) return absl::UnavailableError("Socket closed");
      return base_->Next(pair);
    }

   private:
    std::unique_ptr<PairReader> base_;
    int left_;
  };

  PairStore* const base_;
};

class RetryingPairStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    LatentStoreOptions o;
    o.sync = false;
    auto s = LatentStore::Open(dir_.Sub("db"), o);
    ASSERT_TRUE(s.ok()) << s.status();
    base_ = *std::move(s);
    flaky_ = std::make_unique<FlakyPairStore>(base_.get());
    JobConfig c;
    c.hidden = kHidden;
    ASSERT_TRUE(base_->CreateJob("job", c).ok());
    std::vector<LatentPairRecord> pairs;
    for (uint64_t i = 0; i < 10; ++i)
      pairs.push_back(MakePair(0, i, 0, 2, kHidden));
    ASSERT_TRUE(base_->PutPairs("job", pairs, absl::InfiniteFuture()).ok());
  }

  // Records every wait instead of sleeping; `cancel_after` waits, it
  // reports cancellation.
  StoreRetryOptions Options(int cancel_after = -1) {
    StoreRetryOptions o;
    o.backoff = {absl::Milliseconds(100), absl::Milliseconds(400)};
    o.description = "latent store 10.0.0.5:7071";
    o.sleep = [this, cancel_after](absl::Duration d) {
      waits_.push_back(d);
      return cancel_after >= 0 &&
             static_cast<int>(waits_.size()) > cancel_after;
    };
    return o;
  }

  TempDir dir_;
  std::unique_ptr<LatentStore> base_;
  std::unique_ptr<FlakyPairStore> flaky_;
  std::vector<absl::Duration> waits_;
};

TEST_F(RetryingPairStoreTest, UnavailableIsWaitedOutWithGrowingJitteredWaits) {
  RetryingPairStore store(flaky_.get(), Options());
  flaky_->fail_calls = 4;
  auto stats = store.Stats("job");
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->pairs, 10u);
  ASSERT_EQ(waits_.size(), 4u);
  // Wait n is within [d/2, d], d = 100 ms * 2^n capped at 400 ms.
  const absl::Duration ceilings[] = {
      absl::Milliseconds(100), absl::Milliseconds(200), absl::Milliseconds(400),
      absl::Milliseconds(400)};
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_GE(waits_[i], ceilings[i] / 2) << i;
    EXPECT_LE(waits_[i], ceilings[i]) << i;
  }
}

TEST_F(RetryingPairStoreTest, OtherErrorsPassThroughAtOnce) {
  RetryingPairStore store(flaky_.get(), Options());
  EXPECT_THAT(store.Stats("no-such-job"),
              StatusIs(absl::StatusCode::kNotFound, "no-such-job"));
  // SyncPairs' Aborted (the store restarted) is the writer's to handle.
  EXPECT_THAT(store.SyncPairs("job", "stale-session"),
              StatusIs(absl::StatusCode::kAborted, "restarted"));
  EXPECT_TRUE(waits_.empty());
}

TEST_F(RetryingPairStoreTest, GivesUpNamingStoreTimeAndLastError) {
  StoreRetryOptions o = Options();
  o.give_up_after = absl::Milliseconds(50);
  o.sleep = nullptr;  // real sleeps, so that the bound is reached
  o.backoff = {absl::Milliseconds(5), absl::Milliseconds(10)};
  RetryingPairStore store(flaky_.get(), o);
  flaky_->fail_calls = 1000000;
  const absl::Time start = absl::Now();
  EXPECT_THAT(store.GetCheckpoint("job", "step-0000000001"),
              StatusIs(absl::StatusCode::kUnavailable,
                       "latent store 10.0.0.5:7071 unreachable for"));
  EXPECT_THAT(store.GetCheckpoint("job", "step-0000000001"),
              StatusIs(absl::StatusCode::kUnavailable,
                       "last error: failed to connect: Connection refused"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST_F(RetryingPairStoreTest, CancellationEndsTheWait) {
  RetryingPairStore store(flaky_.get(), Options(/*cancel_after=*/2));
  flaky_->fail_calls = 1000000;
  EXPECT_THAT(store.PutCheckpoint("job", "c", "data", ""),
              StatusIs(absl::StatusCode::kCancelled,
                       "cancelled while waiting for latent store"));
  EXPECT_EQ(waits_.size(), 3u);
}

TEST_F(RetryingPairStoreTest, BrokenScanResumesWithoutLossOrRepeat) {
  ScanOptions so;
  so.shuffle = true;
  so.seed = 7;
  so.partition = 1;
  so.partitions = 2;
  so.block_pairs = 1;
  const std::vector<LatentPairRecord> want =
      testing_util::ScanAll(base_.get(), "job", so);
  ASSERT_EQ(want.size(), 5u);

  RetryingPairStore store(flaky_.get(), Options());
  flaky_->reader_fail_after = 2;
  auto reader = store.Scan("job", so);
  ASSERT_TRUE(reader.ok()) << reader.status();
  std::vector<uint64_t> got;
  LatentPairRecord p;
  flaky_->fail_calls = 0;
  while (true) {
    auto more = (*reader)->Next(&p);
    ASSERT_TRUE(more.ok()) << more.status();
    if (!*more) break;
    got.push_back(p.sequence);
    // The reopening Scan itself fails twice before the store is back.
    if (got.size() == 2) flaky_->fail_calls = 2;
  }
  std::vector<uint64_t> expected;
  for (const auto& w : want) expected.push_back(w.sequence);
  EXPECT_EQ(got, expected);
  EXPECT_EQ(waits_.size(), 3u);  // the broken stream, then two failed Scans
}

TEST_F(RetryingPairStoreTest, PutPairsRetriesWithinItsDeadline) {
  StoreRetryOptions o = Options();
  o.sleep = nullptr;
  o.backoff = {absl::Milliseconds(5), absl::Milliseconds(10)};
  RetryingPairStore store(flaky_.get(), o);
  flaky_->fail_calls = 1000000;
  std::vector<LatentPairRecord> pairs = {MakePair(1, 0, 0, 2, kHidden)};
  const absl::Time start = absl::Now();
  EXPECT_THAT(store.PutPairs("job", pairs, start + absl::Milliseconds(60)),
              StatusIs(absl::StatusCode::kUnavailable, "unreachable for"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  flaky_->fail_calls = 3;
  EXPECT_TRUE(store.PutPairs("job", pairs, absl::InfiniteFuture()).ok());
  auto stats = base_->Stats("job");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->pairs, 11u);
}

// A checkpoint read cut by an outage resumes after the bytes the sink took:
// the reader sees every byte once, in order.
TEST_F(RetryingPairStoreTest, CheckpointReadResumesAfterTheBytesTaken) {
  std::string blob(9 * 1024 * 1024 + 17, '\0');  // three 4 MiB chunks
  for (size_t i = 0; i < blob.size(); ++i) blob[i] = static_cast<char>(i * 31);
  ASSERT_TRUE(base_->PutCheckpoint("job", "step-1", blob, "").ok());
  flaky_->read_break_after_chunks = 1;
  RetryingPairStore store(flaky_.get(), Options());
  std::string got;
  auto info = store.ReadCheckpoint(
      "job", "step-1", 0, [&](const CheckpointInfo&, absl::string_view chunk) {
        got.append(chunk.data(), chunk.size());
        return absl::OkStatus();
      });
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->bytes, blob.size());
  EXPECT_TRUE(got == blob) << "got " << got.size() << " bytes";
  EXPECT_GE(flaky_->calls.load(), 2);
}

}  // namespace
}  // namespace lft
