// The gRPC service and RemotePairStore against an in-process server on
// 127.0.0.1:0: the same behaviour as the library, errors mapped to the
// matching gRPC codes, and bad input answered without a crash.
#include "latent-store/store_service.h"

#include <limits>
#include <set>

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
using testing_util::ScanAll;
using testing_util::StatusIs;
using testing_util::TempDir;

constexpr uint64_t kMaxMessage = 1 << 20;

// The status a full scan ends with (OK when it reads to the end).
absl::Status ScanAllStatus(PairStore* store, const std::string& job) {
  auto reader = store->Scan(job, ScanOptions());
  if (!reader.ok()) return reader.status();
  LatentPairRecord p;
  while (true) {
    auto more = (*reader)->Next(&p);
    if (!more.ok()) return more.status();
    if (!*more) return absl::OkStatus();
  }
}

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

  // Streaming's calls: a seal (its errors keep code and message), the
  // final prefix in Stats, and a range scan, as in process.
  EXPECT_THAT(remote_->SealShard("job", 0, 41),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "sealing with 41 pairs but the store holds 40"));
  ASSERT_TRUE(remote_->SealShard("job", 0, 40).ok());
  stats = remote_->Stats("job");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->sealed_shards, 1u);
  EXPECT_EQ(stats->stream_prefix_pairs, 40u);
  ScanOptions range;
  range.range_begin = 30;
  range.range_pairs = 5;
  range.shuffle = true;
  range.block_pairs = 1;
  std::set<uint64_t> got;
  for (const LatentPairRecord& p : ScanAll(remote_.get(), "job", range))
    got.insert(p.sequence);
  EXPECT_EQ(got, (std::set<uint64_t>{30, 31, 32, 33, 34}));
}

// PutPairs cuts its stream into messages of put_message_bytes: one pair per
// message, a few, or as many as fit under the limit, the store ends with the
// same pairs, intact, and the stream's acknowledgement counts them all.
TEST_F(StoreServiceTest, PutMessagesOfAnySizeStoreTheSamePairs) {
  JobConfig c;
  c.hidden = 64;
  c.codec = TensorCodec::kBF16;
  std::vector<LatentPairRecord> batch;
  for (uint64_t s = 0; s < 24; ++s) {
    batch.push_back(
        MakePair(1, s, 0, 1 + static_cast<uint32_t>(s % 5) * 300, 64));
  }
  for (uint64_t message_bytes : {uint64_t{1}, uint64_t{200} << 10,
                                 std::numeric_limits<uint64_t>::max()}) {
    const std::string job = absl::StrCat("job-", message_bytes % 1000);
    RemotePairStoreOptions ro;
    ro.max_message_bytes = kMaxMessage;
    ro.put_message_bytes = message_bytes;
    auto remote =
        RemotePairStore::Connect("127.0.0.1:" + std::to_string(port_), ro);
    ASSERT_TRUE(remote.ok());
    ASSERT_TRUE((*remote)->CreateJob(job, c).ok());
    absl::Status put =
        (*remote)->PutPairs(job, batch, absl::Now() + absl::Seconds(20));
    ASSERT_TRUE(put.ok()) << message_bytes << ": " << put;
    std::vector<LatentPairRecord> back = ScanAll(store_.get(), job);
    ASSERT_EQ(back.size(), batch.size()) << message_bytes;
    for (size_t i = 0; i < back.size(); ++i) {
      EXPECT_EQ(back[i].sequence, i);
      EXPECT_EQ(back[i].tokens, batch[i].tokens);
      EXPECT_TRUE(PairIntact(back[i])) << message_bytes << " pair " << i;
    }
  }
}

