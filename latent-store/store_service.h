// LatentStoreService: thin gRPC handlers over a LatentStore. Each handler
// converts protos, calls the library, and maps its Status with
// common/rpc/grpc_status.h; nothing here holds state of its own. Every handler
// first checks the bearer token (common/rpc/auth.h): on TLS servers gRPC's auth
// processor already did, but plaintext --insecure-loopback servers with a
// token rely on this check.
#ifndef LFT_LATENT_STORE_STORE_SERVICE_H_
#define LFT_LATENT_STORE_STORE_SERVICE_H_

#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/rpc/auth.h"
#include "latent-store/latent_store.h"
#include "lft/v1/checkpoint.grpc.pb.h"
#include "lft/v1/store.grpc.pb.h"

namespace lft {

// Proto <-> library conversions, shared with RemotePairStore.
// InvalidArgument for an unspecified or unknown dtype.
absl::Status PairFromProto(const lft::v1::LatentPair& proto,
                           LatentPairRecord* pair);
void PairToProto(const LatentPairRecord& pair, lft::v1::LatentPair* proto);
// Moving variants: the payload strings are swapped, not copied (a pair is
// megabytes; copies showed up as a third of gRPC put time).
absl::Status PairFromProto(lft::v1::LatentPair&& proto, LatentPairRecord* pair);
void PairToProto(LatentPairRecord&& pair, lft::v1::LatentPair* proto);
// Bytes a pair adds to a message (payloads + token ids + a little framing).
uint64_t PairWireBytes(const LatentPairRecord& pair);

// A pair larger than one message travels in parts (PutPairsRequest and
// ScanPairsResponse .pair_part, store.proto): `emit(part, continues)` is
// called once per part, each part with at most `part_bytes` of payload
// (>= 4 KiB). The parts are copies: only pairs over a message take this path.
// Returns false as soon as emit does.
bool SplitPairIntoParts(const LatentPairRecord& pair, uint64_t part_bytes,
                        const std::function<bool(lft::v1::LatentPair&& part,
                                                 bool continues)>& emit);

// Reassembles a pair from its parts. Not thread-safe.
class PairPartAssembler {
 public:
  // True between a first part and the last one.
  bool in_progress() const { return in_progress_; }
  // Adds the next part; after the last one (continues == false) *done is
  // true and *pair holds the whole pair. InvalidArgument (nothing kept) if
  // the first part has no valid dtype or shape, or the parts grow past the
  // pair's shape (tokens x hidden); on the last part, if a payload or the
  // token ids are short.
  absl::Status Add(lft::v1::LatentPair&& part, bool continues,
                   LatentPairRecord* pair, bool* done);

 private:
  bool in_progress_ = false;
  LatentPairRecord pending_;
  uint64_t payload_bytes_ = 0;  // EncodedBytes of the pending pair's shape
};
absl::StatusOr<TensorCodec> CodecFromProto(lft::v1::TensorDtype dtype);
lft::v1::TensorDtype CodecToProto(TensorCodec codec);

struct StoreServiceOptions {
  // The server's max message size; responses are packed to stay under it.
  uint64_t max_message_bytes = 64ull << 20;
  // Longest a PutPairs call waits on back-pressure when the client set no
  // deadline.
  absl::Duration max_put_wait = absl::Minutes(10);
  // Bearer token every call must carry; empty accepts every call (plaintext
  // on loopback without a token). UNAUTHENTICATED otherwise, saying how to
  // pass one.
  std::string auth_token;
};

// CheckpointService over the store's own blobs (lft-store serves it beside
// LatentStoreService, so `lftctl pull --store` needs no coordinator).
class StoreCheckpointService final
    : public lft::v1::CheckpointService::Service {
 public:
  // `store` must outlive the service; calls need `auth_token` (if set).
  StoreCheckpointService(LatentStore* store, const std::string& auth_token)
      : store_(store), auth_(auth_token) {}
  // NotFound for an unknown job.
  grpc::Status List(grpc::ServerContext* context,
                    const lft::v1::ListJobCheckpointsRequest* request,
                    lft::v1::ListCheckpointsResponse* response) override;
  // StreamCheckpoint (checkpoint_stream.h), "latest" resolved.
  grpc::Status Pull(
      grpc::ServerContext* context,
      const lft::v1::PullCheckpointRequest* request,
      grpc::ServerWriter<lft::v1::CheckpointChunk>* writer) override;

 private:
  LatentStore* const store_;
  const BearerTokenChecker auth_;
};

class StoreService final : public lft::v1::LatentStoreService::Service {
 public:
  // `store` must outlive the service.
  StoreService(LatentStore* store, const StoreServiceOptions& options);

