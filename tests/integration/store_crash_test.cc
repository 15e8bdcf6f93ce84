// kill -9 the store while writers stream batches; after a restart on the
// same directory every durable batch must read back intact (crc32c
// verified by the reader), every batch is either wholly there or wholly
// absent (no partial record or half batch is visible), and the job's
// counters agree with the pairs that are there. Durable means: synced by an
// OK SyncPairs (the default write path, pairs outside the WAL), or merely
// acknowledged with --pairs-wal.
#include <atomic>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "gtest/gtest.h"
#include "latent-store/remote_pair_store.h"
#include "tests/integration/store_process.h"
#include "tests/unit/latent-store/test_util.h"

namespace lft {
namespace {

using testing_util::MakePair;
using testing_util::PairIntact;
using testing_util::StoreProcess;
using testing_util::TempDir;

constexpr uint32_t kHidden = 64;
constexpr uint32_t kTokens = 32;
constexpr uint64_t kPairsPerBatch = 4;
constexpr int kWriters = 3;

RemotePairStoreOptions ClientOptions() {
  RemotePairStoreOptions o;
  o.rpc_timeout = absl::Seconds(10);
  return o;
}

absl::StatusOr<StoreProcess> Start(const std::string& db, bool pairs_wal) {
  std::vector<std::string> args = {"--listen",
                                   "127.0.0.1:0",
                                   "--insecure-loopback",
                                   "--db",
                                   db,
                                   "--metrics-port",
                                   "0"};
  if (pairs_wal) args.push_back("--pairs-wal");
  return StoreProcess::Start(LFT_STORE_BINARY, args, absl::Seconds(20));
}

using BatchIds = std::set<std::pair<uint32_t, uint64_t>>;

// Streams batches from kWriters threads (writer w owns shard w; batch b is
// sequences [b*4, b*4+4)) until the store dies, each writer calling
// SyncPairs after every 5 batches. Returns the acknowledged (shard, batch)
// ids in *acked and those an OK SyncPairs covered in *synced.
// `first_batch` continues numbering across rounds.
void WriteUntilKilled(StoreProcess* store, uint64_t first_batch,
                      int kill_after_acks, BatchIds* acked, BatchIds* synced) {
  auto client =
      RemotePairStore::Connect(store->address(), ClientOptions()).value();
  const std::string session = client->WriteSession().value();
  std::mutex mu;
  std::atomic<int> acks{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      std::vector<std::pair<uint32_t, uint64_t>> unsynced;
      for (uint64_t b = first_batch; b < first_batch + 100000; ++b) {
        std::vector<LatentPairRecord> batch;
        for (uint64_t s = 0; s < kPairsPerBatch; ++s) {
          batch.push_back(MakePair(static_cast<uint32_t>(w),
                                   b * kPairsPerBatch + s, 0, kTokens,
                                   kHidden));
        }
        absl::Status st =
            client->PutPairs("job", batch, absl::Now() + absl::Seconds(10));
        if (!st.ok()) return;  // the store is gone
        unsynced.push_back({static_cast<uint32_t>(w), b});
        {
          std::lock_guard<std::mutex> lock(mu);
          acked->insert({static_cast<uint32_t>(w), b});
          ++acks;
        }
        if (unsynced.size() == 5) {
          if (!client->SyncPairs("job", session).ok()) return;
          std::lock_guard<std::mutex> lock(mu);
          synced->insert(unsynced.begin(), unsynced.end());
          unsynced.clear();
        }
      }
    });
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (acks.load() < kill_after_acks && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  store->Kill(SIGKILL);
  for (auto& t : writers) t.join();
  EXPECT_GE(acks.load(), kill_after_acks) << "writers were too slow";
}

// Two rounds of writing until kill -9, then a restart that checks what is
// there. `pairs_wal`: the store logs pairs in its WAL, so every
// acknowledged batch must survive; otherwise every synced one must.
void KillNineRounds(bool pairs_wal) {
  TempDir dir;
  const std::string db = dir.Sub("db");
  BatchIds acked, synced;
  for (int round = 0; round < 2; ++round) {
    auto store = Start(db, pairs_wal);
    ASSERT_TRUE(store.ok()) << store.status();
    if (round == 0) {
      auto client =
          RemotePairStore::Connect(store->address(), ClientOptions()).value();
      JobConfig c;
      c.hidden = kHidden;
      c.codec = TensorCodec::kBF16;
      ASSERT_TRUE(client->CreateJob("job", c).ok());
    }
    WriteUntilKilled(&*store, round * 100000, 40, &acked, &synced);
  }
  if (!pairs_wal) {
    EXPECT_GE(synced.size(), 10u) << "too few syncs before the kill";
  }

  auto store = Start(db, pairs_wal);
  ASSERT_TRUE(store.ok()) << store.status();
  auto client =
      RemotePairStore::Connect(store->address(), ClientOptions()).value();
  auto reader = client->Scan("job", ScanOptions());
  ASSERT_TRUE(reader.ok());
  std::map<std::pair<uint32_t, uint64_t>, int> pairs_per_batch;
  LatentPairRecord p;
  uint64_t n = 0;
  while (true) {
    auto more = (*reader)->Next(&p);
    ASSERT_TRUE(more.ok()) << more.status();  // DataLoss = partial record
    if (!*more) break;
    ++n;
    ASSERT_TRUE(PairIntact(p)) << "shard " << p.shard << " seq " << p.sequence;
    pairs_per_batch[{p.shard, p.sequence / kPairsPerBatch}]++;
  }
  for (const auto& batch : pairs_wal ? acked : synced) {
    EXPECT_EQ(pairs_per_batch[batch], static_cast<int>(kPairsPerBatch))
        << (pairs_wal ? "acknowledged" : "synced") << " batch lost: shard "
        << batch.first << " batch " << batch.second;
  }
  for (const auto& [batch, count] : pairs_per_batch) {
    EXPECT_EQ(count, static_cast<int>(kPairsPerBatch))
        << "half a batch visible: shard " << batch.first;
  }
  auto stats = client->Stats("job");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->pairs, n) << "counters disagree with the stored pairs";
  EXPECT_GE(n, (pairs_wal ? acked : synced).size() * kPairsPerBatch);
  // A session from before the restart is refused: its unsynced pairs may
  // be gone.
  EXPECT_EQ(client->SyncPairs("job", "0000000000000000").code(),
            absl::StatusCode::kAborted);

