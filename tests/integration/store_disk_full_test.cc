// A full disk under a real lft-store (its --db on a small tmpfs): writes get
// RESOURCE_EXHAUSTED naming the directory, the process stays up and serves
// reads, and writes resume by themselves once space returns (RocksDB's
// DB::Resume()), with every acknowledged pair intact. Needs mount(2)
// (root); skipped with the reason otherwise.
#include <sys/mount.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"
#include "latent-store/remote_pair_store.h"
#include "tests/integration/store_process.h"
#include "tests/unit/latent-store/test_util.h"

namespace lft {
namespace {

using testing_util::MakePair;
using testing_util::StatusIs;
using testing_util::StoreProcess;
using testing_util::TempDir;

constexpr uint32_t kHidden = 256;
constexpr uint32_t kTokens = 64;  // x0 and x1: 64 KiB of f32 each

class StoreDiskFullTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mount_ = dir_.Sub("tmpfs");
    std::filesystem::create_directories(mount_);
    if (mount("tmpfs", mount_.c_str(), "tmpfs", 0, "size=24m") != 0) {
      GTEST_SKIP() << "cannot mount a tmpfs here (" << std::strerror(errno)
                   << "); the disk-full test needs root";
    }
    mounted_ = true;
  }
  void TearDown() override {
    store_.reset();
    if (mounted_) umount2(mount_.c_str(), MNT_DETACH);
  }

  TempDir dir_;
  std::string mount_;
  bool mounted_ = false;
  std::unique_ptr<StoreProcess> store_;
};

TEST_F(StoreDiskFullTest, FullDiskIsResourceExhaustedReadsGoOnWritesResume) {
  // Ballast that is deleted later to give the space back.
  const std::string ballast = mount_ + "/ballast";
  {
    std::ofstream f(ballast, std::ios::binary);
    std::string mb(1 << 20, 'x');
    for (int i = 0; i < 12; ++i) f << mb;
  }
  const std::string db = mount_ + "/db";
  auto started =
      StoreProcess::Start(LFT_STORE_BINARY,
                          {"--listen", "127.0.0.1:0", "--insecure-loopback",
                           "--db", db, "--min-free-disk-mib", "1"},
                          absl::Seconds(20));
  ASSERT_TRUE(started.ok()) << started.status();
  store_ = std::make_unique<StoreProcess>(std::move(*started));
  auto client = RemotePairStore::Connect(store_->address(), {});
  ASSERT_TRUE(client.ok()) << client.status();
  PairStore* store = client->get();
  JobConfig config;
  config.hidden = kHidden;
  config.codec = TensorCodec::kF32;
  ASSERT_TRUE(store->CreateJob("job", config).ok());
  auto session = store->WriteSession();
  ASSERT_TRUE(session.ok());

  // Batches of 8 pairs (1 MiB), each made durable, until the disk is full.
  uint64_t durable = 0;
  absl::Status full;
  for (uint64_t batch = 0; batch < 64 && full.ok(); ++batch) {
    std::vector<LatentPairRecord> pairs;
    for (uint64_t i = 0; i < 8; ++i)
      pairs.push_back(
          MakePair(0, batch * 8 + i, 0, kTokens, kHidden, TensorCodec::kF32));
    full = store->PutPairs("job", pairs, absl::InfiniteFuture());
    if (full.ok()) full = store->SyncPairs("job", *session);
    if (full.ok()) durable = batch * 8 + 8;
  }
  ASSERT_THAT(full, StatusIs(absl::StatusCode::kResourceExhausted, db));
  EXPECT_THAT(full, StatusIs(absl::StatusCode::kResourceExhausted, "is full"));
  ASSERT_GT(durable, 0u);

  // Up, and reads are served: every durable pair is there and intact.
  auto stats = store->Stats("job");
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_GE(stats->pairs, durable);
  uint64_t intact = 0;
  for (const LatentPairRecord& p : testing_util::ScanAll(store, "job")) {
    EXPECT_TRUE(testing_util::PairIntact(p)) << p.sequence;
    if (p.sequence < durable) ++intact;
  }
  EXPECT_EQ(intact, durable);
  // Still full: writes fail again with the same clear error. Recovering
  // from the failed flush may first hand back a little space (the partial
  // files it removes), so a batch or two may still fit before that.
  absl::Status again;
  for (uint64_t batch = 0; batch < 16 && again.ok(); ++batch) {
    std::vector<LatentPairRecord> pairs;
    for (uint64_t i = 0; i < 8; ++i)
      pairs.push_back(
          MakePair(2, batch * 8 + i, 0, kTokens, kHidden, TensorCodec::kF32));
    again = store->PutPairs("job", pairs, absl::InfiniteFuture());
    if (again.ok()) again = store->SyncPairs("job", *session);
  }
  EXPECT_THAT(again, StatusIs(absl::StatusCode::kResourceExhausted, db));
  std::vector<LatentPairRecord> more = {
      MakePair(1, 0, 0, kTokens, kHidden, TensorCodec::kF32)};

  // Space returns: the next writes succeed without a restart.
  ASSERT_TRUE(std::filesystem::remove(ballast));
  absl::Status resumed;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  do {
    resumed = store->PutPairs("job", more, absl::InfiniteFuture());
    if (resumed.ok()) resumed = store->SyncPairs("job", *session);
    if (!resumed.ok()) absl::SleepFor(absl::Milliseconds(100));
  } while (!resumed.ok() && absl::Now() < deadline);
  EXPECT_TRUE(resumed.ok()) << resumed;
  auto after = store->Stats("job");
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_GT(after->pairs, durable);
}

}  // namespace
}  // namespace lft
