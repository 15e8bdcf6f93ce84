#include "latent-store/checkpoint_stream.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "latent-store/checkpoint_names.h"

namespace lft {

absl::StatusOr<std::string> ResolveCheckpointName(PairStore* store,
                                                  absl::string_view job,
                                                  absl::string_view name) {
  if (name != kLatestCheckpointName) return std::string(name);
  LFT_ASSIGN_OR_RETURN(std::vector<CheckpointInfo> list,
                       store->ListCheckpoints(job));
  const CheckpointInfo* newest = nullptr;
  for (const CheckpointInfo& c : list) {  // oldest first
    if (IsTrainingCheckpoint(c.name) &&
        (newest == nullptr || c.created_unix_ms >= newest->created_unix_ms)) {
      newest = &c;
    }
  }
  if (newest == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("job '", job, "' has no training checkpoint yet"));
  }
  return newest->name;
}

absl::Status StreamCheckpoint(
    PairStore* store, absl::string_view job, absl::string_view name,
    uint64_t offset,
    const std::function<bool(const lft::v1::CheckpointChunk&)>& write) {
  bool header_sent = false;
  uint64_t position = offset;
  lft::v1::CheckpointChunk chunk;
  auto header = [&](const CheckpointInfo& info) {
    chunk.set_job_id(std::string(job));
    chunk.set_name(info.name);
    chunk.set_sha256(info.sha256);
    chunk.set_total_bytes(info.bytes);
    header_sent = true;
  };
  auto info = store->ReadCheckpoint(
      job, name, offset,
      [&](const CheckpointInfo& meta, absl::string_view data) -> absl::Status {
        do {
          const size_t take = std::min(data.size(), kCheckpointWireChunkBytes);
          chunk.Clear();
          if (!header_sent) header(meta);
          chunk.set_offset(position);
          chunk.set_data(data.data(), take);
          if (!write(chunk)) {
            return absl::CancelledError(
                "the client went away during the download");
          }
          position += take;
          data.remove_prefix(take);
        } while (!data.empty());
        return absl::OkStatus();
      });
  LFT_RETURN_IF_ERROR(info.status());
  if (!header_sent) {  // nothing after `offset` (or an empty blob)
    chunk.Clear();
    header(*info);
    chunk.set_offset(position);
    if (!write(chunk)) {
      return absl::CancelledError("the client went away during the download");
    }
  }
  return absl::OkStatus();
}

void AppendCheckpointInfos(const std::vector<CheckpointInfo>& list,
                           lft::v1::ListCheckpointsResponse* response) {
  for (const CheckpointInfo& c : list) {
    auto* info = response->add_checkpoints();
    info->set_name(c.name);
    info->set_bytes(c.bytes);
    info->set_sha256(c.sha256);
    info->set_created_unix_ms(c.created_unix_ms);
  }
}

}  // namespace lft
