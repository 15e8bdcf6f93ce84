#include <chrono>
#include <numeric>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "worker/collective/collective.h"

namespace lft {
namespace {

using ::lft::testing::IsOk;
using ::lft::testing::StatusIs;

// Runs `body(rank, collective)` on `world` threads, each a member of one Gloo
// group formed through a rendezvous host, as separate processes would.
template <typename Body>
void RunGroup(int world, Body body,
              std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  auto host = StartGlooRendezvous("127.0.0.1");
  ASSERT_THAT(host, IsOk());
  const std::string id = (*host)->communicator_id();
  std::vector<std::thread> threads;
  std::vector<absl::Status> join_status(world);
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      GlooOptions options;
      options.rank = r;
      options.world_size = world;
      options.communicator_id = id;
      options.timeout = timeout;
      auto collective = CreateGlooCollective(options);
      join_status[r] = collective.status();
      if (collective.ok()) body(r, **collective);
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < world; ++r)
    EXPECT_THAT(join_status[r], IsOk()) << "rank " << r;
}

TEST(GlooCollectiveTest, AllReduceSumsOverThreeRanks) {
  constexpr int kWorld = 3;
  constexpr size_t kCount =
      100003;  // not a multiple of anything Gloo chunks by
  std::vector<std::vector<float>> results(kWorld);
  RunGroup(kWorld, [&](int rank, Collective& c) {
    EXPECT_EQ(c.rank(), rank);
    EXPECT_EQ(c.world_size(), kWorld);
    std::vector<float> data(kCount);
    for (size_t i = 0; i < kCount; ++i)
      data[i] = static_cast<float>(rank * 1000 + i % 97);
    ASSERT_THAT(c.AllReduceSum(data.data(), data.size(), CollectiveDtype::kF32),
                IsOk());
    // A second reduction on the same group reuses the connections.
    std::vector<float> one(1, 1.0f);
    ASSERT_THAT(c.AllReduceSum(one.data(), 1, CollectiveDtype::kF32), IsOk());
    EXPECT_EQ(one[0], kWorld);
    results[rank] = std::move(data);
  });
  for (int r = 0; r < kWorld; ++r) {
    ASSERT_EQ(results[r].size(), kCount);
    for (size_t i = 0; i < kCount; i += 997) {
      EXPECT_EQ(results[r][i],
                static_cast<float>((0 + 1000 + 2000) + 3 * (i % 97)))
          << i;
    }
  }
}

TEST(GlooCollectiveTest, BroadcastCopiesRootBytesAndBarrierPasses) {
  constexpr int kWorld = 2;
  std::vector<std::string> got(kWorld);
  RunGroup(kWorld, [&](int rank, Collective& c) {
    std::string payload =
        rank == 1 ? "weights from rank one" : std::string(21, '?');
    ASSERT_THAT(c.Broadcast(payload.data(), payload.size(), /*root=*/1),
                IsOk());
    ASSERT_THAT(c.Barrier(), IsOk());
    EXPECT_THAT(
        c.Broadcast(payload.data(), payload.size(), 5),
        StatusIs(absl::StatusCode::kInvalidArgument, "root 5 out of range"));
    got[rank] = payload;
  });
  EXPECT_EQ(got[0], "weights from rank one");
  EXPECT_EQ(got[1], "weights from rank one");
}

TEST(GlooCollectiveTest, MissingRankTimesOutInsteadOfHanging) {
  auto host = StartGlooRendezvous("127.0.0.1");
  ASSERT_THAT(host, IsOk());
  GlooOptions options;
  options.rank = 0;
  options.world_size = 2;  // rank 1 never comes
  options.communicator_id = (*host)->communicator_id();
  options.timeout = std::chrono::milliseconds(500);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THAT(CreateGlooCollective(options),
              StatusIs(absl::StatusCode::kDeadlineExceeded, "Timed out"));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

TEST(GlooCollectiveTest, RejectsBadRankAndId) {
  GlooOptions options;
  options.rank = 2;
  options.world_size = 2;
  options.communicator_id = "127.0.0.1:1";
  EXPECT_THAT(CreateGlooCollective(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "rank 2 is not in a group of 2"));
  options.rank = 0;
  options.communicator_id = "no-port";
  EXPECT_THAT(CreateGlooCollective(options),
              StatusIs(absl::StatusCode::kInvalidArgument, "is not host:port"));
}

TEST(GlooCollectiveTest, NcclIsReportedAbsentOnCpuBuilds) {
  if (HaveNccl()) GTEST_SKIP() << "this build has NCCL";
  EXPECT_THAT(NewNcclCommunicatorId(),
              StatusIs(absl::StatusCode::kUnimplemented, "no NCCL"));
}

}  // namespace
}  // namespace lft
