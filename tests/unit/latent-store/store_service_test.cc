// The gRPC service and RemotePairStore against an in-process server on
// 127.0.0.1:0: the same behaviour as the library, errors mapped to the
// matching gRPC codes, and bad input answered without a crash.
#include "latent-store/store_service.h"

#include "common/rpc/grpc_status.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "latent-store/remote_pair_store.h"
#include "tests/unit/latent-store/test_util.h"

namespace lft {
namespace {

using testing_util::MakePair;
using testing_util::PairIntact;
using testing_util::StatusIs;
using testing_util::TempDir;

constexpr uint64_t kMaxMessage = 1 << 20;

class StoreServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    LatentStoreOptions o;
    o.sync = false;
    o.checkpoint_chunk_bytes = 64 << 10;
    auto s = LatentStore::Open(dir_.Sub("db"), o);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
    StoreServiceOptions so;
    so.max_message_bytes = kMaxMessage;
    service_ = std::make_unique<StoreService>(store_.get(), so);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port_);
    builder.SetMaxReceiveMessageSize(kMaxMessage);
    builder.SetMaxSendMessageSize(kMaxMessage);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(port_, 0);
    RemotePairStoreOptions ro;
    ro.max_message_bytes = kMaxMessage;
    ro.rpc_timeout = absl::Seconds(20);
    ro.checkpoint_chunk_bytes = 100 << 10;
    remote_ = RemotePairStore::Connect("127.0.0.1:" + std::to_string(port_), ro)
                  .value();
  }
  void TearDown() override {
    remote_.reset();
    server_->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::seconds(2));
  }

  TempDir dir_;
  std::unique_ptr<LatentStore> store_;
  std::unique_ptr<StoreService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::unique_ptr<RemotePairStore> remote_;
};

TEST_F(StoreServiceTest, PutAndScanOverGrpc) {
  JobConfig c;
  c.hidden = 256;
  c.codec = TensorCodec::kBF16;
  ASSERT_TRUE(remote_->CreateJob("job", c).ok());
  // 40 pairs of 128 KiB: several request and response messages of <= 1 MiB.
  std::vector<LatentPairRecord> batch;
  for (uint64_t s = 0; s < 40; ++s)
    batch.push_back(MakePair(0, s, 0, 128, 256));
  absl::Status put =
      remote_->PutPairs("job", batch, absl::Now() + absl::Seconds(20));
  ASSERT_TRUE(put.ok()) << put;
  auto stats = remote_->Stats("job");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->pairs, 40u);
  EXPECT_EQ(stats->tokens, 40u * 128);
  for (uint32_t r = 0; r < 3; ++r) {
    ScanOptions o;
    o.partition = r;
    o.partitions = 3;
    o.shuffle = true;
    o.seed = 5;
    o.block_pairs = 4;
    auto local = store_->Scan("job", o);
    auto over_grpc = remote_->Scan("job", o);
    ASSERT_TRUE(local.ok() && over_grpc.ok());
    LatentPairRecord a, b;
    while (true) {
      auto ma = (*local)->Next(&a);
      auto mb = (*over_grpc)->Next(&b);
      ASSERT_TRUE(ma.ok() && mb.ok()) << mb.status();
      ASSERT_EQ(*ma, *mb);
      if (!*ma) break;
      EXPECT_EQ(a.sequence, b.sequence);
      EXPECT_TRUE(PairIntact(b));
    }
  }
  ASSERT_TRUE(remote_->AckConsumed("job", 10).ok());
  EXPECT_EQ(remote_->Stats("job")->pending, 30u);
}

TEST_F(StoreServiceTest, ReaderDroppedMidScanLeavesTheServerServing) {
  JobConfig c;
  c.hidden = 256;
  ASSERT_TRUE(remote_->CreateJob("job", c).ok());
  std::vector<LatentPairRecord> batch;
  for (uint64_t s = 0; s < 30; ++s)
    batch.push_back(MakePair(0, s, 0, 128, 256));
  ASSERT_TRUE(
      remote_->PutPairs("job", batch, absl::Now() + absl::Seconds(20)).ok());
  for (int i = 0; i < 3; ++i) {
    auto reader = remote_->Scan("job", ScanOptions());
    ASSERT_TRUE(reader.ok());
    LatentPairRecord p;
    ASSERT_TRUE(*(*reader)->Next(&p));
  }  // each reader cancels its stream here
  auto stats = remote_->Stats("job");
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->pairs, 30u);
}

