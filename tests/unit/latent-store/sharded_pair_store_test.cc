// ShardedPairStore over two embedded LatentStores: pairs split between the
// stores and read back complete and disjoint for any number of partitions,
// stats summed, sessions joined (a restarted store is noticed), checkpoints
// on store 0, block offsets refused.
#include "latent-store/sharded_pair_store.h"

#include <set>
#include <string>
#include <utility>

#include "gtest/gtest.h"
#include "latent-store/latent_store.h"
#include "tests/testing/status_matchers.h"
#include "tests/unit/latent-store/test_util.h"

namespace lft {
namespace {

using ::lft::testing::StatusIs;
using testing_util::MakePair;
using testing_util::PairIntact;
using testing_util::TempDir;

constexpr uint32_t kHidden = 16;
constexpr uint32_t kTokens = 8;

class ShardedPairStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }

  void Open() {
    std::vector<std::unique_ptr<PairStore>> parts;
    for (int i = 0; i < 2; ++i) {
      auto s = LatentStore::Open(dir_.Sub("s" + std::to_string(i)), {});
      ASSERT_TRUE(s.ok()) << s.status();
      raw_[i] = s->get();
      parts.push_back(std::move(*s));
    }
    store_ = std::make_unique<ShardedPairStore>(std::move(parts));
  }

  void Write(uint32_t shards, uint64_t per_shard) {
    JobConfig c;
    c.hidden = kHidden;
    ASSERT_TRUE(store_->CreateJob("job", c).ok());
    for (uint32_t sh = 0; sh < shards; ++sh) {
      std::vector<LatentPairRecord> batch;
      for (uint64_t q = 0; q < per_shard; ++q) {
        batch.push_back(MakePair(sh, q, 0, kTokens, kHidden));
      }
      ASSERT_TRUE(store_->PutPairs("job", batch, absl::InfiniteFuture()).ok());
    }
  }

  TempDir dir_;
  LatentStore* raw_[2] = {nullptr, nullptr};
  std::unique_ptr<ShardedPairStore> store_;
};

TEST_F(ShardedPairStoreTest, SplitsPairsAndReadsThemBackCompleteForAnyW) {
  Write(4, 50);
  auto a = raw_[0]->Stats("job"), b = raw_[1]->Stats("job");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->pairs + b->pairs, 200u);
  // About half each (the hash split of 200 keys, not a coin's worst case).
  EXPECT_GT(a->pairs, 70u);
  EXPECT_GT(b->pairs, 70u);
  auto total = store_->Stats("job");
  ASSERT_TRUE(total.ok());
  EXPECT_EQ(total->pairs, 200u);
  for (uint32_t w : {1u, 2u, 3u}) {
    std::set<std::pair<uint32_t, uint64_t>> seen;
    for (uint32_t p = 0; p < w; ++p) {
      ScanOptions o;
      o.partition = p;
      o.partitions = w;
      o.shuffle = true;
      o.seed = 9;
      o.block_pairs = 8;
      auto r = store_->Scan("job", o);
      ASSERT_TRUE(r.ok()) << r.status();
      LatentPairRecord pair;
      while (true) {
        auto more = (*r)->Next(&pair);
        ASSERT_TRUE(more.ok()) << more.status();
        if (!*more) break;
        EXPECT_TRUE(PairIntact(pair));
        EXPECT_TRUE(seen.insert({pair.shard, pair.sequence}).second)
            << "pair read twice with W = " << w;
      }
    }
    EXPECT_EQ(seen.size(), 200u) << "W = " << w;
  }
}

TEST_F(ShardedPairStoreTest, SkipPairsSkipsTheInterleavedOrder) {
  Write(2, 20);
  std::vector<std::pair<uint32_t, uint64_t>> order;
  auto r = store_->Scan("job", ScanOptions());
  ASSERT_TRUE(r.ok());
  LatentPairRecord pair;
  while (*(*r)->Next(&pair)) order.push_back({pair.shard, pair.sequence});
  ASSERT_EQ(order.size(), 40u);
  ScanOptions o;
  o.skip_pairs = 15;
  auto rest = store_->Scan("job", o);
  ASSERT_TRUE(rest.ok());
  size_t i = 15;
  while (*(*rest)->Next(&pair)) {
    ASSERT_LT(i, order.size());
    EXPECT_EQ(std::make_pair(pair.shard, pair.sequence), order[i++]);
  }
  EXPECT_EQ(i, order.size());
  o = ScanOptions();
  o.start_block = 1;
  EXPECT_THAT(store_->Scan("job", o).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "start_block"));
  o = ScanOptions();
  o.interleave_count = 2;
  EXPECT_THAT(store_->Scan("job", o).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "interleave_count"));
}

TEST_F(ShardedPairStoreTest, SessionsJoinAndARestartIsNoticed) {
  Write(1, 10);
  auto session = store_->WriteSession();
  ASSERT_TRUE(session.ok());
  EXPECT_NE(session->find(','), std::string::npos);
  EXPECT_TRUE(store_->SyncPairs("job", *session).ok());
  EXPECT_THAT(store_->SyncPairs("job", "x"),
              StatusIs(absl::StatusCode::kInvalidArgument, "names 1 stores"));
  // Reopen both stores: the synced pairs are there, the old session is not.
  store_.reset();
  Open();
  auto stats = store_->Stats("job");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->pairs, 10u);
  EXPECT_THAT(store_->SyncPairs("job", *session),
              StatusIs(absl::StatusCode::kAborted, "restarted"));
}

TEST_F(ShardedPairStoreTest, CheckpointsLiveOnTheFirstStore) {
  Write(1, 1);
  ASSERT_TRUE(store_->PutCheckpoint("job", "step-1", "weights", "").ok());
  auto got = store_->GetCheckpoint("job", "step-1");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, "weights");
  EXPECT_TRUE(raw_[0]->GetCheckpoint("job", "step-1").ok());
  EXPECT_FALSE(raw_[1]->GetCheckpoint("job", "step-1").ok());
  ASSERT_TRUE(store_->DeleteJob("job").ok());
  EXPECT_FALSE(raw_[0]->Stats("job").ok());
  EXPECT_FALSE(raw_[1]->Stats("job").ok());
}

}  // namespace
}  // namespace lft