  // The restarted store serves metrics.
  ASSERT_NE(store->metrics_port(), 0);
  const std::string metrics =
      testing_util::HttpGet(store->metrics_port(), "/metrics");
  EXPECT_NE(metrics.find("lft_store_read_bytes_total"), std::string::npos);
  EXPECT_NE(metrics.find("lft_store_pending_pairs{job=\"job\"}"),
            std::string::npos)
      << metrics;
  EXPECT_EQ(store->Kill(SIGTERM) & 0x7f, 0);  // clean exit on SIGTERM
}

TEST(StoreCrashTest, SyncedBatchesSurviveKillNine) { KillNineRounds(false); }

TEST(StoreCrashTest, AcknowledgedBatchesSurviveKillNineWithPairsWal) {
  KillNineRounds(true);
}

TEST(StoreCrashTest, CleanShutdownLeavesNoWal) {
  TempDir dir;
  const std::string db = dir.Sub("db");
  {
    auto store = Start(db, false);
    ASSERT_TRUE(store.ok()) << store.status();
    auto client =
        RemotePairStore::Connect(store->address(), ClientOptions()).value();
    JobConfig c;
    c.hidden = kHidden;
    c.codec = TensorCodec::kBF16;
    ASSERT_TRUE(client->CreateJob("job", c).ok());
    std::vector<LatentPairRecord> batch;
    for (uint64_t s = 0; s < 8; ++s) {
      batch.push_back(MakePair(0, s, 0, kTokens, kHidden));
    }
    ASSERT_TRUE(
        client->PutPairs("job", batch, absl::Now() + absl::Seconds(10)).ok());
    EXPECT_EQ(store->Kill(SIGTERM) & 0x7f, 0);
  }
  // Not synced, but a clean stop flushes: the pairs are there, and the WAL
  // holds nothing (RocksDB keeps at most an empty current log).
  uint64_t wal_bytes = 0;
  for (const auto& e : std::filesystem::directory_iterator(db)) {
    if (e.path().extension() == ".log") wal_bytes += e.file_size();
  }
  EXPECT_EQ(wal_bytes, 0u);
  auto store = Start(db, false);
  ASSERT_TRUE(store.ok()) << store.status();
  auto client =
      RemotePairStore::Connect(store->address(), ClientOptions()).value();
  auto stats = client->Stats("job");
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->pairs, 8u);
}

TEST(StoreProcessTest, BadFlagsExitWithAMessage) {
  TempDir dir;
  auto store = StoreProcess::Start(
      LFT_STORE_BINARY, {"--listen", "127.0.0.1:0"}, absl::Seconds(10));
  EXPECT_EQ(store.status().code(), absl::StatusCode::kDeadlineExceeded);
}

}  // namespace
}  // namespace lft
