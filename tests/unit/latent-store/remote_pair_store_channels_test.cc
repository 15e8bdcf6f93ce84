// RemotePairStore's data channels: PutPairs and ScanPairs calls go
// round-robin over `data_channels` connections of their own (a server that
// records each call's peer address sees that many client ports), unary
// calls stay on one more, and data_channels 1 puts every call on one.
// And a reader dropped while its streams wait on a server that sends
// nothing returns at once (PairReader::Cancel), alone and in the reader
// chain a trainer uses (PrefetchingPairReader over RetryingPairStore).
#include <chrono>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "absl/time/clock.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "latent-store/prefetching_pair_reader.h"
#include "latent-store/remote_pair_store.h"
#include "latent-store/retrying_pair_store.h"
#include "tests/unit/latent-store/test_util.h"

namespace lft {
namespace {

using testing_util::MakePair;

// Answers PutPairs, ScanPairs and Stats, and records the peer of each.
class PeerRecordingService final : public lft::v1::LatentStoreService::Service {
 public:
  grpc::Status PutPairs(grpc::ServerContext* context,
                        grpc::ServerReader<lft::v1::PutPairsRequest>* reader,
                        lft::v1::PutPairsResponse* response) override {
    Record(&data_peers_, context);
    lft::v1::PutPairsRequest request;
    uint64_t pairs = 0;
    while (reader->Read(&request)) pairs += request.pairs_size();
    response->set_pairs_written(pairs);
    return grpc::Status::OK;
  }
  grpc::Status ScanPairs(
      grpc::ServerContext* context, const lft::v1::ScanPairsRequest*,
      grpc::ServerWriter<lft::v1::ScanPairsResponse>*) override {
    Record(&data_peers_, context);
    return grpc::Status::OK;
  }
  grpc::Status Stats(grpc::ServerContext* context,
                     const lft::v1::StoreStatsRequest*,
                     lft::v1::StoreStatsResponse*) override {
    Record(&unary_peers_, context);
    return grpc::Status::OK;
  }
  std::set<std::string> data_peers() {
    std::lock_guard<std::mutex> lock(mu_);
    return data_peers_;
  }
  std::set<std::string> unary_peers() {
    std::lock_guard<std::mutex> lock(mu_);
    return unary_peers_;
  }

 private:
  void Record(std::set<std::string>* peers, grpc::ServerContext* context) {
    std::lock_guard<std::mutex> lock(mu_);
    peers->insert(context->peer());
  }
  std::mutex mu_;
  std::set<std::string> data_peers_, unary_peers_;
};

class RemotePairStoreChannelsTest : public ::testing::TestWithParam<uint32_t> {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(port_, 0);
  }
  void TearDown() override {
    server_->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::seconds(2));
  }
  PeerRecordingService service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

TEST_P(RemotePairStoreChannelsTest, DataCallsSpreadOverTheirConnections) {
  const uint32_t channels = GetParam();
  RemotePairStoreOptions o;
  o.data_channels = channels;
  o.rpc_timeout = absl::Seconds(20);
  auto remote =
      RemotePairStore::Connect("127.0.0.1:" + std::to_string(port_), o);
  ASSERT_TRUE(remote.ok()) << remote.status();
  std::vector<LatentPairRecord> batch = {MakePair(0, 0, 0, 4, 8)};
  for (uint32_t i = 0; i < 2 * channels; ++i) {
    ASSERT_TRUE(
        (*remote)->PutPairs("j", batch, absl::Now() + absl::Seconds(20)).ok());
  }
  auto reader = (*remote)->Scan("j", ScanOptions());
  ASSERT_TRUE(reader.ok()) << reader.status();
  LatentPairRecord p;
  auto more = (*reader)->Next(&p);
  ASSERT_TRUE(more.ok()) << more.status();
  EXPECT_FALSE(*more);
  ASSERT_TRUE((*remote)->Stats("j").ok());
  ASSERT_TRUE((*remote)->Stats("j").ok());
  const std::set<std::string> data = service_.data_peers();
  const std::set<std::string> unary = service_.unary_peers();
  EXPECT_EQ(data.size(), channels);
  EXPECT_EQ(unary.size(), 1u);
  for (const std::string& peer : unary) EXPECT_EQ(data.count(peer), 0u);
}

INSTANTIATE_TEST_SUITE_P(Channels, RemotePairStoreChannelsTest,
                         ::testing::Values(1u, 3u));

// ScanPairs that sends nothing until the client cancels (at most 20 s).
class SilentScanService final : public lft::v1::LatentStoreService::Service {
 public:
  grpc::Status ScanPairs(
      grpc::ServerContext* context, const lft::v1::ScanPairsRequest*,
      grpc::ServerWriter<lft::v1::ScanPairsResponse>*) override {
    const auto give_up =
        std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!context->IsCancelled() &&
           std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return grpc::Status::OK;
  }
};

TEST(RemotePairReaderCancelTest, DroppedReaderDoesNotWaitForASilentServer) {
  SilentScanService service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(port, 0);
  RemotePairStoreOptions o;
  o.rpc_timeout = absl::Seconds(20);
  auto remote =
      RemotePairStore::Connect("127.0.0.1:" + std::to_string(port), o);
  ASSERT_TRUE(remote.ok()) << remote.status();
  RetryingPairStore retrying(remote->get(), StoreRetryOptions());
  for (bool trainer_chain : {false, true}) {
    std::unique_ptr<PairReader> reader;
    if (trainer_chain) {
      auto r = retrying.Scan("j", ScanOptions());
      ASSERT_TRUE(r.ok()) << r.status();
      reader = std::make_unique<PrefetchingPairReader>(*std::move(r), 8);
    } else {
      auto r = (*remote)->Scan("j", ScanOptions());
      ASSERT_TRUE(r.ok()) << r.status();
      reader = *std::move(r);
    }
    // Let every stream's read-ahead thread block in its Read.
    absl::SleepFor(absl::Milliseconds(300));
    const absl::Time start = absl::Now();
    reader.reset();
    EXPECT_LT(absl::Now() - start, absl::Seconds(5))
        << (trainer_chain ? "trainer's chain" : "RemotePairStore's reader");
  }
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
}

}  // namespace
}  // namespace lft
