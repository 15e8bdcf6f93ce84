#include "latent-store/latent_store.h"

#include <atomic>
#include <filesystem>
#include <set>
#include <thread>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "latent-store/record_format.h"
#include "tests/unit/latent-store/test_util.h"

namespace lft {
namespace {

using testing_util::MakePair;
using testing_util::PairIntact;
using testing_util::StatusIs;
using testing_util::TempDir;

constexpr uint32_t kHidden = 16;

LatentStoreOptions FastOptions() {
  LatentStoreOptions o;
  o.sync = false;  // unit tests: the WAL alone survives a process kill
  o.write_buffer_bytes = 4 << 20;
  o.min_blob_size = 256;
  o.checkpoint_chunk_bytes = 1000;
  return o;
}

class LatentStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }
  void Reopen() {
    store_.reset();
    auto s = LatentStore::Open(dir_.Sub("db"), FastOptions());
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
  }
  void Create(const std::string& job, uint64_t max_pending = 0) {
    JobConfig c;
    c.hidden = kHidden;
    c.codec = TensorCodec::kBF16;
    c.max_pending_pairs = max_pending;
    ASSERT_TRUE(store_->CreateJob(job, c).ok());
  }
  // Writes pairs with sequence numbers [begin, end) of shard `shard`.
  void Write(const std::string& job, uint32_t shard, uint64_t begin,
             uint64_t end) {
    std::vector<LatentPairRecord> batch;
    for (uint64_t s = begin; s < end; ++s) {
      batch.push_back(MakePair(shard, s, 0, 3, kHidden));
    }
    ASSERT_TRUE(store_->PutPairs(job, batch, absl::InfiniteFuture()).ok());
  }
  std::vector<LatentPairRecord> ReadAll(const std::string& job,
                                        const ScanOptions& o) {
    return testing_util::ScanAll(store_.get(), job, o);
  }
  static std::vector<uint64_t> Sequences(
      const std::vector<LatentPairRecord>& v) {
    std::vector<uint64_t> s;
    for (const auto& p : v) s.push_back(p.shard * 1000000ull + p.sequence);
    return s;
  }

  TempDir dir_;
  std::unique_ptr<LatentStore> store_;
};

TEST_F(LatentStoreTest, WritesReadBackInKeyOrder) {
  Create("job-1");
  Write("job-1", 1, 0, 10);
  Write("job-1", 0, 5, 15);
  auto pairs = ReadAll("job-1", ScanOptions());
  ASSERT_EQ(pairs.size(), 20u);
  for (size_t i = 0; i < pairs.size(); ++i) {
    EXPECT_TRUE(PairIntact(pairs[i])) << i;
    if (i > 0) {
      EXPECT_LT(Sequences(pairs)[i - 1], Sequences(pairs)[i]);
    }
  }
  EXPECT_EQ(pairs[0].shard, 0u);
  EXPECT_EQ(pairs[0].sequence, 5u);
  auto stats = store_->Stats("job-1");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->pairs, 20u);
  EXPECT_EQ(stats->tokens, 60u);
}

TEST_F(LatentStoreTest, RerunShardOverwritesInsteadOfDuplicating) {
  Create("job");
  Write("job", 0, 0, 10);
  const uint64_t bytes = store_->Stats("job")->bytes;
  Write("job", 0, 0, 10);
  Write("job", 0, 5, 12);  // partly new
  auto stats = store_->Stats("job");
  EXPECT_EQ(stats->pairs, 12u);
  EXPECT_EQ(stats->tokens, 36u);
  EXPECT_EQ(stats->bytes, bytes / 10 * 12);
  EXPECT_EQ(ReadAll("job", ScanOptions()).size(), 12u);
  // The same address twice in one batch counts once.
  std::vector<LatentPairRecord> dup = {MakePair(0, 100, 0, 3, kHidden),
                                       MakePair(0, 100, 0, 3, kHidden)};
  ASSERT_TRUE(store_->PutPairs("job", dup, absl::InfiniteFuture()).ok());
  EXPECT_EQ(store_->Stats("job")->pairs, 13u);
}