TEST_F(StoreServiceTest, ErrorsKeepTheirCodeAndMessage) {
  EXPECT_THAT(remote_->Stats("nojob"), StatusIs(absl::StatusCode::kNotFound,
                                                "'nojob' is not registered"));
  EXPECT_THAT(remote_->PutPairs("nojob", {MakePair(0, 0, 0, 2, 8)},
                                absl::Now() + absl::Seconds(5)),
              StatusIs(absl::StatusCode::kNotFound, "call CreateJob first"));
  JobConfig c;
  c.hidden = 8;
  ASSERT_TRUE(remote_->CreateJob("job", c).ok());
  EXPECT_THAT(remote_->PutPairs("job", {MakePair(0, 0, 0, 2, 16)},
                                absl::Now() + absl::Seconds(5)),
              StatusIs(absl::StatusCode::kInvalidArgument, "hidden is 16"));
  // A scan error arrives on the first Next().
  auto reader = remote_->Scan("nojob", ScanOptions());
  ASSERT_TRUE(reader.ok());
  LatentPairRecord p;
  EXPECT_THAT((*reader)->Next(&p),
              StatusIs(absl::StatusCode::kNotFound, "ScanPairs"));
  // A pair over the message size is refused on the client.
  EXPECT_THAT(
      remote_->PutPairs("job", {MakePair(0, 0, 0, 65536, 8)},
                        absl::Now() + absl::Seconds(5)),
      StatusIs(absl::StatusCode::kInvalidArgument, "split the sequence"));
  // Back-pressure over gRPC ends in DEADLINE_EXCEEDED, nothing dropped.
  c.max_pending_pairs = 1;
  ASSERT_TRUE(remote_->CreateJob("job", c).ok());
  ASSERT_TRUE(remote_
                  ->PutPairs("job", {MakePair(0, 0, 0, 2, 8)},
                             absl::Now() + absl::Seconds(5))
                  .ok());
  EXPECT_EQ(remote_
                ->PutPairs("job", {MakePair(0, 1, 0, 2, 8)},
                           absl::Now() + absl::Milliseconds(300))
                .code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(remote_->Stats("job")->pairs, 1u);
}

TEST_F(StoreServiceTest, RawStubBadInputNeverCrashesTheServer) {
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(port_),
                                     grpc::InsecureChannelCredentials());
  auto stub = lft::v1::LatentStoreService::NewStub(channel);
  JobConfig c;
  c.hidden = 8;
  ASSERT_TRUE(store_->CreateJob("job", c).ok());
  {  // Oversized message: RESOURCE_EXHAUSTED from gRPC itself.
    grpc::ClientContext ctx;
    lft::v1::PutPairsResponse resp;
    auto w = stub->PutPairs(&ctx, &resp);
    lft::v1::PutPairsRequest req;
    req.set_job_id("job");
    req.add_pairs()->set_x0(std::string(kMaxMessage + 10, 'x'));
    w->Write(req);
    w->WritesDone();
    EXPECT_EQ(w->Finish().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  }
  {  // Unspecified dtype, missing job id.
    grpc::ClientContext ctx;
    lft::v1::PutPairsResponse resp;
    auto w = stub->PutPairs(&ctx, &resp);
    lft::v1::PutPairsRequest req;
    req.set_job_id("job");
    req.add_pairs()->set_tokens(1);
    w->Write(req);
    w->WritesDone();
    grpc::Status s = w->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(s.error_message().find("pair 0: dtype 0"), std::string::npos)
        << s.error_message();
  }
  {
    grpc::ClientContext ctx;
    lft::v1::PutPairsResponse resp;
    auto w = stub->PutPairs(&ctx, &resp);
    lft::v1::PutPairsRequest req;
    w->Write(req);
    w->WritesDone();
    grpc::Status s = w->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(s.error_message().find("must set job_id"), std::string::npos);
  }
  {
    grpc::ClientContext ctx;
    lft::v1::ScanPairsRequest req;
    req.set_job_id("job");
    req.set_decode_to(lft::v1::TENSOR_DTYPE_F32);
    auto r = stub->ScanPairs(&ctx, req);
    lft::v1::ScanPairsResponse resp;
    while (r->Read(&resp)) {
    }
    EXPECT_EQ(r->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  {  // partitions 0 was read as 1 although Scan says "need partitions >= 1".
    grpc::ClientContext ctx;
    lft::v1::ScanPairsRequest req;
    req.set_job_id("job");
    auto r = stub->ScanPairs(&ctx, req);
    lft::v1::ScanPairsResponse resp;
    while (r->Read(&resp)) {
    }
    grpc::Status s = r->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(s.error_message().find("need partitions >= 1"), std::string::npos)
        << s.error_message();
  }
  // Still serving.
  EXPECT_TRUE(remote_->Stats("job").ok());
  // DeletePairs over gRPC keeps the job.
  EXPECT_TRUE(remote_->DeletePairs("job").ok());
  EXPECT_EQ(remote_->Stats("job")->pairs, 0u);
}

TEST_F(StoreServiceTest, CheckpointsOverGrpc) {
  JobConfig c;
  c.hidden = 8;
  ASSERT_TRUE(remote_->CreateJob("job", c).ok());
  std::string blob(300 << 10, '\0');
  for (size_t i = 0; i < blob.size(); ++i) blob[i] = static_cast<char>(i * 13);
  auto info = remote_->PutCheckpoint("job", "step-1", blob, "");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->bytes, blob.size());
  EXPECT_EQ(*remote_->GetCheckpoint("job", "step-1"), blob);
  EXPECT_THAT(remote_->PutCheckpoint("job", "bad", blob, std::string(64, 'a')),
              StatusIs(absl::StatusCode::kDataLoss, "not published"));
  ASSERT_TRUE(remote_->PutCheckpoint("job", "step-2", "x", "").ok());
  EXPECT_EQ(remote_->ListCheckpoints("job")->size(), 2u);
  EXPECT_EQ(*remote_->KeepLastCheckpoints("job", 1), 1u);
  EXPECT_THAT(remote_->GetCheckpoint("job", "step-1"),
              StatusIs(absl::StatusCode::kNotFound, "step-1"));
  ASSERT_TRUE(remote_->DeleteCheckpoint("job", "step-2").ok());
  ASSERT_TRUE(remote_->DeleteJob("job").ok());
  EXPECT_THAT(remote_->Stats("job"),
              StatusIs(absl::StatusCode::kNotFound, "job"));
}

TEST_F(StoreServiceTest, ReadCheckpointStreamsChunksAndStopsOnSinkError) {
  JobConfig c;
  c.hidden = 8;
  ASSERT_TRUE(remote_->CreateJob("job", c).ok());
  std::string blob(300 << 10, '\0');
  for (size_t i = 0; i < blob.size(); ++i) blob[i] = static_cast<char>(i * 7);
  ASSERT_TRUE(remote_->PutCheckpoint("job", "step-1", blob, "").ok());
  // The store reads in 64 KiB chunks: the sink sees them one by one, each
  // with the store's name, size and digest.
  std::string got;
  int calls = 0;
  auto info = remote_->ReadCheckpoint(
      "job", "step-1", [&](const CheckpointInfo& i, absl::string_view data) {
        EXPECT_EQ(i.bytes, blob.size());
        EXPECT_EQ(i.sha256.size(), 64u);
        got.append(data.data(), data.size());
        ++calls;
        return absl::OkStatus();
      });
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->name, "step-1");
  EXPECT_TRUE(got == blob);
  EXPECT_GE(calls, 4);
  // A sink error ends the transfer and comes back as is.
  calls = 0;
  EXPECT_THAT(
      remote_
          ->ReadCheckpoint("job", "step-1",
                           [&](const CheckpointInfo&, absl::string_view) {
                             ++calls;
                             return absl::ResourceExhaustedError("disk full");
                           })
          .status(),
      StatusIs(absl::StatusCode::kResourceExhausted, "disk full"));
  EXPECT_EQ(calls, 1);
  EXPECT_THAT(
      remote_
          ->ReadCheckpoint("job", "nope",
                           [](const CheckpointInfo&, absl::string_view) {
                             return absl::OkStatus();
                           })
          .status(),
      StatusIs(absl::StatusCode::kNotFound, "nope"));
}

TEST(GrpcStatusTest, RoundTripsEveryCode) {
  for (int code = 0; code <= 16; ++code) {
    absl::Status s(static_cast<absl::StatusCode>(code), code ? "msg" : "");
    absl::Status back = FromGrpcStatus(ToGrpcStatus(s));
    EXPECT_EQ(back.code(), s.code());
    if (code) {
      EXPECT_EQ(back.message(), "msg");
    }
    EXPECT_EQ(static_cast<int>(ToGrpcStatus(s).error_code()), code);
  }
  EXPECT_EQ(ToGrpcStatus(absl::Status(static_cast<absl::StatusCode>(99), "x"))
                .error_code(),
            grpc::StatusCode::UNKNOWN);
}

}  // namespace
}  // namespace lft
