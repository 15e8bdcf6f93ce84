#include "common/corpus_sharder.h"

#include <atomic>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "common/indexed_dataset.h"
#include "common/jsonl_zst.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/common/data_test_util.h"

namespace lft {
namespace {

using ::testing::HasSubstr;

TEST(CorpusSharderTest, ShardsCoverEveryDocumentOnceAndAreDeterministic) {
  std::vector<CorpusFile> files = {{"a", 10}, {"b", 0}, {"c", 3}, {"d", 4}};
  auto shards = CorpusSharder::MakeShards(files, 4);
  ASSERT_TRUE(shards.ok());
  std::vector<ShardTask> expected = {{0, "a", 0, 4},
                                     {1, "a", 4, 8},
                                     {2, "a", 8, 10},
                                     {3, "c", 0, 3},
                                     {4, "d", 0, 4}};
  EXPECT_EQ(*shards, expected);
  EXPECT_EQ(*CorpusSharder::MakeShards(files, 4), *shards);
  EXPECT_EQ(CorpusSharder::MakeShards(files, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CorpusSharderTest, CountsJsonlAndMegatronFiles) {
  TempDir dir;
  std::filesystem::create_directories(dir.File("sub"));
  for (const auto& [name, n] : std::vector<std::pair<std::string, int>>{
           {"sub/b.jsonl.zst", 7}, {"a.jsonl.zst", 3}}) {
    auto w = JsonlZstWriter::Open(dir.File(name));
    ASSERT_TRUE(w.ok());
    for (int i = 0; i < n; ++i) ASSERT_TRUE((*w)->Write("t", "S").ok());
    ASSERT_TRUE((*w)->Close().ok());
  }
  auto mw = IndexedDatasetWriter::Open(dir.File("mega"), IndexedDtype::kUint16);
  ASSERT_TRUE(mw.ok());
  for (int d = 0; d < 5; ++d) {
    ASSERT_TRUE((*mw)->AddSequence({1, 2}).ok());
    (*mw)->EndDocument();
  }
  ASSERT_TRUE((*mw)->Close().ok());

  auto listed = ListJsonlZstFiles(dir.path());
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[0], dir.File("a.jsonl.zst"));
  EXPECT_EQ((*listed)[1], dir.File("sub/b.jsonl.zst"));
  std::vector<std::string> paths = *listed;
  paths.push_back(dir.File("mega"));
  auto counted = CorpusSharder::CountDocuments(paths);
  ASSERT_TRUE(counted.ok()) << counted.status();
  EXPECT_EQ((*counted)[0].documents, 3);
  EXPECT_EQ((*counted)[1].documents, 7);
  EXPECT_EQ((*counted)[2].documents, 5);

  auto missing = CorpusSharder::CountDocuments({dir.File("nope.jsonl.zst")});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ListJsonlZstFiles(dir.File("nodir")).status().code(),
            absl::StatusCode::kNotFound);
}

std::vector<ShardTask> Tasks(int n) {
  std::vector<CorpusFile> files = {{"f0", 37}, {"f1", 25}};
  auto t = CorpusSharder::MakeShards(files, 62 / n + 1);
  return *t;
}

TEST(ShardLedgerTest, LeaseCompleteIsIdempotentAndStaleLeasesCannotComplete) {
  ShardLedger ledger(Tasks(4));
  absl::Time t0 = absl::FromUnixSeconds(1000);
  auto a = ledger.Acquire("w1", t0, absl::Seconds(10));
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->task.shard_index, 0);
  EXPECT_EQ(a->attempt, 1);
  EXPECT_EQ(ledger.leased(), 1);

  // The lease expires and the shard goes to another worker.
  EXPECT_EQ(ledger.ExpireLeases(t0 + absl::Seconds(10)), 1);
  auto b = ledger.Acquire("w2", t0 + absl::Seconds(11), absl::Seconds(10));
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->task, a->task);
  EXPECT_EQ(b->attempt, 2);
  EXPECT_NE(b->lease_id, a->lease_id);

  // The old holder can neither renew nor complete it.
  auto stale = ledger.Complete(0, a->lease_id);
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(stale.status().message(), HasSubstr("not current"));
  EXPECT_EQ(ledger.Renew(0, a->lease_id, t0, absl::Seconds(1)).code(),
            absl::StatusCode::kFailedPrecondition);