TEST_F(LatentStoreTest, JobsDoNotSeeEachOther) {
  Create("a");
  Create("ab");
  Write("a", 0, 0, 3);
  Write("ab", 0, 0, 5);
  EXPECT_EQ(ReadAll("a", ScanOptions()).size(), 3u);
  EXPECT_EQ(ReadAll("ab", ScanOptions()).size(), 5u);
  ASSERT_TRUE(store_->DeleteJob("a").ok());
  EXPECT_EQ(ReadAll("ab", ScanOptions()).size(), 5u);
  EXPECT_THAT(store_->Stats("a"), StatusIs(absl::StatusCode::kNotFound, "'a'"));
}

TEST_F(LatentStoreTest, SurvivesReopen) {
  Create("job", 100);
  Write("job", 2, 0, 7);
  ASSERT_TRUE(store_->AckConsumed("job", 3).ok());
  Reopen();
  auto stats = store_->Stats("job");
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->pairs, 7u);
  EXPECT_EQ(stats->consumed, 3u);
  EXPECT_EQ(stats->pending, 4u);
  EXPECT_EQ(store_->GetJobConfig("job")->max_pending_pairs, 100u);
  auto pairs = ReadAll("job", ScanOptions());
  ASSERT_EQ(pairs.size(), 7u);
  for (const auto& p : pairs) EXPECT_TRUE(PairIntact(p));
}

TEST_F(LatentStoreTest, BadInputGetsPreciseErrors) {
  EXPECT_THAT(store_->PutPairs("nojob", {}, absl::InfiniteFuture()),
              StatusIs(absl::StatusCode::kNotFound, "call CreateJob first"));
  EXPECT_THAT(store_->CreateJob("bad/id", JobConfig{16}),
              StatusIs(absl::StatusCode::kInvalidArgument, "may contain only"));
  EXPECT_THAT(store_->CreateJob("", JobConfig{16}),
              StatusIs(absl::StatusCode::kInvalidArgument, "1..128"));
  EXPECT_THAT(store_->CreateJob("j", JobConfig{0}),
              StatusIs(absl::StatusCode::kInvalidArgument, "hidden must be"));
  Create("j");
  EXPECT_THAT(store_->CreateJob("j", JobConfig{32}),
              StatusIs(absl::StatusCode::kAlreadyExists, "hidden 16"));
  EXPECT_TRUE(store_->CreateJob("j", JobConfig{kHidden}).ok());

  std::vector<LatentPairRecord> batch = {MakePair(0, 0, 0, 3, kHidden),
                                         MakePair(0, 1, 0, 3, 8)};
  EXPECT_THAT(store_->PutPairs("j", batch, absl::InfiniteFuture()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "pair 1 (shard 0, sequence 1, chunk 0): hidden is 8"));
  batch[1] = MakePair(0, 1, 0, 3, kHidden, TensorCodec::kF16);
  EXPECT_THAT(store_->PutPairs("j", batch, absl::InfiniteFuture()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "dtype is f16, the job expects bf16"));
  batch[1] = MakePair(0, 1, 0, 3, kHidden);
  batch[1].x1.pop_back();
  EXPECT_THAT(store_->PutPairs("j", batch, absl::InfiniteFuture()),
              StatusIs(absl::StatusCode::kInvalidArgument, "needs 96"));
  batch[1] = MakePair(0, 1, 0, 3, kHidden);
  batch[1].token_ids.push_back(1);
  EXPECT_THAT(store_->PutPairs("j", batch, absl::InfiniteFuture()),
              StatusIs(absl::StatusCode::kInvalidArgument, "4 token ids"));
  // Nothing of the rejected batches was written.
  EXPECT_EQ(store_->Stats("j")->pairs, 0u);
  ScanOptions o;
  o.partition = 2;
  o.partitions = 2;
  EXPECT_THAT(store_->Scan("j", o),
              StatusIs(absl::StatusCode::kInvalidArgument, "partition 2 of 2"));
  EXPECT_THAT(store_->Scan("zz", ScanOptions()),
              StatusIs(absl::StatusCode::kNotFound, "'zz'"));
}

