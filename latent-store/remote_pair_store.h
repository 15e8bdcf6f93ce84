// RemotePairStore: the PairStore interface over gRPC, talking to lft-store
// (or anything serving lft.v1.LatentStoreService). Errors come back with
// the server's code and message (common/rpc/grpc_status.h); transport failures
// are Unavailable / DeadlineExceeded; a missing or wrong bearer token is
// Unauthenticated.
#ifndef LFT_LATENT_STORE_REMOTE_PAIR_STORE_H_
#define LFT_LATENT_STORE_REMOTE_PAIR_STORE_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/impl/rpc_method.h"
#include "latent-store/pair_store.h"
#include "lft/v1/store.grpc.pb.h"

namespace lft {

// How a client authenticates to lft-store. One struct for every store
// client (teacher, trainer and evaluator runners, lftctl pull), filled from
// the same flags they use for the coordinator: --token (or LFT_AUTH_TOKEN),
// --tls-ca, --insecure-loopback.
struct StoreClientCredentials {
  // Sent as "authorization: Bearer <token>" on every call; empty sends none.
  std::string token;
  // PEM CA that signed the store's certificate: TLS. Empty: plaintext to a
  // loopback address, TLS with the system's roots otherwise.
  std::string tls_ca_path;
  // Plaintext even to a non-loopback address (a store run
  // --insecure-loopback behind a tunnel).
  bool insecure = false;
};

struct RemotePairStoreOptions {
  StoreClientCredentials credentials;
  // Must not exceed the server's; PutPairs packs messages under it.
  uint64_t max_message_bytes = 64ull << 20;
  // Deadline of unary calls and of each checkpoint transfer.
  absl::Duration rpc_timeout = absl::Minutes(5);
  // Checkpoint upload chunk size: 1 MiB keeps every message under gRPC's
  // default 4 MiB limit.
  uint64_t checkpoint_chunk_bytes = 1ull << 20;
  // PutPairs and ScanPairs calls go round-robin over this many channels,
  // each with a TCP connection of its own, so that a teacher's parallel
  // writers (TeacherRunnerOptions::store_writers) do not share one
  // connection's transport; 0 is taken as 1. Other calls use one more.
  uint32_t data_channels = 4;
  // Scan reads a partition over this many ScanPairs streams, each on the
  // next data channel and read ahead on a thread of its own, interleaved
  // (ScanOptions::interleave_count) and merged back into the partition's
  // order: one stream's transport and the server's serialisation of it
  // carry ~1-2.5 GB/s, short of what a trainer at the Pythia-410M shape
  // reads (docs/benchmarks.md, "Trainer"). 0 is taken as 1 (one stream,
  // read on the caller's thread). A Scan whose options already set
  // interleave_count uses one stream.
  uint32_t scan_streams = 4;
  // PutPairs closes a message once it holds this many bytes (whole pairs,
  // under max_message_bytes): about one 8 MiB Pythia-410M pair per message,
  // so that the store writes one while the next is on the wire, where one
  // 64 MiB message made every stage wait for the one before.
  uint64_t put_message_bytes = 8ull << 20;
};

// Thread-safe (a gRPC channel is).
class RemotePairStore : public PairStore {
 public:
  // Creates a channel to `target` ("127.0.0.1:PORT"); does not wait for a
  // connection (the first call does, up to its deadline). NotFound or
  // InvalidArgument when credentials.tls_ca_path is not a readable PEM file.
  static absl::StatusOr<std::unique_ptr<RemotePairStore>> Connect(
      const std::string& target, const RemotePairStoreOptions& options);