  auto done = ledger.Complete(0, b->lease_id);
  ASSERT_TRUE(done.ok());
  EXPECT_TRUE(*done);
  // Retries and late duplicates are no-ops.
  EXPECT_FALSE(*ledger.Complete(0, b->lease_id));
  EXPECT_FALSE(*ledger.Complete(0, a->lease_id));
  EXPECT_EQ(ledger.done(), 1);
  EXPECT_EQ(ledger.Complete(99, 1).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(ledger.Fail(0, b->lease_id).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(ShardLedgerTest, RenewKeepsALeaseAlive) {
  ShardLedger ledger(Tasks(2));
  absl::Time t0 = absl::FromUnixSeconds(0);
  auto a = ledger.Acquire("w", t0, absl::Seconds(5));
  ASSERT_TRUE(a.has_value());
  ASSERT_TRUE(ledger
                  .Renew(a->task.shard_index, a->lease_id,
                         t0 + absl::Seconds(4), absl::Seconds(5))
                  .ok());
  EXPECT_EQ(ledger.ExpireLeases(t0 + absl::Seconds(6)), 0);
  EXPECT_EQ(ledger.ExpireLeases(t0 + absl::Seconds(9)), 1);
}

// Simulates workers that crash (lease expires), fail (report failure) or
// finish, with the coordinator re-handing out shards, and checks that the
// documents accounted done are exactly the corpus, each once.
TEST(ShardLedgerTest, ReHandingOutAfterFailuresYieldsEachDocumentExactlyOnce) {
  std::vector<CorpusFile> files = {{"f0", 1000}, {"f1", 333}, {"f2", 1}};
  auto tasks = CorpusSharder::MakeShards(files, 17);
  ASSERT_TRUE(tasks.ok());
  ShardLedger ledger(*tasks);
  std::map<std::string, std::vector<int>> counted;  // file -> per-doc count
  for (const auto& f : files) counted[f.path].assign(f.documents, 0);

  uint32_t rng = 42;
  auto roll = [&rng]() {
    rng = rng * 1103515245u + 12345u;
    return (rng >> 16) % 10;
  };
  absl::Time now = absl::FromUnixSeconds(0);
  std::vector<ShardLease> held;
  int steps = 0;
  while (!ledger.AllDone() && steps++ < 100000) {
    now += absl::Seconds(1);
    ledger.ExpireLeases(now);
    if (auto lease = ledger.Acquire("w", now, absl::Seconds(3))) {
      held.push_back(*lease);
    }
    if (held.empty()) continue;
    ShardLease lease = held.front();
    held.erase(held.begin());
    unsigned r = roll();
    if (r < 2) continue;  // worker crashed: the lease will expire
    if (r < 4) {
      ASSERT_TRUE(ledger.Fail(lease.task.shard_index, lease.lease_id).ok() ||
                  ledger.state(lease.task.shard_index) != ShardState::kLeased);
      continue;
    }
    auto done = ledger.Complete(lease.task.shard_index, lease.lease_id);
    if (done.ok() && *done) {
      for (int64_t d = lease.task.first_document; d < lease.task.end_document;
           ++d) {
        ++counted[lease.task.file][d];
      }
    }
    // A duplicate completion report changes nothing.
    auto again = ledger.Complete(lease.task.shard_index, lease.lease_id);
    if (again.ok()) {
      EXPECT_FALSE(*again);
    }
  }
  ASSERT_TRUE(ledger.AllDone());
  EXPECT_EQ(ledger.documents_done(), 1334);
  for (const auto& [file, counts] : counted) {
    for (size_t d = 0; d < counts.size(); ++d) {
      ASSERT_EQ(counts[d], 1) << file << " document " << d;
    }
  }
  EXPECT_FALSE(ledger.Acquire("w", now, absl::Seconds(1)).has_value());
}

TEST(ShardLedgerTest, ConcurrentWorkersCountEachShardOnce) {
  auto tasks = CorpusSharder::MakeShards({{"f", 5000}}, 7);
  ASSERT_TRUE(tasks.ok());
  ShardLedger ledger(*tasks);
  std::atomic<int64_t> documents{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < 4; ++w) {
    workers.emplace_back([&] {
      absl::Time now = absl::FromUnixSeconds(0);
      while (auto lease = ledger.Acquire("w", now, absl::Hours(1))) {
        auto done = ledger.Complete(lease->task.shard_index, lease->lease_id);
        if (done.ok() && *done) documents += lease->task.documents();
      }
    });
  }
  for (auto& t : workers) t.join();
  EXPECT_TRUE(ledger.AllDone());
  EXPECT_EQ(documents.load(), 5000);
}

TEST(ShardLedgerTest, MarkDoneRestoresState) {
  ShardLedger ledger(Tasks(4));
  ASSERT_TRUE(ledger.MarkDone(1).ok());
  ASSERT_TRUE(ledger.MarkDone(1).ok());
  EXPECT_EQ(ledger.done(), 1);
  EXPECT_EQ(ledger.DoneShards(), std::vector<int64_t>{1});
  auto a = ledger.Acquire("w", absl::UnixEpoch(), absl::Seconds(1));
  auto b = ledger.Acquire("w", absl::UnixEpoch(), absl::Seconds(1));
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->task.shard_index, 0);
  EXPECT_EQ(b->task.shard_index, 2);
  EXPECT_EQ(ledger.MarkDone(77).code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace lft
