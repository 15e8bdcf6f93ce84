// Checkpoint downloads as the wire sends them, in one place for every server
// that sends them: lft-store (LatentStoreService.GetCheckpoint and its
// CheckpointService) and lft-coordinator (CheckpointService, relaying from
// the store). Thread-safe (stateless).
#ifndef LFT_LATENT_STORE_CHECKPOINT_STREAM_H_
#define LFT_LATENT_STORE_CHECKPOINT_STREAM_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "latent-store/pair_store.h"
#include "lft/v1/store.pb.h"

namespace lft {

// Most blob bytes in one CheckpointChunk: with the header fields a message
// stays far under gRPC's default 4 MiB receive limit.
inline constexpr size_t kCheckpointWireChunkBytes = 1 << 20;

// What CheckpointService.Pull calls "latest".
inline constexpr char kLatestCheckpointName[] = "latest";

// The blob `name` means: `name` itself, or for "latest" the newest training
// checkpoint of `job` (IsTrainingCheckpoint; the latest created, ties by
// name). NotFound if the job has no training checkpoint yet; the errors of
// PairStore::ListCheckpoints.
absl::StatusOr<std::string> ResolveCheckpointName(PairStore* store,
                                                  absl::string_view job,
                                                  absl::string_view name);

// Sends checkpoint `name` of `job` from `store`, from byte `offset` on, as
// CheckpointChunks of at most kCheckpointWireChunkBytes of data, each with
// its offset; the first also carries job_id, name, sha256 and total_bytes,
// and is sent even when nothing follows `offset`. `write` returns false when
// the client went away: Cancelled. Otherwise the errors of
// PairStore::ReadCheckpoint (OutOfRange past the end, NotFound, DataLoss
// after the last chunk when the stored blob fails its sha256).
absl::Status StreamCheckpoint(
    PairStore* store, absl::string_view job, absl::string_view name,
    uint64_t offset,
    const std::function<bool(const lft::v1::CheckpointChunk&)>& write);

// Appends `list` to a ListCheckpoints response, as every server lists them.
void AppendCheckpointInfos(const std::vector<CheckpointInfo>& list,
                           lft::v1::ListCheckpointsResponse* response);

}  // namespace lft

#endif  // LFT_LATENT_STORE_CHECKPOINT_STREAM_H_