// RemotePairStore reads a partition over scan_streams streams and merges
// them: for every stream count, the same pairs in the same order as the
// library's scan, resumes (skip_pairs) and ranges included, and pairs
// larger than a message (sent in parts) on every stream.
TEST_F(StoreServiceTest, ParallelScanStreamsKeepThePartitionsOrder) {
  JobConfig c;
  c.hidden = 256;
  ASSERT_TRUE(remote_->CreateJob("job", c).ok());
  std::vector<LatentPairRecord> batch;
  for (uint64_t s = 0; s < 37; ++s)
    batch.push_back(MakePair(0, s, 0, s % 5 == 0 ? 1200 : 100, 256));
  ASSERT_TRUE(
      remote_->PutPairs("job", batch, absl::Now() + absl::Seconds(20)).ok());
  for (uint32_t streams : {1u, 2u, 3u, 8u}) {
    RemotePairStoreOptions ro;
    ro.max_message_bytes = kMaxMessage;
    ro.rpc_timeout = absl::Seconds(20);
    ro.scan_streams = streams;
    auto remote =
        RemotePairStore::Connect("127.0.0.1:" + std::to_string(port_), ro);
    ASSERT_TRUE(remote.ok()) << remote.status();
    for (uint64_t skip : {0u, 5u}) {
      for (uint64_t range : {0u, 11u}) {
        ScanOptions o;
        o.partition = 0;
        o.partitions = 2;
        o.shuffle = true;
        o.seed = 3;
        o.block_pairs = 2;
        o.skip_pairs = skip;
        o.range_begin = range;
        o.readahead_pairs = 4;
        const std::vector<LatentPairRecord> want =
            ScanAll(store_.get(), "job", o);
        const std::vector<LatentPairRecord> got =
            ScanAll(remote->get(), "job", o);
        ASSERT_EQ(got.size(), want.size()) << streams << " streams";
        ASSERT_FALSE(got.empty());
        for (size_t i = 0; i < got.size(); ++i) {
          EXPECT_EQ(got[i].sequence, want[i].sequence) << streams << " " << i;
          EXPECT_TRUE(PairIntact(got[i]));
        }
      }
    }
    // Errors come back through every stream count.
    EXPECT_THAT(ScanAllStatus(remote->get(), "missing"),
                StatusIs(absl::StatusCode::kNotFound, "missing"));
  }
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
  // A pair over the message size is no longer refused: it goes in parts
  // (PairLargerThanAMessageTravelsInParts).
  ASSERT_TRUE(remote_->CreateJob("big", c).ok());
  EXPECT_TRUE(remote_
                  ->PutPairs("big", {MakePair(0, 0, 0, 65536, 8)},
                             absl::Now() + absl::Seconds(5))
                  .ok());
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

TEST_F(StoreServiceTest, PairLargerThanAMessageTravelsInParts) {
  JobConfig c;
  c.hidden = 1024;
  ASSERT_TRUE(remote_->CreateJob("job", c).ok());
  // 768 x 1024 bf16: 1.5 MiB per tensor, over the 1 MiB message limit both
  // ways; between two small pairs.
  std::vector<LatentPairRecord> batch = {MakePair(0, 0, 0, 4, 1024),
                                         MakePair(0, 1, 0, 768, 1024),
                                         MakePair(0, 2, 0, 4, 1024)};
  absl::Status put =
      remote_->PutPairs("job", batch, absl::Now() + absl::Seconds(20));
  ASSERT_TRUE(put.ok()) << put;
  EXPECT_EQ(remote_->Stats("job")->pairs, 3u);
  auto reader = remote_->Scan("job", ScanOptions());
  ASSERT_TRUE(reader.ok());
  LatentPairRecord p;
  std::vector<uint64_t> sequences;
  while (true) {
    auto more = (*reader)->Next(&p);
    ASSERT_TRUE(more.ok()) << more.status();
    if (!*more) break;
    EXPECT_TRUE(PairIntact(p)) << p.sequence;
    sequences.push_back(p.sequence);
  }
  EXPECT_EQ(sequences, (std::vector<uint64_t>{0, 1, 2}));
}

TEST_F(StoreServiceTest, PartsThatDoNotAddUpAreRefused) {
  JobConfig c;
  c.hidden = 1024;
  ASSERT_TRUE(remote_->CreateJob("job", c).ok());
  auto stub = lft::v1::LatentStoreService::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port_),
                          grpc::InsecureChannelCredentials()));
  auto put = [&](std::vector<lft::v1::PutPairsRequest> messages) {
    grpc::ClientContext ctx;
    lft::v1::PutPairsResponse response;
    auto stream = stub->PutPairs(&ctx, &response);
    for (const auto& m : messages) {
      if (!stream->Write(m)) break;
    }
    stream->WritesDone();
    return FromGrpcStatus(stream->Finish());
  };
  lft::v1::PutPairsRequest first;
  first.set_job_id("job");
  PairToProto(MakePair(0, 7, 0, 8, 1024), first.mutable_pair_part());
  first.mutable_pair_part()->mutable_x1()->resize(100);  // short x1
  EXPECT_THAT(put({first}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "the last part leaves x0 at 16384 and x1 at 100"));
  first.set_pair_continues(true);
  EXPECT_THAT(put({first}), StatusIs(absl::StatusCode::kInvalidArgument,
                                     "ended inside a pair sent in parts"));
  lft::v1::PutPairsRequest more;
  more.mutable_pair_part()->set_x0(std::string(20000, 'x'));  // too much
  EXPECT_THAT(put({first, more}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "the parts exceed the shape [8, 1024]"));
  EXPECT_EQ(remote_->Stats("job")->pairs, 0u);
}