  absl::Status CreateJob(absl::string_view job,
                         const JobConfig& config) override;
  // Sends the pairs on one stream in messages of about put_message_bytes
  // (a pair larger than max_message_bytes in parts,
  // PutPairsRequest.pair_part); OK once the server acknowledged all of
  // them. The payload bytes go to the socket from `pairs` itself
  // (PairMessageEncoder), so the call returns only after gRPC let go of
  // them.
  absl::Status PutPairs(absl::string_view job,
                        absl::Span<const LatentPairRecord> pairs,
                        absl::Time deadline) override;
  absl::StatusOr<std::string> WriteSession() override;
  absl::Status SyncPairs(absl::string_view job,
                         absl::string_view session) override;
  absl::Status AckConsumed(absl::string_view job, uint64_t pairs) override;
  absl::Status SealShard(absl::string_view job, uint32_t shard,
                         uint64_t pairs) override;
  // The reader holds scan_streams server streams; its errors include the
  // server's (NotFound, InvalidArgument, DataLoss, ...) on the first
  // Next(). With several streams, DataLoss if the job's pairs changed
  // between their openings (InterleavedPairReader).
  absl::StatusOr<std::unique_ptr<PairReader>> Scan(
      absl::string_view job, const ScanOptions& options) override;
  absl::StatusOr<JobStats> Stats(absl::string_view job) override;
  absl::StatusOr<CheckpointInfo> PutCheckpoint(
      absl::string_view job, absl::string_view name, absl::string_view data,
      absl::string_view expected_sha256) override;
  // Verifies the sha256 the server sent on the client too (DataLoss).
  absl::StatusOr<std::string> GetCheckpoint(absl::string_view job,
                                            absl::string_view name) override;
  // Streams a checkpoint into `sink` chunk by chunk (no copy of the whole
  // blob in memory) and checks the sha256 of everything received against
  // the digest the store recorded: DataLoss on mismatch (the sink has then
  // seen bad bytes and must discard them). `info` carries the store's name,
  // size and sha256 (created_unix_ms is not sent). A sink error cancels the
  // call and is returned. NotFound for an unknown job or checkpoint.
  absl::StatusOr<CheckpointInfo> ReadCheckpoint(absl::string_view job,
                                                absl::string_view name,
                                                const CheckpointSink& sink) {
    return ReadCheckpoint(job, name, 0, sink);
  }
  // From `offset` on (a resumed download). With offset > 0 only the length
  // of what arrives is checked here (the store checked the whole blob's
  // sha256; the caller hashes its kept prefix plus these bytes).
  absl::StatusOr<CheckpointInfo> ReadCheckpoint(
      absl::string_view job, absl::string_view name, uint64_t offset,
      const CheckpointSink& sink) override;
  absl::StatusOr<std::vector<CheckpointInfo>> ListCheckpoints(
      absl::string_view job) override;
  absl::Status DeleteCheckpoint(absl::string_view job,
                                absl::string_view name) override;
  absl::StatusOr<uint64_t> KeepLastCheckpoints(absl::string_view job,
                                               uint64_t keep) override;
  absl::Status DeleteJob(absl::string_view job) override;
  absl::Status DeletePairs(absl::string_view job) override;

 private:
  RemotePairStore(std::shared_ptr<grpc::Channel> channel,
                  std::vector<std::shared_ptr<grpc::Channel>> data_channels,
                  const RemotePairStoreOptions& options);
  struct DataChannel {
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<lft::v1::LatentStoreService::Stub> stub;
    // PutPairs sent as raw ByteBuffers (PairMessageEncoder).
    grpc::internal::RpcMethod put_pairs;
  };
  // The next data channel, round-robin.
  const DataChannel& NextDataChannel() const;
  // Attaches the bearer token and the unary deadline.
  void SetDeadline(grpc::ClientContext* context) const;

  const RemotePairStoreOptions options_;
  const std::shared_ptr<grpc::Channel> channel_;
  const std::unique_ptr<lft::v1::LatentStoreService::Stub> stub_;
  std::vector<DataChannel> data_channels_;
  mutable std::atomic<uint32_t> next_data_{0};
};

}  // namespace lft

#endif  // LFT_LATENT_STORE_REMOTE_PAIR_STORE_H_