TEST_F(LatentStoreTest, CorruptRecordIsDataLossNamingTheKey) {
  Create("job");
  Write("job", 0, 0, 4);
  const std::string key = store_format::PairKey("job", 0, 2, 0);
  auto raw = store_->TestOnlyGetRaw("pairs", key);
  ASSERT_TRUE(raw.ok());
  std::string bad = *raw;
  bad[bad.size() / 2] ^= 0x01;
  ASSERT_TRUE(store_->TestOnlyPutRaw("pairs", key, bad).ok());
  auto reader = store_->Scan("job", ScanOptions());
  ASSERT_TRUE(reader.ok());
  LatentPairRecord p;
  EXPECT_TRUE(*(*reader)->Next(&p));
  EXPECT_TRUE(*(*reader)->Next(&p));
  EXPECT_THAT((*reader)->Next(&p),
              StatusIs(absl::StatusCode::kDataLoss, "crc32c mismatch"));
}

// Partitions: disjoint and complete for every W, ordered or shuffled.
TEST_F(LatentStoreTest, PartitionsAreDisjointAndComplete) {
  Create("job");
  Write("job", 0, 0, 53);
  for (bool shuffle : {false, true}) {
    for (uint32_t w = 1; w <= 5; ++w) {
      std::multiset<uint64_t> seen;
      for (uint32_t r = 0; r < w; ++r) {
        ScanOptions o;
        o.partition = r;
        o.partitions = w;
        o.shuffle = shuffle;
        o.seed = 42;
        o.block_pairs = 4;
        for (uint64_t s : Sequences(ReadAll("job", o))) seen.insert(s);
      }
      EXPECT_EQ(seen.size(), 53u) << "W=" << w;
      EXPECT_EQ(std::set<uint64_t>(seen.begin(), seen.end()).size(), 53u);
    }
  }
}

TEST_F(LatentStoreTest, ShuffleDependsOnSeedAndEpochNotOnWorldSize) {
  Create("job");
  Write("job", 0, 0, 40);
  auto order = [&](uint64_t seed, uint64_t epoch) {
    ScanOptions o;
    o.shuffle = true;
    o.seed = seed;
    o.epoch = epoch;
    o.block_pairs = 4;
    return Sequences(ReadAll("job", o));
  };
  const auto e0 = order(1, 0);
  EXPECT_EQ(e0, order(1, 0));
  EXPECT_NE(e0, order(1, 1));
  EXPECT_NE(e0, order(2, 0));
  std::vector<uint64_t> sorted = e0;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_NE(e0, sorted);
  // Interleaving W=2's blocks reproduces the W=1 order.
  std::vector<std::vector<uint64_t>> ranks(2);
  for (uint32_t r = 0; r < 2; ++r) {
    ScanOptions o;
    o.shuffle = true;
    o.seed = 1;
    o.block_pairs = 4;
    o.partition = r;
    o.partitions = 2;
    ranks[r] = Sequences(ReadAll("job", o));
  }
  std::vector<uint64_t> merged;
  for (size_t b = 0; b < 5; ++b) {
    for (uint32_t r = 0; r < 2; ++r) {
      merged.insert(merged.end(), ranks[r].begin() + 4 * b,
                    ranks[r].begin() + 4 * (b + 1));
    }
  }
  EXPECT_EQ(merged, e0);
}

TEST_F(LatentStoreTest, ResizeWithStartBlockNeitherDropsNorRepeats) {
  Create("job");
  Write("job", 0, 0, 48);  // 12 blocks of 4
  std::multiset<uint64_t> seen;
  // W = 3: every rank consumes 2 blocks (6 of 12), then the group shrinks.
  for (uint32_t r = 0; r < 3; ++r) {
    ScanOptions o;
    o.shuffle = true;
    o.seed = 9;
    o.block_pairs = 4;
    o.partition = r;
    o.partitions = 3;
    auto s = Sequences(ReadAll("job", o));
    seen.insert(s.begin(), s.begin() + 8);
  }
  // W' = 2 resumes at start_block = 2 * 3.
  for (uint32_t r = 0; r < 2; ++r) {
    ScanOptions o;
    o.shuffle = true;
    o.seed = 9;
    o.block_pairs = 4;
    o.partition = r;
    o.partitions = 2;
    o.start_block = 6;
    for (uint64_t s : Sequences(ReadAll("job", o))) seen.insert(s);
  }
  EXPECT_EQ(seen.size(), 48u);
  EXPECT_EQ(std::set<uint64_t>(seen.begin(), seen.end()).size(), 48u);
}