// A server with lft-store's default 64 MiB limit and a client with gRPC's
// defaults (4 MiB receive): ScanPairs keeps every message under 4 MiB and
// sends an 8 MiB pair in parts; a client that names 64 MiB gets it whole.
TEST(StoreServiceDefaultClientTest, ScanKeepsMessagesUnderTheClientsLimit) {
  TempDir dir;
  LatentStoreOptions o;
  o.sync = false;
  auto store = LatentStore::Open(dir.Sub("db"), o);
  ASSERT_TRUE(store.ok()) << store.status();
  StoreService service(store->get(), StoreServiceOptions());
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  builder.SetMaxReceiveMessageSize(64 << 20);
  builder.SetMaxSendMessageSize(64 << 20);
  builder.RegisterService(&service);
  auto server = builder.BuildAndStart();
  ASSERT_NE(port, 0);
  JobConfig c;
  c.hidden = 1024;
  ASSERT_TRUE((*store)->CreateJob("job", c).ok());
  // 2048 tokens x 1024 bf16: 4 MiB per tensor, 8 MiB per pair.
  ASSERT_TRUE((*store)
                  ->PutPairs("job",
                             {MakePair(0, 0, 0, 2048, 1024),
                              MakePair(0, 1, 0, 16, 1024)},
                             absl::InfiniteFuture())
                  .ok());
  auto stub = lft::v1::LatentStoreService::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  for (const uint32_t limit : {0u, 64u << 20}) {
    lft::v1::ScanPairsRequest request;
    request.set_job_id("job");
    request.set_partitions(1);
    request.set_max_message_bytes(limit);
    grpc::ClientContext ctx;
    if (limit > 0) {
      // This client would need a channel that accepts 64 MiB; the default
      // one here cannot, so only check what the server sends through a
      // fitting channel.
      grpc::ChannelArguments args;
      args.SetMaxReceiveMessageSize(64 << 20);
      stub = lft::v1::LatentStoreService::NewStub(
          grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port),
                                    grpc::InsecureChannelCredentials(), args));
    }
    auto reader = stub->ScanPairs(&ctx, request);
    lft::v1::ScanPairsResponse response;
    PairPartAssembler assembler;
    std::vector<LatentPairRecord> pairs;
    int messages = 0, parts = 0;
    while (reader->Read(&response)) {
      ++messages;
      if (limit == 0) {
        EXPECT_LT(response.ByteSizeLong(), 4u << 20);
      }
      for (auto& p : *response.mutable_pairs()) {
        pairs.emplace_back();
        ASSERT_TRUE(PairFromProto(std::move(p), &pairs.back()).ok());
      }
      if (response.has_pair_part()) {
        ++parts;
        LatentPairRecord whole;
        bool done = false;
        ASSERT_TRUE(assembler
                        .Add(std::move(*response.mutable_pair_part()),
                             response.pair_continues(), &whole, &done)
                        .ok());
        if (done) pairs.push_back(std::move(whole));
      }
    }
    const grpc::Status finish = reader->Finish();
    ASSERT_TRUE(finish.ok()) << finish.error_message();
    ASSERT_EQ(pairs.size(), 2u);
    EXPECT_EQ(pairs[0].sequence, 0u);
    EXPECT_TRUE(PairIntact(pairs[0]));
    EXPECT_TRUE(PairIntact(pairs[1]));
    if (limit == 0) {
      EXPECT_GE(parts, 4);  // 8 MiB in parts of under 2 MiB
    } else {
      EXPECT_EQ(parts, 0);  // the fast path: whole pairs, one message
      EXPECT_EQ(messages, 1);
    }
  }
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
}

