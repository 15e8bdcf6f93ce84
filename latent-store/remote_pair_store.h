// RemotePairStore: the PairStore interface over gRPC, talking to lft-store
// (or anything serving lft.v1.LatentStoreService). Errors come back with
// the server's code and message (common/grpc_status.h); transport failures
// are Unavailable / DeadlineExceeded.
#ifndef LFT_LATENT_STORE_REMOTE_PAIR_STORE_H_
#define LFT_LATENT_STORE_REMOTE_PAIR_STORE_H_

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "latent-store/pair_store.h"
#include "lft/v1/store.grpc.pb.h"

namespace lft {

struct RemotePairStoreOptions {
  // Must not exceed the server's; PutPairs packs messages under it.
  uint64_t max_message_bytes = 64ull << 20;
  // Deadline of unary calls and of each checkpoint transfer.
  absl::Duration rpc_timeout = absl::Minutes(5);
  // Checkpoint upload chunk size.
  uint64_t checkpoint_chunk_bytes = 4ull << 20;
};

// Thread-safe (a gRPC channel is).
class RemotePairStore : public PairStore {
 public:
  // Creates a channel to `target` ("127.0.0.1:PORT"); does not wait for a
  // connection (the first call does, up to its deadline).
  static std::unique_ptr<RemotePairStore> Connect(
      const std::string& target, const RemotePairStoreOptions& options);

  absl::Status CreateJob(absl::string_view job,
                         const JobConfig& config) override;
  // Sends the pairs in messages under max_message_bytes on one stream;
  // OK once the server acknowledged all of them. InvalidArgument, before
  // anything is sent, for a pair larger than a message.
  absl::Status PutPairs(absl::string_view job,
                        absl::Span<const LatentPairRecord> pairs,
                        absl::Time deadline) override;
  absl::Status AckConsumed(absl::string_view job, uint64_t pairs) override;
  // The reader holds a server stream; its errors include the server's
  // (NotFound, InvalidArgument, DataLoss, ...) on the first Next().
  absl::StatusOr<std::unique_ptr<PairReader>> Scan(
      absl::string_view job, const ScanOptions& options) override;
  absl::StatusOr<JobStats> Stats(absl::string_view job) override;
  absl::StatusOr<CheckpointInfo> PutCheckpoint(
      absl::string_view job, absl::string_view name, absl::string_view data,
      absl::string_view expected_sha256) override;
  // Verifies the sha256 the server sent on the client too (DataLoss).
  absl::StatusOr<std::string> GetCheckpoint(absl::string_view job,
                                            absl::string_view name) override;
  absl::StatusOr<std::vector<CheckpointInfo>> ListCheckpoints(
      absl::string_view job) override;
  absl::Status DeleteCheckpoint(absl::string_view job,
                                absl::string_view name) override;
  absl::StatusOr<uint64_t> KeepLastCheckpoints(absl::string_view job,
                                               uint64_t keep) override;
  absl::Status DeleteJob(absl::string_view job) override;

 private:
  RemotePairStore(std::shared_ptr<grpc::Channel> channel,
                  const RemotePairStoreOptions& options);
  void SetDeadline(grpc::ClientContext* context) const;

  const RemotePairStoreOptions options_;
  const std::shared_ptr<grpc::Channel> channel_;
  const std::unique_ptr<lft::v1::LatentStoreService::Stub> stub_;
};

}  // namespace lft

#endif  // LFT_LATENT_STORE_REMOTE_PAIR_STORE_H_