TEST_F(LatentStoreTest, SkipPairsResumesWithinAPartition) {
  Create("job");
  Write("job", 0, 0, 20);
  ScanOptions o;
  o.partitions = 2;
  o.partition = 1;
  o.block_pairs = 3;
  auto all = Sequences(ReadAll("job", o));
  o.skip_pairs = 4;
  auto rest = Sequences(ReadAll("job", o));
  ASSERT_EQ(rest.size() + 4, all.size());
  EXPECT_TRUE(std::equal(rest.begin(), rest.end(), all.begin() + 4));
}

TEST_F(LatentStoreTest, ScanSeesASnapshot) {
  Create("job");
  Write("job", 0, 0, 5);
  ScanOptions o;
  o.readahead_pairs = 1;
  auto reader = store_->Scan("job", o);
  ASSERT_TRUE(reader.ok());
  Write("job", 0, 5, 10);
  int n = 0;
  LatentPairRecord p;
  while (*(*reader)->Next(&p)) ++n;
  EXPECT_EQ(n, 5);
}

TEST_F(LatentStoreTest, BackPressureBlocksUntilDeadline) {
  Create("job", /*max_pending=*/4);
  Write("job", 0, 0, 4);
  std::vector<LatentPairRecord> batch = {MakePair(0, 10, 0, 3, kHidden)};
  const absl::Time start = absl::Now();
  EXPECT_THAT(
      store_->PutPairs("job", batch, absl::Now() + absl::Milliseconds(200)),
      StatusIs(absl::StatusCode::kDeadlineExceeded,
               "holds 4 unconsumed pairs"));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(190));
  EXPECT_EQ(store_->Stats("job")->pairs, 4u);  // nothing dropped or added
}

TEST_F(LatentStoreTest, AckReleasesABlockedWriterAndNothingIsDropped) {
  Create("job", /*max_pending=*/8);
  Create("other", /*max_pending=*/1);
  std::atomic<int> written{0};
  std::thread writer([&] {
    for (uint64_t b = 0; b < 10; ++b) {
      std::vector<LatentPairRecord> batch;
      for (uint64_t s = 0; s < 4; ++s) {
        batch.push_back(MakePair(0, b * 4 + s, 0, 3, kHidden));
      }
      absl::Status st =
          store_->PutPairs("job", batch, absl::Now() + absl::Seconds(30));
      ASSERT_TRUE(st.ok()) << st;
      written += 4;
    }
  });
  // A full job must not stall another job's writers.
  absl::SleepFor(absl::Milliseconds(50));
  Write("other", 0, 0, 1);
  uint64_t consumed = 0;
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  while (consumed < 40 && absl::Now() < give_up) {
    auto stats = store_->Stats("job");
    ASSERT_TRUE(stats.ok());
    EXPECT_LE(stats->pending, 8u);
    if (stats->pending > 0) {
      ASSERT_TRUE(store_->AckConsumed("job", stats->pending).ok());
      consumed += stats->pending;
    } else {
      absl::SleepFor(absl::Milliseconds(2));
    }
  }
  writer.join();
  EXPECT_EQ(written.load(), 40);
  EXPECT_EQ(consumed, 40u);
  auto all = ReadAll("job", ScanOptions());
  EXPECT_EQ(all.size(), 40u);
}

