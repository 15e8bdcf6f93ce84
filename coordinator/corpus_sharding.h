// Turns a job's corpus into extraction tasks. The coordinator calls it once
// per job (off its lock). The interface is small on purpose: another sharder
// (by bytes, by frames, with an index) replaces CorpusSharderSharding without
// touching the scheduler, and tests plug in fakes.
#ifndef LFT_COORDINATOR_CORPUS_SHARDING_H_
#define LFT_COORDINATOR_CORPUS_SHARDING_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "lft/v1/job.pb.h"
#include "lft/v1/worker.pb.h"

namespace lft {

// Documents per extraction task when CorpusSpec.documents_per_shard is 0.
inline constexpr uint32_t kDefaultDocumentsPerShard = 10000;

// Thread-safe implementations only: the coordinator may shard two jobs at
// once.
class CorpusSharding {
 public:
  virtual ~CorpusSharding() = default;
  // The extraction tasks covering `corpus`, with shard_index 0, 1, ... in
  // order. end_document == 0 means "to the end of the file" (used when the
  // document count is not known up front). NotFound / InvalidArgument naming
  // the file when one cannot be opened or decoded.
  virtual absl::StatusOr<std::vector<lft::v1::ExtractionTask>> Shard(
      const lft::v1::CorpusSpec& corpus) = 0;
};

// The data library's sharder (common/corpus/corpus_sharder.h, docs/data.md):
// jsonl.zst files are counted line by line and cut into documents_per_shard
// ranges (tests compare it with a line-counting oracle), and Megatron prefixes
// are counted from their .idx and cut into documents_per_shard ranges too
// (instead of one whole-file task with end_document 0). Shards never span
// files; files in the order jsonl paths, then Megatron prefixes. Errors name
// the spec field and file.
class CorpusSharderSharding : public CorpusSharding {
 public:
  absl::StatusOr<std::vector<lft::v1::ExtractionTask>> Shard(
      const lft::v1::CorpusSpec& corpus) override;
};

}  // namespace lft

#endif  // LFT_COORDINATOR_CORPUS_SHARDING_H_