  grpc::Status CreateJob(grpc::ServerContext* context,
                         const lft::v1::CreateStoreJobRequest* request,
                         lft::v1::CreateStoreJobResponse* response) override;
  grpc::Status PutPairs(grpc::ServerContext* context,
                        grpc::ServerReader<lft::v1::PutPairsRequest>* reader,
                        lft::v1::PutPairsResponse* response) override;
  grpc::Status ScanPairs(
      grpc::ServerContext* context, const lft::v1::ScanPairsRequest* request,
      grpc::ServerWriter<lft::v1::ScanPairsResponse>* writer) override;
  grpc::Status Stats(grpc::ServerContext* context,
                     const lft::v1::StoreStatsRequest* request,
                     lft::v1::StoreStatsResponse* response) override;
  grpc::Status PutCheckpoint(
      grpc::ServerContext* context,
      grpc::ServerReader<lft::v1::CheckpointChunk>* reader,
      lft::v1::PutCheckpointResponse* response) override;
  grpc::Status GetCheckpoint(
      grpc::ServerContext* context,
      const lft::v1::GetCheckpointRequest* request,
      grpc::ServerWriter<lft::v1::CheckpointChunk>* writer) override;
  grpc::Status ListCheckpoints(
      grpc::ServerContext* context,
      const lft::v1::ListCheckpointsRequest* request,
      lft::v1::ListCheckpointsResponse* response) override;
  grpc::Status DeleteCheckpoint(
      grpc::ServerContext* context,
      const lft::v1::DeleteCheckpointRequest* request,
      lft::v1::DeleteCheckpointResponse* response) override;
  grpc::Status KeepLastCheckpoints(
      grpc::ServerContext* context,
      const lft::v1::KeepLastCheckpointsRequest* request,
      lft::v1::KeepLastCheckpointsResponse* response) override;
  grpc::Status GetWriteSession(
      grpc::ServerContext* context,
      const lft::v1::GetWriteSessionRequest* request,
      lft::v1::GetWriteSessionResponse* response) override;
  grpc::Status SyncPairs(grpc::ServerContext* context,
                         const lft::v1::SyncPairsRequest* request,
                         lft::v1::SyncPairsResponse* response) override;
  grpc::Status AckPairs(grpc::ServerContext* context,
                        const lft::v1::AckPairsRequest* request,
                        lft::v1::AckPairsResponse* response) override;
  grpc::Status SealShard(grpc::ServerContext* context,
                         const lft::v1::SealShardRequest* request,
                         lft::v1::SealShardResponse* response) override;
  grpc::Status DeleteJob(grpc::ServerContext* context,
                         const lft::v1::DeleteStoreJobRequest* request,
                         lft::v1::DeleteStoreJobResponse* response) override;
  grpc::Status DeletePairs(
      grpc::ServerContext* context,
      const lft::v1::DeleteStorePairsRequest* request,
      lft::v1::DeleteStorePairsResponse* response) override;

 private:
  // OK, or UNAUTHENTICATED naming `rpc` and how to fix the token.
  grpc::Status Authorize(grpc::ServerContext* context,
                         absl::string_view rpc) const;

  LatentStore* const store_;
  const StoreServiceOptions options_;
  const BearerTokenChecker auth_;
};

}  // namespace lft

#endif  // LFT_LATENT_STORE_STORE_SERVICE_H_