// Streaming: sealed shards from 0 up plus the head shard's pairs are the
// final prefix of the key order; a range scan reads a window of it; the
// head shard's writer gets past a bound that later shards filled (else a
// reader waiting for the prefix would wait forever), but only while the
// prefix holds fewer than `bound` unconsumed pairs; seals survive a reopen
// and go with DeletePairs.
TEST_F(LatentStoreTest, SealedShardsFormTheFinalPrefixAndLetTheHeadShardIn) {
  Create("job", /*max_pending=*/4);
  const auto soon = [] { return absl::Now() + absl::Milliseconds(100); };
  auto batch = [](uint32_t shard, uint64_t begin, uint64_t end) {
    std::vector<LatentPairRecord> b;
    for (uint64_t s = begin; s < end; ++s)
      b.push_back(MakePair(shard, s, 0, 3, kHidden));
    return b;
  };
  Write("job", 1, 0, 4);  // a later shard fills the bound
  EXPECT_THAT(store_->PutPairs("job", batch(1, 4, 6), soon()),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       "holds 4 unconsumed pairs"));
  auto stats = store_->Stats("job");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->sealed_shards, 0u);
  EXPECT_EQ(stats->stream_prefix_pairs, 0u);
  // Shard 0 is the head: admitted while the prefix holds < 4 unconsumed.
  ASSERT_TRUE(store_->PutPairs("job", batch(0, 0, 2), soon()).ok());
  ASSERT_TRUE(store_->PutPairs("job", batch(0, 2, 5), soon()).ok());
  EXPECT_THAT(store_->PutPairs("job", batch(0, 5, 6), soon()),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       "holds 9 unconsumed pairs"));
  EXPECT_EQ(store_->Stats("job")->stream_prefix_pairs, 5u);
  ASSERT_TRUE(store_->AckConsumed("job", 2).ok());  // prefix: 3 unconsumed
  ASSERT_TRUE(store_->PutPairs("job", batch(0, 5, 6), soon()).ok());

  EXPECT_THAT(store_->SealShard("job", 0, 7),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "sealing with 7 pairs but the store holds 6"));
  EXPECT_EQ(store_->Stats("job")->sealed_shards, 0u);
  ASSERT_TRUE(store_->SealShard("job", 0, 6).ok());
  ASSERT_TRUE(store_->SealShard("job", 0, 6).ok());  // idempotent
  stats = store_->Stats("job");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->sealed_shards, 1u);
  EXPECT_EQ(stats->stream_prefix_pairs, 10u);  // 6 of shard 0, 4 of shard 1
  // Shard 3 sealed out of turn does not move the head past shard 2.
  ASSERT_TRUE(store_->SealShard("job", 3, 0).ok());
  EXPECT_EQ(store_->Stats("job")->sealed_shards, 1u);
  EXPECT_THAT(store_->SealShard("nojob", 0, 0),
              StatusIs(absl::StatusCode::kNotFound, "nojob"));

  // Pairs [4, 8) of the key order: shard 0's 4, 5, then shard 1's 0, 1.
  ScanOptions range;
  range.range_begin = 4;
  range.range_pairs = 4;
  range.block_pairs = 1;
  auto window = ReadAll("job", range);
  ASSERT_EQ(window.size(), 4u);
  EXPECT_EQ(window[0].shard, 0u);
  EXPECT_EQ(window[0].sequence, 4u);
  EXPECT_EQ(window[2].shard, 1u);
  EXPECT_EQ(window[3].sequence, 1u);
  // Shuffled and partitioned within the range: the same 4 pairs.
  range.shuffle = true;
  range.seed = 9;
  range.partitions = 2;
  std::set<std::pair<uint32_t, uint64_t>> got;
  for (uint32_t r = 0; r < 2; ++r) {
    range.partition = r;
    for (const LatentPairRecord& p : ReadAll("job", range))
      got.insert({p.shard, p.sequence});
  }
  EXPECT_EQ(got, (std::set<std::pair<uint32_t, uint64_t>>{
                     {0, 4}, {0, 5}, {1, 0}, {1, 1}}));
  range.range_begin = 8;  // cut at the end of the stored pairs
  range.range_pairs = 100;
  range.partitions = 1;
  range.partition = 0;
  EXPECT_EQ(ReadAll("job", range).size(), 2u);

  Reopen();
  stats = store_->Stats("job");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->sealed_shards, 1u);
  EXPECT_EQ(stats->stream_prefix_pairs, 10u);
  ASSERT_TRUE(store_->DeletePairs("job").ok());
  stats = store_->Stats("job");
  EXPECT_EQ(stats->sealed_shards, 0u);
  EXPECT_EQ(stats->stream_prefix_pairs, 0u);
}

TEST_F(LatentStoreTest, DeleteJobAbortsBlockedWriters) {
  Create("job", 1);
  Write("job", 0, 0, 1);
  absl::Status result;
  std::thread writer([&] {
    result = store_->PutPairs("job", {MakePair(0, 5, 0, 3, kHidden)},
                              absl::Now() + absl::Seconds(30));
  });
  absl::SleepFor(absl::Milliseconds(50));
  ASSERT_TRUE(store_->DeleteJob("job").ok());
  writer.join();
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kAborted, "was deleted"));
  EXPECT_THAT(store_->DeleteJob("job"),
              StatusIs(absl::StatusCode::kNotFound, "not registered"));
}