TEST_F(StoreServiceTest, CheckpointDownloadsResumeFromAnOffset) {
  JobConfig c;
  c.hidden = 8;
  ASSERT_TRUE(remote_->CreateJob("job", c).ok());
  std::string blob(300 << 10, '\0');
  for (size_t i = 0; i < blob.size(); ++i) blob[i] = static_cast<char>(i * 11);
  auto put = remote_->PutCheckpoint("job", "step-1", blob, "");
  ASSERT_TRUE(put.ok()) << put.status();
  // Offsets inside a stored 64 KiB chunk, on a boundary, at the end.
  for (const uint64_t offset : {uint64_t{0}, uint64_t{100001}, uint64_t{65536},
                                uint64_t{blob.size()}}) {
    std::string got;
    auto info = remote_->ReadCheckpoint(
        "job", "step-1", offset,
        [&](const CheckpointInfo& i, absl::string_view data) {
          EXPECT_EQ(i.sha256, put->sha256);  // the whole blob's digest
          EXPECT_EQ(i.bytes, blob.size());
          got.append(data.data(), data.size());
          return absl::OkStatus();
        });
    ASSERT_TRUE(info.ok()) << offset << ": " << info.status();
    EXPECT_TRUE(got == blob.substr(offset)) << offset;
  }
  EXPECT_THAT(
      remote_
          ->ReadCheckpoint("job", "step-1", blob.size() + 1,
                           [](const CheckpointInfo&, absl::string_view) {
                             return absl::OkStatus();
                           })
          .status(),
      StatusIs(absl::StatusCode::kOutOfRange, "past the end"));
}

TEST_F(StoreServiceTest, StoreServesCheckpointServiceWithLatest) {
  JobConfig c;
  c.hidden = 8;
  ASSERT_TRUE(remote_->CreateJob("job", c).ok());
  ASSERT_TRUE(remote_->PutCheckpoint("job", "step-0000000001", "one", "").ok());
  absl::SleepFor(absl::Milliseconds(5));
  const std::string two(3 << 20, 'b');  // three wire chunks of 1 MiB
  ASSERT_TRUE(remote_->PutCheckpoint("job", "step-0000000002", two, "").ok());
  absl::SleepFor(absl::Milliseconds(5));
  ASSERT_TRUE(remote_->PutCheckpoint("job", "report.json", "{}", "").ok());
  StoreCheckpointService checkpoints(store_.get(), "");
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  builder.RegisterService(&checkpoints);
  auto server = builder.BuildAndStart();
  ASSERT_NE(port, 0);
  auto stub = lft::v1::CheckpointService::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  {
    grpc::ClientContext ctx;
    lft::v1::ListJobCheckpointsRequest request;
    request.set_job_id("job");
    lft::v1::ListCheckpointsResponse response;
    ASSERT_TRUE(stub->List(&ctx, request, &response).ok());
    EXPECT_EQ(response.checkpoints_size(), 3);
  }
  lft::v1::PullCheckpointRequest request;
  request.set_job_id("job");
  request.set_name("latest");
  grpc::ClientContext ctx;
  auto reader = stub->Pull(&ctx, request);
  lft::v1::CheckpointChunk chunk;
  std::string got;
  int chunks = 0;
  while (reader->Read(&chunk)) {
    if (chunks++ == 0) {
      EXPECT_EQ(chunk.name(), "step-0000000002");  // not the newer report
      EXPECT_EQ(chunk.total_bytes(), two.size());
    }
    EXPECT_EQ(chunk.offset(), got.size());
    EXPECT_LE(chunk.data().size(), 1u << 20);
    got += chunk.data();
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_TRUE(got == two);
  EXPECT_GE(chunks, 3);
  {
    grpc::ClientContext nctx;
    lft::v1::PullCheckpointRequest none;
    none.set_job_id("nope");
    none.set_name("latest");
    auto r = stub->Pull(&nctx, none);
    while (r->Read(&chunk)) {
    }
    EXPECT_THAT(FromGrpcStatus(r->Finish()),
                StatusIs(absl::StatusCode::kNotFound, "nope"));
  }
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
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