// Stats.checkpoints counted reports and PNGs too.
TEST_F(LatentStoreTest, StatsCountCheckpointsAndReportsApart) {
  Create("job");
  for (const char* name : {"step-0000000010", "step-0000000020", "report.json",
                           "report.md", "kl_vs_k.png"}) {
    ASSERT_TRUE(store_->PutCheckpoint("job", name, "blob", "").ok());
  }
  auto stats = store_->Stats("job");
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->checkpoints, 2u);
  EXPECT_EQ(stats->reports, 3u);
}

// Bytes under the directory, recursively.
uint64_t DiskBytes(const std::string& dir) {
  uint64_t total = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) total += e.file_size();
  }
  return total;
}

// Pairs of finished jobs stayed on disk: deleting must give the space back
// (range deletion, then compaction of the job's key range).
TEST_F(LatentStoreTest, DeleteJobAndDeletePairsReturnDiskSpace) {
  constexpr uint32_t kTokens = 256, kWide = 256;  // 128 KiB per x0 in bf16
  JobConfig c;
  c.hidden = kWide;
  for (const char* job : {"gone", "kept"}) {
    ASSERT_TRUE(store_->CreateJob(job, c).ok());
    for (uint64_t b = 0; b < 8; ++b) {
      std::vector<LatentPairRecord> batch;
      for (uint64_t s = 0; s < 8; ++s) {
        batch.push_back(MakePair(0, b * 8 + s, 0, kTokens, kWide));
      }
      ASSERT_TRUE(store_->PutPairs(job, batch, absl::InfiniteFuture()).ok());
    }
  }
  ASSERT_TRUE(store_->PutCheckpoint("kept", "report.json", "{}", "").ok());
  ASSERT_TRUE(store_->Flush().ok());
  const uint64_t job_bytes = 64ull * 2 * kTokens * kWide * 2;  // 16 MiB
  const uint64_t before = DiskBytes(dir_.Sub("db"));
  ASSERT_GT(before, 2 * job_bytes);

  ASSERT_TRUE(store_->DeleteJob("gone").ok());
  const uint64_t after_delete = DiskBytes(dir_.Sub("db"));
  EXPECT_LT(after_delete, before - job_bytes * 9 / 10)
      << "before " << before << " after " << after_delete;

  ASSERT_TRUE(store_->DeletePairs("kept").ok());
  const uint64_t after_pairs = DiskBytes(dir_.Sub("db"));
  EXPECT_LT(after_pairs, after_delete - job_bytes * 9 / 10)
      << "before " << after_delete << " after " << after_pairs;
  auto stats = store_->Stats("kept");
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->pairs, 0u);
  EXPECT_EQ(stats->reports, 1u);
  EXPECT_TRUE(ReadAll("kept", ScanOptions()).empty());
  // The job still takes pairs, and its counters survive a reopen.
  ASSERT_TRUE(
      store_
          ->PutPairs("kept",
                     {MakePair(1, 0, 0, 2, kWide), MakePair(1, 1, 0, 2, kWide)},
                     absl::InfiniteFuture())
          .ok());
  Reopen();
  EXPECT_EQ(store_->Stats("kept")->pairs, 2u);
  EXPECT_THAT(store_->DeletePairs("nope"),
              StatusIs(absl::StatusCode::kNotFound, "not registered"));
}

TEST_F(LatentStoreTest, SecondOpenOfTheSameDirectoryIsFailedPrecondition) {
  auto second = LatentStore::Open(dir_.Sub("db"), FastOptions());
  EXPECT_THAT(second, StatusIs(absl::StatusCode::kFailedPrecondition,
                               "another lft-store"));
}

TEST(LatentStoreOpenTest, MissingDirectoryWithoutCreateIsInvalidArgument) {
  TempDir dir;
  LatentStoreOptions o = FastOptions();
  o.create_if_missing = false;
  EXPECT_THAT(LatentStore::Open(dir.Sub("none"), o),
              StatusIs(absl::StatusCode::kInvalidArgument, "does not exist"));
}

}  // namespace
}  // namespace lft
